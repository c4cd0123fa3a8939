"""A Secrets Manager string (the Claude key), read through the botocore session the table's connection
already has: no boto3 (with s3transfer) to import and no second session to build on a cold start, which
is what Powertools' parameters utility costs ApiFunction (bench_gateway: "avoidable parts")."""

import time
from collections.abc import Callable
from typing import Any

from costgate.dal.table import transaction_connection


class CachedSecret:
    """Calling it gives the secret's string, read again once it is `max_age_s` old (a rotated secret is
    picked up within that time). One Secrets Manager client, built on the first read."""

    def __init__(self, name: str, max_age_s: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._name = name
        self._max_age_s = max_age_s
        self._monotonic = monotonic
        self._client: Any = None
        self._value: str | None = None
        self._read_at = 0.0

    def __call__(self) -> str:
        now = self._monotonic()
        if self._value is None or now - self._read_at >= self._max_age_s:
            if self._client is None:
                connection = transaction_connection()
                self._client = connection.session.create_client("secretsmanager", region_name=connection.region)
            value = self._client.get_secret_value(SecretId=self._name)["SecretString"]
            self._value, self._read_at = str(value), now
        return self._value

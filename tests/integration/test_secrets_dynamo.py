"""The Claude key read through the table connection's botocore session, against moto's Secrets Manager."""

import uuid

import boto3
import pytest

from costgate.dal.secrets import CachedSecret
from costgate_local.stack.aws import LocalAwsEndpoints, create_secret


def test_the_secret_is_read_once_then_again_when_it_is_max_age_old(
    ledger_table: str, local_aws: LocalAwsEndpoints
) -> None:
    # Given a secret, and a reader with a 300 s max age on a clock the test moves
    name = f"costgate/claude-{uuid.uuid4().hex[:8]}"
    create_secret(local_aws, name, "sk-ant-first")
    now = [1000.0]
    secret = CachedSecret(name, 300, monotonic=lambda: now[0])
    assert secret() == "sk-ant-first"

    # When the secret is rotated
    client = boto3.client("secretsmanager", endpoint_url=local_aws.endpoint_url, region_name=local_aws.region)
    client.put_secret_value(SecretId=name, SecretString="sk-ant-second")

    # Then the cached value serves until it is 300 s old, and the new one after
    now[0] += 299
    assert secret() == "sk-ant-first"
    now[0] += 1
    assert secret() == "sk-ant-second"


def test_a_missing_secret_is_an_error_not_an_empty_key(ledger_table: str) -> None:
    secret = CachedSecret(f"costgate/missing-{uuid.uuid4().hex[:8]}", 300)
    with pytest.raises(Exception, match="ResourceNotFound"):
        secret()

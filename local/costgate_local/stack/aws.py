"""Local AWS: moto in server mode on 127.0.0.1, with the table created from template.yaml.

moto's backends are not thread-safe (concurrent writers corrupt its dicts mid-iteration), while
DynamoDB serialises writes per item itself. So requests reach moto one at a time: clients may be
as concurrent as they like, and the emulator behaves like the real, atomic service. An SQS long
poll is the exception that proves the rule: it is served as short polls, so waiting for a message
never holds every other client up.
"""

import copy
import io
import itertools
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote_plus

import boto3
import moto.dynamodb.models as moto_dynamodb
import moto.s3.notifications as moto_s3_notifications
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from costgate_local.stack.template import (
    bucket_setup_calls,
    load_template,
    s3_event_notification,
    table_create_args,
    table_ttl_attribute,
)

REGION = "us-east-1"
# moto accepts any credentials; fixed ones keep boto3 from looking for a real profile.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "costgate-local", "AWS_SECRET_ACCESS_KEY": "costgate-local"}


def _exact_number(self: DynamoType, other: DynamoType, sign: int) -> DynamoType:
    if self.type != "N" or other.type != "N":
        raise TypeError("ADD and SET arithmetic take numbers")
    return DynamoType({"N": format(Decimal(self.value) + sign * Decimal(other.value), "f")})


# moto renders a small sum as '1E-7' and then fails to parse it as an int on the next ADD, so a
# rollup whose first cost is below $0.000001 breaks locally (DynamoDB itself does exact decimal
# arithmetic). Replace its number arithmetic with exact Decimal in fixed-point notation.
DynamoType.__add__ = lambda self, other: _exact_number(self, other, 1)  # type: ignore[method-assign]
DynamoType.__sub__ = lambda self, other: _exact_number(self, other, -1)  # type: ignore[method-assign]


class _SnapshotOnlyTouchedItems:
    """Stands in for the `copy` module inside moto's DynamoDB backend while a transaction runs.

    moto backs a transaction up by deep-copying the whole table once per item it writes, so every
    transaction costs O(items in the table × items in the transaction): a few thousand items (answer
    cache buckets, ledger rows) made each write take seconds. Inside `_transact_write_items` a table
    is not copied; the items the transaction touches are saved instead and put back if it fails.
    """

    active = False

    @classmethod
    def deepcopy(cls, value: Any) -> Any:
        if cls.active and isinstance(value, Table):
            return value
        return copy.deepcopy(value)


_moto_transact_write_items = DynamoDBBackend.transact_write_items


def _transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    saved: list[tuple[Table, DynamoType, DynamoType | None, Any]] = []
    for entry in transact_items[:100]:  # moto itself refuses more than 100
        _, op = next(iter(entry.items()))
        table = self.tables.get(op.get("TableName", ""))
        if table is None:
            continue
        key = op.get("Key") or op.get("Item") or {}
        if table.hash_key_attr not in key:
            continue
        hash_key = DynamoType(key[table.hash_key_attr])
        range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr in key else None
        saved.append((table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))))
    _SnapshotOnlyTouchedItems.active = True
    try:
        _moto_transact_write_items(self, transact_items)
    except Exception:
        for table, hash_key, range_key, item in reversed(saved):
            _restore(table, hash_key, range_key, item)
        raise
    finally:
        _SnapshotOnlyTouchedItems.active = False


def _restore(table: Table, hash_key: DynamoType, range_key: DynamoType | None, item: Any) -> None:
    if range_key is None:
        if item is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = item
        return
    partition = table.items[hash_key]
    if item is None:
        partition.pop(range_key, None)
        if not partition:
            del table.items[hash_key]
    else:
        partition[range_key] = item


moto_dynamodb.copy = _SnapshotOnlyTouchedItems  # type: ignore[attr-defined,assignment]
DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]


_moto_s3_event = moto_s3_notifications._get_s3_event
# Strictly increasing within the process, fixed width: S3 compares sequencers of one key as hex strings.
_sequencers = itertools.count(time.time_ns())


def _s3_event_as_s3_sends_it(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
    """moto's S3 notification, plus the object's `versionId` (in a versioned bucket) and `sequencer`,
    and its key encoded as S3 encodes it.

    moto leaves both fields out, while ingest identifies a document by bucket, key and version:
    without them every upload of a key would look like the same ("null") version locally. And moto
    form-encodes "/" in the key (%2F), which S3 leaves as it is.
    """
    event: dict[str, Any] = _moto_s3_event(event_name, bucket, key, notification_id)
    for record in event["Records"]:
        obj = record["s3"]["object"]
        obj["key"] = quote_plus(key.name, safe="/")
        if bucket.is_versioned:
            obj["versionId"] = key.version_id
        obj["sequencer"] = f"{next(_sequencers):018X}"
    return event


# `send_event` looks the function up in its module at each call, so replacing it there is enough.
moto_s3_notifications._get_s3_event = _s3_event_as_s3_sends_it

# How often a long poll asks moto again while the queue is empty (between asks, others get their turn).
_LONG_POLL_STEP_S = 0.05
_RECEIVE_MESSAGE_TARGET = "AmazonSQS.ReceiveMessage"


class _OneAtATime:
    """WSGI middleware that lets one request at a time into the wrapped app.

    moto serves an SQS long poll by sleeping inside the request until a message comes: under the lock
    that would stall every other client (and the S3 upload that would send the message) for the whole
    wait. So a long poll (boto3's JSON protocol) becomes short polls, each under the lock, until a
    message comes or the wait is over: what a client sees is the same.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET") == _RECEIVE_MESSAGE_TARGET:
            return self._receive(environ, start_response)
        with self._lock:
            return list(self._app(environ, start_response))

    def _receive(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        try:
            request = json.loads(raw)
            wait_s = float(request.get("WaitTimeSeconds") or 0)
        except (ValueError, AttributeError, TypeError):
            request, wait_s = None, 0.0  # moto answers what it cannot parse itself
        if request is not None and wait_s > 0:
            raw = json.dumps({**request, "WaitTimeSeconds": 0}).encode()
        deadline = time.monotonic() + wait_s
        while True:
            short = {**environ, "wsgi.input": io.BytesIO(raw), "CONTENT_LENGTH": str(len(raw))}
            status, headers, body = self._call(short)
            if time.monotonic() >= deadline or not status.startswith("200") or _has_messages(body):
                start_response(status, headers)
                return body
            time.sleep(_LONG_POLL_STEP_S)

    def _call(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], list[bytes]]:
        response: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            response[:] = [status, headers]
            return lambda data: None

        with self._lock:
            body = list(self._app(environ, capture))
        return response[0], response[1], body


def _has_messages(body: list[bytes]) -> bool:
    try:
        return bool(json.loads(b"".join(body) or b"{}").get("Messages"))
    except ValueError:
        return True  # not an answer to wait on: hand it over as it is


@dataclass(frozen=True)
class LocalAwsEndpoints:
    endpoint_url: str
    region: str

    def environ(self) -> dict[str, str]:
        """What boto3 and pynamodb need to talk to this moto instead of AWS."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            **LOCAL_CREDENTIALS,
        }


class LocalAws:
    """A moto server on a free loopback port; `with LocalAws() as aws:` starts and stops it."""

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        app = _OneAtATime(DomainDispatcherApplication(create_backend_app))
        self._server = make_server("127.0.0.1", self._port, app, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-aws", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def endpoints(self) -> LocalAwsEndpoints:
        if self._server is None:
            raise RuntimeError("LocalAws is not started")
        host, port = self._server.server_address[:2]
        return LocalAwsEndpoints(endpoint_url=f"http://{host!s}:{port}", region=REGION)


def _client(service: str, endpoints: LocalAwsEndpoints) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoints.endpoint_url,
        region_name=endpoints.region,
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def create_bucket(endpoints: LocalAwsEndpoints, bucket_name: str) -> None:
    """Create the bucket with template.yaml's settings (versioning, encryption, public access block, lifecycle)."""
    client = _client("s3", endpoints)
    client.create_bucket(Bucket=bucket_name)
    for method, kwargs in bucket_setup_calls(load_template(), bucket_name):
        getattr(client, method)(**kwargs)


def create_event_queue(endpoints: LocalAwsEndpoints, bucket_name: str, queue_name: str, function: str) -> str:
    """An SQS queue that receives the bucket's notifications for `function`'s S3 event (template.yaml's
    event types and key filter); its URL. Locally a queue stands in for S3 invoking the function."""
    sqs = _client("sqs", endpoints)
    queue_url: str = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = s3_event_notification(load_template(), function)
    notification = {"Id": f"{function}-events", "QueueArn": queue_arn, **events}
    _client("s3", endpoints).put_bucket_notification_configuration(
        Bucket=bucket_name, NotificationConfiguration={"QueueConfigurations": [notification]}
    )
    return queue_url


def create_secret(endpoints: LocalAwsEndpoints, name: str, value: str) -> None:
    """A Secrets Manager secret, as the deployment's operator creates the Claude key's."""
    _client("secretsmanager", endpoints).create_secret(Name=name, SecretString=value)


def create_table(endpoints: LocalAwsEndpoints, table_name: str) -> None:
    """Create the table exactly as template.yaml declares it (keys, indexes, billing, TTL)."""
    template = load_template()
    client = _client("dynamodb", endpoints)
    client.create_table(**table_create_args(template, table_name))
    client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": table_ttl_attribute(template)},
    )


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block, restoring the previous values after it."""
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in previous.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old

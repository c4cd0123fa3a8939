"""The local S3-event bridge: moto's notifications made complete, an SQS queue in place of S3 invoking
IngestFunction, the bridge that invokes the handler, and the schedule loop that runs BatchFunction."""

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from costgate.dal.objects import parse_s3_event
from costgate_local.stack.aws import LocalAwsEndpoints, create_bucket, create_event_queue
from costgate_local.stack.front import LambdaContext, LocalFunction, resolve
from costgate_local.stack.serve import PSEUDO_PARAMETERS, S3EventBridge, ScheduleLoop, scheduled_event
from costgate_local.stack.template import load_template
from tests.events import load_event

# Every wait below is bounded: a broken bridge fails the test, it never hangs it.
DEADLINE_S = 10.0
ENCODED_KEY = "incoming/my job/café résumé.md"


@dataclass
class Queue:
    bucket: str
    url: str
    s3: Any
    sqs: Any


@dataclass
class FakeFunction:
    """A handler that records each event (and fails the first `failures` calls)."""

    failures: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    contexts: list[Any] = field(default_factory=list)
    called: threading.Event = field(default_factory=threading.Event)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        self.contexts.append(context)
        self.called.set()
        if len(self.events) <= self.failures:
            raise RuntimeError(f"failure {len(self.events)}")
        return {}

    def local(self, name: str = "IngestFunction", timeout_s: float = 5.0) -> LocalFunction:
        return LocalFunction(
            logical_id=name, handler=self, memory_mb=128, timeout_s=timeout_s, environment={}, routes=()
        )


def _client(service: str, endpoints: LocalAwsEndpoints) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoints.endpoint_url,
        region_name=endpoints.region,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


@pytest.fixture
def queue(local_aws: LocalAwsEndpoints) -> Iterator[Queue]:
    """A versioned bucket (template.yaml's settings) whose incoming/ events go to a fresh queue."""
    suffix = uuid.uuid4().hex[:10]
    bucket = f"costgate-bridge-{suffix}"
    create_bucket(local_aws, bucket)
    url = create_event_queue(local_aws, bucket, f"bridge-{suffix}", "IngestFunction")
    sqs = _client("sqs", local_aws)
    _drain_test_event(sqs, url)
    yield Queue(bucket=bucket, url=url, s3=_client("s3", local_aws), sqs=sqs)
    sqs.delete_queue(QueueUrl=url)


def _drain_test_event(sqs: Any, url: str) -> None:
    """S3 sends an s3:TestEvent when a notification is configured; take it off the queue."""
    for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        assert json.loads(message["Body"])["Event"] == "s3:TestEvent"
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def _receive_one(queue: Queue) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        messages = queue.sqs.receive_message(QueueUrl=queue.url, WaitTimeSeconds=1).get("Messages", [])
        if messages:
            (message,) = messages
            queue.sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
            body: dict[str, Any] = json.loads(message["Body"])
            return body
    raise AssertionError("no S3 event reached the queue")


def _queue_counts(queue: Queue) -> tuple[int, int]:
    attributes = queue.sqs.get_queue_attributes(
        QueueUrl=queue.url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_notification_carries_version_sequencer_and_the_encoded_key(queue: Queue) -> None:
    # Given a versioned bucket that notifies the queue of uploads under incoming/
    # When a file whose name needs encoding is uploaded twice
    first = queue.s3.put_object(Bucket=queue.bucket, Key=ENCODED_KEY, Body=b"# Notes\n")
    event_1 = _receive_one(queue)
    second = queue.s3.put_object(Bucket=queue.bucket, Key=ENCODED_KEY, Body=b"# Notes, again\n")
    event_2 = _receive_one(queue)

    # Then each event is S3's shape, with the key form-encoded as S3 sends it
    (record,) = event_1["Records"]
    assert record["eventVersion"] == "2.1"
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["s3"]["bucket"]["name"] == queue.bucket
    assert record["s3"]["object"]["key"] == load_event("ingest", "encoded_key")["Records"][0]["s3"]["object"]["key"]
    # and with the version each upload made, and sequencers that order the two uploads
    (created_1,) = parse_s3_event(event_1)
    (created_2,) = parse_s3_event(event_2)
    assert (created_1.key, created_1.size) == (ENCODED_KEY, len(b"# Notes\n"))
    assert created_1.version_id == first["VersionId"]
    assert created_2.version_id == second["VersionId"]
    assert created_1.version_id != created_2.version_id
    assert created_1.sequencer is not None
    assert created_2.sequencer is not None
    assert len(created_1.sequencer) == len(created_2.sequencer)
    assert int(created_2.sequencer, 16) > int(created_1.sequencer, 16)


def test_objects_outside_incoming_send_nothing(queue: Queue) -> None:
    # Given the queue's filter (the template's incoming/ prefix)
    # When results and a stray file are written
    queue.s3.put_object(Bucket=queue.bucket, Key="results/job/a.summary.md", Body=b"x")
    queue.s3.put_object(Bucket=queue.bucket, Key="notes.txt", Body=b"x")

    # Then nothing reaches the queue
    assert queue.sqs.receive_message(QueueUrl=queue.url, WaitTimeSeconds=1).get("Messages", []) == []


def test_unversioned_bucket_events_have_no_version_id(local_aws: LocalAwsEndpoints) -> None:
    # Given a bucket without versioning, notifying a queue
    suffix = uuid.uuid4().hex[:10]
    s3, sqs = _client("s3", local_aws), _client("sqs", local_aws)
    bucket = f"costgate-plain-{suffix}"
    s3.create_bucket(Bucket=bucket)
    url = create_event_queue(local_aws, bucket, f"plain-{suffix}", "IngestFunction")
    _drain_test_event(sqs, url)

    # When an object is uploaded
    s3.put_object(Bucket=bucket, Key="incoming/job/a.txt", Body=b"text")
    event = _receive_one(Queue(bucket=bucket, url=url, s3=s3, sqs=sqs))

    # Then, as from S3, the event has a sequencer but no version
    (created,) = parse_s3_event(event)
    assert created.version_id is None
    assert created.sequencer


def test_long_poll_waits_for_a_message_without_holding_up_other_clients(queue: Queue) -> None:
    # Given a client long-polling the empty queue
    received: list[Any] = []

    def poll() -> None:
        received.extend(queue.sqs.receive_message(QueueUrl=queue.url, WaitTimeSeconds=5).get("Messages", []))

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.3)

    # When another client uploads meanwhile
    started = time.monotonic()
    queue.s3.put_object(Bucket=queue.bucket, Key="incoming/job/a.txt", Body=b"text")
    upload_s = time.monotonic() - started
    poller.join(DEADLINE_S)

    # Then the upload was not made to wait for the poll, and the poll returned its event before its 5 s
    assert upload_s < 1.0
    assert not poller.is_alive()
    assert time.monotonic() - started < 4.0
    (message,) = received
    assert parse_s3_event(json.loads(message["Body"]))[0].key == "incoming/job/a.txt"


def test_bridge_hands_the_event_to_the_handler_then_deletes_it(queue: Queue) -> None:
    # Given a bridge from the queue to a function
    function = FakeFunction()
    bridge = S3EventBridge(queue.sqs, queue.url, function.local(), threading.Event(), wait_s=1)

    # When an upload's event reaches the queue and the bridge polls
    queue.s3.put_object(Bucket=queue.bucket, Key="incoming/weekly-report/notes.txt", Body=b"notes")
    deadline = time.monotonic() + DEADLINE_S
    while not function.events and time.monotonic() < deadline:
        bridge.poll()

    # Then the handler got the S3 event itself, with a Lambda context
    (event,) = function.events
    assert parse_s3_event(event)[0].key == "incoming/weekly-report/notes.txt"
    (context,) = function.contexts
    assert isinstance(context, LambdaContext)
    assert context.function_name == "IngestFunction"
    assert context.get_remaining_time_in_millis() > 0
    # and the message is gone from the queue, hidden or not
    assert _queue_counts(queue) == (0, 0)


def test_a_failing_event_is_retried_then_given_up_loudly_after_three_deliveries(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a function that always fails, behind a bridge that retries at once
    function = FakeFunction(failures=100)
    bridge = S3EventBridge(queue.sqs, queue.url, function.local(), threading.Event(), wait_s=1, retry_after_s=0)

    # When an event arrives and the bridge polls until the queue is empty
    queue.s3.put_object(Bucket=queue.bucket, Key="incoming/job/broken.txt", Body=b"x")
    deadline = time.monotonic() + DEADLINE_S
    with caplog.at_level(logging.INFO, logger="costgate_local.stack.serve"):
        while time.monotonic() < deadline and (len(function.events) < 3 or _queue_counts(queue) != (0, 0)):
            bridge.poll()

    # Then the handler saw the same event three times, and then it was given up and logged as lost
    assert len(function.events) == 3
    assert function.events[0] == function.events[1] == function.events[2]
    assert _queue_counts(queue) == (0, 0)
    lost = [r for r in caplog.records if "LOST EVENT" in r.getMessage()]
    assert len(lost) == 1
    assert "incoming/job/broken.txt" in lost[0].getMessage()
    assert lost[0].levelno == logging.ERROR
    retried = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retried) == 2


def test_an_event_that_fails_once_is_delivered_again_after_the_retry_delay(queue: Queue) -> None:
    # Given a function that fails once, and a bridge that retries after 1 s
    function = FakeFunction(failures=1)
    bridge = S3EventBridge(queue.sqs, queue.url, function.local(), threading.Event(), wait_s=1, retry_after_s=1)
    queue.s3.put_object(Bucket=queue.bucket, Key="incoming/job/flaky.txt", Body=b"x")

    # When the bridge polls until the handler succeeded
    started = time.monotonic()
    while len(function.events) < 2 and time.monotonic() - started < DEADLINE_S:
        bridge.poll()

    # Then the second delivery came after the delay, and then the message was deleted
    assert len(function.events) == 2
    assert time.monotonic() - started >= 1.0
    assert _queue_counts(queue) == (0, 0)


def test_bridge_thread_skips_s3_test_events_and_stops_with_the_server(queue: Queue) -> None:
    # Given a running bridge thread
    function = FakeFunction()
    stop = threading.Event()
    thread = threading.Thread(target=S3EventBridge(queue.sqs, queue.url, function.local(), stop, wait_s=1).run)
    thread.start()
    try:
        # When S3's test event and then an upload's event reach the queue
        queue.sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps({"Event": "s3:TestEvent"}))
        queue.s3.put_object(Bucket=queue.bucket, Key="incoming/job/a.md", Body=b"# a")
        assert function.called.wait(DEADLINE_S)
    finally:
        stop.set()
        thread.join(DEADLINE_S)

    # Then only the upload reached the handler, and the thread ended within its poll's wait
    assert not thread.is_alive()
    assert [parse_s3_event(e)[0].key for e in function.events] == ["incoming/job/a.md"]


def test_schedule_loop_runs_the_handler_with_scheduled_events_until_stopped() -> None:
    # Given a loop that ticks every 50 ms, whose first tick fails
    function = FakeFunction(failures=1)
    stop = threading.Event()
    thread = threading.Thread(target=ScheduleLoop(function.local("BatchFunction", 900), 0.05, stop).run)

    # When it runs for a few ticks and is stopped
    thread.start()
    deadline = time.monotonic() + DEADLINE_S
    while len(function.events) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(DEADLINE_S)

    # Then a failed tick did not stop the loop, the loop stopped, and each tick got an EventBridge event
    assert not thread.is_alive()
    assert len(function.events) >= 3
    fixture = load_event("batch", "scheduled")
    for event in function.events:
        assert set(event) == set(fixture)
        assert (event["detail-type"], event["source"], event["detail"]) == ("Scheduled Event", "aws.events", {})
        assert ":rule/" in event["resources"][0]
    assert len({event["id"] for event in function.events}) == len(function.events)
    assert function.contexts[0].get_remaining_time_in_millis() > 800_000


def test_scheduled_event_has_the_fixtures_shape() -> None:
    event = scheduled_event("arn:aws:events:us-east-1:123456789012:rule/r", datetime(2026, 11, 29, 9, 30, tzinfo=UTC))
    fixture = load_event("batch", "scheduled")
    assert {k: v for k, v in event.items() if k not in {"id", "resources"}} == {
        k: v for k, v in fixture.items() if k not in {"id", "resources"}
    }


def test_the_local_stack_loads_both_batch_functions_with_one_bucket_name() -> None:
    # Given the template and the names the local stack gives its pseudo parameters and resources
    template = load_template()
    bucket = resolve(template["Resources"]["Bucket"]["Properties"]["BucketName"], PSEUDO_PARAMETERS, "Bucket")
    refs = {**PSEUDO_PARAMETERS, "Table": "t", "Bucket": bucket, "ClaudeApiUrl": "http://sim"}

    # When IngestFunction (bucket by !Sub) and BatchFunction (bucket by !Ref) are loaded from it
    ingest = LocalFunction.from_template(template, "IngestFunction", refs=refs)
    batch = LocalFunction.from_template(template, "BatchFunction", refs=refs)

    # Then both work on the same bucket, the one `costgate serve` creates, and take their template settings
    assert bucket == "costgate-local-documents-123456789012-us-east-1"
    assert ingest.environment["COSTGATE_BUCKET"] == batch.environment["COSTGATE_BUCKET"] == bucket
    assert ingest.environment["COSTGATE_BATCH_TENANT"] == "documents"  # the parameter's default
    assert (ingest.timeout_s, batch.timeout_s, batch.memory_mb) == (900, 900, 2048)
    assert ingest.handler.__module__ == "lambda_IngestFunction"
    assert batch.handler.__module__ == "lambda_BatchFunction"


def test_a_sub_the_local_stack_cannot_resolve_is_named() -> None:
    with pytest.raises(ValueError, match=r"no value for \$\{AWS::StackName\} in !Sub"):
        resolve({"Fn::Sub": "${AWS::StackName}-documents"}, {}, "Bucket")

"""The stream bridge: the table's DynamoDB stream (moto) delivered to a function as a Lambda event source
mapping does: in order, retried, partially failed, bisected, expired, given up."""

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from costgate_local.stack.aws import LocalAwsEndpoints
from costgate_local.stack.stream_bridge import Record, StreamBridge, enable_stream, matches
from costgate_local.stack.template import load_template, stream_source


def _client(service: str, endpoints: LocalAwsEndpoints) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoints.endpoint_url,
        region_name=endpoints.region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


@pytest.fixture
def dynamodb(local_aws: LocalAwsEndpoints) -> Any:
    return _client("dynamodb", local_aws)


@pytest.fixture
def streams(local_aws: LocalAwsEndpoints) -> Any:
    return _client("dynamodbstreams", local_aws)


@pytest.fixture
def stream_arn(ledger_table: str, dynamodb: Any) -> str:
    return enable_stream(dynamodb, ledger_table)


def _put(dynamodb: Any, table: str, pk: str, **attributes: dict[str, Any]) -> None:
    dynamodb.put_item(TableName=table, Item={"PK": {"S": pk}, "SK": {"S": "ROW"}, **attributes})


class Function:
    """Records every event; fails as told: `raise_times` whole invocations, or reports `fail_on` keys."""

    def __init__(self, raise_times: int = 0, fail_on: Sequence[str] = (), raise_on: Sequence[str] = ()) -> None:
        self.events: list[list[str]] = []
        self.raise_times = raise_times
        self.fail_on = set(fail_on)
        self.raise_on = set(raise_on)

    def __call__(self, event: dict[str, Any]) -> Any:
        keys = [record["dynamodb"]["Keys"]["PK"]["S"] for record in event["Records"]]
        self.events.append(keys)
        if self.raise_times > 0:
            self.raise_times -= 1
            raise RuntimeError("injected")
        if self.raise_on & set(keys):
            raise RuntimeError("poison")
        failed = [
            r["dynamodb"]["SequenceNumber"]
            for r in event["Records"]
            if r["dynamodb"]["Keys"]["PK"]["S"] in self.fail_on
        ]
        if failed:
            self.fail_on.clear()  # fails once
        return {"batchItemFailures": [{"itemIdentifier": sequence} for sequence in failed]}


def _drain(bridge: StreamBridge, polls: int = 20) -> None:
    for _ in range(polls):
        bridge.poll()


def test_records_arrive_in_order_shaped_as_lambda_sends_them(
    dynamodb: Any, streams: Any, ledger_table: str, stream_arn: str
) -> None:
    _put(dynamodb, ledger_table, "A", body={"B": b"\x00\xff"})
    dynamodb.update_item(
        TableName=ledger_table,
        Key={"PK": {"S": "A"}, "SK": {"S": "ROW"}},
        UpdateExpression="SET n = :n",
        ExpressionAttributeValues={":n": {"N": "1"}},
    )
    dynamodb.delete_item(TableName=ledger_table, Key={"PK": {"S": "A"}, "SK": {"S": "ROW"}})
    events: list[dict[str, Any]] = []
    bridge = StreamBridge(streams, stream_arn, events.append, batch_size=10)
    assert bridge.poll() == 3
    assert bridge.poll() == 0  # nothing is delivered twice once done
    (event,) = events
    records = event["Records"]
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE"]
    sequences = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert sequences == sorted(sequences)
    first = records[0]
    assert first["eventSource"] == "aws:dynamodb"
    assert first["eventSourceARN"] == stream_arn
    assert first["dynamodb"]["NewImage"]["body"] == {"B": "AP8="}  # base64, as JSON carries it
    assert isinstance(first["dynamodb"]["ApproximateCreationDateTime"], int)
    assert records[1]["dynamodb"]["OldImage"]["PK"] == {"S": "A"}  # NEW_AND_OLD_IMAGES


def test_a_failed_batch_comes_back_whole(dynamodb: Any, streams: Any, ledger_table: str, stream_arn: str) -> None:
    for pk in "ABC":
        _put(dynamodb, ledger_table, pk)
    function = Function(raise_times=1)
    _drain(StreamBridge(streams, stream_arn, function, batch_size=10))
    assert function.events == [["A", "B", "C"], ["A", "B", "C"]]  # the same batch twice: handlers must be idempotent


def test_a_reported_failure_resumes_at_the_lowest_failed_record(
    dynamodb: Any, streams: Any, ledger_table: str, stream_arn: str
) -> None:
    for pk in "ABCD":
        _put(dynamodb, ledger_table, pk)
    function = Function(fail_on=["C", "D"])
    _drain(StreamBridge(streams, stream_arn, function, batch_size=10))
    assert function.events == [["A", "B", "C", "D"], ["C", "D"]]


def test_bisection_isolates_a_poison_record_and_gives_it_up(
    dynamodb: Any, streams: Any, ledger_table: str, stream_arn: str
) -> None:
    for pk in "ABCD":
        _put(dynamodb, ledger_table, pk)
    lost: list[tuple[list[str], str]] = []

    def on_failure(records: Sequence[Record], reason: str) -> None:
        lost.append(([r["dynamodb"]["Keys"]["PK"]["S"] for r in records], reason))

    function = Function(raise_on=["C"])
    bridge = StreamBridge(
        streams, stream_arn, function, batch_size=4, bisect_on_error=True, max_retry_attempts=1, on_failure=on_failure
    )
    _drain(bridge)
    # ABCD fails → AB (done) → CD fails → C fails, retried once, given up → D
    assert function.events == [["A", "B", "C", "D"], ["A", "B"], ["C", "D"], ["C"], ["C"], ["D"]]
    assert lost == [(["C"], "MaximumRetryAttempts (1)")]


def test_records_past_their_age_are_not_delivered(
    dynamodb: Any, streams: Any, ledger_table: str, stream_arn: str
) -> None:
    _put(dynamodb, ledger_table, "OLD")
    lost: list[str] = []
    later = datetime.now(UTC) + timedelta(minutes=5)
    function = Function()
    bridge = StreamBridge(
        streams,
        stream_arn,
        function,
        max_record_age_s=60,
        clock=lambda: later,
        on_failure=lambda records, reason: lost.append(reason),
    )
    _drain(bridge, polls=2)
    assert function.events == []
    assert lost == ["MaximumRecordAgeInSeconds"]


def test_latest_starts_after_what_the_stream_already_holds(
    dynamodb: Any, streams: Any, ledger_table: str, stream_arn: str
) -> None:
    _put(dynamodb, ledger_table, "BEFORE")
    function = Function()
    bridge = StreamBridge(streams, stream_arn, function, starting_position="LATEST")
    bridge.poll()
    _put(dynamodb, ledger_table, "AFTER")
    _drain(bridge, polls=2)
    assert function.events == [["AFTER"]]


def test_a_cancelled_transaction_leaves_no_record(
    dynamodb: Any, streams: Any, ledger_table: str, stream_arn: str
) -> None:
    _put(dynamodb, ledger_table, "A", n={"N": "1"})
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": ledger_table,
                        "Key": {"PK": {"S": "A"}, "SK": {"S": "ROW"}},
                        "UpdateExpression": "ADD n :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
                {
                    "Put": {
                        "TableName": ledger_table,
                        "Item": {"PK": {"S": "B"}, "SK": {"S": "ROW"}},
                        "ConditionExpression": "attribute_exists(PK)",
                    }
                },
            ]
        )
    function = Function()
    _drain(StreamBridge(streams, stream_arn, function), polls=2)
    assert function.events == [["A"]]  # the put only: the cancelled ADD left no MODIFY behind


def test_run_stops_when_told(dynamodb: Any, streams: Any, ledger_table: str, stream_arn: str) -> None:
    _put(dynamodb, ledger_table, "A")
    function = Function()
    stop = threading.Event()
    thread = threading.Thread(target=StreamBridge(streams, stream_arn, function).run, args=(stop, 0.05))
    thread.start()
    for _ in range(100):
        if function.events:
            break
        stop.wait(0.05)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert function.events == [["A"]]


def test_filters_pass_only_matching_records_and_the_rest_are_passed_over(
    dynamodb: Any, streams: Any, ledger_table: str, stream_arn: str
) -> None:
    # Given rows of two kinds, and a filter pattern (as an event source mapping's FilterCriteria) for one
    _put(dynamodb, ledger_table, "A", kind={"S": "keep"})
    _put(dynamodb, ledger_table, "B", kind={"S": "skip"})
    _put(dynamodb, ledger_table, "C", kind={"S": "keep"})
    function = Function()
    pattern = {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": ["keep"]}}}}
    bridge = StreamBridge(streams, stream_arn, function, batch_size=10, filters=[pattern])

    # When the stream is drained, twice
    _drain(bridge)

    # Then the function saw the matching records once, and the bridge knows it is caught up
    assert function.events == [["A", "C"]]
    assert bridge.caught_up
    # and a batch with nothing to deliver invokes nothing, but moves on
    _put(dynamodb, ledger_table, "D", kind={"S": "skip"})
    _drain(bridge)
    assert function.events == [["A", "C"]]


def test_a_filter_rule_the_bridge_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match="only lists of plain values"):
        matches({"dynamodb": {"NewImage": {"kind": {"S": [{"prefix": "k"}]}}}}, {"dynamodb": {"NewImage": {}}})
    assert not matches({"eventName": ["INSERT"]}, {"eventName": "MODIFY"})
    assert matches({"eventName": ["INSERT", "MODIFY"]}, {"eventName": "MODIFY"})


def test_a_tumbling_window_names_the_shard_and_an_answer_without_state_fails_the_batch(
    dynamodb: Any, streams: Any, ledger_table: str, stream_arn: str
) -> None:
    # Given a function that answers without a state the first time, then as a tumbling window requires
    _put(dynamodb, ledger_table, "A")
    events: list[dict[str, Any]] = []

    def function(event: dict[str, Any]) -> dict[str, Any]:
        events.append(event)
        return {} if len(events) == 1 else {"state": {}, "batchItemFailures": []}

    # When it gets the stream through a bridge with a 60-second tumbling window
    bridge = StreamBridge(streams, stream_arn, function, batch_size=10, tumbling_window_s=60)
    _drain(bridge)

    # Then the first answer failed its batch, which came back, and every event named its shard and window
    assert len(events) == 2
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
    assert {e["shardId"] for e in events} == {shard}
    assert all(e["eventSourceARN"] == stream_arn and e["state"] == {} for e in events)
    assert events[0]["window"]["end"] > events[0]["window"]["start"]


def test_a_bridge_is_set_up_from_the_templates_event_source(streams: Any, stream_arn: str) -> None:
    source = stream_source(load_template(), "AggregatorFunction")
    bridge = StreamBridge.from_event(streams, stream_arn, lambda event: {"state": {}}, source)
    assert (bridge.batch_size, bridge.bisect_on_error, bridge.max_retry_attempts) == (1000, True, -1)
    assert bridge.max_record_age_s is None
    assert bridge.tumbling_window_s == 60
    assert len(bridge.filters) == 2

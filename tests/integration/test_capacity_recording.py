"""`costgate capacity`'s recording: units of real DynamoDB calls against moto, and a real request through
ApiFunction recorded before and after its Claude call."""

import contextlib
import io
import json
import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest

from costgate_local.cli import main as cli_main
from costgate_local.stack.aws import LocalAwsEndpoints
from costgate_local.stack.template import load_template, table_create_args
from costgate_local.tools.capacity import Phase, item_size
from costgate_local.tools.capacity_modelled import shards_for
from costgate_local.tools.capacity_recorder import DynamoRecorder, TableSchema
from costgate_local.tools.capacity_workload import SCENARIOS, record_scenarios


@pytest.fixture
def client(local_aws: LocalAwsEndpoints) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=local_aws.endpoint_url,
        region_name=local_aws.region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


@pytest.fixture
def recorder(ledger_table: str, client: Any) -> Iterator[DynamoRecorder]:
    def read(key: dict[str, Any]) -> dict[str, Any] | None:
        found: dict[str, Any] | None = client.get_item(TableName=ledger_table, Key=key, ConsistentRead=True).get("Item")
        return found

    schema = TableSchema.from_create_args(table_create_args(load_template(), ledger_table))
    with DynamoRecorder(read, schema).recording() as active:
        yield active


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"PK": {"S": pk}, "SK": {"S": sk}}


def test_writes_are_charged_on_the_larger_item_and_twice_in_a_transaction(
    recorder: DynamoRecorder, client: Any, ledger_table: str
) -> None:
    small = {**_key("REQ#1", "REQ"), "note": {"S": "x" * 100}}
    client.put_item(TableName=ledger_table, Item=small)
    client.update_item(
        TableName=ledger_table,
        Key=_key("REQ#1", "REQ"),
        UpdateExpression="SET big = :b",
        ExpressionAttributeValues={":b": {"S": "y" * 1500}},
    )
    client.transact_write_items(
        TransactItems=[{"Put": {"TableName": ledger_table, "Item": {**_key("REQ#2", "REQ"), "n": {"N": "1"}}}}]
    )
    put, update, transaction = recorder.take()
    assert [c.units for c in put.charges] == [Decimal(1)]
    big = client.get_item(TableName=ledger_table, Key=_key("REQ#1", "REQ"))["Item"]
    assert [c.units for c in update.charges] == [Decimal(math.ceil(item_size(big) / 1024))] == [Decimal(2)]
    assert [(c.partition, c.item, c.units) for c in transaction.charges] == [("REQ#2", "REQ", Decimal(2))]


def test_a_refused_condition_is_still_charged(recorder: DynamoRecorder, client: Any, ledger_table: str) -> None:
    client.put_item(TableName=ledger_table, Item=_key("REQ#1", "REQ"))
    recorder.take()
    with pytest.raises(client.exceptions.ConditionalCheckFailedException):
        client.put_item(
            TableName=ledger_table,
            Item={**_key("REQ#1", "REQ"), "body": {"S": "z" * 2000}},
            ConditionExpression="attribute_not_exists(PK)",
        )
    (refused,) = recorder.take()
    assert refused.error == "ConditionalCheckFailedException"
    assert [c.units for c in refused.charges] == [Decimal(2)]  # the new item's size: 2 KB


def test_an_index_entry_costs_a_write_of_its_own(recorder: DynamoRecorder, client: Any, ledger_table: str) -> None:
    item = {**_key("BATCH#1", "DOC#1"), "queue": {"S": "pending#3"}, "queue_at": {"S": "2026-12-05T00:00:00Z"}}
    client.put_item(TableName=ledger_table, Item=item)
    client.update_item(TableName=ledger_table, Key=_key("BATCH#1", "DOC#1"), UpdateExpression="REMOVE queue, queue_at")
    put, removed = recorder.take()
    one = Decimal(1)
    assert [(c.partition, c.units) for c in put.charges] == [("BATCH#1", one), ("Queue:pending#3", one)]
    assert [(c.partition, c.units) for c in removed.charges] == [("BATCH#1", one), ("Queue:pending#3", one)]


def test_reads_sum_a_querys_items_and_halve_eventual_consistency(
    recorder: DynamoRecorder, client: Any, ledger_table: str
) -> None:
    for number in range(3):  # 3 items of ~2 KB: 6 KB read together, 2 blocks of 4 KB
        client.put_item(TableName=ledger_table, Item={**_key("DAY#1", f"ROLLUP#{number}"), "x": {"S": "x" * 2000}})
    recorder.take()
    client.query(
        TableName=ledger_table,
        KeyConditionExpression="#p = :p",
        ExpressionAttributeNames={"#p": "PK"},
        ExpressionAttributeValues={":p": {"S": "DAY#1"}},
    )
    client.get_item(TableName=ledger_table, Key=_key("DAY#1", "ROLLUP#0"), ConsistentRead=True)
    client.get_item(TableName=ledger_table, Key=_key("NOPE", "NOPE"))
    query, strong, missing = recorder.take()
    assert [(c.partition, c.item, c.units) for c in query.charges] == [("DAY#1", None, Decimal(1))]
    assert [c.units for c in strong.charges] == [Decimal(1)]
    assert [c.units for c in missing.charges] == [Decimal("0.5")]


@pytest.mark.slow
def test_a_miss_through_apifunction_is_recorded_before_and_after_its_claude_call() -> None:
    # Given the miss path (budgets on key, tenant and feature) recorded through ApiFunction, its budgets in 64 shards
    miss = next(scenario for scenario in SCENARIOS if scenario.name == "miss")
    shards = shards_for(Decimal(10_000))
    samples = record_scenarios(2, [miss], shards=shards)["miss"]
    cold, warm = samples[:2], samples[2:]
    assert [s.cold for s in samples] == [True, True, False, False, False, False]
    assert all(s.called_claude and s.status == 200 for s in samples)
    for sample in warm:
        # Then a warm request reads the exact answer, then writes its row reserved beside its hold on one shard
        before = [call for call in sample.calls if call.phase is Phase.BEFORE]
        assert [call.operation for call in before[:1]] == ["GetItem"]
        assert sorted(call.operation for call in before[1:]) == ["PutItem", "UpdateItem"]
        assert sample.round_trips(Phase.BEFORE) == 2
        (take,) = (call for call in before if call.operation == "UpdateItem")
        assert [(c.partition.split("#")[0], c.units) for c in take.charges] == [("BGT", Decimal(1))]
        # and after Claude settles the row, gives the unused hold back to its shard and stores the answer:
        # no rollup, no budget root (sharded budgets have no remaining-budget receipt)
        after = sorted(
            (call.operation, call.charges[0].partition.split("#")[0])
            for call in sample.calls
            if call.phase is Phase.AFTER
        )
        assert after == [("PutItem", "ACIDX"), ("PutItem", "ACX"), ("UpdateItem", "BGT"), ("UpdateItem", "REQ")]
    # A cold environment also reads the key, the feature, its gap histogram and the budget definitions.
    assert all(s.round_trips(Phase.BEFORE) == 6 for s in cold)


@pytest.mark.slow
def test_capacity_at_10000_requests_a_second_for_one_tenant_meets_the_goals() -> None:
    # When an operator sizes a deployment for 10,000 requests/s from one tenant
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["capacity", "--rps", "10000", "--tenants", "1", "--json", "--sample", "2"]) == 0
    report = json.loads(out.getvalue())

    # Then no item or partition is over DynamoDB's limits, a miss costs at most $10 per million in DynamoDB,
    # and a warm request makes 2 round trips before Claude
    assert report["goals"] == {
        "no_item_or_partition_over_limits": True,
        "dynamodb_at_most_10_usd_per_million": True,
        "at_most_2_round_trips_before_claude": True,
    }
    assert report["hottest_item_wcu_per_s"] <= 1000
    assert report["hottest_partition_wcu_per_s"] <= 1000
    assert report["hottest_partition_rcu_per_s"] <= 3000
    assert Decimal(str(report["dynamodb_usd_per_million_requests"])) <= 10
    assert report["round_trips_before_claude"] == 2

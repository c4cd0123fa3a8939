"""AggregatorFunction against moto's stream: exactly once when Lambda hands it the same records again, and the
template's filter letting through exactly the records the aggregator counts."""

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from costgate.accounting.ledger import RequestState, ReservedRequest, new_request_id
from costgate.dal.ledger import DynamoLedgerStore, ended_event
from costgate.dal.rollups import DynamoRollupStore
from costgate_local.stack.aws import LocalAwsEndpoints
from costgate_local.stack.stream_bridge import matches
from costgate_local.stack.template import load_template, stream_source
from functions.aggregator import handler
from tests.fakes.accounting import make_entry
from tests.integration.stream import bridge_for, invoke

NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DAY = NOON.date()
SHARD = "shardId-00000001700000000000-0a1b2c3d"


def _row(feature: str = "chat", held: str = "0.5") -> ReservedRequest:
    return ReservedRequest(new_request_id(), NOON, "acme", feature, "claude-opus-5-5", Decimal(held), key_id="k1")


@pytest.fixture
def ledger(ledger_table: str) -> DynamoLedgerStore:
    return DynamoLedgerStore()


def _records(local_aws: LocalAwsEndpoints, table: str) -> list[dict[str, Any]]:
    """Every record the table's stream holds, as Lambda would put them in an event."""
    captured: list[dict[str, Any]] = []

    def keep(event: dict[str, Any]) -> dict[str, Any]:
        captured.extend(event["Records"])
        return {"state": {}}

    bridge = bridge_for(local_aws, table)
    original, original_filters = bridge.invoke, bridge.filters
    bridge.invoke, bridge.filters = keep, ()
    try:
        while bridge.poll():
            pass
    finally:
        bridge.invoke, bridge.filters = original, original_filters
    return captured


def _event(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": records,
        "shardId": SHARD,
        "eventSourceARN": records[0]["eventSourceARN"],
        "window": {"start": "2026-11-20T12:00:00Z", "end": "2026-11-20T12:01:00Z"},
        "state": {},
        "isFinalInvokeForWindow": False,
        "isWindowTerminatedEarly": False,
    }


def _totals() -> dict[str, Any]:
    store = DynamoRollupStore()
    rollups = sorted(
        (r.feature, r.hour, r.requests, r.cost_usd, r.swept_requests, r.swept_usd) for r in store.rollups(DAY, DAY)
    )
    rejections = sorted((r.feature, r.count) for r in store.rejections(DAY, DAY))
    return {"rollups": rollups, "rejections": rejections}


@pytest.fixture
def six_ended(every_record: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stream records of the six rows' ends (settled, refused, settled, swept, abandoned, a hit), in order."""
    return [record for record in every_record if ended_event(record) is not None]


@pytest.fixture
def every_record(ledger: DynamoLedgerStore, local_aws: LocalAwsEndpoints, ledger_table: str) -> list[dict[str, Any]]:
    """Six rows ended (settled, refused, swept, abandoned, a hit): every stream record, reservations included."""
    rows = [_row(), _row(), _row("search"), _row(), _row("search")]
    for row in rows:
        ledger.reserve(row)
    ledger.settle(rows[0].request_id, make_entry(rows[0].request_id, cost_usd="0.1"))
    ledger.end(rows[1].request_id, RequestState.REFUSED)
    ledger.settle(rows[2].request_id, make_entry(rows[2].request_id, feature="search", cost_usd="0.2"))
    ledger.end(rows[3].request_id, RequestState.SWEPT)
    ledger.end(rows[4].request_id, RequestState.ABANDONED)
    ledger.record(make_entry(new_request_id(), cost_usd="0.3"))
    return _records(local_aws, ledger_table)


def test_the_same_batch_twice_leaves_the_rollups_as_one_application(six_ended: list[dict[str, Any]]) -> None:
    invoke(_event(six_ended))
    once = _totals()
    assert once == {
        "rollups": [("chat", 12, 3, Decimal("0.9"), 1, Decimal("0.5")), ("search", 12, 1, Decimal("0.2"), 0, 0)],
        "rejections": [("chat", 1)],
    }

    invoke(_event(six_ended))
    invoke(_event(six_ended[len(six_ended) // 2 :]))

    assert _totals() == once


def test_a_batch_retried_from_a_failure_or_after_dying_halfway_adds_each_record_once(
    six_ended: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a first try that dies after writing one target
    real_apply = DynamoRollupStore.apply
    calls = 0

    def dies_after_one(self: DynamoRollupStore, *args: Any, **kwargs: Any) -> str | None:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RuntimeError("the invocation timed out")
        return real_apply(self, *args, **kwargs)

    monkeypatch.setattr(DynamoRollupStore, "apply", dies_after_one)
    with pytest.raises(RuntimeError):
        invoke(_event(six_ended[:4]))
    monkeypatch.setattr(DynamoRollupStore, "apply", real_apply)

    # When Lambda retries from the third record on, running further, then the whole batch again
    invoke(_event(six_ended[2:]))
    invoke(_event(six_ended))

    # Then the rollups are one application of the six records
    assert _totals() == {
        "rollups": [("chat", 12, 3, Decimal("0.9"), 1, Decimal("0.5")), ("search", 12, 1, Decimal("0.2"), 0, 0)],
        "rejections": [("chat", 1)],
    }


def test_an_event_without_a_shard_id_is_refused(six_ended: list[dict[str, Any]]) -> None:
    # Without a tumbling window Lambda does not say which shard a batch comes from: no exactly-once then
    with pytest.raises(ValueError, match="tumbling window"):
        invoke({"Records": six_ended})
    assert handler.lane_of(_event(six_ended)).endswith(SHARD)


def test_the_templates_filter_passes_exactly_the_records_the_aggregator_counts(
    every_record: list[dict[str, Any]], local_aws: LocalAwsEndpoints, ledger_table: str
) -> None:
    # Given every record of the six rows (reservations too) and of the rollup items the aggregator wrote
    invoke(_event([record for record in every_record if ended_event(record) is not None]))
    records = every_record + _records(local_aws, ledger_table)
    source = stream_source(load_template(), "AggregatorFunction")
    patterns = [json.loads(f["Pattern"]) for f in source["FilterCriteria"]["Filters"]]

    # When each is put to the filter and to the aggregator's own parser
    passed = [any(matches(pattern, record) for pattern in patterns) for record in records]
    counted = [
        (found := ended_event(record)) is not None and found.state is not RequestState.ABANDONED for record in records
    ]

    # Then they agree on every record: 5 ended rows pass (the abandoned one need not), nothing else does
    assert passed == counted
    assert sum(passed) == 5
    assert len(records) > 12


def test_a_day_spans_the_tenants_partitions_and_a_tenant_reads_one(
    ledger: DynamoLedgerStore, local_aws: LocalAwsEndpoints, ledger_table: str
) -> None:
    from tests.integration.stream import aggregate  # noqa: PLC0415

    tenants = [f"tenant-{n}" for n in range(12)]
    for tenant in tenants:
        ledger.record(make_entry(new_request_id(), tenant=tenant, cost_usd="0.01"))
    aggregate(local_aws, ledger_table)

    store = DynamoRollupStore()
    assert sorted(r.tenant for r in store.rollups(DAY, DAY)) == sorted(tenants)
    assert [r.tenant for r in store.rollups(DAY, DAY, tenant="tenant-7")] == ["tenant-7"]

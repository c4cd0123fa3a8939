"""The capacity model: item sizes and units by DynamoDB's rules, shares of the request rate, and the arithmetic
that extrapolates them (every expected figure below is worked out by hand in its comment)."""

from collections.abc import Hashable
from decimal import Decimal
from typing import Any

import pytest

from costgate_local.tools.capacity import (
    Call,
    Charge,
    Deployment,
    KeyLoad,
    Phase,
    RequestSample,
    Spread,
    api_gateway_usd_per_million,
    item_size,
    key_loads,
    lambda_figures,
    rate,
    read_units,
    scenario_figures,
    value_size,
    write_units,
)
from costgate_local.tools.capacity_modelled import aggregator_figures, rollup_item_bytes, shards_for

# --- sizes and units ------------------------------------------------------------------------------------------


def test_item_size_counts_names_and_values_by_dynamodbs_rules() -> None:
    item: dict[str, Any] = {
        "PK": {"S": "REQ#abc"},  # 2 + 7
        "n": {"N": "12345.000"},  # 1 + (5 significant digits → 3 bytes) + 1
        "ok": {"BOOL": True},  # 2 + 1
        "b": {"B": b"\x00\x01\x02"},  # 1 + 3 raw bytes
        "l": {"L": [{"S": "ab"}, {"N": "7"}]},  # 1 + 3 + (1 + 2) + (1 + 2)
        "m": {"M": {"k": {"S": "v"}}},  # 1 + 3 + (1 + 1 + 1)
    }
    assert item_size(item) == 9 + 5 + 3 + 4 + 10 + 7


@pytest.mark.parametrize(
    ("number", "size"),
    [("0", 2), ("1000", 2), ("0.0001", 2), ("123.45", 4), ("-17", 2), ("12345678901234567890", 11)],
)
def test_number_size_is_one_byte_per_two_significant_digits_plus_one(number: str, size: int) -> None:
    assert value_size({"N": number}) == size


def test_binary_counts_raw_bytes_even_when_base64_encoded() -> None:
    assert value_size({"B": "AAEC"}) == 3  # base64 of 3 bytes, as moto keeps it


def test_write_units_round_up_to_kilobytes_and_double_in_a_transaction() -> None:
    assert write_units(0) == 1
    assert write_units(1024) == 1
    assert write_units(1025) == 2
    assert write_units(1025, transactional=True) == 4


def test_read_units_round_up_to_4_kb_and_halve_when_eventually_consistent() -> None:
    assert read_units(0) == Decimal("0.5")
    assert read_units(4096, consistent=True) == 1
    assert read_units(4097) == 1  # 2 blocks × 0.5
    assert read_units(4097, transactional=True) == 4


# --- shares -----------------------------------------------------------------------------------------------------


def _write(partition: str, item: str | None, units: str = "1", phase: Phase = Phase.BEFORE) -> Call:
    return Call("UpdateItem", phase, (Charge("write", partition, item, Decimal(units)),))


def _read(partition: str, item: str | None, units: str = "0.5") -> Call:
    return Call("GetItem", Phase.BEFORE, (Charge("read", partition, item, Decimal(units)),))


def _sample(tenant: str, *calls: Call, cold: bool = False) -> RequestSample:
    return RequestSample(tenant=tenant, cold=cold, status=200, called_claude=True, calls=calls)


def _loads(samples: list[RequestSample], kind: str = "write", by: str = "partition") -> dict[Hashable, KeyLoad]:
    return {load.key: load for load in key_loads(samples, kind, by=by)}  # type: ignore[arg-type]


def test_a_key_every_request_of_one_tenant_touches_is_that_tenants() -> None:
    samples = [_sample(t, _write(f"BUDGET#tenant:{t}", "day", "2"), _write("DAY#1", f"ROLLUP#{t}")) for t in "abab"]
    loads = _loads(samples)
    budget = loads["BUDGET#tenant:a"]
    assert (budget.spread, budget.tenant_bound, budget.share, budget.units_per_touch) == (
        Spread.EVERY,
        True,
        Decimal(1),
        Decimal(2),
    )
    day = loads["DAY#1"]  # both tenants' requests write the day's partition
    assert (day.spread, day.tenant_bound, day.share) == (Spread.EVERY, False, Decimal(1))


def test_a_key_of_its_own_per_request_takes_one_requests_units() -> None:
    samples = [_sample("a", _write(f"REQ#{i}", "REQ", "2"), _write(f"REQ#{i}", "REQ", "2")) for i in range(4)]
    loads = _loads(samples)
    assert len(loads) == 4
    assert (loads["REQ#0"].spread, loads["REQ#0"].units_per_touch) == (Spread.PER_REQUEST, Decimal(4))  # put + update


def test_a_hashed_family_shares_by_its_coincidences() -> None:
    # 6 requests, each writes 2 buckets of the family ACB#s: 12 draws; bucket x is drawn 3 times, y twice,
    # the rest once: pairs = C(3,2) + C(2,2) = 4, space = C(12,2) / 4 = 66 / 4 = 16.5 buckets,
    # share = (12 draws / 6 requests) / 16.5 = 2 / 16.5 = 0.1212...
    draws = [("x", "p"), ("x", "q"), ("x", "y"), ("y", "r"), ("s", "t"), ("u", "v")]
    samples = [_sample("a", _write(f"ACB#s#{one}", "e"), _write(f"ACB#s#{two}", "e")) for one, two in draws]
    samples += [_sample("b", _write("ACB#t#z", "e")) for _ in range(2)]  # another tenant: its scope is another family
    loads = _loads(samples)
    assert loads["ACB#s#x"].spread is Spread.HASHED
    assert loads["ACB#s#x"].share == Decimal(2) / (Decimal(66) / 4)
    assert loads["ACB#s#p"].share == loads["ACB#s#x"].share  # one share per family: the space is uniform


def test_a_key_only_cold_requests_read_is_a_warm_cache() -> None:
    samples = [
        _sample("a", _read("KEY#a", "KEY"), _read("ACX#1", "ANSWER"), cold=True),
        _sample("b", _read("KEY#b", "KEY"), _read("ACX#2", "ANSWER"), cold=True),
        *(_sample(tenant, _read(f"ACX#{tenant}{n}", "ANSWER")) for n in range(2) for tenant in "ab"),
    ]
    loads = _loads(samples, "read", by="item")
    assert loads[("KEY#a", "KEY")].spread is Spread.CACHED
    assert loads[("KEY#a", "KEY")].tenant_bound
    assert loads[("ACX#a0", "ANSWER")].spread is Spread.PER_REQUEST
    assert ("ACX#1", "ANSWER") not in loads  # the cold request's own lookup: every request makes one


def test_a_share_needs_two_requests_of_every_tenant() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        key_loads([_sample("a", _write("X", "1")), _sample("b", _write("X", "1"))], "write", by="item")


# --- rates and figures -------------------------------------------------------------------------------------------


def _deployment(rps: int = 10_000, tenants: int = 1) -> Deployment:
    return Deployment(
        rps=rps,
        tenants=tenants,
        claude_latency_s=Decimal(5),
        dynamodb_round_trip_s=Decimal("0.01"),
        memory_mb=1024,
        architecture="arm64",
        warm_cache_ttl_s=Decimal(30),
    )


def test_rates_scale_by_the_keys_population() -> None:
    samples = [
        _sample(t, _write(f"BUDGET#tenant:{t}", "day", "2"), _write("DAY#1", f"ROLLUP#{t}", "2")) for t in "abab"
    ]
    loads = _loads(samples)
    deployment = _deployment(rps=10_000, tenants=4)
    assert rate(loads["BUDGET#tenant:a"], deployment, Decimal(0)) == 5_000  # 10,000 / 4 tenants × 2 units
    assert rate(loads["DAY#1"], deployment, Decimal(0)) == 20_000  # every request of every tenant × 2 units


def test_a_cached_read_is_bounded_by_the_containers_refreshing_it() -> None:
    warm = [_sample("a", _read(f"ACX#{n}", "A")) for n in range(2)]
    samples = [_sample("a", _read("KEY#a", "KEY"), cold=True), *warm]
    (cached,) = [load for load in key_loads(samples, "read", by="item") if load.spread is Spread.CACHED]
    # 50,000 containers each read it again every 30 s: 1,666.67 reads/s (below the 10,000 arrivals/s), × 0.5 RRU.
    assert rate(cached, _deployment(), Decimal(50_000)) == Decimal(50_000) / 30 * Decimal("0.5")
    # 60 containers: 2 reads/s, far below the arrivals.
    assert rate(cached, _deployment(), Decimal(60)) == 1


def test_scenario_figures_cost_and_round_trips() -> None:
    # Per warm request: a read (0.5 RRU) and a reserve (2 WRU) before the call, a settle (4 WRU) after it.
    def request(tenant: str, number: int) -> RequestSample:
        return _sample(
            tenant,
            _read(f"ACX#{number}", "ANSWER"),
            _write(f"BUDGET#tenant:{tenant}", "day", "2"),
            _write(f"REQ#{number}", "REQ", "4", phase=Phase.AFTER),
        )

    samples = [request(t, n) for n, t in enumerate("abab")]
    figures = scenario_figures("miss", samples, _deployment())
    assert (figures.wru_per_request, figures.rru_per_request) == (Decimal(6), Decimal("0.5"))
    # 6 × $0.625 + 0.5 × $0.125 per million units
    assert figures.dynamodb_usd_per_million == Decimal("3.8125")
    assert (figures.round_trips_before_claude, figures.round_trips) == (2, 3)
    assert figures.lambda_duration_s == Decimal("5.03")  # Claude's 5 s + 3 round trips × 10 ms
    hottest = figures.hottest("partition", "write")
    assert hottest is not None
    assert (hottest.load.key, hottest.units_per_s) == ("BUDGET#tenant:a", Decimal(20_000))  # 10,000/s × 2 units


def test_lambda_figures() -> None:
    samples = [_sample(t, _write(f"REQ#{t}{n}", "REQ")) for n in range(2) for t in "ab"]
    figures = scenario_figures("miss", samples, _deployment())
    found = lambda_figures(figures, _deployment())
    # 5.01 s at 10,000/s: 50,100 concurrent; 1 GB × 5.01 s × $0.0000133334 × 10^6 + $0.20
    assert found.concurrency == Decimal("50100.00")
    assert found.usd_per_million == Decimal("0.20") + Decimal("5.01") * Decimal("0.0000133334") * 1_000_000
    assert found.seconds_to_scale_from_zero == 510  # 51 steps of 1,000 environments, 10 s each
    assert found.above_default_account_concurrency


def test_api_gateway_blends_its_monthly_tiers() -> None:
    first, blended = api_gateway_usd_per_million(100)  # 259.2 million a month: all in the first tier
    assert (first, blended) == (Decimal("3.50"), Decimal("3.50"))
    # 10,000/s: 25,920 million a month = 333 × 3.50 + 667 × 2.80 + 19,000 × 2.38 + 5,920 × 1.51
    _, blended = api_gateway_usd_per_million(10_000)
    expected = (333 * Decimal("3.50") + 667 * Decimal("2.80") + 19_000 * Decimal("2.38") + 5_920 * Decimal("1.51")) / (
        25_920
    )
    assert blended == expected


def test_deployment_refuses_more_tenants_than_requests() -> None:
    with pytest.raises(ValueError, match="tenants"):
        _deployment(rps=10, tenants=11)


def test_a_warm_cache_refreshed_during_the_recording_stays_a_warm_cache() -> None:
    samples = [
        _sample("a", _read("FEATURECFG", "chat"), _read("ACB#s#1", "e"), cold=True),
        _sample("a", _read("ACX#1", "A"), _read("ACB#s#1", "e")),
        _sample("a", _read("FEATURECFG", "chat"), _read("ACX#2", "A"), _read("ACB#s#2", "e")),  # its 30 s ran out
        _sample("a", _read("ACX#3", "A"), _read("ACB#s#1", "e")),
    ]
    loads = _loads(samples, "read", by="item")
    assert loads[("FEATURECFG", "chat")].spread is Spread.CACHED
    # Every warm request reads some bucket: a bucket the cold request also read is not a cache.
    assert loads[("ACB#s#1", "e")].spread is Spread.HASHED


def test_round_trips_are_the_median_warm_requests() -> None:
    samples = [
        _sample("a", _read("ACX#1", "A"), _write("B#a", "d")),
        _sample("a", _read("FEATURECFG", "chat"), _read("ACX#2", "A"), _write("B#a", "d")),  # a cache refresh
        _sample("a", _read("ACX#3", "A"), _write("B#a", "d")),
    ]
    assert scenario_figures("miss", samples, _deployment()).round_trips_before_claude == 2


# --- budget shards and the aggregator ---------------------------------------------------------------------------


def test_a_pair_gets_a_power_of_two_of_shards_each_near_half_a_partition() -> None:
    # 2 writes per request per shard; 500 WCU/s per shard at most
    assert shards_for(Decimal(1)) == 1
    assert shards_for(Decimal(250)) == 1  # 500 WCU/s on one shard
    assert shards_for(Decimal(251)) == 2
    assert shards_for(Decimal(10_000)) == 64  # 2 × 10,000 / 500 = 40 → 64: 312 WCU/s each


def test_a_declared_spread_beats_the_few_coincidences_a_short_sample_shows() -> None:
    # Given 4 requests per tenant landing on 4 different shards of 64 (no coincidence at all)
    samples = [
        _sample(t, _write(f"BGT#k-{t}#chat#{n}", "2026-11", "1"), _write(f"REQ#{t}{n}", "REQ"))
        for n in range(4)
        for t in "ab"
    ]

    # When the shard family is declared as spread over 64 keys
    loads = {load.key: load for load in key_loads(samples, "write", by="partition", spreads={"BGT#": 64})}

    # Then each shard takes 1/64 of its tenant's requests, not "a key per request"
    shard = loads["BGT#k-a#chat#0"]
    assert (shard.spread, shard.share, shard.tenant_bound) == (Spread.HASHED, Decimal(1) / 64, True)
    # and without the declaration the sample alone would call it a key per request
    undeclared = {load.key: load for load in key_loads(samples, "write", by="partition")}
    assert undeclared["BGT#k-a#chat#0"].spread is Spread.PER_REQUEST


def test_the_aggregator_writes_a_target_once_per_stream_shard_and_second() -> None:
    # Given 10,000 requests/s of one tenant making 100,000 WRU/s: 100 table partitions, so 100 stream shards
    deployment = Deployment(
        rps=10_000,
        tenants=1,
        claude_latency_s=Decimal(5),
        dynamodb_round_trip_s=Decimal("0.01"),
        memory_mb=1024,
        architecture="arm64",
        warm_cache_ttl_s=Decimal(30),
    )
    figures = aggregator_figures(deployment, Decimal(100_000), targets_per_tenant=3, rollup_partitions=16)

    # Then the tenant's rollup item takes one write per shard per second (100 records each: every batch
    # touches it), each of the item with 100 marks of 54 bytes: ceil((base + 5,400) / 1,024) units
    assert figures.stream_shards == 100
    assert figures.target_writes_per_s == 100
    assert figures.target_wru == write_units(rollup_item_bytes(100))
    assert rollup_item_bytes(100) - rollup_item_bytes(0) == 100 * 54
    assert figures.hottest_item_wcu_per_s == 100 * figures.target_wru
    assert figures.hottest_item_wcu_per_s < 1000
    # and per request: 3 targets × 100 writes/s × units / 10,000 requests/s
    assert figures.wru_per_request == 3 * 100 * figures.target_wru / 10_000
    # and the lag: the 1 s window, a quarter-second poll, three writes of 10 ms
    assert figures.lag_s == Decimal("1.28")


def test_a_quiet_tenant_is_not_in_every_batch() -> None:
    deployment = Deployment(
        rps=1_000,
        tenants=1_000,
        claude_latency_s=Decimal(5),
        dynamodb_round_trip_s=Decimal("0.01"),
        memory_mb=1024,
        architecture="arm64",
        warm_cache_ttl_s=Decimal(30),
    )
    figures = aggregator_figures(deployment, Decimal(10_000), targets_per_tenant=1, rollup_partitions=16)
    # 10 shards; a tenant's 1 request/s reaches a given shard's batch a tenth of the time: 1 write/s in all
    assert figures.stream_shards == 10
    assert figures.target_writes_per_s == 1
    # 1,000 tenants over 16 day partitions: 63 busy items share the hottest one
    assert figures.hottest_partition_wcu_per_s == 63 * figures.hottest_item_wcu_per_s


def test_calls_issued_while_another_is_in_flight_share_its_round_trip() -> None:
    def call(issued: float, done: float) -> Call:
        return Call("PutItem", Phase.BEFORE, (), issued=issued, done=done)

    # the exact answer read; the row put and the shard update sent together; after the call, two more
    sample = _sample(
        "a", call(0.0, 1.0), call(1.0, 2.5), call(1.1, 2.0), Call("UpdateItem", Phase.AFTER, (), issued=9, done=10)
    )
    assert sample.round_trips(Phase.BEFORE) == 2
    assert sample.round_trips() == 3
    # calls without times count one each, as sequential calls do
    assert _sample("a", _write("A", "x"), _write("B", "y")).round_trips() == 2

"""The capacity model: recorded DynamoDB calls → read/write units → load and cost at N requests/s.

Inputs are `RequestSample`s, the DynamoDB calls one real request made (`capacity_recorder` records
them through the local stack), each call's charges already in DynamoDB's units:

    write units  = ceil(item size / 1 KB), the larger of the item before and after; ×2 in a transaction
    read units   = ceil(size / 4 KB) (a Query sums its items first); ×0.5 eventually consistent, ×2 transactional

Extrapolating a sample to `rps` requests/s spread evenly over `tenants` tenants needs, for every item
and partition key, the share of requests that touch it. The sample holds requests of two tenants:
a key touched by both is global (it sees every tenant's requests), one touched by one tenant's
requests only is that tenant's (it sees rps / tenants). Within its population a key touched by
every request has share 1; one touched by a single request of a family that never repeats (a request
row, an answer keyed by its question) is per request: its load is what one request writes, whatever
the rate. A key touched by some requests but not all is hashed into a finite space (an LSH bucket):
its share is estimated from the coincidences in its family, the keys with the same prefix up to the
last '#': n touches that fall on the same key in k pairs put the space at C(n, 2) / k keys, each
taking (touches per request) / space of the requests. Where the code itself spreads a family over a
known number of keys (a pair's budget shards, the sweep index, the answer cache's partitions) that
number is the space instead (`spreads`): a short sample sees too few coincidences to estimate 64 keys.
A key read only by a container's first request is a warm-container cache: each busy container reads
it again once per cache TTL.

The aggregator's writes are not recorded (they come from the table's stream, per batch, not per
request): `capacity_modelled.aggregator_figures` models them from the table's write rate (one stream
shard per table partition), the batching window and the size of a target item with one mark per stream
shard; `capacity_modelled.shards_for` sizes a pair's budget shards.

Limits and prices are AWS's published figures (see the SOURCES mapping); money stays Decimal.
"""

import base64
import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum
from statistics import median_low
from typing import Any, Final, Literal

# --- DynamoDB's limits and prices -----------------------------------------------------------------------

PARTITION_WCU_PER_S: Final = Decimal(1000)
PARTITION_RCU_PER_S: Final = Decimal(3000)
# The default account quota an on-demand table's throughput is bounded by (raisable).
TABLE_ON_DEMAND_UNITS_PER_S: Final = Decimal(40000)
# us-east-1, on demand, Standard table class, since the November 2024 price cut.
USD_PER_MILLION_WRU: Final = Decimal("0.625")
USD_PER_MILLION_RRU: Final = Decimal("0.125")

# --- Lambda and API Gateway -------------------------------------------------------------------------------

LAMBDA_USD_PER_MILLION_REQUESTS: Final = Decimal("0.20")
# First monthly tier (arm64: the first 7.5 billion GB-s; x86_64: the first 6 billion). Volume tiers are not applied.
LAMBDA_USD_PER_GB_SECOND: Final = {"arm64": Decimal("0.0000133334"), "x86_64": Decimal("0.0000166667")}
LAMBDA_DEFAULT_ACCOUNT_CONCURRENCY: Final = 1000
# Per function: 1,000 more execution environments every 10 seconds.
LAMBDA_SCALING_ENVIRONMENTS_PER_10_S: Final = 1000
API_GATEWAY_ACCOUNT_RPS: Final = 10000
API_GATEWAY_ACCOUNT_BURST: Final = 5000
# REST API requests per month: (up to this many millions, USD per million); the last tier is open-ended.
API_GATEWAY_REST_TIERS: Final = (
    (Decimal(333), Decimal("3.50")),
    (Decimal(1000), Decimal("2.80")),
    (Decimal(20000), Decimal("2.38")),
    (None, Decimal("1.51")),
)
SECONDS_PER_MONTH: Final = 30 * 24 * 60 * 60

SOURCES: Final = {
    "partition limits": "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/warm-throughput-scenarios.html",
    "table on-demand quota": "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/on-demand-capacity-mode-max-throughput.html",
    "item sizes": "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html",
    "dynamodb on-demand prices": "https://aws.amazon.com/dynamodb/pricing/on-demand/ ($0.625 per million WRU,"
    " $0.125 per million RRU in us-east-1 since 2024-11-01)",
    "lambda prices": "https://aws.amazon.com/lambda/pricing/",
    "lambda scaling": "https://docs.aws.amazon.com/lambda/latest/dg/scaling-behavior.html",
    "api gateway quota": "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html",
    "api gateway prices": "https://aws.amazon.com/api-gateway/pricing/ (REST: $3.50, $2.80, $2.38, $1.51 per million)",
}

_KB: Final = 1024
_READ_BLOCK: Final = 4 * _KB
_HALF: Final = Decimal("0.5")


# --- item sizes and units ------------------------------------------------------------------------------------


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """An item's size as DynamoDB counts it: each attribute's name in UTF-8 bytes plus its value's size."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def value_size(value: Mapping[str, Any]) -> int:
    """One attribute value ({"S": ...}, {"N": ...}, ...) in bytes, by DynamoDB's published rules."""
    ((kind, data),) = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind == "N":
        return _number_size(str(data))
    if kind == "B":
        return _binary_size(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(element.encode()) for element in data)
    if kind == "NS":
        return sum(_number_size(str(element)) for element in data)
    if kind == "BS":
        return sum(_binary_size(element) for element in data)
    if kind == "L":
        return 3 + sum(1 + value_size(element) for element in data)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + value_size(element) for name, element in data.items())
    raise ValueError(f"not a DynamoDB attribute value type: {kind!r}")


def _binary_size(data: Any) -> int:
    # The raw bytes count; the wire (and moto) carry them base64-encoded.
    return len(data) if isinstance(data, bytes | bytearray) else len(base64.b64decode(data))


def _number_size(text: str) -> int:
    # 1 byte per two significant digits, plus 1; leading and trailing zeroes do not count.
    mantissa = text.lstrip("+-").lower().partition("e")[0].replace(".", "")
    digits = mantissa.strip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def write_units(size_bytes: int, *, transactional: bool = False) -> Decimal:
    units = Decimal(max(1, math.ceil(size_bytes / _KB)))
    return units * 2 if transactional else units


def read_units(size_bytes: int, *, consistent: bool = False, transactional: bool = False) -> Decimal:
    blocks = Decimal(max(1, math.ceil(size_bytes / _READ_BLOCK)))
    if transactional:
        return blocks * 2
    return blocks if consistent else blocks * _HALF


# --- what was recorded ---------------------------------------------------------------------------------------


class Phase(StrEnum):
    """When a call ran: before the request's Claude call began, or after (or the request never called Claude)."""

    BEFORE = "before"
    AFTER = "after"


@dataclass(frozen=True)
class Charge:
    """Units one call consumed on one item (`item` is its sort key) or, for a Query, on a partition (item None).

    `partition` is the partition key value, prefixed `<index>:` for a global secondary index.
    """

    kind: Literal["read", "write"]
    partition: str
    item: str | None
    units: Decimal


@dataclass(frozen=True)
class Call:
    operation: str
    phase: Phase
    charges: tuple[Charge, ...]
    error: str | None = None  # DynamoDB's error code when it refused the call (its units are still charged)
    # When the caller issued it and when its answer came (monotonic seconds): calls issued while another is
    # in flight share its round trip (the request path sends some in parallel). 0 and 0: one after another.
    issued: float = 0.0
    done: float = 0.0


@dataclass(frozen=True)
class RequestSample:
    """One request's DynamoDB calls. `cold`: the first request of its container (warm caches empty)."""

    tenant: str
    cold: bool
    status: int
    called_claude: bool
    calls: tuple[Call, ...]

    def units(self, kind: Literal["read", "write"]) -> Decimal:
        return sum((c.units for call in self.calls for c in call.charges if c.kind == kind), Decimal(0))

    def round_trips(self, phase: Phase | None = None) -> int:
        """Round trips to DynamoDB, in the given phase or all: calls one after another count one each, calls
        issued while another was still in flight count with it."""
        calls = sorted((c for c in self.calls if phase is None or c.phase is phase), key=lambda c: c.issued)
        trips, in_flight_until = 0, None
        for call in calls:
            if in_flight_until is None or call.issued >= in_flight_until:
                trips += 1
                in_flight_until = call.done
            else:
                in_flight_until = max(in_flight_until, call.done)
        return trips


# --- shares of the request rate ------------------------------------------------------------------------------


class Spread(StrEnum):
    EVERY = "every request"  # touched by every request of its population
    HASHED = "hashed"  # touched by a share of the requests, estimated from its family's coincidences
    PER_REQUEST = "per request"  # a key of its own for each request
    CACHED = "warm cache"  # read by a container's first request, then every cache TTL


@dataclass(frozen=True)
class KeyLoad:
    """How one item or partition key is loaded: per request of its population, and per second at a rate."""

    key: Hashable  # (partition, sort key) for an item, the partition key value for a partition
    kind: Literal["read", "write"]
    tenant_bound: bool  # sees one tenant's requests (rps / tenants) rather than every request
    spread: Spread
    share: Decimal  # of its population's requests that touch it (1 for per-request and cached keys)
    units_per_touch: Decimal  # mean units among the requests that touch it
    touched_by: int  # requests of the sample that touched it
    population: int  # requests of the sample it could have been touched by
    tenant: str | None = None  # the sample's tenant of a tenant-bound key


def family(key: str | None) -> str | None:
    """A key's family: the key up to its last '#' (REQ#<id> → REQ, ACB#<scope>#<bucket> → ACB#<scope>)."""
    if key is None or "#" not in key:
        return key
    return key.rsplit("#", 1)[0]


def _item_family(key: tuple[str, str | None]) -> tuple[str | None, str | None]:
    return family(key[0]), family(key[1])


def key_loads(
    samples: Sequence[RequestSample],
    kind: Literal["read", "write"],
    *,
    by: str,
    spreads: Mapping[str, int] | None = None,
) -> list[KeyLoad]:
    """Every item (`by="item"`) or partition key (`by="partition"`) the samples touched with `kind` charges.

    Warm samples give the shares. A warm-container cache shows in the reads: its kind of key (the text
    before the first '#') is read by cold requests and by some warm ones at most (those whose cache ran
    out while the sample was recorded). A cold request's own keys of a kind every request has (its row,
    its answer) add nothing the warm requests do not show, and are left out.
    """
    if by not in ("item", "partition"):
        raise ValueError("by must be 'item' or 'partition'")
    keyfn: Callable[[Charge], Hashable | None]
    if by == "item":
        keyfn = lambda charge: None if charge.item is None else (charge.partition, charge.item)  # noqa: E731
        familyfn: Callable[[Any], Hashable] = _item_family
    else:
        keyfn = lambda charge: charge.partition  # noqa: E731
        familyfn = family
    warm = [s for s in samples if not s.cold]
    cold = [s for s in samples if s.cold]
    warm_touches = _touches(warm, kind, keyfn)
    cold_touches = _touches(cold, kind, keyfn) if kind == "read" else {}
    cache_kinds = _cache_kinds(warm, cold)
    by_tenant: dict[str, int] = defaultdict(int)
    for sample in warm:
        by_tenant[sample.tenant] += 1
    if any(count < 2 for count in by_tenant.values()):
        raise ValueError("a share needs at least 2 warm requests of every tenant in the sample")

    loads: list[KeyLoad] = []
    populations: dict[Hashable, tuple[bool, int, str | None]] = {}
    for key, touches in warm_touches.items():
        tenants = {warm[i].tenant for i in touches}
        bound = len(tenants) == 1 and len(by_tenant) > 1
        tenant = next(iter(tenants)) if bound else None
        population = by_tenant[tenant] if tenant is not None else len(warm)
        populations[key] = (bound, population, tenant)
    cached = {key for key in [*warm_touches, *cold_touches] if kind == "read" and _kind_of(key) in cache_kinds}
    hashed = _hashed_shares(warm_touches, populations, familyfn, cached=cached, spreads=spreads or {})
    for key, touches in warm_touches.items():
        bound, population, tenant = populations[key]
        units = sum(touches.values(), Decimal(0)) / len(touches)
        if key in hashed and _declared(key, spreads or {}) is not None:
            spread, share = Spread.HASHED, hashed[key]
        elif len(touches) == population:
            spread, share = Spread.EVERY, Decimal(1)
        elif key in cached:
            # A warm-cache read a warm request repeated because its TTL ran out during the recording.
            spread, share = Spread.CACHED, Decimal(1)
        elif key in hashed:
            spread, share = Spread.HASHED, hashed[key]
        else:
            spread, share = Spread.PER_REQUEST, Decimal(1)
            units = max(touches.values())
        loads.append(KeyLoad(key, kind, bound, spread, share, units, len(touches), population, tenant))
    for key, touches in cold_touches.items():
        if key in warm_touches or key not in cached:
            continue
        tenants = {cold[i].tenant for i in touches}
        bound = len(tenants) == 1 and len({s.tenant for s in cold}) > 1
        units = sum(touches.values(), Decimal(0)) / len(touches)
        tenant = next(iter(tenants)) if bound else None
        loads.append(KeyLoad(key, kind, bound, Spread.CACHED, Decimal(1), units, len(touches), len(cold), tenant))
    return loads


def _declared(key: Hashable, spreads: Mapping[str, int]) -> int | None:
    """The number of keys the code spreads this key's family over, if `spreads` names its prefix."""
    partition = str(key if isinstance(key, str) else key[0])  # type: ignore[index]
    return next((count for prefix, count in spreads.items() if partition.startswith(prefix)), None)


def _kind_of(key: Hashable) -> str:
    partition = key if isinstance(key, str) else key[0]  # type: ignore[index]
    return str(partition).split("#", 1)[0]


def _cache_kinds(warm: Sequence[RequestSample], cold: Sequence[RequestSample]) -> set[str]:
    """Kinds of key cold requests read that not every warm request reads: what warm containers cache."""

    def kinds(sample: RequestSample) -> set[str]:
        return {_kind_of(c.partition) for call in sample.calls for c in call.charges if c.kind == "read"}

    every_warm = set.intersection(*(kinds(sample) for sample in warm)) if warm else set()
    return set().union(*(kinds(sample) for sample in cold)) - every_warm


def _touches(
    samples: Sequence[RequestSample], kind: str, keyfn: Callable[[Charge], Hashable | None]
) -> dict[Hashable, dict[int, Decimal]]:
    """key → {sample index → units that sample charged to it}."""
    found: dict[Hashable, dict[int, Decimal]] = defaultdict(dict)
    for index, sample in enumerate(samples):
        for call in sample.calls:
            for charge in call.charges:
                key = keyfn(charge) if charge.kind == kind else None
                if key is not None:
                    found[key][index] = found[key].get(index, Decimal(0)) + charge.units
    return found


def _hashed_shares(
    touches: Mapping[Hashable, Mapping[int, Decimal]],
    populations: Mapping[Hashable, tuple[bool, int, str | None]],
    familyfn: Callable[[Any], Hashable],
    cached: Iterable[Hashable],
    spreads: Mapping[str, int],
) -> dict[Hashable, Decimal]:
    """The share of each partly touched key whose family repeats keys (see the module docstring)."""
    skip = set(cached)
    families: dict[tuple[Hashable, str | None], list[Hashable]] = defaultdict(list)
    for key, touched in touches.items():
        _, population, tenant = populations[key]
        declared = _declared(key, spreads) is not None
        if (len(touched) < population or declared) and key not in skip:
            families[(familyfn(key), tenant)].append(key)
    shares: dict[Hashable, Decimal] = {}
    for members in families.values():
        counts = [len(touches[key]) for key in members]
        pairs = sum(c * (c - 1) // 2 for c in counts)
        declared_space = _declared(members[0], spreads)
        if pairs == 0 and declared_space is None:
            continue  # nothing repeats: a key per request
        draws = sum(counts)
        space = Decimal(declared_space) if declared_space is not None else Decimal(draws * (draws - 1) // 2) / pairs
        population = populations[members[0]][1]
        share = Decimal(draws) / population / space
        for key in members:
            shares[key] = min(share, Decimal(1))
    return shares


# --- extrapolation ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    """The rate to size for and what the model cannot record: Claude's latency, a DynamoDB round trip, the function."""

    rps: int
    tenants: int
    claude_latency_s: Decimal
    dynamodb_round_trip_s: Decimal
    memory_mb: int
    architecture: str  # arm64 | x86_64
    warm_cache_ttl_s: Decimal

    def __post_init__(self) -> None:
        if self.rps < 1 or self.tenants < 1:
            raise ValueError("rps and tenants must be at least 1")
        if self.tenants > self.rps:
            raise ValueError("more tenants than requests per second leaves some tenants idle; use tenants <= rps")
        if self.architecture not in LAMBDA_USD_PER_GB_SECOND:
            raise ValueError(f"architecture must be one of {', '.join(LAMBDA_USD_PER_GB_SECOND)}")


@dataclass(frozen=True)
class RatedKey:
    load: KeyLoad
    units_per_s: Decimal

    @property
    def limit(self) -> Decimal:
        return PARTITION_WCU_PER_S if self.load.kind == "write" else PARTITION_RCU_PER_S


@dataclass(frozen=True)
class ScenarioFigures:
    """One scenario (a request kind) at the deployment's rate."""

    name: str
    requests: int  # warm samples the figures come from
    wru_per_request: Decimal
    rru_per_request: Decimal
    cached_rru_per_request: Decimal  # warm-cache refreshes, spread over every request
    round_trips_before_claude: int  # the median warm request's
    round_trips_before_claude_cold: int
    round_trips: int  # warm, all phases
    called_claude: bool
    items: dict[str, list[RatedKey]] = field(default_factory=dict)  # "write"/"read" → hottest first
    partitions: dict[str, list[RatedKey]] = field(default_factory=dict)
    lambda_duration_s: Decimal = Decimal(0)

    def hottest(self, level: Literal["item", "partition"], kind: Literal["read", "write"]) -> RatedKey | None:
        rated = (self.items if level == "item" else self.partitions).get(kind) or []
        return rated[0] if rated else None

    def hottest_units(self, level: Literal["item", "partition"], kind: Literal["read", "write"]) -> Decimal:
        found = self.hottest(level, kind)
        return found.units_per_s if found is not None else Decimal(0)

    @property
    def dynamodb_usd_per_million(self) -> Decimal:
        reads = self.rru_per_request + self.cached_rru_per_request
        return self.wru_per_request * USD_PER_MILLION_WRU + reads * USD_PER_MILLION_RRU


def rate(load: KeyLoad, deployment: Deployment, concurrency: Decimal) -> Decimal:
    """Units per second the key takes at the deployment's rate."""
    arrivals = Decimal(deployment.rps) / (deployment.tenants if load.tenant_bound else 1)
    if load.spread is Spread.PER_REQUEST:
        return load.units_per_touch  # one request's writes, whatever the rate
    if load.spread is Spread.CACHED:
        return min(arrivals, concurrency / deployment.warm_cache_ttl_s) * load.units_per_touch
    return arrivals * load.share * load.units_per_touch


def scenario_figures(
    name: str, samples: Sequence[RequestSample], deployment: Deployment, spreads: Mapping[str, int] | None = None
) -> ScenarioFigures:
    warm = [s for s in samples if not s.cold]
    cold = [s for s in samples if s.cold]
    if not warm:
        raise ValueError(f"scenario {name}: no warm request was recorded")
    called = all(s.called_claude for s in warm)
    # The median: a warm request that refreshed an expired warm cache is not the steady state.
    round_trips = median_low(s.round_trips() for s in warm)
    duration = deployment.dynamodb_round_trip_s * round_trips
    if called:
        duration += deployment.claude_latency_s
    concurrency = Decimal(deployment.rps) * duration
    figures = ScenarioFigures(
        name=name,
        requests=len(warm),
        wru_per_request=_mean(s.units("write") for s in warm),
        rru_per_request=_mean(s.units("read") for s in warm),
        cached_rru_per_request=Decimal(0),
        round_trips_before_claude=median_low(s.round_trips(Phase.BEFORE) for s in warm) if called else 0,
        round_trips_before_claude_cold=max((s.round_trips(Phase.BEFORE) for s in cold), default=0) if called else 0,
        round_trips=round_trips,
        called_claude=called,
        lambda_duration_s=duration,
    )
    cached_reads = Decimal(0)
    for level, target in (("item", figures.items), ("partition", figures.partitions)):
        for kind in ("write", "read"):
            loads = key_loads(samples, kind, by=level, spreads=spreads)
            rated = sorted(
                (RatedKey(load, rate(load, deployment, concurrency)) for load in loads),
                key=lambda r: r.units_per_s,
                reverse=True,
            )
            target[kind] = rated
            if level == "partition" and kind == "read":
                cached_reads = sum((r.units_per_s for r in rated if r.load.spread is Spread.CACHED), Decimal(0))
    return _with_cached(figures, cached_reads / deployment.rps)


def _with_cached(figures: ScenarioFigures, cached_rru_per_request: Decimal) -> ScenarioFigures:
    return replace(figures, cached_rru_per_request=cached_rru_per_request)


def _mean(values: Iterable[Decimal]) -> Decimal:
    found = list(values)
    return sum(found, Decimal(0)) / len(found)


# --- Lambda and API Gateway ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LambdaFigures:
    concurrency: Decimal
    usd_per_million: Decimal
    seconds_to_scale_from_zero: Decimal
    above_default_account_concurrency: bool


def lambda_figures(figures: ScenarioFigures, deployment: Deployment) -> LambdaFigures:
    concurrency = Decimal(deployment.rps) * figures.lambda_duration_s
    gb_seconds = Decimal(deployment.memory_mb) / 1024 * figures.lambda_duration_s
    usd = LAMBDA_USD_PER_MILLION_REQUESTS + gb_seconds * LAMBDA_USD_PER_GB_SECOND[deployment.architecture] * 1_000_000
    steps = (concurrency / LAMBDA_SCALING_ENVIRONMENTS_PER_10_S).to_integral_value(rounding=ROUND_CEILING)
    return LambdaFigures(
        concurrency=concurrency,
        usd_per_million=usd,
        seconds_to_scale_from_zero=steps * 10,
        above_default_account_concurrency=concurrency > LAMBDA_DEFAULT_ACCOUNT_CONCURRENCY,
    )


def api_gateway_usd_per_million(rps: int) -> tuple[Decimal, Decimal]:
    """(first-tier price, blended price over a 30-day month at `rps`), USD per million REST requests."""
    millions = Decimal(rps) * SECONDS_PER_MONTH / 1_000_000
    left, below, total = millions, Decimal(0), Decimal(0)
    for ceiling, price in API_GATEWAY_REST_TIERS:
        in_tier = left if ceiling is None else min(left, ceiling - below)
        total += in_tier * price
        left -= in_tier
        if ceiling is not None:
            below = ceiling
        if left <= 0:
            break
    return API_GATEWAY_REST_TIERS[0][1], total / millions

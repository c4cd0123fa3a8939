"""The ledger in DynamoDB: one row per request, reserved before the Claude call and ended once after.

A row is written `reserved` with a plain conditional put (the id is new) and carries the sweep index
entry (`queue = sweep#<n>`, `queue_at = <reserved at>`, on the table's sparse `Queue` index); every end
is one conditional UpdateItem on `status = reserved` that also removes that entry, so only rows still
waiting stay in the index. No rollup is written with a row: the table's stream carries the ended rows
to the aggregator (`costgate.dal.rollups`, `functions/aggregator`), which parses them with `ended_event`.
An answer-cache hit or a batch request is put `settled` at once (a batch's root holds settle in the
same transaction).
"""

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.exceptions import DoesNotExist, PutError, UpdateError
from pynamodb.expressions.update import Action
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.transactions import TransactWrite

from costgate.accounting.budgets import Hold
from costgate.accounting.ledger import (
    LedgerEntry,
    RejectionCount,
    RequestState,
    ReservedRequest,
    Rollup,
)
from costgate.accounting.targets import Ended, padded
from costgate.dal.budgets import settle_updates
from costgate.dal.rollups import DynamoRollupStore
from costgate.dal.table import CostgateItem, DecimalAttribute, transact
from costgate.errors import ConflictError
from costgate.pricing.cost import Cost, CostComponent, Strategy
from costgate.pricing.usage import TokenUsage
from costgate.routing.prompt_cache import PrefixUse

# The unsettled rows spread over this many sweep partitions of the `Queue` index (≈ 156 rows/s each at
# 10,000 requests/s); the sweeper reads them all.
SWEEP_PARTITIONS: Final = 64
_SWEEP: Final = "sweep#"
_QUEUE_INDEX: Final = "Queue"  # template.yaml's sparse GSI (also batch summarisation's work queues)
_QUEUE_AT_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width, UTC: text order is time order
_LEDGER_ENTITY: Final = "ledger"


class CostComponents(MapAttribute[str, Decimal]):
    input = DecimalAttribute()
    cache_write_5m = DecimalAttribute()
    cache_write_1h = DecimalAttribute()
    cache_read = DecimalAttribute()
    output = DecimalAttribute()
    web_search = DecimalAttribute()


class StrategySavings(MapAttribute[str, Decimal]):
    prompt_cache = DecimalAttribute(null=True)
    batch = DecimalAttribute(null=True)
    routing = DecimalAttribute(null=True)
    answer_cache = DecimalAttribute(null=True)


class PrefixUseMap(MapAttribute[str, Any]):
    """The request's use of a cached prefix, for the aggregator's prefix totals and gap histograms."""

    prefix_key = UnicodeAttribute()
    model = UnicodeAttribute()
    managed_by = UnicodeAttribute()
    ttl = UnicodeAttribute(null=True)
    write_tokens = NumberAttribute()
    read_tokens = NumberAttribute()
    write_premium_usd = DecimalAttribute()
    read_saved_usd = DecimalAttribute()


class SweepIndex(GlobalSecondaryIndex[Any]):  # type: ignore[no-untyped-call]  # pynamodb's __init_subclass__
    """The table's sparse `Queue` GSI as the sweeper reads it: unsettled rows by partition, oldest first."""

    class Meta:
        index_name = _QUEUE_INDEX
        projection = AllProjection()

    queue = UnicodeAttribute(hash_key=True)
    queue_at = UnicodeAttribute(range_key=True)


class LedgerItem(CostgateItem, discriminator=_LEDGER_ENTITY):
    """One request.  PK: REQ#<costgate request id>  SK: REQ

    Always: who and what for, `status` (reserved|settled|refused|abandoned|swept), `held_usd` (the worst
    case; a swept row's `cost_usd` is set to it). Reserved rows carry `queue`/`queue_at` (the sweep index).
    Settled rows carry the priced usage (`cost_usd` … `speed`) and Claude's `upstream_request_id`.
    Rows written before rows had states carry no `status` and were rolled up when written.
    """

    request_id = UnicodeAttribute()
    at = UTCDateTimeAttribute()
    day = UnicodeAttribute()
    tenant = UnicodeAttribute()
    feature = UnicodeAttribute()
    model = UnicodeAttribute()
    status = UnicodeAttribute(null=True)
    held_usd = DecimalAttribute(null=True)
    hold_shard = UnicodeAttribute(null=True)
    queue = UnicodeAttribute(null=True)
    queue_at = UnicodeAttribute(null=True)
    sweep_index = SweepIndex()
    key_id = UnicodeAttribute(null=True)
    requested_model = UnicodeAttribute(null=True)  # as the client sent it: "auto" or a model id
    route_tier = UnicodeAttribute(null=True)  # simple|medium|complex, only for a routed request
    route_reason = UnicodeAttribute(null=True)
    upstream_request_id = UnicodeAttribute(null=True)
    price_version = UnicodeAttribute(null=True)
    price_confirmed = BooleanAttribute(null=True)
    modifiers = ListAttribute(of=UnicodeAttribute, null=True)
    cost_usd = DecimalAttribute(null=True)
    baseline_cost_usd = DecimalAttribute(null=True)
    components = CostComponents(null=True)  # type: ignore[no-untyped-call]
    savings = StrategySavings(null=True)  # type: ignore[no-untyped-call]
    prompt_cache = PrefixUseMap(null=True)  # type: ignore[no-untyped-call]
    input_tokens = NumberAttribute(null=True)
    output_tokens = NumberAttribute(null=True)
    cache_write_5m_tokens = NumberAttribute(null=True)
    cache_write_1h_tokens = NumberAttribute(null=True)
    cache_read_tokens = NumberAttribute(null=True)
    web_search_requests = NumberAttribute(null=True)
    web_fetch_requests = NumberAttribute(null=True)
    thinking_tokens = NumberAttribute(null=True)
    service_tier = UnicodeAttribute(null=True)
    inference_geo = UnicodeAttribute(null=True)
    speed = UnicodeAttribute(null=True)


def ledger_key(request_id: str) -> tuple[str, str]:
    return f"REQ#{request_id}", "REQ"


def sweep_partition(request_id: str) -> str:
    digest = hashlib.sha256(request_id.encode()).digest()
    return f"{_SWEEP}{int.from_bytes(digest[:4], 'big') % SWEEP_PARTITIONS:02d}"


class DynamoLedgerStore:
    """LedgerStore over the single table; rollups are read from the aggregator's items (`DynamoRollupStore`)."""

    def __init__(self, rollups: DynamoRollupStore | None = None) -> None:
        self._rollups = rollups or DynamoRollupStore()

    def reserve(self, row: ReservedRequest) -> None:
        pk, sk = ledger_key(row.request_id)
        at = row.at.astimezone(UTC)
        item = LedgerItem(
            pk,
            sk,
            request_id=row.request_id,
            at=at,
            day=row.day.isoformat(),
            tenant=row.tenant,
            feature=row.feature,
            model=row.model,
            status=RequestState.RESERVED.value,
            held_usd=row.held_usd,
            hold_shard=row.hold_shard,
            queue=sweep_partition(row.request_id),
            queue_at=at.strftime(_QUEUE_AT_FORMAT),
            key_id=row.key_id,
            requested_model=row.requested_model,
            route_tier=row.route_tier,
            route_reason=row.route_reason,
        )
        try:
            item.save(condition=LedgerItem.pk.does_not_exist())
        except PutError as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise
            raise ConflictError(f"ledger: request {row.request_id} already has a row") from None

    def settle(self, request_id: str, entry: LedgerEntry) -> bool:
        actions = [
            LedgerItem.status.set(RequestState.SETTLED.value),
            *_priced_actions(entry),
            LedgerItem.queue.remove(),
            LedgerItem.queue_at.remove(),
        ]
        refused = self._update(request_id, actions)
        if refused is None:
            return True
        # A try whose answer was lost may have landed: settled with this very cost is this settle.
        return refused.get("status") == RequestState.SETTLED.value and _same_cost(refused, entry)

    def end(self, request_id: str, state: RequestState) -> bool:
        if state not in (RequestState.REFUSED, RequestState.ABANDONED, RequestState.SWEPT):
            raise ValueError(f"end() takes refused, abandoned or swept, not {state}")
        actions: list[Action] = [
            LedgerItem.status.set(state.value),
            LedgerItem.queue.remove(),
            LedgerItem.queue_at.remove(),
        ]
        if state is RequestState.SWEPT:  # counted at what it held: the worst case, never less than the truth
            actions.append(LedgerItem.cost_usd.set(LedgerItem.held_usd))
        refused = self._update(request_id, actions)
        return refused is None or (refused.get("status") == state.value and state is not RequestState.SWEPT)

    def record(self, entry: LedgerEntry, holds: Sequence[Hold] = ()) -> bool:
        row = _settled_item(entry)

        def write(transaction: TransactWrite) -> None:
            transaction.save(row, condition=LedgerItem.pk.does_not_exist())
            for item, settle in settle_updates(holds, entry.cost.total_usd):
                transaction.update(item, actions=settle)

        if not holds:
            try:
                row.save(condition=LedgerItem.pk.does_not_exist())
            except PutError as error:
                if error.cause_response_code != "ConditionalCheckFailedException":
                    raise
                return False
            return True
        # The row's is the only condition: a refusal means the request is already recorded.
        return transact(write, area="ledger", what=f"record request {entry.request_id}", sleep=_no_wait) is None

    def unsettled(self, reserved_before: datetime) -> Iterator[ReservedRequest]:
        cutoff = reserved_before.astimezone(UTC).strftime(_QUEUE_AT_FORMAT)
        for partition in range(SWEEP_PARTITIONS):
            for item in LedgerItem.sweep_index.query(f"{_SWEEP}{partition:02d}", LedgerItem.queue_at < cutoff):
                if item.status == RequestState.RESERVED.value:
                    yield _to_reserved(item)

    def find(self, request_id: str) -> LedgerEntry | None:
        try:
            item = LedgerItem.get(*ledger_key(request_id), consistent_read=True)
        except DoesNotExist:
            return None
        return _to_entry(item) if item.status == RequestState.SETTLED.value else None

    def rollups(self, first: date, last: date, tenant: str | None = None) -> Iterator[Rollup]:
        return self._rollups.rollups(first, last, tenant)

    def rejections(self, first: date, last: date, tenant: str | None = None) -> Iterator[RejectionCount]:
        return self._rollups.rejections(first, last, tenant)

    def _update(self, request_id: str, actions: Sequence[Action]) -> dict[str, Any] | None:
        """None when the reserved row took the update; else the row's status and cost as they stand now
        (read again, strongly: a refusal is rare, so its extra read is too; empty when there is no row)."""
        item = LedgerItem(*ledger_key(request_id))
        try:
            item.update(actions=list(actions), condition=LedgerItem.status == RequestState.RESERVED.value)
        except UpdateError as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise
            try:
                found = LedgerItem.get(*ledger_key(request_id), consistent_read=True)
            except DoesNotExist:
                return {}
            return {"status": found.status, "cost_usd": found.cost_usd}
        return None


def ended_event(record: Mapping[str, Any]) -> Ended | None:
    """The ended ledger row a stream record (as Lambda delivers it) reports, or None for any other record.

    A row counts when it reaches an end state: an INSERT that is already settled (a hit, a batch
    request) or a MODIFY whose old image was `reserved`. Every other record (a reservation, rows
    written before rows had states, any other entity) is None.
    """
    change = record.get("dynamodb") or {}
    new = change.get("NewImage") or {}
    if new.get("entity", {}).get("S") != _LEDGER_ENTITY:
        return None
    status = new.get("status", {}).get("S")
    if status not in {s.value for s in RequestState} or status == RequestState.RESERVED.value:
        return None
    old_status = (change.get("OldImage") or {}).get("status", {}).get("S")
    if record.get("eventName") == "MODIFY" and old_status != RequestState.RESERVED.value:
        return None
    if record.get("eventName") not in ("INSERT", "MODIFY"):
        return None
    item = LedgerItem.from_raw_data(dict(new))
    sequence = padded(str(change["SequenceNumber"]))
    state = RequestState(status)
    if state is RequestState.SETTLED:
        return Ended(sequence, state, entry=_to_entry(item))
    return Ended(sequence, state, request=_to_reserved(item))


def _no_wait(_: float) -> None:
    """A batch's record transaction conflicts only with itself retried: no backoff needed between tries."""


def _same_cost(stored: Mapping[str, Any], entry: LedgerEntry) -> bool:
    cost = stored.get("cost_usd")
    return cost is not None and Decimal(str(cost)) == entry.cost.total_usd


def _priced_fields(entry: LedgerEntry) -> dict[str, Any]:
    """What an answered request's row says of its price and usage, by attribute (None: the attribute is absent):
    one list for both ways a row gets them, settled in place (`_priced_actions`) or written whole (`_settled_item`)."""
    cost: Cost = entry.cost
    usage: TokenUsage = entry.usage
    return {
        "upstream_request_id": entry.upstream_request_id or None,
        "model": entry.model,
        "price_version": cost.price_version,
        "price_confirmed": cost.confirmed,
        "modifiers": list(cost.modifiers),
        "cost_usd": cost.total_usd,
        "baseline_cost_usd": entry.baseline_cost_usd,
        "components": _components(cost),
        "savings": _savings(entry),
        "prompt_cache": _prefix_map(entry.prompt_cache) if entry.prompt_cache is not None else None,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_write_5m_tokens": usage.cache_write_5m_tokens,
        "cache_write_1h_tokens": usage.cache_write_1h_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "web_search_requests": usage.web_search_requests,
        "web_fetch_requests": usage.web_fetch_requests,
        "thinking_tokens": usage.thinking_tokens,
        "service_tier": usage.service_tier,
        "inference_geo": usage.inference_geo,
        "speed": usage.speed,
    }


def _priced_actions(entry: LedgerEntry) -> list[Action]:
    return [
        getattr(LedgerItem, name).set(value) if value is not None else getattr(LedgerItem, name).remove()
        for name, value in _priced_fields(entry).items()
    ]


def _components(cost: Cost) -> CostComponents:
    return CostComponents(**{c.value: cost.components[c] for c in CostComponent})  # type: ignore[no-untyped-call]


def _savings(entry: LedgerEntry) -> StrategySavings:
    return StrategySavings(**{s.value: amount for s, amount in entry.savings.items()})  # type: ignore[no-untyped-call]


def _prefix_map(use: PrefixUse) -> PrefixUseMap:
    return PrefixUseMap(  # type: ignore[no-untyped-call]
        prefix_key=use.prefix_key,
        model=use.model,
        managed_by=use.managed_by,
        ttl=use.ttl,
        write_tokens=use.write_tokens,
        read_tokens=use.read_tokens,
        write_premium_usd=use.write_premium_usd,
        read_saved_usd=use.read_saved_usd,
    )


def _settled_item(entry: LedgerEntry) -> LedgerItem:
    pk, sk = ledger_key(entry.request_id)
    return LedgerItem(
        pk,
        sk,
        request_id=entry.request_id,
        at=entry.at.astimezone(UTC),
        day=entry.day.isoformat(),
        tenant=entry.tenant,
        feature=entry.feature,
        status=RequestState.SETTLED.value,
        held_usd=entry.cost.total_usd,
        key_id=entry.key_id,
        requested_model=entry.requested_model,
        route_tier=entry.route_tier,
        route_reason=entry.route_reason,
        **_priced_fields(entry),
    )


def _to_reserved(item: LedgerItem) -> ReservedRequest:
    return ReservedRequest(
        request_id=item.request_id,
        at=item.at,
        tenant=item.tenant,
        feature=item.feature,
        model=item.model,
        held_usd=item.held_usd if item.held_usd is not None else Decimal(0),
        key_id=item.key_id,
        requested_model=item.requested_model,
        route_tier=item.route_tier,
        route_reason=item.route_reason,
        hold_shard=item.hold_shard,
    )


def _to_entry(item: LedgerItem) -> LedgerEntry:
    """A settled row as the ledger entry it was settled with (the aggregator's input)."""
    if item.cost_usd is None or item.components is None or item.baseline_cost_usd is None:
        raise ValueError(f"ledger row {item.request_id} is settled but carries no cost")
    cost = Cost(
        model=item.model,
        total_usd=item.cost_usd,
        components={c: getattr(item.components, c.value) for c in CostComponent},
        price_version=item.price_version or "",
        modifiers=tuple(str(modifier) for modifier in item.modifiers or ()),
        confirmed=bool(item.price_confirmed),
    )
    usage = TokenUsage(
        input_tokens=int(item.input_tokens or 0),
        output_tokens=int(item.output_tokens or 0),
        cache_write_5m_tokens=int(item.cache_write_5m_tokens or 0),
        cache_write_1h_tokens=int(item.cache_write_1h_tokens or 0),
        cache_read_tokens=int(item.cache_read_tokens or 0),
        web_search_requests=int(item.web_search_requests or 0),
        web_fetch_requests=int(item.web_fetch_requests or 0),
        thinking_tokens=int(item.thinking_tokens) if item.thinking_tokens is not None else None,
        service_tier=item.service_tier or "standard",
        inference_geo=item.inference_geo,
        speed=item.speed or "standard",
    )
    savings = item.savings
    found = {
        strategy: amount
        for strategy in Strategy
        if savings is not None and (amount := getattr(savings, strategy.value, None)) is not None
    }
    prefix = item.prompt_cache
    use = None
    if prefix is not None:
        use = PrefixUse(
            prefix_key=prefix.prefix_key,
            model=prefix.model,
            managed_by=prefix.managed_by,  # type: ignore[arg-type]
            ttl=prefix.ttl,  # type: ignore[arg-type]
            write_tokens=int(prefix.write_tokens),
            read_tokens=int(prefix.read_tokens),
            write_premium_usd=prefix.write_premium_usd,
            read_saved_usd=prefix.read_saved_usd,
        )
    return LedgerEntry(
        request_id=item.request_id,
        at=item.at,
        tenant=item.tenant,
        feature=item.feature,
        usage=usage,
        cost=cost,
        baseline_cost_usd=item.baseline_cost_usd,
        savings=found,
        key_id=item.key_id,
        requested_model=item.requested_model,
        route_tier=item.route_tier,
        route_reason=item.route_reason,
        prompt_cache=use,
        upstream_request_id=item.upstream_request_id,
    )

"""The ledger in DynamoDB: request rows and daily rollups, written in one transaction; budget rejection counters.

The same transaction settles the request's budget holds (`settle_updates`) and adds its use of a
cached prefix to the prompt-cache totals (`prompt_cache_updates`); every item in it is distinct, as
DynamoDB requires.
"""

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from costgate.accounting.budgets import Hold
from costgate.accounting.ledger import LedgerEntry, RejectionCount, Rollup, utc_day, validate_tag
from costgate.dal.budgets import settle_updates
from costgate.dal.prompt_cache import prompt_cache_updates
from costgate.dal.table import CostgateItem, DecimalAttribute, transact
from costgate.pricing.cost import Cost, CostComponent, Strategy
from costgate.pricing.usage import TokenUsage


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


class LedgerItem(CostgateItem, discriminator="ledger"):
    """One priced request.  PK: REQ#<request_id>  SK: REQ

    The partition per request id is what makes recording idempotent: the transaction that adds
    the request to its rollup also puts this row on condition that the key does not exist yet.
    """

    request_id = UnicodeAttribute()
    at = UTCDateTimeAttribute()
    day = UnicodeAttribute()
    tenant = UnicodeAttribute()
    feature = UnicodeAttribute()
    model = UnicodeAttribute()
    price_version = UnicodeAttribute()
    price_confirmed = BooleanAttribute()
    modifiers = ListAttribute(of=UnicodeAttribute)
    cost_usd = DecimalAttribute()
    baseline_cost_usd = DecimalAttribute()
    components = CostComponents()  # type: ignore[no-untyped-call]
    savings = StrategySavings(null=True)  # type: ignore[no-untyped-call]
    key_id = UnicodeAttribute(null=True)
    requested_model = UnicodeAttribute(null=True)  # as the client sent it: "auto" or a model id
    route_tier = UnicodeAttribute(null=True)  # simple|medium|complex, only for a routed request
    route_reason = UnicodeAttribute(null=True)
    input_tokens = NumberAttribute()
    output_tokens = NumberAttribute()
    cache_write_5m_tokens = NumberAttribute()
    cache_write_1h_tokens = NumberAttribute()
    cache_read_tokens = NumberAttribute()
    web_search_requests = NumberAttribute()
    web_fetch_requests = NumberAttribute()
    thinking_tokens = NumberAttribute(null=True)
    service_tier = UnicodeAttribute()
    inference_geo = UnicodeAttribute(null=True)
    speed = UnicodeAttribute()


class RollupItem(CostgateItem, discriminator="rollup"):
    """Daily totals, updated only by atomic ADDs.
    PK: DAY#<yyyy-mm-dd>  SK: ROLLUP#<tenant>#<feature>#<model>#<service_tier>

    One partition per day keeps a date-range report to one Query per day; tags cannot contain '#'.
    The service tier is in the key because reconciliation compares each tier with Anthropic's figures
    (costgate.dal.reconcile); the domain `Rollup` does not carry it (no report is by tier). A rollup
    written before the tier was kept has no `service_tier` and no tier in its key.
    Per strategy: `savings_<strategy>_usd` sums what it saved over every request; `applied_<strategy>_*`
    count only the requests it changed (a non-zero saving) and sum their cost.
    """

    day = UnicodeAttribute()
    tenant = UnicodeAttribute()
    feature = UnicodeAttribute()
    model = UnicodeAttribute()
    service_tier = UnicodeAttribute(null=True)
    requests = NumberAttribute()
    cost_usd = DecimalAttribute()
    baseline_cost_usd = DecimalAttribute()
    input_tokens = NumberAttribute()
    output_tokens = NumberAttribute()
    cache_write_5m_tokens = NumberAttribute()
    cache_write_1h_tokens = NumberAttribute()
    cache_read_tokens = NumberAttribute()
    web_search_requests = NumberAttribute()
    savings_prompt_cache_usd = DecimalAttribute(null=True)
    savings_batch_usd = DecimalAttribute(null=True)
    savings_routing_usd = DecimalAttribute(null=True)
    savings_answer_cache_usd = DecimalAttribute(null=True)
    applied_prompt_cache_requests = NumberAttribute(null=True)
    applied_prompt_cache_cost_usd = DecimalAttribute(null=True)
    applied_batch_requests = NumberAttribute(null=True)
    applied_batch_cost_usd = DecimalAttribute(null=True)
    applied_routing_requests = NumberAttribute(null=True)
    applied_routing_cost_usd = DecimalAttribute(null=True)
    applied_answer_cache_requests = NumberAttribute(null=True)
    applied_answer_cache_cost_usd = DecimalAttribute(null=True)


class RejectionItem(CostgateItem, discriminator="rejection"):
    """Budget rejections, updated only by atomic ADDs.  PK: DAY#<yyyy-mm-dd>  SK: REJECT#<tenant>#<feature>

    In the rollups' day partition, under its own sort-key prefix: a report reads both per day.
    """

    day = UnicodeAttribute()
    tenant = UnicodeAttribute()
    feature = UnicodeAttribute()
    rejected = NumberAttribute()  # not `count`: that name is Model.count()


ROLLUP_PREFIX = "ROLLUP#"
_ROLLUP_SAVINGS = {strategy: f"savings_{strategy.value}_usd" for strategy in Strategy}
_ROLLUP_APPLIED_REQUESTS = {strategy: f"applied_{strategy.value}_requests" for strategy in Strategy}
_ROLLUP_APPLIED_COST = {strategy: f"applied_{strategy.value}_cost_usd" for strategy in Strategy}


def _ledger_key(request_id: str) -> tuple[str, str]:
    return f"REQ#{request_id}", "REQ"


def day_key(day: date) -> str:
    return f"DAY#{day.isoformat()}"


def rollup_sort_key(tenant: str, feature: str, model: str, service_tier: str) -> str:
    return f"{ROLLUP_PREFIX}{tenant}#{feature}#{model}#{service_tier}"


class DynamoLedgerStore:
    """LedgerStore over the single table."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._sleep = sleep

    def record(self, entry: LedgerEntry, holds: Sequence[Hold] = ()) -> bool:
        row = _to_item(entry)
        usage = entry.usage
        rollup = RollupItem(
            day_key(entry.day), rollup_sort_key(entry.tenant, entry.feature, entry.model, usage.service_tier)
        )
        actions: list[Action] = [
            RollupItem.entity.set(RollupItem),
            RollupItem.day.set(entry.day.isoformat()),
            RollupItem.tenant.set(entry.tenant),
            RollupItem.feature.set(entry.feature),
            RollupItem.model.set(entry.model),
            RollupItem.service_tier.set(usage.service_tier),
            RollupItem.requests.add(1),
            RollupItem.cost_usd.add(entry.cost.total_usd),
            RollupItem.baseline_cost_usd.add(entry.baseline_cost_usd),
            RollupItem.input_tokens.add(usage.input_tokens),
            RollupItem.output_tokens.add(usage.output_tokens),
            RollupItem.cache_write_5m_tokens.add(usage.cache_write_5m_tokens),
            RollupItem.cache_write_1h_tokens.add(usage.cache_write_1h_tokens),
            RollupItem.cache_read_tokens.add(usage.cache_read_tokens),
            RollupItem.web_search_requests.add(usage.web_search_requests),
            *(getattr(RollupItem, _ROLLUP_SAVINGS[strategy]).add(amount) for strategy, amount in entry.savings.items()),
            *(getattr(RollupItem, _ROLLUP_APPLIED_REQUESTS[strategy]).add(1) for strategy in entry.applied_strategies),
            *(
                getattr(RollupItem, _ROLLUP_APPLIED_COST[strategy]).add(entry.cost.total_usd)
                for strategy in entry.applied_strategies
            ),
        ]

        def write(transaction: TransactWrite) -> None:
            transaction.save(row, condition=LedgerItem.pk.does_not_exist())
            transaction.update(rollup, actions=actions)
            for item, settle in settle_updates(holds, entry.cost.total_usd):
                transaction.update(item, actions=settle)
            for item, observed in prompt_cache_updates(entry):
                transaction.update(item, actions=observed)

        # The row's is the only condition: a refusal means the request is already recorded.
        return transact(write, area="ledger", what=f"record request {entry.request_id}", sleep=self._sleep) is None

    def find(self, request_id: str) -> LedgerEntry | None:
        try:
            item = LedgerItem.get(*_ledger_key(request_id), consistent_read=True)
        except LedgerItem.DoesNotExist:
            return None
        return _from_item(item)

    def rollups(self, first: date, last: date) -> Iterator[Rollup]:
        day = first
        while day <= last:
            for item in RollupItem.query(day_key(day), RollupItem.sk.startswith(ROLLUP_PREFIX)):
                yield _to_rollup(item)
            day += timedelta(days=1)

    def count_rejection(self, at: datetime, tenant: str, feature: str) -> None:
        day = utc_day(at)
        counter = RejectionItem(
            day_key(day), f"REJECT#{validate_tag(tenant, 'tenant')}#{validate_tag(feature, 'feature')}"
        )
        counter.update(
            actions=[
                RejectionItem.entity.set(RejectionItem),
                RejectionItem.day.set(day.isoformat()),
                RejectionItem.tenant.set(tenant),
                RejectionItem.feature.set(feature),
                RejectionItem.rejected.add(1),
            ]
        )

    def rejections(self, first: date, last: date) -> Iterator[RejectionCount]:
        day = first
        while day <= last:
            for item in RejectionItem.query(day_key(day), RejectionItem.sk.startswith("REJECT#")):
                yield RejectionCount(
                    day=date.fromisoformat(item.day), tenant=item.tenant, feature=item.feature, count=int(item.rejected)
                )
            day += timedelta(days=1)


def _to_item(entry: LedgerEntry) -> LedgerItem:
    pk, sk = _ledger_key(entry.request_id)
    cost: Cost = entry.cost
    usage: TokenUsage = entry.usage
    return LedgerItem(
        pk,
        sk,
        request_id=entry.request_id,
        at=entry.at.astimezone(UTC),
        day=entry.day.isoformat(),
        tenant=entry.tenant,
        feature=entry.feature,
        model=entry.model,
        price_version=cost.price_version,
        price_confirmed=cost.confirmed,
        modifiers=list(cost.modifiers),
        cost_usd=cost.total_usd,
        baseline_cost_usd=entry.baseline_cost_usd,
        components=CostComponents(**{c.value: cost.components[c] for c in CostComponent}),  # type: ignore[no-untyped-call]
        savings=StrategySavings(**{s.value: amount for s, amount in entry.savings.items()}),  # type: ignore[no-untyped-call]
        key_id=entry.key_id,
        requested_model=entry.requested_model,
        route_tier=entry.route_tier,
        route_reason=entry.route_reason,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_write_5m_tokens=usage.cache_write_5m_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        web_search_requests=usage.web_search_requests,
        web_fetch_requests=usage.web_fetch_requests,
        thinking_tokens=usage.thinking_tokens,
        service_tier=usage.service_tier,
        inference_geo=usage.inference_geo,
        speed=usage.speed,
    )


def _from_item(item: LedgerItem) -> LedgerEntry:
    components = item.components.as_dict()  # type: ignore[no-untyped-call]
    savings = item.savings.as_dict() if item.savings is not None else {}  # type: ignore[no-untyped-call]
    cost = Cost(
        model=item.model,
        total_usd=item.cost_usd,
        components={component: components[component.value] for component in CostComponent},
        price_version=item.price_version,
        modifiers=tuple(str(modifier) for modifier in item.modifiers),
        confirmed=item.price_confirmed,
    )
    usage = TokenUsage(
        input_tokens=int(item.input_tokens),
        output_tokens=int(item.output_tokens),
        cache_write_5m_tokens=int(item.cache_write_5m_tokens),
        cache_write_1h_tokens=int(item.cache_write_1h_tokens),
        cache_read_tokens=int(item.cache_read_tokens),
        web_search_requests=int(item.web_search_requests),
        web_fetch_requests=int(item.web_fetch_requests),
        thinking_tokens=None if item.thinking_tokens is None else int(item.thinking_tokens),
        service_tier=item.service_tier,
        inference_geo=item.inference_geo,
        speed=item.speed,
    )
    return LedgerEntry(
        request_id=item.request_id,
        at=item.at,
        tenant=item.tenant,
        feature=item.feature,
        usage=usage,
        cost=cost,
        baseline_cost_usd=item.baseline_cost_usd,
        savings={Strategy(name): amount for name, amount in savings.items() if amount is not None},
        key_id=item.key_id,
        requested_model=item.requested_model,
        route_tier=item.route_tier,
        route_reason=item.route_reason,
    )


def _to_rollup(item: RollupItem) -> Rollup:
    return Rollup(
        day=date.fromisoformat(item.day),
        tenant=item.tenant,
        feature=item.feature,
        model=item.model,
        requests=int(item.requests),
        cost_usd=item.cost_usd,
        baseline_cost_usd=item.baseline_cost_usd,
        input_tokens=int(item.input_tokens),
        output_tokens=int(item.output_tokens),
        cache_write_5m_tokens=int(item.cache_write_5m_tokens),
        cache_write_1h_tokens=int(item.cache_write_1h_tokens),
        cache_read_tokens=int(item.cache_read_tokens),
        web_search_requests=int(item.web_search_requests),
        savings_usd={
            strategy: amount
            for strategy, name in _ROLLUP_SAVINGS.items()
            if (amount := getattr(item, name)) is not None
        },
        strategy_requests={
            strategy: int(count)
            for strategy, name in _ROLLUP_APPLIED_REQUESTS.items()
            if (count := getattr(item, name)) is not None
        },
        strategy_cost_usd={
            strategy: amount
            for strategy, name in _ROLLUP_APPLIED_COST.items()
            if (amount := getattr(item, name)) is not None
        },
    )

"""The aggregator's targets in DynamoDB: hourly rollups and rejection counters, prompt-cache prefix totals and gaps.

Where they live (docs/scale.md §4); no partition key takes more than one write per target per stream
batch per stream shard, whatever the request rate:

    rollup      PK DAY#<day>#<n>          SK ROLLUP#<tenant>#<feature>#<model>#<tier>#<hh>   n = hash(tenant) mod 16
    rejections  PK DAY#<day>#<n>          SK REJECT#<tenant>#<feature>#<hh>
    prefix      PK PCACHE#<feature>#<m>   SK PREFIX#<prefix_key>                       m = hash(prefix) mod 16
    gaps        PK PCACHE#<feature>       SK GAPS#<day>

A tenant's day is one partition (its report one Query per day), a whole day 16. Every target also
keeps one mark per stream shard (`m_<lane>`: the 40-digit sequence number of the last record it
took from that shard); `apply` is one UpdateItem that adds a delta and moves the mark, conditional on
the mark (`costgate.accounting.aggregator`). Rollups and rejection counters written before this
layout (PK DAY#<day>, one per day) are still read. Written with the low-level client: marks are
attributes named at run time, which pynamodb models cannot declare.
"""

import hashlib
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist

from costgate.accounting.aggregator import applied_cost_field, applied_requests_field, savings_field
from costgate.accounting.ledger import RejectionCount, Rollup
from costgate.accounting.targets import GapTarget, PrefixTarget, RejectionTarget, RollupTarget, Target, TargetDelta
from costgate.dal.prompt_cache import (
    GAP_RETENTION_DAYS,
    PREFIX_RETENTION,
    PrefixStatsItem,
    gap_sk,
    prefix_partition,
    prompt_cache_partition,
)
from costgate.dal.table import (
    PARTITION_KEY,
    SORT_KEY,
    TTL_ATTRIBUTE,
    CostgateItem,
    DecimalAttribute,
    transaction_connection,
)
from costgate.pricing.cost import Strategy

ROLLUP_PARTITIONS: Final = 16
ROLLUP_PREFIX: Final = "ROLLUP#"
# Rollups and rejection counters outlive their day by this much (DynamoDB TTL); reports read within it.
ROLLUP_RETENTION: Final = timedelta(days=400)
# Parallel reads of a report's partitions (one Query each).
_READERS: Final = 8
_MARK: Final = "m_"


class RollupItem(CostgateItem, discriminator="rollup"):
    """Hourly totals, changed only by the aggregator's ADDs.

    PK: DAY#<day>#<n>  SK: ROLLUP#<tenant>#<feature>#<model>#<service_tier>#<hh>

    The service tier is in the key because reconciliation compares each tier with Anthropic's figures
    (costgate.dal.reconcile); the domain `Rollup` does not carry it (no report is by tier).
    Per strategy: `savings_<strategy>_usd` sums what it saved over every request; `applied_<strategy>_*`
    count only the requests it changed (a non-zero saving) and sum their cost. `swept_*`: the rows the
    sweeper ended, counted at what they held (also in `requests` and `cost_usd`). Legacy items (PK
    DAY#<day>, SK ROLLUP#<tenant>#<feature>#<model>[#<service_tier>]) have no hour.
    """

    day = UnicodeAttribute()
    tenant = UnicodeAttribute()
    feature = UnicodeAttribute()
    model = UnicodeAttribute()
    service_tier = UnicodeAttribute(null=True)
    hour = NumberAttribute(null=True)
    requests = NumberAttribute()
    cost_usd = DecimalAttribute()
    baseline_cost_usd = DecimalAttribute()
    input_tokens = NumberAttribute(null=True)
    output_tokens = NumberAttribute(null=True)
    cache_write_5m_tokens = NumberAttribute(null=True)
    cache_write_1h_tokens = NumberAttribute(null=True)
    cache_read_tokens = NumberAttribute(null=True)
    web_search_requests = NumberAttribute(null=True)
    swept_requests = NumberAttribute(null=True)
    swept_usd = DecimalAttribute(null=True)
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
    """Budget rejections (429), changed only by the aggregator's ADDs.

    PK: DAY#<day>#<n>  SK: REJECT#<tenant>#<feature>#<hh>

    Legacy counters (PK DAY#<day>, SK REJECT#<tenant>#<feature>) have no hour.
    """

    day = UnicodeAttribute()
    tenant = UnicodeAttribute()
    feature = UnicodeAttribute()
    hour = NumberAttribute(null=True)
    rejected = NumberAttribute()  # not `count`: that name is Model.count()


def lane_mark(lane: str) -> str:
    """The attribute that holds a stream shard's mark on a target: short, fixed, and the same for every writer."""
    return _MARK + hashlib.sha256(lane.encode()).hexdigest()[:12]


def day_key(day: date) -> str:
    """A day's partition before the rollups were spread over 16; the reconciliation verdicts still live there."""
    return f"DAY#{day.isoformat()}"


def day_partition(day: date, tenant: str) -> str:
    digest = hashlib.sha256(tenant.encode()).digest()
    return f"DAY#{day.isoformat()}#{int.from_bytes(digest[:4], 'big') % ROLLUP_PARTITIONS}"


def target_key(target: Target) -> tuple[str, str]:
    if isinstance(target, RollupTarget):
        return (
            day_partition(target.day, target.tenant),
            f"{ROLLUP_PREFIX}{target.tenant}#{target.feature}#{target.model}#{target.service_tier}#{target.hour:02d}",
        )
    if isinstance(target, RejectionTarget):
        return day_partition(target.day, target.tenant), f"REJECT#{target.tenant}#{target.feature}#{target.hour:02d}"
    if isinstance(target, PrefixTarget):
        return prefix_partition(target.feature, target.prefix_key), f"PREFIX#{target.prefix_key}"
    return prompt_cache_partition(target.feature), gap_sk(target.day)


class DynamoRollupStore:
    """RollupStore over the single table, and the reads reports make of it."""

    def apply(self, target: Target, lane: str, delta: TargetDelta, after: str | None) -> str | None:
        pk, sk = target_key(target)
        names: dict[str, str] = {"#mark": lane_mark(lane)}
        values: dict[str, Any] = {":last": {"S": delta.last}}
        adds: list[str] = []
        for index, (name, amount) in enumerate(sorted(delta.adds.items())):
            names[f"#a{index}"] = name
            values[f":a{index}"] = {"N": _number(amount)}
            adds.append(f"#a{index} :a{index}")
        sets = ["#mark = :last"]
        removes: list[str] = []
        for index, (name, value) in enumerate(sorted({**_identity(target, delta), **delta.sets}.items())):
            names[f"#s{index}"] = name
            if value is None:
                removes.append(f"#s{index}")
            else:
                values[f":s{index}"] = {"N": value} if name in _NUMERIC_SETS else {"S": value}
                sets.append(f"#s{index} = :s{index}")
        if delta.seen is not None:
            names.update({"#first_seen": "first_seen", "#last_seen": "last_seen"})
            values[":first_seen"] = {"S": _utc_text(delta.seen[0])}
            values[":last_seen"] = {"S": _utc_text(delta.seen[1])}
            sets += ["#first_seen = if_not_exists(#first_seen, :first_seen)", "#last_seen = :last_seen"]
        expression = f"SET {', '.join(sets)}"
        if adds:
            expression += f" ADD {', '.join(adds)}"
        if removes:
            expression += f" REMOVE {', '.join(removes)}"
        if after is None:
            condition = "attribute_not_exists(#mark) OR #mark < :first"
            values[":first"] = {"S": delta.first}
        else:
            condition = "#mark = :after"
            values[":after"] = {"S": after}
        client = transaction_connection().client
        try:
            client.update_item(
                TableName=CostgateItem.Meta.table_name,
                Key={PARTITION_KEY: {"S": pk}, SORT_KEY: {"S": sk}},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except client.exceptions.ConditionalCheckFailedException as error:
            stored = error.response.get("Item", {}).get(names["#mark"], {}).get("S")
            return stored if stored is not None else ""
        return None

    def previous_seen(self, target: Target) -> datetime | None:
        if not isinstance(target, PrefixTarget):
            return None
        try:
            item = PrefixStatsItem.get(*target_key(target))
        except DoesNotExist:
            return None
        return item.last_seen

    # --- reads -----------------------------------------------------------------------------------------

    def rollups(self, first: date, last: date, tenant: str | None = None) -> Iterator[Rollup]:
        for item in self.rollup_items(first, last, tenant):
            yield _to_rollup(item)

    def rollup_items(self, first: date, last: date, tenant: str | None = None) -> Iterator[RollupItem]:
        """The rollup items themselves (their service tier included), day by day."""
        return self._read(RollupItem, ROLLUP_PREFIX, first, last, tenant)

    def rejections(self, first: date, last: date, tenant: str | None = None) -> Iterator[RejectionCount]:
        for item in self._read(RejectionItem, "REJECT#", first, last, tenant):
            yield RejectionCount(
                day=date.fromisoformat(item.day),
                tenant=item.tenant,
                feature=item.feature,
                count=int(item.rejected),
                hour=int(item.hour) if item.hour is not None else None,
            )

    def _read[T: CostgateItem](
        self, model: type[T], prefix: str, first: date, last: date, tenant: str | None
    ) -> Iterator[T]:
        """Day by day: the day's partitions (one for a tenant, all 16 without) and its legacy one, in SK order."""
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        partitions = [
            [f"DAY#{day.isoformat()}"]
            + (
                [day_partition(day, tenant)]
                if tenant is not None
                else [f"DAY#{day.isoformat()}#{n}" for n in range(ROLLUP_PARTITIONS)]
            )
            for day in days
        ]

        def query(pk: str) -> list[T]:
            condition = model.sk.startswith(prefix if tenant is None else f"{prefix}{tenant}#")
            return list(model.query(pk, condition))

        with ThreadPoolExecutor(max_workers=_READERS) as pool:
            for day_partitions in partitions:
                found = [item for items in pool.map(query, day_partitions) for item in items]
                yield from sorted(found, key=lambda item: item.sk)


_NUMERIC_SETS: Final = frozenset({"hour", TTL_ATTRIBUTE})


def _identity(target: Target, delta: TargetDelta) -> dict[str, str | None]:
    """What a target's item says it is (entity, its key's parts) and when DynamoDB may forget it."""
    if isinstance(target, RollupTarget | RejectionTarget):
        expires = datetime.combine(target.day, datetime.min.time(), tzinfo=UTC) + ROLLUP_RETENTION
        found: dict[str, str | None] = {
            "entity": "rollup" if isinstance(target, RollupTarget) else "rejection",
            "day": target.day.isoformat(),
            "tenant": target.tenant,
            "feature": target.feature,
            "hour": str(target.hour),
            TTL_ATTRIBUTE: str(int(expires.timestamp())),
        }
        if isinstance(target, RollupTarget):
            found["model"] = target.model
            found["service_tier"] = target.service_tier
        return found
    if isinstance(target, PrefixTarget):
        if delta.seen is None:
            raise ValueError("a prefix delta says when its uses were seen")
        expires = delta.seen[1].astimezone(UTC) + PREFIX_RETENTION
        return {
            "entity": "prompt_cache_prefix",
            "feature": target.feature,
            "prefix_key": target.prefix_key,
            TTL_ATTRIBUTE: str(int(expires.timestamp())),
        }
    if isinstance(target, GapTarget):
        end = datetime.combine(target.day + timedelta(days=GAP_RETENTION_DAYS), datetime.min.time(), tzinfo=UTC)
        return {"entity": "prompt_cache_gaps", "feature": target.feature, TTL_ATTRIBUTE: str(int(end.timestamp()))}
    raise TypeError(f"not an aggregator target: {target!r}")


def _number(amount: int | Decimal) -> str:
    return format(amount, "f") if isinstance(amount, Decimal) else str(amount)


def _utc_text(at: datetime) -> str:
    """pynamodb's UTCDateTimeAttribute format, so PrefixStatsItem reads what the aggregator wrote."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")


_SAVINGS = {strategy: savings_field(strategy) for strategy in Strategy}
_APPLIED_REQUESTS = {strategy: applied_requests_field(strategy) for strategy in Strategy}
_APPLIED_COST = {strategy: applied_cost_field(strategy) for strategy in Strategy}


def _to_rollup(item: RollupItem) -> Rollup:
    def count(value: int | float | None) -> int:
        return int(value or 0)

    return Rollup(
        day=date.fromisoformat(item.day),
        tenant=item.tenant,
        feature=item.feature,
        model=item.model,
        requests=int(item.requests),
        cost_usd=item.cost_usd,
        baseline_cost_usd=item.baseline_cost_usd,
        input_tokens=count(item.input_tokens),
        output_tokens=count(item.output_tokens),
        cache_write_5m_tokens=count(item.cache_write_5m_tokens),
        cache_write_1h_tokens=count(item.cache_write_1h_tokens),
        cache_read_tokens=count(item.cache_read_tokens),
        web_search_requests=count(item.web_search_requests),
        savings_usd=_present(item, _SAVINGS),
        strategy_requests={s: int(v) for s, v in _present(item, _APPLIED_REQUESTS).items()},
        strategy_cost_usd=_present(item, _APPLIED_COST),
        hour=int(item.hour) if item.hour is not None else None,
        swept_requests=count(item.swept_requests),
        swept_usd=item.swept_usd or Decimal(0),
    )


def _present(item: RollupItem, names: Mapping[Strategy, str]) -> dict[Strategy, Any]:
    return {strategy: value for strategy, name in names.items() if (value := getattr(item, name)) is not None}

"""Budgets in DynamoDB: definitions, one root per budget window, and the (key, feature) pairs' shard items.

The model is in `costgate.accounting.budgets`. Here:

    root      PK BUDGET#<scope>          SK <period>#<window>   committed_usd (handed out: to shards, to batch
                                                                holds), limit_usd, spent_usd/requests (batch)
    shard     PK BGT#<key_id>#<feature>#<s>  SK <month>         day, h_<slot> (headroom), dry_<slot>/left_<slot>
    registry  PK BGTREG#<scope>#<period>#<window>  SK <shard>   which shards hold money of a root (gather reads it)

A take is one UpdateItem on the shard (ADD h_<slot> −amount for every slot, on the condition that each
covers it and the day slots hold the request's day), written with the low-level client because it
needs the item back on a refusal (ReturnValuesOnConditionCheckFailure, which pynamodb does not pass).
A draw is one TransactWrite: each root `committed += c` if it stays within its limit (DynamoDB
conditions cannot add, so "committed ≤ limit − c" with the right side computed here, exactly), the
shard's slots `+= c`, and the registry entries. Message Batches hold on roots directly: `reserve_update`,
`release_update` and `settle_updates` build those conditional updates for the batch store's and the
ledger's transactions.
"""

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Context, Decimal, Inexact, localcontext
from typing import Any

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DeleteError, DoesNotExist, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.transactions import TransactWrite

from costgate.accounting.budgets import (
    Budget,
    BudgetPeriod,
    Hold,
    ShardHold,
    ShardKey,
    feature_scope,
    remaining_in,
    reservation_ceiling,
    tenant_scope,
)
from costgate.accounting.ports import Grant, RootState, Taken
from costgate.clock import Clock, SystemClock
from costgate.dal.table import (
    PARTITION_KEY,
    SORT_KEY,
    CostgateItem,
    DecimalAttribute,
    transact,
    transaction_connection,
)
from costgate.errors import InvalidRequestError
from costgate.observability import logger

DEFINITIONS_TTL = timedelta(seconds=30)
# A window's counter outlives the window by this much (DynamoDB TTL), then the table forgets it.
COUNTER_RETENTION = timedelta(days=7)
_DEFINITIONS_PK = "BUDGETDEF"
_EXACT = Context(prec=60, traps=[Inexact])
# The dry roots' entry on the `Queue` index: the sweeper gathers what their shards still hold.
DRY_QUEUE = "budget-dry"
# A shard whose headroom changes between the read and the write of a gather is read again this often.
MAX_GATHER_ATTEMPTS = 3


class DryIndex(GlobalSecondaryIndex[Any]):  # type: ignore[no-untyped-call]  # pynamodb's __init_subclass__
    """The table's sparse `Queue` GSI as the sweeper reads the dry roots."""

    class Meta:
        index_name = "Queue"
        projection = AllProjection()

    queue = UnicodeAttribute(hash_key=True)
    queue_at = UnicodeAttribute(range_key=True)


class BudgetCounterItem(CostgateItem, discriminator="budget_counter"):
    """One budget window's root.  PK: BUDGET#<scope>  SK: <period>#<window>  (BUDGET#tenant:acme, day#2026-11-29)

    committed_usd = what the root has handed out: shard allowances, and batch holds and spend; changed
    only by atomic ADDs, never past limit_usd (the limit the last draw or batch hold was checked
    against). spent_usd and requests count batch settlements. Expires COUNTER_RETENTION after the window ends.
    """

    scope = UnicodeAttribute()
    period = UnicodeAttribute()
    window = UnicodeAttribute()
    limit_usd = DecimalAttribute()
    committed_usd = DecimalAttribute()
    spent_usd = DecimalAttribute(null=True)
    requests = NumberAttribute(null=True)
    # Set when a shard found the root unable to cover a request, with what it had left; on the `Queue`
    # index under DRY_QUEUE until the sweeper gathers the window.
    dry = BooleanAttribute(null=True)
    left_usd = DecimalAttribute(null=True)
    queue = UnicodeAttribute(null=True)
    queue_at = UnicodeAttribute(null=True)
    dry_index = DryIndex()


class BudgetShardItem(CostgateItem, discriminator="budget_shard"):
    """One of a pair's shards for a month.  PK: BGT#<key_id>#<feature>#<index>  SK: <yyyy-mm>

    `day`: the UTC day the `*_day` slots hold. Per slot (`key_day` … `feature_month`): `h_<slot>` the
    headroom, changed only by ADD; `dry_<slot>` the window its root was found dry in and `left_<slot>`
    what the root had left then. Expires a week after its month.
    """

    day = UnicodeAttribute(null=True)
    h_key_day = DecimalAttribute(null=True)
    h_key_month = DecimalAttribute(null=True)
    h_tenant_day = DecimalAttribute(null=True)
    h_tenant_month = DecimalAttribute(null=True)
    h_feature_day = DecimalAttribute(null=True)
    h_feature_month = DecimalAttribute(null=True)
    dry_key_day = UnicodeAttribute(null=True)
    dry_key_month = UnicodeAttribute(null=True)
    dry_tenant_day = UnicodeAttribute(null=True)
    dry_tenant_month = UnicodeAttribute(null=True)
    dry_feature_day = UnicodeAttribute(null=True)
    dry_feature_month = UnicodeAttribute(null=True)
    left_key_day = DecimalAttribute(null=True)
    left_key_month = DecimalAttribute(null=True)
    left_tenant_day = DecimalAttribute(null=True)
    left_tenant_month = DecimalAttribute(null=True)
    left_feature_day = DecimalAttribute(null=True)
    left_feature_month = DecimalAttribute(null=True)


class BudgetShardRegistryItem(CostgateItem, discriminator="budget_shard_registry"):
    """A shard that drew money from a root.  PK: BGTREG#<scope>#<period>#<window>  SK: <shard PK>|<shard SK>"""

    shard_pk = UnicodeAttribute()
    shard_sk = UnicodeAttribute()


class BudgetDefinitionItem(CostgateItem, discriminator="budget_definition"):
    """A tenant or feature budget.  PK: BUDGETDEF  SK: <tenant>#<scope>#<period>

    One partition, sorted by tenant: a request's budgets are one Query on begins_with(SK, "<tenant>#").
    Key budgets live on the key item instead.
    """

    scope = UnicodeAttribute()
    period = UnicodeAttribute()
    limit_usd = DecimalAttribute()
    shards = NumberAttribute(null=True)  # absent: 1


def _counter_key(hold: Hold) -> tuple[str, str]:
    return f"BUDGET#{hold.budget.scope}", f"{hold.budget.period.value}#{hold.window}"


def _definition_sk(scope: str, period: BudgetPeriod) -> str:
    tenant = Budget(scope, period, Decimal(0)).tenant  # validates the scope
    if tenant is None:
        raise InvalidRequestError("key budgets are set on the key (costgate keys create --daily-budget-usd …)")
    return f"{tenant}#{scope}#{period.value}"


def _expires_at(hold: Hold) -> int:
    start = date.fromisoformat(hold.window if hold.budget.period is BudgetPeriod.DAY else f"{hold.window}-01")
    if hold.budget.period is BudgetPeriod.DAY:
        end = start + timedelta(days=1)
    else:
        end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return int((datetime(end.year, end.month, end.day, tzinfo=UTC) + COUNTER_RETENTION).timestamp())


def settle_updates(holds: Sequence[Hold], actual_usd: Decimal) -> list[tuple[CostgateItem, list[Action]]]:
    """The counter updates that turn each hold into the exact cost, for the ledger's TransactWrite.

    For each hold: committed += actual − held, spent += actual, requests += 1. Unconditional (the
    money is spent), so put them in the same transaction as the ledger row's does-not-exist
    condition: a duplicate request then settles nothing, and its caller releases its holds instead.
    """
    updates: list[tuple[CostgateItem, list[Action]]] = []
    for hold in holds:
        with localcontext(_EXACT):
            delta = actual_usd - hold.amount_usd
        actions: list[Action] = [
            BudgetCounterItem.entity.set(BudgetCounterItem),
            BudgetCounterItem.committed_usd.add(delta),
            BudgetCounterItem.spent_usd.add(actual_usd),
            BudgetCounterItem.requests.add(1),
        ]
        updates.append((BudgetCounterItem(*_counter_key(hold)), actions))
    return updates


def reserve_update(hold: Hold) -> tuple[BudgetCounterItem, list[Action], Condition]:
    """The counter update that holds `hold`, for a TransactWrite: (item, actions, condition).

    committed += amount on condition that committed <= limit − amount (or the window has no counter
    yet and the amount is within the limit: it is created). A refused condition means the hold did not
    fit when it was written; read `committed_usd` to tell a full window from one that room came back to.
    """
    actions: list[Action] = [
        BudgetCounterItem.entity.set(BudgetCounterItem),
        BudgetCounterItem.scope.set(hold.budget.scope),
        BudgetCounterItem.period.set(hold.budget.period.value),
        BudgetCounterItem.window.set(hold.window),
        BudgetCounterItem.limit_usd.set(hold.budget.limit_usd),
        BudgetCounterItem.expires_at.set(_expires_at(hold)),
        BudgetCounterItem.committed_usd.add(hold.amount_usd),
    ]
    ceiling = reservation_ceiling(hold)
    condition = BudgetCounterItem.committed_usd <= ceiling
    if ceiling >= 0:
        # A missing counter is 0 committed; with a negative ceiling (an amount above the whole limit)
        # no window can take the hold, a new one included, so the comparison alone must decide.
        condition = BudgetCounterItem.committed_usd.does_not_exist() | condition
    return BudgetCounterItem(*_counter_key(hold)), actions, condition


def release_update(hold: Hold) -> tuple[BudgetCounterItem, list[Action], Condition]:
    """The counter update that gives `hold` back, for a TransactWrite: (item, actions, condition).

    committed −= amount on condition that the counter exists: a refusal means the hold was never
    reserved, a bug the caller reports rather than a counter created below zero.
    """
    with localcontext(_EXACT):
        amount = -hold.amount_usd
    actions: list[Action] = [BudgetCounterItem.committed_usd.add(amount)]
    return BudgetCounterItem(*_counter_key(hold)), actions, BudgetCounterItem.committed_usd.exists()


def committed_usd(hold: Hold) -> Decimal:
    """What the hold's window has committed, read strongly consistently (0 without a counter)."""
    try:
        item = BudgetCounterItem.get(*_counter_key(hold), consistent_read=True)
    except DoesNotExist:
        return Decimal(0)
    return item.committed_usd


class DynamoBudgetStore:
    """BudgetStore over the single table. Definitions are cached per store (one per warm container) for 30 s."""

    def __init__(self, clock: Clock | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self._clock = clock or SystemClock()
        self._sleep = sleep
        self._cache: dict[tuple[str, str], tuple[datetime, list[Budget]]] = {}
        self._cache_lock = threading.Lock()

    # --- definitions -----------------------------------------------------------------------------------

    def definitions(self, tenant: str, feature: str) -> list[Budget]:
        now = self._clock.now()
        with self._cache_lock:
            cached = self._cache.get((tenant, feature))
        if cached is not None and cached[0] <= now < cached[0] + DEFINITIONS_TTL:
            return list(cached[1])
        scopes = [tenant_scope(tenant)]
        if "/" not in tenant:
            scopes.append(feature_scope(tenant, feature))
        found = [
            _to_budget(item)
            for item in BudgetDefinitionItem.query(
                _DEFINITIONS_PK,
                BudgetDefinitionItem.sk.startswith(f"{tenant}#"),
                filter_condition=BudgetDefinitionItem.scope.is_in(*scopes),
            )
        ]
        with self._cache_lock:
            self._cache[(tenant, feature)] = (now, found)
        return list(found)

    def put_definition(self, budget: Budget) -> None:
        item = BudgetDefinitionItem(
            _DEFINITIONS_PK,
            _definition_sk(budget.scope, budget.period),
            scope=budget.scope,
            period=budget.period.value,
            limit_usd=budget.limit_usd,
            shards=budget.shards,
        )
        item.save()
        self._forget_definitions()
        # What the shards hold goes back to the root, so the new limit governs every draw from now on.
        self.gather(budget, budget.window(self._clock.now()))

    def delete_definition(self, scope: str, period: BudgetPeriod) -> bool:
        item = BudgetDefinitionItem(_DEFINITIONS_PK, _definition_sk(scope, period))
        try:
            item.delete(condition=BudgetDefinitionItem.pk.exists())
        except DeleteError as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise
            return False
        finally:
            self._forget_definitions()
        return True

    def list_definitions(self) -> list[Budget]:
        return [_to_budget(item) for item in BudgetDefinitionItem.query(_DEFINITIONS_PK, consistent_read=True)]

    def _forget_definitions(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    # --- shards and roots -------------------------------------------------------------------------------

    def take(self, hold: ShardHold) -> Taken:
        slots = sorted(hold.slots)
        names = {"#day": "day", **{f"#h{n}": f"h_{slot}" for n, slot in enumerate(slots)}}
        values = {":day": {"S": hold.day}, ":w": _n(hold.amount_usd), ":neg": _n(-hold.amount_usd)}
        condition = " AND ".join(["#day = :day", *(f"#h{n} >= :w" for n in range(len(slots)))])
        client = transaction_connection().client
        try:
            answer = client.update_item(
                TableName=CostgateItem.Meta.table_name,
                Key=_shard_key(hold.shard),
                UpdateExpression="ADD " + ", ".join(f"#h{n} :neg" for n in range(len(slots))),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except client.exceptions.ConditionalCheckFailedException as error:
            item = error.response.get("Item") or {}
            return Taken(
                ok=False,
                headroom={slot: amount for slot, amount in _headroom(item).items() if slot in hold.slots},
                day=item.get("day", {}).get("S"),
                dry={
                    slot: Decimal(item.get(f"left_{slot}", {}).get("N", "0"))
                    for slot, budget in hold.slots.items()
                    if item.get(f"dry_{slot}", {}).get("S") == hold.window(budget)
                },
            )
        item = answer["Attributes"]
        headroom = {slot: amount for slot, amount in _headroom(item).items() if slot in hold.slots}
        return Taken(ok=True, headroom=headroom, day=item.get("day", {}).get("S"))

    def roll_day(self, shard: ShardKey, seen_day: str | None, day: str) -> None:
        item = BudgetShardItem(*_shard_pk_sk(shard))
        actions: list[Action] = [
            BudgetShardItem.entity.set(BudgetShardItem),
            BudgetShardItem.day.set(day),
            BudgetShardItem.expires_at.set(_month_expiry(shard.month)),
        ]
        for kind in ("key", "tenant", "feature"):
            actions.append(getattr(BudgetShardItem, f"h_{kind}_day").set(Decimal(0)))
            actions.append(getattr(BudgetShardItem, f"dry_{kind}_day").remove())
            actions.append(getattr(BudgetShardItem, f"left_{kind}_day").remove())
        seen = BudgetShardItem.day.does_not_exist() if seen_day is None else BudgetShardItem.day == seen_day
        try:
            item.update(actions=actions, condition=seen)
        except UpdateError as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise
            # Another request rolled it first: its day slots already start the new day.

    def roots(self, windows: Sequence[tuple[Budget, str]]) -> dict[tuple[str, str, str], RootState]:
        keys = {(f"BUDGET#{budget.scope}", f"{budget.period.value}#{window}") for budget, window in windows}
        if not keys:
            return {}
        return {
            (item.scope, item.period, item.window): RootState(item.committed_usd, bool(item.dry))
            for item in BudgetCounterItem.batch_get(keys, consistent_read=True)
        }

    def draw(self, shard: ShardKey, day: str, grants: Sequence[Grant]) -> bool:
        pk, sk = _shard_pk_sk(shard)
        holds = [Hold(grant.budget, grant.window, grant.amount_usd) for grant in grants]
        shard_actions: list[Action] = [
            getattr(BudgetShardItem, f"h_{grant.budget.slot}").add(grant.amount_usd) for grant in grants
        ]

        def write(transaction: TransactWrite) -> None:
            for hold in holds:
                item, actions, condition = reserve_update(hold)
                transaction.update(item, actions=actions, condition=condition)
                registry = BudgetShardRegistryItem(
                    _registry_pk(hold.budget, hold.window),
                    f"{pk}|{sk}",
                    shard_pk=pk,
                    shard_sk=sk,
                    expires_at=_expires_at(hold),
                )
                transaction.save(registry)
            transaction.update(BudgetShardItem(pk, sk), actions=shard_actions, condition=BudgetShardItem.day == day)

        codes = transact(write, area="budgets", what=f"draw for shard {shard.label}", sleep=self._sleep, attempts=3)
        return codes is None

    def mark_dry(self, hold: ShardHold, budget: Budget, left_usd: Decimal) -> None:
        window = hold.window(budget)
        BudgetCounterItem(f"BUDGET#{budget.scope}", f"{budget.period.value}#{window}").update(
            actions=[
                BudgetCounterItem.dry.set(True),
                BudgetCounterItem.left_usd.set(left_usd),
                BudgetCounterItem.queue.set(DRY_QUEUE),
                BudgetCounterItem.queue_at.set(f"{window}#{budget.scope}#{budget.period.value}"),
            ],
            condition=BudgetCounterItem.committed_usd.exists(),
        )
        BudgetShardItem(*_shard_pk_sk(hold.shard)).update(
            actions=[
                getattr(BudgetShardItem, f"dry_{budget.slot}").set(window),
                getattr(BudgetShardItem, f"left_{budget.slot}").set(left_usd),
            ]
        )

    def give_back(self, hold: ShardHold, amount_usd: Decimal) -> dict[str, Decimal]:
        months = [slot for slot in sorted(hold.slots) if not slot.endswith("_day")]
        days = [slot for slot in sorted(hold.slots) if slot.endswith("_day")]
        client = transaction_connection().client
        for slots, same_day in ((months + days, True), (months, False)):
            if not slots:
                return {}
            request: dict[str, Any] = {
                "TableName": CostgateItem.Meta.table_name,
                "Key": _shard_key(hold.shard),
                "UpdateExpression": "ADD " + ", ".join(f"#h{n} :a" for n in range(len(slots))),
                "ExpressionAttributeNames": {f"#h{n}": f"h_{slot}" for n, slot in enumerate(slots)},
                "ExpressionAttributeValues": {":a": _n(amount_usd)},
                "ReturnValues": "UPDATED_NEW",
            }
            if same_day and days:
                # The day slots take it back only while they still hold the day it was taken in.
                request["ConditionExpression"] = "#day = :day"
                request["ExpressionAttributeNames"]["#day"] = "day"
                request["ExpressionAttributeValues"][":day"] = {"S": hold.day}
            try:
                answer = client.update_item(**request)
            except client.exceptions.ConditionalCheckFailedException:
                continue
            return _headroom(answer["Attributes"])
        return {}

    def gather(self, budget: Budget, window: str) -> Decimal:
        gathered = Decimal(0)
        for registry in BudgetShardRegistryItem.query(_registry_pk(budget, window), consistent_read=True):
            gathered += self._gather_shard(budget, window, registry.shard_pk, registry.shard_sk)
        root = BudgetCounterItem(f"BUDGET#{budget.scope}", f"{budget.period.value}#{window}")
        try:
            root.update(
                actions=[
                    BudgetCounterItem.dry.remove(),
                    BudgetCounterItem.left_usd.remove(),
                    BudgetCounterItem.queue.remove(),
                    BudgetCounterItem.queue_at.remove(),
                ],
                condition=BudgetCounterItem.committed_usd.exists(),
            )
        except UpdateError as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise
        return gathered

    def _gather_shard(self, budget: Budget, window: str, pk: str, sk: str) -> Decimal:
        """This shard's headroom of the window, moved back to the root (its dry flag cleared); the amount."""
        slot = budget.slot
        for _ in range(MAX_GATHER_ATTEMPTS):
            try:
                shard = BudgetShardItem.get(pk, sk, consistent_read=True)
            except DoesNotExist:
                return Decimal(0)
            current = shard.day if slot.endswith("_day") else shard.sk
            if current != window:
                return Decimal(0)  # its slot has moved on to a new day: the old one's money is void
            headroom = getattr(shard, f"h_{slot}") or Decimal(0)
            if headroom <= 0:
                if getattr(shard, f"dry_{slot}") == window:
                    shard.update(
                        actions=[
                            getattr(BudgetShardItem, f"dry_{slot}").remove(),
                            getattr(BudgetShardItem, f"left_{slot}").remove(),
                        ]
                    )
                return Decimal(0)
            if self._move_to_root(budget, window, pk, sk, headroom):
                return headroom
            # A take or a give-back moved the headroom meanwhile: read it again.
        logger.warning("budgets: a shard kept changing while gathered; left for the next run", extra={"shard": pk})
        return Decimal(0)

    def _move_to_root(self, budget: Budget, window: str, pk: str, sk: str, headroom: Decimal) -> bool:
        """One transaction: the shard's slot −= headroom (if it still holds exactly that, dry flag cleared), the
        root's committed −= headroom. False when the shard's headroom changed meanwhile."""
        slot = budget.slot
        attribute = getattr(BudgetShardItem, f"h_{slot}")
        clears = [getattr(BudgetShardItem, f"dry_{slot}").remove(), getattr(BudgetShardItem, f"left_{slot}").remove()]
        root, root_actions, root_condition = release_update(Hold(budget, window, headroom))

        def write(transaction: TransactWrite) -> None:
            transaction.update(root, actions=root_actions, condition=root_condition)
            transaction.update(
                BudgetShardItem(pk, sk), actions=[attribute.add(-headroom), *clears], condition=attribute == headroom
            )

        return transact(write, area="budgets", what=f"gather {pk}", sleep=self._sleep, attempts=3) is None

    def dry_windows(self) -> list[tuple[Budget, str]]:
        found = []
        for item in BudgetCounterItem.dry_index.query(DRY_QUEUE):
            budget = Budget(item.scope, BudgetPeriod(item.period), item.limit_usd)
            found.append((budget, item.window))
        return found

    def remaining(self, holds: Sequence[Hold]) -> Decimal | None:
        if not holds:
            return None
        committed = {
            (item.pk, item.sk): item.committed_usd
            for item in BudgetCounterItem.batch_get({_counter_key(h) for h in holds}, consistent_read=True)
        }
        return min(remaining_in(h.budget, committed.get(_counter_key(h), Decimal(0))) for h in holds)

    def held_in_shards(self, budget: Budget, window: str) -> Decimal:
        total = Decimal(0)
        slot = budget.slot
        for registry in BudgetShardRegistryItem.query(_registry_pk(budget, window), consistent_read=True):
            try:
                shard = BudgetShardItem.get(registry.shard_pk, registry.shard_sk, consistent_read=True)
            except DoesNotExist:
                continue
            if (shard.day if slot.endswith("_day") else shard.sk) == window:
                total += getattr(shard, f"h_{slot}") or Decimal(0)
        return total


def _shard_pk_sk(shard: ShardKey) -> tuple[str, str]:
    return f"BGT#{shard.key_id}#{shard.feature}#{shard.index}", shard.month


def _shard_key(shard: ShardKey) -> dict[str, dict[str, str]]:
    pk, sk = _shard_pk_sk(shard)
    return {PARTITION_KEY: {"S": pk}, SORT_KEY: {"S": sk}}


def _registry_pk(budget: Budget, window: str) -> str:
    return f"BGTREG#{budget.scope}#{budget.period.value}#{window}"


def _month_expiry(month: str) -> int:
    year, number = (int(part) for part in month.split("-"))
    end = date(year + number // 12, number % 12 + 1, 1)
    return int((datetime(end.year, end.month, end.day, tzinfo=UTC) + COUNTER_RETENTION).timestamp())


def _n(amount: Decimal) -> dict[str, str]:
    return {"N": format(amount, "f")}


def _headroom(item: dict[str, Any]) -> dict[str, Decimal]:
    return {name[2:]: Decimal(value["N"]) for name, value in item.items() if name.startswith("h_") and "N" in value}


def _to_budget(item: BudgetDefinitionItem) -> Budget:
    return Budget(item.scope, BudgetPeriod(item.period), item.limit_usd, shards=int(item.shards or 1))

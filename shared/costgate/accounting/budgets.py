"""Hard budgets: daily and monthly spend limits per gateway key, tenant and feature.

Before a request goes to Claude its worst-case cost (`estimate_worst_case`) is held against every
budget that applies, all or none; a request that does not fit is refused with 429 `rate_limit_error`
naming the budget and what remains. After the response the unused part of the hold goes back.

Where the money sits (docs/scale.md): per budget window a **root** item holds the limit and what it
has handed out (`committed`); per (key, feature) pair, `shards` **shard** items each hold an
allowance of every budget that applies to the pair (`headroom`, one slot per budget: `key_day`,
`tenant_month`, ...). A request takes its hold from one shard with one conditional write (every
slot's headroom ≥ the hold, or nothing); a shard that is short **draws** from the roots, each root
handing out only what it still has. So for every budget window

    limit ≥ committed(root) = Σ shard headroom + Σ holds in flight + Σ spent

and no number of concurrent requests can take a budget past its limit. What a full budget can leave
unusable (a request refused while other shards still hold crumbs) is below shards × the largest
hold, and the sweeper gathers it back to the root every minute. Message Batches hold on the roots
directly (`costgate.dal.budgets.reserve_update`).

Windows are UTC calendar days (`2026-11-29`) and UTC calendar months (`2026-11`). A hold stays in
the window it was reserved in, even when the response arrives after midnight.
"""

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Context, Decimal, Inexact, localcontext
from enum import StrEnum
from typing import Any

from costgate.accounting.ledger import validate_tag
from costgate.errors import InvalidRequestError
from costgate.pricing.cost import price_usage
from costgate.pricing.model_limits import limits_for
from costgate.pricing.prices import PriceBook, default_price_book
from costgate.pricing.usage import TokenUsage

# --- the worst-case bound (see estimate_worst_case) ----------------------------------------------------
# Framing the request body's JSON does not show: role and turn markers, the tool-use system prompt
# (~350 tokens on Claude 4, ~30% more with the 4.7+ tokenizer), the computer-use system prompt (~500).
REQUEST_OVERHEAD_TOKENS = 2_000
# An Anthropic-defined tool (a `type` other than "custom": web_search_*, bash_*, computer_*, …) is
# expanded server side into a definition its JSON does not show (computer use: ~735 tokens).
SERVER_DEFINED_TOOL_TOKENS = 2_000
# An image costs at most ~1,600 tokens at 1.15 megapixels, ~4,800 at the 4.7+ high resolution.
IMAGE_TOKENS = 5_000
# A PDF (or another binary document) by base64, URL or file id: an allowance of ~30 dense pages
# (text plus page images), not a proof. Its base64 length says nothing useful about its tokens.
DOCUMENT_TOKENS = 100_000
# A web search tool without `max_uses`: a server-tool loop stops after 10 iterations (`pause_turn`).
DEFAULT_WEB_SEARCH_USES = 10

_EXACT = Context(prec=60, traps=[Inexact])
# DynamoDB numbers hold at most 38 significant digits.
_MAX_LIMIT_DIGITS = 38
# A pair's shards: 1 (the default) for small deployments, up to this many at very high rates (docs/scale.md).
MAX_SHARDS = 1024
# A draw hands out whole nanodollars: shares of what a root has left are rounded down to this.
_DRAW_QUANTUM = Decimal("0.000000001")


class BudgetPeriod(StrEnum):
    DAY = "day"
    MONTH = "month"


_ADJECTIVE = {BudgetPeriod.DAY: "daily", BudgetPeriod.MONTH: "monthly"}


def key_scope(key_id: str) -> str:
    return f"key:{validate_tag(key_id, 'key id')}"


def tenant_scope(tenant: str) -> str:
    return f"tenant:{validate_tag(tenant, 'tenant')}"


def feature_scope(tenant: str, feature: str) -> str:
    validate_tag(tenant, "tenant")
    if "/" in tenant:
        raise InvalidRequestError(f"tenant {tenant!r} contains '/', so it cannot have feature budgets")
    return f"feature:{tenant}/{validate_tag(feature, 'feature')}"


@dataclass(frozen=True)
class Budget:
    """A spend limit for one scope and period: `key:<key_id>`, `tenant:<tenant>` or `feature:<tenant>/<feature>`."""

    scope: str
    period: BudgetPeriod
    limit_usd: Decimal
    # How many shard items each (key, feature) pair spreads this budget's allowance over (docs/scale.md).
    shards: int = 1

    def __post_init__(self) -> None:
        kind, _, name = self.scope.partition(":")
        if kind == "key":
            key_scope(name)
        elif kind == "tenant":
            tenant_scope(name)
        elif kind == "feature":
            tenant, _, feature = name.partition("/")
            feature_scope(tenant, feature)
        else:
            raise InvalidRequestError(
                f"budget scope {self.scope!r} must be key:<key_id>, tenant:<tenant> or feature:<tenant>/<feature>"
            )
        if not isinstance(self.period, BudgetPeriod):
            raise InvalidRequestError(f"budget period must be one of {', '.join(BudgetPeriod)}")
        limit = self.limit_usd
        if not isinstance(limit, Decimal) or not limit.is_finite() or limit < 0:
            raise InvalidRequestError("a budget limit must be an amount in USD of 0 or more")
        # Not normalize(): it rounds to the context's 28 digits, hiding the very excess this checks for.
        if len("".join(map(str, limit.as_tuple().digits)).strip("0")) > _MAX_LIMIT_DIGITS:
            raise InvalidRequestError(f"a budget limit has at most {_MAX_LIMIT_DIGITS} significant digits")
        if isinstance(self.shards, bool) or not isinstance(self.shards, int) or not 1 <= self.shards <= MAX_SHARDS:
            raise InvalidRequestError(f"a budget's shards must be a whole number from 1 to {MAX_SHARDS}")

    @property
    def kind(self) -> str:
        return self.scope.partition(":")[0]

    @property
    def tenant(self) -> str | None:
        """The tenant of a tenant or feature budget; None for a key budget."""
        kind, _, name = self.scope.partition(":")
        if kind == "tenant":
            return name
        if kind == "feature":
            return name.partition("/")[0]
        return None

    @property
    def feature(self) -> str | None:
        kind, _, name = self.scope.partition(":")
        return name.partition("/")[2] if kind == "feature" else None

    @property
    def slot(self) -> str:
        """The shard item's slot for this budget: `<kind>_<period>`, e.g. `tenant_day` (one per kind and period)."""
        return f"{self.kind}_{self.period.value}"

    @property
    def label(self) -> str:
        """What a person calls it: "tenant acme's daily budget", "feature acme/chat's monthly budget"."""
        kind, _, name = self.scope.partition(":")
        return f"{kind} {name}'s {_ADJECTIVE[self.period]} budget"

    def window(self, at: datetime) -> str:
        """The UTC window `at` falls in: "2026-11-29" for a daily budget, "2026-11" for a monthly one."""
        if at.tzinfo is None:
            raise ValueError("a budget window needs a timezone-aware time")
        day = at.astimezone(UTC).date()
        return day.isoformat() if self.period is BudgetPeriod.DAY else f"{day.year:04d}-{day.month:02d}"


def key_budgets(key_id: str, daily_usd: Decimal | None, monthly_usd: Decimal | None) -> list[Budget]:
    """The budgets a gateway key carries (either limit may be absent)."""
    limits = ((BudgetPeriod.DAY, daily_usd), (BudgetPeriod.MONTH, monthly_usd))
    return [Budget(key_scope(key_id), period, limit) for period, limit in limits if limit is not None]


@dataclass(frozen=True)
class Hold:
    """An amount held on one budget window's root (a Message Batches request) until settled or released."""

    budget: Budget
    window: str
    amount_usd: Decimal


@dataclass(frozen=True)
class ShardKey:
    """One of a (key, feature) pair's shard items for one UTC month; its day slots hold one day at a time."""

    key_id: str
    feature: str
    index: int
    month: str  # "2026-11"

    @property
    def label(self) -> str:
        return f"{self.key_id}/{self.feature}/{self.index}/{self.month}"


@dataclass(frozen=True)
class ShardHold:
    """A request's hold: `amount_usd` on every budget in `budgets` (one per slot), taken from `shard`.

    `day` is the UTC day the day slots were held in; `at` the moment the request was admitted.
    """

    shard: ShardKey
    day: str
    at: datetime
    amount_usd: Decimal
    budgets: tuple[Budget, ...]

    @property
    def slots(self) -> dict[str, Budget]:
        return {budget.slot: budget for budget in self.budgets}

    def window(self, budget: Budget) -> str:
        return budget.window(self.at)


def strictest(budgets: Iterable[Budget]) -> tuple[Budget, ...]:
    """One budget per slot (kind and period): the one with the lowest limit when a slot has several.

    A pair's budgets have one scope per kind (its key, its tenant, its feature), so a slot holds one
    budget; a duplicate definition of the same scope and period keeps the strictest limit, as before.
    """
    chosen: dict[str, Budget] = {}
    for budget in budgets:
        seen = chosen.get(budget.slot)
        if seen is not None and seen.scope != budget.scope:
            raise InvalidRequestError(f"{budget.label} and {seen.label} would share one shard slot")
        if seen is None or budget.limit_usd < seen.limit_usd:
            chosen[budget.slot] = budget
    return tuple(chosen[slot] for slot in sorted(chosen))


def shard_count(budgets: Iterable[Budget]) -> int:
    """A pair's shard count: the largest `shards` of its budgets (1 without budgets)."""
    return max((budget.shards for budget in budgets), default=1)


def make_hold(key_id: str, feature: str, budgets: Sequence[Budget], amount_usd: Decimal, at: datetime) -> ShardHold:
    """The hold of one request: the strictest budget per slot, on a shard picked at random among the pair's."""
    if not amount_usd.is_finite() or amount_usd < 0:
        raise ValueError(f"a hold must be a finite amount of 0 or more, not {amount_usd}")
    chosen = strictest(budgets)
    day = at.astimezone(UTC).date()
    index = random.randrange(shard_count(chosen))  # noqa: S311 - spreading load, not a secret
    shard = ShardKey(key_id=key_id, feature=feature, index=index, month=f"{day.year:04d}-{day.month:02d}")
    return ShardHold(shard=shard, day=day.isoformat(), at=at, amount_usd=amount_usd, budgets=chosen)


def draw_size(unallocated_usd: Decimal, shortfall_usd: Decimal, shards: int) -> Decimal | None:
    """What a short shard draws from a root: None when the root cannot cover the shortfall.

    At least the shortfall (what the request lacks), else 1/(2·shards) of what the root has left: big
    early in the window, so draws are rare, and down to one hold near the limit, so a full budget
    strands little. Never more than the root has.
    """
    if shortfall_usd > unallocated_usd:
        return None
    with localcontext(Context(prec=60)):  # a share may not divide evenly: rounded down, it never exceeds the root
        share = (unallocated_usd / (2 * shards)).quantize(_DRAW_QUANTUM, rounding=ROUND_DOWN)
    return min(max(shortfall_usd, share), unallocated_usd)


def remaining_in(budget: Budget, committed_usd: Decimal) -> Decimal:
    """limit − committed, never below 0 (a settlement above its hold can leave a budget over its limit)."""
    with localcontext(_EXACT):
        return max(budget.limit_usd - committed_usd, Decimal(0))


def reservation_ceiling(hold: Hold) -> Decimal:
    """The highest `committed` a budget window may have for this hold to fit: limit − amount, exactly."""
    with localcontext(_EXACT):
        return hold.budget.limit_usd - hold.amount_usd


# --- the worst case ------------------------------------------------------------------------------------


def estimate_prompt_tokens(body: Mapping[str, Any]) -> int:
    """An upper bound on the prompt tokens of a Messages request, without a tokenizer.

    Every UTF-8 byte of the request body's compact JSON counts as one token: a byte-level tokenizer
    never makes more tokens than bytes, the JSON holds every prompt part (tools, system, messages,
    tool_choice, output schemas) plus keys, quotes and escapes, and a non-ASCII character is 2-4 bytes.
    Image and document blocks with a base64, URL or file source (in a message's or a tool_result's
    content) are left out of the JSON and cost a fixed amount instead, never their base64 length:
    IMAGE_TOKENS per image, DOCUMENT_TOKENS per document. REQUEST_OVERHEAD_TOKENS is added once and
    SERVER_DEFINED_TOOL_TOKENS per Anthropic-defined tool.
    """
    fixed = [REQUEST_OVERHEAD_TOKENS]
    stripped = _without_binary_sources(body, fixed)
    tools = body.get("tools")
    if isinstance(tools, list):
        fixed.extend(SERVER_DEFINED_TOOL_TOKENS for tool in tools if _is_server_defined(tool))
    text = json.dumps(stripped, ensure_ascii=False, separators=(",", ":"), default=str)
    return len(text.encode()) + sum(fixed)


def estimate_worst_case(
    model: str, body: Mapping[str, Any], at: datetime, book: PriceBook | None = None, *, batch: bool = False
) -> Decimal:
    """An upper bound on what this Messages request can cost, priced by the cost engine itself.

    The worst-case usage is priced at `at` with the model's rates:
        prompt   = estimate_prompt_tokens(body), all as 1h cache writes (2× input) if any cache_control
                   asks for "1h", all as 5m writes (1.25×) if any other cache_control is present (block
                   or top level), else all as input (1×);
        output   = max_tokens, no more than the model's output limit (Claude refuses a larger max_tokens
                   with a 400: the client must get that 400, not a budget 429 for tokens never generated);
        searches = Σ max_uses of the web_search* tools (DEFAULT_WEB_SEARCH_USES for one without);
    at the fast rates when `speed` is "fast", the request's `inference_geo` multiplier, the prompt band
    the estimated prompt falls in (Haiku 5.5 above 100K), and the dearest non-batch service tier (the
    batch tier when `batch`: a Message Batches request is billed at it).
    Raises UnknownModelError for a model without a price, PricingError for a speed or geography the
    model has no price for, InvalidRequestError for a missing or invalid `max_tokens`.

    Not bounded: tokens server tools pull in during the request (search results, fetched pages, MCP
    tool definitions), PDFs beyond DOCUMENT_TOKENS, and a data-residency surcharge the request does not
    ask for (a workspace default). Such a request is still settled at its exact cost.
    """
    book = book or default_price_book()
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise InvalidRequestError("max_tokens: Field required")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidRequestError("max_tokens: must be a positive integer")
    speed = body.get("speed")
    geo = body.get("inference_geo")
    if geo is not None and not isinstance(geo, str):
        raise InvalidRequestError("inference_geo: must be a string")
    book.rates_at(model, at)  # an unknown model fails here, before any estimate is made

    prompt = estimate_prompt_tokens(body)
    ttls = set(_cache_ttls(body))
    usage = TokenUsage(
        input_tokens=0 if ttls else prompt,
        cache_write_1h_tokens=prompt if "1h" in ttls else 0,
        cache_write_5m_tokens=prompt if ttls and "1h" not in ttls else 0,
        output_tokens=min(max_tokens, limits_for(book.resolve(model)).max_output_tokens),
        web_search_requests=_web_search_uses(body.get("tools")),
        service_tier="batch" if batch else _dearest_tier(book),
        inference_geo=geo,
        speed="fast" if speed == "fast" else "standard",
    )
    return price_usage(model, usage, at, book).total_usd


def _without_binary_sources(body: Mapping[str, Any], fixed: list[int]) -> dict[str, Any]:
    """The body with image and binary document blocks replaced by None, their fixed costs noted in `fixed`.

    Only real content blocks qualify (a message's content, a tool_result's content): a look-alike dict
    anywhere else, a tool_use input say, is text the model reads and is counted byte for byte.
    """
    messages = body.get("messages")
    if not isinstance(messages, list):
        return dict(body)
    stripped = [
        {**message, "content": _content_blocks(message["content"], fixed)}
        if isinstance(message, Mapping) and isinstance(message.get("content"), list)
        else message
        for message in messages
    ]
    return {**body, "messages": stripped}


def _content_blocks(blocks: list[Any], fixed: list[int]) -> list[Any]:
    return [_content_block(block, fixed) for block in blocks]


def _content_block(block: Any, fixed: list[int]) -> Any:
    if not isinstance(block, Mapping):
        return block
    kind = block.get("type")
    source = block.get("source")
    source_type = source.get("type") if isinstance(source, Mapping) else None
    if kind == "image" and source_type in ("base64", "url", "file"):
        fixed.append(IMAGE_TOKENS)  # the API scales every image down to a bounded size
        return None
    if kind == "document" and source_type in ("base64", "url", "file"):
        fixed.append(DOCUMENT_TOKENS)
        return None
    if kind == "tool_result" and isinstance(block.get("content"), list):
        return {**block, "content": _content_blocks(block["content"], fixed)}
    return block


def _is_server_defined(tool: Any) -> bool:
    kind = tool.get("type") if isinstance(tool, Mapping) else None
    return isinstance(kind, str) and kind != "custom"


def _cache_ttls(value: Any) -> list[str]:
    """The TTL of every `cache_control` anywhere in the request (top level included); "5m" when unset."""
    found: list[str] = []
    if isinstance(value, Mapping):
        control = value.get("cache_control")
        if isinstance(control, Mapping):
            found.append("1h" if control.get("ttl") == "1h" else "5m")
        for key, item in value.items():
            if key != "cache_control":
                found.extend(_cache_ttls(item))
    elif isinstance(value, list | tuple):
        for item in value:
            found.extend(_cache_ttls(item))
    return found


def _web_search_uses(tools: Any) -> int:
    if not isinstance(tools, list):
        return 0
    uses = 0
    for tool in tools:
        kind = tool.get("type") if isinstance(tool, Mapping) else None
        if isinstance(kind, str) and kind.startswith("web_search"):
            max_uses = tool.get("max_uses")
            valid = isinstance(max_uses, int) and not isinstance(max_uses, bool) and max_uses >= 0
            uses += max_uses if valid else DEFAULT_WEB_SEARCH_USES
    return uses


def _dearest_tier(book: PriceBook) -> str:
    # A Messages request is never billed at the batch tier; of the others take the dearest (all 1 today).
    tiers = {name: m for name, m in book.service_tier_multipliers.items() if name != "batch"}
    return max(tiers, key=lambda name: (tiers[name], name == "standard"))

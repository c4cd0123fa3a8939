"""The prompt-cache policy: cache a request's stable prefix when the client did not, the way that pays.

Pure functions of the request body, the model's caching facts and observed request gaps; no I/O.

Which requests are touched
    Only a request with no `cache_control` anywhere (top level, tools, system blocks, message blocks,
    tool_result content) and a feature whose prompt cache is `auto`. A request that manages its own
    caching is forwarded byte for byte (decision `client`).

Where breakpoints go (never more than 2, so always within the API's 4)
    1. The stable prefix = tools, then system. Its breakpoint goes on the last system block (a string
       system becomes one text block), or on the last tool when there is no system. Nothing when there
       is neither (decision `no-prefix`).
    2. A conversation (an assistant turn before the last user turn): a 5m breakpoint on the last block
       of the last message too, so the next turn reads the whole conversation so far (the API looks
       back up to 20 blocks from a breakpoint for an earlier write).
    The prefix breakpoint takes the chosen TTL and the conversation one 5m: a longer TTL always comes
    before a shorter one, the order the API requires.

Minimum length
    The prefix must reach the model's minimum cacheable prompt (`PriceBook.cache_minimum_tokens`), by
    `estimate_prefix_tokens`. The estimate may err high: below the minimum the API caches nothing and
    charges nothing extra, so a wrong guess upward costs nothing, while one downward loses a saving.

Which TTL
    `choose_ttl` compares, over the feature's observed gaps between consecutive requests with the same
    prefix, what the prefix would cost per request under each option, in units of its uncached input:
        none: 1 per request
        5m:   a gap within 5 minutes reads (read multiplier), any other request writes (1.25)
        1h:   a gap within 1 hour reads, any other request writes (2)
    (a read refreshes the TTL for free, so consecutive gaps are what decide). With fewer than
    MIN_GAP_OBSERVATIONS gaps it picks 5m, the API's default. The cheapest option wins; `none` means the
    policy adds nothing (decision `not-worth-it`).
"""

import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any, Literal

type Ttl = Literal["5m", "1h"]

MIN_GAP_OBSERVATIONS = 20
FIVE_MINUTES = timedelta(minutes=5)
ONE_HOUR = timedelta(hours=1)


class CacheDecision(StrEnum):
    ADDED = "added"
    CLIENT = "client"
    OFF = "off"
    NO_PREFIX = "no-prefix"
    BELOW_MINIMUM = "below-minimum"
    NOT_WORTH_IT = "not-worth-it"


class GapBucket(StrEnum):
    """The time since the same prefix was last sent; a prefix seen for the first time is BEYOND_1H."""

    WITHIN_5M = "within_5m"
    WITHIN_1H = "within_1h"
    BEYOND_1H = "beyond_1h"


@dataclass(frozen=True)
class GapHistogram:
    within_5m: int = 0
    within_1h: int = 0
    beyond_1h: int = 0

    @property
    def total(self) -> int:
        return self.within_5m + self.within_1h + self.beyond_1h


@dataclass(frozen=True)
class TtlChoice:
    ttl: Ttl | None  # None: caching does not pay for these gaps
    reason: str  # ASCII, e.g. "1h: 34 gaps; per request 1h 0.41, 5m 0.91, none 1"


@dataclass(frozen=True)
class CachePlan:
    decision: CacheDecision
    body: dict[str, Any] | None  # the request with breakpoints added; None when unchanged
    ttl: Ttl | None
    prefix_key: str | None  # set for ADDED, NOT_WORTH_IT and CLIENT (client-managed prefixes are tracked too)
    estimated_prefix_tokens: int
    reason: str  # ASCII, for x-costgate-prompt-cache, e.g. "added 1h: system, conversation"


@dataclass(frozen=True)
class PrefixUse:
    """One request's use of a cached prefix, recorded atomically with its ledger row."""

    prefix_key: str
    model: str
    managed_by: Literal["costgate", "client"]
    ttl: Ttl | None
    gap: GapBucket | None  # set only when costgate manages the prefix (it feeds choose_ttl)
    write_tokens: int
    read_tokens: int
    write_premium_usd: Decimal  # what the writes cost above the same tokens as plain input
    read_saved_usd: Decimal  # what the reads cost below the same tokens as plain input


@dataclass(frozen=True)
class PrefixStats:
    """A prefix's totals: whether its cache writes paid for themselves."""

    feature: str
    prefix_key: str
    model: str
    managed_by: str
    first_seen: datetime
    last_seen: datetime
    requests: int
    write_tokens: int
    read_tokens: int
    write_premium_usd: Decimal
    read_saved_usd: Decimal

    @property
    def net_saved_usd(self) -> Decimal:
        return self.read_saved_usd - self.write_premium_usd

    @property
    def wasted(self) -> bool:
        """Writes that cost more than every read saved."""
        return self.net_saved_usd < 0


def has_cache_control(body: Mapping[str, Any]) -> bool:
    """Whether the client asked for caching anywhere the API reads `cache_control`; malformed shapes are no."""
    if "cache_control" in body:
        return True
    system = body.get("system")
    blocks = [*_dicts(body.get("tools")), *(_dicts(system) if isinstance(system, list) else [])]
    for message in _dicts(body.get("messages")):
        for block in _dicts(message.get("content")):
            blocks.append(block)
            if block.get("type") == "tool_result":
                blocks.extend(_dicts(block.get("content")))
    return any("cache_control" in block for block in blocks)


def prefix_key(model: str, body: Mapping[str, Any]) -> str:
    """A stable id for (model, tools, system): 32 hex characters of a SHA-256 over canonical JSON.

    A string system and the same text as one text block are one prefix to the API, so they share a key.
    """
    system = body.get("system")
    if isinstance(system, str):
        system = [{"type": "text", "text": system}]
    return _digest({"model": model, "tools": body.get("tools"), "system": system})


def estimate_prefix_tokens(body: Mapping[str, Any]) -> int:
    """An upper-leaning estimate of the tokens in tools + system, without calling count_tokens.

    Over the compact JSON of `tools` followed by the system text (the string, or the `text` of each
    system block): a quarter token per ASCII character, rounded up, and a whole token per other
    character. It errs high on purpose: below the model's minimum the API caches nothing and charges
    nothing extra, so an estimate that is too high costs nothing, while one too low would skip a saving.
    """
    tools = body.get("tools")
    text = json.dumps(tools, ensure_ascii=False, separators=(",", ":")) if tools else ""
    system = body.get("system")
    if isinstance(system, str):
        text += system
    else:
        text += "".join(block["text"] for block in _dicts(system) if isinstance(block.get("text"), str))
    ascii_chars = sum(1 for char in text if char.isascii())
    return -(-ascii_chars // 4) + len(text) - ascii_chars


def gap_bucket(previous: datetime | None, now: datetime) -> GapBucket:
    """The bucket of the time since `previous`; a negative gap (clock skew) counts as within 5 minutes."""
    if previous is None:
        return GapBucket.BEYOND_1H
    gap = now - previous
    if gap <= FIVE_MINUTES:
        return GapBucket.WITHIN_5M
    if gap <= ONE_HOUR:
        return GapBucket.WITHIN_1H
    return GapBucket.BEYOND_1H


def choose_ttl(gaps: GapHistogram, read_multiplier: Decimal, write_multipliers: Mapping[str, Decimal]) -> TtlChoice:
    """The cheapest option per request for these gaps; `write_multipliers` is `PriceBook.cache_write_multipliers`.

    On an exact tie the earlier of 5m, 1h, none wins: 5m is the API's default and its entries expire
    soonest, and caching at equal cost is kept so that the gaps it records keep being observed.
    """
    if gaps.total < MIN_GAP_OBSERVATIONS:
        return TtlChoice("5m", f"5m: only {gaps.total} gaps observed")
    # Compared as totals over all gaps, which are exact Decimals; divided per request only for display.
    totals: dict[Ttl | None, Decimal] = {
        "5m": gaps.within_5m * read_multiplier + (gaps.within_1h + gaps.beyond_1h) * write_multipliers["5m"],
        "1h": (gaps.within_5m + gaps.within_1h) * read_multiplier + gaps.beyond_1h * write_multipliers["1h"],
        None: Decimal(gaps.total),
    }
    ranked = sorted(totals, key=lambda option: totals[option])  # stable: ties keep the 5m, 1h, none order
    listed = ", ".join(f"{_option_name(option)} {_display(totals[option] / gaps.total)}" for option in ranked)
    return TtlChoice(ranked[0], f"{_option_name(ranked[0])}: {gaps.total} gaps; per request {listed}")


def plan_prompt_cache(
    body: Mapping[str, Any], *, model: str, enabled: bool, minimum_tokens: int, ttl_for: Callable[[], TtlChoice]
) -> CachePlan:
    """What the policy does to this request; `ttl_for` is called only when a breakpoint would be added.

    Checked in order: off, client-managed, no prefix, below the minimum, not worth it, added. The
    input is never changed: an added breakpoint is on a new body that copies only the parts it edits.
    """
    if not enabled:
        return CachePlan(CacheDecision.OFF, None, None, None, 0, "off")
    if has_cache_control(body):
        return CachePlan(CacheDecision.CLIENT, None, None, prefix_key(model, body), 0, "client")
    tools = _well_formed(body.get("tools"))
    system = body.get("system")
    system_blocks = [{"type": "text", "text": system}] if isinstance(system, str) and system else _well_formed(system)
    if not tools and not system_blocks:
        return CachePlan(CacheDecision.NO_PREFIX, None, None, None, 0, "no-prefix")
    estimate = estimate_prefix_tokens(body)
    if estimate < minimum_tokens:
        reason = f"below-minimum: ~{estimate} of {minimum_tokens} tokens"
        return CachePlan(CacheDecision.BELOW_MINIMUM, None, None, None, estimate, reason)
    choice = ttl_for()
    if choice.ttl is None:
        # Keyed all the same: its gaps must keep being observed, or "not worth it" could never change.
        return CachePlan(
            CacheDecision.NOT_WORTH_IT, None, None, prefix_key(model, body), estimate, f"not-worth-it: {choice.reason}"
        )

    planned = dict(body)
    places: list[str] = []
    if system_blocks:
        planned["system"] = _with_breakpoint_on_last(system_blocks, choice.ttl)
        places.append("system")
    else:
        planned["tools"] = _with_breakpoint_on_last(tools, choice.ttl)
        places.append("tools")
    messages = body.get("messages")
    if isinstance(messages, list) and _is_conversation(messages):
        content = _conversation_breakpoint(messages[-1])
        if content is not None:
            planned["messages"] = [*messages[:-1], {**messages[-1], "content": content}]
            places.append("conversation")
    reason = f"added {choice.ttl}: {', '.join(places)}"
    return CachePlan(CacheDecision.ADDED, planned, choice.ttl, prefix_key(model, body), estimate, reason)


# Blocks the API refuses `cache_control` on; an empty text block is refused with it too.
_UNCACHEABLE_BLOCKS = frozenset({"thinking", "redacted_thinking"})


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The dict items of a list; nothing for anything else (a malformed body never raises here)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _well_formed(value: Any) -> list[dict[str, Any]]:
    """A non-empty list of blocks, all dicts, or nothing: a breakpoint goes only where the shape is sure."""
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return value
    return []


def _breakpoint(ttl: Ttl) -> dict[str, str]:
    return {"type": "ephemeral", "ttl": ttl}  # "5m" stated too, so the upstream request says which


def _with_breakpoint_on_last(blocks: list[dict[str, Any]], ttl: Ttl) -> list[dict[str, Any]]:
    return [*blocks[:-1], {**copy.deepcopy(blocks[-1]), "cache_control": _breakpoint(ttl)}]


def _is_conversation(messages: list[Any]) -> bool:
    """An assistant turn before the last user turn."""
    roles = [message.get("role") if isinstance(message, dict) else None for message in messages]
    if "user" not in roles:
        return False
    last_user = len(roles) - 1 - roles[::-1].index("user")
    return "assistant" in roles[:last_user]


def _conversation_breakpoint(message: Any) -> list[dict[str, Any]] | None:
    """The last message's content with a 5m breakpoint on its last block; None where one cannot go."""
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content or not isinstance(content[-1], dict):
        return None
    last = content[-1]
    if last.get("type") in _UNCACHEABLE_BLOCKS or (last.get("type") == "text" and not last.get("text")):
        return None
    return _with_breakpoint_on_last(content, "5m")


def _option_name(option: Ttl | None) -> str:
    return option or "none"


def _display(cost: Decimal) -> str:
    """Two decimals for the reason string only, without trailing zeros: 1 → "1", 0.405 → "0.4"."""
    text = f"{cost.quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN):f}"
    return text.rstrip("0").rstrip(".")


def _canonical(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def _digest(value: Any) -> str:
    return hashlib.sha256(_canonical(value)).hexdigest()[:32]

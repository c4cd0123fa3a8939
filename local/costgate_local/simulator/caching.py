"""The prompt-cache engine: which part of a prompt is read from the cache, written to it, or plain input.

The rules, as the Claude API documents them (shared/reference/anthropic-api.md):

- An entry is written only at a breakpoint (`cache_control`), keyed by the hash of the prefix up to and
  including that block, per workspace (API key) and model; a prefix shorter than the model's minimum
  cacheable prompt is not cached and is not an error.
- On lookup each breakpoint checks its own prefix and walks back at most 20 blocks for an earlier
  cached boundary; the longest cached prefix found is read (`cache_read_input_tokens`).
- Every breakpoint past the hit is written: `cache_creation_input_tokens` runs from the hit to the last
  written breakpoint, each segment billed at the TTL of the breakpoint that closes it (5m or 1h).
- `input_tokens` is the rest, after the last breakpoint, so input + creation + read == count_tokens.
- A hit refreshes the entry's TTL for free; entries expire after their TTL by the simulator's clock.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from costgate_local.simulator.prompt import Prompt

LOOKBACK_BLOCKS = 20
TTLS = {"5m": timedelta(minutes=5), "1h": timedelta(hours=1)}
# Expired entries are swept after this many writes, so a long run's memory stays bounded.
_SWEEP_EVERY = 1_000


@dataclass(frozen=True)
class CacheUsage:
    input_tokens: int
    cache_read_input_tokens: int
    ephemeral_5m_input_tokens: int
    ephemeral_1h_input_tokens: int

    @property
    def cache_creation_input_tokens(self) -> int:
        return self.ephemeral_5m_input_tokens + self.ephemeral_1h_input_tokens


@dataclass
class _Entry:
    ttl: timedelta
    expires_at: datetime


type _Key = tuple[str, str, bytes]


class PromptCache:
    """Cache entries by (workspace, canonical model, prefix hash). Not thread-safe: callers serialise."""

    def __init__(self) -> None:
        self._entries: dict[_Key, _Entry] = {}
        self._writes = 0

    def apply(self, prompt: Prompt, *, workspace: str, model: str, min_tokens: int, now: datetime) -> CacheUsage:
        """Look the prompt up, write what the rules say to write, and return the usage split."""
        cumulative = prompt.cumulative()
        total = prompt.total_tokens

        def key(block: int) -> _Key:
            return (workspace, model, prompt.hashes[block])

        hit = -1
        for breakpoint_ in prompt.breakpoints:
            lowest = max(breakpoint_.block - LOOKBACK_BLOCKS, 0)
            for position in range(breakpoint_.block, lowest - 1, -1):
                if position <= hit:
                    break
                if self._live(key(position), now) is not None:
                    hit = position
                    break

        read = cumulative[hit] if hit >= 0 else 0
        if hit >= 0:
            entry = self._entries[key(hit)]
            entry.expires_at = now + entry.ttl

        written_to = read
        writes = {"5m": 0, "1h": 0}
        for breakpoint_ in prompt.breakpoints:
            end = cumulative[breakpoint_.block]
            if breakpoint_.block <= hit or end < min_tokens:
                continue
            writes[breakpoint_.ttl] += end - written_to
            written_to = end
            ttl = TTLS[breakpoint_.ttl]
            self._entries[key(breakpoint_.block)] = _Entry(ttl=ttl, expires_at=now + ttl)
            self._count_write(now)

        return CacheUsage(
            input_tokens=total - written_to,
            cache_read_input_tokens=read,
            ephemeral_5m_input_tokens=writes["5m"],
            ephemeral_1h_input_tokens=writes["1h"],
        )

    def _live(self, key: _Key, now: datetime) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None or now >= entry.expires_at:
            return None
        return entry

    def _count_write(self, now: datetime) -> None:
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            self._entries = {k: e for k, e in self._entries.items() if now < e.expires_at}

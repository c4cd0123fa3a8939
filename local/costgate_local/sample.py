"""A realistic day of Claude traffic for the local demo, deterministic for a given day.

Three tenants, six features, modelled on real services: a legal team with a long cached system
prompt on Opus, a Korean shop's FAQ bot on Haiku with a 5-minute cache, overnight review summaries
through the Batch API, research on Fable 5.2 with US-only inference, and code review in fast mode.
Prompt caching follows the API's rule: a prefix used again within its TTL is read, otherwise written.
"""

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any


@dataclass(frozen=True)
class Profile:
    tenant: str
    feature: str
    model: str
    requests: int
    hours: tuple[int, int]  # UTC hours the traffic falls in
    prefix_tokens: int  # cacheable system prompt; 0 = no caching
    cache_ttl: str | None  # "5m" | "1h"
    input_tokens: tuple[int, int]
    output_tokens: tuple[int, int]
    usage_extra: tuple[tuple[str, Any], ...] = ()
    web_searches: tuple[int, int] = (0, 0)
    fast_share: float = 0.0


PROFILES = (
    Profile("acme-legal", "contract-analysis", "claude-opus-5-5", 48, (0, 10), 6_200, "1h", (900, 3_500), (700, 2_200)),
    Profile(
        "acme-legal",
        "clause-search",
        "claude-sonnet-5-5",
        20,
        (1, 9),
        0,
        None,
        (1_200, 2_400),
        (300, 700),
        web_searches=(1, 3),
    ),
    Profile("hanbit-shop", "customer-faq", "claude-haiku-5-5", 140, (0, 15), 1_400, "5m", (40, 220), (80, 320)),
    Profile(
        "hanbit-shop",
        "review-summaries",
        "claude-haiku-4-5",
        40,
        (16, 18),
        0,
        None,
        (2_000, 8_000),
        (180, 420),
        usage_extra=(("service_tier", "batch"),),
    ),
    Profile(
        "nova-research",
        "deep-research",
        "claude-fable-5-2",
        10,
        (12, 20),
        0,
        None,
        (20_000, 60_000),
        (3_000, 8_000),
        usage_extra=(("inference_geo", "us"),),
    ),
    Profile(
        "nova-research",
        "code-review",
        "claude-opus-5",
        24,
        (13, 22),
        2_400,
        "5m",
        (1_500, 6_000),
        (400, 1_800),
        fast_share=0.25,
    ),
)

_TTL = {"5m": timedelta(minutes=5), "1h": timedelta(hours=1)}


@dataclass(frozen=True)
class SampleRequest:
    request_id: str
    at: datetime
    tenant: str
    feature: str
    model: str
    usage: dict[str, Any]


def sample_day(day: date, seed: int = 20261129) -> list[SampleRequest]:
    """Every request of the day, in time order."""
    rng = random.Random(seed)  # noqa: S311 - sample data, not security
    requests = [r for profile in PROFILES for r in _profile_requests(profile, day, rng)]
    requests.sort(key=lambda r: (r.at, r.request_id))
    return requests


def _profile_requests(profile: Profile, day: date, rng: random.Random) -> Iterator[SampleRequest]:
    start = datetime.combine(day, time(profile.hours[0]), tzinfo=UTC)
    span = (profile.hours[1] - profile.hours[0]) * 3600
    times = sorted(start + timedelta(seconds=rng.randrange(span)) for _ in range(profile.requests))
    cached_until: datetime | None = None
    for index, at in enumerate(times):
        usage: dict[str, Any] = {
            "input_tokens": rng.randint(*profile.input_tokens),
            "output_tokens": rng.randint(*profile.output_tokens),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            **dict(profile.usage_extra),
        }
        if profile.prefix_tokens and profile.cache_ttl:
            if cached_until is not None and at <= cached_until:
                usage["cache_read_input_tokens"] = profile.prefix_tokens
            else:
                usage["cache_creation_input_tokens"] = profile.prefix_tokens
                usage["cache_creation"] = {
                    "ephemeral_5m_input_tokens": profile.prefix_tokens if profile.cache_ttl == "5m" else 0,
                    "ephemeral_1h_input_tokens": profile.prefix_tokens if profile.cache_ttl == "1h" else 0,
                }
            cached_until = at + _TTL[profile.cache_ttl]  # a hit refreshes the TTL too
        else:
            usage["input_tokens"] += profile.prefix_tokens
        if profile.web_searches[1]:
            usage["server_tool_use"] = {"web_search_requests": rng.randint(*profile.web_searches)}
        if profile.fast_share and rng.random() < profile.fast_share:
            usage["speed"] = "fast"
        yield SampleRequest(
            request_id=f"demo-{day.isoformat()}-{profile.feature}-{index:04d}",
            at=at,
            tenant=profile.tenant,
            feature=profile.feature,
            model=profile.model,
            usage=usage,
        )

"""Routing and the prompt-cache policy through the Gateway: what goes upstream, the receipt, the ledger.

Rates (USD per million): Haiku 5.5 0.10 / 0.50 (reads ×0.10), Sonnet 5.5 2 / 10, Opus 5.5 4 / 20 (reads
×0.05); 5-minute writes ×1.25, 1-hour writes ×2. The arithmetic is beside each expected value.
"""

import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from costgate.errors import PricingError
from costgate.gateway.features import FeatureConfig, PromptCacheMode, PromptCacheTtl
from costgate.pricing.cost import Strategy
from costgate.routing.prompt_cache import GapBucket, GapHistogram
from costgate.routing.router import RoutePolicy, Tier
from tests.unit.gateway_world import NOW, OPUS, World, make_world, message_reply, reply

HAIKU = "claude-haiku-5-5"
SONNET = "claude-sonnet-5-5"
SIMPLE_PROMPT = "Translate 'good morning' into Korean."
COMPLEX_PROMPT = "Design and compare two architectures for a multi-region payment ledger."
USAGE = {"input_tokens": 1000, "output_tokens": 200}
LONG_SYSTEM = "You are a careful contract lawyer. " * 120  # 4,080 ASCII characters: ~1,020 estimated tokens


def body(model: str = "auto", prompt: str = SIMPLE_PROMPT, **extra: Any) -> bytes:
    request = {"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": prompt}], **extra}
    return json.dumps(request, separators=(",", ":")).encode()


def sent_json(world: World, index: int = -1) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(world.upstream.sent[index].body)
    return parsed


# --- routing ---------------------------------------------------------------------------------------------


def test_auto_sends_a_simple_request_to_the_lowest_tier_and_measures_the_saving_against_sonnet() -> None:
    # Given Haiku answering 1000 in / 200 out
    world = make_world(message_reply(USAGE, model=HAIKU))

    # When an "auto" translation request goes through
    headers = world.send(body()).headers

    # Then Haiku was asked, and the receipt says so and why
    assert sent_json(world)["model"] == HAIKU
    assert headers["x-costgate-model"] == HAIKU
    assert headers["x-costgate-route-reason"].startswith("auto: simple (score ")
    assert "simple: translate" in headers["x-costgate-route-reason"]
    # Haiku: 1000×0.1e-6 + 200×0.5e-6 = 0.0001 + 0.0001 = 0.0002
    # Sonnet 5.5 (the default baseline): 1000×2e-6 + 200×10e-6 = 0.002 + 0.002 = 0.004 → routing saved 0.0038
    assert headers["x-costgate-cost-usd"] == "0.0002"
    assert headers["x-costgate-baseline-cost-usd"] == "0.004"
    assert headers["x-costgate-savings-routing-usd"] == "0.0038"
    entry = next(iter(world.ledger.entries.values()))
    assert (entry.requested_model, entry.route_tier) == ("auto", "simple")
    assert entry.route_reason == headers["x-costgate-route-reason"]
    assert entry.savings[Strategy.ROUTING] == Decimal("0.0038")
    assert entry.baseline_cost_usd == Decimal("0.004")


def test_auto_sends_a_complex_request_up_and_records_a_negative_saving() -> None:
    world = make_world(message_reply(USAGE, model=OPUS))

    headers = world.send(body(prompt=COMPLEX_PROMPT)).headers

    assert sent_json(world)["model"] == OPUS
    assert headers["x-costgate-route-reason"].startswith("auto: complex")
    # Opus: 0.004 + 0.004 = 0.008; Sonnet baseline 0.004 → routing −0.004
    assert headers["x-costgate-cost-usd"] == "0.008"
    assert headers["x-costgate-savings-routing-usd"] == "-0.004"
    assert next(iter(world.ledger.entries.values())).route_tier == "complex"


def test_an_explicit_model_is_forwarded_byte_for_byte_and_has_no_routing_saving() -> None:
    world = make_world(message_reply(USAGE, model=OPUS))
    sent = body(OPUS)

    headers = world.send(sent).headers

    assert world.upstream.sent[0].body == sent
    assert headers["x-costgate-route-reason"] == "explicit model"
    assert "x-costgate-savings-routing-usd" not in headers
    entry = next(iter(world.ledger.entries.values()))
    assert (entry.requested_model, entry.route_tier, entry.route_reason) == (OPUS, None, None)
    assert Strategy.ROUTING not in entry.savings


def test_a_feature_policy_may_route_explicit_models_and_measures_against_the_named_one() -> None:
    # Given a feature whose policy routes named models too
    config = FeatureConfig("faq", route=RoutePolicy(override_explicit=True))
    world = make_world(message_reply(USAGE, model=HAIKU), features=(config,))

    headers = world.send(body(OPUS), x_costgate_feature="faq").headers

    assert sent_json(world)["model"] == HAIKU
    assert headers["x-costgate-route-reason"].startswith("override: simple")
    # baseline is the named Opus: 0.008; Haiku 0.0002 → 0.0078
    assert headers["x-costgate-savings-routing-usd"] == "0.0078"


def test_a_feature_default_model_is_the_baseline_of_its_auto_requests() -> None:
    config = FeatureConfig("faq", default_model=OPUS)
    world = make_world(message_reply(USAGE, model=HAIKU), features=(config,))

    headers = world.send(body(), x_costgate_feature="faq").headers

    assert headers["x-costgate-baseline-cost-usd"] == "0.008"
    assert headers["x-costgate-savings-routing-usd"] == "0.0078"


def test_a_feature_ceiling_keeps_complex_requests_on_its_top_tier() -> None:
    config = FeatureConfig("faq", route=RoutePolicy(ceiling=Tier.MEDIUM))
    world = make_world(message_reply(USAGE, model=SONNET), features=(config,))

    headers = world.send(body(prompt=COMPLEX_PROMPT), x_costgate_feature="faq").headers

    assert sent_json(world)["model"] == SONNET
    assert headers["x-costgate-route-reason"].endswith("; ceiling medium)")
    assert headers["x-costgate-savings-routing-usd"] == "0"


def test_auto_with_a_speed_the_baseline_cannot_price_is_refused_before_anything_is_spent() -> None:
    # Given "auto" with fast mode: the complex tier (Opus 5.5) has fast rates, the Sonnet 5.5 baseline none
    world = make_world(message_reply(USAGE, model=OPUS))

    with pytest.raises(PricingError):
        world.send(body(prompt=COMPLEX_PROMPT, speed="fast"))

    assert world.upstream.sent == []
    assert world.ledger.entries == {}


def test_count_tokens_counts_for_the_model_routing_picks() -> None:
    world = make_world(reply(b'{"input_tokens": 1000}'))

    response = world.gateway.count_tokens(world.request(body()))

    assert world.upstream.sent[0].path == "/v1/messages/count_tokens"
    assert sent_json(world)["model"] == HAIKU
    assert response.headers["x-costgate-model"] == HAIKU
    # 1000 × 0.1e-6
    assert response.headers["x-costgate-estimated-input-cost-usd"] == "0.0001"


# --- the prompt-cache policy -----------------------------------------------------------------------------


def test_a_long_system_prompt_gets_a_5m_breakpoint_when_the_client_set_none() -> None:
    world = make_world(message_reply(USAGE, model=OPUS))

    headers = world.send(body(OPUS, system=LONG_SYSTEM)).headers

    assert sent_json(world)["system"] == [
        {"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral", "ttl": "5m"}}
    ]
    assert headers["x-costgate-prompt-cache"] == "added 5m: system"
    # the rest of the request is the client's
    sent = sent_json(world)
    assert {k: v for k, v in sent.items() if k != "system"} == {
        k: v for k, v in json.loads(body(OPUS)).items() if k != "system"
    }


def test_a_request_that_manages_its_own_caching_is_forwarded_untouched() -> None:
    world = make_world(message_reply(USAGE, model=OPUS))
    system = [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}]
    sent = body(OPUS, system=system)

    headers = world.send(sent).headers

    assert world.upstream.sent[0].body == sent
    assert headers["x-costgate-prompt-cache"] == "client"
    use = next(iter(world.ledger.entries.values())).prompt_cache
    assert use is not None
    assert (use.managed_by, use.gap) == ("client", None)


def test_a_feature_with_the_policy_off_is_forwarded_untouched() -> None:
    world = make_world(
        message_reply(USAGE, model=OPUS), features=(FeatureConfig("raw", prompt_cache=PromptCacheMode.OFF),)
    )
    sent = body(OPUS, system=LONG_SYSTEM)

    headers = world.send(sent, x_costgate_feature="raw").headers

    assert world.upstream.sent[0].body == sent
    assert headers["x-costgate-prompt-cache"] == "off"


def test_a_short_system_prompt_is_left_alone() -> None:
    world = make_world(message_reply(USAGE, model=OPUS))
    sent = body(OPUS, system="Be brief.")

    headers = world.send(sent).headers

    assert world.upstream.sent[0].body == sent
    assert headers["x-costgate-prompt-cache"].startswith("below-minimum: ~")


def test_gaps_that_favour_one_hour_get_a_1h_breakpoint() -> None:
    # Given 30 observed gaps, all between 5 minutes and 1 hour: 5m would write every time, 1h read
    world = make_world(message_reply(USAGE, model=OPUS))
    world.prompt_cache.gaps[("default", NOW.date())] = GapHistogram(within_1h=30)

    headers = world.send(body(OPUS, system=LONG_SYSTEM)).headers

    assert sent_json(world)["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert headers["x-costgate-prompt-cache"] == "added 1h: system"


def test_a_configured_ttl_wins_over_observed_gaps() -> None:
    config = FeatureConfig("legal", prompt_cache_ttl=PromptCacheTtl.ONE_HOUR)
    world = make_world(message_reply(USAGE, model=OPUS), features=(config,))

    world.send(body(OPUS, system=LONG_SYSTEM), x_costgate_feature="legal")

    assert sent_json(world)["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}


def test_gaps_for_which_caching_never_pays_leave_the_request_alone_but_keep_being_observed() -> None:
    # Given 30 gaps all beyond an hour: every request would write; plain input is cheapest
    world = make_world(message_reply(USAGE, model=OPUS))
    world.prompt_cache.gaps[("default", NOW.date())] = GapHistogram(beyond_1h=30)
    sent = body(OPUS, system=LONG_SYSTEM)

    headers = world.send(sent).headers

    assert world.upstream.sent[0].body == sent
    assert headers["x-costgate-prompt-cache"].startswith("not-worth-it")
    assert world.prompt_cache.gap_histogram("default") == GapHistogram(beyond_1h=31)


def test_write_then_read_is_recorded_per_prefix_with_its_gaps() -> None:
    # Given Opus writing 4000 prompt tokens (5 min) on the first call and reading them on the second
    first = {"input_tokens": 20, "cache_creation_input_tokens": 4000, "output_tokens": 100}
    second = {"input_tokens": 20, "cache_read_input_tokens": 4000, "output_tokens": 100}
    world = make_world(
        message_reply(first, model=OPUS, request_id="req_1"), message_reply(second, model=OPUS, request_id="req_2")
    )

    one = world.send(body(OPUS, system=LONG_SYSTEM), x_costgate_cache="off").headers
    two = world.send(body(OPUS, system=LONG_SYSTEM), x_costgate_cache="off").headers

    # first: 20×4e-6 + 4000×4e-6×1.25 + 100×20e-6 = 0.00008 + 0.02 + 0.002 = 0.02208; uncached 0.01808
    assert one["x-costgate-cost-usd"] == "0.02208"
    assert one["x-costgate-savings-prompt-cache-usd"] == "-0.004"
    # second: 0.00008 + 4000×4e-6×0.05 + 0.002 = 0.00288; uncached 0.01808 → 0.0152
    assert two["x-costgate-cost-usd"] == "0.00288"
    assert two["x-costgate-savings-prompt-cache-usd"] == "0.0152"
    # the prefix's totals: one write premium 4000×4e-6×0.25 = 0.004, one read saving 4000×4e-6×0.95 = 0.0152
    (stats,) = world.prompt_cache.prefixes()
    assert (stats.requests, stats.write_tokens, stats.read_tokens) == (2, 4000, 4000)
    assert (stats.write_premium_usd, stats.read_saved_usd) == (Decimal("0.004"), Decimal("0.0152"))
    assert (stats.managed_by, stats.wasted) == ("costgate", False)
    # first sighting counts beyond an hour; the second came at the same instant
    assert world.prompt_cache.gap_histogram("default") == GapHistogram(within_5m=1, beyond_1h=1)
    assert stats.last_seen == NOW


def test_a_prefix_seen_forty_minutes_ago_is_a_gap_within_the_hour() -> None:
    world = make_world(message_reply(USAGE, model=OPUS))
    world.send(body(OPUS, system=LONG_SYSTEM))
    key = next(iter(world.prompt_cache.stats))
    earlier = world.prompt_cache.stats[key]
    world.prompt_cache.stats[key] = replace(earlier, last_seen=NOW - timedelta(minutes=40))

    world.upstream.replies = [message_reply(USAGE, model=OPUS, request_id="req_later")]
    world.send(body(OPUS, system=LONG_SYSTEM), x_costgate_cache="off")

    assert world.prompt_cache.gap_histogram("default") == GapHistogram(within_1h=1, beyond_1h=1)
    entry = world.ledger.entries["req_later"]
    assert entry.prompt_cache is not None
    assert entry.prompt_cache.gap is GapBucket.WITHIN_1H


def test_routing_and_caching_combine_on_one_request() -> None:
    # Given "auto" with a long system prompt: routed to Haiku, which then gets the breakpoint
    world = make_world(message_reply(USAGE, model=HAIKU))

    headers = world.send(body(system=LONG_SYSTEM)).headers

    sent = sent_json(world)
    assert sent["model"] == HAIKU
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "5m"}
    assert headers["x-costgate-model"] == HAIKU
    assert headers["x-costgate-prompt-cache"] == "added 5m: system"

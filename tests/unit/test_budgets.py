"""Hard budgets: the worst-case estimate, windows and labels, and reserve/release/remaining with the fake store.

Expected costs are decimal literals computed by hand from shared/reference/anthropic-api.md (USD per
million tokens, so `N×rate/1e6`); the arithmetic is in the comment beside each.
"""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from costgate.accounting.budgets import (
    DEFAULT_WEB_SEARCH_USES,
    DOCUMENT_TOKENS,
    IMAGE_TOKENS,
    REQUEST_OVERHEAD_TOKENS,
    SERVER_DEFINED_TOOL_TOKENS,
    Budget,
    BudgetPeriod,
    Hold,
    Reservation,
    estimate_prompt_tokens,
    estimate_worst_case,
    feature_scope,
    key_budgets,
    key_scope,
    tenant_scope,
)
from costgate.accounting.services import release_reservation, remaining_after, reserve_budget
from costgate.errors import (
    BudgetExceededError,
    InvalidRequestError,
    PricingError,
    RateLimitError,
    UnknownModelError,
    error_response,
)
from tests.fakes.accounting import InMemoryBudgetStore

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
OPUS = "claude-opus-5-5"  # 4 / 20 per million; fast 8 / 40; inference_geo us ×1.1
HAIKU = "claude-haiku-5-5"  # 0.10 / 0.50 per million; 0.50 / 2.50 above 100K prompt tokens


def body_with_prompt(tokens: int, max_tokens: int = 1000, **fields: Any) -> dict[str, Any]:
    """A Messages body whose estimated prompt is exactly `tokens`: the user's text is padded to fit."""
    body: dict[str, Any] = {"model": OPUS, "max_tokens": max_tokens, **fields}
    body.setdefault("messages", []).append({"role": "user", "content": ""})
    body["messages"][-1]["content"] = "a" * (tokens - estimate_prompt_tokens(body))
    assert estimate_prompt_tokens(body) == tokens
    return body


def ephemeral(ttl: str | None = None) -> dict[str, str]:
    return {"type": "ephemeral", "ttl": ttl} if ttl else {"type": "ephemeral"}


# --- the prompt bound ------------------------------------------------------------------------------------


def test_prompt_bound_is_one_token_per_byte_of_the_body_plus_the_fixed_overhead() -> None:
    # Given a one-line request
    body = {"model": OPUS, "max_tokens": 1000, "messages": [{"role": "user", "content": "Hello"}]}
    compact = '{"model":"claude-opus-5-5","max_tokens":1000,"messages":[{"role":"user","content":"Hello"}]}'
    assert len(compact) == 92

    # When its prompt is estimated
    # Then every byte of its compact JSON is a token, plus the request overhead
    assert REQUEST_OVERHEAD_TOKENS == 2_000
    assert estimate_prompt_tokens(body) == 2_092


def test_non_ascii_text_counts_each_utf8_byte() -> None:
    # Given the same request in ASCII and in Korean: "ab" is 2 bytes, "안녕" is 6
    ascii_body = {"messages": [{"role": "user", "content": "ab"}]}
    korean_body = {"messages": [{"role": "user", "content": "안녕"}]}

    # When both are estimated
    # Then the Korean one counts 4 tokens more, though both have two characters
    assert estimate_prompt_tokens(korean_body) - estimate_prompt_tokens(ascii_body) == 4


def test_an_image_costs_a_fixed_amount_whatever_its_base64_length() -> None:
    # Given a small and a 2 MB base64 image in the same message
    def with_image(data: str) -> dict[str, Any]:
        image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}
        return {"messages": [{"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}]}

    small, large = with_image("iVBORw0KGgo="), with_image("A" * 2_000_000)
    # The image block is counted as `null`
    compact = '{"messages":[{"role":"user","content":[null,{"type":"text","text":"What is this?"}]}]}'

    # When both are estimated
    # Then each costs IMAGE_TOKENS for the image, never its data
    assert IMAGE_TOKENS == 5_000
    assert estimate_prompt_tokens(small) == estimate_prompt_tokens(large) == 2_000 + 5_000 + len(compact)


def test_binary_documents_cost_a_fixed_allowance_and_text_documents_their_text() -> None:
    # Given a base64 PDF, a PDF by URL and a plain-text document
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "J" * 500_000}}
    by_url = {"type": "document", "source": {"type": "url", "url": "https://example.com/report.pdf"}}
    text = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x" * 1000}}

    def body(*blocks: dict[str, Any]) -> dict[str, Any]:
        return {"messages": [{"role": "user", "content": list(blocks)}]}

    # When each is estimated
    # Then the binary ones cost DOCUMENT_TOKENS each, and the text one its bytes
    assert DOCUMENT_TOKENS == 100_000
    compact_two_nulls = '{"messages":[{"role":"user","content":[null,null]}]}'
    assert estimate_prompt_tokens(body(pdf, by_url)) == 2_000 + 200_000 + len(compact_two_nulls)
    assert estimate_prompt_tokens(body(text)) > 2_000 + 1_000
    assert estimate_prompt_tokens(body(text)) < 2_000 + 1_200


def test_an_image_in_a_tool_result_is_a_fixed_cost_but_a_look_alike_in_a_tool_input_is_text() -> None:
    # Given an image returned by a tool, and a dict shaped like an image inside a tool_use input
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 100_000}}
    returned = {"type": "tool_result", "tool_use_id": "toolu_01", "content": [image]}
    smuggled = {"type": "tool_use", "id": "toolu_02", "name": "save", "input": {"photo": image}}

    # When each is estimated
    # Then the real image costs IMAGE_TOKENS, and the look-alike (text the model reads) every byte of it
    assert estimate_prompt_tokens({"messages": [{"role": "user", "content": [returned]}]}) == (
        2_000
        + 5_000
        + len(
            '{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01","content":[null]}]}]}'
        )
    )
    assert estimate_prompt_tokens({"messages": [{"role": "assistant", "content": [smuggled]}]}) > 100_000


def test_each_anthropic_defined_tool_adds_its_hidden_definition() -> None:
    # Given one custom tool and two Anthropic-defined ones (web search, bash)
    custom = {"name": "lookup", "input_schema": {"type": "object"}}
    server = [{"type": "web_search_20250305", "name": "web_search"}, {"type": "bash_20250124", "name": "bash"}]
    plain = {"tools": [custom]}
    mixed = {"tools": [custom, *server]}
    extra_json = len(',{"type":"web_search_20250305","name":"web_search"},{"type":"bash_20250124","name":"bash"}')

    # When both are estimated
    # Then the two Anthropic-defined tools add their JSON and SERVER_DEFINED_TOOL_TOKENS each
    assert SERVER_DEFINED_TOOL_TOKENS == 2_000
    assert estimate_prompt_tokens(mixed) - estimate_prompt_tokens(plain) == extra_json + 4_000


# --- the worst case --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # 10,000×4/1e6 + 1,000×20/1e6 = 0.04 + 0.02
        pytest.param({}, "0.06", id="plain"),
        # 10,000×4×1.25/1e6 + 0.02 = 0.05 + 0.02
        pytest.param(
            {"system": [{"type": "text", "text": "Be brief.", "cache_control": ephemeral()}]}, "0.07", id="block-5m"
        ),
        pytest.param({"cache_control": ephemeral()}, "0.07", id="top-level-automatic-caching-5m"),
        pytest.param({"system": [{"type": "text", "text": "x", "cache_control": ephemeral("5m")}]}, "0.07", id="5m"),
        # 10,000×4×2/1e6 + 0.02 = 0.08 + 0.02
        pytest.param(
            {
                "system": [
                    {"type": "text", "text": "rules", "cache_control": ephemeral("1h")},
                    {"type": "text", "text": "today", "cache_control": ephemeral("5m")},
                ]
            },
            "0.1",
            id="1h-and-5m",
        ),
        pytest.param({"cache_control": ephemeral("1h")}, "0.1", id="top-level-1h"),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "toolu_01",
                                "content": [{"type": "text", "text": "42", "cache_control": ephemeral("1h")}],
                            }
                        ],
                    },
                    {"role": "assistant", "content": "ok"},
                ]
            },
            "0.1",
            id="1h-nested-in-a-tool-result",
        ),
        # fast rates: 10,000×8/1e6 + 1,000×40/1e6 = 0.08 + 0.04
        pytest.param({"speed": "fast"}, "0.12", id="fast"),
        pytest.param({"speed": "standard"}, "0.06", id="speed-standard"),
        # (0.04 + 0.02) × 1.1
        pytest.param({"inference_geo": "us"}, "0.066", id="geo-us"),
        pytest.param({"inference_geo": "global"}, "0.06", id="geo-global-no-surcharge"),
        # (10,000×8×2/1e6 + 1,000×40/1e6) × 1.1 = (0.16 + 0.04) × 1.1
        pytest.param({"speed": "fast", "inference_geo": "us", "cache_control": ephemeral("1h")}, "0.22", id="all"),
        # 0.06 + 3 searches × 0.01
        pytest.param(
            {"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]}, "0.09", id="search-3"
        ),
        # 0.06 + 10 (the cap) × 0.01
        pytest.param({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "0.16", id="search-no-max"),
        # 0.06 + (2 + 10) × 0.01: two search tools, one without max_uses
        pytest.param(
            {
                "tools": [
                    {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
                    {"type": "web_search_20260209", "name": "web_search_2"},
                ]
            },
            "0.18",
            id="two-search-tools",
        ),
        # web fetch is tokens only
        pytest.param({"tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}]}, "0.06", id="web-fetch"),
    ],
)
def test_worst_case_of_a_10k_prompt_on_opus_5_5(fields: dict[str, Any], expected: str) -> None:
    # Given a request whose estimated prompt is 10,000 tokens, with max_tokens 1,000
    body = body_with_prompt(10_000, **fields)

    # When its worst case is estimated
    worst = estimate_worst_case(OPUS, body, NOW)

    # Then it is the hand-computed bound, exactly
    assert worst == Decimal(expected)
    assert DEFAULT_WEB_SEARCH_USES == 10


def test_haiku_5_5_prompt_at_the_band_edge_pays_base_rates() -> None:
    # Given a Haiku 5.5 request estimated at exactly 100,000 prompt tokens
    body = body_with_prompt(100_000)
    # When estimated
    # Then 100,000×0.10/1e6 + 1,000×0.50/1e6 = 0.01 + 0.0005
    assert estimate_worst_case(HAIKU, body, NOW) == Decimal("0.0105")


def test_haiku_5_5_prompt_above_100k_pays_the_high_band_on_every_token() -> None:
    # Given a Haiku 5.5 request estimated at 100,001 prompt tokens
    body = body_with_prompt(100_001)
    # When estimated
    # Then 100,001×0.50/1e6 + 1,000×2.50/1e6 = 0.0500005 + 0.0025 (output in the high band too)
    assert estimate_worst_case(HAIKU, body, NOW) == Decimal("0.0525005")


def test_the_worst_case_grows_with_max_tokens() -> None:
    # Given the same prompt with max_tokens 1,000 and 32,000
    # When estimated
    # Then the difference is 31,000 output tokens × 20/1e6 = 0.62
    small = estimate_worst_case(OPUS, body_with_prompt(5_000, max_tokens=1_000), NOW)
    large = estimate_worst_case(OPUS, body_with_prompt(5_000, max_tokens=32_000), NOW)
    assert large - small == Decimal("0.62")


def test_an_unknown_model_is_an_error_never_a_zero_estimate() -> None:
    with pytest.raises(UnknownModelError, match="claude-nonesuch-9"):
        estimate_worst_case("claude-nonesuch-9", body_with_prompt(3_000), NOW)


@pytest.mark.parametrize("max_tokens", [None, 0, -5, "1000", 1.5, True])
def test_max_tokens_must_be_a_positive_integer(max_tokens: object) -> None:
    # Given a body whose max_tokens is missing or not a positive integer
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens

    # When its worst case is estimated
    # Then it is a 400 naming the field
    with pytest.raises(InvalidRequestError, match=r"^max_tokens: ") as caught:
        estimate_worst_case(OPUS, body, NOW)
    assert caught.value.status == 400


def test_fast_mode_on_a_model_without_fast_rates_cannot_be_bounded() -> None:
    # Given fast mode on Sonnet 5.5, whose price row has no fast rates
    # When estimated
    # Then it is a pricing error (400), as the cost engine would raise for such a usage
    with pytest.raises(PricingError, match="fast"):
        estimate_worst_case("claude-sonnet-5-5", body_with_prompt(3_000, speed="fast"), NOW)


def test_a_geography_the_model_has_no_price_for_cannot_be_bounded() -> None:
    # Given inference_geo "us" on Haiku 4.5 (data residency is priced from Claude 4.6 on)
    with pytest.raises(PricingError, match="inference_geo"):
        estimate_worst_case("claude-haiku-4-5", body_with_prompt(3_000, inference_geo="us"), NOW)


# --- budgets, windows, labels, messages ------------------------------------------------------------------


def tenant_daily(limit: str = "5", tenant: str = "acme") -> Budget:
    return Budget(tenant_scope(tenant), BudgetPeriod.DAY, Decimal(limit))


def key_daily(limit: str = "1") -> Budget:
    return Budget(key_scope("0a1b2c3d4e5f"), BudgetPeriod.DAY, Decimal(limit))


def feature_monthly(limit: str = "100") -> Budget:
    return Budget(feature_scope("acme", "chat"), BudgetPeriod.MONTH, Decimal(limit))


def test_windows_are_utc_days_and_utc_months() -> None:
    # Given 19:30 on Nov 30 in UTC−5, which is 00:30 on Dec 1 in UTC
    late = datetime(2026, 11, 30, 19, 30, tzinfo=timezone(timedelta(hours=-5)))
    # When windows are computed
    # Then they are UTC's
    assert tenant_daily().window(NOW) == "2026-11-20"
    assert feature_monthly().window(NOW) == "2026-11"
    assert tenant_daily().window(late) == "2026-12-01"
    assert feature_monthly().window(late) == "2026-12"
    with pytest.raises(ValueError, match="timezone-aware"):
        tenant_daily().window(datetime(2026, 11, 20, 12, 0))  # a naive time


def test_labels_name_the_scope_and_the_period() -> None:
    assert tenant_daily().label == "tenant acme's daily budget"
    assert feature_monthly().label == "feature acme/chat's monthly budget"
    assert key_daily().label == "key 0a1b2c3d4e5f's daily budget"
    assert (tenant_daily().tenant, feature_monthly().tenant, key_daily().tenant) == ("acme", "acme", None)
    assert (tenant_daily().feature, feature_monthly().feature) == (None, "chat")


def test_key_budgets_come_from_the_keys_limits() -> None:
    assert key_budgets("0a1b2c3d4e5f", Decimal("2"), None) == [
        Budget("key:0a1b2c3d4e5f", BudgetPeriod.DAY, Decimal("2"))
    ]
    assert key_budgets("0a1b2c3d4e5f", None, None) == []
    assert [b.period for b in key_budgets("0a1b2c3d4e5f", Decimal(1), Decimal(20))] == [
        BudgetPeriod.DAY,
        BudgetPeriod.MONTH,
    ]


@pytest.mark.parametrize(
    ("scope", "limit", "message"),
    [
        ("team:acme", "5", "must be key:<key_id>, tenant:<tenant> or feature:<tenant>/<feature>"),
        ("tenant:ac#me", "5", "tenant 'ac#me' is invalid"),
        ("feature:acme/", "5", "feature '' is invalid"),
        ("feature:acme", "5", "feature '' is invalid"),
        ("tenant:acme", "-1", "0 or more"),
        ("tenant:acme", "NaN", "0 or more"),
        ("tenant:acme", "1" * 39, "38 significant digits"),
        ("tenant:acme", "0.000" + "1" * 39, "38 significant digits"),
    ],
)
def test_invalid_budgets_are_refused(scope: str, limit: str, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Budget(scope, BudgetPeriod.DAY, Decimal(limit))


def test_a_tenant_with_a_slash_cannot_have_feature_budgets() -> None:
    # 'a/b' + 'c' and 'a' + 'b/c' would both be feature:a/b/c
    with pytest.raises(InvalidRequestError, match="contains '/'"):
        feature_scope("a/b", "c")


def test_exceeded_error_is_a_429_naming_the_budget_and_what_remains() -> None:
    # Given tenant acme's $5 daily budget with $0.0123 left and a request that may cost $0.2
    error = BudgetExceededError(tenant_daily(), remaining=Decimal("0.01230"), needed=Decimal("0.200"))

    # Then it maps to Anthropic's rate_limit_error with an exact, readable message
    assert isinstance(error, RateLimitError)
    assert error.message == (
        "costgate: tenant acme's daily budget is exhausted: limit $5, $0.0123 remaining, "
        "this request may cost up to $0.2"
    )
    status, body = error_response(error, "req_1")
    assert status == 429
    assert body == {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": error.message,
            "details": {"error_code": "enforced_spend_limit_reached"},
        },
        "request_id": "req_1",
    }
    # like Claude's spend-limit 429: SDKs are told not to retry it
    assert error.headers == {"x-should-retry": "false"}
    assert (error.budget, error.remaining, error.needed) == (tenant_daily(), Decimal("0.0123"), Decimal("0.2"))


# --- reserve / release / remaining with the fake store ---------------------------------------------------


def test_no_budgets_means_an_empty_reservation_and_no_store_calls() -> None:
    store = InMemoryBudgetStore()
    reservation = reserve_budget(store, [], Decimal("0.3"), NOW)
    assert reservation == Reservation(holds=(), amount_usd=Decimal("0.3"))
    assert remaining_after(store, reservation) is None
    release_reservation(store, reservation)
    assert store.calls == []


def test_a_reservation_holds_the_amount_on_every_budget_in_its_window() -> None:
    # Given a key's daily, the tenant's daily and a feature's monthly budget
    store = InMemoryBudgetStore()
    budgets = [key_daily("1"), tenant_daily("5"), feature_monthly("100")]

    # When $0.3 is reserved at noon on Nov 20
    reservation = reserve_budget(store, budgets, Decimal("0.3"), NOW)

    # Then each budget's window holds $0.3, and the least room left is the key's $0.7
    assert reservation.holds == (
        Hold(key_daily("1"), "2026-11-20", Decimal("0.3")),
        Hold(tenant_daily("5"), "2026-11-20", Decimal("0.3")),
        Hold(feature_monthly("100"), "2026-11", Decimal("0.3")),
    )
    assert store.committed == {
        ("key:0a1b2c3d4e5f", BudgetPeriod.DAY, "2026-11-20"): Decimal("0.3"),
        ("tenant:acme", BudgetPeriod.DAY, "2026-11-20"): Decimal("0.3"),
        ("feature:acme/chat", BudgetPeriod.MONTH, "2026-11"): Decimal("0.3"),
    }
    assert remaining_after(store, reservation) == Decimal("0.7")


def test_the_same_budget_twice_is_held_once() -> None:
    store = InMemoryBudgetStore()
    reservation = reserve_budget(store, [tenant_daily(), tenant_daily()], Decimal("1"), NOW)
    assert len(reservation.holds) == 1
    assert store.committed == {("tenant:acme", BudgetPeriod.DAY, "2026-11-20"): Decimal("1")}


def test_the_same_budget_with_two_limits_is_held_once_against_the_stricter() -> None:
    store = InMemoryBudgetStore()
    reserve_budget(store, [tenant_daily("5"), tenant_daily("1")], Decimal("0.8"), NOW)
    with pytest.raises(BudgetExceededError, match=r"limit \$1, \$0.2 remaining"):
        reserve_budget(store, [tenant_daily("5"), tenant_daily("1")], Decimal("0.3"), NOW)


def test_a_reservation_that_does_not_fit_names_the_budget_and_holds_nothing() -> None:
    # Given a $1 key budget with $0.8 committed and a $5 tenant budget with $0.8 committed
    store = InMemoryBudgetStore()
    reserve_budget(store, [key_daily("1"), tenant_daily("5")], Decimal("0.8"), NOW)

    # When another $0.3 is reserved against both (the tenant has room, the key does not)
    with pytest.raises(BudgetExceededError) as caught:
        reserve_budget(store, [tenant_daily("5"), key_daily("1")], Decimal("0.3"), NOW)

    # Then the key's budget is named with its $0.2 left, and neither budget holds more than before
    assert caught.value.message == (
        "costgate: key 0a1b2c3d4e5f's daily budget is exhausted: limit $1, $0.2 remaining, "
        "this request may cost up to $0.3"
    )
    assert caught.value.remaining == Decimal("0.2")
    assert set(store.committed.values()) == {Decimal("0.8")}


def test_an_amount_that_fits_exactly_is_accepted() -> None:
    store = InMemoryBudgetStore()
    reserve_budget(store, [tenant_daily("1")], Decimal("0.7"), NOW)
    reservation = reserve_budget(store, [tenant_daily("1")], Decimal("0.3"), NOW)
    assert remaining_after(store, reservation) == Decimal(0)


def test_an_amount_above_the_whole_limit_fails_at_once_without_store_calls() -> None:
    # Given a $5 tenant budget and a request that may cost $7.25
    store = InMemoryBudgetStore()

    # When it is reserved
    with pytest.raises(BudgetExceededError) as caught:
        reserve_budget(store, [key_daily("10"), tenant_daily("5")], Decimal("7.25"), NOW)

    # Then the tenant's budget is named, no remaining is claimed and the store was never asked
    assert caught.value.message == (
        "costgate: this request may cost up to $7.25, more than tenant acme's daily budget of $5; "
        "lower max_tokens or the prompt"
    )
    assert caught.value.remaining is None
    assert caught.value.status == 429
    assert store.calls == []


def test_release_gives_the_amount_back() -> None:
    # Given $4.8 held on a $5 budget
    store = InMemoryBudgetStore()
    reservation = reserve_budget(store, [tenant_daily()], Decimal("4.8"), NOW)
    with pytest.raises(BudgetExceededError):
        reserve_budget(store, [tenant_daily()], Decimal("0.3"), NOW)

    # When the hold is released (the request never reached Claude)
    release_reservation(store, reservation)

    # Then the whole budget is free again
    assert remaining_after(store, reservation) == Decimal(5)
    reserve_budget(store, [tenant_daily()], Decimal("0.3"), NOW)


def test_settling_keeps_the_exact_cost_and_frees_the_rest() -> None:
    # Given $0.3 held on a $5 budget
    store = InMemoryBudgetStore()
    reservation = reserve_budget(store, [tenant_daily()], Decimal("0.3"), NOW)

    # When the response costs exactly $0.0123456
    store.settle(reservation.holds, Decimal("0.0123456"))

    # Then only that much is committed and spent
    key = ("tenant:acme", BudgetPeriod.DAY, "2026-11-20")
    assert store.committed[key] == store.spent[key] == Decimal("0.0123456")
    assert store.requests[key] == 1
    assert remaining_after(store, reservation) == Decimal("4.9876544")


def test_windows_are_separate_counters() -> None:
    # Given a $1 daily budget fully used on Nov 20
    store = InMemoryBudgetStore()
    reserve_budget(store, [tenant_daily("1")], Decimal("1"), NOW)
    # When reserving on Nov 21
    # Then the new day has the whole limit
    tomorrow = reserve_budget(store, [tenant_daily("1")], Decimal("1"), NOW + timedelta(days=1))
    assert tomorrow.holds[0].window == "2026-11-21"


def test_the_fake_answers_definitions_for_the_tenant_and_the_feature_only() -> None:
    # Given budgets for acme, acme/chat, acme/search and globex
    store = InMemoryBudgetStore(
        [
            tenant_daily("5"),
            feature_monthly("100"),
            Budget(feature_scope("acme", "search"), BudgetPeriod.DAY, Decimal(1)),
            tenant_daily("9", tenant="globex"),
        ]
    )
    # When acme/chat's budgets are asked for
    # Then the tenant's and that feature's come back, no other
    assert store.definitions("acme", "chat") == [feature_monthly("100"), tenant_daily("5")]
    with pytest.raises(InvalidRequestError, match="set on the key"):
        store.put_definition(key_daily())

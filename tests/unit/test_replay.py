"""Replay: a request log re-priced under what-if policies, every amount hand-computed from prices.json.

Rates used (USD per million tokens): Sonnet 5.5 2/10, cache read ×0.10 before 2026-10-07 and ×0.05 from it,
minimum cacheable prompt 512; Haiku 5.5 0.10/0.50; Haiku 4.5 1/5 (minimum 4,096); Opus 5.5 4/20, fast 8/40;
Sonnet 5 2/10; Opus 4.8 5/25. Cache writes ×1.25 (5m) and ×2 (1h); batch ×0.5.
"""

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from costgate.errors import InvalidRequestError
from costgate_local.tools.replay import (
    DEFAULT_ANSWER_CACHE_TTL,
    BatchSetting,
    LoggedRequest,
    Policy,
    RoutingSetting,
    compare_policies,
    parse_log,
    parse_policy,
    replay,
)

T0 = datetime(2026, 11, 29, 10, tzinfo=UTC)
SONNET = "claude-sonnet-5-5"
PREFIX_600 = "a" * 2400  # 2,400 ASCII characters: an estimated 600 prefix tokens (a quarter token each)
SIMPLE_PROMPT = 'Translate "good morning" into French.'  # routed to the simple tier (Haiku 5.5)
COMPLEX_PROMPT = (
    "Compare three database architectures for our ledger and design a zero-downtime migration strategy,"
    " with the trade-offs of each."
)  # routed to the complex tier (Opus 5.5)


def entry(
    at: datetime = T0,
    *,
    model: str = SONNET,
    requested: str | None = None,
    usage: dict[str, Any] | None = None,
    tenant: str = "acme",
    feature: str = "contract-analysis",
    prompt: str = "Is clause 11 acceptable?",
    **body: Any,
) -> str:
    """One log line; the request asks for `requested` (default: the model that answered)."""
    request = {"model": requested or model, "max_tokens": 1024, **body}
    request["messages"] = [{"role": "user", "content": prompt}]
    return json.dumps(
        {
            "at": at.isoformat().replace("+00:00", "Z"),
            "tenant": tenant,
            "feature": feature,
            "request": request,
            "model": model,
            "usage": usage if usage is not None else {"input_tokens": 1000, "output_tokens": 100},
        }
    )


def changed(**fields: Any) -> str:
    """A good line with some of its fields replaced."""
    return json.dumps(json.loads(entry()) | fields)


def log(*lines: str) -> tuple[LoggedRequest, ...]:
    return parse_log(lines)


def bill(records: tuple[LoggedRequest, ...], spec: str | None = None) -> Decimal:
    return replay(records, parse_policy(spec) if spec else Policy()).total_usd


def costs(records: tuple[LoggedRequest, ...], spec: str) -> list[Decimal]:
    return [r.cost_usd for r in replay(records, parse_policy(spec)).requests]


# --- the log --------------------------------------------------------------------------------------------


def test_a_log_line_becomes_a_record_with_its_usage_normalised() -> None:
    # Given a line with a cache breakdown, between blank lines
    breakdown = {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200}
    line = entry(
        usage={"input_tokens": 5, "output_tokens": 7, "cache_creation_input_tokens": 300, "cache_creation": breakdown}
    )
    # When it is parsed
    (record,) = parse_log(["", "  ", line, ""])
    # Then it keeps its line number, time, tags and request, and the usage is split by TTL
    assert record.line == 3
    assert record.at == T0
    assert (record.tenant, record.feature, record.model, record.requested_model) == (
        "acme",
        "contract-analysis",
        SONNET,
        SONNET,
    )
    assert (record.usage.input_tokens, record.usage.cache_write_5m_tokens, record.usage.cache_write_1h_tokens) == (
        5,
        100,
        200,
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        ("[1, 2]", "line 2: must be a JSON object"),
        (json.dumps({k: v for k, v in json.loads(entry()).items() if k != "tenant"}), "line 2: 'tenant' is required"),
        (entry().replace("Z", ""), "line 2: 'at' must carry a UTC offset"),
        (entry().replace("2026-11-29T10:00:00Z", "yesterday"), "line 2: 'at' is not an ISO 8601 time"),
        (entry(usage={"input_tokens": -1}), "line 2: usage.input_tokens must not be negative"),
        (json.dumps({k: v for k, v in json.loads(entry()).items() if k != "usage"}), "line 2: 'usage' is required"),
        (changed(request="hi"), "line 2: 'request' is required and must be the Messages API body"),
        (changed(request={"messages": []}), "line 2: 'request.model' is required"),
        (changed(feature=""), "line 2: 'feature' is required and must be a non-empty string"),
    ],
)
def test_a_bad_line_is_an_error_naming_its_line(line: str, message: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        parse_log([entry(), line, entry()])
    assert raised.value.message.startswith(message)


def test_an_unknown_model_is_an_error_naming_its_line_never_a_cost_of_zero() -> None:
    records = log(entry(), "", entry(model="claude-nope-9"))
    with pytest.raises(InvalidRequestError) as raised:
        replay(records, Policy())
    assert raised.value.message == (
        "line 3: costgate has no price for model 'claude-nope-9'; add it to the price data before use"
    )


def test_as_logged_prices_each_response_model_at_its_own_time() -> None:
    # Given Sonnet 5.5 reads of 1M tokens either side of the 2026-10-07 read-multiplier change
    usage = {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 1_000_000}
    records = log(
        entry(datetime(2026, 10, 6, 23, 59, 59, tzinfo=UTC), usage=usage),
        entry(datetime(2026, 10, 7, tzinfo=UTC), usage=usage),
    )
    # Then 1M × $2 × 0.10 = 0.2 before, × 0.05 = 0.1 from the change: 0.3 in all, exactly
    result = replay(records, Policy())
    assert [r.cost_usd for r in result.requests] == [Decimal("0.2"), Decimal("0.1")]
    assert result.total_usd == Decimal("0.3")


# --- policy specs ---------------------------------------------------------------------------------------


def test_a_spec_parses_into_settings_and_prints_in_canonical_order() -> None:
    policy = parse_policy(" routing=all , prompt-cache=5m,batch=b+a,answer-cache=exact:60,price-date=2026-10-06")
    assert policy == Policy(
        prompt_cache="5m",
        routing=RoutingSetting("all"),
        batch=BatchSetting("features", frozenset({"a", "b"})),
        answer_cache_ttl=timedelta(seconds=60),
        price_date=date(2026, 10, 6),
    )
    assert policy.label == "prompt-cache=5m,routing=all,batch=a+b,answer-cache=exact:60,price-date=2026-10-06"
    assert parse_policy("answer-cache=exact").answer_cache_ttl == DEFAULT_ANSWER_CACHE_TTL
    assert parse_policy("answer-cache=off") == Policy()
    assert parse_policy("routing=on").label == "routing=on"
    assert parse_policy("routing=claude-haiku-4-5/claude-sonnet-5/claude-opus-4-8").routing == RoutingSetting(
        "auto", ("claude-haiku-4-5", "claude-sonnet-5", "claude-opus-4-8")
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "policy '' is empty"),
        ("prompt-cache", "policy setting 'prompt-cache' is not name=value"),
        ("cache=5m", "unknown policy setting 'cache': use one of prompt-cache, routing, batch, answer-cache"),
        ("prompt-cache=5m,prompt-cache=off", "policy 'prompt-cache=5m,prompt-cache=off' sets prompt-cache twice"),
        ("prompt-cache=10m", "prompt-cache must be off, 5m or 1h, not '10m'"),
        ("routing=maybe", "routing must be off, on, all or <simple model>/<medium model>/<complex model>"),
        ("routing=claude-haiku-5-5/claude-sonnet-5-5", "routing must be off, on, all"),
        ("routing=claude-haiku-5-5/claude-sonnet-9/claude-opus-5-5",
         "routing=claude-haiku-5-5/claude-sonnet-9/claude-opus-5-5: the medium model 'claude-sonnet-9' has no price"),
        ("batch=", "batch must be off, all or <feature>[+<feature>…], not ''"),
        ("batch=a++b", "batch must be off, all or <feature>[+<feature>…]"),
        ("batch=bad feature", "batch must be off, all or <feature>[+<feature>…], not 'bad feature'"),
        ("answer-cache=semantic", "answer-cache must be off, exact or exact:<seconds>"),
        ("answer-cache=exact:0", "answer-cache must be off, exact or exact:<seconds>"),
        ("answer-cache=exact:1.5", "answer-cache must be off, exact or exact:<seconds>"),
        ("price-date=2026-13-01", "price-date must be a date YYYY-MM-DD, not '2026-13-01'"),
        ("price-date=20261001", "price-date must be a date YYYY-MM-DD, not '20261001'"),
    ],
)  # fmt: skip
def test_a_bad_spec_is_rejected_with_a_clear_message(spec: str, message: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        parse_policy(spec)
    assert raised.value.message.startswith(message)


# --- prompt cache ---------------------------------------------------------------------------------------

# Sonnet 5.5 (2/10, read ×0.05), 1,000 prompt tokens and 100 output each:
#   uncached         1000×2e-6 + 100×10e-6                          = 0.002 + 0.001      = 0.003
#   5m write of 600  400×2e-6 + 600×2e-6×1.25 + 0.001               = 0.0008 + 0.0015 + 0.001 = 0.0033
#   1h write of 600  400×2e-6 + 600×2e-6×2 + 0.001                  = 0.0008 + 0.0024 + 0.001 = 0.0042
#   read of 600      400×2e-6 + 600×2e-6×0.05 + 0.001               = 0.0008 + 0.00006 + 0.001 = 0.00186
UNCACHED, WRITE_5M, WRITE_1H, READ = Decimal("0.003"), Decimal("0.0033"), Decimal("0.0042"), Decimal("0.00186")


def test_prompt_cache_off_prices_logged_cache_tokens_as_plain_input() -> None:
    # Given 100 input, 1,000 read from the cache, 200 output on Sonnet 5.5
    records = log(entry(usage={"input_tokens": 100, "cache_read_input_tokens": 1000, "output_tokens": 200}))
    # As logged: 100×2e-6 + 1000×2e-6×0.05 + 200×10e-6 = 0.0002 + 0.0001 + 0.002 = 0.0023
    assert bill(records) == Decimal("0.0023")
    # Off: 1100×2e-6 + 0.002 = 0.0042
    assert bill(records, "prompt-cache=off") == Decimal("0.0042")


def test_5m_writes_on_first_use_and_after_the_ttl_and_reads_within_it() -> None:
    # Given four requests sharing a 600-token system prompt: the gaps are 5:00, 5:01 and 29:59
    times = [T0, T0 + timedelta(minutes=5), T0 + timedelta(minutes=10, seconds=1), T0 + timedelta(minutes=40)]
    records = log(*(entry(at, system=PREFIX_600) for at in times))
    # When replayed with 5m: write, read (a gap of exactly 5 minutes is within), write, write
    result = replay(records, parse_policy("prompt-cache=5m"))
    assert [r.prompt_cache for r in result.requests] == ["write", "read", "write", "write"]
    assert [r.cost_usd for r in result.requests] == [WRITE_5M, READ, WRITE_5M, WRITE_5M]
    assert result.total_usd == Decimal("0.01176")  # 3 × 0.0033 + 0.00186
    assert (result.prompt_cache_writes, result.prompt_cache_reads) == (3, 1)
    # And 1h writes once and reads the rest: 0.0042 + 3 × 0.00186 = 0.00978; as logged 4 × 0.003 = 0.012
    assert costs(records, "prompt-cache=1h") == [WRITE_1H, READ, READ, READ]
    assert bill(records, "prompt-cache=1h") == Decimal("0.00978")
    assert bill(records) == 4 * UNCACHED


def test_a_read_refreshes_the_ttl() -> None:
    # Given uses at 0, 4 and 8 minutes: the third is 8 minutes after the write but 4 after the read
    records = log(*(entry(T0 + timedelta(minutes=m), system=PREFIX_600) for m in (0, 4, 8)))
    assert costs(records, "prompt-cache=5m") == [WRITE_5M, READ, READ]


def test_nothing_is_cached_below_the_models_minimum() -> None:
    # Given prefixes estimated at 511 and 512 tokens (2,044 and 2,048 ASCII characters) on Sonnet 5.5 (512)
    below = log(*(entry(T0 + timedelta(minutes=m), system="b" * 2044) for m in (0, 1)))
    at_minimum = log(*(entry(T0 + timedelta(minutes=m), system="c" * 2048) for m in (0, 1)))
    # Then 511 is never cached, 512 is: write 488×2e-6 + 512×2e-6×1.25 + 0.001 = 0.000976 + 0.00128 + 0.001,
    # read 0.000976 + 512×2e-6×0.05 + 0.001 = 0.000976 + 0.0000512 + 0.001
    assert costs(below, "prompt-cache=5m") == [UNCACHED, UNCACHED]
    assert [r.prompt_cache for r in replay(below, parse_policy("prompt-cache=5m")).requests] == [None, None]
    assert costs(at_minimum, "prompt-cache=5m") == [Decimal("0.003256"), Decimal("0.0020272")]
    # And Haiku 4.5's minimum is 4,096: the same 600-token prefix is never cached there (1000×1e-6 + 100×5e-6)
    haiku = log(*(entry(T0 + timedelta(minutes=m), model="claude-haiku-4-5", system=PREFIX_600) for m in (0, 1)))
    assert costs(haiku, "prompt-cache=5m") == [Decimal("0.0015"), Decimal("0.0015")]


def test_a_request_without_tools_or_system_has_no_prefix_to_cache() -> None:
    records = log(entry(T0), entry(T0 + timedelta(minutes=1)))
    assert costs(records, "prompt-cache=5m") == [UNCACHED, UNCACHED]


def test_tools_are_part_of_the_prefix_and_another_tool_set_is_another_prefix() -> None:
    # Given the same system prompt with two different tool sets, one minute apart
    tools_a = [{"name": "search", "description": "Search.", "input_schema": {"type": "object"}}]
    tools_b = [{"name": "fetch", "description": "Fetch.", "input_schema": {"type": "object"}}]
    records = log(
        entry(T0, system=PREFIX_600, tools=tools_a),
        entry(T0 + timedelta(minutes=1), system=PREFIX_600, tools=tools_b),
        entry(T0 + timedelta(minutes=2), system=PREFIX_600, tools=tools_a),
    )
    # Then each tool set writes its own prefix, and the third reads the first's
    assert [r.prompt_cache for r in replay(records, parse_policy("prompt-cache=5m")).requests] == [
        "write",
        "write",
        "read",
    ]


def test_at_most_the_requests_own_prompt_moves_to_the_cache() -> None:
    # Given a 600-token prefix estimate but a request of only 300 prompt tokens
    records = log(entry(system=PREFIX_600, usage={"input_tokens": 300, "output_tokens": 100}))
    # Then 300 are written, none left as input: 300×2e-6×1.25 + 100×10e-6 = 0.00075 + 0.001
    (replayed,) = replay(records, parse_policy("prompt-cache=5m")).requests
    assert replayed.usage is not None
    assert (replayed.usage.input_tokens, replayed.usage.cache_write_5m_tokens) == (0, 300)
    assert replayed.cost_usd == Decimal("0.00175")


def test_the_simulation_replaces_the_clients_own_logged_caching() -> None:
    # Given a request that logged a 1h write of 900 tokens (100 input), 100 output
    usage = {"input_tokens": 100, "output_tokens": 100, "cache_creation_input_tokens": 900,
             "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 900}}  # fmt: skip
    records = log(entry(system=PREFIX_600, usage=usage))
    # As logged: 100×2e-6 + 900×2e-6×2 + 0.001 = 0.0002 + 0.0036 + 0.001 = 0.0048
    assert bill(records) == Decimal("0.0048")
    # Under 5m the log's writes become input first, then the 900 tokens Claude reported cached for this
    # prefix (not the estimate) are written for 5 minutes: 0.0002 + 900×2e-6×1.25 + 0.001 = 0.00345
    assert bill(records, "prompt-cache=5m") == Decimal("0.00345")


def test_a_prefix_size_claude_reported_is_used_for_later_requests_with_that_prefix() -> None:
    # Given a logged 900-token read, then the same prefix sent with no caching a minute later (1,000 input)
    read = {"input_tokens": 100, "output_tokens": 100, "cache_read_input_tokens": 900}
    plain = {"input_tokens": 1000, "output_tokens": 100}
    later = entry(T0 + timedelta(minutes=1), system=PREFIX_600, usage=plain)
    records = log(entry(system=PREFIX_600, usage=read), later)
    # Then under 5m both move 900 tokens, not the estimate: a write (0.00345), then a read
    # at Sonnet 5.5's read multiplier of 0.05: 0.0002 + 900×2e-6×0.05 + 0.001 = 0.00129
    assert costs(records, "prompt-cache=5m") == [Decimal("0.00345"), Decimal("0.00129")]


# --- routing --------------------------------------------------------------------------------------------

# 1,000 input and 1,000 output: Haiku 5.5 0.0001 + 0.0005 = 0.0006; Sonnet 5.5 0.002 + 0.01 = 0.012;
# Opus 5.5 0.004 + 0.02 = 0.024; Haiku 4.5 0.001 + 0.005 = 0.006
EVEN = {"input_tokens": 1000, "output_tokens": 1000}


def test_routing_off_prices_auto_requests_on_the_medium_default_and_keeps_named_models() -> None:
    records = log(
        entry(model="claude-haiku-5-5", requested="auto", usage=EVEN, prompt=SIMPLE_PROMPT),
        entry(model="claude-opus-5-5", usage=EVEN, prompt=SIMPLE_PROMPT),
    )
    assert costs(records, "routing=off") == [Decimal("0.012"), Decimal("0.024")]
    assert [r.model for r in replay(records, parse_policy("routing=off")).requests] == [SONNET, "claude-opus-5-5"]


def test_routing_on_routes_auto_requests_with_the_default_tiers() -> None:
    # Given auto requests a feature answered on Sonnet 5.5, and a named Sonnet request
    records = log(
        entry(model=SONNET, requested="auto", usage=EVEN, prompt=SIMPLE_PROMPT),
        entry(model=SONNET, requested="auto", usage=EVEN, prompt=COMPLEX_PROMPT),
        entry(model=SONNET, usage=EVEN, prompt=SIMPLE_PROMPT),
    )
    # Then the simple one goes to Haiku 5.5, the complex one to Opus 5.5, the named one stays: same tokens
    result = replay(records, parse_policy("routing=on"))
    assert [r.model for r in result.requests] == ["claude-haiku-5-5", "claude-opus-5-5", SONNET]
    assert result.total_usd == Decimal("0.0366")  # 0.0006 + 0.024 + 0.012


def test_routing_with_named_tier_models() -> None:
    records = log(
        entry(model=SONNET, requested="auto", usage=EVEN, prompt=SIMPLE_PROMPT),
        entry(model=SONNET, requested="auto", usage=EVEN, prompt=COMPLEX_PROMPT),
    )
    # Haiku 4.5: 0.006; Opus 4.8 (5/25): 0.005 + 0.025 = 0.03
    policy = "routing=claude-haiku-4-5/claude-sonnet-5/claude-opus-4-8"
    assert costs(records, policy) == [Decimal("0.006"), Decimal("0.03")]


def test_routing_all_routes_named_models_too() -> None:
    # Given a simple question sent to Opus 5.5 by name
    records = log(entry(model="claude-opus-5-5", usage=EVEN, prompt=SIMPLE_PROMPT))
    # Then adopting "auto" moves it to Haiku 5.5: 0.024 → 0.0006
    assert bill(records) == Decimal("0.024")
    assert bill(records, "routing=all") == Decimal("0.0006")


# --- batch ----------------------------------------------------------------------------------------------


def test_batch_prices_the_named_features_at_half_and_keeps_the_rest() -> None:
    # Haiku 4.5, 2,000 in and 400 out: 0.002 + 0.002 = 0.004 standard, 0.002 at batch tier
    usage = {"input_tokens": 2000, "output_tokens": 400}
    records = log(
        entry(model="claude-haiku-4-5", feature="meeting-notes", usage=usage),
        entry(model="claude-haiku-4-5", feature="support-bot", usage=usage),
        entry(model="claude-haiku-4-5", feature="digest", usage=usage),
    )
    assert costs(records, "batch=meeting-notes+digest") == [Decimal("0.002"), Decimal("0.004"), Decimal("0.002")]
    assert replay(records, parse_policy("batch=meeting-notes+digest")).batched == 2
    assert bill(records, "batch=all") == Decimal("0.006")
    assert bill(records, "batch=off") == Decimal("0.012")


def test_batch_off_moves_logged_batch_requests_to_standard() -> None:
    records = log(entry(model="claude-haiku-4-5", usage={"input_tokens": 2000, "output_tokens": 400,
                                                          "service_tier": "batch"}))  # fmt: skip
    assert bill(records) == Decimal("0.002")
    assert bill(records, "batch=off") == Decimal("0.004")


def test_a_fast_request_moved_to_batch_runs_at_standard_speed() -> None:
    # Opus 5.5 fast (8/40): 1000×8e-6 + 100×40e-6 = 0.012; in a batch, standard speed at half: (0.004 + 0.002)×0.5
    records = log(entry(model="claude-opus-5-5", usage={"input_tokens": 1000, "output_tokens": 100, "speed": "fast"}))
    assert bill(records) == Decimal("0.012")
    assert bill(records, "batch=all") == Decimal("0.003")


# --- answer cache ---------------------------------------------------------------------------------------


def test_exact_answer_cache_serves_a_repeat_within_24_hours_for_nothing() -> None:
    # Given the same request at 0 h, 23 h and 25 h (24 h after the first answer it has expired)
    records = log(*(entry(T0 + timedelta(hours=h)) for h in (0, 23, 25)))
    result = replay(records, parse_policy("answer-cache=exact"))
    # Then the second is a hit; the hit did not refresh the entry, so the third is answered again
    assert [r.answer_cache_hit for r in result.requests] == [False, True, False]
    assert [r.cost_usd for r in result.requests] == [UNCACHED, Decimal(0), UNCACHED]
    assert result.answer_cache_hits == 1


def test_the_answer_cache_ttl_is_configurable_and_expires_exactly() -> None:
    records = log(entry(T0), entry(T0 + timedelta(seconds=59)), entry(T0 + timedelta(seconds=119)))
    # 59 s after the answer: a hit; 119 s: expired (60 s), answered again
    assert costs(records, "answer-cache=exact:60") == [UNCACHED, Decimal(0), UNCACHED]
    records = log(entry(T0), entry(T0 + timedelta(seconds=60)))
    assert costs(records, "answer-cache=exact:60") == [UNCACHED, UNCACHED]


def test_the_answer_cache_never_serves_another_tenant_model_or_body() -> None:
    records = log(
        entry(T0),
        entry(T0 + timedelta(minutes=1), tenant="hanbit"),
        entry(T0 + timedelta(minutes=2), model="claude-opus-5-5"),
        entry(T0 + timedelta(minutes=3), max_tokens=2048),
        entry(T0 + timedelta(minutes=4), prompt="Is clause 12 acceptable?"),
        entry(T0 + timedelta(minutes=5), prompt="Is clause 11 acceptable"),  # trailing punctuation is normalised
    )
    hits = [r.answer_cache_hit for r in replay(records, parse_policy("answer-cache=exact")).requests]
    assert hits == [False, False, False, False, False, True]


def test_the_answer_cache_keys_on_the_model_after_routing() -> None:
    # Given the same auto question answered by two different models (the feature's tiers changed in between)
    records = log(
        entry(T0, model=SONNET, requested="auto", prompt=SIMPLE_PROMPT),
        entry(T0 + timedelta(minutes=1), model="claude-haiku-5-5", requested="auto", prompt=SIMPLE_PROMPT),
    )
    # Then as logged they are two cache entries; routed again they are one model, so the second is a hit
    assert [r.answer_cache_hit for r in replay(records, parse_policy("answer-cache=exact")).requests] == [False, False]
    routed = replay(records, parse_policy("answer-cache=exact,routing=on")).requests
    assert [r.answer_cache_hit for r in routed] == [False, True]


def test_an_answer_cache_hit_is_not_a_use_of_the_prompt_cache() -> None:
    # Given the same request at 0 and 3 minutes, and another with the same prefix at 7 minutes
    records = log(
        entry(T0, system=PREFIX_600),
        entry(T0 + timedelta(minutes=3), system=PREFIX_600),
        entry(T0 + timedelta(minutes=7), system=PREFIX_600, prompt="Is clause 12 acceptable?"),
    )
    # Then the second never reaches Claude, so the third is 7 minutes after the write: a write again
    result = replay(records, parse_policy("answer-cache=exact,prompt-cache=5m"))
    assert [r.prompt_cache for r in result.requests] == ["write", None, "write"]
    assert result.total_usd == 2 * WRITE_5M


def test_requests_are_replayed_in_time_order_whatever_the_log_order() -> None:
    records = log(entry(T0 + timedelta(minutes=1)), entry(T0))
    result = replay(records, parse_policy("answer-cache=exact"))
    assert [(r.line, r.answer_cache_hit) for r in result.requests] == [(2, False), (1, True)]


# --- price date -----------------------------------------------------------------------------------------


def test_price_date_prices_every_request_with_the_rates_of_that_day() -> None:
    # Given 1M cache-read tokens on Sonnet 5.5, logged after the 2026-10-07 change (×0.05 → 0.1)
    records = log(entry(usage={"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 1_000_000}))
    assert bill(records) == Decimal("0.1")
    # Then on 2026-10-06 the read multiplier was 0.10: 0.2; from 2026-10-07 it is 0.05 again
    assert bill(records, "price-date=2026-10-06") == Decimal("0.2")
    assert bill(records, "price-date=2026-10-07") == Decimal("0.1")


def test_a_model_with_no_price_on_the_price_date_is_an_error_naming_it() -> None:
    records = log(entry(), entry(model="claude-fable-5-2"))  # Fable 5.2's first rate starts 2026-11-09
    with pytest.raises(InvalidRequestError) as raised:
        replay(records, parse_policy("price-date=2026-11-01"))
    assert raised.value.message == (
        "line 2: no price for model 'claude-fable-5-2' on 2026-11-01: its first rate starts 2026-11-09"
    )


# --- comparing policies ---------------------------------------------------------------------------------


def test_each_setting_is_measured_alone_and_the_rest_is_their_interaction() -> None:
    # Given 100 input, 1,000 cache reads, 200 output on Sonnet 5.5: 0.0023 as logged
    records = log(entry(usage={"input_tokens": 100, "cache_read_input_tokens": 1000, "output_tokens": 200}))
    # When prompt caching is off (0.0042) and everything is batched (0.00115), alone and together (0.0021)
    comparison = compare_policies(records, [parse_policy("batch=all,prompt-cache=off")])
    (what_if,) = comparison.what_ifs
    # Then the whole change is -0.0002, +0.0019 and -0.00115 alone, and -0.00095 only together
    assert comparison.as_logged.total_usd == Decimal("0.0023")
    assert what_if.result.total_usd == Decimal("0.0021")
    assert what_if.vs_as_logged_usd == Decimal("-0.0002")
    assert what_if.by_setting == (("prompt-cache=off", Decimal("0.0019")), ("batch=all", Decimal("-0.00115")))
    assert what_if.interaction_usd == Decimal("-0.00095")
    assert comparison.change_ratio(what_if) == Decimal("-0.0002") / Decimal("0.0023")


def test_an_empty_log_bills_nothing() -> None:
    comparison = compare_policies((), [parse_policy("routing=all")])
    assert comparison.as_logged.total_usd == 0
    assert comparison.change_ratio(comparison.what_ifs[0]) is None

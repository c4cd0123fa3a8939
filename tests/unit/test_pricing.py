"""The price data: a missing or malformed field fails at load; the shipped book matches the reference."""

import copy
import json
import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest

from costgate.errors import ConfigurationError, InvalidRequestError, PricingError, UnknownModelError
from costgate.pricing.cost import price_usage
from costgate.pricing.prices import PriceBook, default_price_book, load_price_book

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
RATE_FIELDS = (
    "effective_from",
    "confirmed",
    "source",
    "input",
    "output",
    "cache_read_multiplier",
    "fast",
    "inference_geo",
    "prompt_bands",
)


def _row(effective_from: str) -> dict[str, Any]:
    return {
        "effective_from": effective_from,
        "confirmed": True,
        "source": "unit test",
        "input": "4",
        "output": "20",
        "cache_read_multiplier": "0.05",
        "fast": {"input": "8", "output": "40"},
        "inference_geo": {"us": "1.1"},
        "prompt_bands": [
            {
                "above_prompt_tokens": 100000,
                "input": "8",
                "output": "40",
                "confirmed": False,
                "source": "unit test",
            }
        ],
    }


def _valid_book() -> dict[str, Any]:
    return {
        "version": "test-1",
        "cache_write_multipliers": {"5m": "1.25", "1h": "2"},
        "service_tier_multipliers": {"standard": "1", "priority": "1", "batch": "0.5"},
        "web_search_usd_per_request": "0.01",
        "models": [
            {
                "id": "claude-test-1",
                "aliases": ["claude-test-1-20260101"],
                "cache_minimum_tokens": 512,
                "note": "",
                "rates": [_row("2026-01-01")],
            },
            {
                "id": "claude-test-2",
                "aliases": [],
                "cache_minimum_tokens": 4096,
                "note": "",
                "rates": [_row("2026-01-01"), _row("2026-06-01")],
            },
        ],
    }


def _load(data: dict[str, Any]) -> PriceBook:
    return load_price_book(json.dumps(data).encode())


def _shipped_bytes() -> bytes:
    return resources.files("costgate.pricing").joinpath("prices.json").read_bytes()


# --- the loader ----------------------------------------------------------------------------------


def test_valid_book_loads_into_decimals() -> None:
    # Given a well-formed price file
    # When it is loaded
    book = _load(_valid_book())

    # Then the rates are exact Decimals and aliases resolve to the model id
    row = book.rates_at("claude-test-1-20260101", NOW)
    assert row.model == "claude-test-1"
    assert (row.input, row.output, row.cache_read_multiplier) == (Decimal(4), Decimal(20), Decimal("0.05"))
    assert row.fast == (Decimal(8), Decimal(40))
    assert row.inference_geo == {"us": Decimal("1.1")}
    assert row.prompt_bands[0].above_prompt_tokens == 100000
    assert book.rates_at("claude-test-2", NOW).effective_from == date(2026, 6, 1)


@pytest.mark.parametrize("field", RATE_FIELDS)
def test_missing_rate_field_fails_at_load_naming_the_path(field: str) -> None:
    # Given a rate row without one required field
    data = _valid_book()
    del data["models"][0]["rates"][0][field]

    # When loaded, Then the load fails and names the exact field
    with pytest.raises(ConfigurationError, match=re.escape(f"claude-test-1.rates[0].{field} is missing")):
        _load(data)


@pytest.mark.parametrize(
    ("path", "expected_where"),
    [
        pytest.param(("models", 1, "id"), "models[1].id is missing", id="model-id"),
        pytest.param(("models", 1, "aliases"), "models[1].aliases is missing", id="model-aliases"),
        pytest.param(("models", 1, "rates"), "models[1].rates is missing", id="model-rates"),
        pytest.param(
            ("models", 1, "cache_minimum_tokens"), "models[1].cache_minimum_tokens is missing", id="cache-minimum"
        ),
        pytest.param(("version",), "prices.version is missing", id="book-version"),
        pytest.param(("web_search_usd_per_request",), "prices.web_search_usd_per_request is missing", id="web-search"),
        pytest.param(
            ("models", 0, "rates", 0, "prompt_bands", 0, "above_prompt_tokens"),
            "claude-test-1.rates[0].prompt_bands[0].above_prompt_tokens is missing",
            id="band-threshold",
        ),
        pytest.param(
            ("models", 0, "rates", 0, "fast", "output"),
            "claude-test-1.rates[0].fast.output is missing",
            id="fast-output",
        ),
    ],
)
def test_missing_structural_field_fails_at_load(path: tuple[Any, ...], expected_where: str) -> None:
    # Given a price file missing a field outside the rate row's own fields
    data = _valid_book()
    parent: Any = data
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]

    # When loaded, Then the load fails naming where
    with pytest.raises(ConfigurationError, match=re.escape(expected_where)):
        _load(data)


@pytest.mark.parametrize(
    ("path", "bad", "expected"),
    [
        pytest.param(("input",), 4.0, "claude-test-1.rates[0].input must be a decimal string", id="float-input"),
        pytest.param(("output",), 20, "claude-test-1.rates[0].output must be a decimal string", id="int-output"),
        pytest.param(
            ("cache_read_multiplier",),
            0.05,
            "claude-test-1.rates[0].cache_read_multiplier must be a decimal string",
            id="float-read-multiplier",
        ),
        pytest.param(
            ("fast", "input"),
            8.0,
            "claude-test-1.rates[0].fast.input must be a decimal string",
            id="float-fast",
        ),
        pytest.param(
            ("inference_geo", "us"),
            1.1,
            "claude-test-1.rates[0].inference_geo.us must be a decimal string",
            id="float-geo",
        ),
        pytest.param(
            ("prompt_bands", 0, "input"),
            8.5,
            "claude-test-1.rates[0].prompt_bands[0].input must be a decimal string",
            id="float-band",
        ),
        pytest.param(
            ("input",),
            "-4",
            "claude-test-1.rates[0].input must be a non-negative decimal string",
            id="negative-input",
        ),
        pytest.param(
            ("output",),
            "-0.01",
            "claude-test-1.rates[0].output must be a non-negative decimal string",
            id="negative-output",
        ),
        pytest.param(
            ("fast", "output"),
            "-40",
            "claude-test-1.rates[0].fast.output must be a non-negative decimal string",
            id="negative-fast",
        ),
        pytest.param(("input",), "four", "claude-test-1.rates[0].input must be a decimal string", id="not-a-number"),
        pytest.param(("input",), "NaN", "claude-test-1.rates[0].input must be a non-negative", id="nan"),
        pytest.param(("input",), "Infinity", "claude-test-1.rates[0].input must be a non-negative", id="infinity"),
        pytest.param(("confirmed",), "yes", "claude-test-1.rates[0].confirmed must be true or false", id="confirmed"),
        pytest.param(
            ("effective_from",),
            "2026-13-01",
            "claude-test-1.rates[0].effective_from must be an ISO",
            id="date",
        ),
        pytest.param(("source",), None, "claude-test-1.rates[0].source must be a string", id="null-source"),
    ],
)
def test_malformed_value_fails_at_load(path: tuple[Any, ...], bad: Any, expected: str) -> None:
    # Given a rate row with a malformed value (a float price, a negative price, ...)
    data = _valid_book()
    parent: Any = data["models"][0]["rates"][0]
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = bad

    # When loaded, Then the load fails naming the path
    with pytest.raises(ConfigurationError, match=re.escape(expected)):
        _load(data)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(1024.0, id="float"),
        pytest.param("1024", id="string"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="null"),
        pytest.param(0, id="zero"),
        pytest.param(-512, id="negative"),
    ],
)
def test_malformed_cache_minimum_fails_at_load(bad: Any) -> None:
    # Given a model whose minimum cacheable prompt is not a positive whole number
    data = _valid_book()
    data["models"][0]["cache_minimum_tokens"] = bad

    # When loaded, Then the load fails naming the path
    with pytest.raises(
        ConfigurationError, match=re.escape("models[0].cache_minimum_tokens must be a positive whole number")
    ):
        _load(data)


def test_cache_minimum_resolves_ids_and_aliases_like_rates() -> None:
    # Given a book whose two models have different minimums
    book = _load(_valid_book())

    # When looked up by id and by dated alias, Then each gives its own model's minimum
    assert book.cache_minimum_tokens("claude-test-1") == 512
    assert book.cache_minimum_tokens("claude-test-1-20260101") == 512
    assert book.cache_minimum_tokens("claude-test-2") == 4096
    # And an unknown model raises, as rates_at does
    with pytest.raises(UnknownModelError, match="claude-test-3"):
        book.cache_minimum_tokens("claude-test-3")


def test_duplicate_model_fails_at_load() -> None:
    # Given two entries for the same model id
    data = _valid_book()
    data["models"].append(copy.deepcopy(data["models"][1]))

    # When loaded, Then the load fails naming the model
    with pytest.raises(ConfigurationError, match="lists model 'claude-test-2' twice"):
        _load(data)


@pytest.mark.parametrize(
    "alias",
    [
        pytest.param("claude-test-1-20260101", id="alias-of-another-model"),
        pytest.param("claude-test-1", id="alias-equal-to-another-model-id"),
    ],
)
def test_duplicate_alias_fails_at_load(alias: str) -> None:
    # Given a second model claiming a name the first already has
    data = _valid_book()
    data["models"][1]["aliases"] = [alias]

    # When loaded, Then the load fails naming the alias
    with pytest.raises(ConfigurationError, match=f"maps model id '{alias}' twice"):
        _load(data)


@pytest.mark.parametrize(
    "dates",
    [
        pytest.param(("2026-06-01", "2026-01-01"), id="reversed"),
        pytest.param(("2026-01-01", "2026-01-01"), id="same-date-twice"),
    ],
)
def test_rows_out_of_date_order_fail_at_load(dates: tuple[str, str]) -> None:
    # Given a model whose rate rows are not in strictly increasing effective_from order
    data = _valid_book()
    data["models"][1]["rates"] = [_row(dates[0]), _row(dates[1])]

    # When loaded, Then the load fails naming the model
    with pytest.raises(ConfigurationError, match="claude-test-2: rates must be in strictly increasing"):
        _load(data)


def test_model_without_rates_fails_at_load() -> None:
    # Given a model with an empty rates list
    data = _valid_book()
    data["models"][1]["rates"] = []

    # When loaded, Then the load fails naming the model
    with pytest.raises(ConfigurationError, match="no rates for 'claude-test-2'"):
        _load(data)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"{not json", id="garbage"),
        pytest.param(b'{"version": "x", "models": [', id="truncated"),
        pytest.param(b"", id="empty"),
    ],
)
def test_invalid_json_fails_at_load(raw: bytes) -> None:
    # Given bytes that are not JSON
    # When loaded, Then the load fails as a configuration error
    with pytest.raises(ConfigurationError, match="price data is not valid JSON"):
        load_price_book(raw)


def test_shipped_book_with_a_dropped_field_fails_at_load() -> None:
    # Given the shipped file with one field removed from one row
    data = json.loads(_shipped_bytes())
    opus = next(m for m in data["models"] if m["id"] == "claude-opus-5-5")
    del opus["rates"][0]["cache_read_multiplier"]

    # When loaded, Then the load fails naming that row
    with pytest.raises(
        ConfigurationError, match=re.escape("claude-opus-5-5.rates[0].cache_read_multiplier is missing")
    ):
        _load(data)


# --- the shipped book against the reference's table ----------------------------------------------

# (id as a client sends it, canonical id, input, output, cache read multiplier) at 2026-11-20.
REFERENCE_TABLE = [
    ("claude-fable-5-2", "claude-fable-5-2", "8", "40", "0.025"),
    ("claude-fable-5-1", "claude-fable-5-1", "10", "50", "0.025"),
    ("claude-mythos-5-1", "claude-mythos-5-1", "10", "50", "0.025"),
    ("claude-fable-5", "claude-fable-5", "10", "50", "0.10"),
    ("claude-mythos-5", "claude-mythos-5", "10", "50", "0.10"),
    ("claude-opus-5-5", "claude-opus-5-5", "4", "20", "0.05"),
    ("claude-opus-5", "claude-opus-5", "5", "25", "0.10"),
    ("claude-opus-4-8", "claude-opus-4-8", "5", "25", "0.10"),
    ("claude-opus-4-7", "claude-opus-4-7", "5", "25", "0.10"),
    ("claude-opus-4-6", "claude-opus-4-6", "5", "25", "0.10"),
    ("claude-opus-4-5", "claude-opus-4-5", "5", "25", "0.10"),
    ("claude-opus-4-5-20251101", "claude-opus-4-5", "5", "25", "0.10"),
    ("claude-opus-4-1", "claude-opus-4-1", "15", "75", "0.10"),
    ("claude-opus-4", "claude-opus-4", "15", "75", "0.10"),
    ("claude-sonnet-5-5", "claude-sonnet-5-5", "2", "10", "0.05"),
    ("claude-sonnet-5", "claude-sonnet-5", "2", "10", "0.10"),
    ("claude-sonnet-4-6", "claude-sonnet-4-6", "3", "15", "0.10"),
    ("claude-sonnet-4-5", "claude-sonnet-4-5", "3", "15", "0.10"),
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5", "3", "15", "0.10"),
    ("claude-haiku-5-5", "claude-haiku-5-5", "0.10", "0.50", "0.10"),
    ("claude-haiku-4-5", "claude-haiku-4-5", "1", "5", "0.10"),
    ("claude-haiku-4-5-20251001", "claude-haiku-4-5", "1", "5", "0.10"),
    ("claude-haiku-3-5", "claude-haiku-3-5", "0.80", "4", "0.10"),
    ("claude-3-5-haiku-20241022", "claude-haiku-3-5", "0.80", "4", "0.10"),
]
FAST_RATES = {"claude-opus-5-5": ("8", "40"), "claude-opus-5": ("10", "50"), "claude-opus-4-8": ("10", "50")}
# Claude 4.6 and later: inference_geo "us" costs 1.1×; the older models have no geo price.
GEO_US = {
    "claude-fable-5-2",
    "claude-fable-5-1",
    "claude-mythos-5-1",
    "claude-fable-5",
    "claude-mythos-5",
    "claude-opus-5-5",
    "claude-opus-5",
    "claude-opus-4-8",
    "claude-opus-4-7",
    "claude-opus-4-6",
    "claude-sonnet-5-5",
    "claude-sonnet-5",
    "claude-sonnet-4-6",
    "claude-haiku-5-5",
}


@pytest.mark.parametrize(("name", "canonical", "input_rate", "output_rate", "read"), REFERENCE_TABLE)
def test_every_reference_model_is_in_the_shipped_book(
    name: str, canonical: str, input_rate: str, output_rate: str, read: str
) -> None:
    # Given the shipped price book
    book = default_price_book()

    # When the model is looked up by the id a client sends
    row = book.rates_at(name, NOW)

    # Then it resolves to its canonical id with the reference's rates, fast rates and geo price
    assert book.resolve(name) == canonical
    assert row.model == canonical
    assert (row.input, row.output, row.cache_read_multiplier) == (
        Decimal(input_rate),
        Decimal(output_rate),
        Decimal(read),
    )
    fast = FAST_RATES.get(canonical)
    assert row.fast == (None if fast is None else (Decimal(fast[0]), Decimal(fast[1])))
    assert row.inference_geo == ({"us": Decimal("1.1")} if canonical in GEO_US else {})


# Minimum cacheable prompt by canonical id: the reference's list, plus Fable 5.2 at its family's 512,
# the retired Opus 4/4.1 at 1,024 and Haiku 3.5 at 2,048 (values the reference does not list).
CACHE_MINIMUMS = {
    **dict.fromkeys(
        (
            "claude-opus-5",
            "claude-opus-5-5",
            "claude-sonnet-5-5",
            "claude-haiku-5-5",
            "claude-fable-5",
            "claude-fable-5-1",
            "claude-fable-5-2",
            "claude-mythos-5",
            "claude-mythos-5-1",
        ),
        512,
    ),
    **dict.fromkeys(
        (
            "claude-opus-4-8",
            "claude-sonnet-5",
            "claude-sonnet-4",
            "claude-sonnet-4-5",
            "claude-sonnet-4-6",
            "claude-opus-4",
            "claude-opus-4-1",
        ),
        1024,
    ),
    **dict.fromkeys(("claude-opus-4-7", "claude-haiku-3-5"), 2048),
    **dict.fromkeys(("claude-opus-4-5", "claude-opus-4-6", "claude-haiku-4-5"), 4096),
}


def test_shipped_cache_minimums_are_the_reference_ones() -> None:
    # Given the shipped book, Then every model has its minimum, and every alias resolves to it
    book = default_price_book()
    assert set(CACHE_MINIMUMS) == set(book.models)
    for name, canonical in book.aliases.items():
        assert book.cache_minimum_tokens(name) == CACHE_MINIMUMS[canonical], name
    assert book.cache_minimum_tokens("claude-3-5-haiku-20241022") == 2048
    assert book.cache_minimum_tokens("claude-opus-4-5-20251101") == 4096


def test_shipped_book_has_the_reference_multipliers() -> None:
    # Given the shipped price book, Then its book-wide multipliers are the reference's
    book = default_price_book()
    assert book.cache_write_multipliers == {"5m": Decimal("1.25"), "1h": Decimal(2)}
    assert book.service_tier_multipliers == {
        "standard": Decimal(1),
        "priority": Decimal(1),
        "batch": Decimal("0.5"),
    }
    assert book.web_search_usd_per_request == Decimal("0.01")


def test_shipped_prompt_bands_are_the_reference_ones() -> None:
    # Given the shipped price book
    book = default_price_book()

    # Then Haiku 5.5 has the (unconfirmed) 100K band, Sonnet 4.5 the 200K long-context band, 4.6 none
    (haiku_band,) = book.rates_at("claude-haiku-5-5", NOW).prompt_bands
    assert (haiku_band.above_prompt_tokens, haiku_band.input, haiku_band.output) == (
        100_000,
        Decimal("0.50"),
        Decimal("2.50"),
    )
    assert haiku_band.confirmed is False
    (sonnet_band,) = book.rates_at("claude-sonnet-4-5", NOW).prompt_bands
    assert (sonnet_band.above_prompt_tokens, sonnet_band.input, sonnet_band.output) == (
        200_000,
        Decimal(6),
        Decimal("22.5"),
    )
    assert book.rates_at("claude-sonnet-4-6", NOW).prompt_bands == ()


def test_every_shipped_row_has_confirmed_and_a_source() -> None:
    # Given every rate row of every model in the shipped book
    rows = [row for model_rows in default_price_book().rows.values() for row in model_rows]

    # Then each says whether it is confirmed and where it comes from
    assert rows
    for row in rows:
        assert isinstance(row.confirmed, bool), row.model
        assert row.source.strip(), row.model
        for band in row.prompt_bands:
            assert isinstance(band.confirmed, bool), row.model


def test_rows_the_reference_marks_unconfirmed_ship_unconfirmed() -> None:
    # Given the shipped book
    book = default_price_book()
    reference_models = {canonical for _, canonical, *_ in REFERENCE_TABLE}

    # When the unconfirmed rows among the reference's models are listed
    unconfirmed = {
        (model, row.effective_from.isoformat())
        for model in reference_models
        for row in book.rows[model]
        if not row.confirmed
    }

    # Then they are exactly Fable 5.2 (its read multiplier) and Sonnet 5.5 from 2026-10-07
    assert unconfirmed == {("claude-fable-5-2", "2026-11-09"), ("claude-sonnet-5-5", "2026-10-07")}
    sonnet = book.rows["claude-sonnet-5-5"]
    assert [(r.effective_from.isoformat(), r.cache_read_multiplier, r.confirmed) for r in sonnet] == [
        ("2026-02-05", Decimal("0.10"), True),
        ("2026-10-07", Decimal("0.05"), False),
    ]
    # And the Haiku 5.5 band is unconfirmed while its base row is confirmed
    haiku = book.rates_at("claude-haiku-5-5", NOW)
    assert haiku.confirmed is True
    assert [band.confirmed for band in haiku.prompt_bands] == [False]


# --- price_version ---------------------------------------------------------------------------------


def test_price_version_names_book_model_and_effective_from() -> None:
    # Given the shipped book
    book = default_price_book()

    # When a Sonnet 5.5 request before and after its 2026-10-07 row is priced
    before = price_usage("claude-sonnet-5-5", {"input_tokens": 1, "output_tokens": 1}, NOW - timedelta(days=60))
    after = price_usage("claude-sonnet-5-5", {"input_tokens": 1, "output_tokens": 1}, NOW)

    # Then each version names the book (version + 8-hex digest), the model and the row's date
    digest = re.escape(f"{book.version}+") + "[0-9a-f]{8}"
    assert re.fullmatch(f"{digest}:claude-sonnet-5-5@2026-02-05", before.price_version)
    assert re.fullmatch(f"{digest}:claude-sonnet-5-5@2026-10-07", after.price_version)
    # And a dated id is versioned under its canonical model
    dated = price_usage("claude-opus-4-5-20251101", {"input_tokens": 1, "output_tokens": 1}, NOW)
    assert dated.price_version.endswith(":claude-opus-4-5@2025-11-24")


def test_price_version_changes_when_the_file_bytes_change() -> None:
    # Given the shipped bytes, the same bytes with one extra newline, and a one-price edit
    raw = _shipped_bytes()
    original = load_price_book(raw)
    reloaded = load_price_book(raw)
    whitespace = load_price_book(raw + b"\n")
    edited_raw = raw.replace(b'"output": "40"', b'"output": "41"', 1)
    assert edited_raw != raw
    price_edit = load_price_book(edited_raw)

    # When the same row's version is read from each
    def version(book: PriceBook) -> str:
        return book.price_version(book.rates_at("claude-fable-5-2", NOW))

    # Then identical bytes give an identical version and any change gives a new one
    assert version(original) == version(reloaded)
    assert version(original) == default_price_book().price_version(
        default_price_book().rates_at("claude-fable-5-2", NOW)
    )
    assert whitespace.version == original.version
    assert len({version(original), version(whitespace), version(price_edit)}) == 3


# --- lookups that must fail -----------------------------------------------------------------------


def test_unknown_model_raises_unknown_model_error() -> None:
    # Given a model id that is in no price data
    # When it is priced
    with pytest.raises(UnknownModelError) as raised:
        price_usage("claude-opus-9-9", {"input_tokens": 1000, "output_tokens": 500}, NOW)

    # Then the error is a 400 invalid_request_error naming the model
    error = raised.value
    assert isinstance(error, InvalidRequestError)
    assert isinstance(error, PricingError)
    assert error.status == 400
    assert error.error_type == "invalid_request_error"
    assert "claude-opus-9-9" in error.message
    assert error.model == "claude-opus-9-9"


@pytest.mark.parametrize(
    "model",
    [
        pytest.param("", id="empty"),
        pytest.param("CLAUDE-OPUS-5-5", id="wrong-case"),
        pytest.param("claude-opus-5-5-20990101", id="made-up-dated-id"),
    ],
)
def test_resolve_accepts_only_listed_ids(model: str) -> None:
    # Given an id close to a real one, When resolved, Then it is unknown, never guessed
    with pytest.raises(UnknownModelError, match=re.escape(repr(model))):
        default_price_book().resolve(model)


def test_naive_datetime_raises_pricing_error() -> None:
    # Given a time with no timezone
    naive = datetime(2026, 11, 20, 12, 0)

    # When used to price or look up rates, Then PricingError is raised (no guessing the zone)
    with pytest.raises(PricingError, match="timezone-aware"):
        price_usage("claude-opus-5-5", {"input_tokens": 1, "output_tokens": 1}, naive)
    with pytest.raises(PricingError, match="timezone-aware"):
        default_price_book().rates_at("claude-opus-5-5", naive)


@pytest.mark.parametrize(
    "at",
    [
        pytest.param(datetime(2026, 2, 4, 23, 59, 59, tzinfo=UTC), id="utc-day-before"),
        pytest.param(datetime(2026, 2, 5, 1, 0, tzinfo=timezone(timedelta(hours=2))), id="local-still-day-before-utc"),
        pytest.param(datetime(2020, 1, 1, tzinfo=UTC), id="years-before"),
    ],
)
def test_time_before_first_rate_raises_pricing_error(at: datetime) -> None:
    # Given claude-opus-4-6, whose first rate starts 2026-02-05
    # When priced before that UTC day, Then PricingError names the model and the first date
    with pytest.raises(PricingError, match=r"no price for model 'claude-opus-4-6' on .*2026-02-05"):
        price_usage("claude-opus-4-6", {"input_tokens": 1, "output_tokens": 1}, at)


def test_first_rate_applies_from_its_utc_midnight() -> None:
    # Given claude-opus-4-6's first day, When priced at 00:00 UTC, Then its row is in effect
    row = default_price_book().rates_at("claude-opus-4-6", datetime(2026, 2, 5, 0, 0, tzinfo=UTC))
    assert row.effective_from == date(2026, 2, 5)

"""Prices as dated data: `prices.json` loaded into exact Decimals.

Every model has one or more rate rows, each effective from a UTC date; a request is priced with
the latest row in effect at its time. A missing or malformed field fails at load, never later.
Each model also states its minimum cacheable prompt (`cache_minimum_tokens`), the one place that
fact lives. `price_version` names the book (its version and a digest of its bytes, so an edited file can never
pass for the old one), the model and the row: `2026-11-29+1a2b3c4d:claude-opus-5-5@2026-02-05`.
"""

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from typing import Any

from costgate.errors import ConfigurationError, PricingError, UnknownModelError

MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class PromptBand:
    """Rates that replace the base rates for every token of a request whose prompt exceeds a size."""

    above_prompt_tokens: int
    input: Decimal
    output: Decimal
    confirmed: bool


@dataclass(frozen=True)
class RateRow:
    """One model's rates, in USD per million tokens, from `effective_from` until the next row."""

    model: str
    effective_from: date
    confirmed: bool
    source: str
    input: Decimal
    output: Decimal
    cache_read_multiplier: Decimal
    fast: tuple[Decimal, Decimal] | None
    inference_geo: Mapping[str, Decimal]
    prompt_bands: tuple[PromptBand, ...]


@dataclass(frozen=True)
class PriceBook:
    version: str
    digest: str
    cache_write_multipliers: Mapping[str, Decimal]
    service_tier_multipliers: Mapping[str, Decimal]
    web_search_usd_per_request: Decimal
    rows: Mapping[str, tuple[RateRow, ...]]
    aliases: Mapping[str, str]
    cache_minimums: Mapping[str, int]  # canonical id → minimum cacheable prompt, in tokens

    @property
    def book_id(self) -> str:
        return f"{self.version}+{self.digest}"

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.rows)

    def resolve(self, model: str) -> str:
        """The canonical id for a model id, dated id or alias; UnknownModelError otherwise."""
        canonical = self.aliases.get(model)
        if canonical is None:
            raise UnknownModelError(model)
        return canonical

    def rates_at(self, model: str, at: datetime) -> RateRow:
        """The row in effect for `model` at the aware datetime `at`."""
        if at.tzinfo is None:
            raise PricingError("pricing time must be timezone-aware")
        day = at.astimezone(UTC).date()
        rows = self.rows[self.resolve(model)]
        in_effect = [row for row in rows if row.effective_from <= day]
        if not in_effect:
            raise PricingError(
                f"no price for model {model!r} on {day.isoformat()}: its first rate starts {rows[0].effective_from}"
            )
        return in_effect[-1]

    def cache_minimum_tokens(self, model: str) -> int:
        """The fewest prompt tokens `model` (id, dated id or alias) caches; below it nothing is cached."""
        return self.cache_minimums[self.resolve(model)]

    def price_version(self, row: RateRow) -> str:
        return f"{self.book_id}:{row.model}@{row.effective_from.isoformat()}"


@cache
def default_price_book() -> PriceBook:
    """The price book shipped in the package, loaded once per process."""
    raw = resources.files("costgate.pricing").joinpath("prices.json").read_bytes()
    return load_price_book(raw)


def load_price_book(raw: bytes) -> PriceBook:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigurationError(f"price data is not valid JSON: {exc}") from exc
    reader = _Reader(data, "prices")
    rows: dict[str, tuple[RateRow, ...]] = {}
    aliases: dict[str, str] = {}
    cache_minimums: dict[str, int] = {}
    for index, entry in enumerate(reader.array("models")):
        model_reader = _Reader(entry, f"models[{index}]")
        model_id = model_reader.text("id")
        if model_id in rows:
            raise ConfigurationError(f"price data lists model {model_id!r} twice")
        model_rows = tuple(
            _rate_row(model_id, r, f"{model_id}.rates[{i}]") for i, r in enumerate(model_reader.array("rates"))
        )
        if not model_rows:
            raise ConfigurationError(f"price data has no rates for {model_id!r}")
        if [r.effective_from for r in model_rows] != sorted({r.effective_from for r in model_rows}):
            raise ConfigurationError(f"{model_id}: rates must be in strictly increasing effective_from order")
        rows[model_id] = model_rows
        cache_minimums[model_id] = model_reader.positive("cache_minimum_tokens")
        model_reader.text("note")
        for name in (model_id, *(model_reader.texts("aliases"))):
            if name in aliases:
                raise ConfigurationError(f"price data maps model id {name!r} twice")
            aliases[name] = model_id
    tiers = reader.decimals("service_tier_multipliers")
    writes = reader.decimals("cache_write_multipliers")
    if set(writes) != {"5m", "1h"}:
        raise ConfigurationError("prices.cache_write_multipliers must have exactly the keys 5m and 1h")
    return PriceBook(
        version=reader.text("version"),
        digest=hashlib.sha256(raw).hexdigest()[:8],
        cache_write_multipliers=writes,
        service_tier_multipliers=tiers,
        web_search_usd_per_request=reader.decimal("web_search_usd_per_request"),
        rows=rows,
        aliases=aliases,
        cache_minimums=cache_minimums,
    )


def _rate_row(model: str, raw: Any, where: str) -> RateRow:
    row = _Reader(raw, where)
    fast_raw = row.optional("fast")
    fast = None
    if fast_raw is not None:
        fast_reader = _Reader(fast_raw, f"{where}.fast")
        fast = (fast_reader.decimal("input"), fast_reader.decimal("output"))
    bands = []
    for i, band_raw in enumerate(row.array("prompt_bands")):
        band = _Reader(band_raw, f"{where}.prompt_bands[{i}]")
        bands.append(
            PromptBand(
                above_prompt_tokens=band.count("above_prompt_tokens"),
                input=band.decimal("input"),
                output=band.decimal("output"),
                confirmed=band.flag("confirmed"),
            )
        )
        band.text("source")
    bands.sort(key=lambda b: b.above_prompt_tokens)
    return RateRow(
        model=model,
        effective_from=row.day("effective_from"),
        confirmed=row.flag("confirmed"),
        source=row.text("source"),
        input=row.decimal("input"),
        output=row.decimal("output"),
        cache_read_multiplier=row.decimal("cache_read_multiplier"),
        fast=fast,
        inference_geo=row.decimals("inference_geo"),
        prompt_bands=tuple(bands),
    )


class _Reader:
    """Typed, required-field access to one JSON object, naming the exact path on any failure."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ConfigurationError(f"price data: {where} must be an object")
        self._data = data
        self._where = where

    def _get(self, key: str) -> Any:
        if key not in self._data:
            raise ConfigurationError(f"price data: {self._where}.{key} is missing")
        return self._data[key]

    def _fail(self, key: str, expected: str) -> ConfigurationError:
        return ConfigurationError(f"price data: {self._where}.{key} must be {expected}, got {self._data[key]!r}")

    def optional(self, key: str) -> Any:
        return self._get(key)

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise self._fail(key, "a string")
        return value

    def flag(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self._fail(key, "true or false")
        return value

    def count(self, key: str) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self._fail(key, "a non-negative whole number")
        return value

    def positive(self, key: str) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self._fail(key, "a positive whole number")
        return value

    def decimal(self, key: str) -> Decimal:
        # Prices are strings in the file so that no float ever touches them.
        value = self._get(key)
        if not isinstance(value, str):
            raise self._fail(key, "a decimal string")
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise self._fail(key, "a decimal string") from None
        if not number.is_finite() or number < 0:
            raise self._fail(key, "a non-negative decimal string")
        return number

    def day(self, key: str) -> date:
        try:
            return date.fromisoformat(self.text(key))
        except ValueError:
            raise self._fail(key, "an ISO date (YYYY-MM-DD)") from None

    def array(self, key: str) -> list[Any]:
        value = self._get(key)
        if not isinstance(value, list):
            raise self._fail(key, "a list")
        return value

    def texts(self, key: str) -> list[str]:
        value = self.array(key)
        if not all(isinstance(v, str) for v in value):
            raise self._fail(key, "a list of strings")
        return value

    def decimals(self, key: str) -> dict[str, Decimal]:
        nested = _Reader(self._get(key), f"{self._where}.{key}")
        return {name: nested.decimal(name) for name in nested._data}

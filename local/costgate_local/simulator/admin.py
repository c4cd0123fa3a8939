"""Anthropic's Usage and Cost Analytics API as the simulator serves it: from what it really billed.

Every message it answered, streamed or not, and every batch request it processed successfully is billed
once, at its clock's time (a batch request when it was processed), to the API key that sent it.
count_tokens is free and billed nothing, as Anthropic excludes it; an error is not billed. `BillingLog`
keeps those records; `GET /v1/organizations/analytics/usage` and `…/cost` report them with the API's
query, row and paging shapes (docs/decisions.md, 2026-12-05), to the simulator's own Admin key only.

What it implements: `time_bucket_width` 1d|1h|1m, or none (one row over the range, bounds rounded down
to the hour); `group_by[]` model, service_tier, api_key_id, and on cost cost_type and token_type; the
filters `api_key_ids[]`, `models[]` and `service_tiers[]`; `limit` 1-1000 (default 20; cost fan-out rows
do not count); `page`, an opaque cursor bound to its query. Any other parameter is refused with a 400
naming it, never ignored. Costs are list prices from the price book, exact fractional cents
(`amount` = `list_amount`: the simulator grants no discount). `data_refreshed_at` is the clock's now:
the simulator's records are final at once. Rows come in time order, then by group.
"""

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from costgate.money import format_usd
from costgate.pricing.cost import CostComponent, price_usage
from costgate.pricing.prices import PriceBook
from costgate.pricing.usage import normalise_usage
from costgate_local.simulator.errors import ApiError, invalid_request

BETA = "analytics-usage-cost-2026-08-24"
EARLIEST = datetime(2026, 1, 1, tzinfo=UTC)
RETENTION = timedelta(days=365)
MAX_RANGE = timedelta(days=31)
MAX_MINUTE_RANGE = timedelta(hours=24)
DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
MAX_GROUPS = 5
WIDTHS = {"1d": timedelta(days=1), "1h": timedelta(hours=1), "1m": timedelta(minutes=1)}
GROUPS = ("model", "service_tier", "api_key_id")
FAN_OUT = ("cost_type", "token_type")
# Every group field a row carries (null unless grouped), as the API's rows do.
GROUP_FIELDS = ("api_key_id", "workspace_id", "model", "service_tier", "inference_geo", "speed", "context_window")
# (cost_type, token_type) of each component of costgate's cost engine.
COMPONENTS: Mapping[CostComponent, tuple[str, str | None]] = {
    CostComponent.INPUT: ("tokens", "uncached_input_tokens"),
    CostComponent.CACHE_WRITE_5M: ("tokens", "cache_creation.ephemeral_5m_input_tokens"),
    CostComponent.CACHE_WRITE_1H: ("tokens", "cache_creation.ephemeral_1h_input_tokens"),
    CostComponent.CACHE_READ: ("tokens", "cache_read_input_tokens"),
    CostComponent.OUTPUT: ("tokens", "output_tokens"),
    CostComponent.WEB_SEARCH: ("web_search", None),
}
USAGE_FIELDS = (
    "uncached_input_tokens",
    "ephemeral_5m_input_tokens",
    "ephemeral_1h_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
    "web_search_requests",
)
_LIST_PARAMS = {"group_by", "api_key_ids", "models", "service_tiers"}
_SCALAR_PARAMS = {"starting_at", "ending_at", "time_bucket_width", "limit", "page"}


def new_admin_key() -> str:
    """An Admin key of the simulator's own, in the form of Anthropic's (`sk-ant-admin01-…`)."""
    return f"sk-ant-admin01-sim-{secrets.token_urlsafe(24)}"


def api_key_id(key: str) -> str:
    """The id the reports give a Claude API key (`apikey_…`): stable for the key, never the key itself."""
    return "apikey_" + hashlib.sha256(key.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Billed:
    """One billed request: when, whose key, which model and tier, its usage per field and its cost in cents."""

    at: datetime
    api_key_id: str
    model: str
    service_tier: str
    usage: Mapping[str, int]
    cents: Mapping[tuple[str, str | None], Decimal]

    def group(self, name: str) -> str:
        return {"model": self.model, "service_tier": self.service_tier, "api_key_id": self.api_key_id}[name]


class BillingLog:
    """What the simulator billed, in billing order. Not thread-safe: the server calls it under its lock."""

    def __init__(self, book: PriceBook) -> None:
        self._book = book
        self._billed: list[Billed] = []

    def bill(self, *, at: datetime, api_key: str, model: str, usage: Mapping[str, Any]) -> Billed:
        """Bill one response's usage at `at`, priced by the book's rates in effect then."""
        tokens = normalise_usage(usage)
        canonical = self._book.resolve(model)
        cost = price_usage(canonical, tokens, at, self._book)
        billed = Billed(
            at=at.astimezone(UTC),
            api_key_id=api_key_id(api_key),
            model=canonical,
            service_tier=tokens.service_tier,
            usage={
                "uncached_input_tokens": tokens.input_tokens,
                "ephemeral_5m_input_tokens": tokens.cache_write_5m_tokens,
                "ephemeral_1h_input_tokens": tokens.cache_write_1h_tokens,
                "cache_read_input_tokens": tokens.cache_read_tokens,
                "output_tokens": tokens.output_tokens,
                "web_search_requests": tokens.web_search_requests,
            },
            cents={COMPONENTS[name]: amount * 100 for name, amount in cost.components.items()},
        )
        self._billed.append(billed)
        return billed

    def usage_report(self, args: Mapping[str, Sequence[str]], now: datetime) -> dict[str, Any]:
        query = _Query.parse(args, now, cost=False)
        rows = _buckets(self._billed, query)
        page, has_more, next_page = query.page_of(rows)
        return {
            "data": [_usage_row(start, end, group, billed, query) for start, end, group, billed in page],
            "has_more": has_more,
            "next_page": next_page,
            "data_refreshed_at": _rfc3339(now),
        }

    def cost_report(self, args: Mapping[str, Sequence[str]], now: datetime) -> dict[str, Any]:
        query = _Query.parse(args, now, cost=True)
        rows = _buckets(self._billed, query)
        page, has_more, next_page = query.page_of(rows)
        data = [row for start, end, group, billed in page for row in _cost_rows(start, end, group, billed, query)]
        return {"data": data, "has_more": has_more, "next_page": next_page, "data_refreshed_at": _rfc3339(now)}


type _Bucket = tuple[datetime, datetime, tuple[str, ...], list[Billed]]


@dataclass(frozen=True)
class _Query:
    start: datetime
    end: datetime
    width: timedelta | None
    groups: tuple[str, ...]
    fan_out: tuple[str, ...]
    api_key_ids: frozenset[str]
    models: frozenset[str]
    service_tiers: frozenset[str]
    limit: int
    offset: int
    fingerprint: str

    @classmethod
    def parse(cls, args: Mapping[str, Sequence[str]], now: datetime, *, cost: bool) -> "_Query":
        values = _params(args)
        start = _time(values, "starting_at", required=True)
        if start is None:
            raise invalid_request("starting_at: Field required")
        if start < EARLIEST:
            raise invalid_request("starting_at: must be no earlier than 2026-01-01T00:00:00Z")
        if start < now - RETENTION:
            raise invalid_request("starting_at: must be within the last 365 days")
        width_text = _scalar(values, "time_bucket_width")
        if width_text is not None and width_text not in WIDTHS:
            raise invalid_request(f"time_bucket_width: Input should be '1d', '1h' or '1m', got {width_text!r}")
        width = WIDTHS[width_text] if width_text else None
        end = _time(values, "ending_at", required=width is not None) or min(now, start + MAX_RANGE)
        if end <= start:
            raise invalid_request("ending_at: must be after starting_at")
        if end - start > MAX_RANGE:
            raise invalid_request("the range may span at most 31 days")
        if width_text == "1m" and end - start > MAX_MINUTE_RANGE:
            raise invalid_request("with time_bucket_width=1m the range may span at most 24 hours")
        asked = values.get("group_by", [])
        allowed = GROUPS + (FAN_OUT if cost else ())
        for name in asked:
            if name not in allowed:
                raise invalid_request(f"group_by: the simulator does not implement grouping by {name!r}")
        groups = tuple(name for name in GROUPS if name in asked)
        if len(groups) > MAX_GROUPS:
            raise invalid_request(f"group_by: at most {MAX_GROUPS} dimensions")
        limit_text = _scalar(values, "limit")
        try:
            limit = DEFAULT_LIMIT if limit_text is None else int(limit_text)
        except ValueError:
            raise invalid_request("limit: Input should be a valid integer") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise invalid_request(f"limit: Input should be between 1 and {MAX_LIMIT}")
        fingerprint = hashlib.sha256(
            json.dumps({k: sorted(v) for k, v in values.items() if k != "page"}, sort_keys=True).encode()
        ).hexdigest()[:16]
        return cls(
            start=start,
            end=end,
            width=width,
            groups=groups,
            fan_out=tuple(name for name in FAN_OUT if name in asked),
            api_key_ids=frozenset(values.get("api_key_ids", [])),
            models=frozenset(values.get("models", [])),
            service_tiers=frozenset(values.get("service_tiers", [])),
            limit=limit,
            offset=_offset(_scalar(values, "page"), fingerprint),
            fingerprint=fingerprint,
        )

    def keeps(self, billed: Billed) -> bool:
        return (
            self.start <= billed.at < self.end
            and (not self.api_key_ids or billed.api_key_id in self.api_key_ids)
            and (not self.models or billed.model in self.models)
            and (not self.service_tiers or billed.service_tier in self.service_tiers)
        )

    def bucket(self, at: datetime) -> tuple[datetime, datetime]:
        if self.width is None:
            return _floor(self.start, timedelta(hours=1)), _floor(self.end, timedelta(hours=1))
        start = _floor(at, self.width)
        return start, start + self.width

    def page_of(self, rows: list[_Bucket]) -> tuple[list[_Bucket], bool, str | None]:
        page = rows[self.offset : self.offset + self.limit]
        following = self.offset + len(page)
        if following >= len(rows):
            return page, False, None
        cursor = json.dumps({"offset": following, "query": self.fingerprint}).encode()
        return page, True, "page_" + base64.urlsafe_b64encode(cursor).decode()


def _buckets(billed: Iterable[Billed], query: _Query) -> list[_Bucket]:
    grouped: dict[tuple[datetime, datetime, tuple[str, ...]], list[Billed]] = {}
    for record in billed:
        if query.keeps(record):
            start, end = query.bucket(record.at)
            grouped.setdefault((start, end, tuple(record.group(name) for name in query.groups)), []).append(record)
    return [(start, end, group, records) for (start, end, group), records in sorted(grouped.items())]


def _group(query: _Query, values: tuple[str, ...]) -> dict[str, str | None]:
    group: dict[str, str | None] = dict.fromkeys(GROUP_FIELDS)
    group.update(zip(query.groups, values, strict=True))
    return group


def _usage_row(
    start: datetime, end: datetime, values: tuple[str, ...], billed: list[Billed], query: _Query
) -> dict[str, Any]:
    total = {name: sum(record.usage[name] for record in billed) for name in USAGE_FIELDS}
    return {
        "starting_at": _rfc3339(start),
        "ending_at": _rfc3339(end),
        "group": _group(query, values),
        "usage": {
            "uncached_input_tokens": total["uncached_input_tokens"],
            "cache_creation": {
                "ephemeral_5m_input_tokens": total["ephemeral_5m_input_tokens"],
                "ephemeral_1h_input_tokens": total["ephemeral_1h_input_tokens"],
            },
            "cache_read_input_tokens": total["cache_read_input_tokens"],
            "output_tokens": total["output_tokens"],
            "server_tool_use": {"web_search_requests": total["web_search_requests"]},
            "total_tokens": sum(v for k, v in total.items() if k != "web_search_requests"),
            "requests": len(billed),
        },
    }


def _cost_rows(
    start: datetime, end: datetime, values: tuple[str, ...], billed: list[Billed], query: _Query
) -> list[dict[str, Any]]:
    fanned: dict[tuple[str | None, str | None], Decimal] = {}
    for record in billed:
        for (cost_type, token_type), cents in record.cents.items():
            # Rows by token type carry cost_type "tokens" (as the API's do) even when not grouped by cost type.
            by_type = "cost_type" in query.fan_out or ("token_type" in query.fan_out and token_type is not None)
            key = (cost_type if by_type else None, token_type if "token_type" in query.fan_out else None)
            fanned[key] = fanned.get(key, Decimal(0)) + cents
    requests = None if query.fan_out else len(billed)
    rows = []
    for (kind, token_type), cents in sorted(fanned.items(), key=lambda item: (item[0][0] or "", item[0][1] or "")):
        if cents == 0:
            continue
        amount = format_usd(cents)
        group: dict[str, str | None] = {**_group(query, values), "cost_type": kind, "token_type": token_type}
        rows.append(
            {
                "starting_at": _rfc3339(start),
                "ending_at": _rfc3339(end),
                "group": group,
                "cost": {"amount": amount, "list_amount": amount, "currency": "USD", "requests": requests},
            }
        )
    return rows


def _params(args: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """The query's parameters by name, `name[]` read as `name`; a parameter the simulator lacks is a 400."""
    values: dict[str, list[str]] = {}
    for raw_name, raw_values in args.items():
        name = raw_name.removesuffix("[]")
        if name not in _LIST_PARAMS | _SCALAR_PARAMS:
            raise invalid_request(f"{raw_name}: the simulator does not implement this parameter")
        values.setdefault(name, []).extend(raw_values)
    return values


def _scalar(values: Mapping[str, list[str]], name: str) -> str | None:
    found = values.get(name)
    if not found:
        return None
    if len(found) > 1:
        raise invalid_request(f"{name}: give it once")
    return found[0]


def _time(values: Mapping[str, list[str]], name: str, *, required: bool) -> datetime | None:
    text = _scalar(values, name)
    if text is None:
        if required:
            raise invalid_request(f"{name}: Field required")
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise invalid_request(f"{name}: Input should be an RFC 3339 date-time, got {text!r}") from None
    if parsed.utcoffset() is None:
        raise invalid_request(f"{name}: give the time zone (RFC 3339), got {text!r}")
    return parsed.astimezone(UTC)


def _offset(page: str | None, fingerprint: str) -> int:
    if page is None:
        return 0
    try:
        cursor = json.loads(base64.urlsafe_b64decode(page.removeprefix("page_")))
        offset, query = int(cursor["offset"]), str(cursor["query"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise invalid_request("page: not a next_page token of this report") from None
    if query != fingerprint or offset < 0:
        raise invalid_request("page: the token belongs to another query (same parameters, new page only)")
    return offset


def _floor(at: datetime, width: timedelta) -> datetime:
    seconds = int(width.total_seconds())
    epoch = int(at.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_admin(presented: str, beta_header: str, admin_key: str) -> None:
    """The key presented (x-api-key, or Authorization: Bearer as SDK 2.x sends it) must be the Admin key,
    and the beta header must name the API's beta."""
    if not secrets.compare_digest(presented.encode(), admin_key.encode()):
        raise ApiError(401, "authentication_error", "invalid x-api-key: this endpoint takes an Admin API key")
    betas = {beta.strip() for beta in beta_header.split(",")}
    if BETA not in betas:
        raise invalid_request(f"this endpoint is in beta: send the header anthropic-beta: {BETA}")

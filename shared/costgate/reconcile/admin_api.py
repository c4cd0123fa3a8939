"""Anthropic's Usage and Cost Analytics API over urllib3: `AdminApiRecords`, the `AnthropicRecordsReader`.

What it asks (docs/decisions.md, 2026-12-05): `GET /v1/organizations/analytics/usage` and `…/cost` with
the Admin key in `x-api-key`, `anthropic-version: 2023-06-01` and the beta header
`analytics-usage-cost-2026-08-24`; grouped by model and service tier (the cost also by cost type and
token type, summed per row), limited to the deployment's Claude API keys when it names them. Closed
days in `1d` buckets, at most 31 days a request; the day in progress in `1m` buckets up to the last
complete minute. Every page is followed (`has_more` / `next_page`), up to `max_pages`.

Retries: a GET is idempotent, so 408, 409, 429 and ≥ 500 (or `x-should-retry: true`), timeouts and lost
connections are retried at most `max_retries` times, after `retry-after-ms` / `retry-after` (capped) or
1 s × 2^n. 401 and 403 raise ConfigurationError (the key is wrong or lacks access); any other failure
UpstreamError with Anthropic's status and message. The key is sent on every request and appears in no
message, log line or exception; redirects are not followed (they would carry it elsewhere).
"""

import json
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

import urllib3
from urllib3.exceptions import HTTPError as TransportError

from costgate.errors import ConfigurationError, InvalidRequestError, UpstreamError
from costgate.observability import logger
from costgate.reconcile.model import (
    NO_MODEL,
    NO_TIER,
    AnthropicRecords,
    AnthropicRow,
    RowKey,
    Tokens,
    day_start,
)

USAGE_PATH = "/v1/organizations/analytics/usage"
COST_PATH = "/v1/organizations/analytics/cost"
API_VERSION = "2023-06-01"
BETA = "analytics-usage-cost-2026-08-24"
USER_AGENT = "costgate-reconcile/0.1"
# The API's own limits: rows per page, days per request, and how far back it reports.
MAX_LIMIT = 1000
MAX_SPAN = timedelta(days=31)
EARLIEST_DAY = date(2026, 1, 1)
RETENTION = timedelta(days=365)
CONNECT_TIMEOUT_S = 5.0
MAX_RETRY_AFTER_S = 60.0
_RETRY_BASE_S = 1.0
_ERROR_BODY_BYTES = 16 * 1024
ORGANIZATION = "organization"  # the scope that names no key: everything the organization used


class AdminApiRecords:
    """`AnthropicRecordsReader` over one urllib3 pool. `admin_key` is called per run (a rotated secret is
    picked up); `api_key_ids` limits the figures to those Claude API keys (empty: the whole organization).
    `sleep` is injected so tests do not wait."""

    def __init__(
        self,
        base_url: str,
        admin_key: Callable[[], str],
        *,
        api_key_ids: tuple[str, ...] = (),
        max_retries: int = 3,
        timeout_s: float = 60.0,
        max_pages: int = 1000,
        sleep: Callable[[float], None] = time.sleep,
        pool: urllib3.PoolManager | None = None,
    ) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if max_retries < 0 or max_pages < 1:
            raise ValueError("max_retries must be ≥ 0 and max_pages ≥ 1")
        self.base_url = base_url.rstrip("/")
        self._admin_key = admin_key
        self._api_key_ids = api_key_ids
        self._max_retries = max_retries
        self._max_pages = max_pages
        self._sleep = sleep
        self._timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=timeout_s)
        # retries=False, redirect=False: retries are ours, and a redirect would carry the key elsewhere.
        self._pool = pool or urllib3.PoolManager(num_pools=1, maxsize=2, retries=False)

    def read(self, first: date, last: date, now: datetime) -> AnthropicRecords:
        now = now.astimezone(UTC)
        today = now.date()
        earliest = max(EARLIEST_DAY, (now - RETENTION).date() + timedelta(days=1))
        if last > today or last < first:
            raise InvalidRequestError(f"cannot read Anthropic's records for {first}..{last} on {today}")
        if last < earliest:
            raise InvalidRequestError(f"Anthropic reports usage from {earliest} on; {first}..{last} is earlier")
        first = max(first, earliest)
        key = self._admin_key()
        if not key.startswith("sk-ant-admin"):
            raise ConfigurationError("the Admin API key does not look like one (it starts with sk-ant-admin)")
        reading = _Reading(now=now)
        closed_last = min(last, today - timedelta(days=1))
        start = first
        while start <= closed_last:
            end = min(start + MAX_SPAN, closed_last + timedelta(days=1))
            self._read_window(key, day_start(start), day_start(end), "1d", reading)
            start = end
        if last == today:
            # The minute under way is not complete: its bucket would be read again, bigger, later.
            through = now.replace(second=0, microsecond=0)
            reading.cap(through)
            if through > day_start(today):
                self._read_window(key, day_start(today), through, "1m", reading)
        return AnthropicRecords(
            first=first,
            last=last,
            rows=reading.rows,
            complete_through=reading.complete_through,
            cost_quantum_usd=reading.quantum_usd(),
        )

    def _read_window(self, key: str, start: datetime, end: datetime, width: str, reading: "_Reading") -> None:
        common: dict[str, Any] = {
            "starting_at": _rfc3339(start),
            "ending_at": _rfc3339(end),
            "time_bucket_width": width,
            "limit": MAX_LIMIT,
        }
        if self._api_key_ids:
            common["api_key_ids[]"] = list(self._api_key_ids)
        usage = {**common, "group_by[]": ["model", "service_tier"]}
        cost = {**common, "group_by[]": ["model", "service_tier", "cost_type", "token_type"]}
        for page in self._pages(key, USAGE_PATH, usage):
            reading.refreshed(page)
            for row in _rows(page):
                reading.add(_usage_row(row))
        for page in self._pages(key, COST_PATH, cost):
            reading.refreshed(page)
            for row in _rows(page):
                reading.add_cost(*_cost_row(row))

    def _pages(self, key: str, path: str, query: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
        page_token: str | None = None
        for _ in range(self._max_pages):
            params = {**query, **({"page": page_token} if page_token else {})}
            page = self._get(key, f"{self.base_url}{path}?{urlencode(params, doseq=True)}", path)
            yield page
            if page.get("has_more") is not True:
                return
            page_token = page.get("next_page")
            if not isinstance(page_token, str) or not page_token:
                raise UpstreamError(f"Anthropic {path}: has_more without a next_page token")
        raise UpstreamError(f"Anthropic {path}: more than {self._max_pages} pages; narrow the range")

    def _get(self, key: str, url: str, path: str) -> Mapping[str, Any]:
        headers = {
            "x-api-key": key,
            "anthropic-version": API_VERSION,
            "anthropic-beta": BETA,
            "accept": "application/json",
            "user-agent": USER_AGENT,
        }
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._pool.request(
                    "GET", url, headers=headers, timeout=self._timeout, redirect=False, preload_content=True
                )
            except TransportError as error:
                if attempt > self._max_retries:
                    raise UpstreamError(
                        f"Anthropic {path}: no answer after {attempt} attempts ({type(error).__name__})"
                    ) from None
                self._pause(path, attempt, f"{type(error).__name__}", None)
                continue
            if response.status == 200:
                return _json_object(response.data, path)
            if _retryable(response) and attempt <= self._max_retries:
                self._pause(path, attempt, f"HTTP {response.status}", response.headers)
                continue
            message = _error_message(response.data)
            if response.status in (401, 403):
                raise ConfigurationError(
                    f"Anthropic {path} refused the Admin API key ({response.status}: {message}); "
                    "check the key in the admin key secret"
                )
            raise UpstreamError(f"Anthropic {path} answered {response.status}: {message}")

    def _pause(self, path: str, attempt: int, why: str, headers: Mapping[str, str] | None) -> None:
        delay = _retry_after_s(headers) if headers is not None else None
        if delay is None:
            delay = _RETRY_BASE_S * 2 ** (attempt - 1)
        delay = min(max(delay, 0.0), MAX_RETRY_AFTER_S)
        logger.info(
            "Anthropic admin API: retrying", extra={"path": path, "attempt": attempt, "why": why, "wait_s": delay}
        )
        self._sleep(delay)


class _Reading:
    """The rows of one read, summed per key, and what the pages said about their freshness and rounding."""

    def __init__(self, now: datetime) -> None:
        self.rows: dict[RowKey, AnthropicRow] = {}
        self.complete_through = now
        self._places = 0

    def cap(self, instant: datetime) -> None:
        self.complete_through = min(self.complete_through, instant)

    def refreshed(self, page: Mapping[str, Any]) -> None:
        stamp = page.get("data_refreshed_at")
        if stamp is not None:
            self.cap(_instant(stamp, "data_refreshed_at"))

    def add(self, row: AnthropicRow) -> None:
        self.rows[row.key] = self.rows[row.key] + row if row.key in self.rows else row

    def add_cost(self, key: RowKey, amount: str) -> None:
        cents = _decimal(amount, "cost.list_amount")
        exponent = cents.as_tuple().exponent
        self._places = max(self._places, -exponent if isinstance(exponent, int) and exponent < 0 else 0)
        self.add(AnthropicRow(key=key, cost_usd=cents / 100, cost_amounts=1))

    def quantum_usd(self) -> Decimal:
        """The report's rounding unit: one unit of the last decimal place its amounts (in cents) carry."""
        return Decimal(1).scaleb(-self._places) / 100


def _rows(page: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    data = page.get("data")
    if not isinstance(data, list) or not all(isinstance(row, Mapping) for row in data):
        raise UpstreamError("Anthropic analytics: a page without a data list of rows")
    return data


def _key(row: Mapping[str, Any]) -> RowKey:
    group = row.get("group")
    if not isinstance(group, Mapping):
        raise UpstreamError("Anthropic analytics: a row without its group")
    model, tier = group.get("model"), group.get("service_tier")
    return RowKey(
        day=_instant(row.get("starting_at"), "starting_at").date(),
        model=model if isinstance(model, str) and model else NO_MODEL,
        service_tier=tier if isinstance(tier, str) and tier else NO_TIER,
    )


def _usage_row(row: Mapping[str, Any]) -> AnthropicRow:
    usage = row.get("usage")
    if not isinstance(usage, Mapping):
        raise UpstreamError("Anthropic analytics usage: a row without usage")
    cache = _object(usage, "cache_creation")
    tools = _object(usage, "server_tool_use")
    requests = usage.get("requests")
    return AnthropicRow(
        key=_key(row),
        tokens=Tokens(
            input_tokens=_count(usage, "uncached_input_tokens"),
            cache_write_5m_tokens=_count(cache, "ephemeral_5m_input_tokens"),
            cache_write_1h_tokens=_count(cache, "ephemeral_1h_input_tokens"),
            cache_read_tokens=_count(usage, "cache_read_input_tokens"),
            output_tokens=_count(usage, "output_tokens"),
            web_search_requests=_count(tools, "web_search_requests"),
        ),
        requests=None if requests is None else _count(usage, "requests"),
    )


def _cost_row(row: Mapping[str, Any]) -> tuple[RowKey, str]:
    cost = row.get("cost")
    if not isinstance(cost, Mapping):
        raise UpstreamError("Anthropic analytics cost: a row without cost")
    if cost.get("currency") != "USD":
        raise UpstreamError(f"Anthropic analytics cost: currency {cost.get('currency')!r}, costgate bills in USD")
    # List price: prices.json holds list prices, so a negotiated discount is not a drift.
    amount = cost.get("list_amount")
    if not isinstance(amount, str):
        raise UpstreamError(f"Anthropic analytics cost: list_amount {amount!r} is not a decimal string")
    return _key(row), amount


def _object(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UpstreamError(f"Anthropic analytics usage: {name} is not an object")
    return value


def _count(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UpstreamError(f"Anthropic analytics usage: {name} is {value!r}, not a count")
    return value


def _decimal(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise UpstreamError(f"Anthropic analytics: {what} {text!r} is not a decimal") from None
    if not value.is_finite():
        raise UpstreamError(f"Anthropic analytics: {what} {text!r} is not a finite decimal")
    return value


def _instant(value: Any, what: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.utcoffset() is None:
        raise UpstreamError(f"Anthropic analytics: {what} {value!r} is not an RFC 3339 time")
    return parsed.astimezone(UTC)


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_object(body: bytes, path: str) -> Mapping[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        raise UpstreamError(f"Anthropic {path}: the answer is not JSON") from None
    if not isinstance(parsed, Mapping):
        raise UpstreamError(f"Anthropic {path}: the answer is not a JSON object")
    return parsed


def _retryable(response: urllib3.BaseHTTPResponse) -> bool:
    should = response.headers.get("x-should-retry")
    if should in ("true", "false"):
        return should == "true"
    return response.status in (408, 409, 429) or response.status >= 500


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        text = headers.get(name)
        if text is None:
            continue
        try:
            return float(text) / scale
        except ValueError:
            continue
    return None


def _error_message(body: bytes) -> str:
    """Anthropic's error message, or the start of the body: never the request, so never the key."""
    text = body[:_ERROR_BODY_BYTES].decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
        message = parsed["error"]["message"]
        kind = parsed["error"]["type"]
    except (ValueError, KeyError, TypeError):
        return text[:200] or "(no body)"
    return f"{kind}: {message}"

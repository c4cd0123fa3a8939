"""The receipt of a billed request as a document: what `GET /v1/requests/{request_id}` answers and what a
stream carries after its `message_stop` (`: costgate-receipt {json}`, an SSE comment every SSE client
ignores, the official SDK included: docs/decisions.md, 2026-12-05).

Amounts are exact decimal strings (`costgate.money.format_usd`), never floats.
"""

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from costgate.accounting.ledger import LedgerEntry
from costgate.errors import CostgateError
from costgate.money import format_usd
from costgate.observability import logger
from costgate.pricing.cost import CostComponent, Strategy, price_usage
from costgate.pricing.prices import PriceBook

RECEIPT_COMMENT = b": costgate-receipt "
# The response header that names the ledger row of a request: GET /v1/requests/{this value}.
REQUEST_ID_HEADER = "x-costgate-request-id"
_SAVINGS_HEADERS = {
    Strategy.ROUTING: "x-costgate-savings-routing-usd",
    Strategy.PROMPT_CACHE: "x-costgate-savings-prompt-cache-usd",
}


def receipt_headers(entry: LedgerEntry) -> dict[str, str]:
    """The priced part of a whole answer's receipt headers: its id, model, cost, baseline, price version
    and the savings of routing and prompt caching (when they applied)."""
    headers = {
        REQUEST_ID_HEADER: entry.request_id,
        "x-costgate-model": entry.cost.model,
        "x-costgate-cost-usd": format_usd(entry.cost.total_usd),
        "x-costgate-baseline-cost-usd": format_usd(entry.baseline_cost_usd),
        "x-costgate-price-version": entry.cost.price_version,
    }
    for strategy, header in _SAVINGS_HEADERS.items():
        if strategy in entry.savings:
            headers[header] = format_usd(entry.savings[strategy])
    return headers


def input_cost_receipt(
    model: str, tokens: int, body: Mapping[str, Any], at: datetime, book: PriceBook
) -> dict[str, str]:
    """count_tokens' receipt: the counted prompt priced as the request would bill it (bands, fast mode and
    geography included), or nothing when it cannot be priced."""
    usage: dict[str, Any] = {"input_tokens": tokens, **{k: body[k] for k in ("speed", "inference_geo") if k in body}}
    try:
        estimate = price_usage(model, usage, at, book)
    except CostgateError as error:
        logger.info("count_tokens: no estimate", extra={"reason": str(error)})
        return {}
    return {
        "x-costgate-estimated-input-cost-usd": format_usd(estimate.total_usd),
        "x-costgate-price-version": estimate.price_version,
    }


def receipt_document(entry: LedgerEntry) -> dict[str, Any]:
    """The ledger row of one request: who, which model, the exact cost, the baseline, the savings, the tokens."""
    usage, cost = entry.usage, entry.cost
    return {
        "request_id": entry.request_id,
        "upstream_request_id": entry.upstream_request_id,
        "at": entry.at.isoformat(),
        "feature": entry.feature,
        "key_id": entry.key_id,
        "model": cost.model,
        "requested_model": entry.requested_model,
        "route_tier": entry.route_tier,
        "route_reason": entry.route_reason,
        "price_version": cost.price_version,
        "price_confirmed": cost.confirmed,
        "modifiers": list(cost.modifiers),
        "cost_usd": format_usd(cost.total_usd),
        "baseline_cost_usd": format_usd(entry.baseline_cost_usd),
        "savings_usd": {strategy.value: format_usd(amount) for strategy, amount in entry.savings.items()},
        "cost_components_usd": {component.value: format_usd(cost.components[component]) for component in CostComponent},
        "tokens": {
            "input": usage.input_tokens,
            "output": usage.output_tokens,
            "cache_write_5m": usage.cache_write_5m_tokens,
            "cache_write_1h": usage.cache_write_1h_tokens,
            "cache_read": usage.cache_read_tokens,
            "thinking": usage.thinking_tokens,
            "web_search_requests": usage.web_search_requests,
            "web_fetch_requests": usage.web_fetch_requests,
        },
        "service_tier": usage.service_tier,
        "inference_geo": usage.inference_geo,
        "speed": usage.speed,
    }


def receipt_comment(document: dict[str, Any]) -> bytes:
    """The receipt as one SSE comment line and the blank line that ends an event block."""
    # ensure_ascii: one line whatever the text (no U+2028 a careless line splitter might break on).
    return RECEIPT_COMMENT + json.dumps(document, separators=(",", ":")).encode("ascii") + b"\n\n"

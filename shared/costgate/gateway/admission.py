"""The first step of every gateway request: its size, its key, its body and the feature it is billed to.

Nothing here spends anything or calls anyone but the key store: a request refused here costs nothing.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from costgate.accounting.ledger import validate_tag
from costgate.clock import Clock
from costgate.errors import ForbiddenError, InvalidRequestError, RequestTooLargeError
from costgate.gateway.keys import authenticate
from costgate.gateway.model import GatewayKey
from costgate.gateway.ports import KeyStore
from costgate.pricing.prices import PriceBook
from costgate.routing.router import AUTO_MODEL

# The Claude API's own limit for a Messages request (API Gateway REST stops at 10 MB before this).
MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_FEATURE = "default"
# Far deeper than any real request (tool schemas included); bounds the recursion of everything after.
MAX_JSON_DEPTH = 64


@dataclass(frozen=True)
class GatewayRequest:
    body: bytes
    headers: Mapping[str, str]  # lower-case names
    deadline: float  # time.monotonic() instant after which no upstream attempt may start


@dataclass(frozen=True)
class GatewayResponse:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Admitted:
    """A request costgate accepted: its key, its parsed body and what it is billed to."""

    key: GatewayKey
    body: dict[str, Any]
    requested_model: str  # as the client sent it: a model id or "auto"
    feature: str
    at: datetime


def admit(request: GatewayRequest, keys: KeyStore, clock: Clock, book: PriceBook) -> Admitted:
    """Who asks, for what: the key, the parsed body, the model asked for, the feature billed, the time."""
    if len(request.body) > MAX_BODY_BYTES:
        raise RequestTooLargeError(f"request body is {len(request.body):,} bytes; the limit is {MAX_BODY_BYTES:,}")
    now = clock.now()
    key = authenticate(keys, request.headers, now)
    body = _parse_body(request.body)
    _check_forwarded_headers(request.headers)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError('model: field required (a Claude model id such as claude-sonnet-5-5, or "auto")')
    if model != AUTO_MODEL:
        book.resolve(model)  # an unknown model is an error before anything is spent
    asked = request.headers.get("x-costgate-feature") or None
    if key.feature is not None and asked is not None and asked != key.feature:
        # A key bound to a feature must not slip out of that feature's budget by relabelling.
        raise ForbiddenError(f"this API key is bound to feature {key.feature!r}; x-costgate-feature cannot change it")
    feature = asked or key.feature or DEFAULT_FEATURE
    return Admitted(
        key=key, body=body, requested_model=model, feature=validate_tag(feature, "x-costgate-feature"), at=now
    )


def _parse_body(raw: bytes) -> dict[str, Any]:
    """The request as a JSON object of valid UTF-8 text, nested no deeper than MAX_JSON_DEPTH."""
    try:
        # Decoded explicitly: json.loads(bytes) would also accept UTF-16 and UTF-32.
        text = raw.decode("utf-8")
        body = json.loads(text)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InvalidRequestError(f"request body is not valid JSON (UTF-8): {str(error)[:200]}") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("request body must be a JSON object")
    _check_depth(body)
    # Valid UTF-8 holds no surrogates; only a \uD800-\uDFFF escape can bring one in, so the costly
    # re-encoding check runs only for bodies that contain such an escape.
    if "\\ud" in text.lower():
        try:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequestError("request body holds an unpaired surrogate escape (such as \\ud800)") from None
    return body


def _check_depth(value: Any) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InvalidRequestError(f"request body is nested more than {MAX_JSON_DEPTH} levels deep")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def _check_forwarded_headers(headers: Mapping[str, str]) -> None:
    for name in ("anthropic-version", "anthropic-beta"):
        value = headers.get(name)
        if value is not None and not value.isascii():
            raise InvalidRequestError(f"{name} header must be ASCII")

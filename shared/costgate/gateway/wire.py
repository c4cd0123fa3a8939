"""What goes to and comes from Claude on the wire, as the gateway passes it on."""

import json
from collections.abc import Mapping
from typing import Any

from costgate.claude.ports import LiveStream
from costgate.claude.transport import UpstreamResponse
from costgate.errors import UpstreamError
from costgate.gateway.admission import GatewayResponse
from costgate.observability import logger

# Headers that describe one hop, not the message: never copied from the upstream response.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer", "upgrade", "date", "server"}
)


def checked[Answer: UpstreamResponse | LiveStream](upstream: Answer) -> Answer:
    """Claude refusing costgate's own key is costgate's fault, not the client's: never a 401 to them."""
    if upstream.status in (401, 403):
        logger.error("the Claude API rejected costgate's key", extra={"status": upstream.status})
        raise UpstreamError(f"costgate is misconfigured: the Claude API rejected its API key ({upstream.status})")
    return upstream


def counted_tokens(upstream: UpstreamResponse) -> int | None:
    """count_tokens' `input_tokens`, or None for a body without a valid one."""
    try:
        answer = json.loads(upstream.body)
    except (ValueError, RecursionError):
        return None
    tokens = answer.get("input_tokens") if isinstance(answer, dict) else None
    return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0 else None


def encode(body: dict[str, Any]) -> bytes:
    """A request costgate changed, encoded anew: compact JSON, UTF-8."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def passthrough(upstream: UpstreamResponse, receipt: Mapping[str, str]) -> GatewayResponse:
    """Claude's answer as it came (but hop-by-hop headers), with costgate's receipt headers."""
    headers = {name: value for name, value in upstream.headers.items() if name not in HOP_BY_HOP}
    return GatewayResponse(status=upstream.status, headers={**headers, **receipt}, body=upstream.body)

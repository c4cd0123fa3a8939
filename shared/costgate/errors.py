"""The one error module: every error costgate raises on purpose, and its Anthropic-shaped response.

Each error carries the Claude API's error type and HTTP status, so a handler maps any of them with
`error_response` and an SDK client sees exactly what the Claude API would have sent.
"""

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar, Protocol

from costgate.money import format_usd


class CostgateError(Exception):
    """Base of every deliberate error; the message is safe to show to the client."""

    error_type: ClassVar[str] = "api_error"
    status: ClassVar[int] = 500
    # Extra response headers (e.g. x-should-retry) and the error object's `details`, where the Claude API has them.
    headers: ClassVar[Mapping[str, str]] = {}
    details: ClassVar[Mapping[str, str] | None] = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(CostgateError):
    error_type = "invalid_request_error"
    status = 400


class AuthenticationError(CostgateError):
    error_type = "authentication_error"
    status = 401


class ForbiddenError(CostgateError):
    error_type = "permission_error"
    status = 403


class NotFoundError(CostgateError):
    error_type = "not_found_error"
    status = 404


class RequestTooLargeError(CostgateError):
    error_type = "request_too_large"
    status = 413


class RateLimitError(CostgateError):
    error_type = "rate_limit_error"
    status = 429


class UpstreamError(CostgateError):
    error_type = "api_error"
    status = 500


class OverloadedError(CostgateError):
    error_type = "overloaded_error"
    status = 529


class PricingError(InvalidRequestError):
    """A model, tier or usage field costgate cannot price exactly. Never priced as 0 or a default."""


class UnknownModelError(PricingError):
    def __init__(self, model: str) -> None:
        super().__init__(f"costgate has no price for model {model!r}; add it to the price data before use")
        self.model = model


class UsageError(PricingError):
    """A usage object that is malformed or inconsistent (negative counts, a cache breakdown that does not add up)."""


class ConfigurationError(CostgateError):
    """Settings or data files that are missing or invalid: a deployment fault, not the client's."""


def error_body(
    error_type: str, message: str, request_id: str | None = None, details: Mapping[str, str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type, "message": message}}
    if details:
        body["error"]["details"] = dict(details)
    if request_id:
        body["request_id"] = request_id
    return body


def error_response(error: CostgateError, request_id: str | None = None) -> tuple[int, dict[str, Any]]:
    """(status, body) in the Claude API's error shape, with the request id the logs carry."""
    return error.status, error_body(error.error_type, error.message, request_id, error.details)


class UpstreamUnavailableError(OverloadedError):
    """No attempt reached the Claude API (connection refused, timed out, no time left): 529 overloaded_error,
    so the client's SDK retries it like Claude's own overload. The reason names the failure, never a key."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"upstream Claude API unreachable: {reason}")
        self.reason = reason


class ConflictError(CostgateError):
    """A record was not in the state a conditional write expected: someone else moved it first."""

    error_type = "conflict_error"
    status = 409


class BatchRejectedError(UpstreamError):
    """Claude answered a batch create with a refusal: no batch was created, the requests may go again."""


class BatchSubmitUncertainError(UpstreamError):
    """A batch create got no answer (timeout, lost connection, 5xx): the batch may or may not exist."""


class BudgetLimit(Protocol):
    """What a refusal names of the budget that did not fit (`costgate.accounting.budgets.Budget`)."""

    @property
    def label(self) -> str: ...

    @property
    def limit_usd(self) -> Decimal: ...


class BudgetExceededError(RateLimitError):
    """429: the request's worst-case cost does not fit in a budget.

    `remaining` is what the budget's window has left, or None when `needed` exceeds its whole limit.
    Shaped like the Claude API's own spend-limit 429: no retry-after, `x-should-retry: false` (SDKs
    would otherwise retry a refusal that cannot clear in seconds) and `enforced_spend_limit_reached`.
    """

    headers: ClassVar[Mapping[str, str]] = {"x-should-retry": "false"}
    details: ClassVar[Mapping[str, str] | None] = {"error_code": "enforced_spend_limit_reached"}

    def __init__(self, budget: BudgetLimit, remaining: Decimal | None, needed: Decimal) -> None:
        limit, cost = format_usd(budget.limit_usd), format_usd(needed)
        if remaining is None:
            message = (
                f"costgate: this request may cost up to ${cost}, more than {budget.label} of ${limit}; "
                "lower max_tokens or the prompt"
            )
        else:
            message = (
                f"costgate: {budget.label} is exhausted: limit ${limit}, ${format_usd(remaining)} remaining, "
                f"this request may cost up to ${cost}"
            )
        super().__init__(message)
        self.budget = budget
        self.remaining = remaining
        self.needed = needed


class AnswerTooLargeError(ValueError):
    """An entry that DynamoDB cannot hold (an item over MAX_ITEM_BYTES, or a transaction over 4 MB).

    Nothing was stored. The answer is served anyway; the cache just cannot keep it: log and move on.
    """


class InputRejectedError(Exception):
    """The object cannot be summarised: `reason` goes into its error file (at `error_key`, when known here)."""

    def __init__(self, reason: str, error_key: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_key = error_key


class UnknownEmbedderError(ConfigurationError, ValueError):
    """No hasher is configured for this embedder id (neither a shipped center nor an uncentered choice)."""


class InternalError(CostgateError):
    """Something in costgate itself failed: a bug or an outage of its own parts, never the client's fault."""


class UpstreamStreamError(Exception):
    """The connection to Claude failed after a stream's first byte (reset, read timeout, a truncated chunk).

    Never an HTTP error to the client, who already has the stream's status: the gateway ends the stream
    with an SSE `error` event and settles the request from the usage the stream had reported.
    """


# --- costgate.runtime: the Lambda runtime loop that streams ApiFunction's responses ---


class RuntimeApiError(RuntimeError):
    """The Runtime API refused a call or could not be reached."""


class PreludeError(ValueError):
    """The stream does not start with a prelude API Gateway accepts (it answers such a stream with a 500)."""


class ResponseStreamError(RuntimeError):
    """A handler used its response stream out of order (a bug in the handler, not a client's fault)."""


class UnmarshalError(ValueError):
    """The invocation's event is not JSON."""

    error_type = "Runtime.UnmarshalError"


class InitError(Exception):
    """The function could not be initialised (its handler not found or not importable), as Lambda reports it."""

    def __init__(self, error_type: str, message: str, stack_trace: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack_trace = stack_trace

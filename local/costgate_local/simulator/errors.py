"""The simulator's errors: what the Claude API would send, as status, error type, message and headers."""

from collections.abc import Mapping
from typing import Any

from costgate.errors import error_body


class ApiError(Exception):
    """An error response in the Claude API's shape; `headers` are added to the response (e.g. retry-after)."""

    def __init__(self, status: int, error_type: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = dict(headers or {})

    def body(self, request_id: str) -> dict[str, Any]:
        return error_body(self.error_type, self.message, request_id)


def invalid_request(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found_error", message)

"""The metadata prelude API Gateway's STREAM mode reads before a Lambda function's body.

Wire format (API Gateway developer guide, "Lambda proxy integration format for response streaming"):
a JSON object whose only keys are `statusCode`, `headers` (single values), `multiValueHeaders` and
`cookies`, then 8 NUL bytes, then the payload as the function produces it. The delimiter must come
within the first 16 KB of the stream. JSON escapes NUL inside strings, so the first 8 NUL bytes always
end the prelude. API Gateway merges `headers` into `multiValueHeaders`: a pair present in both appears
once, from `multiValueHeaders`.

The same code writes the prelude on Lambda (costgate.runtime.stream) and reads it in the local stack's
API Gateway stand-in, so the two cannot disagree about the format.
"""

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from costgate.errors import PreludeError

DELIMITER = b"\0" * 8
# "The delimiter must be 8 null bytes and it must appear within the first 16KB of stream data."
MAX_PRELUDE_BYTES = 16 * 1024
# The content type AWS's own Node.js runtime sets on a response stream that starts with a prelude
# (awslambda.HttpResponseStream.from in aws-lambda-nodejs-runtime-interface-client).
CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
_KEYS = frozenset({"statusCode", "headers", "multiValueHeaders", "cookies"})


@dataclass(frozen=True)
class HttpPrelude:
    """Status, headers and cookies of a streamed response, sent before its first body byte."""

    status_code: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    multi_value_headers: Mapping[str, Sequence[str]] = field(default_factory=dict)
    cookies: Sequence[str] = ()

    def __post_init__(self) -> None:
        if isinstance(self.status_code, bool) or not 100 <= self.status_code <= 599:
            raise PreludeError(f"statusCode must be an HTTP status (100-599), got {self.status_code!r}")
        # Plain immutable containers, so that equal preludes compare equal whatever they were built from.
        object.__setattr__(self, "headers", dict(self.headers))
        object.__setattr__(self, "multi_value_headers", {k: tuple(v) for k, v in self.multi_value_headers.items()})
        object.__setattr__(self, "cookies", tuple(self.cookies))

    def encode(self) -> bytes:
        """The prelude as it goes on the wire: compact JSON and the delimiter."""
        document: dict[str, Any] = {"statusCode": self.status_code}
        if self.headers:
            document["headers"] = dict(self.headers)
        if self.multi_value_headers:
            document["multiValueHeaders"] = {name: list(values) for name, values in self.multi_value_headers.items()}
        if self.cookies:
            document["cookies"] = list(self.cookies)
        encoded = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + DELIMITER
        if len(encoded) > MAX_PRELUDE_BYTES:
            raise PreludeError(f"the prelude is {len(encoded)} bytes; API Gateway reads at most {MAX_PRELUDE_BYTES}")
        return encoded

    def header_list(self) -> list[tuple[str, str]]:
        """The response headers as API Gateway sends them: merged (names compared case-insensitively), then cookies."""
        merged: dict[str, tuple[str, list[str]]] = {}
        for name, values in self.multi_value_headers.items():
            merged.setdefault(name.lower(), (name, []))[1].extend(values)
        for name, value in self.headers.items():
            values = merged.setdefault(name.lower(), (name, []))[1]
            if value not in values:
                values.append(value)
        pairs = [(name, value) for name, values in merged.values() for value in values]
        return pairs + [("Set-Cookie", cookie) for cookie in self.cookies]


def decode_prelude(raw: bytes) -> HttpPrelude:
    """The prelude from its JSON (without the delimiter); PreludeError if API Gateway would refuse it."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except ValueError as error:  # UnicodeDecodeError is a ValueError
        raise PreludeError(f"the prelude is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise PreludeError("the prelude must be a JSON object")
    unknown = set(document) - _KEYS
    if unknown:
        raise PreludeError(f"the prelude has keys API Gateway does not support: {sorted(unknown)}")
    status = document.get("statusCode", 200)
    headers = document.get("headers") or {}
    multi = document.get("multiValueHeaders") or {}
    cookies = document.get("cookies") or []
    if not isinstance(status, int) or isinstance(status, bool):
        raise PreludeError("statusCode must be an integer")
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise PreludeError("headers must map names to single string values")
    if not isinstance(multi, dict) or not all(
        isinstance(vs, list) and all(isinstance(v, str) for v in vs) for vs in multi.values()
    ):
        raise PreludeError("multiValueHeaders must map names to lists of strings")
    if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
        raise PreludeError("cookies must be a list of strings")
    return HttpPrelude(status_code=status, headers=headers, multi_value_headers=multi, cookies=cookies)


class PreludeReader:
    """Splits a response stream into its prelude and its body, as API Gateway does, whatever the chunking.

    `feed` returns the body bytes that follow the prelude (b"" while the prelude is incomplete).
    """

    def __init__(self) -> None:
        self._pending = b""
        self.prelude: HttpPrelude | None = None

    def feed(self, chunk: bytes) -> bytes:
        if self.prelude is not None:
            return chunk
        self._pending += chunk
        end = self._pending.find(DELIMITER)
        if end < 0:
            if len(self._pending) >= MAX_PRELUDE_BYTES:
                raise PreludeError(f"no 8-NUL delimiter within the first {MAX_PRELUDE_BYTES} bytes")
            return b""
        if end + len(DELIMITER) > MAX_PRELUDE_BYTES:
            raise PreludeError(f"the delimiter ends after byte {MAX_PRELUDE_BYTES}")
        self.prelude = decode_prelude(self._pending[:end])
        body, self._pending = self._pending[end + len(DELIMITER) :], b""
        return body


def from_proxy_response(result: Mapping[str, Any]) -> tuple[HttpPrelude, bytes]:
    """A Lambda proxy integration response (what a buffered handler returns) as a prelude and a body."""
    status = result.get("statusCode")
    if not isinstance(status, int) or isinstance(status, bool):
        raise PreludeError("a proxy response needs an integer statusCode")
    headers = {name: str(value) for name, value in (result.get("headers") or {}).items()}
    multi = {name: [str(v) for v in values] for name, values in (result.get("multiValueHeaders") or {}).items()}
    body = result.get("body") or ""
    if not isinstance(body, str):
        raise PreludeError("a proxy response body must be a string")
    data = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode("utf-8")
    return HttpPrelude(status_code=status, headers=headers, multi_value_headers=multi), data

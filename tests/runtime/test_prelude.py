"""The metadata prelude of API Gateway's STREAM mode: encoded on Lambda, read back by the local front."""

import base64
import json

import pytest

from costgate.errors import PreludeError
from costgate.runtime.prelude import (
    DELIMITER,
    MAX_PRELUDE_BYTES,
    HttpPrelude,
    PreludeReader,
    decode_prelude,
    from_proxy_response,
)


def test_prelude_is_json_then_eight_nul_bytes() -> None:
    prelude = HttpPrelude(201, {"content-type": "text/event-stream"}, {"x-a": ["1", "2"]}, ["s=1"])
    encoded = prelude.encode()
    document, rest = encoded.split(DELIMITER, 1)
    assert rest == b""
    assert json.loads(document) == {
        "statusCode": 201,
        "headers": {"content-type": "text/event-stream"},
        "multiValueHeaders": {"x-a": ["1", "2"]},
        "cookies": ["s=1"],
    }
    assert decode_prelude(document) == prelude


def test_a_nul_in_a_header_value_cannot_end_the_prelude_early() -> None:
    # Given a header value with a NUL character (JSON escapes it, so only the delimiter has raw NULs)
    prelude = HttpPrelude(200, {"x-odd": "a\0b"})
    reader = PreludeReader()
    # When it is read back one byte at a time, then a body follows
    body = b"".join(reader.feed(prelude.encode()[i : i + 1]) for i in range(len(prelude.encode())))
    body += reader.feed(b"data")
    # Then the prelude is intact and the body starts after the delimiter
    assert reader.prelude == prelude
    assert body == b"data"


def test_reader_splits_prelude_and_body_in_one_chunk() -> None:
    reader = PreludeReader()
    assert reader.feed(HttpPrelude(200).encode() + b"event: ping\n\n" + DELIMITER) == b"event: ping\n\n" + DELIMITER
    assert reader.prelude == HttpPrelude(200)
    # after the prelude every byte is body, NUL bytes included
    assert reader.feed(b"\0\0") == b"\0\0"


def test_reader_refuses_a_stream_without_delimiter_in_16_kb() -> None:
    reader = PreludeReader()
    with pytest.raises(PreludeError, match="16384"):
        reader.feed(b"{" + b" " * MAX_PRELUDE_BYTES)


@pytest.mark.parametrize(
    "document",
    [b"[]", b"not json", b'{"statusCode": 200, "body": "x"}', b'{"statusCode": "200"}', b'{"headers": {"a": ["1"]}}'],
)
def test_preludes_api_gateway_refuses(document: bytes) -> None:
    with pytest.raises(PreludeError):
        decode_prelude(document)


def test_an_empty_object_is_a_valid_prelude() -> None:
    # "at a minimum it must be an empty JSON object": status 200, no headers
    assert decode_prelude(b"{}") == HttpPrelude()


def test_an_oversized_prelude_fails_before_anything_is_sent() -> None:
    with pytest.raises(PreludeError, match="at most"):
        HttpPrelude(200, {"x-big": "v" * MAX_PRELUDE_BYTES}).encode()


def test_headers_merge_as_api_gateway_documents() -> None:
    # A pair present in both maps appears once; names compare case-insensitively; cookies last.
    prelude = HttpPrelude(
        200, {"Content-Type": "application/json", "X-A": "1", "x-b": "3"}, {"x-a": ["1", "2"]}, ["c=1"]
    )
    assert prelude.header_list() == [
        ("x-a", "1"),
        ("x-a", "2"),
        ("Content-Type", "application/json"),
        ("x-b", "3"),
        ("Set-Cookie", "c=1"),
    ]


def test_a_proxy_response_becomes_prelude_and_body() -> None:
    prelude, body = from_proxy_response(
        {"statusCode": 404, "headers": {"a": "1"}, "multiValueHeaders": {"b": ["2"]}, "body": "없음"}
    )
    assert prelude == HttpPrelude(404, {"a": "1"}, {"b": ["2"]})
    assert body == "없음".encode()
    _, binary = from_proxy_response(
        {"statusCode": 200, "body": base64.b64encode(b"\xff\0").decode(), "isBase64Encoded": True}
    )
    assert binary == b"\xff\0"
    with pytest.raises(PreludeError):
        from_proxy_response({"body": "no status"})

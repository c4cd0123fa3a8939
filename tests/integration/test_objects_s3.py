"""S3ObjectStore against moto: a bucket made with template.yaml's settings (versioned) per test."""

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest

from costgate.dal import objects as objects_module
from costgate.dal.objects import S3ObjectStore, parse_s3_event
from costgate.errors import NotFoundError, RequestTooLargeError
from costgate_local.stack.aws import LocalAwsEndpoints, create_bucket, environment

KEY = "incoming/job-1/doc.txt"


@pytest.fixture
def bucket(local_aws: LocalAwsEndpoints) -> Iterator[str]:
    """A new bucket, versioned like the template's; the environment points boto3 at moto for the test."""
    name = f"costgate-test-{uuid.uuid4().hex[:12]}"
    with environment(local_aws.environ()):
        create_bucket(local_aws, name)
        yield name


@pytest.fixture
def s3(bucket: str) -> Any:
    """A plain client, to look at what the store wrote."""
    return boto3.client("s3")


@pytest.fixture
def store(bucket: str) -> S3ObjectStore:
    return S3ObjectStore(bucket)


class CountingBody:
    """Wraps a StreamingBody, counting reads and noting close()."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.reads = 0
        self.closed = False

    def read(self, *args: Any) -> bytes:
        self.reads += 1
        data: bytes = self.inner.read(*args)
        return data

    def iter_lines(self, **kw: Any) -> Iterator[bytes]:
        lines: Iterator[bytes] = self.inner.iter_lines(**kw)
        return lines

    def close(self) -> None:
        self.closed = True
        self.inner.close()


class SpyClient:
    """A boto3 S3 client whose get_object bodies are CountingBody."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.bodies: list[CountingBody] = []

    def get_object(self, **kw: Any) -> dict[str, Any]:
        response: dict[str, Any] = self.inner.get_object(**kw)
        body = CountingBody(response["Body"])
        self.bodies.append(body)
        return {**response, "Body": body}


def versions(s3: Any, bucket: str, key: str) -> list[str]:
    """The key's version ids, the current one last (puts within one second share a LastModified)."""
    listed = [v for v in s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"] if v["Key"] == key]
    return [v["VersionId"] for v in sorted(listed, key=lambda v: v["IsLatest"])]


def test_put_then_read_round_trips_the_bytes_and_content_type(store: S3ObjectStore, s3: Any, bucket: str) -> None:
    # Given a document written by the store
    body = "Résumé: €12 — ok\n".encode()
    store.put(KEY, body, "text/plain; charset=utf-8")
    # When it is read back
    read = store.read(KEY, max_bytes=1024)
    # Then the bytes and the content type are as written
    assert read == body
    assert s3.head_object(Bucket=bucket, Key=KEY)["ContentType"] == "text/plain; charset=utf-8"


def test_an_old_version_is_read_by_its_id_and_null_means_the_current_one(
    store: S3ObjectStore, s3: Any, bucket: str
) -> None:
    # Given a key written twice in the versioned bucket
    store.put(KEY, b"first draft\n", "text/plain")
    store.put(KEY, b"final text\n", "text/plain")
    first, second = versions(s3, bucket, KEY)
    # When each version is read, and the key without a version
    # Then each version reads as written; no version (or S3's "null") reads the current one
    assert store.read(KEY, first, max_bytes=100) == b"first draft\n"
    assert store.read(KEY, second, max_bytes=100) == b"final text\n"
    assert store.read(KEY, max_bytes=100) == b"final text\n"
    assert store.read(KEY, "null", max_bytes=100) == b"final text\n"
    assert list(store.lines(KEY, first)) == [b"first draft"]


def test_missing_keys_and_versions_are_not_found(store: S3ObjectStore, s3: Any, bucket: str) -> None:
    # Given a key written and then deleted (a delete marker hides it), and one never written
    store.put(KEY, b"gone soon", "text/plain")
    (version,) = versions(s3, bucket, KEY)
    s3.delete_object(Bucket=bucket, Key=KEY)
    # When they are read / Then each is NotFoundError; the deleted key's version is still there by id
    with pytest.raises(NotFoundError, match=re.escape(f"s3://{bucket}/{KEY} does not exist")):
        store.read(KEY, max_bytes=100)
    with pytest.raises(NotFoundError, match=r"never-written\.txt does not exist"):
        store.read("incoming/job-1/never-written.txt", max_bytes=100)
    with pytest.raises(NotFoundError, match="version 0000-not-a-version does not exist"):
        store.read(KEY, "0000-not-a-version", max_bytes=100)
    with pytest.raises(NotFoundError):
        next(store.lines("incoming/job-1/never-written.txt"))
    assert store.read(KEY, version, max_bytes=100) == b"gone soon"


def test_an_object_over_max_bytes_is_refused_before_its_body_is_read(store: S3ObjectStore, bucket: str) -> None:
    # Given a 1,000-byte document, read through a client that counts body reads
    store.put(KEY, b"x" * 1000, "text/plain")
    spy = SpyClient(boto3.client("s3"))
    spying = S3ObjectStore(bucket, client=spy)
    # When it is read with 999 allowed, then with exactly 1,000
    with pytest.raises(RequestTooLargeError, match="1,000 bytes, over the 999 allowed"):
        spying.read(KEY, max_bytes=999)
    exact = spying.read(KEY, max_bytes=1000)
    # Then the refused body was closed unread; the exact fit was read whole
    refused, accepted = spy.bodies
    assert (refused.reads, refused.closed) == (0, True)
    assert (len(exact), accepted.closed) == (1000, True)


@pytest.mark.parametrize("chunk", [3, 64 * 1024], ids=["3-byte-chunks", "default-chunks"])
def test_lines_drop_lf_and_crlf_and_keep_a_last_line_without_newline(
    store: S3ObjectStore, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    # Given a document with CRLF and LF line ends, a blank line and no newline at the end
    # (3-byte chunks put a chunk boundary between a \r and its \n)
    monkeypatch.setattr(objects_module, "_LINE_CHUNK_BYTES", chunk)
    store.put(KEY, b"first line\r\nsecond\n\nthird\r\nlast, no newline", "text/plain")
    # When it is read line by line
    lines = list(store.lines(KEY))
    # Then every line comes without its line end, the last one included
    assert lines == [b"first line", b"second", b"", b"third", b"last, no newline"]


def test_lines_are_streamed_and_an_abandoned_read_closes_the_body(store: S3ObjectStore, bucket: str) -> None:
    # Given a document of 10,000 lines, read through a client that counts body reads
    store.put(KEY, b"".join(b"line %d\n" % i for i in range(10_000)), "text/plain")
    spy = SpyClient(boto3.client("s3"))
    # When two lines are read and the iterator is closed
    lines = S3ObjectStore(bucket, client=spy).lines(KEY)
    assert spy.bodies == []  # nothing is requested before the first next()
    assert [next(lines), next(lines)] == [b"line 0", b"line 1"]
    lines.close()  # type: ignore[attr-defined]
    # Then the body was closed
    (body,) = spy.bodies
    assert body.closed


def test_put_file_uploads_a_large_file_in_parts_with_its_content_type(
    store: S3ObjectStore, s3: Any, bucket: str, tmp_path: Path
) -> None:
    # Given a 9 MiB results file on disk (above boto3's 8 MiB multipart threshold)
    path = tmp_path / "results.jsonl"
    line = b'{"custom_id": "doc-1-0", "summary": "' + b"s" * 1000 + b'"}\n'
    path.write_bytes(line * (9 * 1024 * 1024 // len(line) + 1))
    # When it is uploaded
    store.put_file("results/job-1/results.jsonl", path, "application/x-ndjson")
    # Then the object is the file, in two parts, with the content type
    # (moto answers a HEAD with PartNumber with binary/octet-stream, so the type comes from a plain HEAD)
    head = s3.head_object(Bucket=bucket, Key="results/job-1/results.jsonl")
    assert head["ContentType"] == "application/x-ndjson"
    assert s3.head_object(Bucket=bucket, Key="results/job-1/results.jsonl", PartNumber=1)["PartsCount"] == 2
    stored = store.read("results/job-1/results.jsonl", max_bytes=16 * 1024 * 1024)
    assert stored == path.read_bytes()


def test_an_event_key_read_back_names_the_object_written(store: S3ObjectStore, bucket: str) -> None:
    # Given a document whose key has spaces and accents, and the event S3 would send for it (form-encoded key)
    key = "incoming/my job/café résumé.txt"
    store.put(key, b"bonjour", "text/plain")
    event = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key, safe="/"), "size": 7}},
            }
        ]
    }
    # When the event is parsed and its object read
    (created,) = parse_s3_event(event)
    # Then it is the document written
    assert created.key == key
    assert store.read(created.key, created.version_id, max_bytes=100) == b"bonjour"

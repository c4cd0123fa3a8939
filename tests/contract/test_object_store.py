"""ObjectStore's contract, for InMemoryObjectStore and S3ObjectStore (a versioned bucket in moto, made with the
template's settings): reads by key and version, the size limit, lines without their line ends, puts."""

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from costgate.batch.ports import ObjectStore
from costgate.dal.objects import S3ObjectStore
from costgate.errors import NotFoundError, RequestTooLargeError
from costgate_local.stack.aws import LocalAwsEndpoints, create_bucket, environment
from tests.contract.conftest import FAKE
from tests.fakes.batch import InMemoryObjectStore

KEY = "incoming/job-1/doc.txt"


@dataclass
class Bucket:
    """The store under test, and what a user does to its bucket outside it."""

    store: ObjectStore
    upload: Callable[[str, bytes], str]  # a PUT: the new version's id
    empty: Callable[[str], None]  # every version of the key deleted


def _s3_bucket(local_aws: LocalAwsEndpoints) -> Iterator[Bucket]:
    name = f"costgate-test-{uuid.uuid4().hex[:12]}"
    with environment(local_aws.environ()):
        create_bucket(local_aws, name)
        s3: Any = boto3.client("s3")

        def upload(key: str, body: bytes) -> str:
            return str(s3.put_object(Bucket=name, Key=key, Body=body)["VersionId"])

        def empty(key: str) -> None:
            listed = s3.list_object_versions(Bucket=name, Prefix=key)
            for version in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]:
                if version["Key"] == key:
                    s3.delete_object(Bucket=name, Key=key, VersionId=version["VersionId"])

        yield Bucket(S3ObjectStore(name), upload, empty)


@pytest.fixture(params=[FAKE, "s3"])
def bucket(request: pytest.FixtureRequest) -> Iterator[Bucket]:
    if request.param == FAKE:
        fake = InMemoryObjectStore()
        yield Bucket(fake, fake.upload, fake.delete)
    else:
        yield from _s3_bucket(request.getfixturevalue("local_aws"))


@pytest.fixture
def store(bucket: Bucket) -> ObjectStore:
    return bucket.store


def test_put_then_read_round_trips_the_bytes(store: ObjectStore) -> None:
    body = "Résumé: €12 — ok\n".encode()
    store.put(KEY, body, "text/plain; charset=utf-8")
    assert store.read(KEY, max_bytes=1024) == body


def test_a_put_replaces_what_a_read_without_a_version_returns(store: ObjectStore) -> None:
    store.put(KEY, b"first", "text/plain")
    store.put(KEY, b"second", "text/plain")
    assert store.read(KEY, max_bytes=100) == b"second"
    assert list(store.lines(KEY)) == [b"second"]


def test_an_old_version_is_read_by_its_id_and_null_means_the_current_one(bucket: Bucket) -> None:
    # Given a key uploaded twice
    first = bucket.upload(KEY, b"first draft\n")
    second = bucket.upload(KEY, b"final text\n")
    store = bucket.store
    # Then each version reads as written; no version (or S3's "null") reads the current one
    assert store.read(KEY, first, max_bytes=100) == b"first draft\n"
    assert store.read(KEY, second, max_bytes=100) == b"final text\n"
    assert store.read(KEY, max_bytes=100) == b"final text\n"
    assert store.read(KEY, "null", max_bytes=100) == b"final text\n"
    assert list(store.lines(KEY, first)) == [b"first draft"]
    assert list(store.lines(KEY, "null")) == [b"final text"]


def test_missing_keys_and_versions_are_not_found(bucket: Bucket) -> None:
    # Given a key uploaded and then emptied, another one uploaded, and one never written
    gone = bucket.upload(KEY, b"gone soon")
    bucket.empty(KEY)
    other = bucket.upload("incoming/job-1/other.txt", b"here")
    store = bucket.store
    # When they are read / Then each is NotFoundError naming the object
    with pytest.raises(NotFoundError, match=r"doc\.txt does not exist"):
        store.read(KEY, max_bytes=100)
    with pytest.raises(NotFoundError, match=re.escape(f"doc.txt version {gone} does not exist")):
        store.read(KEY, gone, max_bytes=100)
    with pytest.raises(NotFoundError, match=r"never-written\.txt does not exist"):
        store.read("incoming/job-1/never-written.txt", max_bytes=100)
    with pytest.raises(NotFoundError, match=r"other\.txt version 0000-not-a-version does not exist"):
        store.read("incoming/job-1/other.txt", "0000-not-a-version", max_bytes=100)
    # And another key's version id is not a version of this key
    with pytest.raises(NotFoundError):
        store.read("incoming/job-1/never-written.txt", other, max_bytes=100)
    with pytest.raises(NotFoundError):
        list(store.lines("incoming/job-1/never-written.txt"))


def test_an_object_over_max_bytes_is_refused_and_exactly_max_bytes_fits(store: ObjectStore) -> None:
    store.put(KEY, b"x" * 1000, "text/plain")
    with pytest.raises(RequestTooLargeError, match="1,000 bytes, over the 999 allowed"):
        store.read(KEY, max_bytes=999)
    assert store.read(KEY, max_bytes=1000) == b"x" * 1000


@pytest.mark.parametrize(
    ("body", "lines"),
    [
        (
            b"first line\r\nsecond\n\nthird\r\nlast, no newline",
            [b"first line", b"second", b"", b"third", b"last, no newline"],
        ),
        (b"old mac\rline\r", [b"old mac", b"line"]),
        (b"one\n", [b"one"]),
        (b"\n\n", [b"", b""]),
        (b"", []),
        (b"tab\tand\x0bvertical\x0cfeed\x1cstay", [b"tab\tand\x0bvertical\x0cfeed\x1cstay"]),
    ],
    ids=["crlf-lf-blank-unterminated", "cr", "one-terminated", "two-blank", "empty", "other-controls"],
)
def test_lines_come_without_their_line_ends(store: ObjectStore, body: bytes, lines: list[bytes]) -> None:
    store.put(KEY, body, "text/plain")
    assert list(store.lines(KEY)) == lines


def test_put_file_uploads_the_files_bytes(store: ObjectStore, tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"custom_id": "doc-1-0", "summary": "s"}\n' * 1000)
    store.put_file("results/job-1/results.jsonl", path, "application/x-ndjson")
    assert store.read("results/job-1/results.jsonl", max_bytes=1 << 20) == path.read_bytes()

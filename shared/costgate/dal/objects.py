"""The documents bucket in S3: `S3ObjectStore` (the `costgate.batch.ports.ObjectStore` adapter) and its events.

boto3 finds the endpoint in AWS_ENDPOINT_URL by itself (moto locally, S3 in AWS), so nothing here
knows where the bucket lives. A document is identified by bucket, key and version (the bucket is
versioned: a re-upload is a new document), and `parse_s3_event` turns a notification into those.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
from botocore.exceptions import ClientError

from costgate.errors import InvalidRequestError, NotFoundError, RequestTooLargeError

_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "NoSuchBucket", "404", "NotFound"})
# iter_lines' default is 1 KiB: far too many reads for a document of many megabytes.
_LINE_CHUNK_BYTES = 64 * 1024


class S3ObjectStore:
    """One bucket. The boto3 client is made on first use and kept (one per warm container)."""

    def __init__(self, bucket: str, client: Any | None = None) -> None:
        if not bucket:
            raise ValueError("bucket must not be empty")
        self.bucket = bucket
        self._client = client

    @property
    def _s3(self) -> Any:
        if self._client is None:
            self._client = boto3.client("s3")
        return self._client

    def read(self, key: str, version_id: str | None = None, *, max_bytes: int) -> bytes:
        response = self._get(key, version_id)
        body = response["Body"]
        try:
            # Checked before reading: an oversized document is refused without downloading it.
            if response["ContentLength"] > max_bytes:
                raise RequestTooLargeError(
                    f"s3://{self.bucket}/{key} is {response['ContentLength']:,} bytes, over the {max_bytes:,} allowed"
                )
            data: bytes = body.read()
        finally:
            body.close()
        return data

    def lines(self, key: str, version_id: str | None = None) -> Iterator[bytes]:
        """The lines without b"\\n", b"\\r\\n" or b"\\r"; a last line without a line end is kept.

        The object is requested at the first `next()`, and the connection is closed when the iterator
        finishes or is closed.
        """
        body = self._get(key, version_id)["Body"]
        try:
            yield from body.iter_lines(chunk_size=_LINE_CHUNK_BYTES)
        finally:
            body.close()

    def put(self, key: str, body: bytes, content_type: str) -> None:
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        self._s3.upload_file(str(path), self.bucket, key, ExtraArgs={"ContentType": content_type})

    def _get(self, key: str, version_id: str | None) -> Any:
        arguments = {"Bucket": self.bucket, "Key": key}
        # "null" is the version id S3 gives an object written before versioning was enabled.
        if version_id is not None and version_id != "null":
            arguments["VersionId"] = version_id
        try:
            return self._s3.get_object(**arguments)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _MISSING_CODES or status == 404:
                version = f" version {version_id}" if version_id else ""
                raise NotFoundError(f"s3://{self.bucket}/{key}{version} does not exist") from error
            raise


@dataclass(frozen=True)
class ObjectCreated:
    """One object written to a bucket, from an S3 event notification. `key` is decoded (S3 sends it
    form-encoded); `version_id` is None in an unversioned bucket; `sequencer` orders events of one key."""

    bucket: str
    key: str
    version_id: str | None
    size: int
    sequencer: str | None


def parse_s3_event(event: Mapping[str, Any]) -> list[ObjectCreated]:
    """The ObjectCreated:* records of an S3 event notification, in order; other records are skipped.

    InvalidRequestError names the first field that is missing or of the wrong type.
    """
    if not isinstance(event, Mapping):
        raise InvalidRequestError(f"S3 event: expected an object, got {type(event).__name__}")
    records = event.get("Records")
    if not isinstance(records, list):
        raise InvalidRequestError("S3 event: Records must be a list")
    created = []
    for index, record in enumerate(records):
        where = f"S3 event Records[{index}]"
        if not isinstance(record, Mapping):
            raise InvalidRequestError(f"{where}: expected an object")
        name = record.get("eventName")
        if record.get("eventSource") != "aws:s3" or not isinstance(name, str) or not name.startswith("ObjectCreated:"):
            continue
        s3 = _object(record, "s3", where)
        bucket = _text(_object(s3, "bucket", f"{where}.s3"), "name", f"{where}.s3.bucket")
        obj = _object(s3, "object", f"{where}.s3")
        key = _text(obj, "key", f"{where}.s3.object")
        size = obj.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidRequestError(f"{where}.s3.object.size: expected a non-negative integer, got {size!r}")
        created.append(
            ObjectCreated(
                bucket=bucket,
                key=unquote_plus(key),
                version_id=_optional_text(obj, "versionId", f"{where}.s3.object"),
                size=size,
                sequencer=_optional_text(obj, "sequencer", f"{where}.s3.object"),
            )
        )
    return created


def _object(mapping: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = mapping.get(name)
    if not isinstance(value, Mapping):
        raise InvalidRequestError(f"{where}.{name}: missing or not an object")
    return value


def _text(mapping: Mapping[str, Any], name: str, where: str) -> str:
    value = mapping.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(f"{where}.{name}: missing or not a non-empty string")
    return value


def _optional_text(mapping: Mapping[str, Any], name: str, where: str) -> str | None:
    value = mapping.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(f"{where}.{name}: expected a string, got {value!r}")
    return value

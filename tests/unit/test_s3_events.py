"""parse_s3_event: S3 event notifications into ObjectCreated, keys decoded, other records skipped."""

import copy
from typing import Any

import pytest

from costgate.dal.objects import ObjectCreated, parse_s3_event
from costgate.errors import InvalidRequestError

BUCKET = "costgate-docs-123456789012"


def record(key: str, *, event_name: str = "ObjectCreated:Put", **object_fields: Any) -> dict[str, Any]:
    """One record as S3 sends it to Lambda (fields the parser ignores included)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-20T12:00:00.000Z",
        "eventName": event_name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "incoming-documents",
            "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
            "object": {
                "key": key,
                "size": 1024,
                "eTag": "0123456789abcdef",
                "sequencer": "0067A1B2C3D4E5F601",
                **object_fields,
            },
        },
    }


def test_a_form_encoded_key_is_decoded_with_its_version_size_and_sequencer() -> None:
    # Given a record for a key with spaces (+) and UTF-8 accents (%C3%A9), as S3 encodes it
    event = {"Records": [record("incoming/my+job/caf%C3%A9+r%C3%A9sum%C3%A9.txt", versionId="3HL4kqtJlcpXroDTDmJ")]}
    # When it is parsed
    created = parse_s3_event(event)
    # Then the key is the object's real key
    assert created == [
        ObjectCreated(
            bucket=BUCKET,
            key="incoming/my job/café résumé.txt",
            version_id="3HL4kqtJlcpXroDTDmJ",
            size=1024,
            sequencer="0067A1B2C3D4E5F601",
        )
    ]


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        pytest.param("incoming/a%2Bb.txt", "incoming/a+b.txt", id="literal-plus"),
        pytest.param("incoming/100%25.txt", "incoming/100%.txt", id="literal-percent"),
        pytest.param("incoming/%E6%97%A5%E6%9C%AC.txt", "incoming/日本.txt", id="cjk"),
        pytest.param("incoming/plain.txt", "incoming/plain.txt", id="plain"),
    ],
)
def test_keys_are_decoded_as_form_encoding(encoded: str, decoded: str) -> None:
    (created,) = parse_s3_event({"Records": [record(encoded)]})
    assert created.key == decoded


def test_without_a_version_id_or_sequencer_they_are_none() -> None:
    # Given a record from an unversioned bucket (no versionId) and one without a sequencer
    bare = record("incoming/a.txt")
    del bare["s3"]["object"]["sequencer"]
    # When they are parsed
    (unversioned,) = parse_s3_event({"Records": [record("incoming/b.txt")]})
    (no_sequencer,) = parse_s3_event({"Records": [bare]})
    # Then the missing fields are None
    assert unversioned.version_id is None
    assert no_sequencer.sequencer is None


def test_only_object_created_records_from_s3_are_kept_in_order() -> None:
    # Given a copy, a delete, a restore, a record from another source, a multipart upload and a put
    foreign = record("incoming/sqs.txt")
    foreign["eventSource"] = "aws:sqs"
    event = {
        "Records": [
            record("incoming/1.txt", event_name="ObjectCreated:Copy"),
            record("incoming/2.txt", event_name="ObjectRemoved:Delete"),
            record("incoming/3.txt", event_name="ObjectRestore:Completed"),
            foreign,
            record("incoming/4.txt", event_name="ObjectCreated:CompleteMultipartUpload"),
            record("incoming/5.txt"),
        ]
    }
    # When it is parsed / Then only the three creations remain, in the event's order
    assert [c.key for c in parse_s3_event(event)] == ["incoming/1.txt", "incoming/4.txt", "incoming/5.txt"]


def test_an_event_without_records_to_keep_gives_an_empty_list() -> None:
    assert parse_s3_event({"Records": []}) == []
    assert parse_s3_event({"Records": [record("a", event_name="ObjectRemoved:Delete")]}) == []


def _without(path: tuple[str, ...]) -> dict[str, Any]:
    broken = copy.deepcopy(record("incoming/a.txt"))
    target = broken
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return {"Records": [record("incoming/ok.txt"), broken]}


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    broken = copy.deepcopy(record("incoming/a.txt"))
    target = broken
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return {"Records": [broken]}


@pytest.mark.parametrize(
    ("event", "message"),
    [
        pytest.param({}, "Records must be a list", id="no-records"),
        pytest.param({"Records": {"0": {}}}, "Records must be a list", id="records-not-a-list"),
        pytest.param({"Records": ["x"]}, r"Records\[0\]: expected an object", id="record-not-an-object"),
        pytest.param(_without(("s3",)), r"Records\[1\]\.s3: missing", id="no-s3"),
        pytest.param(_without(("s3", "bucket")), r"Records\[1\]\.s3\.bucket: missing", id="no-bucket"),
        pytest.param(_with(("s3", "bucket", "name"), ""), r"s3\.bucket\.name: missing", id="empty-bucket"),
        pytest.param(_without(("s3", "object", "key")), r"s3\.object\.key: missing", id="no-key"),
        pytest.param(_with(("s3", "object", "key"), 7), r"s3\.object\.key: missing", id="key-not-text"),
        pytest.param(_without(("s3", "object", "size")), r"s3\.object\.size: .* got None", id="no-size"),
        pytest.param(_with(("s3", "object", "size"), "12"), r"s3\.object\.size: .* got '12'", id="size-text"),
        pytest.param(_with(("s3", "object", "size"), True), r"s3\.object\.size", id="size-bool"),
        pytest.param(_with(("s3", "object", "size"), -1), r"s3\.object\.size", id="size-negative"),
        pytest.param(_with(("s3", "object", "versionId"), 3), r"s3\.object\.versionId: expected a string", id="ver"),
    ],
)
def test_a_malformed_event_is_an_invalid_request(event: Any, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        parse_s3_event(event)


def test_an_event_that_is_not_an_object_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequestError, match="expected an object, got list"):
        parse_s3_event([])  # type: ignore[arg-type]

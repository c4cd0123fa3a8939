"""What an uploaded object means: object keys, `_job.json`, text decoding and splitting, `.jsonl` requests.

Prices come from the shipped price book (current models: claude-haiku-5-5, claude-sonnet-5-5,
claude-opus-5-5); a model it does not know is refused when the object registers.
"""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costgate.batch import input as batch_input
from costgate.batch.input import (
    DEFAULT_FEATURE,
    DEFAULT_INSTRUCTION,
    DEFAULT_MAX_TOKENS,
    DEFAULT_MODEL,
    MAX_INSTRUCTION_CHARS,
    MAX_JOB_CONFIG_BYTES,
    MAX_OUTPUT_TOKENS,
    MAX_PART_BYTES,
    MAX_PARTS,
    MAX_TEXT_BYTES,
    ObjectPath,
    ObjectRole,
    decode_text,
    parse_job_config,
    parse_object_key,
    request_line,
    split_text,
    text_parts,
    unsupported_reason,
    validate_request_lines,
)
from costgate.batch.model import DocumentKind, JobConfig
from costgate.errors import InputRejectedError
from costgate.pricing.prices import default_price_book

AT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
TENANT = "documents"
CURRENT_MODELS = ("claude-haiku-5-5", "claude-sonnet-5-5", "claude-opus-5-5")
BOM = b"\xef\xbb\xbf"
SEPARATORS = ("\n\n", "\n", ". ", "。", "? ", "! ", " ")


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def config(**fields: Any) -> bytes:
    return json.dumps(fields, ensure_ascii=False).encode("utf-8")


def rejected_config(raw: bytes, at: datetime = AT) -> InputRejectedError:
    with pytest.raises(InputRejectedError) as caught:
        parse_job_config(raw, TENANT, at)
    return caught.value


def params(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-haiku-5-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Summarise: 오늘 회의는 10시에 시작했다."}],
    }
    body.update(overrides)
    return body


def line(custom_id: Any = "req-1", **overrides: Any) -> bytes:
    return json.dumps({"custom_id": custom_id, "params": params(**overrides)}).encode("utf-8")


def rejected_lines(lines: list[bytes], name: str = "reqs.jsonl") -> str:
    with pytest.raises(InputRejectedError) as caught:
        validate_request_lines(lines, name, AT)
    assert caught.value.reason == str(caught.value)
    return caught.value.reason


# ---------------------------------------------------------------------------------------------------------------
# parse_object_key
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "name", "role", "kind", "result_key"),
    [
        ("incoming/job/notes.txt", "notes.txt", ObjectRole.TEXT, DocumentKind.TEXT, "results/job/notes.txt.summary.md"),
        ("incoming/job/notes.md", "notes.md", ObjectRole.TEXT, DocumentKind.TEXT, "results/job/notes.md.summary.md"),
        ("incoming/job/NOTES.MD", "NOTES.MD", ObjectRole.TEXT, DocumentKind.TEXT, "results/job/NOTES.MD.summary.md"),
        ("incoming/job/Notes.Txt", "Notes.Txt", ObjectRole.TEXT, DocumentKind.TEXT, "results/job/Notes.Txt.summary.md"),
        (
            "incoming/job/reqs.jsonl",
            "reqs.jsonl",
            ObjectRole.REQUESTS,
            DocumentKind.REQUESTS,
            "results/job/reqs.jsonl.results.jsonl",
        ),
        (
            "incoming/job/REQS.JSONL",
            "REQS.JSONL",
            ObjectRole.REQUESTS,
            DocumentKind.REQUESTS,
            "results/job/REQS.JSONL.results.jsonl",
        ),
    ],
)
def test_a_document_key_gives_its_job_name_role_and_result_keys(
    key: str, name: str, role: ObjectRole, kind: DocumentKind, result_key: str
) -> None:
    # Given a document uploaded straight into a job folder
    # When its key is parsed
    path = parse_object_key(key)

    # Then the job, the name inside the job, the role and the kind are known, and so are its output keys
    assert path == ObjectPath(key=key, job="job", name=name, role=role)
    assert path.kind is kind
    assert path.result_key == result_key
    assert path.error_key == f"results/job/{name}.error.json"


def test_a_nested_text_keeps_its_whole_path_as_its_name() -> None:
    # Given a text several folders deep inside its job
    # When its key is parsed
    path = parse_object_key("incoming/job/a/b/c.txt")

    # Then the name is the path below the job, mirrored under results/<job>/
    assert path.job == "job"
    assert path.name == "a/b/c.txt"
    assert path.role is ObjectRole.TEXT
    assert path.result_key == "results/job/a/b/c.txt.summary.md"
    assert path.error_key == "results/job/a/b/c.txt.error.json"


def test_a_nested_requests_file_gets_a_results_jsonl() -> None:
    # Given a .jsonl file in a sub-folder of its job
    # When its key is parsed
    path = parse_object_key("incoming/job-7/batch/day1/reqs.jsonl")

    # Then its results go to <name>.results.jsonl, its error to <name>.error.json
    assert path.job == "job-7"
    assert path.name == "batch/day1/reqs.jsonl"
    assert path.role is ObjectRole.REQUESTS
    assert path.kind is DocumentKind.REQUESTS
    assert path.result_key == "results/job-7/batch/day1/reqs.jsonl.results.jsonl"
    assert path.error_key == "results/job-7/batch/day1/reqs.jsonl.error.json"


def test_the_job_config_is_recognised_and_is_not_a_document() -> None:
    # Given the job's _job.json
    # When its key is parsed
    path = parse_object_key("incoming/job/_job.json")

    # Then it is the job's config, which has no document kind
    assert path == ObjectPath(key="incoming/job/_job.json", job="job", name="_job.json", role=ObjectRole.JOB_CONFIG)
    with pytest.raises(ValueError, match="is not a document"):
        _ = path.kind


@pytest.mark.parametrize(
    ("key", "name"),
    [("incoming/job/", ""), ("incoming/job/sub/", "sub/"), ("incoming/job/a/b/", "a/b/")],
)
def test_a_folder_marker_is_a_folder(key: str, name: str) -> None:
    # Given a zero-byte "folder/" marker some upload tools create
    # When its key is parsed
    path = parse_object_key(key)

    # Then it is a folder of the job, not a document
    assert path == ObjectPath(key=key, job="job", name=name, role=ObjectRole.FOLDER)
    with pytest.raises(ValueError, match="is not a document"):
        _ = path.kind


def test_a_file_directly_under_incoming_is_rejected_with_an_error_key() -> None:
    # Given a document dropped straight into incoming/, outside any job folder
    # When its key is parsed
    with pytest.raises(InputRejectedError) as caught:
        parse_object_key("incoming/report.txt")

    # Then it is rejected, telling the user to use a job folder, with an error file under results/
    assert "incoming/<job>/<file>" in caught.value.reason
    assert "incoming/report.txt" in caught.value.reason
    assert caught.value.error_key == "results/report.txt.error.json"


@pytest.mark.parametrize("job", ["my job", ".hidden", "a" * 65, "résumé", "日本", "-dash", "_under"])
def test_an_invalid_job_name_is_rejected_naming_the_rule(job: str) -> None:
    # Given a document in a folder whose name cannot be a job name
    key = f"incoming/{job}/doc.txt"

    # When its key is parsed
    with pytest.raises(InputRejectedError) as caught:
        parse_object_key(key)

    # Then it is rejected, quoting the folder and the naming rule; its error file is under results/<job>/
    reason = caught.value.reason
    assert f"job folder {job!r} is not a valid job name" in reason
    assert "1-64 letters, digits, '.', '_' or '-'" in reason
    assert "starting with a letter or digit" in reason
    assert caught.value.error_key == f"results/{job}/doc.txt.error.json"


@pytest.mark.parametrize("job", ["a" * 64, "J", "0", "Job_1.v2-x", "2026-11-29"])
def test_a_valid_job_name_is_accepted(job: str) -> None:
    # Given a job name at the rule's edges (64 characters, one character, digits first, . _ -)
    # When a document's key in it is parsed
    path = parse_object_key(f"incoming/{job}/doc.txt")

    # Then the job is that folder
    assert path.job == job
    assert path.role is ObjectRole.TEXT


@pytest.mark.parametrize(
    ("key", "name", "suffix"),
    [
        ("incoming/job/report.pdf", "report.pdf", "'.pdf'"),
        ("incoming/job/README", "README", "'(none)'"),
        ("incoming/job/data.json", "data.json", "'.json'"),
        ("incoming/job/sub/_job.json", "sub/_job.json", "'.json'"),
        ("incoming/job/notes.txt.gz", "notes.txt.gz", "'.gz'"),
    ],
)
def test_an_unsupported_file_type_is_rejected(key: str, name: str, suffix: str) -> None:
    # Given a file that is neither a text, a requests file, nor the job's own _job.json
    # When its key is parsed
    path = parse_object_key(key)

    # Then it belongs to its job as an unsupported file, with an error file beside its results
    assert path.role is ObjectRole.UNSUPPORTED
    assert path.kind is DocumentKind.OTHER
    assert path.error_key == f"results/job/{name}.error.json"
    # and its reason names the file, its suffix and what is supported
    reason = unsupported_reason(path.name)
    assert reason.startswith(f"{name}: unsupported file type {suffix}")
    assert ".txt or .md" in reason
    assert ".jsonl" in reason


@pytest.mark.parametrize("key", ["results/job/a.txt", "work/job/a.txt", "Incoming/job/a.txt", "incoming", ""])
def test_a_key_outside_incoming_is_a_programming_error(key: str) -> None:
    # Given a key the ingest trigger should never deliver
    # When / Then parsing it is a ValueError, not a rejection with an error file
    with pytest.raises(ValueError, match="is not under incoming/"):
        parse_object_key(key)


# ---------------------------------------------------------------------------------------------------------------
# parse_job_config
# ---------------------------------------------------------------------------------------------------------------


def test_no_job_config_means_every_default() -> None:
    # Given a job without _job.json
    # When its config is read
    job = parse_job_config(None, TENANT, AT)

    # Then every field has its default, the tenant being the deployment's default tenant
    assert job == JobConfig(DEFAULT_INSTRUCTION, DEFAULT_MODEL, DEFAULT_MAX_TOKENS, TENANT, DEFAULT_FEATURE)
    assert job.model == "claude-haiku-5-5"


def test_an_empty_object_means_every_default() -> None:
    # Given a _job.json that sets nothing
    # When it is read
    job = parse_job_config(b"{}", TENANT, AT)

    # Then it is the same as no config at all
    assert job == parse_job_config(None, TENANT, AT)


def test_every_field_can_be_set() -> None:
    # Given a _job.json setting all five fields
    raw = config(
        instruction="3줄로 요약하세요.",
        model="claude-opus-5-5",
        max_tokens=4096,
        tenant="legal-team",
        feature="contract-summary",
    )

    # When it is read
    job = parse_job_config(raw, TENANT, AT)

    # Then each field holds its value
    assert job == JobConfig("3줄로 요약하세요.", "claude-opus-5-5", 4096, "legal-team", "contract-summary")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"instruction": "List the dates."},
            JobConfig("List the dates.", DEFAULT_MODEL, 1024, TENANT, DEFAULT_FEATURE),
        ),
        (
            {"model": "claude-sonnet-5-5"},
            JobConfig(DEFAULT_INSTRUCTION, "claude-sonnet-5-5", 1024, TENANT, DEFAULT_FEATURE),
        ),
        ({"max_tokens": 1}, JobConfig(DEFAULT_INSTRUCTION, DEFAULT_MODEL, 1, TENANT, DEFAULT_FEATURE)),
        ({"max_tokens": 64_000}, JobConfig(DEFAULT_INSTRUCTION, DEFAULT_MODEL, 64_000, TENANT, DEFAULT_FEATURE)),
        ({"tenant": "acme:eu/1"}, JobConfig(DEFAULT_INSTRUCTION, DEFAULT_MODEL, 1024, "acme:eu/1", DEFAULT_FEATURE)),
        ({"feature": "weekly.digest"}, JobConfig(DEFAULT_INSTRUCTION, DEFAULT_MODEL, 1024, TENANT, "weekly.digest")),
    ],
)
def test_each_field_set_alone_leaves_the_others_at_their_defaults(fields: dict[str, Any], expected: JobConfig) -> None:
    # Given a _job.json setting one field
    # When it is read
    job = parse_job_config(config(**fields), TENANT, AT)

    # Then that field is set and the rest are defaults
    assert job == expected


@pytest.mark.parametrize("model", CURRENT_MODELS)
def test_every_current_model_is_accepted(model: str) -> None:
    # Given a _job.json choosing a current model
    # When it is read (with the price book passed explicitly)
    job = parse_job_config(config(model=model), TENANT, AT, default_price_book())

    # Then the model is kept
    assert job.model == model


def test_a_utf8_bom_is_accepted() -> None:
    # Given a _job.json saved by an editor that writes a UTF-8 BOM
    raw = BOM + config(instruction="한국어로 요약", max_tokens=300)

    # When it is read
    job = parse_job_config(raw, TENANT, AT)

    # Then the BOM is ignored
    assert job.instruction == "한국어로 요약"
    assert job.max_tokens == 300


def test_an_instruction_at_the_character_limit_is_accepted_even_in_multibyte_text() -> None:
    # Given an instruction of exactly MAX_INSTRUCTION_CHARS Korean characters (3 bytes each)
    instruction = "요" * MAX_INSTRUCTION_CHARS

    # When it is read
    job = parse_job_config(config(instruction=instruction), TENANT, AT)

    # Then the limit counts characters, not bytes
    assert job.instruction == instruction


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{not json", "_job.json is not valid UTF-8 JSON"),
        (b"", "_job.json is not valid UTF-8 JSON"),
        (b'{"model": "claude-haiku-5-5",}', "_job.json is not valid UTF-8 JSON"),
        (b'{"instruction": "\xff"}', "_job.json is not valid UTF-8 JSON"),
        (b"[]", "_job.json must be a JSON object"),
        (b'"claude-opus-5-5"', "_job.json must be a JSON object"),
        (b"null", "_job.json must be a JSON object"),
        (config(temperature=0.2), "_job.json: unknown field(s) temperature; allowed: instruction, model"),
        (config(Model="x", zeta=1), "_job.json: unknown field(s) Model, zeta"),
        (config(instruction=""), "_job.json: instruction must be non-empty text of at most 20,000 characters"),
        (config(instruction=" \n\t "), "_job.json: instruction must be non-empty text"),
        (config(instruction=None), "_job.json: instruction must be non-empty text"),
        (config(instruction=["a"]), "_job.json: instruction must be non-empty text"),
        (config(instruction="x" * (MAX_INSTRUCTION_CHARS + 1)), "instruction must be non-empty text of at most 20,000"),
        (config(model=5), "_job.json: model must be a model id string"),
        (config(model=None), "_job.json: model must be a model id string"),
        (config(max_tokens=0), "_job.json: max_tokens must be an integer from 1 to 64,000"),
        (config(max_tokens=-5), "_job.json: max_tokens must be an integer from 1 to 64,000"),
        (config(max_tokens=True), "_job.json: max_tokens must be an integer from 1 to 64,000"),
        (config(max_tokens="5"), "_job.json: max_tokens must be an integer from 1 to 64,000"),
        (config(max_tokens=5.0), "_job.json: max_tokens must be an integer from 1 to 64,000"),
        (config(max_tokens=None), "_job.json: max_tokens must be an integer from 1 to 64,000"),
        (config(max_tokens=MAX_OUTPUT_TOKENS + 1), "_job.json: max_tokens must be an integer from 1 to 64,000"),
        (config(tenant="has space"), "_job.json: tenant 'has space' is invalid"),
        (config(tenant=""), "_job.json: tenant '' is invalid"),
        (config(tenant="-lead"), "_job.json: tenant '-lead' is invalid"),
        (config(tenant="t" * 65), "_job.json: tenant 'tttt"),
        (config(tenant="émile"), "_job.json: tenant 'émile' is invalid"),
        (config(tenant=["a"]), "_job.json: tenant must be a string"),
        (config(feature="a b"), "_job.json: feature 'a b' is invalid"),
        (config(feature={"x": 1}), "_job.json: feature must be a string"),
    ],
)
def test_an_invalid_job_config_is_rejected_naming_the_field(raw: bytes, fragment: str) -> None:
    # Given a _job.json with one thing wrong
    # When it is read
    error = rejected_config(raw)

    # Then it is rejected with a message naming what is wrong (no error key: the caller knows the document)
    assert fragment in error.reason
    assert error.error_key is None


@pytest.mark.parametrize("fields", [{"tenant": 5}, {"tenant": None}, {"tenant": True}, {"feature": 123}])
def test_a_non_string_tenant_or_feature_is_rejected(fields: dict[str, Any]) -> None:
    # Given a _job.json whose tenant or feature is a JSON number, boolean or null, not a string
    # When it is read
    # Then it is rejected naming the field (a ledger tag is a string; JobConfig.tenant/feature are str)
    field = next(iter(fields))
    with pytest.raises(InputRejectedError, match=f"_job.json: {field} "):
        parse_job_config(config(**fields), TENANT, AT)


def test_an_unknown_model_is_rejected_naming_the_model() -> None:
    # Given a _job.json choosing a model the price book does not know
    # When it is read
    error = rejected_config(config(model="claude-imaginary-9"))

    # Then the message says there is no price for that model
    assert error.reason == (
        "_job.json: costgate has no price for model 'claude-imaginary-9'; add it to the price data before use"
    )


def test_a_model_without_a_price_at_that_time_is_rejected() -> None:
    # Given the default model, and a registration time before its first price
    at = datetime(2020, 1, 1, tzinfo=UTC)

    # When a config is read at that time
    error = rejected_config(b"{}", at)

    # Then it is refused now rather than when its batch comes back
    assert error.reason.startswith("_job.json: no price for model 'claude-haiku-5-5' on 2020-01-01")


def test_an_oversize_job_config_is_rejected_before_parsing() -> None:
    # Given a _job.json one byte over the limit (valid JSON otherwise)
    raw = config(instruction="x")
    raw = raw[:-1] + b" " * (MAX_JOB_CONFIG_BYTES + 1 - len(raw)) + b"}"
    assert len(raw) == MAX_JOB_CONFIG_BYTES + 1

    # When it is read
    error = rejected_config(raw)

    # Then it is rejected for its size
    assert error.reason == "_job.json is larger than 64,000 bytes"


def test_a_job_config_at_the_size_limit_is_accepted() -> None:
    # Given a _job.json of exactly MAX_JOB_CONFIG_BYTES (padded with whitespace)
    raw = config(instruction="x")
    raw = raw[:-1] + b" " * (MAX_JOB_CONFIG_BYTES - len(raw)) + b"}"
    assert len(raw) == MAX_JOB_CONFIG_BYTES

    # When it is read
    # Then it is accepted
    assert parse_job_config(raw, TENANT, AT).instruction == "x"


# ---------------------------------------------------------------------------------------------------------------
# decode_text
# ---------------------------------------------------------------------------------------------------------------


def test_utf8_text_is_decoded() -> None:
    # Given mixed Korean, English and emoji text
    text = "회의록\n\nThe meeting started at 10:00. 결정: 예산 승인 😀\n"

    # When decoded
    # Then it is the same text
    assert decode_text(text.encode("utf-8"), "notes.txt") == text


def test_a_leading_bom_is_dropped() -> None:
    # Given text saved with a UTF-8 BOM
    # When decoded
    # Then the BOM is not part of the text
    assert decode_text(BOM + "안녕 hello".encode(), "notes.txt") == "안녕 hello"


@pytest.mark.parametrize(
    ("raw", "offset"),
    [(b"abc\xffdef", 3), (b"\xff", 0), ("가나".encode() + b"\xe0\x80", 6), (b"ok \xc3", 3)],
)
def test_invalid_utf8_is_rejected_with_the_offset(raw: bytes, offset: int) -> None:
    # Given bytes that are not UTF-8 (a stray byte, a truncated sequence)
    # When decoded
    # Then the rejection names the file and the offset of the first bad byte
    with pytest.raises(InputRejectedError) as caught:
        decode_text(raw, "notes.txt")
    assert caught.value.reason == f"notes.txt is not UTF-8 text (invalid byte at offset {offset})"


def test_the_invalid_byte_offset_counts_a_leading_bom() -> None:
    # Given a file starting with a BOM whose 6th byte (offset 5) is invalid
    raw = BOM + b"ab\xffcd"

    # When decoded
    # Then the offset is the bad byte's offset in the file, as a hex editor shows it
    with pytest.raises(InputRejectedError) as caught:
        decode_text(raw, "notes.txt")
    assert caught.value.reason == "notes.txt is not UTF-8 text (invalid byte at offset 5)"


@pytest.mark.parametrize("raw", [b"abc\x00def", b"\x00", b"\x00\x00\x00\x00", BOM + b"PK\x03\x04\x00\x00"])
def test_a_nul_character_means_binary(raw: bytes) -> None:
    # Given bytes that decode but contain NUL
    # When decoded
    # Then they are rejected as a binary file (even when nothing else is there)
    with pytest.raises(InputRejectedError, match=r"^notes\.txt contains NUL characters: it looks like a binary file"):
        decode_text(raw, "notes.txt")


@pytest.mark.parametrize("raw", [b"", BOM, b" ", b" \n\t\r\n", "\u3000\u00a0".encode(), BOM + b"\n\n"])
def test_an_empty_or_blank_text_is_rejected(raw: bytes) -> None:
    # Given an empty file or one holding only whitespace
    # When decoded
    # Then it is rejected as empty
    with pytest.raises(InputRejectedError) as caught:
        decode_text(raw, "a/b/notes.md")
    assert caught.value.reason == "a/b/notes.md is empty"


def test_a_text_at_the_size_limit_is_accepted() -> None:
    # Given exactly MAX_TEXT_BYTES of text
    raw = b"a" * MAX_TEXT_BYTES

    # When decoded
    # Then it is accepted
    assert len(decode_text(raw, "big.txt")) == MAX_TEXT_BYTES


def test_an_oversize_text_is_rejected() -> None:
    # Given one byte more than MAX_TEXT_BYTES
    raw = b"a" * (MAX_TEXT_BYTES + 1)

    # When decoded
    # Then it is rejected with its size and the limit
    with pytest.raises(InputRejectedError) as caught:
        decode_text(raw, "big.txt")
    assert caught.value.reason == (
        f"big.txt is {MAX_TEXT_BYTES + 1:,} bytes; a text document may be at most {MAX_TEXT_BYTES:,} bytes"
    )


# ---------------------------------------------------------------------------------------------------------------
# split_text / text_parts
# ---------------------------------------------------------------------------------------------------------------


def assert_exact_cover(text: str, parts: list[tuple[int, int]], max_bytes: int) -> None:
    assert parts, "at least one part"
    assert parts[0][0] == 0
    assert parts[-1][1] == len(text)
    for (_, end), (start, _) in pairwise(parts):
        assert end == start, "parts are contiguous"
    for start, end in parts:
        assert start < end or text == ""
        assert utf8_len(text[start:end]) <= max_bytes
    assert "".join(text[start:end] for start, end in parts) == text


def separator_ends(text: str) -> set[int]:
    return {i + len(sep) for sep in SEPARATORS for i in range(len(text)) if text.startswith(sep, i)}


_WORDS = st.sampled_from(
    [
        "회의",
        "예산을",
        "승인했다",
        "한국어",
        "요약",
        "the",
        "meeting",
        "budget",
        "approved",
        "Q3",
        "2026-11-29",
        "😀",
        "👨‍👩‍👧",
        "🇰🇷",
        "é",
        "naïve",
        "これは文です",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "가나다라마바사아자차카타파하가나다라마바사아자차카타파하",
    ]
)
_GLUE = st.sampled_from(["\n\n", "\n", ". ", "。", "? ", "! ", " ", " ", " ", "", ", ", "\t", "\r\n"])
_TEXTS = st.one_of(
    st.lists(st.tuples(_WORDS, _GLUE), max_size=120).map(lambda pairs: "".join(w + g for w, g in pairs)),
    st.text(alphabet=st.sampled_from("ab 가😀\n.。!?"), max_size=600),
    st.text(max_size=300),
)


@settings(max_examples=200, deadline=None)
@given(text=_TEXTS, max_bytes=st.integers(min_value=50, max_value=400))
def test_split_text_covers_the_text_exactly_within_the_limit(text: str, max_bytes: int) -> None:
    # Given any mixed Korean/English/emoji text with paragraphs, lines and sentences, and a small limit
    # When it is split
    parts = split_text(text, max_bytes)

    # Then the ranges start at 0, end at len(text), are contiguous and non-empty, and each part's text
    # encodes within the limit (so no code point is ever cut in half)
    assert_exact_cover(text, parts, max_bytes)

    # And packing is greedy: two neighbouring parts together would not have fitted
    for (a_start, a_end), (b_start, b_end) in pairwise(parts):
        assert utf8_len(text[a_start:a_end]) + utf8_len(text[b_start:b_end]) > max_bytes

    # And a cut not at a paragraph/line/sentence/word boundary is only inside a boundary-free run
    # longer than the limit
    ends = separator_ends(text)
    for _, cut in parts[:-1]:
        if cut in ends:
            continue
        run_start = max((e for e in ends if e < cut), default=0)
        run_end = min((e for e in ends if e > cut), default=len(text))
        assert utf8_len(text[run_start:run_end]) > max_bytes


@settings(max_examples=100, deadline=None)
@given(text=_TEXTS, max_bytes=st.integers(min_value=50, max_value=400))
def test_a_text_within_the_limit_is_one_part(text: str, max_bytes: int) -> None:
    # Given a text, and a limit at least its size
    limit = max(max_bytes, utf8_len(text))

    # When it is split
    # Then it is one part, the whole text
    assert split_text(text, limit) == [(0, len(text))]


def test_an_empty_text_is_one_empty_range() -> None:
    assert split_text("", 100) == [(0, 0)]


def test_a_text_of_exactly_the_limit_is_not_split() -> None:
    # Given a text of exactly max_bytes UTF-8 bytes (Korean, 3 bytes each)
    text = "가" * 33 + "a"

    # When split with max_bytes = its size
    # Then it is one part
    assert split_text(text, 100) == [(0, 34)]


def test_paragraph_boundaries_are_preferred_when_they_fit() -> None:
    # Given three paragraphs of 40 bytes each (separator included), full of lines, sentences and words
    paragraph = "One. Two\nthree four five six seven!"
    paragraph = paragraph + "x" * (38 - len(paragraph))  # 38 bytes, + "\n\n" = 40
    text = paragraph + "\n\n" + paragraph + "\n\n" + paragraph + "\n\n"
    assert [utf8_len(p) for p in (text[:40], text[40:80], text[80:])] == [40, 40, 40]

    # When split with a 100-byte limit
    parts = split_text(text, 100)

    # Then the cut is after the second paragraph's "\n\n", not at a line, sentence or word inside one
    assert parts == [(0, 80), (80, 120)]
    assert text[: parts[0][1]].endswith("\n\n")


def test_line_boundaries_are_used_inside_an_oversize_paragraph() -> None:
    # Given one paragraph of 5 lines of 30 bytes each (words inside)
    row = "alpha beta gamma delta epsil\n"
    row = row[:-1] + "x" * (30 - len(row)) + "\n"
    text = row * 5

    # When split with a 100-byte limit
    parts = split_text(text, 100)

    # Then the cuts are after whole lines: 3 lines (90 bytes) then 2
    assert parts == [(0, 90), (90, 150)]


def test_sentence_boundaries_are_used_inside_an_oversize_line() -> None:
    # Given one line of sentences "Sentence number N is here. " (27-28 bytes each)
    text = "".join(f"Sentence number {i} is here. " for i in range(6))

    # When split with a 100-byte limit
    parts = split_text(text, 100)

    # Then every cut is right after ". "
    assert_exact_cover(text, parts, 100)
    assert len(parts) > 1
    for _, end in parts[:-1]:
        assert text[:end].endswith(". ")


def test_cjk_full_stops_are_sentence_boundaries() -> None:
    # Given Japanese-style sentences ending with "。" and no spaces at all
    sentence = "これは長い文です。"  # 9 characters, 27 bytes
    text = sentence * 8

    # When split with a 100-byte limit
    parts = split_text(text, 100)

    # Then each part is whole sentences, packed three at a time (3 × 27 = 81 bytes)
    assert parts == [(0, 27), (27, 54), (54, 72)]
    assert all(text[:end].endswith("。") for _, end in parts[:-1])


def test_word_boundaries_are_used_for_a_long_sentence() -> None:
    # Given a long run of Korean words separated only by spaces
    text = "예산을 승인했다 " * 20  # 22 bytes per repetition

    # When split with a 100-byte limit
    parts = split_text(text, 100)

    # Then every cut is after a space, never inside a word
    assert_exact_cover(text, parts, 100)
    for _, end in parts[:-1]:
        assert text[end - 1] == " "


def test_a_run_without_any_boundary_is_cut_hard() -> None:
    # Given 250 bytes of one unbroken ASCII word
    text = "a" * 250

    # When split with a 100-byte limit
    # Then it is cut exactly at the limit
    assert split_text(text, 100) == [(0, 100), (100, 200), (200, 250)]


@pytest.mark.parametrize(
    ("char", "max_bytes", "chars_per_part"),
    [("가", 100, 33), ("😀", 50, 12), ("é", 51, 25), ("😀", 4, 1)],
)
def test_a_hard_cut_never_splits_a_multibyte_character(char: str, max_bytes: int, chars_per_part: int) -> None:
    # Given an unbroken run of multi-byte characters
    text = char * (chars_per_part * 3 + 1)

    # When split
    parts = split_text(text, max_bytes)

    # Then each part holds as many whole characters as fit, and every part's text encodes within the limit
    assert [end - start for start, end in parts] == [chars_per_part] * 3 + [1]
    assert_exact_cover(text, parts, max_bytes)


def test_a_hard_cut_run_between_sentences_keeps_the_sentences_packed() -> None:
    # Given a short sentence, an unbroken 150-byte run, and another short sentence
    text = "Hi there. " + "z" * 150 + " Bye now."

    # When split with a 100-byte limit
    parts = split_text(text, 100)

    # Then the first sentence stays whole, the run is cut at 100 bytes, and its tail packs with the last sentence
    assert parts == [(0, 10), (10, 110), (110, 169)]
    assert_exact_cover(text, parts, 100)


def test_text_parts_splits_a_long_text_at_the_real_part_size() -> None:
    # Given two paragraphs of 100,000 bytes each
    text = "a" * 99_998 + "\n\n" + "b" * 100_000

    # When split into parts for summarising
    parts = text_parts(text, "long.txt")

    # Then each paragraph is one part of at most MAX_PART_BYTES
    assert parts == [(0, 100_000), (100_000, 200_000)]


def test_text_parts_accepts_exactly_max_parts() -> None:
    # Given MAX_PARTS paragraphs of exactly MAX_PART_BYTES each (separator included)
    text = ("c" * (MAX_PART_BYTES - 2) + "\n\n") * MAX_PARTS

    # When split into parts
    # Then there are MAX_PARTS of them
    assert len(text_parts(text, "long.txt")) == MAX_PARTS


def test_text_parts_rejects_more_than_max_parts() -> None:
    # Given MAX_PARTS + 1 paragraphs of exactly MAX_PART_BYTES each
    text = ("c" * (MAX_PART_BYTES - 2) + "\n\n") * (MAX_PARTS + 1)

    # When split into parts
    # Then it is rejected, naming the file, the count and the limits
    with pytest.raises(InputRejectedError) as caught:
        text_parts(text, "long.txt")
    assert caught.value.reason == "long.txt needs 33 parts of at most 150,000 bytes; at most 32 are combined"


def test_text_parts_reads_max_parts_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a limit of 2 parts
    monkeypatch.setattr(batch_input, "MAX_PARTS", 2)
    text = ("d" * (MAX_PART_BYTES - 2) + "\n\n") * 3

    # When a 3-part text is split
    # Then it is rejected
    with pytest.raises(InputRejectedError, match=r"^x\.md needs 3 parts .* at most 2 are combined$"):
        text_parts(text, "x.md")


def test_every_text_decode_text_accepts_fits_in_max_parts() -> None:
    # Given a text of nearly MAX_TEXT_BYTES made of paragraphs just over half a part each:
    # no two neighbouring paragraphs fit in one part together (greedy packing's worst case)
    paragraph = "a" * (MAX_PART_BYTES // 2 - 1)
    text = "\n\n".join([paragraph] * (MAX_TEXT_BYTES // (len(paragraph) + 2)))
    raw = text.encode("utf-8")
    assert len(raw) <= MAX_TEXT_BYTES
    assert decode_text(raw, "long.txt") == text

    # When split into parts
    # Then, as batch_input's MAX_TEXT_BYTES comment promises ("a text that fits always splits"),
    # it is not rejected
    assert len(text_parts(text, "long.txt")) <= MAX_PARTS


# ---------------------------------------------------------------------------------------------------------------
# validate_request_lines / request_line
# ---------------------------------------------------------------------------------------------------------------


def test_valid_lines_give_their_zero_based_indexes() -> None:
    # Given three valid requests, one per current model
    lines = [line(f"req-{i}", model=model) for i, model in enumerate(CURRENT_MODELS)]

    # When validated
    # Then every line holds a request
    assert validate_request_lines(lines, "reqs.jsonl", AT) == [0, 1, 2]


def test_blank_lines_are_skipped_and_indexes_count_physical_lines() -> None:
    # Given requests with blank and whitespace-only lines around and between them
    lines = [b"", line("a"), b"   ", b"\r", line("b"), b"\t\n", b"", line("c"), b""]

    # When validated
    # Then the indexes are those of the physical lines holding requests
    assert validate_request_lines(lines, "reqs.jsonl", AT) == [1, 4, 7]


def test_lines_may_come_from_an_iterator_with_trailing_newlines() -> None:
    # Given lines streamed one by one, each still ending with its newline (CRLF for one)
    def stream() -> Iterator[bytes]:
        yield line("a") + b"\n"
        yield line("b") + b"\r\n"

    # When validated
    # Then both are requests
    assert validate_request_lines(stream(), "reqs.jsonl", AT, default_price_book()) == [0, 1]


def test_a_bom_on_the_first_line_is_accepted() -> None:
    # Given a file saved with a UTF-8 BOM
    lines = [BOM + line("a"), line("b")]

    # When validated
    # Then the BOM does not break the first line
    assert validate_request_lines(lines, "reqs.jsonl", AT) == [0, 1]
    assert request_line(lines[0])[0] == "a"


def test_optional_params_are_passed_through() -> None:
    # Given requests with a system prompt, stream false, temperature, metadata and content blocks
    lines = [
        line("a", system="Be brief.", stream=False, temperature=0.2),
        line("b", messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], metadata={"user_id": "u"}),
    ]

    # When validated
    # Then they are accepted
    assert validate_request_lines(lines, "reqs.jsonl", AT) == [0, 1]


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"custom_id": "x", "params": ', "not valid JSON"),
        (b'{"custom_id": "\xff"}', "not valid JSON"),
        (b"[1, 2]", 'each line must be a JSON object {"custom_id", "params"}'),
        (b'"req"', 'each line must be a JSON object {"custom_id", "params"}'),
        (b"42", 'each line must be a JSON object {"custom_id", "params"}'),
        (
            json.dumps({"custom_id": "x", "params": params(), "method": "POST"}).encode(),
            'unknown field(s) method; a line is {"custom_id", "params"}',
        ),
        (
            json.dumps({"custom_id": "x", "params": params(), "url": "/v1/messages", "body": {}}).encode(),
            "unknown field(s) body, url",
        ),
        (line(""), "custom_id must match ^[a-zA-Z0-9_-]{1,64}$"),
        (line("has space"), "custom_id must match ^[a-zA-Z0-9_-]{1,64}$"),
        (line("a.b"), "custom_id must match ^[a-zA-Z0-9_-]{1,64}$"),
        (line("x" * 65), "custom_id must match ^[a-zA-Z0-9_-]{1,64}$"),
        (line("요청1"), "custom_id must match ^[a-zA-Z0-9_-]{1,64}$"),
        (line("abc\n"), "custom_id must match ^[a-zA-Z0-9_-]{1,64}$"),
        (line(7), "custom_id must match ^[a-zA-Z0-9_-]{1,64}$"),
        (line(None), "custom_id must match ^[a-zA-Z0-9_-]{1,64}$"),
        (json.dumps({"params": params()}).encode(), "custom_id must match ^[a-zA-Z0-9_-]{1,64}$"),
        (json.dumps({"custom_id": "x"}).encode(), "params must be a Messages request object"),
        (json.dumps({"custom_id": "x", "params": None}).encode(), "params must be a Messages request object"),
        (json.dumps({"custom_id": "x", "params": [params()]}).encode(), "params must be a Messages request object"),
        (line(model=None), "params.model is required"),
        (
            json.dumps({"custom_id": "x", "params": {"max_tokens": 5, "messages": [1]}}).encode(),
            "params.model is required",
        ),
        (line(model=5), "params.model is required"),
        (line(messages=None), "params.messages must be a non-empty list"),
        (line(messages=[]), "params.messages must be a non-empty list"),
        (line(messages="hi"), "params.messages must be a non-empty list"),
        (line(messages={"role": "user", "content": "hi"}), "params.messages must be a non-empty list"),
        (line(stream=True), "params.stream is not supported in a batch"),
        (
            line(model="claude-imaginary-9"),
            "costgate has no price for model 'claude-imaginary-9'; add it to the price data before use",
        ),
        (line(max_tokens=None), "max_tokens: Field required"),
        (line(max_tokens=0), "max_tokens: must be a positive integer"),
        (line(max_tokens=-1), "max_tokens: must be a positive integer"),
        (line(max_tokens="256"), "max_tokens: must be a positive integer"),
        (line(max_tokens=True), "max_tokens: must be a positive integer"),
        (line(max_tokens=2.5), "max_tokens: must be a positive integer"),
    ],
)
def test_a_bad_line_is_rejected_naming_its_one_based_line_number(bad: bytes, fragment: str) -> None:
    # Given a valid line, a blank line, then the bad line (physical line 3)
    lines = [line("ok-1"), b"", bad, line("ok-2")]

    # When validated
    reason = rejected_lines(lines, "sub/reqs.jsonl")

    # Then the rejection names the file, line 3 and what is wrong
    assert reason.startswith("sub/reqs.jsonl line 3: ")
    assert fragment in reason


def test_a_missing_max_tokens_key_is_rejected() -> None:
    # Given params without the max_tokens key at all
    body = params()
    del body["max_tokens"]
    bad = json.dumps({"custom_id": "x", "params": body}).encode()

    # When validated
    # Then line 1 is rejected for it
    assert rejected_lines([bad]) == "reqs.jsonl line 1: max_tokens: Field required"


def test_a_missing_messages_key_is_rejected() -> None:
    # Given params without the messages key
    body = params()
    del body["messages"]
    bad = json.dumps({"custom_id": "x", "params": body}).encode()

    # When validated
    # Then line 1 is rejected for it
    assert rejected_lines([bad]) == "reqs.jsonl line 1: params.messages must be a non-empty list"


def test_a_duplicate_custom_id_is_rejected_at_its_second_use() -> None:
    # Given the same custom_id on lines 1 and 4
    lines = [line("same"), line("other"), b"", line("same")]

    # When validated
    # Then the second use is rejected, naming the id
    assert rejected_lines(lines) == "reqs.jsonl line 4: custom_id 'same' is used twice in the file"


def test_the_first_bad_line_is_the_one_reported() -> None:
    # Given bad lines 2 and 3
    lines = [line("a"), b"{oops", line("b", stream=True)]

    # When validated
    # Then line 2 is reported
    assert rejected_lines(lines).startswith("reqs.jsonl line 2: not valid JSON")


def test_custom_ids_at_the_edges_of_the_pattern_are_accepted() -> None:
    # Given custom_ids of 1 and 64 characters using every allowed character class
    lines = [line("x"), line("A" * 64), line("aZ09_-")]

    # When validated
    # Then all are accepted
    assert validate_request_lines(lines, "reqs.jsonl", AT) == [0, 1, 2]


@pytest.mark.parametrize("lines", [[], [b""], [b"", b"  ", b"\r\n", b"\t"]])
def test_a_file_without_requests_is_rejected(lines: list[bytes]) -> None:
    # Given an empty file, or one holding only blank lines
    # When validated
    # Then it is rejected as empty
    assert rejected_lines(lines) == "reqs.jsonl is empty: it holds no requests"


def test_more_requests_than_one_batch_holds_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a batch limit of 3 requests
    monkeypatch.setattr(batch_input, "MAX_REQUEST_LINES", 3)

    # When 3 requests (with blank lines around them) are validated
    # Then they are accepted
    assert validate_request_lines([line("a"), b"", line("b"), line("c"), b""], "reqs.jsonl", AT) == [0, 2, 3]

    # And a 4th request is rejected, naming the limit
    lines = [line("a"), line("b"), line("c"), b"", line("d")]
    assert rejected_lines(lines) == "reqs.jsonl has more than 3 requests, the limit of one batch"


def test_a_file_larger_than_one_batch_holds_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given lines whose sizes (each with its newline) add up to exactly a small byte limit
    lines = [line("a"), line("b")]
    limit = sum(len(raw) + 1 for raw in lines)
    monkeypatch.setattr(batch_input, "MAX_REQUESTS_FILE_BYTES", limit)

    # When validated
    # Then they are accepted at the limit
    assert validate_request_lines(lines, "reqs.jsonl", AT) == [0, 1]

    # And one byte more (a blank line counts too) is rejected, naming the limit
    reason = rejected_lines([*lines, b""])
    assert reason == f"reqs.jsonl is larger than {limit:,} bytes, the limit of one batch"


def test_the_size_limit_is_checked_before_a_line_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a tiny byte limit and a first line that is not even JSON
    monkeypatch.setattr(batch_input, "MAX_REQUESTS_FILE_BYTES", 10)

    # When validated
    # Then the size is what is reported
    assert rejected_lines([b"x" * 20]) == "reqs.jsonl is larger than 10 bytes, the limit of one batch"


def test_request_line_round_trips_a_validated_line() -> None:
    # Given a validated line with non-ASCII content and extra params
    body = params(
        model="claude-sonnet-5-5",
        system="요약은 한국어로 😀",
        messages=[{"role": "user", "content": [{"type": "text", "text": "회의록: 예산 승인"}]}],
        temperature=0.3,
    )
    raw = json.dumps({"custom_id": "doc_1-part-2", "params": body}, ensure_ascii=False).encode("utf-8")
    assert validate_request_lines([raw], "reqs.jsonl", AT) == [0]

    # When read back
    custom_id, read = request_line(raw)

    # Then it is the same id and the same params
    assert custom_id == "doc_1-part-2"
    assert read == body

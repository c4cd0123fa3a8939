"""What an uploaded object means: its job, its kind, and whether it can be summarised at all.

Pure functions (no I/O): the ingest service reads the object and hands the bytes or lines here.

- `incoming/<job>/_job.json`: the job's settings (`instruction`, `model`, `max_tokens`, `tenant`,
  `feature`), read when each document of the job registers.
- `incoming/<job>/<path>.txt|.md`: UTF-8 text, summarised with the job's instruction. A text longer
  than MAX_PART_BYTES is split at paragraph, line, sentence or word boundaries into at most MAX_PARTS
  parts; each part is summarised, then a follow-up request combines the part summaries.
- `incoming/<job>/<path>.jsonl`: ready Messages requests, one `{"custom_id", "params"}` per line.

MAX_PART_BYTES bounds a request's document text in UTF-8 bytes: a byte-level tokenizer never makes
more tokens than bytes, so a part (150K bytes) plus the instruction stays inside every current model's
200K-token context whatever the language, without a tokenizer.
"""

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any

from costgate.accounting.budgets import estimate_worst_case
from costgate.accounting.ledger import validate_tag
from costgate.batch.model import DocumentKind, JobConfig
from costgate.errors import CostgateError, InputRejectedError
from costgate.pricing.prices import PriceBook

INCOMING = "incoming/"
RESULTS = "results/"
WORK = "work/"
JOB_CONFIG_NAME = "_job.json"
MANIFEST_NAME = "_manifest.json"
TEXT_SUFFIXES = frozenset({".txt", ".md"})
REQUESTS_SUFFIX = ".jsonl"

MAX_PART_BYTES = 150_000
MAX_PARTS = 32
# Greedy packing makes any two neighbouring parts together larger than MAX_PART_BYTES, so n parts hold
# more than (n − 1) / 2 × MAX_PART_BYTES: a text of at most half of MAX_PARTS × MAX_PART_BYTES always fits.
MAX_TEXT_BYTES = 2_400_000
MAX_JOB_CONFIG_BYTES = 64_000
MAX_INSTRUCTION_CHARS = 20_000
MAX_OUTPUT_TOKENS = 64_000
# The Message Batches API's own limits: one .jsonl file must fit in one batch.
MAX_REQUEST_LINES = 100_000
MAX_REQUESTS_FILE_BYTES = 256_000_000
CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

DEFAULT_MODEL = "claude-haiku-5-5"
DEFAULT_MAX_TOKENS = 1024
DEFAULT_FEATURE = "batch-summary"
DEFAULT_INSTRUCTION = (
    "Summarise the document the user sends, in the language it is written in "
    "(한국어 문서는 한국어로 요약하세요). Start with one sentence that says what it is, then list its key "
    "points, decisions, figures and dates as short bullet points. Do not add anything the document does not say."
)
PART_NOTE = "This is part {part} of {parts} of one document, split for length; summarise this part only."
COMBINE_NOTE = (
    "The document was too long for one request, so its {parts} consecutive parts were summarised separately. "
    "Below are those part summaries in order. Write the summary of the whole document from them."
)


class ObjectRole(StrEnum):
    JOB_CONFIG = "job-config"
    TEXT = "text"
    REQUESTS = "requests"
    UNSUPPORTED = "unsupported"  # in a job folder, but neither text nor requests: rejected with its reason
    FOLDER = "folder"  # a zero-byte "folder/" marker some tools create


@dataclass(frozen=True)
class ObjectPath:
    """An object key below `incoming/`, understood: `incoming/<job>/<name>`."""

    key: str
    job: str
    name: str
    role: ObjectRole

    @property
    def kind(self) -> DocumentKind:
        if self.role is ObjectRole.TEXT:
            return DocumentKind.TEXT
        if self.role is ObjectRole.REQUESTS:
            return DocumentKind.REQUESTS
        if self.role is ObjectRole.UNSUPPORTED:
            return DocumentKind.OTHER
        raise ValueError(f"{self.key} is not a document")

    @property
    def result_key(self) -> str:
        suffix = ".results.jsonl" if self.role is ObjectRole.REQUESTS else ".summary.md"
        return f"{RESULTS}{self.job}/{self.name}{suffix}"

    @property
    def error_key(self) -> str:
        return f"{RESULTS}{self.job}/{self.name}.error.json"


def parse_object_key(key: str) -> ObjectPath:
    """Where an uploaded key belongs; InputRejectedError (with the error file's key) if it belongs nowhere."""
    if not key.startswith(INCOMING):
        raise ValueError(f"{key!r} is not under {INCOMING}")
    job, _, name = key.removeprefix(INCOMING).partition("/")
    if not name:
        if key.endswith("/"):
            return ObjectPath(key=key, job=job.rstrip("/"), name="", role=ObjectRole.FOLDER)
        raise InputRejectedError(
            f"{key}: put documents in a job folder, incoming/<job>/<file>", f"{RESULTS}{job}.error.json"
        )
    if key.endswith("/"):
        return ObjectPath(key=key, job=job, name=name, role=ObjectRole.FOLDER)
    error_key = f"{RESULTS}{job}/{name}.error.json"
    if not JOB_NAME.fullmatch(job):
        raise InputRejectedError(
            f"job folder {job!r} is not a valid job name: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            error_key,
        )
    if name == JOB_CONFIG_NAME:
        return ObjectPath(key=key, job=job, name=name, role=ObjectRole.JOB_CONFIG)
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return ObjectPath(key=key, job=job, name=name, role=ObjectRole.TEXT)
    if suffix == REQUESTS_SUFFIX:
        return ObjectPath(key=key, job=job, name=name, role=ObjectRole.REQUESTS)
    return ObjectPath(key=key, job=job, name=name, role=ObjectRole.UNSUPPORTED)


def unsupported_reason(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return (
        f"{name}: unsupported file type {suffix or '(none)'!r}; use .txt or .md for documents to summarise, "
        ".jsonl for ready Messages requests"
    )


def parse_job_config(raw: bytes | None, default_tenant: str, at: datetime, book: PriceBook | None = None) -> JobConfig:
    """The job's settings from `_job.json` (None: the job has none), defaults for what it leaves out."""
    if raw is None:
        return JobConfig(DEFAULT_INSTRUCTION, DEFAULT_MODEL, DEFAULT_MAX_TOKENS, default_tenant, DEFAULT_FEATURE)
    if len(raw) > MAX_JOB_CONFIG_BYTES:
        raise InputRejectedError(f"{JOB_CONFIG_NAME} is larger than {MAX_JOB_CONFIG_BYTES:,} bytes")
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputRejectedError(f"{JOB_CONFIG_NAME} is not valid UTF-8 JSON: {error}") from None
    if not isinstance(data, dict):
        raise InputRejectedError(f"{JOB_CONFIG_NAME} must be a JSON object")
    unknown = sorted(set(data) - {"instruction", "model", "max_tokens", "tenant", "feature"})
    if unknown:
        raise InputRejectedError(
            f"{JOB_CONFIG_NAME}: unknown field(s) {', '.join(unknown)}; "
            "allowed: instruction, model, max_tokens, tenant, feature"
        )
    instruction = data.get("instruction", DEFAULT_INSTRUCTION)
    if not isinstance(instruction, str) or not instruction.strip() or len(instruction) > MAX_INSTRUCTION_CHARS:
        raise InputRejectedError(
            f"{JOB_CONFIG_NAME}: instruction must be non-empty text of at most {MAX_INSTRUCTION_CHARS:,} characters"
        )
    model = data.get("model", DEFAULT_MODEL)
    if not isinstance(model, str):
        raise InputRejectedError(f"{JOB_CONFIG_NAME}: model must be a model id string")
    max_tokens = data.get("max_tokens", DEFAULT_MAX_TOKENS)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_OUTPUT_TOKENS:
        raise InputRejectedError(f"{JOB_CONFIG_NAME}: max_tokens must be an integer from 1 to {MAX_OUTPUT_TOKENS:,}")
    tenant = data.get("tenant", default_tenant)
    feature = data.get("feature", DEFAULT_FEATURE)
    for label, value in (("tenant", tenant), ("feature", feature)):
        if not isinstance(value, str):
            raise InputRejectedError(f"{JOB_CONFIG_NAME}: {label} must be a string")
    try:
        validate_tag(tenant, "tenant")
        validate_tag(feature, "feature")
        # A model without a batch price is refused now, not when its batch comes back.
        estimate_worst_case(model, {"max_tokens": max_tokens}, at, book, batch=True)
    except CostgateError as error:
        raise InputRejectedError(f"{JOB_CONFIG_NAME}: {error.message}") from None
    return JobConfig(instruction, model, max_tokens, tenant, feature)


def decode_text(raw: bytes, name: str) -> str:
    """The document's text: UTF-8 (a BOM is dropped), not empty, not binary."""
    if len(raw) > MAX_TEXT_BYTES:
        raise InputRejectedError(
            f"{name} is {len(raw):,} bytes; a text document may be at most {MAX_TEXT_BYTES:,} bytes"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        offset = error.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)  # utf-8-sig counts after its BOM
        raise InputRejectedError(f"{name} is not UTF-8 text (invalid byte at offset {offset})") from None
    if "\x00" in text:
        raise InputRejectedError(f"{name} contains NUL characters: it looks like a binary file, not text")
    if not text.strip():
        raise InputRejectedError(f"{name} is empty")
    return text


_SEPARATORS = ("\n\n", "\n", ". ", "。", "? ", "! ", " ")


def split_text(text: str, max_bytes: int) -> list[tuple[int, int]]:
    """Character ranges [start, end) covering `text` in order, each at most `max_bytes` UTF-8 bytes.

    Cuts at the coarsest boundary that works (paragraph, line, sentence, word), and mid-word only for
    a run with no boundary at all. Adjacent pieces are packed greedily up to the limit.
    """
    pieces = _pieces(text, 0, len(text), max_bytes, 0)
    parts: list[tuple[int, int]] = []
    start = end = size = 0
    for piece_start, piece_end, piece_size in pieces:  # contiguous: each starts where the last ended
        if end > start and size + piece_size > max_bytes:
            parts.append((start, end))
            start, size = piece_start, 0
        end = piece_end
        size += piece_size
    parts.append((start, end))
    return parts


def _pieces(text: str, start: int, end: int, max_bytes: int, level: int) -> list[tuple[int, int, int]]:
    size = len(text[start:end].encode("utf-8"))
    if size <= max_bytes:
        return [(start, end, size)]
    if level == len(_SEPARATORS):
        return _hard_cut(text, start, end, max_bytes)
    separator = _SEPARATORS[level]
    found: list[tuple[int, int, int]] = []
    cursor = start
    while cursor < end:
        at = text.find(separator, cursor, end)
        stop = end if at < 0 else at + len(separator)
        found.extend(_pieces(text, cursor, stop, max_bytes, level + 1))
        cursor = stop
    return found


def _hard_cut(text: str, start: int, end: int, max_bytes: int) -> list[tuple[int, int, int]]:
    found: list[tuple[int, int, int]] = []
    cursor, size = start, 0
    for index in range(start, end):
        width = len(text[index].encode("utf-8"))
        if size + width > max_bytes:
            found.append((cursor, index, size))
            cursor, size = index, 0
        size += width
    found.append((cursor, end, size))
    return found


def text_parts(text: str, name: str) -> list[tuple[int, int]]:
    parts = split_text(text, MAX_PART_BYTES)
    if len(parts) > MAX_PARTS:
        raise InputRejectedError(
            f"{name} needs {len(parts)} parts of at most {MAX_PART_BYTES:,} bytes; at most {MAX_PARTS} are combined"
        )
    return parts


def validate_request_lines(lines: Iterable[bytes], name: str, at: datetime, book: PriceBook | None = None) -> list[int]:
    """The line numbers (0-based) holding requests: every non-blank line must be a valid batch request.

    Each is `{"custom_id": <unique, ^[a-zA-Z0-9_-]{1,64}$>, "params": <Messages request>}` with a priced
    model, a positive max_tokens, a non-empty messages list and no streaming. Raises InputRejectedError naming
    the first bad line (1-based, as an editor shows it).
    """
    seen: set[str] = set()
    request_lines: list[int] = []
    total = 0
    for index, raw in enumerate(lines):
        total += len(raw) + 1
        if total > MAX_REQUESTS_FILE_BYTES:
            raise InputRejectedError(f"{name} is larger than {MAX_REQUESTS_FILE_BYTES:,} bytes, the limit of one batch")
        if not raw.strip():
            continue
        if len(request_lines) == MAX_REQUEST_LINES:
            raise InputRejectedError(f"{name} has more than {MAX_REQUEST_LINES:,} requests, the limit of one batch")
        where = f"{name} line {index + 1}"
        custom_id = _validate_request(raw, where, at, book)
        if custom_id in seen:
            raise InputRejectedError(f"{where}: custom_id {custom_id!r} is used twice in the file")
        seen.add(custom_id)
        request_lines.append(index)
    if not request_lines:
        raise InputRejectedError(f"{name} is empty: it holds no requests")
    return request_lines


def _validate_request(raw: bytes, where: str, at: datetime, book: PriceBook | None) -> str:
    try:
        line = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputRejectedError(f"{where}: not valid JSON ({error})") from None
    if not isinstance(line, dict):
        raise InputRejectedError(f'{where}: each line must be a JSON object {{"custom_id", "params"}}')
    extra = sorted(set(line) - {"custom_id", "params"})
    if extra:
        raise InputRejectedError(f'{where}: unknown field(s) {", ".join(extra)}; a line is {{"custom_id", "params"}}')
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not CUSTOM_ID.fullmatch(custom_id):
        raise InputRejectedError(f"{where}: custom_id must match ^[a-zA-Z0-9_-]{{1,64}}$")
    params = line.get("params")
    if not isinstance(params, Mapping):
        raise InputRejectedError(f"{where}: params must be a Messages request object")
    model = params.get("model")
    if not isinstance(model, str):
        raise InputRejectedError(f"{where}: params.model is required")
    messages = params.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InputRejectedError(f"{where}: params.messages must be a non-empty list")
    if params.get("stream"):
        raise InputRejectedError(f"{where}: params.stream is not supported in a batch")
    try:
        estimate_worst_case(model, params, at, book, batch=True)
    except CostgateError as error:
        raise InputRejectedError(f"{where}: {error.message}") from None
    return custom_id


def request_line(raw: bytes) -> tuple[str, dict[str, Any]]:
    """(custom_id, params) of a line `validate_request_lines` accepted."""
    line = json.loads(raw)
    return line["custom_id"], line["params"]

"""Ingest (IngestFunction): one uploaded object becomes a document and its requests ("units").

Idempotent per S3 version: the same bucket/key/version is one document, and a re-delivered event
re-creates any unit a crash left out. Invalid input gets its error file at once. See
`costgate.batch.model` for what happens to a document next.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from costgate.batch.input import (
    DEFAULT_FEATURE,
    INCOMING,
    JOB_CONFIG_NAME,
    MAX_JOB_CONFIG_BYTES,
    MAX_TEXT_BYTES,
    ObjectPath,
    ObjectRole,
    decode_text,
    parse_job_config,
    parse_object_key,
    text_parts,
    unsupported_reason,
    validate_request_lines,
)
from costgate.batch.model import Document, DocumentKind, DocumentStatus, JobConfig, Unit, UnitKind, UnitState
from costgate.batch.outputs import write_error
from costgate.batch.ports import DocumentRegistry, ObjectStore
from costgate.clock import Clock
from costgate.errors import InputRejectedError, NotFoundError, RequestTooLargeError
from costgate.observability import MetricName, emit_count, logger


@dataclass(frozen=True)
class IngestServices:
    store: DocumentRegistry
    objects: ObjectStore
    clock: Clock
    default_tenant: str


class IngestOutcome(StrEnum):
    REGISTERED = "registered"  # a new pending document
    REJECTED = "rejected"  # invalid input: its error file is written
    DUPLICATE = "duplicate"  # already registered (the same bucket/key/version)
    JOB_CONFIG = "job-config"  # `_job.json`: checked (an error file if invalid), nothing queued
    IGNORED = "ignored"  # not under incoming/<job>/, or a folder marker


def document_id(bucket: str, key: str, version_id: str) -> str:
    return hashlib.sha256(f"{bucket}\0{key}\0{version_id}".encode()).hexdigest()[:24]


def register_object(
    services: IngestServices, *, bucket: str, key: str, version_id: str | None, size: int
) -> IngestOutcome:
    """Register one uploaded object, idempotently: the same bucket/key/version is one document.

    Invalid input gets its error file at once (and, inside a job, a FAILED document for the manifest).
    A re-delivered event for a registered, unfinished document re-creates any unit a crash left out.
    """
    try:
        path = parse_object_key(key)
    except ValueError:
        return IngestOutcome.IGNORED
    except InputRejectedError as rejected:
        if rejected.error_key is not None:
            write_error(
                services.objects,
                rejected.error_key,
                key=key,
                version_id=version_id,
                reason=rejected.reason,
                at=services.clock.now(),
            )
        return IngestOutcome.REJECTED
    if path.role is ObjectRole.FOLDER:
        return IngestOutcome.IGNORED
    now = services.clock.now()
    if path.role is ObjectRole.JOB_CONFIG:
        try:
            raw = services.objects.read(key, version_id, max_bytes=MAX_JOB_CONFIG_BYTES)
            parse_job_config(raw, services.default_tenant, now)
        except (InputRejectedError, RequestTooLargeError, NotFoundError) as error:
            reason = error.reason if isinstance(error, InputRejectedError) else error.message
            write_error(services.objects, path.error_key, key=key, version_id=version_id, reason=reason, at=now)
        return IngestOutcome.JOB_CONFIG

    version = version_id or "null"
    doc_id = document_id(bucket, key, version)
    existing = services.store.document(path.job, doc_id)
    if existing is not None:
        if existing.status is DocumentStatus.PENDING:
            services.store.put_units(_units(existing, _unit_ranges(services.objects, existing)))
        return IngestOutcome.DUPLICATE

    config: JobConfig | None = None
    try:
        if path.role is ObjectRole.UNSUPPORTED:
            raise InputRejectedError(unsupported_reason(path.name))
        config = _job_config(services, path.job, now)
        document = Document(
            job=path.job,
            doc_id=doc_id,
            bucket=bucket,
            key=key,
            version_id=version,
            kind=path.kind,
            status=DocumentStatus.PENDING,
            registered_at=now,
            size=size,
            units=0,
            tenant=config.tenant,
            feature=config.feature,
            model=config.model if path.kind is DocumentKind.TEXT else None,
            instruction=config.instruction if path.kind is DocumentKind.TEXT else None,
            max_tokens=config.max_tokens if path.kind is DocumentKind.TEXT else None,
        )
        ranges = _unit_ranges(services.objects, document)
    except InputRejectedError as rejected:
        return _reject(
            services,
            path,
            bucket=bucket,
            doc_id=doc_id,
            version=version,
            size=size,
            config=config,
            reason=rejected.reason,
            now=now,
        )

    document = replace(document, units=len(ranges))
    if services.store.register_document(document):
        services.store.put_units(_units(document, ranges))
        logger.info("batch: document registered", extra={"job": path.job, "key": key, "units": len(ranges)})
        return IngestOutcome.REGISTERED
    stored = services.store.document(path.job, doc_id)  # a concurrent delivery of the same event won
    if stored is not None and stored.status is DocumentStatus.PENDING:
        services.store.put_units(_units(stored, ranges))
    return IngestOutcome.DUPLICATE


def _job_config(services: IngestServices, job: str, now: datetime) -> JobConfig:
    config_key = f"{INCOMING}{job}/{JOB_CONFIG_NAME}"
    try:
        raw: bytes | None = services.objects.read(config_key, max_bytes=MAX_JOB_CONFIG_BYTES)
    except NotFoundError:
        raw = None
    except RequestTooLargeError:
        raise InputRejectedError(f"{config_key} is invalid: larger than {MAX_JOB_CONFIG_BYTES:,} bytes") from None
    try:
        return parse_job_config(raw, services.default_tenant, now)
    except InputRejectedError as rejected:
        raise InputRejectedError(f"{config_key} is invalid: {rejected.reason}") from None


def _unit_ranges(objects: ObjectStore, document: Document) -> list[tuple[UnitKind, int, int]]:
    """The document's units as (kind, start, end): character ranges of a text, line numbers of a .jsonl."""
    try:
        if document.kind is DocumentKind.REQUESTS:
            lines = validate_request_lines(
                objects.lines(document.key, document.version_id), document.name, document.registered_at
            )
            return [(UnitKind.REQUEST, line, line + 1) for line in lines]
        raw = objects.read(document.key, document.version_id, max_bytes=MAX_TEXT_BYTES)
    except RequestTooLargeError:
        raise InputRejectedError(
            f"{document.name} is larger than {MAX_TEXT_BYTES:,} bytes, the limit of a text document"
        ) from None
    except NotFoundError:
        raise InputRejectedError(f"{document.name} was deleted before it could be read") from None
    parts = text_parts(decode_text(raw, document.name), document.name)
    if len(parts) == 1:
        return [(UnitKind.WHOLE, *parts[0])]
    return [(UnitKind.PART, start, end) for start, end in parts]


def _units(document: Document, ranges: Sequence[tuple[UnitKind, int, int]]) -> list[Unit]:
    return [
        Unit(
            job=document.job,
            doc_id=document.doc_id,
            seq=seq,
            kind=kind,
            state=UnitState.PENDING,
            start=start,
            end=end,
            queued_at=document.registered_at,
        )
        for seq, (kind, start, end) in enumerate(ranges)
    ]


def _reject(
    services: IngestServices,
    path: ObjectPath,
    *,
    bucket: str,
    doc_id: str,
    version: str,
    size: int,
    config: JobConfig | None,
    reason: str,
    now: datetime,
) -> IngestOutcome:
    error_key = path.error_key
    write_error(services.objects, error_key, key=path.key, version_id=version, reason=reason, at=now)
    document = Document(
        job=path.job,
        doc_id=doc_id,
        bucket=bucket,
        key=path.key,
        version_id=version,
        kind=path.kind,
        status=DocumentStatus.FAILED,
        registered_at=now,
        size=size,
        units=0,
        tenant=config.tenant if config else services.default_tenant,
        feature=config.feature if config else DEFAULT_FEATURE,
        result_key=error_key,
        error=reason,
        finished_at=now,
    )
    services.store.register_document(document)
    emit_count(MetricName.BATCH_DOCUMENTS_FAILED)
    logger.info("batch: input rejected", extra={"key": path.key, "reason": reason})
    return IngestOutcome.REJECTED

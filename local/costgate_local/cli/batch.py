"""`costgate batch submit|status`: upload a folder as a batch summarisation job, follow its progress."""

import argparse
import json
import logging
import mimetypes
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TextIO

from costgate.batch.input import INCOMING, JOB_CONFIG_NAME, JOB_NAME
from costgate.batch.manifests import JobStatus, job_status
from costgate.dal.batch.store import DynamoBatchStore
from costgate.dal.objects import S3ObjectStore
from costgate.errors import InvalidRequestError
from costgate.money import format_usd
from costgate.observability import logger
from costgate_local.cli.env import bind_table, documents_bucket
from costgate_local.cli.formatting import money

WATCH_INTERVAL_S = 2.0
WATCH_LIMIT_S = 30 * 60.0
# A job just submitted has no documents until ingest has registered its first upload (seconds).
WATCH_FIRST_DOCUMENT_S = 120.0
PROGRESS_WIDTH = 20
# What an upload's Content-Type says; S3 stores it, and a browser opening the file uses it.
_CONTENT_TYPES = {
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".jsonl": "application/jsonl",
    ".json": "application/json",
}


class FileUploads(Protocol):
    """What `submit_batch` needs of the documents bucket (S3ObjectStore; tests record the uploads)."""

    def put_file(self, key: str, path: Path, content_type: str) -> None: ...


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="batch_command", required=True)
    submit = commands.add_parser(
        "submit", help="upload every file under DIR to incoming/<job>/ in the documents bucket (COSTGATE_BUCKET)"
    )
    submit.add_argument("dir", type=Path, help="the folder; subfolders keep their relative paths")
    submit.add_argument("--job", help="the job's name (default: the folder's name)")
    submit.add_argument("--bucket", help="the documents bucket (default: COSTGATE_BUCKET)")
    status = commands.add_parser("status", help="a job's documents done, failed and pending, and their cost")
    status.add_argument("job", help="the job's name")
    status.add_argument("--json", action="store_true", help="the figures as one JSON line")
    status.add_argument(
        "--watch", action="store_true", help="refresh until no document is pending (at most 30 minutes)"
    )


def run(args: argparse.Namespace) -> int:
    logger.setLevel(logging.WARNING)  # the services' info lines go to stdout, which holds the output
    if args.batch_command == "submit":
        bucket = args.bucket or documents_bucket()
        return submit_batch(args.dir, args.job, S3ObjectStore(bucket), sys.stdout, sys.stderr)
    job = _job_name(args.job)
    bind_table()
    store = DynamoBatchStore()
    return show_batch_status(lambda: job_status(store, job), as_json=args.json, watch=args.watch, out=sys.stdout)


def submit_batch(directory: Path, job: str | None, objects: FileUploads, out: TextIO, err: TextIO) -> int:
    """Upload every regular file under `directory` to incoming/<job>/<relative path>, `_job.json` first.

    The job's settings go first because ingest reads `_job.json` when each document registers (S3
    reads after writes are consistent), so every document of the job is registered with them.
    """
    if not directory.is_dir():
        raise InvalidRequestError(f"{directory} is not a folder")
    name = _job_name(job or directory.resolve().name, hint="" if job else " (the folder's name; choose one with --job)")
    files = sorted(
        ((path.relative_to(directory).as_posix(), path) for path in directory.rglob("*") if path.is_file()),
        key=lambda item: (item[0] != JOB_CONFIG_NAME, item[0]),
    )
    if not files:
        raise InvalidRequestError(f"{directory} holds no files to submit")
    prefix = f"{INCOMING}{name}/"
    total = 0
    for relative, path in files:
        objects.put_file(prefix + relative, path, _content_type(relative))
        total += path.stat().st_size
    print(f"job {name}: {len(files):,} file(s), {total:,} bytes uploaded to {prefix}", file=out)
    print(f"follow it with: costgate batch status {name} --watch", file=err)
    return 0


def _job_name(name: str, hint: str = "") -> str:
    """The rule ingest applies to the job folder, checked before anything is uploaded or read."""
    if not JOB_NAME.fullmatch(name):
        raise InvalidRequestError(
            f"job name {name!r}{hint} is invalid: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _content_type(relative: str) -> str:
    suffix = Path(relative).suffix.lower()
    return _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(relative)[0] or "application/octet-stream"


def show_batch_status(
    read: Callable[[], JobStatus],
    *,
    as_json: bool,
    watch: bool,
    out: TextIO,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    """Print the job's status once, or with `watch` each time it changes until nothing is pending.

    Exit status: 0, or 1 when a document failed, the job has no documents, or the watch gave up
    (30 minutes; 2 minutes if no document was ever registered).
    """
    started = monotonic()
    shown = ""
    while True:
        status = read()
        line = json.dumps(_status_json(status)) if as_json else render_batch_status(status)
        if line != shown:
            print(line, file=out, flush=True)
            shown = line
        settled = status.documents > 0 and status.pending == 0
        if not watch or settled:
            break
        waited = monotonic() - started
        if waited >= WATCH_LIMIT_S or (status.documents == 0 and waited >= WATCH_FIRST_DOCUMENT_S):
            print(f"costgate: stopped watching job {status.job} after {waited / 60:.0f} min", file=sys.stderr)
            return 1
        sleep(WATCH_INTERVAL_S)
    if status.documents == 0:
        print(f"costgate: job {status.job} has no registered documents", file=sys.stderr)
        return 1
    return 1 if status.failed else 0


def render_batch_status(status: JobStatus) -> str:
    """`[#####...............] 12/40 done, 1 failed, 27 pending` and the job's totals so far."""
    finished = status.done + status.failed
    filled = PROGRESS_WIDTH * finished // status.documents if status.documents else 0
    bar = "#" * filled + "." * (PROGRESS_WIDTH - filled)
    progress = f"[{bar}] {status.done:,}/{status.documents:,} done, {status.failed:,} failed"
    if status.pending:
        progress += f", {status.pending:,} pending"
    totals = (
        f"{money(status.cost_usd)} USD, {status.input_tokens:,} input / {status.output_tokens:,} output tokens"
        f" ({status.cache_read_tokens:,} cache read, {status.cache_write_tokens:,} cache write)"
    )
    return f"job {status.job}: {progress}; {totals}"


def _status_json(status: JobStatus) -> dict[str, Any]:
    return {
        "job": status.job,
        "documents": status.documents,
        "done": status.done,
        "failed": status.failed,
        "pending": status.pending,
        "cost_usd": format_usd(status.cost_usd),
        "input_tokens": status.input_tokens,
        "output_tokens": status.output_tokens,
        "cache_read_tokens": status.cache_read_tokens,
        "cache_write_tokens": status.cache_write_tokens,
    }

"""`costgate batch submit` and `costgate batch status`, with the bucket and the job's status faked."""

import io
import json
from decimal import Decimal
from pathlib import Path

import pytest

from costgate.batch.manifests import JobStatus
from costgate.errors import InvalidRequestError
from costgate_local.cli.batch import (
    WATCH_FIRST_DOCUMENT_S,
    WATCH_INTERVAL_S,
    WATCH_LIMIT_S,
    render_batch_status,
    show_batch_status,
    submit_batch,
)
from tests.fakes.batch import InMemoryObjectStore


class RecordingObjects(InMemoryObjectStore):
    """The in-memory bucket, keeping what was uploaded in order too."""

    def __init__(self) -> None:
        super().__init__()
        self.uploads: list[tuple[str, bytes, str]] = []

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        self.uploads.append((key, path.read_bytes(), content_type))
        super().put_file(key, path, content_type)


def _status(done: int = 0, failed: int = 0, pending: int = 0, cost: str = "0") -> JobStatus:
    return JobStatus(
        job="weekly-report",
        documents=done + failed + pending,
        done=done,
        failed=failed,
        pending=pending,
        cost_usd=Decimal(cost),
        input_tokens=12345,
        output_tokens=678,
        cache_read_tokens=9,
        cache_write_tokens=10,
    )


class FakeTime:
    """sleep() moves monotonic() on; nothing waits for real."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "weekly-report"
    (root / "sub dir").mkdir(parents=True)
    (root / "notes.txt").write_text("notes", encoding="utf-8")
    (root / "a.md").write_text("# a", encoding="utf-8")
    (root / "sub dir" / "café.md").write_text("# café", encoding="utf-8")
    (root / "eval.jsonl").write_text("{}\n", encoding="utf-8")
    (root / "_job.json").write_text('{"instruction": "One line."}', encoding="utf-8")
    return root


def test_submit_uploads_every_file_under_the_job_prefix_job_config_first(folder: Path) -> None:
    # Given a folder with a job config, texts, a subfolder and a requests file
    objects, out, err = RecordingObjects(), io.StringIO(), io.StringIO()

    # When it is submitted without a job name
    status = submit_batch(folder, None, objects, out, err)

    # Then the job is the folder's name, _job.json goes first, and relative paths are kept
    assert status == 0
    keys = [key for key, _, _ in objects.uploads]
    assert keys == [
        "incoming/weekly-report/_job.json",
        "incoming/weekly-report/a.md",
        "incoming/weekly-report/eval.jsonl",
        "incoming/weekly-report/notes.txt",
        "incoming/weekly-report/sub dir/café.md",
    ]
    types = {key.rsplit("/", 1)[1]: content_type for key, _, content_type in objects.uploads}
    assert types == {
        "_job.json": "application/json",
        "a.md": "text/markdown; charset=utf-8",
        "eval.jsonl": "application/jsonl",
        "notes.txt": "text/plain; charset=utf-8",
        "café.md": "text/markdown; charset=utf-8",
    }
    assert objects.uploads[-1][1] == "# café".encode()
    # and it says what it sent, and how to follow it
    total = sum(len(body) for _, body, _ in objects.uploads)
    assert out.getvalue() == f"job weekly-report: 5 file(s), {total} bytes uploaded to incoming/weekly-report/\n"
    assert "costgate batch status weekly-report --watch" in err.getvalue()


def test_submit_takes_a_job_name(folder: Path) -> None:
    objects = RecordingObjects()
    submit_batch(folder, "q4.review_2", objects, io.StringIO(), io.StringIO())
    assert {key.split("/")[1] for key, _, _ in objects.uploads} == {"q4.review_2"}


@pytest.mark.parametrize("job", ["my job", "a/b", "-x", "x" * 65, "team:a"])
def test_submit_refuses_a_job_name_ingest_would_refuse(folder: Path, job: str) -> None:
    objects = RecordingObjects()
    with pytest.raises(InvalidRequestError, match="job name"):
        submit_batch(folder, job, objects, io.StringIO(), io.StringIO())
    assert objects.uploads == []


def test_submit_says_when_the_folder_name_is_no_job_name(tmp_path: Path) -> None:
    root = tmp_path / "my documents"
    root.mkdir()
    (root / "a.txt").write_text("a", encoding="utf-8")
    with pytest.raises(InvalidRequestError, match="--job"):
        submit_batch(root, None, RecordingObjects(), io.StringIO(), io.StringIO())


def test_submit_refuses_an_empty_folder_and_a_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    with pytest.raises(InvalidRequestError, match="no files"):
        submit_batch(tmp_path / "empty", None, RecordingObjects(), io.StringIO(), io.StringIO())
    with pytest.raises(InvalidRequestError, match="not a folder"):
        submit_batch(tmp_path / "file.txt", None, RecordingObjects(), io.StringIO(), io.StringIO())


def test_status_shows_a_progress_bar_and_the_totals() -> None:
    line = render_batch_status(_status(done=12, failed=1, pending=27, cost="0.01234567"))
    assert line == (
        "job weekly-report: [######..............] 12/40 done, 1 failed, 27 pending; "
        "0.012346 USD, 12,345 input / 678 output tokens (9 cache read, 10 cache write)"
    )
    assert "[####################] 3/3 done, 0 failed;" in render_batch_status(_status(done=3))
    assert "[....................] 0/0 done" in render_batch_status(_status())


def test_status_once_as_json_with_the_exact_cost() -> None:
    out = io.StringIO()
    status = show_batch_status(lambda: _status(done=1, pending=1, cost="0.0000457"), as_json=True, watch=False, out=out)
    assert status == 0
    assert json.loads(out.getvalue()) == {
        "job": "weekly-report",
        "documents": 2,
        "done": 1,
        "failed": 0,
        "pending": 1,
        "cost_usd": "0.0000457",
        "input_tokens": 12345,
        "output_tokens": 678,
        "cache_read_tokens": 9,
        "cache_write_tokens": 10,
    }


def test_watch_refreshes_until_nothing_is_pending_printing_each_change_once() -> None:
    # Given a job that progresses over five reads (the third repeats the second)
    statuses = iter([_status(pending=2), _status(done=1, pending=1), _status(done=1, pending=1), _status(done=2)])
    clock, out = FakeTime(), io.StringIO()

    # When it is watched
    status = show_batch_status(
        lambda: next(statuses), as_json=False, watch=True, out=out, sleep=clock.sleep, monotonic=clock.monotonic
    )

    # Then each change is one line, it stops when nothing is pending, and every document succeeded
    assert status == 0
    lines = out.getvalue().splitlines()
    assert [line.split("] ")[1].split(";")[0] for line in lines] == [
        "0/2 done, 0 failed, 2 pending",
        "1/2 done, 0 failed, 1 pending",
        "2/2 done, 0 failed",
    ]
    assert clock.sleeps == [WATCH_INTERVAL_S] * 3


def test_watch_exits_1_when_a_document_failed() -> None:
    clock = FakeTime()
    status = show_batch_status(
        lambda: _status(done=1, failed=1), as_json=True, watch=True, out=io.StringIO(), sleep=clock.sleep
    )
    assert status == 1


def test_watch_gives_up_after_30_minutes(capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeTime()
    status = show_batch_status(
        lambda: _status(pending=1), as_json=False, watch=True, out=io.StringIO(), sleep=clock.sleep,
        monotonic=clock.monotonic,
    )  # fmt: skip
    assert status == 1
    assert WATCH_LIMIT_S <= sum(clock.sleeps) <= WATCH_LIMIT_S + WATCH_INTERVAL_S
    assert "stopped watching job weekly-report after 30 min" in capsys.readouterr().err


def test_watch_of_a_job_that_never_gets_a_document_stops_after_two_minutes() -> None:
    clock = FakeTime()
    status = show_batch_status(
        _status, as_json=False, watch=True, out=io.StringIO(), sleep=clock.sleep, monotonic=clock.monotonic
    )
    assert status == 1
    assert WATCH_FIRST_DOCUMENT_S <= sum(clock.sleeps) <= WATCH_FIRST_DOCUMENT_S + WATCH_INTERVAL_S

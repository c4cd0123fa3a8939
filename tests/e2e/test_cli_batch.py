"""Batch summarisation as a user runs it locally: `costgate serve`, `costgate batch submit`, then
`costgate batch status --watch` until the job's summaries are in the bucket."""

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.e2e.test_cli import costgate
from tests.e2e.test_serve import COSTGATE, READY_TIMEOUT_S, Served, _read_line


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    process = subprocess.Popen(
        [str(COSTGATE), "serve", "--port", "0", "--batch-delay", "1", "--batch-interval", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield Served(process, json.loads(_read_line(process.stdout, READY_TIMEOUT_S)))
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


@pytest.mark.slow
def test_a_submitted_folder_is_summarised_within_a_minute(served: Served, tmp_path: Path) -> None:
    # Given a local stack whose scheduler ticks every 0.5 s, and a folder of two documents and a job config
    assert served.ready["batch_interval_s"] == 0.5
    folder = tmp_path / "weekly-report"
    (folder / "team").mkdir(parents=True)
    (folder / "_job.json").write_text(json.dumps({"instruction": "Summarise in one sentence."}), encoding="utf-8")
    (folder / "notes.txt").write_text("We shipped the batch gateway. Costs fell by half.", encoding="utf-8")
    (folder / "team" / "plan.md").write_text("# Plan\n\nWrite the docs, then the demo.", encoding="utf-8")

    # When it is submitted, and the job watched
    submitted = costgate("batch", "submit", str(folder), env=served.env())
    watched = costgate("batch", "status", "weekly-report", "--watch", env=served.env(), timeout=90)
    final = costgate("batch", "status", "weekly-report", "--json", env=served.env())

    # Then all three files went up, the watch ended with both documents done, and each has its summary
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.startswith("job weekly-report: 3 file(s), ")
    assert watched.returncode == 0, watched.stderr
    assert "[####################] 2/2 done, 0 failed;" in watched.stdout.splitlines()[-1]
    status = json.loads(final.stdout)
    assert (status["documents"], status["done"], status["failed"], status["pending"]) == (2, 2, 0, 0)
    assert float(status["cost_usd"]) > 0
    s3 = boto3.client(
        "s3",
        endpoint_url=served.ready["aws_endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id="any",
        aws_secret_access_key="any",
    )
    listed = s3.list_objects_v2(Bucket=served.ready["bucket"], Prefix="results/weekly-report/")
    assert {item["Key"] for item in listed["Contents"]} == {
        "results/weekly-report/_manifest.json",
        "results/weekly-report/notes.txt.summary.md",
        "results/weekly-report/team/plan.md.summary.md",
    }


def test_submit_without_a_bucket_says_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a", encoding="utf-8")
    result = costgate("batch", "submit", str(tmp_path), "--job", "j", env={"COSTGATE_BUCKET": ""})
    assert result.returncode == 2
    assert result.stderr == "costgate: missing required setting(s): COSTGATE_BUCKET\n"


def test_status_of_an_invalid_job_name_is_refused_before_any_aws_call() -> None:
    result = costgate("batch", "status", "my job", env={"COSTGATE_TABLE": ""})
    assert result.returncode == 2
    assert "job name 'my job' is invalid" in result.stderr

"""IngestFunction and BatchFunction end to end: the real handlers on events/ingest and events/batch
fixtures, with the table, bucket and secret in moto and the Message Batches API simulated."""

import copy
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest

from costgate.batch.manifests import job_status
from costgate.dal.batch.store import DynamoBatchStore
from costgate_local.simulator import Simulator, SimulatorOptions
from costgate_local.stack.aws import LocalAwsEndpoints, create_bucket, create_secret, environment
from functions.batch import handler as batch_handler
from functions.ingest import handler as ingest_handler
from tests.conftest import FakeLambdaContext
from tests.events import load_event

DEFAULT_TENANT = "documents"
MAX_TICKS = 20
NOTES = (
    b"Costgate measured every request this week. Prompt caching saved a third of the input cost; "
    b"routing sent simple questions to a smaller model."
)
REQUEST_LINE = json.dumps(
    {
        "custom_id": "q1",
        "params": {
            "model": "claude-haiku-5-5",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "Say hello."}],
        },
    }
).encode()


@dataclass(frozen=True)
class Deployment:
    bucket: str
    table: str
    s3: Any

    def upload(self, scenario: str, body: bytes) -> dict[str, Any]:
        """Put the object the fixture is about into the bucket; the fixture, pointing at that upload."""
        event = copy.deepcopy(load_event("ingest", scenario))
        (record,) = event["Records"]
        key = unquote_plus(record["s3"]["object"]["key"])
        put = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        record["s3"]["bucket"] |= {"name": self.bucket, "arn": f"arn:aws:s3:::{self.bucket}"}
        record["s3"]["object"] |= {"size": len(body), "versionId": put["VersionId"]}
        return event

    def keys(self, prefix: str) -> set[str]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return {item["Key"] for item in listed.get("Contents", [])}


class ShortContext(FakeLambdaContext):
    def get_remaining_time_in_millis(self) -> int:
        return 30_000  # less than the handler's stop margin


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    # Batches end as soon as they are created: a tick submits, the next one collects.
    with Simulator(SimulatorOptions(batch_delay=timedelta(0))) as sim:
        yield sim


@pytest.fixture
def deployment(local_aws: LocalAwsEndpoints, ledger_table: str, simulator: Simulator) -> Iterator[Deployment]:
    """The environment the template gives both functions, over a fresh table, bucket and secret."""
    suffix = uuid.uuid4().hex[:10]
    bucket = f"costgate-documents-{suffix}"
    secret = f"costgate/claude-api-key-{suffix}"
    create_bucket(local_aws, bucket)
    create_secret(local_aws, secret, f"sk-ant-test-{suffix}")
    settings = {
        "COSTGATE_BUCKET": bucket,
        "COSTGATE_BATCH_TENANT": DEFAULT_TENANT,
        "COSTGATE_UPSTREAM_URL": simulator.base_url,
        "COSTGATE_CLAUDE_KEY_SECRET": secret,
    }
    ingest_handler.services.cache_clear()
    batch_handler.settings.cache_clear()
    batch_handler.services.cache_clear()
    with environment(settings):
        s3 = boto3.client("s3", endpoint_url=local_aws.endpoint_url, region_name=local_aws.region)
        yield Deployment(bucket=bucket, table=ledger_table, s3=s3)
    ingest_handler.services.cache_clear()
    batch_handler.settings.cache_clear()
    batch_handler.services.cache_clear()


def _tick(context: FakeLambdaContext | None = None) -> dict[str, Any]:
    report: dict[str, Any] = batch_handler.lambda_handler(
        load_event("batch", "scheduled"), context or FakeLambdaContext()
    )
    return report


def _run_until_settled(job: str) -> list[dict[str, Any]]:
    reports = []
    store = DynamoBatchStore()
    for _ in range(MAX_TICKS):
        reports.append(_tick())
        status = job_status(store, job)
        if status.documents and not status.pending:
            return reports
        time.sleep(0.2)
    raise AssertionError(f"job {job} still pending after {MAX_TICKS} ticks")


def test_an_uploaded_text_is_registered_once_per_version(deployment: Deployment) -> None:
    # Given notes.txt uploaded under incoming/weekly-report/ and its S3 event (events/ingest/text.json)
    event = deployment.upload("text", NOTES)

    # When IngestFunction gets the event, and then the same event again (S3 delivers at least once)
    first = ingest_handler.lambda_handler(event, FakeLambdaContext())
    again = ingest_handler.lambda_handler(event, FakeLambdaContext())

    # Then the first registers one pending document, billed to the default tenant; the second changes nothing
    assert first == {"outcomes": {"incoming/weekly-report/notes.txt": "registered"}}
    assert again == {"outcomes": {"incoming/weekly-report/notes.txt": "duplicate"}}
    (document,) = DynamoBatchStore().job_documents("weekly-report")
    assert (document.key, document.status.value, document.tenant) == (
        "incoming/weekly-report/notes.txt",
        "pending",
        DEFAULT_TENANT,
    )
    assert document.version_id == event["Records"][0]["s3"]["object"]["versionId"]


def test_a_job_config_and_a_requests_file_are_told_apart(deployment: Deployment) -> None:
    # Given a job's _job.json and a .jsonl of ready requests in another job
    config = deployment.upload("job_config", json.dumps({"instruction": "Summarise in one line."}).encode())
    requests = deployment.upload("requests_jsonl", REQUEST_LINE + b"\n")

    # When IngestFunction gets their events
    config_outcome = ingest_handler.lambda_handler(config, FakeLambdaContext())
    requests_outcome = ingest_handler.lambda_handler(requests, FakeLambdaContext())

    # Then the config is checked and queues nothing, and the requests file is one pending document
    assert config_outcome == {"outcomes": {"incoming/weekly-report/_job.json": "job-config"}}
    assert requests_outcome == {"outcomes": {"incoming/eval-run/requests.jsonl": "registered"}}
    assert list(DynamoBatchStore().job_documents("weekly-report")) == []
    assert deployment.keys("results/") == set()


def test_an_invalid_job_folder_gets_an_error_file_from_the_decoded_key(deployment: Deployment) -> None:
    # Given a file under "incoming/my job/" (a space: not a job name), its key form-encoded in the event
    event = deployment.upload("encoded_key", b"# Caf\xc3\xa9\n")

    # When IngestFunction gets the event
    outcome = ingest_handler.lambda_handler(event, FakeLambdaContext())

    # Then the decoded key was judged, and its error file says why
    assert outcome == {"outcomes": {"incoming/my job/café résumé.md": "rejected"}}
    (error_key,) = deployment.keys("results/")
    assert error_key == "results/my job/café résumé.md.error.json"
    error = json.loads(deployment.s3.get_object(Bucket=deployment.bucket, Key=error_key)["Body"].read())
    assert "not a valid job name" in error["error"]


def test_ingest_fails_the_invocation_rather_than_lose_an_upload(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an upload, and a table IngestFunction cannot write to
    event = deployment.upload("text", NOTES)
    monkeypatch.setenv("COSTGATE_TABLE", f"missing-{uuid.uuid4().hex[:8]}")
    ingest_handler.services.cache_clear()

    # When / Then the invocation fails (Lambda retries it, then keeps it in the dead-letter queue)
    with pytest.raises(Exception, match=r"Requested resource not found"):
        ingest_handler.lambda_handler(event, FakeLambdaContext())


def test_scheduler_ticks_summarise_the_document_and_count_it(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a registered text, and metrics on
    ingest_handler.lambda_handler(deployment.upload("text", NOTES), FakeLambdaContext())
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")
    capsys.readouterr()

    # When BatchFunction runs on scheduled events until the job has nothing pending
    reports = _run_until_settled("weekly-report")
    printed = capsys.readouterr().out

    # Then one request was submitted, its result written, and the document is done with its cost known
    assert sum(r["submitted_requests"] for r in reports) == 1
    assert sum(r["finished_documents"] for r in reports) == 1
    assert not any(r["errors"] for r in reports)
    assert "results/weekly-report/notes.txt.summary.md" in deployment.keys("results/weekly-report/")
    status = job_status(DynamoBatchStore(), "weekly-report")
    assert (status.documents, status.done, status.failed) == (1, 1, 0)
    assert status.cost_usd > 0
    # and every tick counted its finished and failed documents on the service dimension set
    blobs = [json.loads(line) for line in printed.splitlines() if '"_aws"' in line]
    counts: dict[str, list[float]] = {}
    for blob in blobs:
        (directive,) = blob["_aws"]["CloudWatchMetrics"]
        if directive["Dimensions"] == [["service"]]:
            for metric in directive["Metrics"]:
                counts.setdefault(metric["Name"], []).extend(blob[metric["Name"]])
    assert sum(counts["BatchDocumentsDone"]) == 1
    assert len(counts["BatchDocumentsDone"]) == len(reports)
    assert sum(counts["BatchDocumentsFailed"]) == 0
    assert sum(counts["BatchRequestsSubmitted"]) == 1  # counted once, as the batch was accepted


def test_a_tick_stops_starting_work_a_minute_before_the_timeout(deployment: Deployment) -> None:
    # Given a registered text, and an invocation with less time left than the handler's margin
    ingest_handler.lambda_handler(deployment.upload("text", NOTES), FakeLambdaContext())

    # When BatchFunction runs
    report = _tick(ShortContext())

    # Then it stops at once and leaves the work to the next tick
    assert report["out_of_time"] is True
    assert report["submitted_requests"] == 0
    assert job_status(DynamoBatchStore(), "weekly-report").pending == 1


def test_each_tick_works_in_a_fresh_folder_it_removes(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given /tmp (here a test folder) and a registered text
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ingest_handler.lambda_handler(deployment.upload("text", NOTES), FakeLambdaContext())

    # When ticks submit its batch (building the request body on disk) and collect it
    _run_until_settled("weekly-report")

    # Then nothing is left behind in /tmp for the next invocation of a warm container
    assert list(tmp_path.iterdir()) == []

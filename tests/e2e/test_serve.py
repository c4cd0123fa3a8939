"""`costgate serve` as a user runs it: one ready line, the API on loopback, local AWS, clean shutdown."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx2 as httpx
import pytest

COSTGATE = Path(sys.executable).parent / "costgate"
READY_TIMEOUT_S = 60
# The module's stack runs SpendWatchFunction every second (its template schedule is every 5 minutes).
SPEND_INTERVAL_S = 1
SPEND_RUN_TIMEOUT_S = 15


class Served:
    def __init__(self, process: subprocess.Popen[str], ready: dict[str, Any], log: Path | None = None) -> None:
        self.process = process
        self.ready = ready
        self.log = log  # its stderr, where kept: every log line and EMF blob

    def env(self) -> dict[str, str]:
        """What the ready line tells other commands: the same resources, through the environment."""
        return {
            **os.environ,
            "AWS_ENDPOINT_URL": self.ready["aws_endpoint_url"],
            "COSTGATE_TABLE": self.ready["table"],
            "COSTGATE_BUCKET": self.ready["bucket"],
            "AWS_ACCESS_KEY_ID": "any",
            "AWS_SECRET_ACCESS_KEY": "any",
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def _read_line(stream: Any, timeout: float) -> str:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not lines:
        raise TimeoutError(f"no ready line within {timeout} s")
    return lines[0]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    # A file, not a pipe: nothing would drain a pipe, and a full one would stall the stack.
    log = tmp_path_factory.mktemp("serve") / "stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [str(COSTGATE), "serve", "--port", "0", "--batch-delay", "1", "--spend-interval", str(SPEND_INTERVAL_S)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        line = _read_line(process.stdout, READY_TIMEOUT_S)
        yield Served(process, json.loads(line), log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def test_ready_line_names_everything_a_script_needs(served: Served) -> None:
    assert set(served.ready) >= {"base_url", "api_key", "aws_endpoint_url", "table", "bucket"}
    for url in (served.ready["base_url"], served.ready["aws_endpoint_url"]):
        assert url.startswith("http://127.0.0.1:")


def test_spend_watch_runs_at_the_interval_the_ready_line_names(served: Served) -> None:
    # Given a stack serving SpendWatchFunction every second
    assert served.ready["spend_interval_s"] == SPEND_INTERVAL_S
    # When a few seconds pass / Then its log shows the real handler ran and read today's spend
    assert served.log is not None
    deadline = time.monotonic() + SPEND_RUN_TIMEOUT_S
    observed: list[dict[str, Any]] = []
    while not observed and time.monotonic() < deadline:
        time.sleep(0.2)
        complete = served.log.read_text(encoding="utf-8", errors="replace").split("\n")[:-1]  # not one being written
        observed = [json.loads(line) for line in complete if '"spend observed"' in line]
    assert observed, f"no 'spend observed' line in the serve log within {SPEND_RUN_TIMEOUT_S} s"
    assert observed[0]["function_name"] == "SpendWatchFunction"
    assert set(observed[0]["spend"]) >= {"spent_usd", "projected_usd"}


def test_api_answers_through_the_real_handler(served: Served) -> None:
    base = served.ready["base_url"]
    health = httpx.get(f"{base}/v1/health", timeout=10)
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    # 29 days × 17 rollup partitions, read through moto one request at a time: slow locally, not on DynamoDB
    costs = httpx.get(f"{base}/v1/costs", params={"from": "2026-11-01", "to": "2026-11-29"}, timeout=120)
    assert costs.status_code == 200
    assert costs.json()["total"]["requests"] == 0
    bad = httpx.get(f"{base}/v1/costs", params={"from": "yesterday", "to": "2026-11-29"}, timeout=10)
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    missing = httpx.get(f"{base}/v1/nothing-here", timeout=10)
    assert missing.status_code == 403  # API Gateway's answer for a route the template does not have


def test_table_and_bucket_exist_as_the_template_declares(served: Served) -> None:
    env = served.env()
    kwargs = {
        "endpoint_url": env["AWS_ENDPOINT_URL"],
        "region_name": "us-east-1",
        "aws_access_key_id": "any",
        "aws_secret_access_key": "any",
    }
    table = boto3.client("dynamodb", **kwargs).describe_table(TableName=served.ready["table"])["Table"]
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["PK", "SK"]
    s3 = boto3.client("s3", **kwargs)
    assert s3.get_bucket_versioning(Bucket=served.ready["bucket"])["Status"] == "Enabled"


def test_other_commands_reach_the_same_resources(served: Served) -> None:
    result = subprocess.run(
        [str(COSTGATE), "report", "--from", "2026-11-01", "--to", "2026-11-29", "--json"],
        env=served.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["total"]["requests"] == 0


def test_the_sdk_talks_to_the_simulator_upstream(served: Served) -> None:
    import anthropic  # noqa: PLC0415 - the heavy import only where it is used

    client = anthropic.Anthropic(base_url=served.ready["upstream_url"], api_key="sk-local", max_retries=0)
    message = client.messages.create(
        model="claude-haiku-5-5", max_tokens=64, messages=[{"role": "user", "content": "Say hello."}]
    )
    assert message.usage.input_tokens > 0
    assert message.content[0].type == "text"


def test_upstream_anthropic_without_a_key_fails_clearly() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    result = subprocess.run(
        [str(COSTGATE), "serve", "--port", "0", "--upstream", "anthropic"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "ANTHROPIC_API_KEY" in result.stderr
    assert result.stdout == ""


def test_sigterm_stops_everything_and_stdout_held_only_the_ready_line() -> None:
    # Given a second stack of its own
    process = subprocess.Popen(
        [str(COSTGATE), "serve", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    ready = json.loads(_read_line(process.stdout, READY_TIMEOUT_S))
    assert ready["spend_interval_s"] == 300  # without --spend-interval: the template's rate(5 minutes)
    # When it gets SIGTERM
    process.send_signal(signal.SIGTERM)
    # Then it exits cleanly, printed nothing more on stdout, and its ports are closed
    assert process.wait(timeout=30) == 0
    assert process.stdout is not None
    assert process.stdout.read() == ""
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{ready['base_url']}/v1/health", timeout=2)

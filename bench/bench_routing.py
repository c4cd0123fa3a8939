"""Model routing: accuracy and confusion matrix over three labelled sets, and routing time against `json.loads`.

tests/routing/labelled_requests.jsonl was written together with the rules (it flatters them).
tests/routing/holdout_requests.jsonl was written blind to the rules and then used as the development
set when the rules were generalised. tests/routing/test_requests.jsonl was written blind to the rules
and to both other sets and never used to change a rule: its figures are the fair ones. The timing
baseline is parsing the same body with `json.loads`, which every request pays anyway, measured in the
same run; the ratio shows what routing adds on top of it.
"""

import argparse
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from costgate.routing.router import RoutePolicy, Tier, route

SETS = Path(__file__).resolve().parents[1] / "tests" / "routing"
LABELLED = SETS / "labelled_requests.jsonl"
HOLDOUT = SETS / "holdout_requests.jsonl"
TEST = SETS / "test_requests.jsonl"
LABELS = ("simple", "medium", "complex")
ROUNDS, CALLS = 7, 200


def per_call_us(fn: Callable[[], object]) -> float:
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(CALLS):
            fn()
        samples.append((time.perf_counter() - start) / CALLS * 1e6)
    return statistics.median(samples)


def _tier_name(tier: Tier | None) -> str:
    return tier.name.lower() if tier is not None else "unrouted"


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def evaluate(name: str, items: list[dict[str, Any]], policy: RoutePolicy) -> None:
    predicted = [_tier_name(route(item["body"], policy).tier) for item in items]
    print(f"\n== {name}: {len(items)} requests  ({dict(Counter(item['lang'] for item in items))})")
    for lang in (None, "en", "ko"):
        pairs = [
            (item["label"], tier) for item, tier in zip(items, predicted, strict=True) if lang in (None, item["lang"])
        ]
        correct = sum(label == tier for label, tier in pairs)
        print(f"accuracy {lang or 'all':>3}: {correct / len(pairs):6.1%}  ({correct}/{len(pairs)})")

    matrix = Counter(zip((item["label"] for item in items), predicted, strict=True))
    print("\nconfusion (rows = label, cols = routed tier)")
    print(f"{'':>9}" + "".join(f"{tier:>9}" for tier in LABELS))
    for label in LABELS:
        print(f"{label:>9}" + "".join(f"{matrix[label, tier]:>9}" for tier in LABELS))
    print(f"complex -> simple errors: {matrix['complex', 'simple']}")
    for item, tier in zip(items, predicted, strict=True):
        if tier != item["label"]:
            print(f"  miss {item['id']}: {item['label']} -> {tier}  ({route(item['body'], policy).reason})")


def main() -> None:
    global ROUNDS, CALLS
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run: every figure once, few repetitions")
    if parser.parse_args().quick:
        ROUNDS, CALLS = 1, 5
    policy = RoutePolicy()
    items = load(LABELLED)
    evaluate("labelled set (written with the rules)", items, policy)
    evaluate("development set (written blind, then used to generalise the rules)", load(HOLDOUT), policy)
    evaluate("test set (written blind, never used to change a rule)", load(TEST), policy)

    baselines, routings = [], []
    for item in items:
        baselines.append(per_call_us(partial(json.loads, json.dumps(item["body"], ensure_ascii=False))))
        routings.append(per_call_us(partial(route, item["body"], policy)))
    baseline, routing = statistics.median(baselines), statistics.median(routings)
    print(f"\njson.loads of the body (baseline): {baseline:8.2f} µs/request (median over the set)")
    print(f"route (full classification):       {routing:8.2f} µs/request  = {routing / baseline:.1f}× the baseline")


if __name__ == "__main__":
    main()

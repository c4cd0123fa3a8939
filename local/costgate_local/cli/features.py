"""`costgate features set|list|delete`: per-feature model routing, prompt caching and answer caching."""

import argparse
import json
import sys
from decimal import Decimal
from typing import Any

from costgate.cache.model import AnswerCacheMode
from costgate.dal.features import DynamoFeatureStore
from costgate.errors import ConfigurationError, InvalidRequestError
from costgate.gateway.features import FeatureConfig, PromptCacheMode, PromptCacheTtl
from costgate.routing.router import DEFAULT_MODELS, RoutePolicy, Tier
from costgate_local.cli.env import bind_table
from costgate_local.cli.formatting import left_aligned


def register(parser: argparse.ArgumentParser) -> None:
    tiers = [tier.name.lower() for tier in Tier]
    commands = parser.add_subparsers(dest="features_command", required=True)
    set_feature = commands.add_parser(
        "set",
        help="create or replace a feature's whole configuration (options left out take their defaults); "
        "warm API containers pick it up within 30 s",
    )
    set_feature.add_argument("name", help="the feature tag (x-costgate-feature)")
    set_feature.add_argument(
        "--default-model", help="the model `auto` requests would use without routing: the saving's baseline "
        "(default: the medium tier's model)"
    )  # fmt: skip
    for tier in Tier:
        name = tier.name.lower()
        set_feature.add_argument(
            f"--{name}-model", help=f"the model for {name} requests (default: {DEFAULT_MODELS[tier]})"
        )
    set_feature.add_argument("--floor", choices=tiers, help="the lowest tier routing may pick (default: simple)")
    set_feature.add_argument("--ceiling", choices=tiers, help="the highest tier routing may pick (default: complex)")
    set_feature.add_argument(
        "--override-explicit", action="store_true", help="route requests that name a model too, not only `auto`"
    )
    set_feature.add_argument(
        "--prompt-cache", choices=["auto", "off"],
        help="auto (the default): add cache breakpoints to requests that set none; off: never touch caching",
    )  # fmt: skip
    set_feature.add_argument(
        "--prompt-cache-ttl", choices=["auto", "5m", "1h"],
        help="the TTL of added breakpoints (default: auto, chosen from the feature's observed request gaps)",
    )  # fmt: skip
    set_feature.add_argument(
        "--answer-cache", choices=["off", "exact", "semantic"],
        help="the most the answer cache may do for this feature (default: semantic; x-costgate-cache can lower it)",
    )  # fmt: skip
    set_feature.add_argument(
        "--answer-cache-ttl", type=int, metavar="SECONDS", help="how long a stored answer is served (default: 86400)"
    )
    set_feature.add_argument(
        "--semantic-threshold", metavar="COSINE",
        help="the similarity a semantic hit needs (default: the embedder's calibrated threshold)",
    )  # fmt: skip
    listing = commands.add_parser("list", help="every stored feature configuration, by name")
    listing.add_argument("--json", action="store_true", help="one JSON line per feature instead of a table")
    delete = commands.add_parser("delete", help="delete a feature's configuration (back to defaults)")
    delete.add_argument("name", help="the feature tag")


def run(args: argparse.Namespace) -> int:
    bind_table()
    store = DynamoFeatureStore()
    if args.features_command == "set":
        config = _config(args)
        store.put(config)
        print(json.dumps(_as_json(config)))
        return 0
    if args.features_command == "delete":
        if not store.delete(args.name):
            print(f"costgate: feature {args.name} has no stored configuration", file=sys.stderr)
            return 1
        print(json.dumps({"deleted": {"feature": args.name}}))
        return 0
    configs = store.list_configs()
    if args.json:
        for config in configs:
            print(json.dumps(_as_json(config)))
        return 0
    columns = [
        "feature", "default model", "simple", "medium", "complex", "floor", "ceiling", "override", "cache", "ttl",
    ]  # fmt: skip
    rows = [
        [
            config.feature,
            config.default_model or "-",
            *(config.route.models[tier] for tier in Tier),
            config.route.floor.name.lower(),
            config.route.ceiling.name.lower(),
            "yes" if config.route.override_explicit else "no",
            config.prompt_cache.value,
            config.prompt_cache_ttl.value,
        ]
        for config in configs
    ]
    for line in left_aligned([columns, *rows]):
        print(line)
    if not configs:
        print("(no feature configurations: every feature uses the defaults)")
    return 0


def _config(args: argparse.Namespace) -> FeatureConfig:
    """Only what was given is passed: everything else takes FeatureConfig's and RoutePolicy's defaults."""
    route: dict[str, Any] = {"override_explicit": args.override_explicit}
    if any(getattr(args, f"{tier.name.lower()}_model") for tier in Tier):
        route["models"] = {tier: getattr(args, f"{tier.name.lower()}_model") or DEFAULT_MODELS[tier] for tier in Tier}
    for bound in ("floor", "ceiling"):
        if getattr(args, bound):
            route[bound] = Tier[getattr(args, bound).upper()]
    options: dict[str, Any] = {"default_model": args.default_model}
    if args.prompt_cache:
        options["prompt_cache"] = PromptCacheMode(args.prompt_cache)
    if args.prompt_cache_ttl:
        options["prompt_cache_ttl"] = PromptCacheTtl(args.prompt_cache_ttl)
    if args.answer_cache:
        options["answer_cache"] = AnswerCacheMode.parse(args.answer_cache, "--answer-cache")
    if args.answer_cache_ttl is not None:
        options["answer_cache_ttl_s"] = args.answer_cache_ttl
    if args.semantic_threshold:
        try:
            options["semantic_threshold"] = Decimal(args.semantic_threshold)
        except ArithmeticError:
            raise InvalidRequestError("--semantic-threshold must be a cosine such as 0.962") from None
    try:
        policy = RoutePolicy(**route)
    except ConfigurationError as error:
        raise ConfigurationError(f"feature {args.name!r}: {error.message}") from None
    return FeatureConfig(args.name, route=policy, **options)


def _as_json(config: FeatureConfig) -> dict[str, str | bool | int | None]:
    route = config.route
    return {
        "feature": config.feature,
        "default_model": config.default_model,
        **{f"{tier.name.lower()}_model": route.models[tier] for tier in Tier},
        "floor": route.floor.name.lower(),
        "ceiling": route.ceiling.name.lower(),
        "override_explicit": route.override_explicit,
        "prompt_cache": config.prompt_cache.value,
        "prompt_cache_ttl": config.prompt_cache_ttl.value,
        "answer_cache": config.answer_cache.label,
        "answer_cache_ttl_s": config.answer_cache_ttl_s,
        "semantic_threshold": None if config.semantic_threshold is None else str(config.semantic_threshold),
    }

"""`costgate features set/list/delete` and `costgate prompt-cache` as a user runs them: the installed command
against a moto server."""

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from costgate.cache.model import AnswerCacheMode
from costgate.dal.features import DynamoFeatureStore, FeatureConfigItem
from costgate.dal.ledger import DynamoLedgerStore
from costgate.dal.table import bind_table
from costgate.gateway.features import FeatureConfig, PromptCacheMode, PromptCacheTtl
from costgate.routing.prompt_cache import GapBucket, PrefixUse
from costgate.routing.router import RoutePolicy, Tier
from costgate_local.stack.aws import LocalAwsEndpoints, create_table, environment
from tests.e2e.test_cli import costgate
from tests.fakes.accounting import make_entry

SYSTEM = "3f9a0c4d5e6b7a8190a1b2c3d4e5f607"
TOOLS = "b7c1d2e3f4a5968778695a4b3c2d1e0f"
DEFAULTS = {
    "default_model": None,
    "simple_model": "claude-haiku-5-5",
    "medium_model": "claude-sonnet-5-5",
    "complex_model": "claude-opus-5-5",
    "floor": "simple",
    "ceiling": "complex",
    "override_explicit": False,
    "prompt_cache": "auto",
    "prompt_cache_ttl": "auto",
    "answer_cache": "semantic",
    "answer_cache_ttl_s": 86400,
    "semantic_threshold": None,
}


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stdout.splitlines()]


@dataclass(frozen=True)
class Table:
    name: str
    env: dict[str, str]

    def run(self, *args: str) -> Ran:
        result = costgate(*args, env=self.env)
        return Ran(result.returncode, result.stdout, result.stderr)


@pytest.fixture
def table(local_aws: LocalAwsEndpoints) -> Iterator[Table]:
    """A fresh table on the test process's moto server; the env a subprocess needs to reach it."""
    name = f"costgate-features-{uuid.uuid4().hex[:12]}"
    env = {**local_aws.environ(), "COSTGATE_TABLE": name, "POWERTOOLS_METRICS_DISABLED": "true"}
    create_table(local_aws, name)
    with environment(env):
        bind_table(name)
        yield Table(name, env)


def assert_one_line_error(ran: Ran, *fragments: str) -> None:
    """Exit status 2, nothing on stdout, and one error line (after argparse's usage line, for a bad option)."""
    assert ran.returncode == 2, ran.stderr
    assert ran.stdout == ""
    lines = ran.stderr.strip().splitlines()
    if lines[0].startswith("usage: "):
        assert lines[-1].startswith("costgate features set: error: ")
        lines = lines[-1:]
    assert len(lines) == 1, ran.stderr
    assert lines[0].startswith("costgate")
    for fragment in fragments:
        assert fragment in lines[0]


# --- features -----------------------------------------------------------------------------------------------


def test_features_set_list_and_delete_round_trip(table: Table) -> None:
    # When an operator configures support-bot fully and chat with defaults only
    ran = table.run(
        "features", "set", "support-bot", "--default-model", "claude-opus-5-5", "--simple-model", "claude-haiku-4-5",
        "--medium-model", "claude-haiku-5-5", "--complex-model", "claude-sonnet-5-5", "--floor", "medium",
        "--ceiling", "medium", "--override-explicit", "--prompt-cache", "off", "--prompt-cache-ttl", "1h",
        "--answer-cache", "exact", "--answer-cache-ttl", "3600", "--semantic-threshold", "0.97",
    )  # fmt: skip
    support = {
        "feature": "support-bot",
        "default_model": "claude-opus-5-5",
        "simple_model": "claude-haiku-4-5",
        "medium_model": "claude-haiku-5-5",
        "complex_model": "claude-sonnet-5-5",
        "floor": "medium",
        "ceiling": "medium",
        "override_explicit": True,
        "prompt_cache": "off",
        "prompt_cache_ttl": "1h",
        "answer_cache": "exact",
        "answer_cache_ttl_s": 3600,
        "semantic_threshold": "0.97",
    }
    # Then each set prints the stored configuration as one JSON line
    assert ran.returncode == 0, ran.stderr
    assert ran.json_lines() == [support]
    ran = table.run("features", "set", "chat")
    assert ran.returncode == 0, ran.stderr
    assert ran.json_lines() == [{"feature": "chat", **DEFAULTS}]

    # And the gateway's store reads exactly what was set
    assert DynamoFeatureStore().get("support-bot") == FeatureConfig(
        "support-bot",
        route=RoutePolicy(
            models={
                Tier.SIMPLE: "claude-haiku-4-5",
                Tier.MEDIUM: "claude-haiku-5-5",
                Tier.COMPLEX: "claude-sonnet-5-5",
            },
            floor=Tier.MEDIUM,
            ceiling=Tier.MEDIUM,
            override_explicit=True,
        ),
        default_model="claude-opus-5-5",
        prompt_cache=PromptCacheMode.OFF,
        prompt_cache_ttl=PromptCacheTtl.ONE_HOUR,
        answer_cache=AnswerCacheMode.EXACT,
        answer_cache_ttl_s=3600,
        semantic_threshold=Decimal("0.97"),
    )
    assert DynamoFeatureStore().get("chat") == FeatureConfig("chat")

    # When they are listed as JSON lines and as a table
    as_json = table.run("features", "list", "--json")
    as_table = table.run("features", "list")

    # Then both hold both features, by name
    assert as_json.returncode == 0, as_json.stderr
    assert as_json.json_lines() == [{"feature": "chat", **DEFAULTS}, support]
    assert as_table.returncode == 0, as_table.stderr
    header, chat_row, support_row = as_table.stdout.splitlines()
    assert header.split() == [
        "feature", "default", "model", "simple", "medium", "complex", "floor", "ceiling", "override", "cache", "ttl",
    ]  # fmt: skip
    assert chat_row.split() == [
        "chat", "-", "claude-haiku-5-5", "claude-sonnet-5-5", "claude-opus-5-5", "simple", "complex", "no", "auto",
        "auto",
    ]  # fmt: skip
    assert support_row.split() == [
        "support-bot", "claude-opus-5-5", "claude-haiku-4-5", "claude-haiku-5-5", "claude-sonnet-5-5", "medium",
        "medium", "yes", "off", "1h",
    ]  # fmt: skip

    # When support-bot is deleted, twice
    ran = table.run("features", "delete", "support-bot")
    assert ran.returncode == 0, ran.stderr
    assert ran.json_lines() == [{"deleted": {"feature": "support-bot"}}]
    ran = table.run("features", "delete", "support-bot")
    assert ran.returncode == 1
    assert ran.stderr.strip() == "costgate: feature support-bot has no stored configuration"

    # Then only chat remains
    assert [row["feature"] for row in table.run("features", "list", "--json").json_lines()] == ["chat"]


def test_set_replaces_the_whole_configuration(table: Table) -> None:
    # Given a feature with a floor, an explicit override and a cache TTL
    table.run("features", "set", "chat", "--floor", "medium", "--override-explicit", "--prompt-cache-ttl", "5m")
    # When it is set again with only a complex model
    ran = table.run("features", "set", "chat", "--complex-model", "claude-sonnet-5-5")
    # Then everything left out is back to its default, and the other tiers keep the default models
    assert ran.returncode == 0, ran.stderr
    expected = {"feature": "chat", **DEFAULTS, "complex_model": "claude-sonnet-5-5"}
    assert ran.json_lines() == [expected]
    assert table.run("features", "list", "--json").json_lines() == [expected]


def test_an_empty_list_says_so(table: Table) -> None:
    ran = table.run("features", "list")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[-1] == "(no feature configurations: every feature uses the defaults)"
    assert table.run("features", "list", "--json").stdout == ""


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ["--medium-model", "claude-unknown-9"],
            ["costgate: feature 'chat': route policy maps tier medium to 'claude-unknown-9', which has no price"],
        ),
        (["--default-model", "gpt-5"], ["costgate: feature 'chat': default model 'gpt-5' has no price"]),
        (
            ["--floor", "complex", "--ceiling", "simple"],
            ["costgate: feature 'chat': route policy floor complex is above its ceiling simple"],
        ),
        (["--floor", "huge"], ["argument --floor: invalid choice: 'huge'"]),
        (["--prompt-cache-ttl", "24h"], ["argument --prompt-cache-ttl: invalid choice: '24h'"]),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2_storing_nothing(
    table: Table, args: list[str], fragments: list[str]
) -> None:
    assert_one_line_error(table.run("features", "set", "chat", *args), *fragments)
    assert table.run("features", "list", "--json").stdout == ""


def test_a_bad_feature_name_is_refused(table: Table) -> None:
    assert_one_line_error(table.run("features", "set", "chat#1"), "feature 'chat#1' is invalid")
    assert_one_line_error(table.run("features", "delete", "a b"), "feature 'a b' is invalid")


def test_a_stored_configuration_that_no_longer_validates_is_named_and_can_be_replaced(table: Table) -> None:
    # Given a configuration whose simple model has since left the price book
    FeatureConfigItem(
        "FEATURECFG", "legacy", feature="legacy", simple_model="claude-gone-1", medium_model="claude-sonnet-5-5",
        complex_model="claude-opus-5-5", floor="simple", ceiling="complex", override_explicit=False,
        prompt_cache="auto", prompt_cache_ttl="auto",
    ).save()  # fmt: skip
    # When it is listed, it is a clear error naming the feature
    assert_one_line_error(table.run("features", "list"), "feature 'legacy'", "'claude-gone-1'", "features set legacy")
    # And setting it again fixes the list
    assert table.run("features", "set", "legacy").returncode == 0
    assert table.run("features", "list", "--json").json_lines() == [{"feature": "legacy", **DEFAULTS}]


# --- prompt-cache -----------------------------------------------------------------------------------------


def record_prefix_traffic() -> None:
    """chat: a system prefix written once and read twice (it pays), a tool prefix written twice and never
    read (wasted); search: a client-managed prefix that read once."""
    at = datetime.now(UTC) - timedelta(minutes=10)

    def prefix_use(
        prefix: str, write: int, read: int, premium: str, saved: str, managed_by: str = "costgate"
    ) -> PrefixUse:
        return PrefixUse(
            prefix_key=prefix,
            model="claude-sonnet-5-5",
            managed_by="client" if managed_by == "client" else "costgate",
            ttl="5m",
            gap=None if managed_by == "client" else GapBucket.WITHIN_5M,
            write_tokens=write,
            read_tokens=read,
            write_premium_usd=Decimal(premium),
            read_saved_usd=Decimal(saved),
        )

    uses = [
        ("chat", prefix_use(SYSTEM, 4000, 0, "0.003", "0")),
        ("chat", prefix_use(SYSTEM, 0, 4000, "0", "0.0108")),
        ("chat", prefix_use(SYSTEM, 0, 4000, "0", "0.0108")),
        ("chat", prefix_use(TOOLS, 1500, 0, "0.001125", "0")),
        ("chat", prefix_use(TOOLS, 1500, 0, "0.001125", "0")),
        ("search", prefix_use(SYSTEM, 0, 1234, "0", "0.0033318", managed_by="client")),
    ]
    ledger = DynamoLedgerStore()
    for n, (feature, use) in enumerate(uses):
        entry = make_entry(f"req-{n}", at=at + timedelta(seconds=n), feature=feature, prompt_cache=use)
        assert ledger.record(entry) is True


def test_prompt_cache_lists_every_prefix_and_marks_the_wasted_one(table: Table) -> None:
    # Given recorded traffic with a paying prefix, a wasted one and another feature's
    record_prefix_traffic()

    # When the operator lists the prefixes as a table
    ran = table.run("prompt-cache")

    # Then each prefix is one row, by feature then net saving, the wasted one first and marked
    assert ran.returncode == 0, ran.stderr
    header, *rows = ran.stdout.splitlines()
    assert header.split() == [
        "feature", "prefix", "model", "managed_by", "requests", "write", "tokens", "read", "tokens", "write",
        "premium", "USD", "read", "saved", "USD", "net", "USD",
    ]  # fmt: skip
    assert [row.split() for row in rows] == [
        ["chat", TOOLS[:12], "claude-sonnet-5-5", "costgate", "2", "3,000", "0", "0.00225", "0", "-0.00225", "WASTED"],
        ["chat", SYSTEM[:12], "claude-sonnet-5-5", "costgate", "3", "4,000", "8,000", "0.003", "0.0216", "0.0186"],
        ["search", SYSTEM[:12], "claude-sonnet-5-5", "client", "1", "0", "1,234", "0", "0.0033318", "0.0033318"],
    ]
    # And the marker lines up under its own column
    assert rows[0].index("WASTED") > header.index("net USD")


def test_prompt_cache_as_json_and_for_one_feature(table: Table) -> None:
    record_prefix_traffic()

    ran = table.run("prompt-cache", "--feature", "chat", "--json")

    assert ran.returncode == 0, ran.stderr
    wasted, paying = ran.json_lines()
    assert {k: v for k, v in wasted.items() if k not in ("first_seen", "last_seen")} == {
        "feature": "chat",
        "prefix_key": TOOLS,
        "model": "claude-sonnet-5-5",
        "managed_by": "costgate",
        "requests": 2,
        "write_tokens": 3000,
        "read_tokens": 0,
        "write_premium_usd": "0.00225",
        "read_saved_usd": "0",
        "net_saved_usd": "-0.00225",
        "wasted": True,
    }
    assert (paying["prefix_key"], paying["net_saved_usd"], paying["wasted"]) == (SYSTEM, "0.0186", False)
    first_seen = datetime.fromisoformat(str(paying["first_seen"]))
    last_seen = datetime.fromisoformat(str(paying["last_seen"]))
    assert last_seen - first_seen == timedelta(seconds=2)


def test_prompt_cache_with_nothing_recorded_and_a_bad_feature(table: Table) -> None:
    ran = table.run("prompt-cache")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[-1] == "(no prompt-cache prefixes recorded)"
    assert table.run("prompt-cache", "--json").stdout == ""
    assert_one_line_error(table.run("prompt-cache", "--feature", "chat#x"), "feature 'chat#x' is invalid")

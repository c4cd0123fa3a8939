"""The semantic cache's shipped similarity thresholds, one per embedder (`semantic_thresholds.json`).

Written by `costgate cache calibrate --defaults-file`; read here on the request path, so this module
stays free of the calibration tooling (datasets, disk caches) that only the CLI needs.
"""

import json
import re
from decimal import Decimal
from functools import cache
from importlib import resources

from costgate.errors import ConfigurationError

THRESHOLDS_FILE = "semantic_thresholds.json"


def default_threshold(embedder_id: str) -> Decimal:
    """The calibrated threshold shipped for this embedder; ConfigurationError for any other embedder."""
    entry = _thresholds().get(embedder_id)
    if entry is None:
        raise ConfigurationError(
            f"no calibrated semantic-cache threshold for embedder {embedder_id!r}: run `costgate cache calibrate` "
            "with it and configure the threshold, or use one of: " + ", ".join(sorted(_thresholds()))
        )
    return entry


@cache
def _thresholds() -> dict[str, Decimal]:
    raw = json.loads(resources.files("costgate.cache").joinpath(THRESHOLDS_FILE).read_bytes())
    thresholds: dict[str, Decimal] = {}
    for embedder_id, entry in raw.items():
        value = entry.get("threshold") if isinstance(entry, dict) else None
        if not isinstance(value, str) or not re.fullmatch(r"0\.\d{3}|1\.000", value):
            raise ConfigurationError(f'{THRESHOLDS_FILE}: {embedder_id}: threshold must be a string such as "0.960"')
        thresholds[embedder_id] = Decimal(value)
    return thresholds

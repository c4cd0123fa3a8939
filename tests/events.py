"""The one loader for event fixtures: events/<function>/<scenario>.json, shared with `sam local invoke -e`."""

import json
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parents[1] / "events"


def load_event(function: str, scenario: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS_DIR / function / f"{scenario}.json").read_text(encoding="utf-8"))
    return event

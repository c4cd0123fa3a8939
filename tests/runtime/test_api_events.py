"""ApiFunction's handler under the streaming runtime, fed every event in events/api/.

Each event goes through the runtime loop and the local Runtime API (the prelude and body as the runtime
sends them to Lambda) and, separately, to the handler in this process with an in-memory response stream:
the HTTP response must be the same.
"""

import json
from pathlib import Path
from typing import Any

import pytest

from costgate.runtime.loop import as_streaming
from costgate_local.stack.runtime_api import ResponseEnd, invoke_in_memory
from functions.api.handler import gateway, lambda_handler, ledger_store, settings
from tests.conftest import FakeLambdaContext
from tests.events import EVENTS_DIR, load_event
from tests.runtime.conftest import Serve, read_all

SCENARIOS = sorted(path.stem for path in (EVENTS_DIR / "api").glob("*.json"))
# What each fixture must get from a handler with an empty ledger and no Claude behind it.
EXPECTED_STATUS = {
    "costs": 200,
    "count_tokens": 401,  # the fixture's key is a placeholder
    "health": 200,
    "messages": 401,
    "messages_bad_json": 401,  # the key is checked before the body is parsed
    "messages_no_key": 401,
    "messages_stream": 401,
    "request": 401,
}


@pytest.fixture(autouse=True)
def fresh_handler_caches(ledger_table: str) -> None:
    for cached in (settings, ledger_store, gateway):
        cached.cache_clear()


def test_every_api_event_has_an_expected_status() -> None:
    assert set(SCENARIOS) == set(EXPECTED_STATUS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_runtime_answers_each_event_as_the_handler_does(scenario: str, serve: Serve) -> None:
    # Given an event from events/api/ (the files `sam local invoke -e` takes)
    event = load_event("api", scenario)
    # When it is invoked through the runtime loop and, separately, on the handler itself
    reader, body, end = read_all(serve(as_streaming(lambda_handler), 1).invoke(event))
    direct: dict[str, Any] = invoke_in_memory(lambda_handler, event, FakeLambdaContext())
    # Then the status, headers and body are the same, and the response ended without an error
    assert end == ResponseEnd({})
    assert reader.prelude is not None
    assert reader.prelude.status_code == direct["statusCode"] == EXPECTED_STATUS[scenario]
    pairs = [(name, value) for name, values in direct["multiValueHeaders"].items() for value in values]
    assert reader.prelude.header_list() == pairs
    assert body.decode() == direct["body"]
    if reader.prelude.status_code >= 400:
        assert json.loads(body)["type"] == "error"  # Anthropic's error shape


def test_events_dir_is_the_repository_one() -> None:
    assert Path(__file__).resolve().parents[2] / "events" == EVENTS_DIR

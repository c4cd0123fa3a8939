"""Fixtures: a simulator on a ManualClock per test, and the official SDK pointed at it."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import pytest
from anthropic.types import Message, TextBlock

from costgate_local.simulator import ManualClock, Simulator, SimulatorOptions

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
API_KEY = "sk-sim-test"
BATCH_DELAY = timedelta(seconds=3)
# One sentence of 18 tokens under the simulator's base tokenizer; repeated to size a prompt.
SENTENCE = "Costgate keeps every Claude request within budget and explains each cost. "


def prose(sentences: int) -> str:
    return (SENTENCE * sentences).strip()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def sim(clock: ManualClock) -> Iterator[Simulator]:
    with Simulator(SimulatorOptions(clock=clock, batch_delay=BATCH_DELAY, seed=0)) as simulator:
        yield simulator


@pytest.fixture
def client(sim: Simulator) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=sim.base_url, api_key=API_KEY, max_retries=0) as sdk:
        yield sdk


def sdk(sim: Simulator, api_key: str = API_KEY, max_retries: int = 0) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sim.base_url, api_key=api_key, max_retries=max_retries)


def prompt_total(usage: Any) -> int:
    """Every prompt token of a usage object: input + cache writes + cache reads."""
    return int(usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens)


def error_body(error: anthropic.APIStatusError) -> dict[str, Any]:
    """The error's JSON body (the SDK types it `object`: it is whatever the server sent)."""
    assert isinstance(error.body, dict), error.body
    return error.body


def first_text(message: Message) -> str:
    """The text of the message's first block, which must be a text block."""
    block = message.content[0]
    assert isinstance(block, TextBlock), block
    return block.text

"""Runtime loops served by the local Runtime API stand-in, each bounded in invocations and time."""

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from costgate.runtime.api import RuntimeApiClient
from costgate.runtime.loop import FunctionInfo, Handler, run
from costgate.runtime.prelude import PreludeReader
from costgate_local.stack.runtime_api import (
    FunctionError,
    LocalRuntimeApi,
    PendingInvocation,
    ResponseChunk,
    ResponseEnd,
)

INFO = FunctionInfo(name="ApiFunction", version="$LATEST", memory_mb=1024, log_group="/aws/lambda/x", log_stream="s")
# A bound, not a speed check: the cost report of events/api/costs.json reads 29 days × 17 rollup partitions
# × 2 item kinds from moto, which takes seconds on a busy machine.
WAIT_S = 60.0

type Serve = Callable[..., LocalRuntimeApi]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """`serve(handler, invocations, **api_options)`: a stand-in and a loop thread that stops after `invocations`."""
    started: list[tuple[LocalRuntimeApi, threading.Thread]] = []

    def start(
        handler: Handler, invocations: int, environ: dict[str, str] | None = None, **options: Any
    ) -> LocalRuntimeApi:
        api = LocalRuntimeApi(**options).start()
        client = RuntimeApiClient(api.address)
        thread = threading.Thread(
            target=run,
            args=(client, handler, INFO),
            kwargs={"environ": environ, "max_invocations": invocations},
            daemon=True,
        )
        thread.start()
        started.append((api, thread))
        return api

    yield start
    for api, thread in started:
        thread.join(timeout=WAIT_S)
        api.close()
        assert not thread.is_alive()


def read_all(pending: PendingInvocation) -> tuple[PreludeReader, bytes, ResponseEnd | FunctionError]:
    """The whole response: the prelude (in the reader), the body, and how it ended."""
    reader, body = PreludeReader(), b""
    while True:
        item = pending.get(WAIT_S)
        if isinstance(item, ResponseChunk):
            body += reader.feed(item.data)
        else:
            return reader, body, item

"""Every unit test starts with a cold container: no warm keys, metrics off."""

from collections.abc import Iterator

import pytest

from costgate.gateway import keys as keys_module


@pytest.fixture(autouse=True)
def cold_container(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh warm-key cache per test; metrics off (recording a request emits EMF)."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    keys_module._WARM_CACHE.clear()
    yield
    keys_module._WARM_CACHE.clear()

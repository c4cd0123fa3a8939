"""What the prompt-cache policy reads of its own history."""

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from costgate.routing.prompt_cache import GapHistogram, PrefixStats


class PromptCacheStore(Protocol):
    """What the prompt-cache policy has observed: per prefix, and the gap histogram per feature.

    Written only through `LedgerStore.record` (with the request's ledger row); read here.
    """

    def last_seen(self, feature: str, prefix_key: str) -> "datetime | None":
        """When this feature last sent this prefix (any request recorded with it); None if never."""
        ...

    def gap_histogram(self, feature: str) -> "GapHistogram":
        """The feature's gaps between requests with the same prefix, observed over the last 7 UTC days
        (today, by the store's clock, and the six before). May be up to 60 s stale."""
        ...

    def prefixes(self, feature: str | None = None) -> list["PrefixStats"]:
        """Every tracked prefix (of one feature, or all), by feature, then net saving, lowest first."""
        ...

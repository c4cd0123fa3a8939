"""What the aggregator writes to and reads from: its targets, the ended rows the stream delivers, and what some
of those rows add to one target (docs/scale.md §4). Types only: `costgate.accounting.aggregator` sums them,
`costgate.accounting.ports.RollupStore` stores them."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from costgate.accounting.ledger import LedgerEntry, RequestState, ReservedRequest

SEQUENCE_DIGITS = 40


@dataclass(frozen=True)
class RollupTarget:
    day: date
    hour: int
    tenant: str
    feature: str
    model: str
    # Kept apart for reconciliation with Anthropic's records, which come per service tier.
    service_tier: str = "standard"


@dataclass(frozen=True)
class RejectionTarget:
    day: date
    hour: int
    tenant: str
    feature: str


@dataclass(frozen=True)
class PrefixTarget:
    feature: str
    prefix_key: str


@dataclass(frozen=True)
class GapTarget:
    feature: str
    day: date


type Target = RollupTarget | RejectionTarget | PrefixTarget | GapTarget


@dataclass(frozen=True)
class Ended:
    """One ledger row reaching an end state, as the stream recorded it.

    `entry` for a settled row, `request` for a swept or refused one; `sequence` zero-padded.
    """

    sequence: str
    state: RequestState
    entry: LedgerEntry | None = None
    request: ReservedRequest | None = None

    def __post_init__(self) -> None:
        if len(self.sequence) != SEQUENCE_DIGITS or not self.sequence.isdigit():
            raise ValueError(f"a sequence number is {SEQUENCE_DIGITS} digits, not {self.sequence!r}")
        if self.state is RequestState.SETTLED and self.entry is None:
            raise ValueError("a settled event carries its ledger entry")
        if self.state in (RequestState.SWEPT, RequestState.REFUSED) and self.request is None:
            raise ValueError(f"a {self.state.value} event carries its reserved row")


@dataclass(frozen=True)
class TargetDelta:
    """What some records add to one target: counters to ADD, values to SET, and the records' sequence range.

    `sets` maps a field to its new value (None: remove it); `seen` is (earliest, latest) `at` for a
    prefix target.
    """

    first: str
    last: str
    adds: Mapping[str, int | Decimal]
    sets: Mapping[str, str | None] = field(default_factory=dict)
    seen: tuple[datetime, datetime] | None = None


def padded(sequence: str) -> str:
    """A stream sequence number (21-40 digits) as the 40-digit text marks compare."""
    if not sequence.isdigit() or len(sequence) > SEQUENCE_DIGITS:
        raise ValueError(f"not a stream sequence number: {sequence!r}")
    return sequence.rjust(SEQUENCE_DIGITS, "0")

"""dal.table.transact against moto: commit, conflicts retried with backoff, failed conditions handed back (or
retried when the caller says so), attempts exhausted, other errors raised as they came.

moto never cancels a transaction for a conflict, so conflicts are scripted on the shared connection:
queued errors are raised by the next TransactWriteItems calls, then the calls reach moto again.
"""

import contextlib
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from pynamodb.attributes import UnicodeAttribute
from pynamodb.exceptions import CancellationReason, DoesNotExist, TransactWriteError, VerboseClientError
from pynamodb.transactions import TransactWrite

from costgate.dal.table import MAX_TRANSACTION_ATTEMPTS, CostgateItem, transact, transaction_connection
from costgate.errors import ConflictError, UpstreamError


class TransactMarker(CostgateItem, discriminator="test_transact_marker"):
    """An item for these tests only.  PK: TEST#<name>  SK: MARKER"""

    note = UnicodeAttribute(null=True)


class ScriptedTransactions:
    """Stands in for the shared connection's transact_write_items: raises `errors` in order, then calls moto."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.errors: list[TransactWriteError] = []
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.real(*args, **kwargs)


@pytest.fixture
def transactions(ledger_table: str, monkeypatch: pytest.MonkeyPatch) -> ScriptedTransactions:
    connection = transaction_connection()
    scripted = ScriptedTransactions(connection.transact_write_items)
    monkeypatch.setattr(connection, "transact_write_items", scripted)
    return scripted


def marker(name: str, note: str | None = None) -> TransactMarker:
    return TransactMarker(f"TEST#{name}", "MARKER", note=note)


def stored(*names: str) -> dict[str, str | None]:
    """The note of each named marker that exists."""
    found: dict[str, str | None] = {}
    for name in names:
        with contextlib.suppress(DoesNotExist):
            found[name] = TransactMarker.get(f"TEST#{name}", "MARKER", consistent_read=True).note
    return found


def cancelled(*codes: str | None, response_code: str = "TransactionCanceledException") -> TransactWriteError:
    """The error pynamodb raises for a cancelled transaction: one reason per item, None where it did not fail."""
    cause = VerboseClientError(
        {"Error": {"Code": response_code, "Message": "Transaction cancelled"}},
        "TransactWriteItems",
        cancellation_reasons=[CancellationReason(code=code) if code else None for code in codes],
    )
    return TransactWriteError("Failed to write transaction items", cause)


def save_both(transaction: TransactWrite) -> None:
    transaction.save(marker("a"))
    transaction.save(marker("b"))


def add_b_then_put_new_a(transaction: TransactWrite) -> None:
    transaction.update(marker("b"), actions=[TransactMarker.note.set("b")])
    transaction.save(marker("a", note="new"), condition=TransactMarker.pk.does_not_exist())


def test_a_transaction_that_commits_at_once_returns_none(transactions: ScriptedTransactions) -> None:
    sleeps: list[float] = []

    # When two items are written in one transaction with nothing in the way
    codes = transact(save_both, area="test", what="save markers", sleep=sleeps.append)

    # Then both are stored, by one call and without a wait
    assert codes is None
    assert stored("a", "b") == {"a": None, "b": None}
    assert (transactions.calls, sleeps) == (1, [])


@pytest.mark.parametrize(
    "conflict",
    [cancelled(None, "TransactionConflict"), cancelled(response_code="TransactionConflictException")],
    ids=["cancellation reason", "response code"],
)
def test_a_conflict_is_retried_after_a_backoff(
    transactions: ScriptedTransactions, conflict: TransactWriteError, caplog: pytest.LogCaptureFixture
) -> None:
    # Given another transaction holding one of the items the first time
    transactions.errors = [conflict]
    sleeps: list[float] = []

    # When the items are written
    codes = transact(save_both, area="test", what="save markers", sleep=sleeps.append)

    # Then the second try commits them, after one jittered wait of at most the first backoff (10 ms × 2)
    assert codes is None
    assert stored("a", "b") == {"a": None, "b": None}
    assert transactions.calls == 2
    assert len(sleeps) == 1
    assert 0 <= sleeps[0] <= 0.02
    (retried,) = [r for r in caplog.records if r.getMessage() == "test: transaction conflict, retrying"]
    assert (vars(retried)["what"], vars(retried)["attempt"]) == ("save markers", 1)


@pytest.mark.parametrize("retry_refused", [None, lambda codes: False], ids=["default", "declined"])
def test_a_failed_condition_returns_each_items_code_without_a_retry(
    transactions: ScriptedTransactions, retry_refused: Callable[[list[str | None]], bool] | None
) -> None:
    # Given item a exists
    marker("a", note="old").save()
    sleeps: list[float] = []

    # When a transaction updates b and puts a on condition that a does not exist
    codes = transact(add_b_then_put_new_a, area="test", what="put a", sleep=sleeps.append, retry_refused=retry_refused)

    # Then the codes come back in the order DynamoDB got the items (puts before updates), once, nothing written
    assert codes == ["ConditionalCheckFailed", None]
    assert (transactions.calls, sleeps) == (1, [])
    assert stored("a", "b") == {"a": "old"}


def test_a_failed_condition_the_caller_retries_is_tried_again(
    transactions: ScriptedTransactions, caplog: pytest.LogCaptureFixture
) -> None:
    # Given item a exists, and a caller that expects what the condition guards to change
    marker("a", note="old").save()
    sleeps: list[float] = []
    refusals: list[list[str | None]] = []

    def worth_retrying(codes: list[str | None]) -> bool:
        refusals.append(codes)
        marker("a").delete()  # what changed between the refusal and the retry
        return True

    # When the transaction is refused the first time
    codes = transact(add_b_then_put_new_a, area="test", what="put a", sleep=sleeps.append, retry_refused=worth_retrying)

    # Then the caller saw the codes once, and the second try committed after one wait
    assert codes is None
    assert refusals == [["ConditionalCheckFailed", None]]
    assert stored("a", "b") == {"a": "new", "b": "b"}
    assert (transactions.calls, len(sleeps)) == (2, 1)
    (retried,) = [r for r in caplog.records if r.getMessage() == "test: refused condition, retrying"]
    assert vars(retried)["reasons"] == ["ConditionalCheckFailed", None]


def test_a_caller_that_raises_on_a_failed_condition_ends_the_transaction(transactions: ScriptedTransactions) -> None:
    marker("a").save()
    sleeps: list[float] = []

    def final(codes: list[str | None]) -> bool:
        raise ConflictError("a is already there")

    with pytest.raises(ConflictError, match="a is already there"):
        transact(add_b_then_put_new_a, area="test", what="put a", sleep=sleeps.append, retry_refused=final)
    assert (transactions.calls, sleeps) == (1, [])


def test_a_failed_condition_comes_back_even_when_another_item_conflicted(transactions: ScriptedTransactions) -> None:
    transactions.errors = [cancelled("ConditionalCheckFailed", "TransactionConflict")]
    sleeps: list[float] = []

    codes = transact(save_both, area="test", what="save markers", sleep=sleeps.append)

    assert codes == ["ConditionalCheckFailed", "TransactionConflict"]
    assert (transactions.calls, sleeps) == (1, [])


def test_a_conflict_is_retried_without_asking_the_caller(transactions: ScriptedTransactions) -> None:
    transactions.errors = [cancelled("TransactionConflict", None)]
    asked: list[list[str | None]] = []

    def retry(codes: list[str | None]) -> bool:
        asked.append(codes)
        return True

    codes = transact(add_b_then_put_new_a, area="test", what="put a", sleep=lambda _: None, retry_refused=retry)

    assert codes is None
    assert asked == []
    assert transactions.calls == 2


@pytest.mark.parametrize("attempts", [3, None], ids=["given", "default"])
def test_conflicts_on_every_attempt_raise_upstream_error(
    transactions: ScriptedTransactions, attempts: int | None
) -> None:
    # Given an item held by other transactions on every try
    tries = attempts or MAX_TRANSACTION_ATTEMPTS
    transactions.errors = [cancelled("TransactionConflict", None) for _ in range(tries)]
    sleeps: list[float] = []
    write = partial(transact, save_both, area="test", what="save markers", sleep=sleeps.append)

    # When the items are written
    with pytest.raises(UpstreamError, match=f"^test: could not save markers after {tries} attempts$"):
        write() if attempts is None else write(attempts=attempts)

    # Then each try was made once, each followed by a wait that doubles its bound, and nothing was written
    assert transactions.calls == tries
    assert len(sleeps) == tries
    assert all(0 <= wait <= 0.01 * 2**attempt for attempt, wait in enumerate(sleeps, start=1))
    assert stored("a", "b") == {}


@pytest.mark.parametrize(
    "error",
    [cancelled(None, "ThrottlingError"), cancelled(response_code="ProvisionedThroughputExceededException")],
    ids=["other cancellation reason", "other response code"],
)
def test_an_error_that_is_not_a_conflict_is_raised_at_once(
    transactions: ScriptedTransactions, error: TransactWriteError
) -> None:
    transactions.errors = [error]
    sleeps: list[float] = []

    with pytest.raises(TransactWriteError) as raised:
        transact(save_both, area="test", what="save markers", sleep=sleeps.append)

    assert raised.value is error
    assert (transactions.calls, sleeps) == (1, [])


def test_a_transaction_dynamodb_refuses_to_run_is_raised_at_once(transactions: ScriptedTransactions) -> None:
    # Given a transaction with two operations on one item (DynamoDB validates that before running it)
    def twice(transaction: TransactWrite) -> None:
        transaction.save(marker("a"))
        transaction.update(marker("a"), actions=[TransactMarker.note.set("again")])

    sleeps: list[float] = []

    with pytest.raises(TransactWriteError) as raised:
        transact(twice, area="test", what="save a twice", sleep=sleeps.append)

    assert raised.value.cause_response_code == "ValidationException"
    assert (transactions.calls, sleeps) == (1, [])
    assert stored("a") == {}


def test_an_error_while_filling_the_transaction_propagates_without_a_call(
    transactions: ScriptedTransactions,
) -> None:
    def broken(transaction: TransactWrite) -> None:
        raise ValueError("no such item")

    with pytest.raises(ValueError, match="no such item"):
        transact(broken, area="test", what="write nothing", sleep=lambda _: None)
    assert transactions.calls == 0

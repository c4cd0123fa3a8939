"""The single DynamoDB table: its base model, key names and the attribute types money needs.

template.yaml declares the same key schema and TTL attribute (a test checks they match).
Entities subclass `CostgateItem`; each states its key pattern in its docstring.
"""

import random
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import Any, Final

from pynamodb.attributes import Attribute, DiscriminatorAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.constants import NUMBER
from pynamodb.exceptions import TransactWriteError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from costgate.errors import UpstreamError
from costgate.observability import logger

PARTITION_KEY = "PK"
SORT_KEY = "SK"
TTL_ATTRIBUTE = "expires_at"


class DecimalAttribute(Attribute[Decimal]):
    """A DynamoDB number kept as an exact Decimal (pynamodb's NumberAttribute goes through float).

    Serialised in fixed-point notation: DynamoDB accepts exponents, but some emulators
    (moto) parse numbers without a '.' as integers, and '1E-7' would break their ADD.
    """

    attr_type = NUMBER

    def serialize(self, value: Decimal) -> str:
        if not isinstance(value, Decimal):
            raise TypeError(f"DecimalAttribute takes a Decimal, not {type(value).__name__}")
        return format(value, "f")

    def deserialize(self, value: str) -> Decimal:
        return Decimal(value)


class CostgateItem(Model):
    """Base of every entity in the table: generic keys, a discriminator and the TTL attribute."""

    class Meta:
        table_name = "costgate"  # replaced by bind_table() from the function's settings
        region: str | None = None  # None: botocore's default region (AWS_REGION / AWS_DEFAULT_REGION)

    pk = UnicodeAttribute(hash_key=True, attr_name=PARTITION_KEY)
    sk = UnicodeAttribute(range_key=True, attr_name=SORT_KEY)
    entity = DiscriminatorAttribute(attr_name="entity")
    expires_at = NumberAttribute(null=True, attr_name=TTL_ATTRIBUTE)


# DynamoDB cancels a transaction that touches an item another transaction holds; such conflicts
# are expected on a busy item (a rollup, a budget counter) and clear within a few retries.
MAX_TRANSACTION_ATTEMPTS = 12
_BASE_DELAY_S = 0.01

CONDITION_FAILED: Final = "ConditionalCheckFailed"


@cache
def transaction_connection() -> Connection:
    """The one connection every store's transactions share (one botocore client, not one per store)."""
    meta = CostgateItem.Meta
    return Connection(region=getattr(meta, "region", None), host=getattr(meta, "host", None))


def cancellation_codes(error: TransactWriteError) -> list[str | None]:
    """Why each item of a cancelled transaction failed, in the transaction's order."""
    return [reason.code if reason else None for reason in error.cancellation_reasons]


def is_transaction_conflict(error: TransactWriteError) -> bool:
    codes = cancellation_codes(error)
    return "TransactionConflict" in codes or error.cause_response_code == "TransactionConflictException"


def conflict_backoff(attempt: int, sleep: Callable[[float], None]) -> None:
    """Full jitter, doubling per attempt: contending writers spread out instead of colliding again."""
    sleep(random.uniform(0, _BASE_DELAY_S * 2**attempt))  # noqa: S311 - jitter, not crypto


def transact(
    write: Callable[[TransactWrite], None],
    *,
    area: str,
    what: str,
    sleep: Callable[[float], None],
    attempts: int = MAX_TRANSACTION_ATTEMPTS,
    retry_refused: Callable[[list[str | None]], bool] | None = None,
) -> list[str | None] | None:
    """Commit one TransactWrite that `write` fills, retried while other transactions hold its items.

    Returns None once committed. A cancellation with a failed condition is an answer, not retried,
    even if another item conflicted: its codes come back, one per item in the order DynamoDB got
    them (pynamodb sends condition checks, deletes, puts, then updates, whatever order `write` used),
    None where an item did not fail. Unless `retry_refused(codes)` says True: what the condition
    guards may have changed since, so it is retried like a conflict. It may raise instead.

    A conflict is retried after `conflict_backoff`, `attempts` tries in all, then UpstreamError
    "<area>: could not <what> after <attempts> attempts". Any other error propagates as it came.
    `write` runs once per try, on a new TransactWrite.
    """
    for attempt in range(1, attempts + 1):
        try:
            with TransactWrite(connection=transaction_connection()) as transaction:
                write(transaction)
        except TransactWriteError as error:
            codes = cancellation_codes(error)
            if CONDITION_FAILED in codes:
                if retry_refused is None or not retry_refused(codes):
                    return codes
                logger.info(
                    "%s: refused condition, retrying", area, extra={"what": what, "attempt": attempt, "reasons": codes}
                )
            elif is_transaction_conflict(error):
                logger.info("%s: transaction conflict, retrying", area, extra={"what": what, "attempt": attempt})
            else:
                raise
            conflict_backoff(attempt, sleep)
        else:
            return None
    raise UpstreamError(f"{area}: could not {what} after {attempts} attempts")


def bind_table(table_name: str, region: str | None = None) -> None:
    """Point every entity at the deployed table. The endpoint comes from AWS_ENDPOINT_URL, if set."""
    CostgateItem.Meta.table_name = table_name
    if region:
        CostgateItem.Meta.region = region
    # pynamodb builds a connection per model class, each with its own botocore session and client
    # (~0.15 s apiece on a cold start); every entity and every transaction shares one instead.
    transaction_connection.cache_clear()
    shared = transaction_connection()
    models = _all_models(CostgateItem)
    for model in models:
        model._connection = None
    # Every entity has the same table and key schema, so one meta-table serves them all.
    shared.add_meta_table(CostgateItem._get_connection().get_meta_table())
    for model in models:
        model._get_connection().connection = shared


def _all_models(base: type[Any]) -> list[type[Any]]:
    found = [base]
    for sub in base.__subclasses__():
        found.extend(_all_models(sub))
    return found

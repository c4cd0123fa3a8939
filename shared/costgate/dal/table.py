"""The single DynamoDB table: its base model, key names and the attribute types money needs.

template.yaml declares the same key schema and TTL attribute (a test checks they match).
Entities subclass `CostgateItem`; each states its key pattern in its docstring.
"""

import random
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import Any

from pynamodb.attributes import Attribute, DiscriminatorAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.constants import NUMBER
from pynamodb.exceptions import TransactWriteError
from pynamodb.models import Model

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

"""The single DynamoDB table: its base model, key names and the attribute types money needs.

template.yaml declares the same key schema and TTL attribute (a test checks they match).
Entities subclass `CostgateItem`; each states its key pattern in its docstring.
"""

from decimal import Decimal
from typing import Any

from pynamodb.attributes import Attribute, DiscriminatorAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.constants import NUMBER
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


def bind_table(table_name: str, region: str | None = None) -> None:
    """Point every entity at the deployed table. The endpoint comes from AWS_ENDPOINT_URL, if set."""
    CostgateItem.Meta.table_name = table_name
    if region:
        CostgateItem.Meta.region = region
    # pynamodb caches a connection per model class; drop them so the new table/region take effect.
    for model in _all_models(CostgateItem):
        model._connection = None


def _all_models(base: type[Any]) -> list[type[Any]]:
    found = [base]
    for sub in base.__subclasses__():
        found.extend(_all_models(sub))
    return found

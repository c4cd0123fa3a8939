"""Exact amounts of money: `Decimal` throughout, written out in plain decimal notation."""

from decimal import Decimal


def plain_decimal(value: Decimal) -> Decimal:
    """Drop trailing zeros without switching to exponent notation for whole numbers."""
    normal = value.normalize()
    exponent = normal.as_tuple().exponent
    return normal.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else normal


def format_usd(value: Decimal) -> str:
    """The exact decimal string of a cost, never in exponent notation: `0.014`, `12`, `0.0000055`."""
    return format(plain_decimal(value), "f")

"""Turning Decimal money into what the outputs show: JSON floats and "$1.23" text."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

_MICRO = Decimal("0.000001")


def usd(amount: Decimal | None) -> float | None:
    """A JSON number rounded to 1e-6 (the cli.md contract); None stays None (unknown)."""
    if amount is None:
        return None
    return float(amount.quantize(_MICRO, rounding=ROUND_HALF_EVEN))


def ratio(part: Decimal | int, whole: Decimal | int, scale: int = 1) -> float | None:
    """part / whole x scale rounded to 1e-6, or None when whole is 0 (no basis)."""
    if not whole:
        return None
    return float((Decimal(part) * scale / Decimal(whole)).quantize(_MICRO, rounding=ROUND_HALF_EVEN))


def fmt_usd(amount: Decimal | float | None) -> str:
    """"$4.20" for text; sub-cent amounts keep 4 decimals so they do not read as $0.00."""
    if amount is None:
        return "unknown"
    value = Decimal(str(amount)) if isinstance(amount, float) else amount
    sign, size = ("-" if value < 0 else ""), abs(value)
    if size != 0 and size < Decimal("0.01"):
        return f"{sign}${size:,.4f}"
    return f"{sign}${size:,.2f}"

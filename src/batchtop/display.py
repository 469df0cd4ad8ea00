"""Text for people: untrusted strings made safe to print, and money columns that add up.

Every text view (the console, `--once` text, `quote`, `dead-letters`, messages on
stderr) goes through here, so there is one rule for each:

- Provider content (batch ids, error messages, result text) and even names we accepted
  ourselves (a model called `gpt-4o-mini[/]`) are data. `clean` turns every C0/C1
  control character, DEL and bidirectional override into a visible stand-in, so no
  escape sequence (window title, OSC 52 clipboard write, clear screen) reaches a
  terminal. `cell` wraps the cleaned text in a Rich `Text`, which is never parsed as
  markup.
- Money in a column is shown at one precision per column, the smallest (2 to 6
  decimals) at which the displayed rows visibly add up to the displayed total and no
  non-zero amount reads as zero. JSON stays exact; only text is rounded.

No Textual here: Rich is a dependency of Textual and only its `Text` is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.text import Text

_BIDI = {0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def _visible(ch: str, keep_newlines: bool) -> str:
    code = ord(ch)
    if code == 0x0A and keep_newlines:
        return ch
    if code == 0x09:
        return " "
    if code == 0x0A or code == 0x0D:
        return " " if not keep_newlines else ("\n" if code == 0x0A else "")
    if code < 0x20:
        return chr(0x2400 + code)  # ␛ for ESC, ␇ for BEL, …
    if code == 0x7F:
        return "␡"
    if 0x80 <= code <= 0x9F or code in _BIDI:
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
    return ch


def _needs_work(text: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or ord(c) in _BIDI for c in text)


def clean(text: object, *, limit: int | None = None, keep_newlines: bool = False) -> str:
    """`text` with every control character made visible (ESC shows as ␛), on one line
    unless `keep_newlines`; cut to `limit` characters with an ellipsis."""
    value = "" if text is None else str(text)
    if _needs_work(value):
        value = "".join(_visible(c, keep_newlines) for c in value)
    if limit is not None and len(value) > limit:
        value = value[: max(0, limit - 1)] + "…"
    return value


def cell(text: object, style: str = "", *, limit: int | None = None) -> Text:
    """A Rich `Text` of the cleaned string: safe in a table cell, never read as markup."""
    from rich.text import Text

    return Text(clean(text, limit=limit), style=style)


# -- money -------------------------------------------------------------------------------

_MIN_DECIMALS, _MAX_DECIMALS = 2, 6


def _dec(value: Decimal | float | int) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _round(value: Decimal, decimals: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN)


_CLOSE = Decimal("0.05")
"""How far a shown amount may be from the real one: 5% (two significant digits)."""


def money_decimals(values: Sequence[Decimal | float | int | None], total: Decimal | float | int | None = None) -> int:
    """The precision for one money column: the fewest decimals (2..6) at which the
    rounded rows sum to the rounded total (when there is one) and every non-zero
    amount, the total included, is shown within 5% of itself ($0.00053 never reads
    as $0.001, nor $0.0058 as $0.01). Unknown amounts (None) are left out."""
    known = [_dec(v) for v in values if v is not None]
    whole = _dec(total) if total is not None else None
    amounts = known + ([whole] if whole is not None else [])
    for decimals in range(_MIN_DECIMALS, _MAX_DECIMALS + 1):
        if any(v != 0 and abs(_round(v, decimals) - v) > _CLOSE * abs(v) for v in amounts):
            continue
        if whole is not None and sum((_round(v, decimals) for v in known), Decimal(0)) != _round(whole, decimals):
            continue
        return decimals
    return _MAX_DECIMALS


def usd_text(value: Decimal | float | int | None, decimals: int = 2, *, unknown: str = "?") -> str:
    """`$1,234.50` at the given precision; `unknown` for None (never $0)."""
    if value is None:
        return unknown
    amount = _round(_dec(value), decimals)
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.{decimals}f}"


def money_column(
    values: Sequence[Decimal | float | int | None],
    total: Decimal | float | int | None = None,
    *,
    unknown: str = "?",
) -> tuple[list[str], str]:
    """Rows and total of one money column as text, at the one precision that makes
    them add up (`money_decimals`). The total is "" when none is given."""
    decimals = money_decimals(values, total)
    rows = [usd_text(v, decimals, unknown=unknown) for v in values]
    return rows, ("" if total is None else usd_text(total, decimals, unknown=unknown))


def usd_amount(value: Decimal | float | int | None, *, unknown: str = "unknown") -> str:
    """A lone amount in a sentence: 2 decimals, or as many (up to 6) as keep a non-zero
    amount from reading as $0.00."""
    if value is None:
        return unknown
    amount, decimals = abs(_dec(value)), _MIN_DECIMALS
    while decimals < _MAX_DECIMALS and amount != 0 and amount < Decimal(1).scaleb(1 - decimals):
        decimals += 1  # two significant digits for sub-cent amounts: $0.0058, not $0.01
    return usd_text(value, decimals, unknown=unknown)

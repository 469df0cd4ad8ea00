"""The one display rule for untrusted text and for money columns."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchtop.display import cell, clean, money_column, money_decimals, usd_amount


@pytest.mark.parametrize(
    "raw",
    [
        "\x1b]0;pwned\x07",  # window title, BEL-terminated
        "\x1b]52;c;ZXZpbA==\x1b\\",  # OSC 52 clipboard write, ST-terminated
        "\x1b[2J\x1b[H",  # clear screen
        "\x9b31m",  # C1 CSI
        "a\x7fb",
        "\u202eevil",  # right-to-left override
    ],
)
def test_clean_leaves_no_control_character(raw: str) -> None:
    out = clean(raw)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0x202A <= ord(c) <= 0x202E for c in out)
    assert out  # made visible, not silently dropped


@given(st.text())
def test_clean_is_always_printable(raw: str) -> None:
    out = clean(raw)
    assert all(ord(c) >= 0x20 and not 0x7F <= ord(c) <= 0x9F for c in out)
    assert clean(out) == out


def test_clean_limits_and_joins_lines() -> None:
    assert clean("a\nb\tc") == "a b c"
    assert clean("a\nb", keep_newlines=True) == "a\nb"
    assert clean("x" * 10, limit=5) == "xxxx…"


def test_cell_is_never_markup() -> None:
    text = cell("gpt-4o-mini[/]", "bold")
    assert text.plain == "gpt-4o-mini[/]"
    assert text.markup  # renders back as escaped markup, does not raise


def test_money_column_adds_up() -> None:
    # --once rows of $0.0058 and $0.0086 over a total of $0.0144 must not show "$0.01".
    rows, total = money_column([Decimal("0.0058"), Decimal("0.0086")], Decimal("0.0144"))
    assert rows == ["$0.0058", "$0.0086"] and total == "$0.0144"
    # one column never mixes precisions
    rows, total = money_column([Decimal("0.01"), Decimal("0.0012")], Decimal("0.0112"))
    assert len({len(r.split(".")[1]) for r in rows + [total]}) == 1


def test_money_column_keeps_two_decimals_when_they_add_up() -> None:
    rows, total = money_column([Decimal("12.50"), Decimal("3.75"), None], Decimal("16.25"))
    assert rows == ["$12.50", "$3.75", "?"] and total == "$16.25"


@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=8))
def test_money_column_sums_at_chosen_precision(micros: list[int]) -> None:
    values = [Decimal(m).scaleb(-6) for m in micros]
    total = sum(values, Decimal(0))
    rows, shown_total = money_column(values, total)
    parse = lambda s: Decimal(s.replace("$", "").replace(",", ""))  # noqa: E731
    assert sum((parse(r) for r in rows), Decimal(0)) == parse(shown_total)
    assert money_decimals(values, total) in range(2, 7)


def test_lone_amount_keeps_two_significant_digits() -> None:
    assert usd_amount(Decimal("0.0058")) == "$0.0058"
    assert usd_amount(Decimal("4.2")) == "$4.20"
    assert usd_amount(None) == "unknown"
    assert usd_amount(Decimal("-0.5")) == "-$0.50"


def test_money_column_never_shows_an_amount_far_from_itself() -> None:
    # the report's day of $0.00053 read as "$0.001" (89% off) at 3 decimals
    rows, total = money_column([Decimal("0.00053")], Decimal("0.00053"))
    assert rows == ["$0.00053"] and total == "$0.00053"
    rows, _ = money_column([Decimal("12.50"), Decimal("0.0123")], Decimal("12.5123"))
    assert rows == ["$12.500", "$0.012"]  # one precision for the column, each within 5%

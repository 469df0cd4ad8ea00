"""A DataTable that is diffed by row key, so the cursor survives every refresh, and
that sorts by any column (a key, or a click on the header, as in k9s)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable

from batchtop.tui.rows import Cell, Row, Signature, signature

_DURATION = re.compile(r"^(?:in )?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_NUMBER = re.compile(r"^[-+]?\$?[\d,]*\.?\d+")
_SIZES = {"B": 1, "kB": 1_000, "MB": 1_000_000}


def sort_value(cell: object) -> tuple[int, float, str]:
    """A cell's order: numbers (amounts, counts, percentages, sizes, durations, the
    done count of a progress bar) by value, anything else by its text; `-` last."""
    return _sort_value(str(cell))


@lru_cache(maxsize=8192)
def _sort_value(text: str) -> tuple[int, float, str]:
    """Cached: a sorted table re-sorts every refresh, and most of its texts recur."""
    text = text.strip()
    if text in ("", "-", "?"):
        return (2, 0.0, "")
    if text == "now":
        return (0, 0.0, "")
    if (m := _DURATION.match(text)) and any(m.groups()):
        d, h, mi, s = (int(g or 0) for g in m.groups())
        return (0, d * 86400.0 + h * 3600 + mi * 60 + s, "")
    bar = text.lstrip("█▒░ ")
    if (m := _NUMBER.match(bar)) is not None:
        value = float(m.group().replace("$", "").replace(",", ""))
        unit = bar[m.end():].strip().split(" ")[0] if bar[m.end():].startswith(" ") else ""
        return (0, value * _SIZES.get(unit, 1), "")
    return (1, 0.0, text.lower())


class LiveTable(DataTable[Cell]):
    """Rows are replaced by `sync`: vanished keys removed, changed cells updated, new
    keys added, then the order fixed. The cursor stays on its row key and on the same
    line of the view (htop): rows arriving above it do not push it off screen."""

    DEFAULT_CSS = """
    LiveTable { height: auto; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("home,g", "scroll_top", "Top", show=False, id="batchtop.table.top"),
        Binding("end,G", "scroll_bottom", "Bottom", show=False, id="batchtop.table.bottom"),
        Binding("s", "sort_next", "Sort", show=False, id="batchtop.table.sort"),
        Binding("S", "sort_reverse", "Reverse", show=False, id="batchtop.table.reverse"),
    ]

    class Sorted(Message):
        """The operator changed the table's sort (the screen redraws it)."""

        def __init__(self, table: LiveTable) -> None:
            super().__init__()
            self.table = table

    def __init__(self, columns: Sequence[str], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, cursor_foreground_priority="renderable")
        self._columns = tuple(columns)
        self.sort_column: str | None = None
        """The column the rows are sorted by; None keeps the document's order."""
        self.sort_reverse = False
        self._last: list[Row] = []
        self._last_signatures: Mapping[str, Signature] | None = None
        self._shown: dict[str, Signature] = {}
        """Row key -> the signature of the cells it shows (`signature`)."""
        self._order: list[str] = []
        """The row keys in the order last shown."""

    def on_mount(self) -> None:
        for name in self._columns:
            self.add_column(self._label(name), key=name)

    def on_resize(self) -> None:
        # A height:auto table that grows keeps lines painted at its old size
        # (Textual 8 styles cache); repaint all of it at the new size.
        self.refresh()

    @property
    def selected_key(self) -> str | None:
        """The row key under the cursor, if any."""
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 cursor outside the rows (table just emptied)
            return None

    # -- sorting ---------------------------------------------------------------------
    def _label(self, name: str) -> Text:
        if name != self.sort_column:
            return Text(name)
        return Text.assemble(name, (" ▼" if self.sort_reverse else " ▲", "bold"))

    def sort_by(self, column: str | None, reverse: bool = False) -> None:
        """Sort by `column` (None: the document's order) and show it in the header."""
        self.sort_column, self.sort_reverse = column, reverse
        for name in self._columns:
            key = next(k for k in self.columns if k.value == name)
            self.columns[key].label = self._label(name)
        self._require_update_dimensions = True
        self.refresh()
        self.sync(self._last, self._last_signatures)
        self.post_message(self.Sorted(self))

    def action_sort_next(self) -> None:
        """s: the next column (after the last one, back to the document's order)."""
        if self.sort_column is None:
            self.sort_by(self._columns[0])
        else:
            i = self._columns.index(self.sort_column) + 1
            self.sort_by(self._columns[i] if i < len(self._columns) else None)

    def action_sort_reverse(self) -> None:
        """S: reverse the order (sorting by the first column if none yet)."""
        self.sort_by(self.sort_column or self._columns[0], not self.sort_reverse)

    @on(DataTable.HeaderSelected)
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        """A click sorts by that column; again reverses it; a third time, unsorted."""
        event.stop()
        name = event.column_key.value
        if name != self.sort_column:
            self.sort_by(name)
        elif not self.sort_reverse:
            self.sort_by(name, True)
        else:
            self.sort_by(None)

    def _ordered(self, rows: Sequence[Row]) -> list[Row]:
        if self.sort_column is None:
            return list(rows)
        i = self._columns.index(self.sort_column)
        pinned = [r for r in rows if r[0] == "total"]  # a totals row stays last
        body = [r for r in rows if r[0] != "total"]
        body.sort(key=lambda r: sort_value(r[1][i]), reverse=self.sort_reverse)
        return body + pinned

    # -- rows ------------------------------------------------------------------------
    def sync(self, rows: Sequence[Row], signatures: Mapping[str, Signature] | None = None) -> None:
        """Show `rows`: on a big store most of them are as last shown, so a row is
        compared whole by its signature (`signatures` has them computed off the UI
        thread) and only a changed one is looked at cell by cell; the order is fixed
        only when it changed."""
        self._last = list(rows)
        self._last_signatures = signatures
        rows = self._ordered(rows)
        keep = self.selected_key
        line_in_view = self.cursor_row - int(self.scroll_y) if keep is not None else None
        known = signatures or {}
        wanted = {key: known.get(key) or signature(cells) for key, cells in rows}
        shown = self._shown
        changed = False
        for gone in [k for k in self.rows if k.value not in wanted]:
            self.remove_row(gone)
            shown.pop(gone.value or "", None)
        for key, cells in rows:
            sig = wanted[key]
            old = shown.get(key)
            if old is None:
                self.add_row(*cells, key=key)
                changed = True
            elif old != sig:
                for column, value, was, now in zip(self._columns, cells, old, sig):
                    if was != now:
                        self.update_cell(key, column, value, update_width=True)
                changed = True
            shown[key] = sig
        order = [k for k, _ in rows]
        if changed or order != self._order:
            if [r.key.value for r in self.ordered_rows] != order:
                position = {k: i for i, k in enumerate(order)}
                by_text = {tuple(_text(c) for c in cells): position[k] for k, cells in reversed(rows)}
                self.sort(key=lambda values: by_text.get(tuple(_text(c) for c in values), len(order)))
            self._order = order
        if changed:
            self.set_timer(0.05, self._repaint)
        if keep is not None and keep in wanted:
            index = self.get_row_index(keep)
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False, scroll=False)
            if line_in_view is not None:  # once the new rows are measured (as move_cursor does)
                self.call_after_refresh(self._hold_line, keep, line_in_view)

    def _repaint(self) -> None:
        """Textual 8.2 keeps a grown column's lines cached at the old width (`gpt-4o`
        showed as `gpt-4` under a 5-wide header): once the new cells are measured,
        drop the cached lines and paint them again."""
        self._clear_caches()
        self.refresh()

    def _hold_line(self, key: str, line: int) -> None:
        """Keep the selected row on the same line of the view, or at least in it."""
        if key not in self.rows or self.selected_key != key:
            return
        index = self.get_row_index(key)
        visible = max(1, self.scrollable_content_region.height - (self.header_height if self.show_header else 0))
        line = min(max(0, line), visible - 1)
        target = max(0, min(index - line, max(0, self.row_count - visible)))
        if int(self.scroll_y) != target:
            self.scroll_to(y=target, animate=False, force=True, immediate=True)


def _text(cell: object) -> str:
    return str(cell)

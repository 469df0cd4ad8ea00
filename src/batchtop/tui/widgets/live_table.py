"""A DataTable that is diffed by row key, so the cursor survives every refresh."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import DataTable

from batchtop.tui.rows import Cell, Row


class LiveTable(DataTable[Cell]):
    """Rows are replaced by `sync`: vanished keys removed, changed cells updated,
    new keys added, then the order fixed, and the cursor kept on its row key."""

    DEFAULT_CSS = """
    LiveTable { height: auto; }
    """

    def __init__(self, columns: Sequence[str], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, cursor_foreground_priority="renderable")
        self._columns = tuple(columns)

    def on_mount(self) -> None:
        for name in self._columns:
            self.add_column(name, key=name)

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
        except Exception:  # cursor outside the rows (table just emptied)
            return None

    def sync(self, rows: Sequence[Row]) -> None:
        keep = self.selected_key
        wanted = dict(rows)
        for key in [k for k in self.rows if k.value not in wanted]:
            self.remove_row(key)
        for key, cells in rows:
            if key in self.rows:
                for column, cell in zip(self._columns, cells):
                    if _text(self.get_cell(key, column)) != _text(cell) or _style(self.get_cell(key, column)) != _style(cell):
                        self.update_cell(key, column, cell, update_width=True)
            else:
                self.add_row(*cells, key=key)
        order = [k for k, _ in rows]
        if [r.key.value for r in self.ordered_rows] != order:
            position = {k: i for i, k in enumerate(order)}
            by_text = {tuple(_text(c) for c in cells): position[k] for k, cells in reversed(rows)}
            self.sort(key=lambda values: by_text.get(tuple(_text(c) for c in values), len(order)))
        if keep is not None and keep in wanted:
            index = self.get_row_index(keep)
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False, scroll=False)


def _text(cell: object) -> str:
    return str(cell)


def _style(cell: object) -> str:
    spans = getattr(cell, "spans", None)
    return repr(spans) if spans is not None else ""

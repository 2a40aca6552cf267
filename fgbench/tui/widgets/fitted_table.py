"""A DataTable whose columns are as wide as their widest cell from the first frame it draws.

Textual's DataTable measures new rows when it is next idle, but a frame drawn before that (the
app repaints when *it* is idle, which under load can come first) caches every cell at the old
column widths, and the cache is not dropped when the widths change: the table keeps showing
cells cut to their headers' widths ("inte" for "interrupted") until some cell is updated again.
A list of finished runs is never updated again. :meth:`FittedTable.set_rows` measures the cells
itself and gives every column a fixed width, so there is nothing left to measure later.

Cells are shown as written: a ``str`` becomes plain :class:`rich.text.Text`, never markup (a
class named ``[bird]`` or a run in ``/data/[old]`` is shown, not parsed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey

from fgbench.report import cut_apart


def as_text(value: object) -> Text:
    if isinstance(value, Text):
        return value
    return Text(str(value))


def cell_width(value: Text) -> int:
    return max((cell_len(line) for line in value.plain.split("\n")), default=0)


class FittedTable(DataTable):
    """A DataTable filled only through :meth:`set_rows` (columns and rows at once)."""

    _last: tuple | None = None

    def set_rows(self, columns: Sequence[tuple[str, str | Text]],
                 rows: Sequence[tuple[str, Sequence[str | Text]]],
                 squeeze: Mapping[str, int] | None = None, drop: Sequence[str] = ()) -> bool:
        """Show ``rows`` (``(row key, cells)``) under ``columns`` (``(column key, label)``).

        ``squeeze``: name columns (column key -> least width) whose cells are cut in the middle
        (:func:`fgbench.report.cut_apart`) so that the table fits the width it has, widest
        first; one long name then costs its own column, not every other column. Redone when the
        table is resized.

        ``drop``: column keys left out, in this order, while the table cannot fit its width even
        with every ``squeeze`` column at its least width (the least useful columns of a narrow
        terminal); back when it is wide enough again.

        When the columns, the row keys and every column's width are what is shown already, the
        cells that differ are updated in place: the cursor and the scroll position stay and no
        highlight event fires. Otherwise the table is rebuilt with fixed column widths, and the
        cursor goes back to the row it was on when that row is still there. Returns whether the
        table was rebuilt.
        """
        self._last = (columns, rows, squeeze, drop)
        labels = [(key, as_text(label)) for key, label in columns]
        body = [(key, [as_text(c) for c in cells]) for key, cells in rows]
        for key, cells in body:
            if len(cells) != len(labels):
                raise ValueError(f"row {key!r} has {len(cells)} cells for {len(labels)} columns")
        widths = [max([cell_width(label)] + [cell_width(cells[i]) for _, cells in body])
                  for i, (_, label) in enumerate(labels)]
        if squeeze and self.size.width > 0:
            for gone in drop:
                if self._least_width(labels, widths, squeeze) <= self._room():
                    break
                if gone in [key for key, _ in labels]:
                    i = [key for key, _ in labels].index(gone)
                    del labels[i], widths[i]
                    for _key, cells in body:
                        del cells[i]
            widths = self._squeeze(labels, body, widths, squeeze)
        shown = [(str(k.value), c.label, c.width, c.auto_width) for k, c in self.columns.items()]
        wanted = [(key, label, width, False) for (key, label), width in zip(labels, widths)]
        if shown == wanted and [str(k.value) for k in self.rows] == [key for key, _ in body]:
            for key, cells in body:
                for (column, _), value in zip(labels, cells):
                    if self.get_cell(key, column) != value:
                        self.update_cell(key, column, value)
            return False
        cursor_key = None
        if self.row_count and 0 <= self.cursor_row < self.row_count:
            cursor_key = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value
        self.clear(columns=True)
        for (key, label), width in zip(labels, widths):
            self.add_column(label, key=key, width=width)
        for key, cells in body:
            self.add_row(*cells, key=key)
        keys = [key for key, _ in body]
        if cursor_key in keys:
            self.move_cursor(row=keys.index(cursor_key), animate=False)
        return True

    def _room(self) -> int:
        return self.size.width - self.styles.scrollbar_size_vertical  # a scrollbar may come

    @staticmethod
    def _floors(labels, widths: list[int], squeeze: Mapping[str, int]) -> dict[int, int]:
        """The least width of each ``squeeze`` column (by index): its given least, never under its
        label, never over what its cells need."""
        index = {key: i for i, (key, _label) in enumerate(labels)}
        return {index[k]: max(min(squeeze[k], widths[index[k]]), cell_width(labels[index[k]][1]))
                for k in squeeze if k in index}

    def _least_width(self, labels, widths: list[int], squeeze: Mapping[str, int]) -> int:
        """The table's width with every ``squeeze`` column cut to its least width."""
        floors = self._floors(labels, widths, squeeze)
        return sum(floors.get(i, w) for i, w in enumerate(widths)) + 2 * self.cell_padding * len(widths)

    def _squeeze(self, labels, body, widths: list[int], squeeze: Mapping[str, int]) -> list[int]:
        """Cut the ``squeeze`` columns' cells (in ``body``, in place) to fit the table's width."""
        over = sum(widths) + 2 * self.cell_padding * len(widths) - self._room()
        floor = self._floors(labels, widths, squeeze)
        cut = {i: widths[i] for i in floor}
        while over > 0:
            i = max((i for i in cut if cut[i] > floor[i]), key=lambda i: cut[i], default=None)
            if i is None:
                break
            cut[i] -= 1
            over -= 1
        for i, width in cut.items():
            if width < widths[i]:
                widths[i] = width
                shown = cut_apart([cells[i].plain for _key, cells in body], width)
                for (_key, cells), text in zip(body, shown):
                    if cell_width(cells[i]) > width:
                        cells[i] = Text(text, style=cells[i].style)
        return widths

    def on_resize(self) -> None:
        if self._last is not None and self._last[2]:
            self.set_rows(*self._last)

    def patch_cells(self, cells: Sequence[tuple[str, str, str | Text]]) -> bool:
        """Update some cells (``(row key, column key, value)``) in place, without measuring the
        rest of the table: the cheap path for a value that changes every second, such as a live
        run's time, in a table of thousands of rows. Done only when every cell exists and every
        value fits its column's fixed width; otherwise nothing changes and False is returned, and
        the caller gives the whole table to :meth:`set_rows`."""
        values = [(row, column, as_text(value)) for row, column, value in cells]
        try:
            for row, column, value in values:
                self.get_cell(row, column)
                if cell_width(value) > self.columns[ColumnKey(column)].width:
                    return False
        except (CellDoesNotExist, KeyError):
            return False
        for row, column, value in values:
            if self.get_cell(row, column) != value:
                self.update_cell(row, column, value)
        return True

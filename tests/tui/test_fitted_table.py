"""FittedTable: the tables of the TUI show whole cells from their first frame, cells as written,
and keep the cursor on its row across updates.

The first test is the flake that cost a CI run: the runs pane drawn before its table had measured
the rows it had just been given, which Textual's DataTable then kept showing cut to the headers'
widths (its cell cache does not drop cells drawn at the old widths).
"""

from __future__ import annotations

import asyncio

import pytest
from rich.text import Text
from textual.app import App
from textual.widgets import DataTable

from fgbench.tui.widgets.fitted_table import FittedTable

COLUMNS = [("status", "status"), ("recipe", "recipe")]


class TableApp(App):
    def __init__(self):
        super().__init__()
        self.highlights: list[str] = []

    def compose(self):
        yield FittedTable(id="t", cursor_type="row")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.highlights.append(event.row_key.value)


def run(test):
    async def main():
        app = TableApp()
        async with app.run_test(size=(80, 12)) as pilot:
            await pilot.pause()
            await test(app, app.query_one(FittedTable), pilot)
    asyncio.run(main())


def lines(table: DataTable, n: int) -> list[str]:
    return [table.render_line(y).text.rstrip() for y in range(n)]


def test_a_frame_drawn_before_the_table_is_idle_shows_whole_cells_and_keeps_showing_them():
    async def test(app, table, pilot):
        table.set_rows(COLUMNS, [("a", ["interrupted", "cub_resnet50_long_schedule"])])
        early = lines(table, 2)  # the app repainting first, as a loaded machine can make it
        await pilot.pause()
        await pilot.pause()
        assert early[1].split() == ["interrupted", "cub_resnet50_long_schedule"]
        assert lines(table, 2) == early
    run(test)


def test_cells_are_shown_as_written_not_as_markup():
    async def test(app, table, pilot):
        table.set_rows(COLUMNS, [("a", ["[bold]done[/bold]", "[bird]"])])
        await pilot.pause()
        assert lines(table, 2)[1].split() == ["[bold]done[/bold]", "[bird]"]
    run(test)


def test_an_update_that_fits_is_made_in_place_and_a_wider_one_keeps_the_cursor_on_its_row():
    async def test(app, table, pilot):
        rows = [("a", ["completed", "x"]), ("b", ["failed", "y"]), ("c", ["failed", "z"])]
        assert table.set_rows(COLUMNS, rows) is True
        table.move_cursor(row=1)
        await pilot.pause()
        app.highlights.clear()

        assert table.set_rows(COLUMNS, [("a", ["completed", "x"]), ("b", ["running", "y"]), rows[2]]) is False
        await pilot.pause()
        assert table.cursor_row == 1 and app.highlights == []
        assert lines(table, 3)[2].split() == ["running", "y"]

        # a wider cell, and a new run listed first: rebuilt, the cursor follows run b
        wider = [("new", ["running 3/90 · PENDING", "w"]), ("a", ["completed", "x"]),
                 ("b", ["running 2/90", "y"]), rows[2]]
        assert table.set_rows(COLUMNS, wider) is True
        await pilot.pause()
        assert table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value == "b"
        assert lines(table, 4)[1].split()[:4] == ["running", "3/90", "·", "PENDING"]
    run(test)


def test_a_row_with_the_wrong_number_of_cells_is_refused():
    async def test(app, table, pilot):
        with pytest.raises(ValueError, match="row 'a' has 1 cells for 2 columns"):
            table.set_rows(COLUMNS, [("a", [Text("x")])])
    run(test)


def test_patch_cells_changes_only_cells_that_fit_and_otherwise_nothing():
    async def test(app, table, pilot):
        table.set_rows(COLUMNS, [("a", ["running", "x"]), ("b", ["completed", "y"])])
        table.move_cursor(row=1)
        await pilot.pause()
        app.highlights.clear()
        # fits the widths set_rows gave ("completed" is 9 wide): changed in place, cursor kept
        assert table.patch_cells([("a", "status", "running!!")]) is True
        await pilot.pause()
        assert lines(table, 3)[1].split() == ["running!!", "x"]
        assert table.cursor_row == 1 and app.highlights == []
        # too wide for its column, or a row or column not shown: refused, and nothing changes,
        # not even the cells of the batch that would have fitted
        for batch in ([("b", "status", "y"), ("a", "status", "interrupted")],
                      [("b", "status", "y"), ("gone", "status", "x")],
                      [("b", "status", "y"), ("a", "nope", "x")]):
            assert table.patch_cells(batch) is False
            await pilot.pause()
            assert [line.split() for line in lines(table, 3)[1:]] == [["running!!", "x"], ["completed", "y"]]
            assert [str(table.get_cell(k, "status")) for k in ("a", "b")] == ["running!!", "completed"]
    run(test)

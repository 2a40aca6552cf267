"""The Runs pane: every run directory with its status and results, filterable by text.

The table is rebuilt from :class:`fgbench.runmodel.RunStore` rows whenever the run watcher
reports a change; cells are updated in place when the rows and the column widths did not change,
so the cursor and scroll position stay where the user left them while runs tick (a rebuilt table
puts the cursor back on its run). While a run is live its time
column is redrawn every second, counting on from its latest event (a trainer between logging
steps writes nothing for a while, and a frozen clock reads as a hung run).

``/`` focuses the filter; Escape leaves it for the table (the filter stays applied), and Escape
on the table clears a filter.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.containers import Horizontal, Vertical
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Input, Label, Static

from fgbench.tui.messages import OpenRun
from fgbench.formats import fmt_duration, fmt_fixed
from fgbench.runmodel import RunRow
from fgbench.tui.plots import rgb_style
from fgbench.tui.widgets.fitted_table import FittedTable
from fgbench.tui.typed import workbench

STATUS_STYLE = {
    "running": "bold green",
    "completed": "",
    "failed": "bold red",
    "interrupted": "yellow",
    "pruned": "magenta",
}

# val and test: the raw model at its best epoch; ema test: the EMA model at its own best epoch
# (one rule for every table of runs: fgbench.rundir.summary.Summary.headline)
# (the numbers before dataset and model: raw and EMA side by side fit in 80 columns)
COLUMNS = ("status", "started", "recipe", "val", "test", "ema test", "dataset", "model", "time")
SQUEEZE = {"recipe": 16, "dataset": 7, "model": 8}
"""Name columns cut in the middle to fit the pane (to at least these widths), keeping what tells
the names apart: at 80 columns every column from status to time fits."""
DROP = ("started", "dataset")
"""Left out, in this order, only when the table cannot fit even with its names cut: the list is
newest first, so the start time is the least needed; then the dataset (recipe names usually say
it), before a long recipe name is cut under 16 characters."""


class RunsTable(FittedTable):
    """The run list; Enter opens the monitor (shown in the footer)."""

    BINDINGS = [Binding("enter", "select_cursor", "Monitor", tooltip="Open the live monitor of the run")]

    def on_resize(self) -> None:
        # the pane decides what a row says at this width (a run's start beside its recipe when
        # the start column gives way): it fills the table again
        pane = next((node for node in self.ancestors if isinstance(node, RunsPane)), None)
        if pane is not None:
            pane.update_rows()


def started_text(run_id: str) -> str:
    """``20250102-130405-name`` -> ``01-02 13:04``."""
    parts = run_id.split("-")
    if len(parts) >= 2 and len(parts[0]) == 8 and len(parts[1]) == 6 and parts[0].isdigit():
        d, t = parts[0], parts[1]
        return f"{d[4:6]}-{d[6:8]} {t[0:2]}:{t[2:4]}"
    return run_id[:11]


def status_text(row: RunRow) -> Text:
    label = row.status
    if row.status == "running" and row.total_epochs:
        # the epoch in progress (1-based); before the run's first step there is none (the monitor
        # says "starting"), not an epoch 0
        label = f"running {row.epoch or '-'}/{row.total_epochs}"
    text = Text(label, style=STATUS_STYLE.get(row.status, ""))
    if row.scheduler:  # a point of a SLURM sweep: the scheduler's side next to fgbench's
        text.append(f" · {row.scheduler}", style="dim")
    return text


class RunsPane(Vertical):
    BINDINGS = [
        Binding("x", "stop", "Stop", tooltip="Stop the run: SIGINT, it writes a checkpoint and exits"),
        Binding("c", "resume", "Resume", tooltip="Continue a stopped run from its last checkpoint"),
        Binding("space", "mark", "Compare ±", tooltip="Add the run to (or remove it from) the Compare pane"),
        Binding("slash", "filter", "Filter", tooltip="Filter the list by words (status, recipe, dataset, model)"),
        Binding("escape", "leave_filter", "Leave filter", show=False,
                tooltip="In the filter: back to the list (the filter stays); on the list: clear the filter"),
    ]

    _live_rows: list[RunRow] = []
    """The live runs among the rows the last update listed: what the per-second tick moves."""

    def compose(self) -> ComposeResult:
        with Horizontal(id="runs-top"):
            yield Label("Runs", classes="pane-title")
            yield Input(placeholder="filter: type words (status, recipe, dataset, model)", id="runs-filter",
                        compact=True)
        yield RunsTable(id="runs-table", cursor_type="row", zebra_stripes=False)
        yield Static("", id="runs-status")

    def on_mount(self) -> None:
        self.update_rows()
        self.set_interval(1.0, self._tick_live)

    def _tick_live(self) -> None:
        """Move the time column of live runs (nothing to do when none is running). Only their
        time cells are touched, from the rows the last update listed (every change of a run
        updates the list), unless a new time no longer fits the column: with thousands of runs,
        listing every run again each second blocked the app for a tenth of a second or more
        (BENCHMARKS.md, Monitor)."""
        live = self._live_rows
        if not live or not self.is_mounted:
            return
        now = time.time()
        try:
            table = self.table
        except NoMatches:
            return
        if not table.patch_cells([(str(row.path), "time", fmt_duration(row.live_duration_s(now))) for row in live]):
            self.update_rows()

    @property
    def table(self) -> RunsTable:
        return self.query_one("#runs-table", RunsTable)

    _twins: set[str] = set()
    """Recipe names that more than one listed run has: when a narrow terminal leaves the start
    column out, their cells carry the start, which tells the runs apart."""

    def _row_cells(self, row: RunRow, with_start: bool = False) -> list[str | Text]:
        marks = workbench(self).compare_selection
        status = status_text(row)
        if row.path in marks:  # marked for Compare: its colour there
            colour = workbench(self).colours.colours([p.name for p in marks])[row.path.name]
            status = Text("■ ", style=rgb_style(colour)) + status
        else:
            status = Text("  ") + status
        return [
            status,
            started_text(row.run_id),
            f"{row.name} {started_text(row.run_id)}" if with_start and row.name in self._twins else row.name,
            fmt_fixed(row.best_val),
            fmt_fixed(row.best_test),
            fmt_fixed(row.ema_test),
            row.dataset,
            row.arch,
            fmt_duration(row.live_duration_s(time.time())),
        ]

    def visible_rows(self, every: list[RunRow] | None = None) -> list[RunRow]:
        """The rows the filter keeps, of ``every`` row (default: the run store's rows now)."""
        text = self.query_one("#runs-filter", Input).value
        if every is None:
            every = workbench(self).store.rows()
        return [r for r in every if r.matches(text)]

    def update_rows(self) -> None:
        try:
            table = self.table
        except NoMatches:  # not composed yet; on_mount fills the table
            return
        every = workbench(self).store.rows()  # it reads every run's status: once
        rows = self.visible_rows(every)
        self._twins = {name for name, n in Counter(r.name for r in rows).items() if n > 1}
        table.set_rows([(label, label) for label in COLUMNS],
                       [(str(row.path), self._row_cells(row)) for row in rows],
                       squeeze=SQUEEZE, drop=DROP)
        if self._twins and "started" not in [str(k.value) for k in table.columns]:
            table.set_rows([(label, label) for label in COLUMNS],
                           [(str(row.path), self._row_cells(row, with_start=True)) for row in rows],
                           squeeze=SQUEEZE, drop=DROP)
        self._live_rows = [row for row in rows if row.status == "running" and row.last_event_time is not None]
        if not workbench(self).store.loaded_once:
            self.query_one("#runs-status", Static).update("reading the runs directory...")
            return
        root_error = workbench(self).store.root_error
        if root_error:  # already made safe to display by the store
            self.query_one("#runs-status", Static).update(Text(root_error, style="red"))
            return
        total = len(every)
        running = sum(1 for r in rows if r.status == "running")
        status = f"{len(rows)} of {total} runs" if len(rows) != total else f"{total} run{'s' if total != 1 else ''}"
        if running:
            status += f", {running} running"
        marks = len(workbench(self).compare_selection)
        if marks:
            status += f", {marks} marked for Compare"
        self.query_one("#runs-status", Static).update(status)

    def selected_path(self) -> Path | None:
        table = self.table
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        return Path(key) if key else None

    @on(Input.Changed, "#runs-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.update_rows()

    @on(Input.Submitted, "#runs-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        event.stop()
        self.table.focus()

    @on(DataTable.RowSelected, "#runs-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        path = self.selected_path()
        if path is not None:
            self.post_message(OpenRun(path))

    def action_filter(self) -> None:
        self.query_one("#runs-filter", Input).focus()

    def action_leave_filter(self) -> None:
        field = self.query_one("#runs-filter", Input)
        if field.has_focus:
            self.table.focus()
        elif field.value:
            field.value = ""

    def action_stop(self) -> None:
        path = self.selected_path()
        if path is not None:
            workbench(self).stop_run(path)

    def action_resume(self) -> None:
        path = self.selected_path()
        if path is not None:
            workbench(self).resume_run(path)

    def action_mark(self) -> None:
        path = self.selected_path()
        if path is not None:
            workbench(self).toggle_compare(path)

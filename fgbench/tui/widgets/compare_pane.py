"""The Compare pane: several runs' curves overlaid, and their best and final numbers in a table
(the seeds' README tables, but live).

Each run keeps its colour (see :class:`fgbench.tui.plots.ColourBook`) whichever other runs are
shown; the table's first column is the legend. The selection is shared with the Runs pane
(``space`` there marks a run for comparison).
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label, SelectionList, Static
from textual.widgets.selection_list import Selection

from fgbench.tui.monitor import Snapshot, format_duration, format_pct
from fgbench.tui.plots import Line, MetricPlot, rgb_style
from fgbench.tui.widgets.runs_pane import STATUS_STYLE, started_text

METRICS = (
    ("val_top1", "val top-1"),
    ("test_top1", "test top-1"),
    ("ema_val_top1", "EMA val top-1"),
    ("ema_test_top1", "EMA test top-1"),
    ("train_top1", "train top-1"),
)

TABLE_COLUMNS = ("run", "best val", "test@best", "EMA test", "last test", "epochs", "status", "dataset", "model",
                 "time")


def _best(snap: Snapshot) -> tuple[str, str, str, str]:
    best = snap.summary.get("best") or {}
    raw = best.get("raw") if isinstance(best, dict) else None
    ema = best.get("ema") if isinstance(best, dict) else None
    last = snap.summary.get("last") or {}
    last_raw = last.get("raw") if isinstance(last, dict) else None
    val = raw.get("val_top1") if isinstance(raw, dict) else snap.best.get("val_top1")
    test = raw.get("test_top1") if isinstance(raw, dict) else snap.best.get("test_top1")
    ema_test = ema.get("test_top1") if isinstance(ema, dict) else snap.best.get("ema_test_top1")
    last_test = last_raw.get("test_top1") if isinstance(last_raw, dict) else None
    if last_test is None and snap.series.get("test_top1", ([], [], []))[2]:
        last_test = snap.series["test_top1"][2][-1]
    return format_pct(val), format_pct(test), format_pct(ema_test), format_pct(last_test)


class ComparePane(Vertical):
    BINDINGS = [
        Binding("e", "axis", "Step/epoch", tooltip="Plot against optimizer steps or epochs"),
        Binding("m", "metric", "Metric", tooltip="Cycle the top-1 plot: val, test, EMA val, EMA test, train"),
        Binding("a", "clear", "Clear", tooltip="Clear the selection"),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.axis = "epoch"
        self.metric = 0
        self._syncing = False

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="compare-side"):
                yield Label("Runs (space: select)", classes="pane-title")
                yield SelectionList[str](id="compare-list")
            with Vertical(id="compare-main"):
                with Horizontal(id="compare-plots"):
                    yield MetricPlot("loss (smoothed)", id="compare-loss")
                    yield MetricPlot(METRICS[0][1], id="compare-top1")
                yield DataTable(id="compare-table", cursor_type="row", show_cursor=False)
                yield Static("", id="compare-hint")

    def on_mount(self) -> None:
        table = self.query_one("#compare-table", DataTable)
        for col in TABLE_COLUMNS:
            table.add_column(col, key=col)
        self.update_runs()

    def update_runs(self) -> None:
        """Refresh the run list (keeping the selection) and redraw."""
        rows = self.app.store.rows()  # type: ignore[attr-defined]
        selected = set(self.app.compare_selection)  # type: ignore[attr-defined]
        try:
            lst = self.query_one("#compare-list", SelectionList)
            if not self.query_one("#compare-table", DataTable).columns:
                return
        except NoMatches:  # not composed yet; on_mount calls this again
            return
        wanted = [str(r.path) for r in rows]
        have = [lst.get_option_at_index(i).value for i in range(lst.option_count)]
        self._syncing = True
        try:
            if wanted != have:
                highlighted = lst.highlighted
                lst.clear_options()
                lst.add_options([Selection(f"{started_text(r.run_id)} {r.name}", str(r.path), r.path in selected)
                                 for r in rows])
                if highlighted is not None and highlighted < lst.option_count:
                    lst.highlighted = highlighted
            else:
                for r in rows:
                    if (r.path in selected) != (str(r.path) in lst.selected):
                        (lst.select if r.path in selected else lst.deselect)(str(r.path))
        finally:
            self._syncing = False
        self.redraw()

    @on(SelectionList.SelectedChanged, "#compare-list")
    def _selection_changed(self, event: SelectionList.SelectedChanged) -> None:
        event.stop()
        if self._syncing:
            return
        chosen = [Path(v) for v in event.selection_list.selected]
        self.app.set_compare(chosen)  # type: ignore[attr-defined]

    def redraw(self) -> None:
        paths = list(self.app.compare_selection)  # type: ignore[attr-defined]
        colours = self.app.colours.colours([p.name for p in paths])  # type: ignore[attr-defined]
        store = self.app.store  # type: ignore[attr-defined]
        snaps = [store.model(p).snapshot() for p in paths]
        axis = self.axis
        metric, metric_label = METRICS[self.metric]
        loss_lines, top1_lines = [], []
        for snap in snaps:
            colour = colours[snap.path.name]
            label = snap.name
            for name, out in (("loss_smooth", loss_lines), (metric, top1_lines)):
                steps, epochs, values = snap.series.get(name, ([], [], []))
                out.append(Line(steps if axis == "step" else epochs, values, colour, label))
        self.query_one("#compare-loss", MetricPlot).show(loss_lines, xlabel=axis)
        top1 = self.query_one("#compare-top1", MetricPlot)
        top1.title = metric_label
        top1.show(top1_lines, xlabel=axis)
        table = self.query_one("#compare-table", DataTable)
        table.clear()
        for snap in snaps:
            colour = colours[snap.path.name]
            name = Text("■ ", style=rgb_style(colour))
            name.append(snap.name)
            epochs = f"{snap.epoch}/{snap.total_epochs}" if snap.total_epochs else str(snap.epoch)
            val, test, ema_test, last_test = _best(snap)
            table.add_row(name, val, test, ema_test, last_test, epochs,
                          Text(snap.status, style=STATUS_STYLE.get(snap.status, "")), snap.dataset, snap.arch,
                          format_duration(snap.duration_s), key=str(snap.path))
        hint = ("Select runs on the left (space), or mark them in Runs with space."
                if not snaps else f"{len(snaps)} runs · x: {axis} · top-1: {metric_label}")
        self.query_one("#compare-hint", Static).update(Text(hint, style="dim"))

    def runs_changed(self, paths: set[Path]) -> None:
        self.update_runs()

    def action_axis(self) -> None:
        self.axis = "step" if self.axis == "epoch" else "epoch"
        self.redraw()

    def action_metric(self) -> None:
        self.metric = (self.metric + 1) % len(METRICS)
        self.redraw()

    def action_clear(self) -> None:
        self.app.set_compare([])  # type: ignore[attr-defined]

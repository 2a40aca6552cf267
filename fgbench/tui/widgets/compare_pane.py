"""The Compare pane: a runs sidebar, a grid of metric charts with the selected runs overlaid, a
cursor that reads every run at one x, and the ablation table of ``fgbench runs compare``.

Decisions and trade-offs:

* The table is :func:`fgbench.report.compare_table`, the one ``fgbench runs compare`` prints: the
  recipe fields that differ between the runs, then raw and EMA numbers side by side (each model at
  its own best epoch, see :func:`fgbench.rundir.summary.Summary.headline`). ``e`` writes it with
  :func:`fgbench.report.render`, so a Markdown or CSV export is byte for byte what the CLI writes.
* A run keeps one colour and one marker character (:class:`fgbench.tui.plots.ColourBook`) in the
  sidebar, the charts, the cursor read-out and the table, so runs are told apart without colour.
  Selected and pinned runs are marked with characters (``[x]``, ``^``), never by shade alone.
* The charts are built from the runs' :class:`~fgbench.runmodel.Snapshot` series (already
  decimated to a few hundred points), so redrawing costs the same however long the runs are. All
  charts share the x range, so a cursor x means the same point in every chart.
* Smoothing (``s``) is a debiased EMA with its time constant in steps
  (:func:`fgbench.runmodel.smooth`), the same for every run whatever its ``log_every_steps``;
  the raw series stays drawn, dimmed, under it; the cursor read-out says which one it reads.
* Runs that differ only in their seed (a group, :mod:`fgbench.groups`) are one row of the table
  (:func:`fgbench.report.group_compare_table`: n, mean, t interval, sd, min-max, the difference to
  the first row) and, while ``g`` is on (the default), one mean curve in the charts with its
  min-to-max band drawn dimmed above and below it; ``g`` draws the group's runs one by one. The
  curve counts seeds as the table does (:func:`fgbench.groups.seed_curve`): a seed run twice is
  one value, the mean of its runs, and the band spans the seeds' values. The mean at an x is over
  the runs that reached it (a run still going does not pull the mean down).
* The runs filter is words, all of which must match: plain words match the name, run id,
  status, dataset, model and sweep tag; ``key=value`` (or ``key!=value``) matches a resolved
  recipe value as ``fgbench runs list --where`` does (``optim.lr=0.005``). Pinned runs are never
  filtered out.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import DataTable, Input, OptionList, Static
from textual.widgets.option_list import Option

from fgbench import report
from fgbench.rundir.reader import RunInfo
from fgbench.textsafe import safe
from fgbench.formats import fmt_compact, fmt_duration
from fgbench.groups import group_runs, one_per_seed, seed_curve, seed_of
from fgbench.runmodel import SMOOTH_STEPS, SMOOTHABLE, SERIES, RunRow, Snapshot, smooth
from fgbench.tomlread import tomllib
from fgbench.tui.plots import CHART_TITLES, Line, MetricPlot, dimmed, rgb_style
from fgbench.tui.widgets.fitted_table import FittedTable
from fgbench.tui.widgets.runs_pane import started_text
from fgbench.tui.widgets.run_view import next_smoothing
from fgbench.tui.typed import workbench
from fgbench.tui.workers import ReportsWorkerFailures

DEFAULT_CHARTS = ("loss", "val_top1", "test_top1", "ema_test_top1", "lr", "images_per_s")
"""the charts shown while the series filter is empty (those some selected run has)"""

AXES = ("step", "epoch", "time")
CURSOR_STEPS = 50
"""a cursor key moves the cursor by 1/CURSOR_STEPS of the x range"""


# ------------------------------------------------------------------------------ pure helpers


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def run_matches(text: str, row: RunRow, recipe: dict[str, Any], sweep: str | None) -> bool:
    """The sidebar filter (see the module docstring)."""
    hay = " ".join([row.run_id, row.name, row.status, row.dataset, row.arch, sweep or ""]).lower()
    for word in text.split():
        if "=" in word:
            key, _, value = word.partition("=")
            negate = key.endswith("!")
            key = key.rstrip("!")
            if not key or not report.matches_where(recipe, key, _parse_value(value), negate=negate):
                return False
        elif word.lower() not in hay:
            return False
    return True


def series_matches(text: str, name: str) -> bool:
    """The ``/`` series filter: any word found in the series name or its chart title; ``*`` is
    every series."""
    words = text.lower().split()
    if "*" in words:
        return True
    title = CHART_TITLES.get(name, name).lower()
    return any(w in name or w in title for w in words)


def xs_of(snap: Snapshot, name: str, axis: str) -> list[float]:
    steps, epochs, _values = snap.series.get(name, ([], [], []))
    if axis == "step":
        return steps
    if axis == "epoch":
        return epochs
    return [t / 60.0 for t in snap.times.get(name, [])]


def value_at(xs: list[float], ys: list[float], x: float) -> float | None:
    """The value of the last point at or before ``x`` (what the run had reached there); None
    before its first point or past its last (the run never got there)."""
    if not xs or x < xs[0] - 1e-9 or x > xs[-1] + 1e-9:
        return None
    best = None
    for xi, yi in zip(xs, ys):
        if xi <= x + 1e-9:
            best = yi
        else:
            break
    return best


@dataclass(frozen=True)
class GroupRead:
    """What the cursor read-out needs of a group drawn as one curve (a Snapshot's path and name)."""

    path: Path
    name: str


def fmt_x(x: float, axis: str) -> str:
    if axis == "time":
        return fmt_duration(x * 60.0)
    if axis == "epoch":
        return f"epoch {x:.2f}"
    return f"step {x:,.0f}"


def sort_rows(rows: list[dict[str, Any]], key: str, reverse: bool) -> list[dict[str, Any]]:
    """Rows sorted by one column's raw value (a group's mean, a difference's value); empty cells
    ("-") last in either direction."""
    from fgbench.stats import Described, Difference

    def k(row: dict[str, Any]) -> tuple:
        v = row.get(key)
        if isinstance(v, Described):
            v = v.mean
        elif isinstance(v, Difference):
            v = v.diff
        if v is None or v is report.MISSING:
            return (1, 0, "")
        if isinstance(v, bool):
            return (0, int(v), "")
        if isinstance(v, (int, float)):
            return (0, float(v), "")
        return (0, 0, report.fmt_value(v))
    present = [r for r in rows if k(r)[0] == 0]
    empty = [r for r in rows if k(r)[0] == 1]
    return sorted(present, key=k, reverse=reverse) + empty


def run_infos(models: list[Any]) -> list[RunInfo]:
    """RunInfo records (what fgbench.report takes, as ``fgbench runs compare`` reads them) from the
    TUI's run models: summary.json checked the same way, a damaged one counting as none."""
    out = []
    for m in models:
        with m.lock:
            out.append(RunInfo(path=m.path, status=m.status, name=str(m.recipe.get("name") or m.run_id),
                               recipe=dict(m.recipe), summary=m.summary, info=dict(m.info)))
    return out


# ------------------------------------------------------------------------------ widgets


class RunList(OptionList):
    """The runs sidebar; Space selects (shared with the Runs pane), p pins."""

    BINDINGS = [
        Binding("space", "toggle_run", "Select", tooltip="Select the run for the charts and the table (or not)"),
        Binding("p", "pin", "Pin", tooltip="Pin the run: listed first, never hidden by the filter"),
    ]

    def _run_option(self) -> Option | None:
        """The highlighted run (a group header is no run: the next run below it is meant)."""
        i = self.highlighted if self.highlighted is not None else 0
        while i < self.option_count and self.get_option_at_index(i).disabled:
            i += 1
        if i >= self.option_count:
            return None
        if i != self.highlighted:
            self.highlighted = i
        return self.get_option_at_index(i)

    def action_toggle_run(self) -> None:
        pane = self._pane()
        option = self._run_option()
        if pane is not None and option is not None and option.id:
            workbench(self).toggle_compare(Path(option.id))

    def action_pin(self) -> None:
        pane = self._pane()
        option = self._run_option()
        if pane is not None and option is not None and option.id:
            pane.toggle_pin(Path(option.id))

    def _pane(self) -> "ComparePane | None":
        for node in self.ancestors:
            if isinstance(node, ComparePane):
                return node
        return None

    def on_resize(self) -> None:
        # the sidebar narrows without the pane resizing (the screen's -narrow class under 100
        # columns): names were cut for the wider list, and two runs of one recipe read the same
        pane = self._pane()
        if pane is not None:
            pane._resized()


class CompareChart(MetricPlot):
    """One chart of the grid: focusable (the cursor and full-screen act on it)."""

    can_focus = True

    DEFAULT_CSS = """
    CompareChart { height: 1fr; width: 1fr; border-left: blank; }
    CompareChart:focus { border-left: outer $accent; }
    """

    def __init__(self, series: str, **kwargs):
        super().__init__(CHART_TITLES.get(series, series), **kwargs)
        self.series = series


class CompareTable(FittedTable):
    BINDINGS = [
        Binding("o", "sort_next", "Sort", tooltip="Sort the table by the next column"),
        Binding("O", "sort_reverse", "Reverse", tooltip="Reverse the sort order"),
    ]

    def action_sort_next(self) -> None:
        for node in self.ancestors:
            if isinstance(node, ComparePane):
                node.sort_next()

    def action_sort_reverse(self) -> None:
        for node in self.ancestors:
            if isinstance(node, ComparePane):
                node.sort_reverse()


class ChartsArea(VerticalScroll):
    """The charts' scrolling area. How many rows of charts it shows depends on its size, which
    changes with the terminal, with zooming, and without the pane's size changing (the table below
    grows with the runs selected): it asks the pane to lay the charts out again whenever it is
    resized, the one place a resize redraws them."""

    def on_resize(self, event) -> None:
        for node in self.ancestors:
            if isinstance(node, ComparePane):
                node.call_after_refresh(node.redraw)
                return


OPTION_PREFIX = 8
"""The sidebar's columns before a run's name: ``[x] `` then the colour mark (``■a `` or three
spaces) then the pin mark."""


class ComparePane(ReportsWorkerFailures, Vertical):
    BINDINGS = [
        # w and / are written in their fields ("w: filter runs", "/: series") and a in the help
        # (?): the footer keeps the other keys, in 80 columns
        Binding("w", "filter_runs", "Filter", show=False, tooltip="Filter the runs: words, status, sweep tag, "
                "or recipe values such as optim.lr=0.005"),
        Binding("slash", "filter_series", "Series", show=False, tooltip="Choose the charts: words of series names "
                "(loss, topk, ema, lr, grad ...), * for all"),
        Binding("x", "axis", "X axis", tooltip="x-axis: optimizer step, epoch or wall time"),
        Binding("l", "log", "Log y", tooltip="Logarithmic y axis on or off"),
        Binding("s", "smooth", "Smooth", tooltip="Smoothing of step series: off, or a debiased EMA over "
                "10/50/200/1000 steps (the raw series stays drawn)"),
        Binding("z", "zoom", "Zoom", tooltip="The focused chart alone, full screen (z or escape again: back)"),
        Binding("left_square_bracket", "cursor(-1)", "Cursor ←", show=False, tooltip="Move the cursor left (every run's "
                "value at one x is read out under the charts)"),
        Binding("right_square_bracket", "cursor(1)", "Cursor →", show=False, tooltip="Move the cursor right"),
        Binding("g", "groups", "Groups", show=False, tooltip="Runs that differ only in the seed: one mean curve with a "
                "min-max band (on), or each run (off)"),
        Binding("e", "export", "Export", tooltip="Write the table as Markdown (.md) or CSV (.csv), "
                "as fgbench runs compare does"),
        Binding("a", "clear", "Clear", show=False, tooltip="Clear the selection"),
        Binding("escape", "unzoom", "Back", show=False),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = "step"
        self.log_y = False
        self.smooth_steps: float | None = SMOOTH_STEPS
        self.series_filter = ""
        self.pins: set[Path] = set()
        self.cursor_x: float | None = None
        self.sort_key: str | None = None
        self.sort_desc = True
        self.group_seeds = True
        """draw each group of seeds as its mean and band (``g`` toggles)"""
        self._notes: list[str] = []
        self._grouped = False
        """some selected runs form a group of seeds (the hint says how groups are drawn)"""
        self._charts: tuple[str, ...] = ()
        self._columns: list[tuple[str, str, str]] = []
        self._rows: list[dict[str, Any]] = []
        self._xlim: tuple[float, float] | None = None
        self._list_key: object = None

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="compare-side"):
                yield Input(placeholder="w: filter runs (words, optim.lr=0.005)", id="compare-filter", compact=True)
                yield RunList(id="compare-list")
            with Vertical(id="compare-main"):
                yield Input(placeholder="/: series (loss top1 topk ema lr grad, * all)", id="compare-series",
                            compact=True)
                yield ChartsArea(Grid(id="compare-grid"), id="compare-charts", can_focus=False)
                yield Static("", id="compare-cursor")
                yield CompareTable(id="compare-table", cursor_type="row", show_cursor=False, fixed_columns=1)
                yield Static("", id="compare-hint")

    def on_mount(self) -> None:
        self.update_runs()

    _twins: set[str] = set()
    _cut_names: dict[str, str] = {}
    _list_room = 0

    @on(events.Resize)
    def _resized(self) -> None:
        """Names are cut to the sidebar's width: cut again when it changes."""
        try:
            lst = self.query_one("#compare-list", RunList)
        except NoMatches:
            return
        if lst.scrollable_content_region.width - lst.styles.scrollbar_size_vertical != self._list_room:
            self.update_runs()

    # ------------------------------------------------------------------ sidebar

    def _sweep(self, path: Path) -> str | None:
        info = workbench(self).store.model(path).info
        tag = info.get("sweep_tag") if isinstance(info, dict) else None
        return str(tag) if tag else None

    def visible_rows(self) -> list[RunRow]:
        """The sidebar's runs: pinned first, then grouped by sweep tag (runs of no sweep last)."""
        try:
            text = self.query_one("#compare-filter", Input).value
        except NoMatches:
            text = ""
        store = workbench(self).store
        rows = []
        for r in store.rows():
            if r.path in self.pins or run_matches(text, r, store.model(r.path).recipe, self._sweep(r.path)):
                rows.append(r)
        order = {r.path: i for i, r in enumerate(rows)}
        return sorted(rows, key=lambda r: (r.path not in self.pins, self._sweep(r.path) is None,
                                           self._sweep(r.path) or "", order[r.path]))

    def _option_text(self, row: RunRow, selected: bool, colour, marker: str) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("[x] " if selected else "[ ] ", style="bold" if selected else "dim")
        if colour is not None:
            text.append(f"■{marker} ", style=rgb_style(colour))
        else:
            text.append("   ")
        text.append("^" if row.path in self.pins else " ", style="bold")
        # names cut in the middle to the room left; runs of one recipe told apart by their start
        if row.name in self._twins:
            stamp = f" {started_text(row.run_id)}"
            room = self._list_room - len(text.plain) - len(stamp)
            if room <= 4:  # a narrow sidebar (80 columns): the start time first, where it is not cut
                text.append(f"{started_text(row.run_id)[-5:]} ", style="dim")
                stamp = ""
            text.append(report.cut_middle(row.name, room) if room > 4 else row.name)
        else:
            stamp = ""
            text.append(self._cut_names.get(row.name, row.name))
        if stamp:
            text.append(stamp, style="dim")
        if row.status != "completed":
            text.append(f" {row.status}", style="dim")
        return text

    def update_runs(self) -> None:
        """Refresh the run list (keeping the highlight) and redraw."""
        try:
            lst = self.query_one("#compare-list", RunList)
        except NoMatches:  # not composed yet; on_mount calls this again
            return
        selected = list(workbench(self).compare_selection)
        book = workbench(self).colours
        colours = book.colours([p.name for p in selected])
        rows = self.visible_rows()
        self._twins = {n for n, c in Counter(r.name for r in rows).items() if c > 1}
        self._list_room = lst.scrollable_content_region.width - lst.styles.scrollbar_size_vertical
        names = sorted({r.name for r in rows} - self._twins)
        room = self._list_room - OPTION_PREFIX  # the same for every row
        self._cut_names = dict(zip(names, report.cut_apart(names, room) if room > 4 else names))
        options: list[Option] = []
        group: object = object()
        grouped = any(self._sweep(r.path) for r in rows)
        for r in rows:
            g = "pinned" if r.path in self.pins else (self._sweep(r.path) or "")
            if grouped and g != group:
                group = g
                label = "pinned" if g == "pinned" else (f"sweep {safe(g)}" if g else "no sweep")
                options.append(Option(Text(f"── {label}", style="bold dim", no_wrap=True, overflow="ellipsis"),
                                      disabled=True))
            on = r.path in selected
            colour = colours.get(r.path.name) if on else None
            marker = book.marker(r.path.name) if on else ""
            options.append(Option(self._option_text(r, on, colour, marker), id=str(r.path)))
        key = tuple((o.id, str(o.prompt)) for o in options)
        if key != self._list_key:
            self._list_key = key
            current = lst.highlighted_option.id if lst.highlighted_option is not None else None
            lst.clear_options()
            lst.add_options(options)
            ids = [o.id for o in options]
            if current in ids:
                lst.highlighted = ids.index(current)
            elif options:
                lst.highlighted = next((i for i, o in enumerate(options) if not o.disabled), None)
        self.redraw()

    def toggle_pin(self, path: Path) -> None:
        self.pins.symmetric_difference_update({path})
        self.update_runs()

    @on(Input.Changed, "#compare-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.update_runs()

    @on(Input.Submitted, "#compare-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one("#compare-list").focus()

    @on(Input.Changed, "#compare-series")
    def _series_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.series_filter = event.value
        self.redraw()

    @on(Input.Submitted, "#compare-series")
    def _series_done(self, event: Input.Submitted) -> None:
        event.stop()
        charts = list(self.query(CompareChart))
        (charts[0] if charts else self.query_one("#compare-list")).focus()

    @on(OptionList.OptionSelected, "#compare-list")
    def _option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()  # Enter selects, as Space does
        if event.option.id:
            workbench(self).toggle_compare(Path(event.option.id))

    # ------------------------------------------------------------------ charts

    def snapshots(self) -> list[Snapshot]:
        store = workbench(self).store
        return [store.model(p).snapshot() for p in workbench(self).compare_selection]

    def chart_names(self, snaps: list[Snapshot]) -> tuple[str, ...]:
        have = [n for n in SERIES if any(s.series.get(n, ([], [], []))[2] for s in snaps)]
        if self.series_filter.strip():
            return tuple(n for n in have if series_matches(self.series_filter, n))
        return tuple(n for n in DEFAULT_CHARTS if n in have)

    def _lines(self, snap: Snapshot, name: str, colour, marker: str) -> tuple[list[Line], list[float], list[float]]:
        """The chart lines of one run, and the xs/ys the cursor reads (smoothed when drawn so)."""
        steps, _epochs, values = snap.series.get(name, ([], [], []))
        xs = xs_of(snap, name, self.axis)
        if self.smooth_steps and name in SMOOTHABLE and values:
            sm = smooth(steps, values, self.smooth_steps)
            return [Line(xs, values, dimmed(colour), snap.name, legend=False),
                    Line(xs, sm, colour, snap.name, marker=marker, legend=False)], xs, sm
        # the runs' legend is the sidebar, the table and the cursor line (markers in all three)
        return [Line(xs, values, colour, snap.name, marker=marker, legend=False)], xs, values

    def _layout_grid(self, n: int) -> None:
        """Columns by the width (charts of at least 36 cells), two rows of charts in view where
        the height allows, one otherwise (and when zoomed); more charts scroll."""
        grid = self.query_one("#compare-grid", Grid)
        area = self.query_one("#compare-charts")
        width = max(20, area.size.width or 60)
        zoomed = self.has_class("-zoom")
        cols = 1 if zoomed else max(1, min(3, width // 36, n or 1))
        rows_visible = 1 if zoomed or (area.size.height or 12) < 18 else 2
        nrows = 1 if zoomed else max(1, -(-max(n, 1) // cols))
        grid.styles.grid_size_columns = cols
        grid.styles.grid_rows = "1fr"
        grid.styles.height = f"{100 * max(nrows, rows_visible) / rows_visible:g}%"

    def redraw(self) -> None:
        try:
            self.query_one("#compare-grid", Grid)  # not mounted yet: nothing to redraw
            table = self.query_one("#compare-table", CompareTable)
        except NoMatches:
            return
        snaps = self.snapshots()
        names = self.chart_names(snaps)
        if names != self._charts:
            self._charts = names
            self.run_worker(self._rebuild_charts(names), group="compare-charts", exclusive=True, exit_on_error=False)
            return
        self._layout_grid(len(names))
        book = workbench(self).colours
        colours = book.colours([s.path.name for s in snaps])
        per_chart: dict[str, list[tuple[Snapshot | GroupRead, list[float], list[float]]]] = {}
        all_lines: dict[str, list[Line]] = {}
        x_lo, x_hi = None, None
        drawn = self.chart_groups(snaps)
        store = workbench(self).store
        seeds = {s.path: seed_of(store.model(s.path).recipe) for s in snaps}
        for name in names:
            lines: list[Line] = []
            reads: list[tuple[Snapshot | GroupRead, list[float], list[float]]] = []
            for members in drawn:
                first = members[0]
                colour, marker = colours[first.path.name], book.marker(first.path.name)
                if len(members) == 1:
                    ls, xs, ys = self._lines(first, name, colour, marker)
                    lines += ls
                    reads.append((first, xs, ys))
                else:
                    curves = [(seeds.get(m.path), *self._lines(m, name, colour, marker)[1:]) for m in members]
                    xs, ys, lo, hi = seed_curve([c for c in curves if c[1]])
                    band = dimmed(colour)
                    lines += [Line(xs, lo, band, f"{first.name} min", legend=False),
                              Line(xs, hi, band, f"{first.name} max", legend=False),
                              Line(xs, ys, colour, first.name, marker=marker, legend=False)]
                    n = len(one_per_seed([(seeds.get(m.path), 0.0) for m in members]))
                    reads.append((GroupRead(first.path, f"{first.name} mean of {n} seeds"), xs, ys))
                if xs:
                    x_lo = xs[0] if x_lo is None else min(x_lo, min(xs))
                    x_hi = xs[-1] if x_hi is None else max(x_hi, max(xs))
            all_lines[name] = lines
            per_chart[name] = reads
        self._xlim = (x_lo, x_hi) if x_lo is not None and x_hi is not None and x_hi > x_lo else None
        if self.cursor_x is not None and self._xlim is not None:
            self.cursor_x = min(max(self.cursor_x, self._xlim[0]), self._xlim[1])
        xlabel = {"step": "step", "epoch": "epoch", "time": "minutes"}[self.axis]
        for chart in self.query(CompareChart):
            if not chart.query("PlotextPlot"):  # mounted, not composed yet: the next redraw draws it
                continue
            extra = "log" if self.log_y else ""
            if self.smooth_steps and chart.series in SMOOTHABLE:
                extra = " ".join(p for p in (extra, f"EMA {self.smooth_steps:g} steps") if p)
            chart.show(all_lines.get(chart.series, []), xlabel=xlabel, log_y=self.log_y, extra=extra,
                       xlim=self._xlim, cursor_x=self.cursor_x)
        self._draw_cursor(per_chart, colours)
        self._draw_table(snaps, table, colours)
        self._draw_hint(snaps)

    def chart_groups(self, snaps: list[Snapshot]) -> list[list[Snapshot]]:
        """The curves to draw: one list per group of seeds while ``g`` is on, else one per run."""
        self._grouped = False
        if len(snaps) < 2:
            return [[s] for s in snaps]
        store = workbench(self).store
        runs = run_infos([store.model(s.path) for s in snaps])
        by_path = {s.path: s for s in snaps}
        found = [[by_path[r.path] for r in g.runs] for g in group_runs(runs)]
        self._grouped = any(len(members) > 1 for members in found)
        return found if self.group_seeds else [[s] for s in snaps]

    async def _rebuild_charts(self, names: tuple[str, ...]) -> None:
        grid = self.query_one("#compare-grid", Grid)
        focused = self.screen.focused if self.is_attached else None
        had_focus = isinstance(focused, CompareChart)
        await grid.remove_children()
        await grid.mount_all([CompareChart(n, id=f"chart-{n}") for n in names])
        if had_focus and names:
            self._focus_first_chart()
        self.call_after_refresh(self.redraw)  # draw once the new charts have a size

    def _focus_first_chart(self) -> None:
        charts = list(self.query(CompareChart))
        if charts:
            charts[0].focus()

    def current_chart(self) -> CompareChart | None:
        focused = self.screen.focused if self.is_attached else None
        if isinstance(focused, CompareChart):
            return focused
        charts = list(self.query(CompareChart))
        return charts[0] if charts else None

    def _draw_cursor(self, per_chart, colours) -> None:
        out = self.query_one("#compare-cursor", Static)
        chart = self.current_chart()
        cursor_x = self.cursor_x
        if cursor_x is None or chart is None or chart.series not in per_chart:
            out.update(Text("[ ]: cursor (reads every run at one x)" if per_chart else "", style="dim"))
            return
        smoothed = bool(self.smooth_steps and chart.series in SMOOTHABLE)
        book = workbench(self).colours
        reads = [(book.marker(snap.path.name), colours[snap.path.name], snap.name,
                  fmt_compact(value_at(xs, ys, cursor_x))) for snap, xs, ys in per_chart[chart.series]]

        def line(with_names: bool) -> Text:
            text = Text(no_wrap=True, overflow="ellipsis")
            text.append(f"{chart.title} @ {fmt_x(cursor_x, self.axis)}", style="bold")
            if smoothed:
                text.append(" (smoothed)", style="dim")
            for marker, colour, name, value in reads:
                text.append(f"  {marker} ", style=rgb_style(colour))
                text.append(f"{name} {value}" if with_names else value)
            return text

        text = line(True)
        if text.cell_len > (out.size.width or 80):  # the markers name the runs (sidebar, table)
            text = line(False)
        out.update(text)

    # ------------------------------------------------------------------ table

    def table_data(self) -> tuple[list[tuple[str, str, str]], list[dict[str, Any]]]:
        """The ablation table of the selected runs, as ``fgbench runs compare`` builds it, sorted
        as shown."""
        store = workbench(self).store
        infos = run_infos([store.model(p) for p in workbench(self).compare_selection])
        if not infos:
            self._notes = []
            return [], []
        columns, rows, self._notes = report.group_compare_table(infos)
        if self.sort_key is not None and any(c[0] == self.sort_key for c in columns):
            rows = sort_rows(rows, self.sort_key, self.sort_desc)
        return columns, rows

    def _draw_table(self, snaps: list[Snapshot], table: CompareTable, colours) -> None:
        columns, rows = self.table_data()
        self._columns, self._rows = columns, rows
        book = workbench(self).colours
        names = [str(r.get("recipe") or r["run"]) for r in rows]
        labels = {r["path"]: (n if names.count(n) == 1 else f"{n} {r['run'][4:13]}") for r, n in zip(rows, names)}
        headers: list[tuple[str, Text]] = []
        for key, header, _kind in columns:
            label = Text(safe(header))  # a recipe field's name: from the runs' files
            if key == self.sort_key:
                label.append(" ▼" if self.sort_desc else " ▲", style="bold")
            headers.append((key, label))
        body: list[tuple[str, list[str | Text]]] = []
        for row in rows:
            cells: list[str | Text] = []
            for key, _header, kind in columns:
                cell = report.cell_text(row.get(key), kind)
                if key == "run":  # shown by recipe name (the export keeps the run id, as the CLI)
                    name = Path(row["path"]).name
                    t = Text(f"{book.marker(name)} ", style=rgb_style(colours.get(name, (200, 200, 200))))
                    t.append(safe(labels.get(row["path"], cell)))
                    cells.append(t)
                elif kind in ("acc", "duration", "rate", "stat", "diff"):
                    cells.append(Text(cell, justify="right"))
                else:
                    cells.append(Text(safe(cell)))  # a recipe value from the runs' files
            body.append((row["path"], cells))
        table.set_rows(headers, body)

    def sort_by(self, key: str) -> None:
        if key == self.sort_key:
            self.sort_desc = not self.sort_desc
        else:
            self.sort_key, self.sort_desc = key, True
        self.redraw()

    def sort_next(self) -> None:
        keys = [c[0] for c in self._columns]
        if not keys:
            return
        i = keys.index(self.sort_key) + 1 if self.sort_key in keys else 0
        self.sort_key, self.sort_desc = keys[i % len(keys)], True
        self.redraw()

    def sort_reverse(self) -> None:
        self.sort_desc = not self.sort_desc
        self.redraw()

    @on(DataTable.HeaderSelected, "#compare-table")
    def _header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    def _draw_hint(self, snaps: list[Snapshot]) -> None:
        if not snaps:
            hint = "Select runs on the left (space), or mark them in Runs with space."
            width = self.query_one("#compare-hint", Static).size.width
            if width and cell_len(hint) > width:
                hint = "space: select runs (here or in Runs)"
        else:
            header = next((h for k, h, _ in self._columns if k == self.sort_key), self.sort_key)
            arrow = "▼" if self.sort_desc else "▲"
            # the full wording, and a short one for a narrow pane (at 80 columns the sort was cut)
            hint, room = "", self.query_one("#compare-hint", Static).size.width
            for full in (True, False):
                parts = [f"{len(snaps)} runs", f"x: {self.axis}" if full else f"x {self.axis}",
                         ("log y" if self.log_y else "linear y") if full else ("log" if self.log_y else "linear"),
                         (f"smooth: EMA {self.smooth_steps:g} steps" if full else f"EMA {self.smooth_steps:g}")
                         if self.smooth_steps else ("smooth: off" if full else "raw")]
                if self._grouped:
                    parts.insert(3, ("g: groups as mean+band" if self.group_seeds else "g: groups as runs") if full
                                 else ("mean+band" if self.group_seeds else "each run"))
                if self.sort_key:
                    parts.append(f"sort: {header} {arrow}" if full else f"{arrow} {header}")
                hint = " · ".join(parts)
                if not room or cell_len(hint) <= room:  # not laid out yet: the full wording
                    break
        self.query_one("#compare-hint", Static).update(Text(hint, style="dim", no_wrap=True, overflow="ellipsis"))

    # ------------------------------------------------------------------ actions

    def runs_changed(self, paths: set[Path]) -> None:
        self.update_runs()

    def action_filter_runs(self) -> None:
        self.query_one("#compare-filter", Input).focus()

    def action_filter_series(self) -> None:
        self.query_one("#compare-series", Input).focus()

    def action_axis(self) -> None:
        self.axis = AXES[(AXES.index(self.axis) + 1) % len(AXES)]
        self.cursor_x = None
        self.redraw()

    def action_log(self) -> None:
        self.log_y = not self.log_y
        self.redraw()

    def action_groups(self) -> None:
        self.group_seeds = not self.group_seeds
        self.redraw()

    def action_smooth(self) -> None:
        self.smooth_steps = next_smoothing(self.smooth_steps)
        self.redraw()

    def action_zoom(self) -> None:
        chart = self.current_chart()
        if chart is None:
            return
        zoom = not self.has_class("-zoom")
        self.set_class(zoom, "-zoom")
        for c in self.query(CompareChart):
            c.set_class(zoom and c is not chart, "-hidden")
        chart.focus()
        self.call_after_refresh(self.redraw)

    def action_unzoom(self) -> None:
        if isinstance(self.screen.focused, Input):
            self.query_one("#compare-list").focus()
        elif self.has_class("-zoom"):
            self.action_zoom()

    def action_cursor(self, direction: int) -> None:
        if self._xlim is None:
            return
        lo, hi = self._xlim
        if self.cursor_x is None:
            self.cursor_x = hi if direction < 0 else lo
        else:
            self.cursor_x = min(hi, max(lo, self.cursor_x + direction * (hi - lo) / CURSOR_STEPS))
        self.redraw()

    def action_export(self) -> None:
        from fgbench.tui.dialogs import PromptScreen

        if not self._rows:
            self.app.notify("Select runs first: the table is empty", severity="warning", timeout=4)
            return
        # under the runs directory, not wherever fgbench was started: a file (never a folder, which
        # would read as a run directory), named by the time so that exports never overwrite
        root = workbench(self).runs_root
        default = str(root / time.strftime("compare-%Y%m%d-%H%M%S.md"))
        self.app.push_screen(PromptScreen("Export the table to (.md: Markdown, .csv: CSV)", default,
                                          f"In the runs directory {root} unless you give another path.   "
                                          "Enter: write   Escape: cancel"), self._export_to)

    def _export_to(self, target: str | None) -> None:
        if not target:
            return
        path = Path(target).expanduser()
        if not path.is_absolute() and path.parent == Path("."):  # a bare name: in the runs directory
            path = workbench(self).runs_root / path
        fmt = {".md": "markdown", ".markdown": "markdown", ".csv": "csv"}.get(path.suffix.lower())
        if fmt is None:
            self.app.notify(f"{path}: the name must end in .md or .csv", severity="error", timeout=6)
            return
        written = export_table(self._columns, self._rows, path, fmt, self._notes)
        if isinstance(written, str):
            self.app.notify(written, severity="error", timeout=6)
        else:
            self.app.notify(f"Wrote {len(self._rows)} runs to {path}", timeout=4)

    def action_clear(self) -> None:
        workbench(self).set_compare([])


def export_table(columns, rows, path: Path, fmt: str, notes: list[str] | None = None) -> bool | str:
    """Write the table as ``fgbench runs compare --format FMT`` does (atomically), the notes under
    a Markdown table. Returns True, or the one-line reason it could not."""
    from fgbench.atomic import atomic_write_text

    if not path.parent.is_dir():
        return f"{path.parent}: no such folder"
    text = report.render(columns, rows, fmt)
    if notes and fmt == "markdown":
        text += "\n" + "".join(f"{n}\n" for n in notes)
    try:
        atomic_write_text(path, text)
    except OSError as err:
        return f"{path}: {err.strerror or err}"
    return True

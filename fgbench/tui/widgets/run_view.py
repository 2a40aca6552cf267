"""The live view of one run: progress, four plots, the latest log lines, the result or the crash.

It draws a :class:`fgbench.runmodel.Snapshot`; it never reads files itself (the monitor screen's
worker does), so drawing cost is bounded by the decimated series, not by the run's length.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.widgets import ProgressBar, Static

from fgbench import report
from fgbench.rundir.confusion import has_confusion
from fgbench.textsafe import safe
from fgbench.formats import fmt_duration, fmt_rate
from fgbench.runmodel import (
    SMOOTH_STEPS,
    SMOOTHABLE,
    Snapshot,
    health_sentence,
    smooth,
    summary_numbers,
    system_rows,
)
from fgbench.tui.plots import SERIES_COLOURS, SERIES_LABELS, Line, MetricPlot, dimmed
from fgbench.tui.widgets.runs_pane import STATUS_STYLE

TOP1_SERIES = ("train_top1", "val_top1", "test_top1", "ema_val_top1", "ema_test_top1")
#: the top-1 chart's five series differ by marker too (a 3-row chart at 80x24, a monochrome
#: terminal): one point per evaluation, so a marker per point reads well
TOP1_MARKERS = {"train_top1": "·", "val_top1": "•", "test_top1": "x", "ema_val_top1": "o", "ema_test_top1": "+"}


def _lines(snap: Snapshot, names: tuple[str, ...], axis: str, smooth_steps: float | None = None) -> list[Line]:
    """The plotted lines of ``names``; a smoothable series with ``smooth_steps`` is drawn twice:
    its raw values (dimmed, labelled "raw") under the smoothed ones."""
    out = []
    for name in names:
        steps, epochs, values = snap.series.get(name, ([], [], []))
        xs = steps if axis == "step" else epochs
        colour = SERIES_COLOURS.get(name, SERIES_COLOURS["loss"])
        if smooth_steps and name in SMOOTHABLE:
            out.append(Line(xs, values, dimmed(colour), "raw"))
            out.append(Line(xs, smooth(steps, values, smooth_steps), colour, f"EMA {smooth_steps:g} steps"))
        else:
            out.append(Line(xs, values, colour, SERIES_LABELS.get(name, name), marker=TOP1_MARKERS.get(name, "braille")))
    return out


SMOOTHING_LEVELS = (None, 10, 50, 200, 1000)
"""what ``s`` cycles through: off, then time constants in steps"""


def next_smoothing(current: float | None) -> float | None:
    levels: list[float | None] = list(SMOOTHING_LEVELS)
    i = levels.index(current) if current in levels else 0
    return levels[(i + 1) % len(levels)]


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def progress_text(snap: Snapshot) -> Text:
    """The line beside the progress bar. The epoch is the one in progress (1-based): before any
    event that carries a position (the first step, evaluation, health sample or checkpoint) there is
    none, and the line says the run is starting (or, ended, that it trained no step) with dashes
    for the numbers, not "epoch 0/2  step 0/70"."""
    text = Text()
    if snap.epoch == 0 and snap.step == 0:
        text.append("starting" if snap.status == "running" else "no step trained", style="bold")
        text.append("  ")
        epoch_now, step_now = "-", "-"
    else:
        epoch_now, step_now = str(snap.epoch), str(snap.step)
    epochs = f"{epoch_now}/{snap.total_epochs}" if snap.total_epochs else epoch_now
    steps = f"{step_now}/{snap.total_steps}" if snap.total_steps else step_now
    text.append(f"epoch {epochs}", style="bold")
    text.append(f"  step {steps}")
    if snap.stage:
        text.append(f"  stage {snap.stage}")
    if snap.eta_s is not None:
        text.append(f"  ETA {fmt_duration(snap.eta_s)}", style="bold")
    rate, live = snap.throughput  # the result panel's figure; before it exists, the live one, said
    if rate is not None:
        text.append(f"  {fmt_rate(rate)} img/s{' now' if live else ''}")
    if snap.loss is not None:
        text.append(f"  loss {snap.loss:.4f}")
    return text


def header_text(snap: Snapshot, width: int | None = None) -> Text:
    """Status, run, dataset and model; in ``width`` columns the run's name (a sweep point's is 50
    characters and more) is cut in the middle, so the model at the end stays on screen."""
    tail = f"  {snap.dataset} · {snap.arch}"
    run_id = snap.run_id
    if width:
        room = width - len(snap.status) - 2 - len(tail)
        run_id = report.cut_middle(run_id, max(room, 16))
    text = Text()
    text.append(snap.status, style=STATUS_STYLE.get(snap.status, "") or "bold")
    text.append(f"  {run_id}", style="bold")
    text.append(tail, style="dim")
    if snap.skipped:
        text.append(f"  ({snap.skipped} malformed lines skipped)", style="dim")
    if snap.sampled:
        text.append("  (history sampled)", style="dim")
    return text


def class_rows(confusion: dict | None, worst: int = 3, pairs: int = 2) -> list[tuple[str, str]]:
    """The run's weakest classes and most confused pairs (those of ``fgbench runs show``), for the
    result panel; ``a`` opens all of them with their images."""
    if confusion is None or not has_confusion(confusion):
        return []
    acc = sorted((a for a in report.per_class_accuracy(confusion) if a[3] is not None), key=lambda a: (a[3], a[0]))
    # class names come from the data set's folders: shown safe
    out = [("worst classes", ", ".join(f"{safe(name)} {pct:.1f}%" for name, _c, _t, pct in acc[:worst])
                                 + f"  (a: all {len(acc)})")]
    top = report.confused_pairs(confusion, pairs)
    out.append(("most confused", ", ".join(f"{safe(t)} → {safe(p)} ({n})" for t, p, n, _s in top) if top else "none"))
    return out


def stopped_text(snap: Snapshot) -> str:
    """What a stopped run resumes from: the step its last checkpoint was written at."""
    ck = snap.last_checkpoint
    if ck and ck.get("step") is not None:
        return f"resume with c (continues from the checkpoint written at step {ck['step']})"
    return "resume with c (continues from the last checkpoint)"


def bottom_renderable(snap: Snapshot, lines: int, confusion: dict | None = None) -> Text:
    if snap.status == "failed":
        text = Text()
        text.append("✗ run failed", style="bold red")
        if snap.exit_code is not None:
            text.append(f" (exit code {snap.exit_code})", style="red")
        text.append("\n")
        if snap.error:
            text.append(snap.error + "\n", style="bold")
        if snap.traceback:
            tb = [ln for ln in str(snap.traceback).splitlines() if ln.strip()]
            text.append("\n".join(tb[-max(2, lines // 2):]) + "\n", style="red")
        if snap.console_tail:
            text.append("last output:\n", style="dim")
            text.append("\n".join(snap.console_tail[-lines:]))
        return text
    if snap.status in ("completed", "interrupted", "pruned") and snap.summary:
        rows = summary_numbers(snap)
        first_last = next((i for i, (label, _v) in enumerate(rows) if label.startswith("last")), len(rows))
        rows[first_last:first_last] = class_rows(confusion)
        if snap.status == "interrupted":  # first: what to do next, above the fold at 80x24
            rows.insert(0, ("stopped", stopped_text(snap)))
        width = max(len(label) for label, _ in rows) + 2
        text = Text()
        for i, (label, value) in enumerate(rows):
            if i:
                text.append("\n")
            text.append(label.ljust(width), style="bold")
            text.append(value)
        return text
    text = Text()
    if snap.status == "interrupted":
        text.append(f"stopped: {stopped_text(snap)}\n", style="yellow")
        lines -= 1
    logs = snap.logs[-lines:]
    if not logs:
        text.append("waiting for the trainer's first events...", style="dim")
    for i, line in enumerate(logs):
        if i:
            text.append("\n")
        style = "red" if line.startswith(("ERROR", "WARNING")) else ""
        text.append(line, style=style)
    return text


def system_text(snap: Snapshot) -> Text | None:
    """The system panel beside the plots (None for a run without telemetry: the panel is hidden)."""
    rows = system_rows(snap)
    if not rows:
        return None
    text = Text()
    text.append("system\n", style="bold")
    width = max(len(label) for label, _ in rows) + 1
    for label, value in rows:
        text.append(label.ljust(width), style="dim")
        text.append(value + "\n")
    sentence = health_sentence(snap)
    if sentence:
        text.append("\n" + sentence, style="bold yellow")
    return text


class RunView(Vertical):
    """Progress, plots and log of one run; call :meth:`show` with a snapshot."""

    DEFAULT_CSS = """
    RunView #run-header { height: 1; }
    RunView #run-progress { height: 1; }
    RunView #run-progress ProgressBar { width: 30; margin: 0 1 0 0; }
    RunView.-narrow #run-progress ProgressBar { width: 12; }
    RunView #run-progress #progress-text { width: 1fr; text-wrap: nowrap; text-overflow: ellipsis; }
    RunView #run-middle { height: 3fr; min-height: 10; }
    RunView #run-plots { grid-size: 2 2; width: 1fr; }
    RunView #run-system { width: 31; display: none; padding: 0 1; border-left: vkey $secondary; }
    RunView.-has-system #run-system { display: block; }
    RunView #run-bottom { height: 1fr; min-height: 4; border-top: hkey $secondary; }
    RunView.-log-only #run-middle { display: none; }
    RunView.-failed #run-bottom { height: 2fr; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = "step"
        self.smooth_steps: float | None = SMOOTH_STEPS
        self.confusion: dict | None = None
        """confusion.json of a finished run (the monitor screen reads it)"""
        self.snapshot: Snapshot | None = None
        self.draws = 0

    def compose(self) -> ComposeResult:
        yield Static("", id="run-header")
        with Horizontal(id="run-progress"):
            yield ProgressBar(total=100, show_eta=False, id="run-bar")
            yield Static("", id="progress-text")
        with Horizontal(id="run-middle"):
            with Grid(id="run-plots"):
                yield MetricPlot("loss", id="plot-loss")
                yield MetricPlot("top-1", id="plot-top1")
                yield MetricPlot("learning rate", id="plot-lr")
                yield MetricPlot("images/s", id="plot-speed")
            yield Static("", id="run-system")
        with VerticalScroll(id="run-bottom"):
            yield Static("", id="run-log")

    def show(self, snap: Snapshot) -> None:
        self.snapshot = snap
        self.draws += 1
        self.set_class(snap.status == "failed", "-failed")
        header = self.query_one("#run-header", Static)
        header.update(header_text(snap, header.size.width or None))
        bar = self.query_one("#run-bar", ProgressBar)
        fraction = snap.fraction
        if fraction is None:
            bar.update(total=None)
        else:
            bar.update(total=100, progress=round(100 * fraction, 1))
        self.query_one("#progress-text", Static).update(progress_text(snap))
        axis = self.axis
        self.query_one("#plot-loss", MetricPlot).show(_lines(snap, ("loss",), axis, self.smooth_steps), xlabel=axis)
        self.query_one("#plot-top1", MetricPlot).show(
            [ln for ln in _lines(snap, TOP1_SERIES, axis) if ln.xs], xlabel=axis)
        lr_lines = _lines(snap, ("lr",), axis)
        self.query_one("#plot-lr", MetricPlot).show(
            lr_lines, xlabel=axis, extra=f"now {_num(snap.lr, '.3g')}")
        self.query_one("#plot-speed", MetricPlot).show(
            _lines(snap, ("images_per_s",), axis), xlabel=axis, extra=f"now {_num(snap.images_per_s, ',.0f')}")
        panel = system_text(snap)
        self.set_class(panel is not None, "-has-system")
        if panel is not None:
            self.query_one("#run-system", Static).update(panel)
        log_only = self.has_class("-log-only")
        lines = 40 if log_only else max(3, self.query_one("#run-bottom").size.height or 5)
        self.query_one("#run-log", Static).update(bottom_renderable(snap, lines, self.confusion))

    def on_resize(self, event) -> None:
        # under 100 columns the bar gives its room to the progress line's numbers (loss was cut
        # at 80), and the header's run name is cut to the new width
        self.set_class(event.size.width < 100, "-narrow")
        if self.snapshot is not None:
            self.show(self.snapshot)

    def toggle_axis(self) -> None:
        self.axis = "epoch" if self.axis == "step" else "step"
        if self.snapshot is not None:
            self.show(self.snapshot)

    def cycle_smoothing(self) -> None:
        self.smooth_steps = next_smoothing(self.smooth_steps)
        if self.snapshot is not None:
            self.show(self.snapshot)

    def toggle_log(self) -> None:
        self.toggle_class("-log-only")
        if self.snapshot is not None:
            self.show(self.snapshot)

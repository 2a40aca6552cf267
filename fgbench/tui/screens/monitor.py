"""The monitor screen: one run, live.

A thread worker polls the run's metrics file (incrementally, through the shared
:class:`fgbench.runmodel.RunModel`) four times a second and posts a coalescing
:class:`~fgbench.tui.messages.RunUpdated`; the handler redraws at most ``MAX_FPS`` times a second
however fast events arrive, so a trainer logging every step cannot starve the UI.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import get_current_worker

from fgbench.tui.messages import RunUpdated
from fgbench.tui.widgets.run_view import RunView
from fgbench.tui.typed import workbench
from fgbench.tui.workers import ReportsWorkerFailures

POLL_S = 0.25
MAX_FPS = 4


class MonitorScreen(ReportsWorkerFailures, Screen):
    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="Back to the panes (the run keeps going)"),
        Binding("x", "stop", "Stop", tooltip="Stop the run: SIGINT, it writes a checkpoint and exits"),
        Binding("c", "resume", "Resume", tooltip="Continue a stopped run from its last checkpoint"),
        Binding("e", "axis", "Step/epoch", tooltip="Plot against optimizer steps or epochs"),
        Binding("s", "smooth", "Smoothing", tooltip="Loss smoothing: off, or an EMA over 10/50/200/1000 steps "
                "(debiased; the raw loss stays drawn)"),
        Binding("l", "log", "Log", tooltip="Show only the log / error output, larger"),
        Binding("a", "analysis", "Classes", tooltip="Per-class accuracy, confused pairs and their test images"),
    ]

    def __init__(self, path: Path):
        super().__init__(classes="monitor-screen")
        self.path = Path(path)
        self._last_draw = 0.0
        self._pending = False
        self._stop = threading.Event()

    def compose(self) -> ComposeResult:
        yield RunView(id="run-view")
        yield Footer(compact=True)

    @property
    def model(self):
        return workbench(self).store.model(self.path)

    def on_mount(self) -> None:
        self.redraw()
        self.run_worker(self._poll, thread=True, group="monitor", exclusive=True, name=f"monitor {self.path.name}", exit_on_error=False)

    def on_unmount(self) -> None:
        self._stop.set()

    def _poll(self) -> None:
        worker = get_current_worker()
        model = self.model
        last_status = None
        while not worker.is_cancelled and not self._stop.is_set():
            changed = model.update()
            status = model.status
            if changed or status != last_status:
                last_status = status
                self.post_message(RunUpdated(self.path))
            self._stop.wait(POLL_S)

    def on_run_updated(self, message: RunUpdated) -> None:
        self.request_redraw()

    def request_redraw(self) -> None:
        wait = self._last_draw + 1 / MAX_FPS - time.monotonic()
        if wait <= 0:
            self.redraw()
        elif not self._pending:
            self._pending = True
            self.set_timer(wait, self._deferred)

    def _deferred(self) -> None:
        self._pending = False
        self.redraw()

    def redraw(self) -> None:
        # A RunsChanged or RunUpdated can arrive before this screen has composed its view or
        # after it started to unmount; there is nothing to draw on then (the mount draws).
        views = self.query(RunView)
        if not views:
            return
        self._last_draw = time.monotonic()
        model = self.model
        snap = model.snapshot(console_if_failed=True)
        view = views.first()
        if view.confusion is None and snap.status in ("completed", "interrupted"):
            from fgbench.rundir.confusion import read_confusion

            view.confusion = read_confusion(self.path)  # written once, at the end
        view.show(snap)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_stop(self) -> None:
        workbench(self).stop_run(self.path)

    def action_resume(self) -> None:
        workbench(self).resume_run(self.path)

    def action_axis(self) -> None:
        self.query_one(RunView).toggle_axis()

    def action_smooth(self) -> None:
        self.query_one(RunView).cycle_smoothing()

    def action_analysis(self) -> None:
        from fgbench.tui.screens.analysis import AnalysisScreen

        self.app.push_screen(AnalysisScreen(self.path))

    def action_log(self) -> None:
        self.query_one(RunView).toggle_log()

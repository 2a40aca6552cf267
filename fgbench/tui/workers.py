"""Background work in the TUI fails in one place.

Textual's default for a worker that raises is to exit the app with a traceback
(``exit_on_error=True``): one unexpected exception in a file read would take down every pane and the
monitor of a live run. Every worker of the workbench is started with ``exit_on_error=False``
(:data:`work` here, or ``run_worker(..., exit_on_error=False)``), and every node that runs workers
mixes in :class:`ReportsWorkerFailures`, whose one handler hands a failed worker to the app's
:meth:`~fgbench.tui.app.FgbenchApp.worker_failed`: a notification naming the task and the error,
the traceback in the app's log, and the app and its panes still running. Expected failures (a
recipe that does not validate, a dataset that is missing) are still said by the code that expects
them; this is the net under everything else.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, Union, cast

import textual
from textual.dom import DOMNode
from textual.worker import Worker, WorkerState

from fgbench.tui.typed import workbench

P = ParamSpec("P")
R = TypeVar("R")
Decorator = Callable[[Union[Callable[P, Coroutine[Any, Any, R]], Callable[P, R]]], Callable[P, "Worker[R]"]]


def work(*, exclusive: bool = False, group: str = "default", name: str = "", thread: bool = False) -> Decorator:
    """``textual.work(...)`` whose failures are reported rather than fatal."""
    return cast(Decorator, textual.work(exclusive=exclusive, group=group, name=name, thread=thread,
                                         exit_on_error=False))


class ReportsWorkerFailures:
    """Mixin for a widget, screen or app that runs workers: a failed one is reported by the app."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            workbench(cast(DOMNode, self)).worker_failed(event.worker)

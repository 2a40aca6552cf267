"""A stand-in that mounts a slow-to-import widget once the first screen is painted.

The Recipes pane needs the recipe schema (pydantic plus building every model: about 0.3 s on a
2-core machine) and builds a form of a few hundred widgets. Doing that before the first paint made
``fgbench`` take over a second to show anything. :class:`Deferred` shows a light placeholder
first and, once that is on screen, imports the widget's module, builds the widget, mounts it
inside itself and hides the placeholder. Textual's ``Lazy`` defers the mount but not the import, since
it takes a constructed widget.

The import runs on the event loop, not in a thread: pydantic's field-docstring extraction makes
hundreds of small system calls, and each one hands the GIL back to a busy event loop thread and
waits up to a switch interval (5 ms) to get it again. Measured: 0.3 s on the main thread, 18 s in
a thread beside a busy one. Keys pressed meanwhile are queued, not lost.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

from textual.app import ComposeResult
from textual.containers import Container
from textual.message import Message
from textual.widget import Widget

from fgbench.tui.workers import ReportsWorkerFailures


class Deferred(ReportsWorkerFailures, Container):
    DEFAULT_CSS = "Deferred { height: 1fr; width: 1fr; }"

    class Loaded(Message):
        """The widget is built and mounted: what waited for it (a focus request) can go on,
        rather than asking again after every refresh until it is there."""

        def __init__(self, deferred: "Deferred") -> None:
            super().__init__()
            self.deferred = deferred

    def __init__(self, module: str, build: Callable[[ModuleType], Widget], placeholder: Widget | None = None):
        super().__init__()
        self.module = module
        self.build = build
        self.placeholder = placeholder
        self.loaded = False
        """the widget is mounted (:class:`Loaded` was posted)"""

    def compose(self) -> ComposeResult:
        if self.placeholder is not None:
            yield self.placeholder

    def on_mount(self) -> None:
        self.call_after_refresh(self.run_worker, self._load, name=f"load {self.module}", group="deferred",
                                exit_on_error=False)

    async def _load(self) -> None:
        module = importlib.import_module(self.module)
        widget = self.build(module)
        # Hidden, not removed: removing a widget waits on a refresh that, in a terminal that
        # sends no events of its own (no focus reports), only comes with the next key press.
        if self.placeholder is not None:
            self.placeholder.display = False
        await self.mount(widget)
        self.loaded = True
        self.post_message(self.Loaded(self))

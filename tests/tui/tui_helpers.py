"""Helpers of the TUI tests: directories and waiting on conditions (never on sleeps). The fake
trainer and the fixed run directories are the suite's own: tests/fakes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

from fgbench import rundir


HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

TINY_RECIPE = """\
name = "tiny"
description = "a tiny recipe for the TUI tests"

[data]
dataset = "synthetic"
train_size = 16
test_size = 16
batch_size = 8

[model]
arch = "small_cnn"

[schedule]
epochs = 3
"""


def make_dirs(base: Path) -> SimpleNamespace:
    d = SimpleNamespace(project=base / "project", user=base / "user", runs=base / "runs", data=base / "data")
    for p in (d.project, d.user, d.runs, d.data):
        p.mkdir(parents=True, exist_ok=True)
    (d.project / "tiny.toml").write_text(TINY_RECIPE)
    return d


WAIT_LIMIT_S = 120.0
"""A hang guard, not a speed limit: a passing wait returns as soon as its condition holds, so the bound
only decides how long a failing test takes to say so. Far beyond the slowest wait seen under load
(a subprocess trainer importing torch at load 10 took about 20 s)."""


async def wait_for(pilot, condition: Callable[[], object], timeout: float = WAIT_LIMIT_S, what: str = "") -> None:
    """Let the app run until ``condition()`` is true; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except Exception:  # a widget not mounted yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what or condition}")
        await pilot.pause(0.05)


async def ready_pane(pilot, name: str):
    """The app's pane ``name`` once it has mounted (the Recipes pane mounts after the first paint,
    when the recipe schema is imported)."""
    app = pilot.app
    await wait_for(pilot, lambda: app.pane(name) is not None, what=f"the {name} pane mounts")
    return app.pane(name)


def wait_pid_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not rundir.pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def kill_quietly(pid: int | None) -> None:
    """SIGKILL a launched run: its whole process group (the launcher starts each supervisor in a
    session of its own), so that killing the supervisor does not leave its trainer running. A
    full suite had three such orphans training on beside the TUI tests that followed."""
    if not pid or not rundir.pid_alive(pid):
        return
    try:
        group = os.getpgid(pid)
        if group != os.getpgrp():  # never this test process's own group
            os.killpg(group, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def tui_app(dirs: SimpleNamespace, **kw):
    """The app on a test's folders (``make_dirs``), opened on the tiny recipe; ``kw`` go to
    ``make_app`` (``data_root`` defaults to the test's data folder)."""
    from fgbench.tui.app import make_app

    kw.setdefault("data_root", dirs.data)
    return make_app(recipes_dirs=[dirs.project, dirs.user], runs_root=dirs.runs,
                    initial_recipe=dirs.project / "tiny.toml", **kw)


async def type_into(pilot, editor, text: str) -> None:
    """Replace an Input's text as a user does: focus, clear with backspace, type; then check that
    the keys reached it (under load, a focus move the app had queued before, such as a new list
    item focusing its first field, once took them to another field)."""
    editor.focus()
    await wait_for(pilot, lambda: editor.has_focus, what=f"focus on {editor}")
    await pilot.press("end", *["backspace"] * (len(editor.value) + 1), *text)
    await wait_for(pilot, lambda: editor.value == text,
                   what=lambda: f"{text!r} typed into {editor} (it holds {editor.value!r}; focus is on {editor.app.focused})")

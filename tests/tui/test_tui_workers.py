"""A background task that raises is reported in one place and the workbench keeps running."""

from __future__ import annotations

import ast
from pathlib import Path

import fgbench.tui.widgets.recipes_pane as recipes_pane
from tui_helpers import ready_pane, tui_app, wait_for

TUI = Path(recipes_pane.__file__).resolve().parents[1]


async def test_an_unexpected_error_in_a_worker_is_a_notification_not_a_crash(dirs, monkeypatch):
    target = dirs.project / "tiny.toml"
    target.write_text('name = "tiny"\n')

    def broken_read(path):
        raise RuntimeError("the disk answered nonsense")

    app = tui_app(dirs)
    said: list[str] = []
    notify = app.notify

    def recording_notify(message, *args, **kwargs):
        said.append(str(message))
        return notify(message, *args, **kwargs)

    app.notify = recording_notify  # type: ignore[method-assign]
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        await pilot.pause()
        monkeypatch.setattr(recipes_pane, "read_doc", broken_read)
        pane.request_open(target)  # a @work method: the error is raised inside the worker
        await wait_for(pilot, lambda: any("the disk answered nonsense" in s for s in said),
                       what="the failure's notification")
        assert app.is_running and app.return_code is None
        # the pane still works: a key still reaches the app
        await pilot.press("1")
        await pilot.pause()
        assert app.is_running


def test_every_worker_in_the_tui_reports_its_failures_instead_of_exiting():
    """Every run_worker passes exit_on_error=False, every @work is fgbench's, and every class that
    starts workers mixes in ReportsWorkerFailures (Worker.StateChanged does not bubble)."""
    problems = []
    for f in sorted(TUI.rglob("*.py")):
        if f.name == "workers.py":
            continue
        src = f.read_text()
        tree = ast.parse(src)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "textual" and any(a.name == "work" for a in node.names):
                problems.append(f"{f.name}: imports textual's work (use fgbench.tui.workers.work)")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "run_worker":
                if not any(k.arg == "exit_on_error" and isinstance(k.value, ast.Constant) and k.value.value is False
                           for k in node.keywords):
                    problems.append(f"{f.name}:{node.lineno}: run_worker without exit_on_error=False")
            if isinstance(node, ast.Call) and any(isinstance(a, ast.Attribute) and a.attr == "run_worker" for a in node.args):
                if not any(k.arg == "exit_on_error" for k in node.keywords):
                    problems.append(f"{f.name}:{node.lineno}: run_worker passed on without exit_on_error=False")
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            body = ast.unparse(cls)
            if ("run_worker" in body or "@work" in body) and not any(
                    (getattr(b, "id", None) or getattr(b, "attr", None)) == "ReportsWorkerFailures" for b in cls.bases):
                problems.append(f"{f.name}: class {cls.name} starts workers without ReportsWorkerFailures")
    assert not problems, "\n".join(problems)


async def test_a_runs_change_that_arrives_while_the_app_shuts_down_is_ignored(dirs):
    """The run watcher can post a change after the last screen is gone (quitting with a run live):
    the handler must not ask for a screen that no longer exists (it raised ScreenStackError)."""
    from fgbench.tui.messages import RunsChanged

    app = tui_app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready_pane(pilot, "recipes")
    assert not app.screen_stack
    app.on_runs_changed(RunsChanged({dirs.runs / "some-run"}))  # no exception

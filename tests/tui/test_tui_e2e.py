"""End to end: the real quickstart recipe, started from the TUI, trains and finishes.

This is the one TUI test that runs the real trainer (torch, in its own process); the TUI process
itself still never imports torch. The epochs are cut to 1 in the form, as a user would.
"""

from __future__ import annotations

import importlib.util

import pytest

from fgbench import paths

from fgbench.rundir import events as metrics
from fgbench.tui.app import make_app
from fgbench.tui.screens.monitor import MonitorScreen
from fgbench.tui.widgets.run_view import RunView
from tui_helpers import kill_quietly, ready_pane, wait_for

QUICKSTART = (paths.project_recipes_dir() or paths.home()) / "quickstart.toml"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("fgbench.train.runner") is None,
                    reason="the trainer (fgbench.train.runner) is not importable in this checkout yet")
@pytest.mark.skipif(not QUICKSTART.is_file(), reason="recipes/quickstart.toml is not in this checkout yet")
async def test_quickstart_runs_to_completion_from_the_tui(dirs):
    app = make_app(recipes_dirs=[QUICKSTART.parent, dirs.user], runs_root=dirs.runs, data_root=dirs.data,
                   initial_recipe=QUICKSTART, watch_interval=0.5)
    pid = None
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            pane = await ready_pane(pilot, "recipes")
            editor = await pane.form.reveal("schedule.epochs")
            editor.focus()
            # 2: the quickstart's one warm-up epoch must be shorter than the run
            await pilot.press("end", *["backspace"] * 4, "2")
            await wait_for(pilot, lambda: pane.form.validation.recipe is not None
                           and pane.form.validation.recipe.schedule.epochs == 2, what="epochs = 2")
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="monitor")
            model = app.store.model(app.screen.path)
            run_dir = app.screen.path
            await wait_for(pilot, lambda: model.pid is not None, what="pid")
            pid = model.pid
            await wait_for(pilot, lambda: model.status in ("completed", "failed"), timeout=300,
                           what=lambda: f"the run to finish ({model.status}, {model.console_tail()[-5:]})")
            assert model.status == "completed", model.console_tail()
            view = app.screen.query_one(RunView)
            await wait_for(pilot, lambda: view.snapshot is not None and view.snapshot.status == "completed",
                           what="drawn")
            assert view.snapshot.series["loss"][2], "the loss was plotted"
            assert "best raw" in str(view.query_one("#run-log").render())
        events = metrics.read_events(run_dir / metrics.METRICS_FILE)
        assert events[-1]["event"] == "run_finished" and events[-1]["status"] == "completed"
        assert (run_dir / "summary.json").is_file()
    finally:
        kill_quietly(pid)

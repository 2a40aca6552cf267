"""SVG snapshots of every pane at 80x24 and 120x40 (pytest-textual-snapshot; textual is pinned
exactly in the test extra because rendering changes between versions).

Everything shown is fixed: recipes and runs are written by the test with fixed names, numbers
and event times, the datasets directory is a path that does not exist (every dataset shows as
missing), no clock is shown and no notification is raised. Update after an intended change with
``pytest tests/tui/test_tui_snapshots.py --snapshot-update`` and look at the report.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

from fgbench.tui.screens.monitor import MonitorScreen
from fgbench.tui.widgets.run_view import RunView
from fakes.fake_trainer import fake_cmd
from fakes.run_factory import fixture_runs
from tui_helpers import tui_app, wait_for

SIZES = [(80, 24), (120, 40)]
NO_DATA = Path("/nonexistent/fgbench-snapshot-data")


@pytest.fixture
def snap_dirs(dirs):
    fixture_runs(dirs.runs)
    return dirs


def _app(dirs, pane: str):
    return tui_app(dirs, data_root=NO_DATA, fgbench_cmd=fake_cmd(), initial_pane=pane, watch_interval=0.2)


async def _settle(pilot, *, runs: bool = True) -> None:
    app = pilot.app
    if runs:
        await wait_for(pilot, lambda: len(app.store.rows()) == 4 and app.pane("runs") is not None
                       and app.pane("runs").table.row_count == 4, what="runs loaded")
    await wait_for(pilot, lambda: all(app.pane(p) is not None for p in ("datasets", "recipes", "runs", "compare")),
                   what="panes mounted")
    for widget in app.query(Input):
        widget.cursor_blink = False
    # focus decides the highlighted row: set it here rather than racing the pane's own focusing
    screen = app.main_screen
    screen.focus_pane(screen.query_one("#panes").active)
    await pilot.pause()
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_datasets_pane(snap_compare, snap_dirs, size):
    assert snap_compare(_app(snap_dirs, "datasets"), terminal_size=size, run_before=_settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_recipes_pane(snap_compare, snap_dirs, size):
    async def expand(pilot):
        await _settle(pilot)
        form = pilot.app.pane("recipes").form
        await form.reveal("optim.lr")  # one section open: a union with its variant picker
        for widget in pilot.app.query(Input):
            widget.cursor_blink = False
        pilot.app.pane("recipes").query_one("#recipe-list").focus()
        await pilot.pause()

    assert snap_compare(_app(snap_dirs, "recipes"), terminal_size=size, run_before=expand)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_runs_pane(snap_compare, snap_dirs, size):
    assert snap_compare(_app(snap_dirs, "runs"), terminal_size=size, run_before=_settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_compare_pane(snap_compare, snap_dirs, size):
    async def select(pilot):
        await _settle(pilot)
        app = pilot.app
        app.set_compare([snap_dirs.runs / "20250301-090000-cub_r50", snap_dirs.runs / "20250302-100000-cub_r50_ema",
                         snap_dirs.runs / "20250304-120000-cifar_r18"])
        await wait_for(pilot, lambda: app.pane("compare").query_one("#compare-table").row_count == 3,
                       what="compare table")
        await pilot.pause()

    assert snap_compare(_app(snap_dirs, "compare"), terminal_size=size, run_before=select)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_monitor_of_a_completed_run(snap_compare, snap_dirs, size):
    async def open_run(pilot):
        await _settle(pilot)
        app = pilot.app
        table = app.pane("runs").table
        table.focus()
        table.move_cursor(row=2)  # 20250302-100000-cub_r50_ema, completed
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="monitor")
        view = app.screen.query_one(RunView)
        await wait_for(pilot, lambda: view.snapshot is not None and view.snapshot.status == "completed"
                       and view.snapshot.step == 100, what="run drawn")
        await pilot.pause()

    assert snap_compare(_app(snap_dirs, "runs"), terminal_size=size, run_before=open_run)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_monitor_of_a_failed_run(snap_compare, snap_dirs, size):
    async def open_run(pilot):
        await _settle(pilot)
        app = pilot.app
        table = app.pane("runs").table
        table.focus()
        table.move_cursor(row=1)  # 20250303-110000-cars_r18, failed
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="monitor")
        view = app.screen.query_one(RunView)
        await wait_for(pilot, lambda: view.snapshot is not None and view.snapshot.status == "failed", what="drawn")
        await pilot.pause()

    assert snap_compare(_app(snap_dirs, "runs"), terminal_size=size, run_before=open_run)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help_screen(snap_compare, snap_dirs, size):
    assert snap_compare(_app(snap_dirs, "runs"), terminal_size=size, run_before=_settle, press=["question_mark"])


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_compare_workspace_with_cursor_and_sorted_table(snap_compare, snap_dirs, size):
    async def select(pilot):
        await _settle(pilot)
        app = pilot.app
        pane = app.pane("compare")
        app.set_compare([snap_dirs.runs / "20250301-090000-cub_r50", snap_dirs.runs / "20250302-100000-cub_r50_ema"])
        await wait_for(pilot, lambda: pane.query_one("#compare-table").row_count == 2, what="compare table")
        await wait_for(pilot, lambda: pane.query("#chart-loss") and pane.query_one("#chart-loss").lines,
                       what="charts drawn")
        pane.sort_by("val_top1")
        for _ in range(30):
            pane.action_cursor(1)
        await pilot.pause()
        await pilot.pause()

    assert snap_compare(_app(snap_dirs, "compare"), terminal_size=size, run_before=select)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_error_analysis_view(snap_compare, dirs, size, monkeypatch):
    from test_tui_analysis import make_analysis_run, open_analysis

    monkeypatch.setenv("FGBENCH_IMAGES", "halfcell")
    run_dir = make_analysis_run(dirs.runs)

    async def open_it(pilot):
        await wait_for(pilot, lambda: all(pilot.app.pane(p) is not None for p in ("datasets", "recipes", "runs",
                                                                                   "compare")), what="panes")
        await open_analysis(pilot, run_dir)
        await pilot.pause()

    assert snap_compare(_app(dirs, "runs"), terminal_size=size, run_before=open_it)

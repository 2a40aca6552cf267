"""The monitor's system panel: the step's data wait and parts and the latest health sample beside
the plots, with one plain sentence when the run is input-bound or its GPU sits idle."""

from __future__ import annotations

from pathlib import Path

import pytest

from fgbench.rundir import events as metrics
from fgbench.runmodel import RunModel, health_sentence, system_rows
from fgbench.tui.screens.monitor import MonitorScreen
from fgbench.tui.widgets.run_view import RunView
from fakes.fake_trainer import fake_cmd
from fakes.run_factory import make_fixture_run
from tui_helpers import tui_app, wait_for

NO_DATA = Path("/nonexistent/fgbench-snapshot-data")
RUN_ID = "20250305-130000-cub_r50_slow"


def telemetry_run(root: Path, *, data_wait: float = 0.41, gpu_util: float = 87.0) -> Path:
    """A stopped fixture run, then one logging step with its timing and one health sample."""
    run = make_fixture_run(root, RUN_ID, name="cub_r50_slow", dataset="cub200", arch="resnet50",
                           status="interrupted")
    t = 1_700_000_100.0
    with metrics.MetricsWriter(run / metrics.METRICS_FILE) as w:
        w.emit("step", epoch=4, step=100, loss=0.9, lr=0.01, images_per_s=450.0, data_wait_frac=data_wait,
               data_ms=120.0, forward_ms=61.5, backward_ms=118.0, optimizer_ms=7.25, ema_ms=2.5, time=t)
        w.emit("system", epoch=4, step=100, cpu_percent=98.0, rss_mb=2300.0, workers=4, workers_cpu_percent=390.0,
               workers_rss_mb=1800.0, machine_cpu_percent=99.0, machine_mem_percent=41.0, gpu_util=gpu_util,
               gpu_mem_mb=14_540.8, gpu_power_w=212.0, gpu_temp_c=64.0, time=t)
    return run


def _snapshot(run: Path):
    model = RunModel(run)
    model.update()
    return model.snapshot()


def test_panel_rows_and_the_input_bound_sentence(tmp_path) -> None:
    snap = _snapshot(telemetry_run(tmp_path))
    assert system_rows(snap) == [
        ("data wait", "41 %"),
        ("fwd/bwd", "62 / 118 ms"),
        ("opt/ema", "7.2 / 2.5 ms"),
        ("trainer", "98 % CPU 2.2 GB"),
        ("4 workers", "390 % CPU 1.8 GB"),
        ("machine", "99 % CPU 41 % mem"),
        ("GPU", "87 %  14.2 GB"),
        ("", "212 W  64 °C"),
    ]
    assert health_sentence(snap) == ("waiting for data 41 % of the step: more workers, `loader = cached`, or a "
                                     "smaller test-time resize")
    assert snap.series["gpu_util"][2] == [87.0] and snap.series["data_wait_frac"][2] == [0.41]


def test_an_idle_gpu_is_named_only_while_the_run_runs(tmp_path) -> None:
    snap = _snapshot(telemetry_run(tmp_path, data_wait=0.05, gpu_util=31.0))
    assert health_sentence(snap) is None  # stopped: the GPU is idle because nothing runs
    snap.status = "running"
    assert health_sentence(snap) == ("the GPU is busy only 31 % of the time: a larger batch, or look at the CPU "
                                     "side (data wait, evaluation, checkpoints)")
    snap.system = None
    assert health_sentence(snap) is None


def test_a_run_without_telemetry_has_no_panel(tmp_path) -> None:
    run = make_fixture_run(tmp_path, "20250301-090000-old", name="old", dataset="cub200", arch="resnet50")
    snap = _snapshot(run)
    assert system_rows(snap) == [] and health_sentence(snap) is None


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_monitor_shows_the_system_panel(snap_compare, dirs, size):
    telemetry_run(dirs.runs)

    async def open_run(pilot):
        app = pilot.app
        await wait_for(pilot, lambda: app.pane("runs") is not None and app.pane("runs").table.row_count == 1,
                       what="runs loaded")
        table = app.pane("runs").table
        table.focus()
        table.move_cursor(row=0)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="monitor")
        view = app.screen.query_one(RunView)
        await wait_for(pilot, lambda: view.snapshot is not None and view.snapshot.system is not None
                       and view.has_class("-has-system"), what="panel drawn")
        panel = str(view.query_one("#run-system").render())
        assert "data wait" in panel and "waiting for data 41 %" in panel
        await pilot.pause()

    app = tui_app(dirs, data_root=NO_DATA, fgbench_cmd=fake_cmd(), initial_pane="runs", watch_interval=0.2)
    assert snap_compare(app, terminal_size=size, run_before=open_run)

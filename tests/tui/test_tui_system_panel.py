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


async def open_the_only_run(pilot) -> RunView:
    """From the Runs pane, open its one run in the monitor and wait for the system panel."""
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
    return view


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_monitor_shows_the_system_panel(snap_compare, dirs, size):
    telemetry_run(dirs.runs)

    async def open_run(pilot):
        view = await open_the_only_run(pilot)
        panel = str(view.query_one("#run-system").render())
        assert "data wait" in panel and "waiting for data 41 %" in panel
        await pilot.pause()

    app = tui_app(dirs, data_root=NO_DATA, fgbench_cmd=fake_cmd(), initial_pane="runs", watch_interval=0.2)
    assert snap_compare(app, terminal_size=size, run_before=open_run)


def test_a_narrow_legend_drops_the_axis_note_and_a_lone_entry_then_wraps_never_the_readings() -> None:
    """24-column charts (80 columns less the system panel, two charts across): the legend's one row
    lost the top-1 chart's EMA entries and the learning-rate and images/s charts' "now"."""
    from fgbench.tui.plots import Line, legend_rows

    def plain(rows) -> list[str]:
        return [str(r) for r in rows]

    top1 = [Line([1], [1], (1, 2, 3), label, marker=m) for label, m in
            (("train", "·"), ("val", "•"), ("test", "x"), ("EMA test", "+"))]
    # "top-1 ·train •val xtest +EMA test" is 33 columns: two rows, entries whole, the note where it fits
    assert plain(legend_rows("top-1", top1, width=23, note="x: step", max_rows=2)) == [
        "top-1 ·train •val xtest", "+EMA test x: step"]
    assert plain(legend_rows("top-1", top1, width=20, note="x: step", max_rows=2)) == [
        "top-1 ·train •val", "xtest +EMA test"]
    # one series: its entry repeats the title, and goes before the reading does
    lr = [Line([1], [1], (1, 2, 3), "lr")]
    assert plain(legend_rows("learning rate", lr, "now 0.01", width=23, note="x: step", max_rows=2)) == [
        "learning rate now 0.01"]
    assert plain(legend_rows("learning rate", lr, "now 0.01", width=40, note="x: step", max_rows=2)) == [
        "learning rate  ━ lr  now 0.01  x: step"]
    speed = [Line([1], [1], (1, 2, 3), "images/s")]
    assert plain(legend_rows("images/s", speed, "now 1,140", width=23, note="x: step", max_rows=2)) == [
        "images/s now 1,140"]
    # nothing fits even in two rows: the one row, cut by the widget
    assert plain(legend_rows("top-1", top1, width=8, note="x: step", max_rows=2)) == [
        "top-1 ·train •val xtest +EMA test"]


async def test_at_80_columns_with_the_panel_every_legend_entry_and_reading_is_on_screen(dirs):
    telemetry_run(dirs.runs)
    app = tui_app(dirs, data_root=NO_DATA, fgbench_cmd=fake_cmd(), initial_pane="runs", watch_interval=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await open_the_only_run(pilot)

        def legend(plot_id: str) -> str:
            return str(view.query_one(f"#{plot_id} > .legend").render())

        # the charts are narrower than the top-1 legend's one row: it takes two
        await wait_for(pilot, lambda: "EMA test" in legend("plot-top1"),
                       what=lambda: f"every top-1 entry, not {legend('plot-top1')!r}")
        top1 = view.query_one("#plot-top1")
        assert top1.size.width < 34
        rows = legend("plot-top1").splitlines()
        assert len(rows) == 2 and all(len(r) < top1.size.width for r in rows), rows
        for entry in ("·train", "•val", "xtest", "+EMA test"):
            assert entry in legend("plot-top1")
        assert "…" not in legend("plot-top1")
        # the readings: the last step event's lr 0.01 and 450 images/s
        assert "now 0.01" in legend("plot-lr") and "now 450" in legend("plot-speed"), (legend("plot-lr"),
                                                                                       legend("plot-speed"))
        # the second legend row took the plot's top frame line, not a row of data
        loss = view.query_one("#plot-loss")
        await wait_for(pilot, lambda: top1.plot.size.height == loss.plot.size.height - 1, what="the legend's row taken")
        await pilot.pause()
        assert _data_rows(top1) == _data_rows(loss) == 3, (top1.plot.plt.build(), loss.plot.plt.build())


def _data_rows(plot) -> int:
    """The rows of a drawn chart above its x axis that are not its top frame line."""
    import re

    lines = re.sub(r"\x1b\[[0-9;]*m", "", plot.plot.plt.build()).splitlines()
    axis = next(i for i, line in enumerate(lines) if "└" in line)
    return len([line for line in lines[:axis] if "┌" not in line])

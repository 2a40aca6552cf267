"""The monitor's header says where the run stands, from its events (issue 22 item 6): the step after
a stop or during an evaluation, the epoch beside the checkpoint a stopped run resumes from, and one
images/s figure with the result panel. Run directories written by tests/fakes/run_factory.py, no
training; the expected texts are worked out from the events each test writes."""

from __future__ import annotations

from pathlib import Path

from fgbench.tui.messages import OpenRun
from fgbench.tui.screens.monitor import MonitorScreen
from fgbench.tui.widgets.run_view import RunView
from fakes.fake_trainer import fake_cmd
from fakes.run_factory import make_event_run, make_fixture_run
from tui_helpers import tui_app, wait_for


def _step(epoch: int, step: int, images_per_s: float) -> dict:
    return {"event": "step", "epoch": epoch, "step": step, "loss": 1.0, "lr": 0.1, "images_per_s": images_per_s}


async def _header(dirs, run_dir: Path, status: str) -> tuple[str, str]:
    """The progress line and the bottom panel of ``run_dir``'s monitor, once drawn with ``status``."""
    app = tui_app(dirs, fgbench_cmd=fake_cmd(), initial_pane="runs", watch_interval=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.store.loaded_once, what="runs read")
        if not isinstance(app.screen, MonitorScreen):  # one live run opens by itself
            app.post_message(OpenRun(run_dir))
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.path == run_dir,
                       what="the monitor")
        view = app.screen.query_one(RunView)
        await wait_for(pilot, lambda: view.snapshot is not None and view.snapshot.status == status,
                       what=f"the run drawn as {status}")
        await pilot.pause()
        return str(view.query_one("#progress-text").render()), str(view.query_one("#run-log").render())


async def test_after_a_stop_the_header_shows_the_step_of_the_stops_checkpoint(dirs):
    """Steps logged every 10; a stop at step 24 of epoch 1 writes last.pt there (0 epochs done). The
    header showed step 20 (the last step event) beside "continues from ... step 24"."""
    run = make_event_run(dirs.runs, "20250101-000000-stop", [
        _step(1, 10, 900.0), _step(1, 20, 1100.0),
        {"event": "checkpoint", "kind": "last", "epoch": 0, "step": 24, "path": "checkpoints/last.pt"},
        {"event": "run_finished", "status": "interrupted", "exit_code": 130},
    ], summary={"status": "interrupted"})
    progress, bottom = await _header(dirs, run, "interrupted")
    assert progress.startswith("epoch 1/4  step 24/100"), progress
    assert "checkpoint written at step 24" in bottom
    # no epoch ended: there is no summary figure, and a stopped run has no "now"
    assert "img/s" not in progress


async def test_during_an_evaluation_the_header_shows_the_step_it_evaluates(dirs):
    """Epoch 1 ends at step 25; its last step event was at 20. The evaluations at step 25 come
    before the epoch event (a long test set takes minutes): the header stayed at step 20."""
    run = make_event_run(dirs.runs, "20250101-000000-eval", [
        _step(1, 10, 900.0), _step(1, 20, 1100.0),
        {"event": "eval", "epoch": 1, "step": 25, "split": "val", "model": "raw", "top1": 40.0},
        {"event": "eval", "epoch": 1, "step": 25, "split": "test", "model": "raw", "top1": 39.0},
    ], live=True)
    progress, _ = await _header(dirs, run, "running")
    assert "epoch 1/4  step 25/100" in progress, progress
    # before the first summary, the live figure, said as such: the last step window's
    assert "1,100 img/s now" in progress


async def test_a_killed_runs_header_shows_the_epoch_of_the_checkpoint_it_resumes_from(dirs):
    """Checkpoints at the end of epochs 1 and 2 (steps 10, 20); killed at step 25 in epoch 3. The
    header said "epoch 3/4 step 25/40" beside "checkpoint last at step 20 (2 epochs done)" and
    "continues from the checkpoint written at step 20"; it now shows that checkpoint's epoch 2."""
    events: list[dict] = []
    for epoch in (1, 2):
        events += [_step(epoch, 10 * epoch - 5, 100.0), _step(epoch, 10 * epoch, 100.0),
                   {"event": "epoch", "epoch": epoch, "step": 10 * epoch, "train_loss": 1.0, "train_top1": 50.0,
                    "lr": 0.1, "images_per_s": 100.0, "epoch_time": 1.0},
                   {"event": "checkpoint", "kind": "last", "epoch": epoch, "step": 10 * epoch,
                    "path": "checkpoints/last.pt"}]
    events.append(_step(3, 25, 100.0))
    run = make_event_run(dirs.runs, "20250101-000000-killed", events, steps_per_epoch=10,
                         summary={"status": "running", "epochs_done": 2, "step": 20, "images_per_s": 100.0})
    progress, bottom = await _header(dirs, run, "interrupted")
    assert progress.startswith("epoch 2/4  step 20/40"), progress
    assert "checkpoint written at step 20" in bottom


async def test_the_header_and_the_result_panel_show_one_images_per_second(dirs):
    """The summary says 1000 images/s (training images over training time); the last step event
    of the run said 1140. The header showed 1,140 above "throughput 1000 images/s"."""
    run = make_fixture_run(dirs.runs, "20250301-090000-cub_r50", name="cub_r50", dataset="cub200",
                           arch="resnet50")
    progress, bottom = await _header(dirs, run, "completed")
    assert "1,000 img/s" in progress and "1,140" not in progress, progress
    assert "throughput   1,000 images/s" in bottom


def test_a_resumed_run_counts_again_from_its_checkpoint():
    """Killed at step 15 with last.pt at step 10 (1 epoch done): the resumed session trains steps
    11-15 again, and its run_started says where it resumed. The position goes back to step 10 and
    follows the new steps; the largest step seen would show 15 until the run passed it."""
    from fgbench.runmodel import RunModel

    model = RunModel("/nonexistent/run")
    model.feed([_step(1, 5, 1.0), _step(1, 10, 1.0), _step(2, 15, 1.0),
                {"event": "run_started", "resumed": {"epoch": 1, "step": 10}, "total_epochs": 4},
                _step(2, 12, 1.0)])
    snap = model.snapshot()
    assert (snap.epoch, snap.step) == (2, 12)


async def test_a_run_resumed_from_a_stop_in_epoch_1_shows_epoch_1_at_once(dirs):
    """Stopped at step 25 of epoch 1 (0 epochs done), resumed and training: walking the tour, the
    header read "epoch 0/2  step 25/70" until the next event with an epoch, the checkpoint's
    epochs done."""
    from fgbench.rundir import procs

    run = make_event_run(dirs.runs, "20250101-000000-resumed", [
        _step(1, 20, 40.0), {"event": "checkpoint", "kind": "last", "epoch": 0, "step": 25, "path": "l.pt"},
        {"event": "run_finished", "status": "interrupted", "exit_code": 130},
        {"event": "run_started", "run_id": "20250101-000000-resumed", "recipe": {}, "class_names": ["a", "b"],
         "device": "cpu", **procs.identity(), "resumed": {"epoch": 0, "step": 25}, "total_epochs": 2,
         "total_steps": 70},
    ], epochs=2, steps_per_epoch=35, live=True)
    progress, _ = await _header(dirs, run, "running")
    assert progress.startswith("epoch 1/2  step 25/70"), progress


def test_health_samples_move_the_position_between_step_events():
    """Logging every 50 steps, the first step event of a slow run comes minutes after its start;
    the health samples (every few seconds) carry the epoch and step in progress. Walking the tour,
    the header read "epoch 0/2  step 7/70" while epoch 1 trained: it took the sample's step, not
    its epoch."""
    from fgbench.runmodel import RunModel

    model = RunModel("/nonexistent/run")
    model.feed([{"event": "run_started", "total_epochs": 2, "total_steps": 70},
                {"event": "system", "epoch": 1, "step": 7, "cpu_percent": 90.0, "rss_mb": 800.0}])
    snap = model.snapshot()
    assert (snap.epoch, snap.step) == (1, 7)


async def test_before_the_first_step_the_header_says_the_run_is_starting(dirs):
    """A live run whose metrics hold only run_started (the trainer is loading data or compiling):
    the header read "epoch 0/2  step 0/70", an epoch that does not exist. It says the run is
    starting, with dashes where the position will be."""
    run = make_event_run(dirs.runs, "20250101-000000-starting", [], epochs=2, steps_per_epoch=35, live=True)
    progress, bottom = await _header(dirs, run, "running")
    assert progress.startswith("starting  epoch -/2  step -/70"), progress
    assert "epoch 0" not in progress and "step 0" not in progress


def test_a_run_that_ended_before_its_first_step_says_it_trained_none(dirs):
    """A run whose trainer is gone after run_started, before its first step, and one whose metrics
    were never written: no position to show, and the run is not starting either."""
    from fgbench.runmodel import RunModel
    from fgbench.tui.widgets.run_view import progress_text

    dead = make_event_run(dirs.runs, "20250101-000000-dead", [], epochs=2, steps_per_epoch=35)
    empty = make_event_run(dirs.runs, "20250101-000000-empty", [], epochs=2, steps_per_epoch=35)
    (empty / "metrics.jsonl").unlink()
    for run, expected in ((dead, "no step trained  epoch -/2  step -/70"), (empty, "no step trained  epoch -  step -")):
        model = RunModel(run)
        model.update()
        snap = model.snapshot()
        assert snap.status != "running"
        assert str(progress_text(snap)).startswith(expected), str(progress_text(snap))


def test_the_runs_list_shows_no_epoch_before_the_first_step(dirs):
    """The Runs pane's status read "running 0/2" beside the monitor's header: the same dash."""
    from fgbench.runmodel import RunStore
    from fgbench.tui.widgets.runs_pane import status_text

    make_event_run(dirs.runs, "20250101-000000-starting", [], epochs=2, steps_per_epoch=35, live=True)
    make_event_run(dirs.runs, "20250101-000001-training", [_step(1, 5, 100.0)], epochs=2, steps_per_epoch=35,
                   live=True)
    store = RunStore(dirs.runs)
    store.refresh()
    shown = {row.run_id: str(status_text(row)) for row in store.rows()}
    assert shown == {"20250101-000000-starting": "running -/2", "20250101-000001-training": "running 1/2"}

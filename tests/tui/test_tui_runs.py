"""Launching, watching, stopping, resuming and re-attaching runs, with the fake trainer."""

from __future__ import annotations

import inspect

from fgbench.rundir import events as metrics
from fgbench.tui.screens.monitor import MonitorScreen
from fgbench.tui.widgets.run_view import RunView
from fakes.fake_trainer import fake_cmd
from fakes.run_factory import fixture_runs
from tui_helpers import kill_quietly, ready_pane, tui_app, wait_for, wait_pid_gone


def _app(dirs, cmd, **kw):
    return tui_app(dirs, fgbench_cmd=cmd, watch_interval=0.2, **kw)


async def _start_run(pilot) -> None:
    """Ctrl+R once the recipe form has loaded, until the run's monitor is open."""
    app = pilot.app
    await ready_pane(pilot, "recipes")
    await pilot.press("ctrl+r")
    await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="monitor opens")


def _view(app) -> RunView:
    assert isinstance(app.screen, MonitorScreen), app.screen
    return app.screen.query_one(RunView)


async def test_start_watch_stop_and_resume(dirs):
    # 4 epochs x 5 steps, 0.15 s a step; the first session holds after step 17 until it is stopped
    # (under load the whole run once finished before the test pressed x)
    app = _app(dirs, fake_cmd("normal", epochs=4, steps_per_epoch=5, delay=0.15, hold_at=17))
    pid = None
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await _start_run(pilot)
            view = _view(app)
            model = app.store.model(app.screen.path)
            run_dir = app.screen.path
            # the plot and the progress bar follow the metrics file
            await wait_for(pilot, lambda: view.snapshot is not None and view.snapshot.step >= 3, what="steps")
            first_draws = view.draws
            steps, _, losses = view.snapshot.series["loss"]
            assert len(steps) >= 3 and losses[0] > losses[-1]
            assert view.query_one("#plot-loss")._key is not None  # the plot was drawn with data
            assert view.query_one("#run-bar").progress > 0
            assert "epoch" in str(view.query_one("#progress-text").render())
            await wait_for(pilot, lambda: view.draws > first_draws, what="a later redraw")
            pid = model.pid
            assert model.status == "running"

            await pilot.press("x")  # SIGINT: the trainer checkpoints and exits 130
            await wait_for(pilot, lambda: model.status == "interrupted", what="interrupted")
            assert wait_pid_gone(pid)
            await wait_for(pilot, lambda: model.exit_code == 130, what="exit code collected")
            await wait_for(pilot, lambda: "resume with c" in str(view.query_one("#run-log").render()),
                           what="stopped summary")
            stopped_at = model.step
            assert stopped_at < 20

            await pilot.press("c")  # resume from the checkpoint
            await wait_for(pilot, lambda: model.status == "completed", what="resumed run completes")
            events = metrics.read_events(run_dir / metrics.METRICS_FILE)
            starts = [e for e in events if e["event"] == "run_started"]
            assert [e.get("resumed") for e in starts] == [False, True]
            assert model.step == 20
            await wait_for(pilot, lambda: "best raw" in str(view.query_one("#run-log").render()), what="final summary")
            # the run list shows it with its numbers
            await pilot.press("escape")
            rows = app.store.rows()
            assert [(r.status, r.best_val) for r in rows] == [("completed", 80.0)]
    finally:
        kill_quietly(pid)


async def test_a_crashing_trainer_is_reported_with_its_error_and_output(dirs):
    app = _app(dirs, fake_cmd("crash", delay=0.01))
    async with app.run_test(size=(100, 30)) as pilot:
        await _start_run(pilot)
        view = _view(app)
        await wait_for(pilot, lambda: "run failed" in str(view.query_one("#run-log").render()), what="failure shown")
        text = str(view.query_one("#run-log").render())
        assert "RuntimeError: CUDA out of memory (fake)" in text
        assert "last output:" in text
        assert view.has_class("-failed")


async def test_a_trainer_that_dies_before_starting_shows_its_output(dirs):
    app = _app(dirs, fake_cmd("hardcrash"))
    async with app.run_test(size=(100, 30)) as pilot:
        await _start_run(pilot)
        view = _view(app)
        await wait_for(pilot, lambda: "exit code 3" in str(view.query_one("#run-log").render()), what="exit code")
        text = str(view.query_one("#run-log").render())
        assert "ImportError: fake trainer could not import its engine" in text
        # the run directory stayed empty (the trainer never started), yet the run is listed as failed
        assert [(r.status, r.name) for r in app.store.rows()] == [("failed", "tiny")]


def test_a_snapshot_reads_the_status_once_and_shows_the_output_of_the_run_it_calls_failed(tmp_path):
    """The status is worked out from files and processes that change while it is read. A
    snapshot taken as the trainer exits reads it once: the status, the error, the exit code and
    the output all belong to that one reading (the monitor once read the status apart from the
    snapshot and drew "run failed (exit code 3)" without the trainer's last words)."""
    from fgbench.rundir.status import Status
    from fgbench.runmodel import RunModel

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "console.txt").write_text("ImportError: no engine\n")
    model = RunModel(run_dir)
    readings = iter([Status("failed", "the trainer exited with code 3", 3), Status("running")])
    model.reader.status = lambda **_kw: next(readings, Status("running"))  # the trainer exits mid-read
    snap = model.snapshot(console_if_failed=True)
    assert (snap.status, snap.error, snap.exit_code) == ("failed", "the trainer exited with code 3", 3)
    assert snap.console_tail == ["ImportError: no engine"]
    readings = iter([Status("running"), Status("failed", "the trainer exited with code 3", 3)])
    snap = model.snapshot(console_if_failed=True)
    assert (snap.status, snap.error, snap.exit_code, snap.console_tail) == ("running", None, None, [])


async def test_quitting_leaves_the_run_going_and_a_new_tui_reattaches(dirs):
    cmd = fake_cmd("normal", epochs=500, steps_per_epoch=5, delay=0.05)
    app = _app(dirs, cmd)
    pid = None
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await _start_run(pilot)
            model = app.store.model(app.screen.path)
            await wait_for(pilot, lambda: model.step >= 2, what="running")
            pid = model.pid
        # the TUI is gone; the trainer is not
        assert pid is not None and not wait_pid_gone(pid, timeout=0.5)

        again = _app(dirs, cmd, initial_pane="runs")
        async with again.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: [r.status for r in again.store.rows()] == ["running"], what="re-attached")
            runs_pane = again.pane("runs")
            await wait_for(pilot, lambda: runs_pane.table.row_count == 1, what="listed")
            runs_pane.table.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(again.screen, MonitorScreen), what="monitor")
            model = again.store.model(again.screen.path)
            step = model.step
            await wait_for(pilot, lambda: model.step > step, what="events keep arriving")
            await pilot.press("x")
            await wait_for(pilot, lambda: model.status == "interrupted", what="stopped from the new TUI")
        assert wait_pid_gone(pid)
    finally:
        kill_quietly(pid)


async def test_a_redraw_before_the_monitor_has_composed_is_harmless(dirs):
    # CI once saw the runs watcher's RunsChanged reach a MonitorScreen that was pushed but not yet
    # composed: the redraw must wait for the mount instead of failing to find its view.
    fixture_runs(dirs.runs)
    app = _app(dirs, fake_cmd(), initial_pane="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        run_dir = sorted(dirs.runs.iterdir())[0]
        screen = MonitorScreen(run_dir)
        screen.request_redraw()  # not attached at all
        app.push_screen(screen)
        screen.redraw()  # pushed, children not composed yet
        await wait_for(pilot, lambda: screen.query(RunView) and screen.query_one(RunView).snapshot is not None,
                       what="drawn once mounted")


async def test_malformed_metric_lines_are_skipped(dirs):
    app = _app(dirs, fake_cmd("normal", epochs=2, steps_per_epoch=4, delay=0.01, garbage=True))
    async with app.run_test(size=(100, 30)) as pilot:
        await _start_run(pilot)
        model = app.store.model(app.screen.path)
        await wait_for(pilot, lambda: model.status == "completed", what="completed")
        view = _view(app)
        await wait_for(pilot, lambda: view.snapshot.status == "completed", what="drawn")
        assert view.snapshot.skipped == 1
        assert "1 malformed lines skipped" in str(view.query_one("#run-header").render())


async def test_run_list_filter_and_compare(dirs):
    fixture_runs(dirs.runs)
    app = _app(dirs, fake_cmd(), initial_pane="runs")
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.pane("runs")
        await wait_for(pilot, lambda: pane.table.row_count == 4, what="4 runs listed")
        statuses = sorted(str(pane.table.get_cell_at((i, 0))).strip() for i in range(4))
        assert statuses == ["completed", "completed", "failed", "interrupted"]
        await pilot.press("slash", *"cub")
        await wait_for(pilot, lambda: pane.table.row_count == 2, what="filtered")
        await pilot.press("enter")  # back to the table
        await pilot.press("space", "down", "space")
        assert len(app.compare_selection) == 2
        marked = [str(pane.table.get_cell_at((i, 0))) for i in range(2)]
        assert all(m.startswith("■ ") for m in marked)  # marked rows show their Compare colour
        await pilot.press("4")
        compare = app.pane("compare")
        await wait_for(pilot, lambda: compare.query_one("#compare-table").row_count == 2, what="compare table")
        table = compare.query_one("#compare-table")
        names = sorted(str(table.get_cell_at((i, 0))) for i in range(2))
        # the first column is the legend: each run's marker (its colour too) and its name
        marks = {p.name: app.colours.marker(p.name) for p in app.compare_selection}
        assert names == sorted([f"{marks['20250301-090000-cub_r50']} cub_r50",
                                f"{marks['20250302-100000-cub_r50_ema']} cub_r50_ema"])
        # stable colours: distinct while shown together, unchanged when another run joins
        colours = dict(app.colours.colours([p.name for p in app.compare_selection]))
        assert len(set(colours.values())) == 2
        await pilot.press("3")
        await pilot.press("escape")
        pane.query_one("#runs-filter").value = ""
        await wait_for(pilot, lambda: pane.table.row_count == 4, what="unfiltered")
        pane.table.focus()
        pane.table.move_cursor(row=0)
        await pilot.press("space")
        assert len(app.compare_selection) == 3
        after = app.colours.colours([p.name for p in app.compare_selection])
        assert all(after[k] == v for k, v in colours.items())


async def test_stop_of_a_run_that_is_not_running_is_refused(dirs):
    # every wait is on a condition: focus() only asks for the focus, and a key pressed before it
    # moved went to another widget; one pause was all the notices got
    fixture_runs(dirs.runs)
    app = _app(dirs, fake_cmd(), initial_pane="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "runs")
        await wait_for(pilot, lambda: pane.table.row_count == 4, what="listed")
        pane.table.focus()
        await wait_for(pilot, lambda: pane.table.has_focus, what=lambda: f"focus on the runs table, not {app.focused}")

        def notices() -> list[str]:
            return [n.message for n in app._notifications]

        await pilot.press("x")
        await wait_for(pilot, lambda: any("is not running" in m for m in notices()),
                       what=lambda: f"the not-running notice, not {notices()}")
        # resume of a run without a checkpoint is refused with the reason
        await pilot.press("c")
        await wait_for(pilot, lambda: any("no checkpoint" in m for m in notices()),
                       what=lambda: f"the no-checkpoint notice, not {notices()}")


async def test_a_resume_that_fails_to_start_is_reported(dirs):
    from fgbench import rundir

    fixture_runs(dirs.runs)
    stopped = dirs.runs / "20250304-120000-cifar_r18"
    (stopped / rundir.CHECKPOINT_DIR).mkdir()
    (stopped / rundir.CHECKPOINT_DIR / rundir.LAST_CKPT).write_bytes(b"checkpoint")
    app = _app(dirs, fake_cmd("hardcrash"), initial_pane="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.pane("runs")
        await wait_for(pilot, lambda: pane.table.row_count == 4, what="listed")
        pane.table.focus()
        pane.table.move_cursor(row=0)  # the interrupted run
        model = app.store.model(stopped)
        assert model.status == "interrupted"
        await pilot.press("c")
        await wait_for(pilot, lambda: model.status == "failed", what="failed resume")
        assert model.error == "the trainer exited with code 3"
        assert any("ImportError" in line for line in model.console_tail())


async def test_a_quiet_live_runs_time_moves_in_the_list_by_its_own_cell(dirs):
    # A run between events (one step a minute here) is still running: its time cell counts the
    # seconds since its last event, touched alone each second, while the rest of the list (four
    # finished runs) and the cursor stay as they are.
    fixture_runs(dirs.runs)
    app = _app(dirs, fake_cmd("normal", epochs=3, steps_per_epoch=2, delay=60))
    pid = None
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await _start_run(pilot)
            path = app.screen.path
            model = app.store.model(path)
            await wait_for(pilot, lambda: model.status == "running", what="running")
            pid = model.pid
            await pilot.press("escape")
            app.action_pane("runs")
            pane = app.pane("runs")
            await wait_for(pilot, lambda: pane.table.row_count == 5, what=lambda: f"5 runs listed, not {pane.table.row_count}; store {[(r.path.name, r.status) for r in app.store.rows()]} screen {app.screen}")
            key = str(path)
            finished = {str(r.path): pane._row_cells(r) for r in app.store.rows() if r.status != "running"}
            pane.table.move_cursor(row=pane.table.get_row_index(key))
            # the whole table given again from the per-second tick (the store's own updates may
            # still do so when the run directory changes)
            from_tick = []
            real_set_rows = pane.table.set_rows

            def spy(*a, **k):
                if any(frame.function == "_tick_live" for frame in inspect.stack(0)):
                    from_tick.append(1)
                return real_set_rows(*a, **k)

            pane.table.set_rows = spy
            # nor every run's status read again (the store's rows: a lock check and files per run)
            real_store_rows = app.store.rows

            def store_spy():
                if any(frame.function == "_tick_live" for frame in inspect.stack(0)):
                    from_tick.append(2)
                return real_store_rows()

            app.store.rows = store_spy

            def seconds() -> str:
                return str(pane.table.get_cell(key, "time"))

            first = seconds()
            await wait_for(pilot, lambda: seconds() != first, what=lambda: f"the time to move from {first}")
            second = seconds()
            await wait_for(pilot, lambda: seconds() != second, what=lambda: f"the time to move from {second}")
            assert model.step == 0  # no event came: the tick alone moved it
            assert from_tick == []
            assert pane.table.coordinate_to_cell_key((pane.table.cursor_row, 0)).row_key.value == key
            for k, cells in finished.items():
                assert [str(pane.table.get_cell(k, c)) for c in ("recipe", "time")] == [str(cells[2]), str(cells[8])]
    finally:
        kill_quietly(pid)


def test_the_store_reports_runs_and_news_that_the_monitor_read_first(tmp_path):
    # The monitor polls the run it shows through the store's own model: the store must still tell
    # the run list about that run (new to the list) and about its news (a new epoch), once each.
    from fakes.run_factory import make_run

    from fgbench.runmodel import RunStore

    first = make_run(tmp_path, "first", status=None, epochs=1)  # no run_finished: its status moves
    store = RunStore(tmp_path)
    assert store.refresh() == {first}
    assert store.refresh() == set()
    second = make_run(tmp_path, "second", stamp=1_700_000_100.0)
    store.model(second).update()  # the monitor opened it first
    assert store.refresh() == {second}
    assert store.refresh() == set()
    with (first / metrics.METRICS_FILE).open("a", encoding="utf-8") as f:
        f.write('{"event": "log", "time": 1700000200.0, "level": "info", "message": "news"}\n')
    assert store.model(first).update()  # the monitor reads the news first
    assert store.refresh() == {first}
    assert store.refresh() == set()


async def test_the_runs_pane_lists_the_runs_of_runs_list_in_its_order(dirs):
    """One order for every list of runs (fgbench.rundir.newest_first): the Runs pane shows the
    runs `fgbench runs list` prints, in the same order, newest first. Made out of order, with two
    started in the same second (the later one is ``-2``), so that neither creation order nor an
    oldest-first list passes."""
    import json
    import subprocess
    import sys

    from fakes.run_factory import make_run

    made = [make_run(dirs.runs, "mid", stamp=1_700_000_100),
            make_run(dirs.runs, "old", stamp=1_700_000_000),
            make_run(dirs.runs, "new", stamp=1_700_000_300),
            make_run(dirs.runs, "new", stamp=1_700_000_300)]
    assert made[3].name == made[2].name + "-2"
    expected = [made[3].name, made[2].name, made[0].name, made[1].name]  # worked out from the stamps
    out = subprocess.run([sys.executable, "-m", "fgbench", "runs", "list", "--runs-root", str(dirs.runs),
                          "--format", "json"], capture_output=True, text=True, check=True).stdout
    cli_order = [row["run"] for row in json.loads(out)]
    assert cli_order == expected
    app = _app(dirs, fake_cmd(), initial_pane="runs")
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.pane("runs")
        await wait_for(pilot, lambda: pane.table.row_count == 4, what="4 runs listed")
        tui_order = [pane.table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(4)]
        assert [str(dirs.runs / name) for name in cli_order] == tui_order
        await pilot.press("4")  # the Compare pane's sidebar lists them in the same order
        compare = app.pane("compare")
        await wait_for(pilot, lambda: len(compare.visible_rows()) == 4, what="compare sidebar")
        assert [r.path.name for r in compare.visible_rows()] == cli_order


async def test_at_80_columns_every_runs_column_fits_with_long_names(dirs):
    """Sweep runs are named <recipe>-<variant> (48 characters here): at 80 columns the Runs pane
    once pushed dataset, model and time off-screen for every row. Now the names are cut in the
    middle (two runs of one sweep still read apart), the start column goes, then the dataset
    rather than cut the names under 16 characters, and the rest fits; at 120 columns both are back."""
    from fgbench.tui.widgets.runs_pane import COLUMNS
    from fakes.run_factory import make_fixture_run

    long_a = "sc_stanford_cars_resnet50_tricks-B+A+W+mixup+ls2"
    long_b = "sc_stanford_cars_resnet50_tricks-B+A+W+cutmix+l2"
    assert len(long_a) == 48
    fixture_runs(dirs.runs)
    make_fixture_run(dirs.runs, f"20250305-130000-{long_a}", name=long_a, dataset="stanford_cars", arch="resnet50")
    make_fixture_run(dirs.runs, f"20250305-130001-{long_b}", name=long_b, dataset="stanford_cars", arch="resnet50")
    app = _app(dirs, fake_cmd(), initial_pane="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.pane("runs")
        table = pane.table
        await wait_for(pilot, lambda: table.row_count == 6, what="6 runs listed")
        await pilot.pause()
        keys = [str(k.value) for k in table.columns]
        assert keys == [c for c in COLUMNS if c not in ("started", "dataset")]
        # nothing scrolls sideways: the last column ends inside the table
        assert table.virtual_size.width <= table.scrollable_content_region.width, (table.virtual_size, table.size)
        recipes = [str(table.get_cell_at((i, keys.index("recipe")))) for i in range(2)]
        assert all("…" in r and 16 <= len(r) < 48 for r in recipes) and recipes[0] != recipes[1], recipes
        assert recipes[0].endswith("cutmix+l2") and recipes[1].endswith("mixup+ls2"), recipes  # newest first
        assert str(table.get_cell_at((0, keys.index("time")))) == "50s"  # 100 steps of 0.5 s
        await pilot.resize_terminal(120, 40)
        await wait_for(pilot, lambda: [str(k.value) for k in table.columns] == list(COLUMNS), what="all back at 120")

"""Workflows as a user meets them: saving keeps a recipe's
file as written, variant values survive a look at another variant, a dataset that is not there is
said at once, offline errors are shown whole, and the Runs pane / monitor details."""

from __future__ import annotations

import socket
from pathlib import Path

from rich.text import Text
from textual.widgets import DataTable, Input, Select

from fgbench.data import catalog
from fgbench.data.catalog import Source
from fgbench.tui.app import make_app
from fgbench.tui.dialogs import ChoiceScreen, ConfirmScreen, PromptScreen
from tui_helpers import ready_pane, tui_app, type_into, wait_for

COMMENTED = '''\
# tiny, commented by hand
name = "tiny"
description = """\\
wrapped \\
by hand."""

[data]
dataset = "synthetic"  # offline
train_size = 16
test_size = 16
batch_size = 8

[model]
arch = "small_cnn"

[optim]
name = "sgd"
lr = 0.1          # the default, kept on purpose
nesterov = true

[schedule]
epochs = 3
'''


def _app(dirs, **kw):
    return tui_app(dirs, **kw)


# ------------------------------------------------------------------------------ saving


async def test_ctrl_s_on_a_project_recipe_defaults_to_a_copy_that_keeps_comments(dirs):
    project = dirs.project / "tiny.toml"
    project.write_text(COMMENTED)
    app = _app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        editor = await pane.form.reveal("schedule.epochs")
        await type_into(pilot, editor, "5")
        await wait_for(pilot, lambda: pane.dirty, what="edited")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the question")
        assert "project recipe" in app.screen.question
        await pilot.press("enter")  # the default: a copy in the user's folder
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), what="save-as prompt")
        assert app.screen.query_one(Input).value == "tiny.toml"
        await pilot.press("enter")
        copy = dirs.user / "tiny.toml"
        await wait_for(pilot, lambda: copy.is_file() and not pane.dirty, what="copy saved")
        assert project.read_text() == COMMENTED, "the project file is untouched"
        assert copy.read_text() == COMMENTED.replace("epochs = 3", "epochs = 5")
        assert pane.path == copy


async def test_overwriting_with_no_change_leaves_the_file_byte_for_byte(dirs):
    project = dirs.project / "tiny.toml"
    project.write_text(COMMENTED)
    app = _app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready_pane(pilot, "recipes")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the question")
        await pilot.press("o")
        await wait_for(pilot, lambda: not isinstance(app.screen, ChoiceScreen), what="answered")
        await pilot.pause()
        assert project.read_text() == COMMENTED


async def test_a_recipe_of_your_own_is_saved_without_asking_and_keeps_its_layout(dirs):
    mine = dirs.user / "mine.toml"
    mine.write_text(COMMENTED.replace('name = "tiny"', 'name = "mine"'))
    app = make_app(recipes_dirs=[dirs.project, dirs.user], runs_root=dirs.runs, data_root=dirs.data,
                   initial_recipe=mine)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        editor = await pane.form.reveal("optim.lr")
        await type_into(pilot, editor, "0.2")
        await wait_for(pilot, lambda: pane.dirty, what="edited")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not pane.dirty, what="saved")
        assert not isinstance(app.screen, ChoiceScreen)
        expected = COMMENTED.replace('name = "tiny"', 'name = "mine"').replace(
            "lr = 0.1          # the default", "lr = 0.2          # the default")
        assert mine.read_text() == expected


async def test_save_as_keeps_the_name_when_the_offer_is_declined(dirs):
    app = _app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), what="save-as prompt")
        app.screen.query_one(Input).value = "other"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="rename offer")
        await pilot.press("n")
        target = dirs.user / "other.toml"
        await wait_for(pilot, lambda: target.is_file(), what="saved")
        assert 'name = "tiny"' in target.read_text()
        assert pane.recipe_name() == "tiny"


# ------------------------------------------------------------------------ union variants


async def test_switching_a_variant_away_and_back_keeps_its_values_and_the_focus(dirs):
    (dirs.project / "tiny.toml").write_text(COMMENTED)
    app = _app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        form = pane.form
        await form.reveal("optim.lr")
        editor = await form.reveal("optim.momentum")
        await type_into(pilot, editor, "0.8")
        await wait_for(pilot, lambda: form.doc["optim"].get("momentum") == 0.8, what="momentum typed")
        picker = form.query_one("#v-optim", Select)
        picker.focus()
        picker.value = "adam"
        await wait_for(pilot, lambda: "optim.betas" in form.rows, what="adam fields")
        assert "nesterov" not in form.doc["optim"]
        await wait_for(pilot, lambda: app.focused is form.query_one("#v-optim", Select),
                       what="focus back on the variant picker, not the section header")
        form.query_one("#v-optim", Select).value = "sgd"
        # the rows are registered before they are mounted: wait for the widget itself
        await wait_for(pilot, lambda: bool(form.query("#f-optim__momentum")), what="sgd fields again")
        assert form.doc["optim"]["nesterov"] is True
        assert form.doc["optim"]["momentum"] == 0.8
        assert form.query_one("#f-optim__momentum", Input).value == "0.8"
        await wait_for(pilot, lambda: app.focused is form.query_one("#v-optim", Select), what="focus on the picker")


# ------------------------------------------------------------------ datasets not there


async def test_picking_a_dataset_that_is_not_downloaded_offers_the_download(dirs):
    app = make_app(recipes_dirs=[dirs.project, dirs.user], runs_root=dirs.runs, data_root=dirs.data,
                   initial_recipe=dirs.project / "tiny.toml", initial_pane="datasets")
    async with app.run_test(size=(100, 30)) as pilot:
        await ready_pane(pilot, "recipes")
        datasets = app.pane("datasets")
        table = datasets.query_one("#datasets-table", DataTable)
        await wait_for(pilot, lambda: table.row_count > 3, what="catalog")
        started = []
        datasets.start_task = lambda task, name: started.append((task, name))
        table.focus()
        table.move_cursor(row=table.get_row_index("cifar10"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the offer")
        assert "cifar10 is not downloaded" in app.screen.question
        await pilot.press("d")
        await wait_for(pilot, lambda: started == [("download", "cifar10")], what="download started")
        assert app.pane("recipes").form.doc["data"]["dataset"] == "cifar10"


async def test_ctrl_r_on_a_recipe_whose_dataset_is_missing_warns_before_starting(dirs):
    tiny = dirs.project / "tiny.toml"
    tiny.write_text(tiny.read_text().replace('dataset = "synthetic"', 'dataset = "cub200"'))
    app = _app(dirs, fgbench_cmd=["/bin/false"])
    async with app.run_test(size=(100, 30)) as pilot:
        await ready_pane(pilot, "recipes")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the warning")
        assert app.screen.question.startswith("Not started yet: cub200 is not downloaded")
        await pilot.press("escape")
        await pilot.pause()
        assert not any(dirs.runs.iterdir()), "nothing was launched"


async def test_an_offline_download_shows_the_whole_error_and_the_dataset_stays_missing(dirs, monkeypatch):
    def getaddrinfo(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.delenv("FGBENCH_MIRROR_CUB200", raising=False)
    entry = catalog.get("cub200")
    monkeypatch.setitem(catalog._BY_NAME, "cub200", entry.__class__(**{
        **entry.__dict__, "sources": (Source("http://data.example.invalid/CUB_200_2011.tgz", "CUB_200_2011.tgz",
                                             md5="0" * 32, size=1000),)}))
    app = make_app(recipes_dirs=[dirs.project, dirs.user], runs_root=dirs.runs, data_root=dirs.data,
                   initial_recipe=dirs.project / "tiny.toml", initial_pane="datasets")
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.pane("datasets")
        table = pane.query_one("#datasets-table", DataTable)
        await wait_for(pilot, lambda: table.row_count > 3, what="catalog")
        table.focus()
        table.move_cursor(row=table.get_row_index("cub200"))
        notes: list = []
        app.notify = lambda message, **options: notes.append((message, options))
        await pilot.press("g")
        await wait_for(pilot, lambda: pane.active_task is None and pane.last_message, what="download ended")
        assert "no host could be resolved" in pane.last_message
        await pilot.pause()
        message = pane.query_one("#datasets-message")
        needed = len(Text(pane.last_message).wrap(app.console, message.content_region.width))
        assert needed > 4
        assert message.content_region.height >= needed, "the advice at the end is cut off"
        assert str(table.get_cell("cub200", "status")) == "missing"
        # the notification shows the text as it is: "[mirrors]" is not taken for markup and dropped
        from textual.markup import to_content

        text, options = notes[-1]
        assert "[mirrors] cub200" in text
        shown = text if options.get("markup") is False else to_content(text).plain
        assert "[mirrors] cub200" in shown


# ------------------------------------------------------------------------------- runs

import os  # noqa: E402
import time  # noqa: E402

from fgbench import rundir  # noqa: E402

from fgbench.rundir import events as metrics  # noqa: E402
from fgbench.rundir import procs  # noqa: E402
from fgbench.recipe import load_recipe  # noqa: E402
from fgbench.tui.launcher import Launcher  # noqa: E402
from fgbench.runmodel import RunModel  # noqa: E402
from fgbench.tui.screens.main import MainScreen  # noqa: E402
from fgbench.tui.screens.monitor import MonitorScreen  # noqa: E402
from fakes.fake_trainer import fake_cmd  # noqa: E402
from fakes.run_factory import fixture_runs, make_fixture_run  # noqa: E402
from tui_helpers import kill_quietly  # noqa: E402


def _launch_elsewhere(dirs, n: int) -> list:
    """Runs started by an earlier fgbench (another Launcher): still training when the app opens."""
    launcher = Launcher(dirs.runs, fake_cmd("normal", epochs=400, steps_per_epoch=5, delay=0.05))
    recipe = load_recipe(dirs.project / "tiny.toml")
    out = []
    for _ in range(n):
        out.append(launcher.start(recipe))
        time.sleep(1.05)  # run directories are named by the second they start
    return out


async def test_reopening_while_one_run_trains_opens_its_monitor_and_quitting_says_it_keeps_going(dirs):
    launched = _launch_elsewhere(dirs, 1)
    try:
        app = _app(dirs, watch_interval=0.2)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="the live run's monitor")
            assert app.screen.path == launched[0].run_dir
            assert "is training" in app.live_notice
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="back to the panes")
            await pilot.press("ctrl+q")
        assert "1 run keeps training in the background" in app.quit_message
        assert launched[0].run_dir.name in app.quit_message
        assert rundir.pid_alive(launched[0].pid), "quitting never stops a run"
    finally:
        for item in launched:
            kill_quietly(item.pid)


async def test_reopening_while_two_runs_train_says_how_many(dirs):
    launched = _launch_elsewhere(dirs, 2)
    try:
        app = _app(dirs, watch_interval=0.2)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: app.live_notice, what="the notice")
            assert app.live_notice.startswith("2 runs are training")
            assert isinstance(app.screen, MainScreen)
            assert app.main_screen.query_one("#panes").active == "runs"
            await pilot.press("ctrl+q")
        assert app.quit_message.startswith("2 runs keep training")
    finally:
        for item in launched:
            kill_quietly(item.pid)


async def test_a_focus_request_for_a_pane_since_left_does_not_take_the_user_back(dirs):
    """The opening focuses the first pane after a refresh, and again after each refresh while
    that pane mounts; two live runs meanwhile switch to the Runs pane. The late focus of the
    first pane must not switch back (a full suite once caught the app on Recipes with the notice
    "2 runs are training" shown)."""
    app = _app(dirs, initial_pane="recipes")
    async with app.run_test(size=(100, 30)) as pilot:
        await ready_pane(pilot, "recipes")
        screen = app.main_screen
        screen.show_pane("runs")
        await wait_for(pilot, lambda: app.pane("runs") is not None and app.focused is app.pane("runs").table,
                       what="the runs table focused")
        screen.focus_pane("recipes")  # the opening's request, arriving late
        await pilot.pause()
        await pilot.pause()
        assert screen.query_one("#panes").active == "runs"
        assert app.focused is app.pane("runs").table


def test_a_pane_asked_for_before_the_main_screen_has_composed_is_kept_for_later(dirs):
    """Earlier still, the screen is pushed but not composed: asking for a pane then raised
    NoMatches, which killed the app (in a Pilot test the harness then hangs: the likely cause of
    one full-suite run that hung in the reopening test)."""
    screen = MainScreen(recipes_dirs=[("project", dirs.project)], initial_recipe=None, data_root=None,
                        initial_pane="recipes")
    screen.show_pane("runs")
    assert screen._asked_pane == "runs"


async def test_a_pane_asked_for_while_the_panes_open_is_the_pane_shown(dirs, monkeypatch):
    """The run watcher's first report can come while the main screen is still mounting its tabs
    (a loaded machine: the whole suite). The tabs then still had to activate their first pane,
    and that undid the switch to Runs that two live runs asked for."""
    from textual.widgets._tabbed_content import ContentTabs

    opening = ContentTabs._on_mount

    def early(self, event):
        opening(self, event)  # the tabs take their first pane: a message on its way to TabbedContent
        self.screen.show_pane("runs")  # and two live runs ask for Runs before it arrives

    monkeypatch.setattr(ContentTabs, "_on_mount", early)
    app = _app(dirs, initial_pane="recipes")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.pane("runs") is not None and app.focused is app.pane("runs").table,
                       what=lambda: f"the runs table focused (shown: {app.main_screen.query_one('#panes').active})")
        for _ in range(3):
            await pilot.pause()
        assert app.main_screen.query_one("#panes").active == "runs"


async def test_no_live_run_opens_as_before_and_quits_quietly(dirs):
    fixture_runs(dirs.runs)
    app = _app(dirs, watch_interval=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.store.loaded_once and app.watch_rounds >= 2, what="runs read")
        assert isinstance(app.screen, MainScreen) and app.live_notice == ""
        await pilot.press("ctrl+q")
    assert app.quit_message == ""


def _live_run_dir(root: Path, seconds_ago: float) -> Path:
    """A run whose trainer (this test process) is alive and whose latest event is old. Its
    ``run_started`` names the process as the trainer does (pid, start time, host): a record
    without a start time does not keep a run running (fgbench.rundir.procs)."""
    run_dir = root / "20250305-130000-live"
    run_dir.mkdir(parents=True)
    rundir.write_json(run_dir / rundir.RUN_INFO_FILE, {"pid": os.getpid()})
    t = time.time() - seconds_ago
    with metrics.MetricsWriter(run_dir / metrics.METRICS_FILE) as w:
        w.emit("run_started", run_id=run_dir.name, recipe={"name": "live"}, class_names=["a", "b"], device="cpu",
               host=socket.gethostname(), pid=os.getpid(), pid_start=procs.start_time(os.getpid()),
               total_epochs=3, time=t - 20)
        w.emit("step", epoch=1, step=1, loss=1.0, lr=0.1, time=t)
    return run_dir


async def test_the_time_column_of_a_live_run_moves_between_events(dirs):
    run_dir = _live_run_dir(dirs.runs, seconds_ago=100)
    app = _app(dirs, watch_interval=0.2, initial_pane="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="opened on the live run")
        await pilot.press("escape")
        pane = app.pane("runs")
        await wait_for(pilot, lambda: pane.table.row_count == 1, what="listed")
        first = str(pane.table.get_cell(str(run_dir), "time"))
        assert first.startswith("2m")  # 20 s to the last event, then 100 s of silence
        await wait_for(pilot, lambda: str(pane.table.get_cell(str(run_dir), "time")) != first,
                       what="the clock moves with no new event")


async def test_the_stop_screen_says_which_step_the_checkpoint_was_written_at(dirs):
    run_dir = make_fixture_run(dirs.runs, "20250304-120000-cifar_r18", name="cifar_r18", dataset="cifar10",
                               arch="resnet18", status="interrupted")
    app = _app(dirs, watch_interval=0.2, initial_pane="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "runs")
        await wait_for(pilot, lambda: pane.table.row_count == 1, what="listed")
        pane.table.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="monitor")
        log = app.screen.query_one("#run-log")
        # 4 epochs of 25 steps, stopped after epoch 3: last.pt holds step 75
        await wait_for(pilot, lambda: "checkpoint written at step 75" in str(log.render()), what="the step")
    assert run_dir.is_dir()


async def test_escape_leaves_the_runs_filter_then_clears_it(dirs):
    fixture_runs(dirs.runs)
    app = _app(dirs, watch_interval=0.2, initial_pane="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "runs")
        await wait_for(pilot, lambda: pane.table.row_count == 4, what="listed")
        pane.table.focus()
        await pilot.press("slash", "c", "u", "b")
        field = pane.query_one("#runs-filter", Input)
        await wait_for(pilot, lambda: pane.table.row_count == 2, what="filtered")
        await pilot.press("escape")
        assert pane.table.has_focus and field.value == "cub" and pane.table.row_count == 2
        await pilot.press("escape")
        await wait_for(pilot, lambda: field.value == "" and pane.table.row_count == 4, what="filter cleared")


def test_checkpoint_best_lines_name_the_model():
    model = RunModel("/nonexistent/run")
    model.feed([{"event": "checkpoint", "kind": "best", "model": "ema", "epoch": 2, "step": 10, "path": "b.pt"},
                {"event": "checkpoint", "kind": "best", "model": "raw", "epoch": 3, "step": 15, "path": "b.pt"},
                {"event": "checkpoint", "kind": "last", "epoch": 3, "step": 15, "path": "l.pt"}])
    assert list(model.logs) == ["checkpoint best (EMA model) at epoch 2, step 10",
                                "checkpoint best (raw model) at epoch 3, step 15",
                                "checkpoint last at step 15 (3 epochs done)"]
    assert model.snapshot().last_checkpoint == {"epoch": 3, "step": 15}


# ------------------------------------------------------------------------ status words


async def test_dataset_status_words_are_the_cli_ones(dirs, monkeypatch, capsys):
    from fgbench import cli

    monkeypatch.setenv("FGBENCH_DATA", str(dirs.data))
    (dirs.data / "cifar10").mkdir()
    (dirs.data / "cifar10" / "something.part").write_bytes(b"half")  # a started download: partial
    assert cli.main(["data", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    status_col = lines[0].index("STATUS")
    path_col = lines[0].index("PATH")
    cli_words = {line.split()[0]: line[status_col:path_col].strip() for line in lines[1:]}
    assert cli_words["cifar10"] == "partial" and cli_words["intel_scenes"] == "to import"
    app = make_app(recipes_dirs=[dirs.project, dirs.user], runs_root=dirs.runs,
                   initial_recipe=dirs.project / "tiny.toml", initial_pane="datasets")
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.pane("datasets").query_one("#datasets-table", DataTable)
        await wait_for(pilot, lambda: table.row_count > 3, what="catalog")
        tui_words = {key.value: str(table.get_cell(key.value, "status")) for key in table.rows}
    assert tui_words == cli_words


def test_the_stage_line_says_1_epoch_not_1_epochs():
    model = RunModel("/nonexistent/run")
    model.feed([{"event": "stage_started", "stage": 0, "name": "main", "epochs": 1, "train_size": 32},
                {"event": "stage_started", "stage": 1, "name": "fixres", "epochs": 3}])
    assert list(model.logs) == ["stage 0: main, 1 epoch at 32px", "stage 1: fixres, 3 epochs"]


def test_a_checkpoint_at_a_stop_in_epoch_1_reads_as_its_step_not_epoch_0():
    """A stop in the middle of epoch 1 writes last.pt with no epoch done: the log line leads with
    the step, never "checkpoint last at epoch 0" beside the header's "epoch 1/4"."""
    model = RunModel("/nonexistent/run")
    model.feed([{"event": "checkpoint", "kind": "last", "epoch": 0, "step": 12, "path": "l.pt"},
                {"event": "checkpoint", "kind": "last", "epoch": 1, "step": 25, "path": "l.pt"}])
    assert list(model.logs) == ["checkpoint last at step 12 (0 epochs done)", "checkpoint last at step 25 (1 epoch done)"]
    assert not any("at epoch 0" in line for line in model.logs)

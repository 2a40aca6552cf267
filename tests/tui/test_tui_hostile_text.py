"""Names from disk reach the terminal only through fgbench.textsafe.safe: one test per place the
TUI shows them (Classes view, Runs pane: recipe name and model, a failed run's error), checked on
what the app draws (the compositor's strips: the characters sent to the terminal). And opening the
Classes view asks the terminal nothing while the app is live (textual-image's import-time probes)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from fgbench.rundir import events as metrics
from fgbench.rundir import layout
from fgbench.tui.screens.monitor import MonitorScreen
from fgbench.tui.widgets.run_view import RunView
from fakes.fake_trainer import fake_cmd
from fakes.run_factory import make_fixture_run
from test_tui_analysis import open_analysis
from tui_helpers import REPO, tui_app, wait_for

OSC52 = "\x1b]52;c;SGVsbG8=\x07"  # writes "Hello" to the clipboard
TITLE = "\x1b]0;pwned\x07"         # sets the terminal's title
RLO = "\u202e"                     # right-to-left override
CSI = "\x9b2J"                     # C1 CSI: clear the screen


def _screen_text(app) -> str:
    """What the app sends to the terminal for its current screen, line by line."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def _assert_safe(text: str, *shown: str) -> None:
    raw = sorted({repr(ch) for ch in text.replace("\n", "") if not ch.isprintable()})
    assert not raw, f"raw control or format characters reach the terminal: {raw}"
    for s in shown:
        assert s in text, f"{s!r} not shown in {text!r}"


def _app(dirs, **kw):
    return tui_app(dirs, fgbench_cmd=fake_cmd(), watch_interval=0.2, **kw)


async def test_the_classes_view_shows_hostile_class_names_visibly(dirs, monkeypatch):
    monkeypatch.setenv("FGBENCH_IMAGES", "halfcell")
    run_dir = make_fixture_run(dirs.runs, "20250305-130000-birds", name="birds", dataset="cub200", arch="resnet18",
                               epochs=2)
    classes = [f"a{OSC52}", f"b{RLO}gpj.exe", f"c{CSI}"]
    images = dirs.runs.parent / "images"
    images.mkdir()
    from PIL import Image

    files = []
    for k in range(3):
        f = images / f"img{k}{TITLE}.png"
        Image.new("RGB", (8, 8), (80 * k, 0, 0)).save(f)
        files.append(str(f))
    layout.write_json(run_dir / layout.CONFUSION_FILE, {"split": "test", "model": "raw", "class_names": classes,
                                                          "matrix": [[0, 1, 0], [0, 1, 0], [0, 1, 0]], "epoch": 2})
    layout.write_json(run_dir / layout.PREDICTIONS_FILE, {
        "split": "test", "model": "raw", "epoch": 2, "test_size": 8, "class_names": classes,
        "index": [0, 1, 2], "file": files, "label": [0, 1, 2], "predicted": [1, 1, 1]})
    app = _app(dirs, initial_pane="runs")
    async with app.run_test(size=(140, 40)) as pilot:
        await open_analysis(pilot, run_dir)
        await wait_for(pilot, lambda: len(app.screen.shown) == 1, what="the first pair's image")
        _assert_safe(_screen_text(app), r"a\x1b]52;c;SGVsbG8=\x07", r"b\u202egpj.exe", r"c\x9b2J",
                     r"img0\x1b", r"\x07.png")  # a caption is cut in the middle to its tile: both ends escaped


def _hostile_recipe(run_dir: Path, name: str, arch: str) -> None:
    path = run_dir / layout.RECIPE_FILE
    text = path.read_text()
    text = re.sub(r'(?m)^name = ".*"$', lambda _m: f"name = {json.dumps(name)}", text, count=1)
    text = re.sub(r'(?m)^arch = ".*"$', lambda _m: f"arch = {json.dumps(arch)}", text, count=1)
    path.write_text(text)


async def test_the_runs_pane_shows_a_hostile_recipe_name_and_model_visibly(dirs):
    run_dir = make_fixture_run(dirs.runs, "20250305-130000-evil", name="evil", dataset="cub200", arch="resnet18")
    _hostile_recipe(run_dir, f"n{TITLE}", f"m{RLO}")
    app = _app(dirs, initial_pane="runs")
    async with app.run_test(size=(160, 30)) as pilot:
        pane = app.pane("runs")
        await wait_for(pilot, lambda: pane.table.row_count == 1, what="listed")
        await pilot.pause()
        _assert_safe(_screen_text(app), r"n\x1b]0;pwned\x07", r"m\u202e")


async def test_a_failed_runs_error_is_shown_visibly(dirs):
    run_dir = make_fixture_run(dirs.runs, "20250305-130000-crash", name="crash", dataset="cub200",
                               arch="resnet18", status="failed")
    with metrics.MetricsWriter(run_dir / metrics.METRICS_FILE) as w:
        w.emit("log", level="error", message=f"log{OSC52}")
        w.emit("run_finished", status="failed", error=f"E{TITLE}rr\r", traceback=f"Traceback\n  T{CSI}",
               exit_code=1)
    app = _app(dirs, initial_pane="runs")
    async with app.run_test(size=(140, 40)) as pilot:
        app.post_message(__import__("fgbench.tui.messages", fromlist=["OpenRun"]).OpenRun(run_dir))
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="monitor")
        view = app.screen.query_one(RunView)
        await wait_for(pilot, lambda: view.snapshot is not None and view.snapshot.status == "failed", what="drawn")
        await pilot.pause()
        _assert_safe(_screen_text(app), r"E\x1b]0;pwned\x07rr\r", r"T\x9b2J")


PROBE = """
from fgbench.tui import images
cls = images.widget_class()
print("widget", cls.__name__, flush=True)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a pseudo-terminal test")
def test_the_image_widget_is_imported_without_asking_the_terminal(monkeypatch):
    # What the Classes view does once the app is live (FGBENCH_IMAGES auto, in tmux): its output
    # is a terminal, and anything textual-image asks it then is answered into Textual's input.
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO), "FGBENCH_IMAGES": "auto", "TMUX": "/tmp/tmux-0/default,1,0",
           "TERM": "xterm-256color"}
    proc = subprocess.Popen([sys.executable, "-c", PROBE], stdin=slave, stdout=slave, stderr=slave, env=env,
                            close_fds=True)
    os.close(slave)
    out = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 600)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        proc.wait(timeout=600)
        os.close(master)
    assert b"widget HalfcellImage" in out, out
    assert b"\x1b" not in out, f"the terminal was asked something: {out!r}"


async def test_a_forged_confusion_and_predictions_open_as_absent(dirs, monkeypatch):
    monkeypatch.setenv("FGBENCH_IMAGES", "halfcell")
    run_dir = make_fixture_run(dirs.runs, "20250305-130000-forged", name="forged", dataset="cub200", arch="resnet18",
                               epochs=2)
    # wrong types the trainer never writes: duplicate class names, a ragged matrix, files that are numbers
    layout.write_json(run_dir / layout.CONFUSION_FILE, {"class_names": ["a", "a"], "matrix": [[1, 2], [3]]})
    layout.write_json(run_dir / layout.PREDICTIONS_FILE, {"class_names": 3, "label": "x", "file": [7]})
    app = _app(dirs, initial_pane="runs")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_analysis(pilot, run_dir)
        assert screen.confusion is None and screen.predictions is None
        assert "no confusion.json" in _screen_text(app)


async def test_the_compare_pane_shows_hostile_recipe_values_visibly(dirs):
    evil = make_fixture_run(dirs.runs, "20250305-130000-evil", name="evil", dataset="cub200", arch="resnet18")
    plain = make_fixture_run(dirs.runs, "20250305-140000-plain", name="plain", dataset="cub200", arch="resnet50")
    _hostile_recipe(evil, f"n{TITLE}", f"m{RLO}")
    app = _app(dirs, initial_pane="runs")
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: app.pane("runs").table.row_count == 2, what="listed")
        app.set_compare([evil, plain])
        await pilot.press("4")
        ctable = app.pane("compare").query_one("#compare-table")
        await wait_for(pilot, lambda: ctable.row_count == 2, what="compare table")
        await pilot.pause()
        _assert_safe(_screen_text(app), r"m\u202e")


# Names a user or a download controls in the Recipes and Datasets panes: a file or folder name can
# hold anything but "/" and NUL. "[bold]B" checks that no widget reads a name as markup.
HOSTILE = f"{OSC52}{RLO}\r[bold]B"
SHOWN = r"\x1b]52;c;SGVsbG8=\x07\u202e\r[bold]B"


async def test_the_recipes_pane_shows_a_hostile_recipe_file_visibly(dirs):
    from textual.widgets import TextArea

    from fgbench.tui.dialogs import ChoiceScreen, ConfirmScreen, PromptScreen
    from fgbench.tui.text_input import TextInput
    from tui_helpers import ready_pane

    path = dirs.project / f"evil{HOSTILE}.toml"
    # TOML escapes: the parsed values hold the raw characters
    path.write_text(f'# by {RLO}lin\nname = "evil"\ndescription = "d\\u202e\\u001b]0;t\\u0007[bold]x"\n\n'
                    '[[stages]]\nname = "s\\u001b]0;t\\u0007[bold]y"\nepochs = 1\n')  # TOML allows a raw RLO
    app = _app(dirs)
    async with app.run_test(size=(160, 40)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        await pilot.pause()
        _assert_safe(_screen_text(app), r"evil\x1b]52")  # the list, cut to its width
        await pane.open_path(path)
        pane.form.sections["stages"].collapsed = False
        await wait_for(pilot, lambda: "stages[0]" in pane.form.sections, what="the stage's section")
        await pilot.pause()
        _assert_safe(_screen_text(app), f"evil{SHOWN}.toml",    # the title: name and path
                     r"d\u202e\x1b]0;t\x07[bold]x",            # the description's input
                     r"stages[0]: s\x1b]0;t\x07[bold]y")       # a stage's section title
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: pane.query_one(TextArea).has_focus, what="the TOML view")
        _assert_safe(_screen_text(app), r'description = "d\u202e\u001b]0;t\u0007[bold]x"', r"# by \u202elin")
        await pilot.press("ctrl+t")
        # a project recipe: saving asks (copy or overwrite), naming the file; a copy suggests its name
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the copy-or-overwrite question")
        _assert_safe(_screen_text(app), f"project/evil{SHOWN}.toml is a")  # wrapped after
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), what="the save-as prompt")
        await pilot.pause()
        _assert_safe(_screen_text(app), r"evil\x1b]52;c;")
        # a name typed (pasted) as it is on disk: the overwrite question names it visibly
        (dirs.user / path.name).write_text(path.read_text())
        app.screen.query_one(TextInput).value = path.name
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the overwrite question")
        _assert_safe(_screen_text(app), f"evil{SHOWN}.toml exists")
        await pilot.press("n")


async def test_the_datasets_pane_shows_hostile_folders_progress_and_problems_visibly(dirs, monkeypatch):
    import threading

    from textual.widgets import DataTable

    from fgbench.data import download
    from fgbench.data.progress import Progress

    data_root = dirs.data.parent / f"data{HOSTILE}"
    data_root.mkdir()
    shown = threading.Event()

    def verify_dataset(name, *, progress, **_kw):  # the engine's verify, as far as the pane sees it
        progress(Progress("verify", 1, 2, 0.0, None, f"train/owl{HOSTILE}/1.jpg", unit="images"))
        shown.wait(60)
        return type("Report", (), {"ok": False, "counts": {}, "test_split": "test",
                                   "problems": [f"train/owl{HOSTILE}/2.jpg: missing"]})()

    monkeypatch.setattr(download, "verify_dataset", verify_dataset)
    app = _app(dirs, data_root=data_root, initial_pane="datasets")
    async with app.run_test(size=(160, 40), notifications=True) as pilot:
        pane = app.pane("datasets")
        table = pane.query_one("#datasets-table", DataTable)
        await wait_for(pilot, lambda: table.row_count > 3, what="the catalog")
        _assert_safe(_screen_text(app), f"in {data_root.parent}/data{SHOWN}")
        table.focus()
        table.move_cursor(row=table.get_row_index("cub200"))
        await pilot.press("v")
        try:
            await wait_for(pilot, lambda: "owl" in str(pane.query_one("#download-text").render()), what="progress")
            await pilot.pause()
            _assert_safe(_screen_text(app), f"train/owl{SHOWN}/1.jpg")
        finally:
            shown.set()
        await wait_for(pilot, lambda: pane.active_task is None, what="verify ended")
        await pilot.pause()
        # the pane's message and the toast both name the file
        await wait_for(pilot, lambda: _screen_text(app).count("train/owl") == 2, timeout=10,
                       what=lambda: f"the message and its toast in {_screen_text(app)}")
        _assert_safe(_screen_text(app), f"train/owl{SHOWN}/2.jpg: missing")


async def test_a_toast_shows_a_hostile_path_as_written(dirs):
    app = _app(dirs)
    async with app.run_test(size=(120, 30), notifications=True) as pilot:
        # what a failed save says (recipes pane) with a path the user chose: its own toast
        app.notify(f"/tmp/r{HOSTILE}.toml: [Errno 13] Permission denied", title=f"Not saved {RLO}", severity="error")
        await wait_for(pilot, lambda: "Not saved" in _screen_text(app), what="the toast")
        _assert_safe(_screen_text(app), r"/tmp/r\x1b]52;c;", r"Not saved \u202e")  # wrapped after


async def test_every_screen_with_hostile_names_everywhere_sends_no_raw_control_character(dirs, monkeypatch):
    """The guard over the places listed one by one above: hostile names in every input the TUI reads
    (a recipe file and its values, the datasets folder, a run's recipe, error, log and traceback),
    then every pane, the monitor, its log view and the help, each screen checked whole. A name
    holding markup is shown as written wherever it is shown."""
    from fgbench.tui.messages import OpenRun
    from fgbench.tui.screens.help import HelpScreen
    from tui_helpers import ready_pane

    (dirs.user / f"evil{HOSTILE}.toml").write_text('name = "evil"\ndescription = "d\\u202e\\u001b]0;t\\u0007"\n')
    data_root = dirs.data.parent / f"data{HOSTILE}"
    data_root.mkdir()
    run_dir = make_fixture_run(dirs.runs, "20250305-130000-evil", name="evil", dataset="cub200", arch="resnet18",
                               status="failed")
    _hostile_recipe(run_dir, f"n{TITLE}[bold]B", f"m{RLO}")
    with metrics.MetricsWriter(run_dir / metrics.METRICS_FILE) as w:
        w.emit("log", level="error", message=f"log{OSC52}[red]R")
        w.emit("run_finished", status="failed", error=f"E{TITLE}rr[bold]X\r", traceback=f"Traceback\n  T{CSI}",
               exit_code=1)
    app = _app(dirs, data_root=data_root, initial_pane="recipes")
    async with app.run_test(size=(160, 40), notifications=True) as pilot:
        pane = await ready_pane(pilot, "recipes")
        await pane.open_path(dirs.user / f"evil{HOSTILE}.toml")
        await pilot.pause()
        _assert_safe(_screen_text(app), r"evil\x1b]52", r"d\u202e\x1b]0;t\x07")
        await pilot.press("escape", "1")
        await wait_for(pilot, lambda: app.pane("datasets") is not None and app.pane("datasets").display, what="datasets")
        await pilot.pause()
        _assert_safe(_screen_text(app), f"data{SHOWN}")
        await pilot.press("3")
        await wait_for(pilot, lambda: app.pane("runs").table.row_count == 1, what="the run listed")
        await pilot.pause()
        _assert_safe(_screen_text(app), r"n\x1b]0;pwned\x07[bold]B", r"m\u202e")
        app.set_compare([run_dir])
        await pilot.press("4")
        await wait_for(pilot, lambda: app.pane("compare").query_one("#compare-table").row_count == 1, what="compared")
        await pilot.pause()
        _assert_safe(_screen_text(app), r"n\x1b]0;pwned\x07[bold]B")
        app.post_message(OpenRun(run_dir))
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="the monitor")
        view = app.screen.query_one(RunView)
        await wait_for(pilot, lambda: view.snapshot is not None and view.snapshot.status == "failed", what="drawn")
        await pilot.pause()
        _assert_safe(_screen_text(app), r"E\x1b]0;pwned\x07rr[bold]X\r", r"T\x9b2J")
        await pilot.press("l")
        await pilot.pause()
        _assert_safe(_screen_text(app), r"E\x1b]0;pwned\x07rr[bold]X\r")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="the help")
        _assert_safe(_screen_text(app))
        await pilot.press("escape", "escape")
        # a run without a summary yet shows its log lines
        stopped = make_fixture_run(dirs.runs, "20250305-140000-stopped", name="stopped", dataset="cub200",
                                   arch="resnet18", status="interrupted")
        (stopped / "summary.json").unlink()
        with metrics.MetricsWriter(stopped / metrics.METRICS_FILE) as w:
            w.emit("log", level="warning", message=f"log{OSC52}[red]R")
        app.post_message(OpenRun(stopped))
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.path == stopped,
                       what="the stopped run's monitor")
        await wait_for(pilot, lambda: "log" in _screen_text(app) and "[red]R" in _screen_text(app),
                       what=lambda: f"its log line in {_screen_text(app)}")
        _assert_safe(_screen_text(app), r"log\x1b]52;c;SGVsbG8=\x07[red]R")

"""The terminal workbench: ``fgbench`` with no arguments (or ``fgbench tui``).

Decisions and trade-offs:

* The TUI process never imports torch or torchvision (about 3 s and 650 MB before the first
  paint). Training runs in its own ``fgbench run`` process; this process only reads run
  directories. ``tests/test_import_zones.py`` proves it in a fresh interpreter.
* :func:`make_app` is the factory: tests build the app against temporary recipe, data and run
  directories and inject the trainer command (a fake trainer that writes scripted events).
* One background thread (the run watcher) refreshes every run directory incrementally once a
  second and posts a coalescing :class:`~fgbench.tui.messages.RunsChanged`; it also collects the
  exit codes of trainers this TUI launched. The monitor screen polls its own run faster.
* Layout lives in ``app.tcss``. Screens and widgets have their own modules; this module holds the
  application state shared by panes (run store, launcher, compare selection, colours) and the
  actions that cross panes (run the current recipe, stop, resume, pick a dataset).
* Keys: 1-4 switch panes, ``?`` shows every key, Ctrl+R runs the current recipe from any pane,
  Ctrl+Q quits (runs keep going; unsaved recipe edits are saved, discarded or kept on asking). Pane keys appear in the footer while the pane has focus. Keys
  that would type into a text field (letters, digits) only act outside text fields.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path


from textual.app import App
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.notifications import SeverityLevel
from textual.worker import Worker, get_current_worker

from fgbench import paths
from fgbench.errors import UserError
from fgbench.tui.launcher import Launcher
from fgbench.tui.messages import DatasetPicked, OpenRun, RecipeStatus, RunsChanged
from fgbench.runmodel import RunStore
from fgbench.textsafe import safe, safe_lines
from fgbench.tui.plots import ColourBook
from fgbench.tui.workers import ReportsWorkerFailures, work

WATCH_INTERVAL_S = 1.0
PANE_KEYS = Binding.Group("Panes", compact=True)


class FgbenchApp(ReportsWorkerFailures, App):
    CSS_PATH = "app.tcss"
    TITLE = "fgbench"
    ENABLE_COMMAND_PALETTE = False
    # 1-4 are not in the footer: the tab bar above the panes names them ("1 Datasets  2 Recipes
    # ..."), and the room goes to the pane's own keys (an 80-column footer cut them); ? lists them
    BINDINGS = [
        Binding("1", "pane('datasets')", "Datasets", group=PANE_KEYS, show=False),
        Binding("2", "pane('recipes')", "Recipes", group=PANE_KEYS, show=False),
        Binding("3", "pane('runs')", "Runs", group=PANE_KEYS, show=False),
        Binding("4", "pane('compare')", "Compare", group=PANE_KEYS, show=False),
        Binding("question_mark", "help", "Help", tooltip="Every key of every pane"),
        Binding("ctrl+q", "quit", "Quit", show=False, tooltip="Quit (running trainings keep going)"),
    ]

    def __init__(self, *, recipes_dirs: list[tuple[str, Path]], runs_root: Path, data_root: Path | None,
                 fgbench_cmd: list[str] | None, initial_recipe: Path | None, initial_pane: str = "recipes",
                 watch_interval: float = WATCH_INTERVAL_S):
        super().__init__()
        self.recipes_dirs = recipes_dirs
        self.runs_root = Path(runs_root).absolute()
        self.data_root = data_root
        self.initial_recipe = initial_recipe
        self.initial_pane = initial_pane
        self.watch_interval = watch_interval
        self.store = RunStore(self.runs_root)
        self.launcher = Launcher(self.runs_root, fgbench_cmd)
        self.colours = ColourBook()
        self.compare_selection: list[Path] = []
        self._wake = threading.Event()
        self.watch_rounds = 0
        self._greeted = False
        self.quit_message = ""
        self.live_notice = ""
        """What the opening said about runs that were already training ("" when none were)."""

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information", timeout: float | None = None,
               markup: bool = True) -> None:
        """Every toast of the workbench (widgets' ``notify`` lands here too) shows its text as
        written: made safe (a path, a recipe name or an error from disk may carry escape sequences)
        and never read as markup (a file named ``[bold]x`` is shown as such). ``markup`` is
        accepted for Textual's signature and ignored: no toast of fgbench uses markup."""
        super().notify(safe_lines(str(message)), title=safe(title), severity=severity, timeout=timeout, markup=False)

    # ---------------------------------------------------------------- screens

    def on_mount(self) -> None:
        from fgbench.tui.screens.main import MainScreen

        self.theme = "textual-dark"
        self.push_screen(MainScreen(recipes_dirs=self.recipes_dirs, initial_recipe=self.initial_recipe,
                                    data_root=self.data_root, initial_pane=self.initial_pane))
        self.run_worker(self._watch_runs, thread=True, group="run-watcher", exclusive=True, name="run watcher", exit_on_error=False)

    @property
    def main_screen(self):
        from fgbench.tui.screens.main import MainScreen

        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        raise LookupError("main screen not mounted")

    def pane(self, name: str):
        """A pane widget, or None until it has mounted (panes other than the first are mounted
        just after the first paint; the Recipes pane once the recipe schema is imported)."""
        try:
            pane = self.main_screen.query_one(f"#{name}-pane")
        except (LookupError, NoMatches):
            return None
        return pane if pane.is_mounted else None

    def current_dataset(self) -> str | None:
        pane = self.pane("recipes")
        data = pane.form.doc.get("data") if pane is not None else None
        return data.get("dataset") if isinstance(data, dict) else None

    def action_pane(self, name: str) -> None:
        from fgbench.tui.screens.main import MainScreen

        while not isinstance(self.screen, MainScreen) and len(self.screen_stack) > 1:
            self.pop_screen()
        self.main_screen.show_pane(name)

    def action_help(self) -> None:
        from fgbench.tui.screens.help import HelpScreen
        from fgbench.tui.screens.main import MainScreen
        from fgbench.tui.screens.monitor import MonitorScreen
        from fgbench.tui.screens.analysis import AnalysisScreen
        from fgbench.tui.widgets.compare_pane import ComparePane, CompareTable, RunList
        from fgbench.tui.widgets.datasets_pane import DatasetsPane, DatasetsTable
        from fgbench.tui.widgets.recipes_pane import RecipesPane
        from fgbench.tui.widgets.runs_pane import RunsPane, RunsTable

        self.push_screen(HelpScreen([
            ("Everywhere", [b for b in self.BINDINGS if isinstance(b, Binding) and b.action != "quit"]
             + [Binding("ctrl+q", "quit", "Quit", tooltip="Quit (running trainings keep going)")]
             + list(MainScreen.BINDINGS)),
            ("Datasets", DatasetsTable.BINDINGS + DatasetsPane.BINDINGS),
            ("Recipes", RecipesPane.BINDINGS + [Binding("tab,shift+tab", "", "Next / previous field"),
                                                Binding("enter", "", "Open a recipe, a section or a choice")]),
            ("Runs", RunsTable.BINDINGS + RunsPane.BINDINGS),
            ("Monitor", MonitorScreen.BINDINGS),
            ("Classes (a in the monitor)", AnalysisScreen.BINDINGS),
            ("Compare", RunList.BINDINGS + ComparePane.BINDINGS + CompareTable.BINDINGS),
        ]))

    # ---------------------------------------------------------------- runs

    def _watch_runs(self) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled:
            changed: set[Path] = set()
            for path, launched in self.launcher.reap().items():
                changed.add(path)
                if launched.rejection is not None and not path.exists():
                    # rejected before it wrote anything: the launcher removed the directory
                    self.call_from_thread(self.notify, launched.rejection.splitlines()[-1],
                                          title=f"Not started: {path.name}", severity="error", timeout=10)
            try:
                changed |= self.store.refresh()
            except OSError:
                pass
            self.watch_rounds += 1
            if (changed or self.watch_rounds == 1) and not worker.is_cancelled:  # the first: list ready
                self.post_message(RunsChanged(changed))
            self._wake.wait(self.watch_interval)
            self._wake.clear()

    def wake_watcher(self) -> None:
        self._wake.set()

    def live_runs(self) -> list:
        """The run list's rows of runs that are training now (the run store's status)."""
        return [r for r in self.store.rows() if r.status == "running"]

    def _lead_to_live_runs(self) -> None:
        """On opening: a run that trains (started by an earlier fgbench) is what the user came back
        for. One: its monitor opens. Several: the Runs pane, with how many."""
        from fgbench.tui.screens.main import MainScreen
        from fgbench.tui.screens.monitor import MonitorScreen

        live = self.live_runs()
        if not live or self.launcher.children or not isinstance(self.screen, MainScreen):
            return
        if len(live) == 1:
            self.push_screen(MonitorScreen(live[0].path))
            self.live_notice = f"{live[0].name} is training: its monitor (Esc: back to the panes)"
        else:
            self.main_screen.show_pane("runs")
            self.live_notice = f"{len(live)} runs are training (status running in the list); Enter opens one"
        self.notify(self.live_notice, timeout=6)

    async def action_quit(self) -> None:
        pane = self.pane("recipes")
        if pane is not None:
            pane.current()  # keys typed just before Ctrl+Q count
        if pane is not None and pane.dirty:
            self._ask_before_quitting(pane)  # a worker: the answer needs a dialog
            return
        self._quit_now()

    @work(exclusive=True, group="quit")
    async def _ask_before_quitting(self, pane) -> None:
        """Unsaved recipe edits: save them, discard them, or stay (Escape). A save that does not
        happen (refused, or its file-name dialog cancelled) keeps the app open with the edits."""
        from fgbench.tui.dialogs import ChoiceScreen

        answer = await self.push_screen_wait(ChoiceScreen(
            f"{pane.recipe_name()} has unsaved changes. Save them before quitting?",
            [("s", "save", "save, then quit"), ("d", "discard", "quit without saving")]))
        if answer is None:
            return
        if answer == "save":
            await pane.action_save().wait()
            if pane.dirty:
                self.notify("Not quitting: the recipe is not saved", severity="warning", timeout=5)
                return
        self._quit_now()

    def _quit_now(self) -> None:
        live = self.live_runs()
        if live:
            names = ", ".join(r.run_id for r in live[:3]) + (f" and {len(live) - 3} more" if len(live) > 3 else "")
            self.quit_message = (f"{len(live)} run{'s' if len(live) != 1 else ''} keep{'s' if len(live) == 1 else ''} "
                                 f"training in the background: {names}. `fgbench` re-attaches; "
                                 "`fgbench runs list --status running` lists them.")
        self.exit(message=self.quit_message or None)

    def worker_failed(self, worker: Worker) -> None:
        """The one place a failed background task is reported (see :mod:`fgbench.tui.workers`)."""
        err = worker.error
        what = worker.name or worker.group or "a background task"
        self.log.error(f"worker {what!r} failed", err)
        self.notify(f"{what} failed: {type(err).__name__}: {err}. The workbench keeps running; "
                    "the details are in the Textual log.", title="Something went wrong", severity="error",
                    timeout=15, markup=False)

    def on_runs_changed(self, message: RunsChanged) -> None:
        if not self._greeted and self.store.loaded_once:
            self._greeted = True
            self._lead_to_live_runs()
        runs_pane, compare = self.pane("runs"), self.pane("compare")
        if runs_pane is not None:
            runs_pane.update_rows()
        if compare is not None:
            compare.runs_changed(message.paths)
        from fgbench.tui.screens.monitor import MonitorScreen

        screen = self.screen_stack[-1] if self.screen_stack else None  # none while the app shuts down
        if isinstance(screen, MonitorScreen) and screen.path in message.paths:
            screen.request_redraw()

    def on_open_run(self, message: OpenRun) -> None:
        from fgbench.tui.screens.monitor import MonitorScreen

        self.push_screen(MonitorScreen(message.path))

    def dataset_problem(self, name: str, root: str | Path | None = None) -> tuple[str, bool] | None:
        """Why dataset ``name`` (at ``root``, a recipe's ``data.root``) cannot be trained on yet, and
        whether a download would fix it; None when it is ready (or generated on first use)."""
        from fgbench.data import catalog

        try:
            entry = catalog.get(name)
        except UserError:
            return None  # an unknown name is the recipe validation's to report
        if name == "synthetic":
            return None
        if root is None and name != "folder" and self.data_root is not None:
            root = self.data_root / name
        try:
            status = catalog.status(name, root)
        except (UserError, OSError) as err:
            return str(err), False
        if status == "ready":
            return None
        if name == "folder":
            where = f"data.root {root}" if root else "data.root is not set: it"
            return f"{where} needs train/ and test/ (or val/) class folders", False
        what = "is only partly downloaded" if status == "partial" else "is not downloaded"
        if entry.auto_download:
            return f"{name} {what} ({catalog.size_text(entry)}).", True
        return f"{name} {what}: {catalog.how_to_get(entry)}", False

    async def offer_dataset(self, name: str, problem: tuple[str, bool], *, running: bool) -> str | None:
        """Ask what to do about a dataset that is not ready: download (or import) it now, or, when
        about to run, run anyway. Returns the answer (None: cancelled)."""
        from fgbench.tui.dialogs import ChoiceScreen

        text, downloadable = problem
        if name == "folder":
            choices = [("r", "run", "run anyway")] if running else [("o", "ok", "set data.root in the recipe")]
        elif downloadable:
            choices = [("d", "download", "download it now")]
        else:
            choices = [("i", "import", "import it in the Datasets pane")]
        if running and name != "folder":
            choices.append(("r", "run", "run anyway"))
        head = "Not started yet: " if running else ""
        answer = await self.push_screen_wait(ChoiceScreen(head + text, choices))
        if answer in ("download", "import"):
            self.main_screen.show_pane("datasets")
            datasets = self.pane("datasets")
            for _ in range(100):  # the pane may still be mounting (Lazy)
                if datasets is not None:
                    break
                await asyncio.sleep(0.05)
                datasets = self.pane("datasets")
            if datasets is not None:
                datasets.start_task("download" if answer == "download" else "import", name)
        return answer

    @work(exclusive=True, group="run-recipe")
    async def action_run_recipe(self) -> None:
        pane = self.pane("recipes")
        if pane is None:
            self.notify("The recipe editor is still loading", severity="warning", timeout=3)
            return
        validation = pane.current()
        if validation.recipe is None:
            pane.refuse("Not started", validation)
            self.main_screen.show_pane("recipes")
            return
        data = validation.recipe.data
        problem = self.dataset_problem(data.dataset, data.root)
        if problem is not None and await self.offer_dataset(data.dataset, problem, running=True) != "run":
            return
        try:
            launched = self.launcher.start(validation.recipe)
        except (UserError, OSError) as err:
            self.notify(str(err), title="Not started", severity="error", markup=False)
            return
        self.store.model(launched.run_dir)
        self.wake_watcher()
        self.notify(f"Started {launched.run_dir.name}", timeout=3)
        from fgbench.tui.screens.monitor import MonitorScreen

        self.push_screen(MonitorScreen(launched.run_dir))

    def stop_run(self, path: Path) -> None:
        # the one rule for signals (fgbench.rundir.launcher.request_stop): a process whose start
        # time does not match what the run recorded is never signalled, and the answer says so
        answer = self.launcher.request_stop(path)
        if not answer.sent:
            self.notify(answer.message, severity="warning", timeout=6)
            return
        self.notify(answer.message, timeout=5)
        self.wake_watcher()

    def resume_run(self, path: Path) -> None:
        model = self.store.model(path)
        if model.status == "running":
            self.notify(f"{path.name} is still running", severity="warning", timeout=4)
            return
        if model.status == "completed":
            self.notify(f"{path.name} has completed; nothing to resume", severity="warning", timeout=4)
            return
        try:
            self.launcher.resume(path)
        except UserError as err:
            self.notify(str(err), title="Not resumed", severity="error", markup=False)
            return
        self.wake_watcher()
        self.notify(f"Resuming {path.name}", timeout=3)

    def toggle_compare(self, path: Path) -> None:
        if path in self.compare_selection:
            self.set_compare([p for p in self.compare_selection if p != path])
        else:
            self.set_compare(self.compare_selection + [path])

    def set_compare(self, paths_: list[Path]) -> None:
        self.compare_selection = list(dict.fromkeys(paths_))
        runs_pane, compare = self.pane("runs"), self.pane("compare")
        if runs_pane is not None:
            runs_pane.update_rows()
        if compare is not None:
            compare.update_runs()

    # ---------------------------------------------------------------- recipe <-> datasets

    async def on_dataset_picked(self, message: DatasetPicked) -> None:
        pane = self.pane("recipes")
        if pane is None:
            return
        data = pane.form.doc.get("data") or {}
        problem = self.dataset_problem(message.name, data.get("root") if isinstance(data, dict) else None)
        if problem is None:
            await self._use_dataset(pane, message.name)
            self.notify(f"{pane.recipe_name()} now uses data.dataset = {message.name}", timeout=4)
        else:  # say it now, not when a run fails on it seconds after Ctrl+R
            self.run_worker(self._pick_missing_dataset(pane, message.name, problem), group="dataset-offer",
                            exclusive=True, exit_on_error=False)

    async def _pick_missing_dataset(self, pane, name: str, problem: tuple[str, bool]) -> None:
        """The recipe takes a dataset that is not ready only once the user answered the offer
        (download, import, or set data.root): Escape leaves the recipe as it was."""
        if await self.offer_dataset(name, problem, running=False) is not None:
            await self._use_dataset(pane, name)

    async def _use_dataset(self, pane, name: str) -> None:
        await pane.form.set_value("data.dataset", name)
        datasets = self.pane("datasets")
        if datasets is not None:
            datasets.set_current(name)

    def on_recipe_status(self, message: RecipeStatus) -> None:
        datasets = self.pane("datasets")
        if datasets is not None:
            datasets.set_current(self.current_dataset())


def _default_recipes_dirs() -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    project = paths.project_recipes_dir()
    if project is not None:
        out.append(("project", project))
    out.append(("user", paths.user_recipes_dir()))
    return out


def _label(d: Path, project: Path | None, user: Path) -> str:
    if project is not None and d == project:
        return "project"
    if d == user:
        return "user"
    return d.name or str(d)


def make_app(*, recipes_dirs: list[Path] | None = None, runs_root: Path | None = None, data_root: Path | None = None,
             fgbench_cmd: list[str] | None = None, initial_recipe: Path | None = None,
             initial_pane: str = "recipes", watch_interval: float = WATCH_INTERVAL_S) -> FgbenchApp:
    """Build the workbench.

    ``recipes_dirs``: folders of recipe files (default: the project's ``recipes/`` and the user's);
    new recipes are saved in the last one. ``runs_root``: where runs are created and listed
    (default: the runs directory). ``data_root``: the datasets directory (default: FGBENCH_DATA or
    the fgbench home's). ``fgbench_cmd``: the command that stands for ``fgbench`` when launching a
    run (default: this Python's ``-m fgbench``).
    """
    if recipes_dirs is None:
        dirs = _default_recipes_dirs()
    else:
        project, user = paths.project_recipes_dir(), paths.user_recipes_dir()
        dirs = [(_label(Path(d), project, user), Path(d)) for d in recipes_dirs]
    if not dirs:
        dirs = [("user", paths.user_recipes_dir())]
    if initial_recipe is None:
        for _, d in dirs:
            if (d / "quickstart.toml").is_file():
                initial_recipe = d / "quickstart.toml"
                break
    root = Path(runs_root) if runs_root is not None else paths.runs_dir()
    app = FgbenchApp(recipes_dirs=dirs, runs_root=root, data_root=Path(data_root) if data_root else None,
                     fgbench_cmd=fgbench_cmd, initial_recipe=initial_recipe, initial_pane=initial_pane,
                     watch_interval=watch_interval)
    if data_root is not None:
        # trainers launched from here look for datasets in the same place
        app.launcher.extra_env["FGBENCH_DATA"] = str(Path(data_root).absolute())
    return app


def main() -> int:
    from fgbench.tui import images

    app = make_app()
    images.prepare()  # textual-image asks the terminal what it can draw, before Textual owns it
    app.run()
    return int(app.return_code or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""The Datasets pane: the catalog as a table; download, verify, import; pick one for the recipe.

Decisions and trade-offs:

* Downloads, imports and verification run in a thread worker (one at a time, group
  ``dataset-task``) and report through coalescing :class:`~fgbench.tui.messages.DownloadProgress`
  messages; the engine (``fgbench.data.download``) is the same code ``fgbench data download``
  runs, so the TUI adds no second download path. Cancel sets the engine's cancel event (which
  also shuts a silent connection down); partial files stay, so the next download resumes. The
  pane sets it when it unmounts too: the thread pool is joined at exit, so a download thread left
  running would keep the process of a TUI that quit alive.
* Every failure (offline, checksum mismatch, a licence that forbids automatic download) is a
  message in the pane saying what to do next, never a crash: the engine's ``UserError`` texts
  already name the command or the mirror setting that helps.
* Verification here is the quick one (counts and files present). Decoding every image needs the
  engine's image code (PIL/torch), which the TUI process never imports, so the pane points to
  ``fgbench data verify --deep`` for that.
* Locations are shown relative to the datasets directory (named once above the table), so the
  table fits in 80 columns.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Label, ProgressBar, Static

from fgbench import paths
from fgbench.errors import UserError
from fgbench.textsafe import safe, safe_lines
from fgbench.tui.messages import DatasetPicked, DatasetTaskDone, DownloadProgress
from fgbench.formats import fmt_duration
from fgbench.tui.dialogs import PromptScreen
from fgbench.tui.widgets.fitted_table import FittedTable
from fgbench.tui.typed import workbench
from fgbench.tui.workers import ReportsWorkerFailures, work

if TYPE_CHECKING:
    from fgbench.data.progress import Progress

STATUS_STYLE = {"ready": "bold green", "partial": "yellow", "missing": "dim", "to import": "dim", "data.root": "dim"}
COLUMN_LABELS = ("name", "classes", "train/test", "size", "status", "location")
COLUMN_KEYS = ("name", "classes", "images", "size", "status", "location")


def _bytes(n: float | None) -> str:
    from fgbench.data.catalog import format_bytes

    return format_bytes(n)


class DatasetsTable(FittedTable):
    """The catalog; Enter picks the dataset for the current recipe (shown in the footer)."""

    BINDINGS = [Binding("enter", "select_cursor", "Use", tooltip="Use this dataset in the current recipe")]


class DatasetsPane(ReportsWorkerFailures, Vertical):
    BINDINGS = [
        Binding("g", "download", "Download", tooltip="Download, verify, extract and prepare (resumable)"),
        Binding("v", "verify", "Verify", tooltip="Check counts and that every indexed file is there"),
        Binding("i", "import_dataset", "Import", tooltip="Import an archive or folder you downloaded yourself"),
        Binding("c", "cancel", "Cancel", tooltip="Cancel the running download (partial files are kept)"),
    ]

    def __init__(self, data_root: Path | None = None, **kwargs):
        super().__init__(**kwargs)
        self.data_root = data_root
        self.cancel_event: threading.Event | None = None
        self.active_task: tuple[str, str] | None = None
        self.current_dataset: str | None = None
        self.last_message = ""
        self.stages_seen: set[str] = set()

    def compose(self) -> ComposeResult:
        with Horizontal(id="datasets-top"):
            yield Label("Datasets", classes="pane-title")
            yield Static("", id="datasets-dir")
        yield DatasetsTable(id="datasets-table", cursor_type="row")
        with Horizontal(id="download-row"):
            yield ProgressBar(total=100, show_eta=False, id="download-bar")
            yield Static("", id="download-text")
        yield Static("", id="datasets-info")
        yield Static("", id="datasets-message")

    def on_mount(self) -> None:
        self.query_one("#download-row").display = False
        self.current_dataset = workbench(self).current_dataset()
        self.refresh_table()

    # ------------------------------------------------------------------ data

    def datasets_dir(self) -> Path:
        return self.data_root if self.data_root is not None else paths.datasets_dir()

    def root_for(self, name: str) -> Path | None:
        """The ``root`` argument of the catalog for a dataset (None: its default location)."""
        return self.data_root / name if self.data_root is not None else None

    def _catalog(self):
        try:
            from fgbench.data import catalog
        except ImportError as err:  # pragma: no cover - the catalog ships with fgbench
            self.show_message(f"The dataset catalog is not available: {err}", error=True)
            return None
        return catalog

    def refresh_table(self) -> None:
        catalog = self._catalog()
        table = self.query_one("#datasets-table", DatasetsTable)
        base = self.datasets_dir()
        self.query_one("#datasets-dir", Static).update(Text(f"in {safe(base)}", style="dim"))
        if catalog is None:
            return
        rows = []
        for entry in catalog.entries():
            root = self.root_for(entry.name)
            try:
                status = catalog.status_text(entry.name, root)  # the words of `fgbench data list`
                loc = catalog.location(entry.name, root) if entry.name != "folder" else Path("(data.root)")
            except (UserError, OSError) as err:
                status, loc = "missing", Path(str(err))
            try:
                where = safe(loc.relative_to(base))  # a path: a folder's name can hold escapes
            except ValueError:
                where = safe(loc)
            images = f"{entry.train_images}/{entry.test_images}" if entry.train_images is not None else "-"
            marker = "● " if entry.name == self.current_dataset else "  "
            rows.append((entry.name, [
                Text(marker + entry.name, style="bold" if entry.name == self.current_dataset else ""),
                str(entry.num_classes) if entry.num_classes else "-",
                images,
                catalog.size_text(entry),
                Text(status, style=STATUS_STYLE.get(status, "")),
                where,
            ]))
        # in place while the widths hold: the cursor stays put and no highlight event fires
        table.set_rows(list(zip(COLUMN_KEYS, COLUMN_LABELS)), rows)

    def selected(self) -> str | None:
        table = self.query_one("#datasets-table", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value

    def set_current(self, name: str | None) -> None:
        if name != self.current_dataset:
            self.current_dataset = name
            if self.is_mounted:
                self.refresh_table()

    def show_message(self, text: str, *, error: bool = False) -> None:
        """A task's outcome or error: it names files from the dataset's folders and archives (a
        verify problem quotes a class folder's name), so it is made safe."""
        self.last_message = text
        self.query_one("#datasets-message", Static).update(Text(safe_lines(text), style="red" if error else ""))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "datasets-table":
            return
        catalog = self._catalog()
        name = event.row_key.value if event.row_key else None
        if catalog is None or not name:
            return
        entry = catalog.get(name)
        text = Text()
        text.append(entry.title, style="bold")
        text.append(f"  {entry.licence}", style="dim")
        if entry.notes:
            text.append(f"\n{entry.notes}")
        if not entry.auto_download and entry.name not in ("folder", "synthetic"):
            text.append(f"\n{catalog.how_to_get(entry)}", style="yellow")
        self.query_one("#datasets-info", Static).update(text)

    # ------------------------------------------------------------------ actions

    @on(DataTable.RowSelected, "#datasets-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_use()

    def action_use(self) -> None:
        name = self.selected()
        if name:
            self.post_message(DatasetPicked(name))

    def _busy(self) -> bool:
        if self.active_task is not None:
            self.app.notify(f"{self.active_task[1]} of {self.active_task[0]} is running (c cancels it)", severity="warning")
            return True
        return False

    def start_task(self, task: str, name: str) -> None:
        """Select ``name`` and download it (``task`` "download") or ask for the file to import
        ("import"): what the recipe side offers for a dataset that is not ready."""
        table = self.query_one("#datasets-table", DataTable)
        try:
            table.move_cursor(row=table.get_row_index(name))
        except Exception:  # noqa: BLE001 - not in the table (cannot happen for catalog names)
            return
        if task == "import":
            self.action_import_dataset()
        else:
            self.action_download()

    def action_download(self) -> None:
        name = self.selected()
        if name and not self._busy():
            self._start("download", name)

    def action_verify(self) -> None:
        name = self.selected()
        if name and not self._busy():
            self._start("verify", name)

    @work(exclusive=True, group="dataset-ask")
    async def action_import_dataset(self) -> None:
        name = self.selected()
        if not name or self._busy():
            return
        answer = await self.app.push_screen_wait(PromptScreen(
            f"Import {name} from a file or folder", "",
            "An archive you downloaded (checked against the catalog) or an extracted folder. "
            "Enter: import   Escape: cancel"))
        if answer:
            self._start("import", name, answer)

    def on_unmount(self) -> None:
        # The app is closing: a download's thread must end with it (a thread blocked on a silent
        # server would otherwise keep the process alive after the TUI quit).
        if self.cancel_event is not None:
            self.cancel_event.set()

    def action_cancel(self) -> None:
        if self.cancel_event is not None and self.active_task is not None:
            self.cancel_event.set()
            self.show_message(f"cancelling the {self.active_task[1]} of {self.active_task[0]}...")

    def _start(self, task: str, name: str, arg: str | None = None) -> None:
        self.active_task = (name, task)
        self.cancel_event = threading.Event()
        row = self.query_one("#download-row")
        row.display = True
        self.query_one("#download-bar", ProgressBar).update(total=None, progress=0)
        self.query_one("#download-text", Static).update(Text(f"{task} {name}: starting"))
        self.show_message("")
        self._run_task(task, name, arg, self.cancel_event)

    @work(thread=True, exclusive=True, group="dataset-task")
    def _run_task(self, task: str, name: str, arg: str | None, cancel: threading.Event) -> None:
        ok, text = False, ""
        try:
            from fgbench.data import catalog, download

            root = self.root_for(name)

            def progress(p: Progress) -> None:
                self.post_message(DownloadProgress(name, p))

            if task == "download":
                loc = download.download_dataset(name, root=root, progress=progress, cancel=cancel)
                ok, text = True, f"{name} is ready in {loc}"
            elif task == "import":
                loc = download.import_dataset(name, arg, root=root, progress=progress, cancel=cancel)
                missing = download.missing_files(name, root) if catalog.status(name, root) != "ready" else []
                ok = catalog.status(name, root) == "ready"
                text = (f"{name} is ready in {loc}" if ok else
                        f"{name}: imported; still needed: {', '.join(missing)} (press i again for each)")
            elif task == "verify":
                report = download.verify_dataset(name, root=root, deep=False, progress=progress, cancel=cancel)
                ok = report.ok
                counts = ", ".join(f"{k} {v}" for k, v in report.counts.items())
                if report.test_split != "test":
                    counts += f" (test images from {report.test_split}/)"
                text = (f"{name}: verified ({counts}); to decode every image run "
                        f"`fgbench data verify {name} --deep`" if ok else "; ".join(report.problems))
        except Exception as err:  # every failure becomes a message in the pane, never a crash
            from fgbench.data import download

            if isinstance(err, download.Cancelled):
                text = f"{name}: {task} cancelled; partial files are kept, press g to resume"
            elif isinstance(err, UserError):
                text = str(err)
            else:
                text = f"{name}: {task} failed: {type(err).__name__}: {err}"
        self.post_message(DatasetTaskDone(name, task, ok, text))

    def on_download_progress(self, message: DownloadProgress) -> None:
        p = message.progress
        self.stages_seen.add(str(p.stage))
        bar = self.query_one("#download-bar", ProgressBar)
        total = p.total_bytes
        done = p.done_bytes
        if total:
            bar.update(total=total, progress=done)
        else:
            bar.update(total=None)
        unit = p.unit
        fmt = _bytes if unit == "B" else (lambda n: f"{n:,.0f} {unit}")
        parts = [f"{p.stage} {message.name}", f"{fmt(done)}" + (f" / {fmt(total)}" if total else "")]
        if p.speed:
            parts.append(f"{fmt(p.speed)}/s")
        if p.eta_s is not None:
            parts.append(f"ETA {fmt_duration(p.eta_s)}")
        if p.message:
            parts.append(safe(p.message))  # a file name from an archive or a folder
        self.query_one("#download-text", Static).update(Text("  ".join(parts)))  # not markup

    def on_dataset_task_done(self, message: DatasetTaskDone) -> None:
        self.active_task = None
        self.cancel_event = None
        self.query_one("#download-row").display = False
        self.show_message(message.text, error=not message.ok)
        self.refresh_table()
        self.app.notify(message.text, markup=False, severity="information" if message.ok else "error",
                        timeout=5 if message.ok else 10)

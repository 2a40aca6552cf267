"""Messages between the TUI's workers, widgets and screens.

Workers post; handlers on the UI thread update widgets. Messages that a burst of file events can
produce (run updates, download progress) can replace their own older copy still waiting in the
queue (``can_replace``), so a fast trainer or download never floods the UI: only the latest state
is drawn. ``RunsChanged`` merges the run paths of the messages it replaces.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from fgbench.data.progress import Progress


class RunsChanged(Message):
    """Some run directories have new events or files (posted by the run watcher)."""

    def __init__(self, paths: set[Path]):
        super().__init__()
        self.paths = set(paths)

    def can_replace(self, message: Message) -> bool:
        if isinstance(message, RunsChanged):
            message.paths |= self.paths
            return True
        return False


class RunUpdated(Message):
    """The monitored run has new events."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunUpdated) and message.path == self.path


class OpenRun(Message):
    """Show the monitor of a run."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path


class DatasetPicked(Message):
    """Use this dataset in the current recipe (``data.dataset``)."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name


class DownloadProgress(Message):
    def __init__(self, name: str, progress: "Progress"):
        super().__init__()
        self.name = name
        self.progress = progress

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DownloadProgress) and message.name == self.name


class DatasetTaskDone(Message):
    """A download, verification or import ended: ``ok`` with a one-line ``text`` for the pane."""

    def __init__(self, name: str, task: str, ok: bool, text: str):
        super().__init__()
        self.name = name
        self.task = task
        self.ok = ok
        self.text = text


class RecipeStatus(Message):
    """The editor's document changed: name, whether it is valid and whether it is saved."""

    def __init__(self, name: str, valid: bool, dirty: bool):
        super().__init__()
        self.name = name
        self.valid = valid
        self.dirty = dirty

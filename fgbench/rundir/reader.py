"""Reading a run directory, incrementally: one reader for the CLI, sweeps, ``--resume`` and the TUI.

:class:`RunReader` keeps what it has read: :meth:`RunReader.update` costs a few ``stat`` calls and
the bytes appended to ``metrics.jsonl`` since the last call, so the TUI can refresh a hundred runs
a second and the CLI reads each run once with the same code. It returns the new events, so a
caller that draws curves (the TUI's run model) feeds them on without reading the file twice.

Damage is contained: a ``summary.json`` with wrong types, a ``recipe.toml`` that is not UTF-8 or
not TOML, a ``run.json`` that is not a table make :attr:`RunReader.damaged` say why; the run is
still listed (as damaged), and other runs are never affected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fgbench.rundir import files, layout, lock
from fgbench.rundir.events import Tailer
from fgbench.rundir.status import Status, run_status
from fgbench.rundir.summary import Summary, SummaryError, read_summary


def _read_toml(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return files.read_toml(path), None
    except files.RunFileError as err:
        return None, str(err)


def _read_table(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A JSON object file: (its table or None, why it is damaged or None)."""
    try:
        value = files.read_json(path)
    except files.RunFileError as err:
        return None, str(err)
    if value is None or isinstance(value, dict):
        return value, None
    return None, f"{path.name}: not a table"


class RunReader:
    """What the files of one run directory say, kept up to date by :meth:`update`."""

    def __init__(self, path: str | os.PathLike[str]):
        self.dir = layout.RunDir(path)
        self.path = self.dir.path
        self.tailer = Tailer(self.dir.metrics)
        self.recipe: dict[str, Any] = {}
        self.info: dict[str, Any] = {}
        self.summary: Summary | None = None
        self.launch: dict[str, Any] | None = None
        self.exit_record: dict[str, Any] | None = None
        self.started: dict[str, Any] | None = None
        self.finished: dict[str, Any] | None = None
        self._finished_after_start = False
        self.class_names: list[str] = []
        self._damage: dict[str, str] = {}
        self._mtimes: dict[str, int | None] = {}

    # ------------------------------------------------------------------ reading

    def _changed(self, name: str, path: Path) -> bool:
        try:
            st = path.stat()
            stamp: int | None = st.st_mtime_ns ^ (st.st_size << 1)
        except OSError:
            stamp = None
        if self._mtimes.get(name, -1) == stamp:
            return False
        self._mtimes[name] = stamp
        return True

    def _refresh_files(self) -> bool:
        changed = False
        d = self.dir
        if self._changed("recipe", d.recipe):
            recipe, err = _read_toml(d.recipe)
            if recipe is None and err is None and not self.recipe:
                recipe, err = _read_toml(d.launch_recipe)  # launched, not yet written by the trainer
            self._set_damage("recipe", err)
            self.recipe = recipe or {}
            changed = True
        if not self.recipe and self._changed("launch_recipe", d.launch_recipe):
            recipe, err = _read_toml(d.launch_recipe)
            self._set_damage("launch_recipe", err)
            self.recipe = recipe or {}
            changed = changed or bool(recipe)
        if self._changed("info", d.info):
            info, err = _read_table(d.info)
            self._set_damage("info", err)
            self.info = info or {}
            changed = True
        if self._changed("summary", d.summary):
            try:
                self.summary = read_summary(self.path)
                self._set_damage("summary", None)
            except SummaryError as err:
                self.summary = None
                self._set_damage("summary", str(err))
            changed = True
        for name, attr, p in (("launch", "launch", d.launch), ("exit", "exit_record", d.exit)):
            if self._changed(name, p):
                value, problem = _read_table(p)
                self._set_damage(name, problem)
                setattr(self, attr, value)
                changed = True
        if self._changed("lock", d.lock):
            self._set_damage("lock", lock.check(d.lock))
            changed = True
        return changed

    def _set_damage(self, key: str, reason: str | None) -> None:
        if reason:
            self._damage[key] = reason
        else:
            self._damage.pop(key, None)

    def update(self, events: list[dict[str, Any]] | None = None) -> tuple[bool, list[dict[str, Any]]]:
        """Read what is new. Returns (whether anything changed, the new events). ``events``: use
        these instead of polling the file (a caller that reads a large file its own way)."""
        changed = self._refresh_files()
        new = self.tailer.poll() if events is None else events
        self._set_damage("metrics", self.tailer.damage)
        for ev in new:
            self.note(ev)
        return changed or bool(new), new

    def note(self, ev: dict[str, Any]) -> None:
        """Take one event into account (status, start and finish)."""
        kind = ev.get("event")
        if kind == "run_started":
            self.started, self._finished_after_start = ev, False
            if isinstance(ev.get("class_names"), list):
                self.class_names = [str(c) for c in ev["class_names"]]
            if not self.recipe and isinstance(ev.get("recipe"), dict):
                self.recipe = ev["recipe"]
        elif kind == "run_finished":
            self.finished, self._finished_after_start = ev, True

    # ------------------------------------------------------------------ derived

    @property
    def damaged(self) -> str | None:
        """Why the run's files cannot be read, or None."""
        return "; ".join(self._damage.values()) or None

    def status(self, *, own_launch: str | None = None) -> Status:
        """The run's status by the one rule. ``own_launch``: the launch id of the calling trainer
        (a resume started by a launcher): that launch's live supervisor is the caller's own, not
        another trainer."""
        launch = self.launch
        if own_launch is not None and isinstance(launch, dict) and launch.get("launch") == own_launch:
            launch = None
        return run_status(
            started=self.started, finished=self.finished, finished_after_start=self._finished_after_start,
            lock_holder=lock.holder(self.path), lock_exists=self.dir.lock.exists(),
            launch=launch, exit_record=self.exit_record,
        )

    @property
    def name(self) -> str:
        return str(self.recipe.get("name") or (self.summary.name if self.summary else None) or self.path.name)

    @property
    def pid(self) -> int | None:
        for source in (self.started or {}, self.info, (self.launch or {}).get("trainer") or {}):
            if isinstance(source.get("pid"), int):
                return source["pid"]
        return None

    def info_view(self) -> "RunInfo":
        st = self.status()
        return RunInfo(path=self.path, status=st.status, name=self.name, recipe=self.recipe,
                       summary=self.summary, info=self.info, error=st.error,
                       exit_code=st.exit_code, damaged=self.damaged)


@dataclass
class RunInfo:
    """One run as a list shows it: read once from the run directory."""

    path: Path
    status: str
    name: str
    recipe: dict[str, Any]
    summary: Summary | None
    """summary.json, checked (None before the first epoch ends, or when it is damaged)"""
    info: dict[str, Any]
    error: str | None = None
    exit_code: int | None = None
    damaged: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def dataset(self) -> str:
        data = self.recipe.get("data")
        return str(data.get("dataset", "?")) if isinstance(data, dict) else "?"

    @property
    def arch(self) -> str:
        model = self.recipe.get("model")
        return str(model.get("arch", "?")) if isinstance(model, dict) else "?"


def read_run(run_dir: str | os.PathLike[str]) -> RunInfo:
    reader = RunReader(run_dir)
    reader.update()
    return reader.info_view()


def list_runs(root: str | os.PathLike[str] | None = None) -> list[RunInfo]:
    """Every run under ``root``, in the order the TUI lists them too (:func:`layout.newest_first`)."""
    return [read_run(p) for p in layout.newest_first(layout.run_dirs(root))]

"""The run directory: everything needed to understand, reproduce or resume one run.

Layout (documented in the README; the trainer writes it, everything else reads it)::

    <runs>/<YYYYmmdd-HHMMSS>-<recipe name>[-N]/
        recipe.toml          the resolved recipe, overrides applied, every default spelled out
        run.json             how it was started: argv, overrides, source recipe path, created, pid, host
        metrics.jsonl        the event stream (fgbench.metrics)
        log.txt              the trainer's stdout and stderr
        summary.json         the run's result, rewritten atomically after every epoch and at the end
        checkpoints/last.pt  resume point: model, optimizer, scheduler, scaler, EMA, epoch, step, RNG, recipe
        checkpoints/best.pt  the model of the best epoch (by eval.select_on), raw and EMA weights
        confusion.json       the selected model's test confusion matrix at its best epoch
        predictions.json     the selected model's prediction for every test image (error analysis)

A run directory is created with ``mkdir`` (not ``exist_ok``), so two runs started in the same
second never share one: the second gets a ``-2`` suffix.

Status is derived, not stored: the last ``run_finished`` event says completed / failed /
interrupted; without one, the run is ``running`` while its recorded pid is alive, else
``interrupted`` (killed without a chance to say so; it can be resumed from its last checkpoint).
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fgbench import metrics, paths
from fgbench.atomic import atomic_write_text

RECIPE_FILE = "recipe.toml"
RUN_INFO_FILE = "run.json"
SUMMARY_FILE = "summary.json"
LOG_FILE = "log.txt"
CHECKPOINT_DIR = "checkpoints"
LAST_CKPT = "last.pt"
BEST_CKPT = "best.pt"
CONFUSION_FILE = "confusion.json"
PREDICTIONS_FILE = "predictions.json"
"""Per test image: its file (or None for in-memory datasets), true and predicted class, of the
selected model's best weights (the model and epoch of confusion.json). Written at the end of a run."""


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", name).strip("-") or "run"


def create_run_dir(name: str, root: str | os.PathLike[str] | None = None, *, now: float | None = None) -> Path:
    """Make a fresh, empty run directory under ``root`` (default: the user's runs directory)."""
    base = Path(root) if root is not None else paths.runs_dir()
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else time.time()))
    stem = f"{stamp}-{_slug(name)}"
    for n in range(1, 10000):
        candidate = base / (stem if n == 1 else f"{stem}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"{base}: could not create a unique run directory for {stem}")


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def write_run_info(run_dir: Path, **info: Any) -> None:
    base = read_json(run_dir / RUN_INFO_FILE) or {}
    base.update(info)
    base.setdefault("created", time.time())
    base.setdefault("host", socket.gethostname())
    write_json(run_dir / RUN_INFO_FILE, base)


def pid_alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not a running trainer.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def is_run_dir(path: Path) -> bool:
    return (path / RECIPE_FILE).is_file() or (path / metrics.METRICS_FILE).is_file()


@dataclass
class RunInfo:
    """What a run list shows, read from the run directory alone."""

    path: Path
    status: str
    name: str
    recipe: dict[str, Any]
    summary: dict[str, Any]
    info: dict[str, Any]
    error: str | None = None

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def dataset(self) -> str:
        return str(self.recipe.get("data", {}).get("dataset", "?"))

    @property
    def arch(self) -> str:
        return str(self.recipe.get("model", {}).get("arch", "?"))


def _load_recipe_dict(run_dir: Path) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads((run_dir / RECIPE_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def status_from_events(events: list[dict[str, Any]], pid: int | None) -> tuple[str, str | None]:
    finished = metrics.last_of(events, "run_finished")
    started = metrics.last_of(events, "run_started")
    # A resumed run appends a new run_started after the old run_finished.
    if finished is not None and (started is None or events.index(finished) > events.index(started)):
        return str(finished.get("status", "failed")), finished.get("error")
    if started is not None:
        pid = started.get("pid", pid)
    return ("running" if pid_alive(pid) else "interrupted"), None


def read_run(run_dir: str | os.PathLike[str]) -> RunInfo:
    run_dir = Path(run_dir)
    info = read_json(run_dir / RUN_INFO_FILE) or {}
    events = metrics.read_events(run_dir / metrics.METRICS_FILE)
    status, error = status_from_events(events, info.get("pid"))
    recipe = _load_recipe_dict(run_dir)
    summary = read_json(run_dir / SUMMARY_FILE) or {}
    return RunInfo(run_dir, status, str(recipe.get("name", run_dir.name)), recipe, summary, info, error)


def list_runs(root: str | os.PathLike[str] | None = None) -> list[RunInfo]:
    base = Path(root) if root is not None else paths.runs_dir()
    if not base.is_dir():
        return []
    out = [read_run(p) for p in sorted(base.iterdir()) if p.is_dir() and is_run_dir(p)]
    return out


def resolve_run(ref: str, root: str | os.PathLike[str] | None = None) -> Path:
    """A run given as a path, a directory name, a unique prefix of one, a recipe name (the newest run
    of that recipe), or a unique part of a directory name."""
    p = Path(ref)
    if p.is_dir() and is_run_dir(p):
        return p
    base = Path(root) if root is not None else paths.runs_dir()
    if (base / ref).is_dir():
        return base / ref
    dirs = [d for d in sorted(base.iterdir()) if d.is_dir() and is_run_dir(d)] if base.is_dir() else []
    # Directory names start with a sortable timestamp, so the last match is the newest run.
    by_recipe = [d for d in dirs if re.fullmatch(rf"\d{{8}}-\d{{6}}-{re.escape(ref)}(-\d+)?", d.name)]
    for matches in (
        [d for d in dirs if d.name.startswith(ref)],
        by_recipe[-1:],
        [d for d in dirs if ref in d.name],
    ):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise FileNotFoundError(f"{ref}: ambiguous, matches {', '.join(m.name for m in matches[:5])}")
    raise FileNotFoundError(f"{ref}: no such run (looked in {base})")

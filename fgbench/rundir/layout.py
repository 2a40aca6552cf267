"""What a run directory holds, by name: the only module that spells a run file's name.

Layout (the README's "The run directory" table is this list)::

    <runs>/<YYYYmmdd-HHMMSS>-<recipe name>[-N]/
        recipe.toml          the resolved recipe, overrides applied, every default spelled out
        run.json             how it was started: argv, overrides, source recipe, created, pid, host
        metrics.jsonl        the event stream (fgbench.rundir.events)
        log.txt              the trainer's stdout and stderr
        summary.json         the result (fgbench.rundir.summary), rewritten atomically every epoch
        classes.json         class names in index order
        confusion.json       test confusion matrix of the selected model
        predictions.json     the selected model's prediction for every test image (error analysis)
        checkpoints/last.pt  the resume point
        checkpoints/best.pt  the best raw and EMA weights
        .lock                held (flock) by the one process that trains in the directory
        launch.json          written by the launcher: the supervisor's and trainer's pid and start time
        console.txt          a launched trainer's stdout and stderr (from its first byte)
        launch.toml          the recipe a launcher handed to the trainer
        exit.json            the trainer's exit code or signal, recorded by the launcher's supervisor

A run directory is created with ``mkdir`` (not ``exist_ok``), so two runs started in the same
second never share one: the second gets a ``-2`` suffix.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any, Iterable, TypeVar

from fgbench import paths
from fgbench.errors import UserError
from fgbench.textsafe import safe
from fgbench.atomic import atomic_write_text, temp_target
from fgbench.rundir import files

RECIPE_FILE = "recipe.toml"
RUN_INFO_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "log.txt"
SUMMARY_FILE = "summary.json"
CLASSES_FILE = "classes.json"
CONFUSION_FILE = "confusion.json"
PREDICTIONS_FILE = "predictions.json"
"""Per test image: its file (or None for in-memory datasets), true and predicted class, of the
selected model's best weights (the model and epoch of confusion.json). Written at the end of a run."""
CHECKPOINT_DIR = "checkpoints"
LAST_CKPT = "last.pt"
BEST_CKPT = "best.pt"
LOCK_FILE = ".lock"
LAUNCH_FILE = "launch.json"
CONSOLE_FILE = "console.txt"
LAUNCH_RECIPE = "launch.toml"
EXIT_FILE = "exit.json"

LAUNCH_FILES = frozenset({LOCK_FILE, LAUNCH_FILE, CONSOLE_FILE, LAUNCH_RECIPE, EXIT_FILE})
"""Files a launcher (or the lock) puts in a run directory before the trainer writes anything: a
directory holding only these is still "new" for ``fgbench run --run-dir``."""


def is_launch_file(name: str, files: frozenset[str] = LAUNCH_FILES) -> bool:
    """``name`` is one of ``files`` or the temporary file of an atomic write of one: the supervisor
    rewrites ``launch.json`` just after starting the trainer, while the trainer may be checking
    that its directory holds nothing else."""
    return name in files or temp_target(name) in files


RUN_MARKERS = (RECIPE_FILE, METRICS_FILE, RUN_INFO_FILE, LAUNCH_FILE)
"""A directory holding any of these is a run (for ``runs list``, the TUI and ``runs rm`` alike)."""


class RunDir:
    """The paths of one run directory."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    recipe = property(lambda self: self.path / RECIPE_FILE)
    info = property(lambda self: self.path / RUN_INFO_FILE)
    metrics = property(lambda self: self.path / METRICS_FILE)
    log = property(lambda self: self.path / LOG_FILE)
    summary = property(lambda self: self.path / SUMMARY_FILE)
    classes = property(lambda self: self.path / CLASSES_FILE)
    confusion = property(lambda self: self.path / CONFUSION_FILE)
    checkpoints = property(lambda self: self.path / CHECKPOINT_DIR)
    last_ckpt = property(lambda self: self.path / CHECKPOINT_DIR / LAST_CKPT)
    best_ckpt = property(lambda self: self.path / CHECKPOINT_DIR / BEST_CKPT)
    lock = property(lambda self: self.path / LOCK_FILE)
    launch = property(lambda self: self.path / LAUNCH_FILE)
    console = property(lambda self: self.path / CONSOLE_FILE)
    launch_recipe = property(lambda self: self.path / LAUNCH_RECIPE)
    exit = property(lambda self: self.path / EXIT_FILE)

    def is_fresh(self) -> bool:
        """True when nothing but launcher files is inside (a new run may start here)."""
        try:
            return all(is_launch_file(p.name) for p in self.path.iterdir())
        except FileNotFoundError:
            return True

    def has_results(self) -> bool:
        """True once training produced something worth keeping: a checkpoint, or an ended epoch in
        the metrics. fgbench never deletes such a run; a run stopped by bad input before this is
        removed (it holds only the files every run starts with)."""
        try:
            if any(p.suffix == ".pt" and p.is_file() for p in self.checkpoints.iterdir()):
                return True
        except OSError:
            pass
        try:
            with open(self.metrics, "rb") as f:
                return any(b'"event":"epoch"' in line for line in f)
        except OSError:
            return False


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
    """The file's JSON, or None when it is missing, unreadable, not a regular file, over its cap or
    not JSON (never raises, never blocks: see :mod:`fgbench.rundir.files`, which says why)."""
    try:
        return files.read_json(path)
    except files.RunFileError:
        return None


def write_run_info(run_dir: str | os.PathLike[str], **info: Any) -> None:
    p = Path(run_dir) / RUN_INFO_FILE
    base = read_json(p)
    base = base if isinstance(base, dict) else {}
    base.update(info)
    base.setdefault("created", time.time())
    base.setdefault("host", socket.gethostname())
    write_json(p, base)


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    # lexists, not is_file: a run whose recipe.toml was replaced by a FIFO or a link to a device is
    # still a run (listed as damaged, with the reason), not silently left out
    return not p.name.startswith(".") and p.is_dir() and any(os.path.lexists(p / m) for m in RUN_MARKERS)


P = TypeVar("P", bound="str | os.PathLike[str]")


class RunsRootError(UserError):
    """The runs root exists but cannot be listed (exit 2, one line)."""


def check_runs_root(root: str | os.PathLike[str]) -> None:
    """:class:`RunsRootError` when ``root`` exists but is not a directory that can be listed (a
    symlink loop, a file, no permission); a root that does not exist yet is fine (it is made)."""
    try:
        with os.scandir(root):
            return
    except FileNotFoundError:
        if os.path.lexists(root):  # a dangling link: nothing can be made through it
            raise RunsRootError(f"{safe(str(root))}: the runs directory is a broken symbolic link") from None
    except NotADirectoryError:
        raise RunsRootError(f"{safe(str(root))}: the runs directory exists and is not a directory") from None
    except OSError as err:
        raise RunsRootError(f"{safe(str(root))}: cannot read the runs directory: "
                            f"{safe(err.strerror or str(err))}") from None


def run_dirs(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Every run directory under ``root``, oldest first (names start with a sortable timestamp); a
    list shown to the user goes through :func:`newest_first`."""
    base = Path(root) if root is not None else paths.runs_dir()
    try:
        return [p for p in sorted(base.iterdir()) if is_run_dir(p)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as err:  # a symlink loop (ELOOP), no permission: one line, not a traceback
        raise RunsRootError(f"{safe(str(base))}: cannot read the runs directory: {safe(err.strerror or str(err))}") \
            from None


def newest_first(paths: Iterable[P]) -> list[P]:
    """Runs in the one order every list of runs shows them (``runs list``, ``runs export`` without
    RUN, the TUI's Runs and Compare panes): newest first, so the run just started is on top and
    ``runs list | head`` shows the latest. A run directory's name starts with its start stamp
    (``YYYYmmdd-HHMMSS``), so the name orders them; of two runs started in the same second the
    ``-2`` one comes first."""
    return sorted(paths, key=lambda p: Path(p).name, reverse=True)


def resolve_run(ref: str, root: str | os.PathLike[str] | None = None) -> Path:
    """A run given as a path, a directory name, a unique prefix of one, a recipe name (the newest run
    of that recipe), or a unique part of a directory name."""
    p = Path(ref)
    if is_run_dir(p):
        return p
    base = Path(root) if root is not None else paths.runs_dir()
    if is_run_dir(base / ref):
        return base / ref
    dirs = run_dirs(base)
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

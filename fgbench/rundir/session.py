"""One process's hold on one run directory, from "where does the run go" to "unlocked" (pure zone).

``fgbench run`` (and each of its torchrun workers, and the ``--nproc`` launcher) trains inside a
:class:`RunSession`. The session owns, in one place, what used to be decided at eight places in
the runner:

* **Fresh or adopted, by one rule** (:meth:`RunSession.place` / :meth:`RunSession.adopt`): a run
  goes into ``--run-dir`` when one is given (it must be new, empty, or hold only a launcher's
  files), else into a new directory under the runs root; ``--resume`` adopts an existing run
  whose status is neither running nor completed. ``origin`` records which: ``"created"`` (this
  invocation made the directory), ``"emptied"`` (it was given empty) or ``"resumed"``.
* **The lock** (:mod:`fgbench.rundir.lock`), taken before anything is written and, for a new
  directory, checked again once taken; held by the session object, not by a module global.
* **The disk reserve**: a file of zeros kept while training and deleted when the disk fills up, so
  that the summary and the closing event still fit.
* **The log tee**: stdout and stderr copied into ``log.txt`` while the terminal still shows them.
* **Signals through a callback**: SIGINT/SIGTERM call ``on_signal(name)``; the trainer decides
  what a signal means. The previous handlers come back when the session ends.
* **Discard on bad input**: a :class:`~fgbench.errors.UserError` that leaves the ``with`` block of
  a fresh session removes the directory it created (or empties again the one it was given; a
  launcher's files stay), so bad input leaves nothing behind. A resumed run, or one with results
  (``RunDir.has_results``), is never discarded.
* **Unlock** when the session ends, however it ends.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Literal, TextIO

from fgbench.atomic import DiskFullError, disk_full_cause
from fgbench.errors import UserError
from fgbench.rundir import layout
from fgbench.rundir.lock import LOCKED_ENV, RunBusy, RunLock, holder, locked_by_parent

Origin = Literal["created", "emptied", "resumed"]

RESERVE_FILE = ".disk-reserve"
"""A file of zeros kept in the run directory while training and deleted when the disk fills up,
so that the summary and the closing event still fit (a full disk otherwise leaves no status)."""
RESERVE_BYTES = 256 << 10


class Tee(io.TextIOBase):
    """Writes to the terminal stream and to the log file."""

    def __init__(self, stream: TextIO, log: TextIO):
        self.stream, self.log = stream, log

    def write(self, s: str) -> int:
        self.stream.write(s)
        try:
            self.log.write(s)
        except ValueError:  # log closed during shutdown
            pass
        return len(s)

    def flush(self) -> None:
        self.stream.flush()
        try:
            self.log.flush()
        except ValueError:
            pass

    def isatty(self) -> bool:
        return getattr(self.stream, "isatty", lambda: False)()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")


def make_reserve(run_dir: Path) -> None:
    with open(run_dir / RESERVE_FILE, "wb") as f:
        f.write(bytes(RESERVE_BYTES))  # real blocks, not a sparse file
        f.flush()
        os.fsync(f.fileno())


def release_reserve(run_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (run_dir / RESERVE_FILE).unlink()


def install_signals(on_signal: Callable[[str], None]) -> dict[int, object]:
    """SIGINT and SIGTERM call ``on_signal(name)`` (it may raise, e.g. KeyboardInterrupt); returns
    the previous handlers for :func:`restore_signals`. Outside the main thread nothing changes."""
    old: dict[int, object] = {}

    def handler(signum: int, frame: object) -> None:
        on_signal(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
    return old


def restore_signals(old: dict[int, object]) -> None:
    for sig, h in old.items():
        try:
            signal.signal(sig, h)  # type: ignore[arg-type]
        except ValueError:
            pass


def _check_fresh(path: Path) -> None:
    if not layout.RunDir(path).is_fresh():
        busy = holder(path)
        if busy is not None:
            raise UserError(str(RunBusy(path, busy)))
        raise UserError(f"{path}: --run-dir is not empty (give a new or empty directory, or --resume it)")


def _given_dir(path: Path, create: bool) -> Origin:
    """Check (and create) a ``--run-dir``: "created" when it did not exist, "emptied" when it
    existed empty (or held only a launcher's files)."""
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise UserError(f"{path}: --run-dir exists and is not a directory")
        _check_fresh(path)
        return "emptied"
    if create:
        try:
            path.mkdir(parents=True)
        except FileExistsError:  # another process made it a moment ago
            return _given_dir(path, create)
        except OSError as err:
            raise UserError(f"{path}: --run-dir cannot be created: {err.strerror or err}") from None
    return "created"


def _new_dir(name: str, root: str | None) -> Path:
    """``layout.create_run_dir`` with a runs root that cannot be written reported as bad input."""
    try:
        return layout.create_run_dir(name, root)
    except OSError as err:
        where = getattr(err, "filename", None) or root or "the runs directory"
        raise UserError(f"{where}: cannot create the run directory: {err.strerror or err}") from None


class RunSession:
    """``with RunSession.place(...) as s:`` ... train in ``s.run_dir`` ... (see the module docstring).

    ``writes``: this process writes the directory (False for DDP ranks other than 0, whose
    session only carries the path and never touches it)."""

    def __init__(self, run_dir: Path, origin: Origin, *, writes: bool = True):
        self.run_dir = run_dir
        self.origin: Origin = origin
        self.writes = writes
        self._lock: RunLock | None = None
        self._log: TextIO | None = None
        self._streams: tuple[TextIO, TextIO] | None = None
        self._signals: dict[int, object] = {}
        self._reserve = False

    # ------------------------------------------------------------------------- where the run goes

    @classmethod
    def place(cls, *, run_dir: str | os.PathLike[str] | None, runs_root: str | None, name: str,
              create: bool = True) -> "RunSession":
        """The one rule for a new run: ``run_dir`` when given (new, empty, or holding only a
        launcher's files), else a new directory named after the recipe under ``runs_root`` (default:
        the user's runs directory). ``create = False`` checks a given ``run_dir`` without making it
        (:meth:`create` makes it later)."""
        if run_dir is not None:
            path = Path(run_dir).expanduser()
            return cls(path, _given_dir(path, create))
        return cls(_new_dir(name, runs_root), "created")

    @classmethod
    def adopt(cls, run_dir: Path, *, check: bool = True) -> "RunSession":
        """An existing run to continue: refused (bad input) while it is running or once it has
        completed, then locked. ``check = False`` (DDP ranks other than 0) skips both: rank 0 makes
        them, and may already have marked the run as its own. So does a process whose parent holds
        the run's lock for it (``--nproc``)."""
        session = cls(run_dir, "resumed", writes=check)
        if check and not locked_by_parent(run_dir):
            from fgbench.rundir.reader import RunReader
            from fgbench.rundir.supervise import LAUNCH_ENV

            reader = RunReader(run_dir)
            reader.update()
            status = reader.status(own_launch=os.environ.get(LAUNCH_ENV)).status
            if status == "running":
                busy = holder(run_dir)
                raise UserError(str(RunBusy(run_dir, busy)) if busy is not None else
                                f"{run_dir}: the run is still running (pid {reader.pid}); stop it first")
            if status == "completed":
                raise UserError(f"{run_dir}: the run has already completed")
            session.lock()
        return session

    @property
    def fresh(self) -> bool:
        """This invocation made (or was given empty) the directory: bad input undoes it."""
        return self.origin != "resumed"

    def create(self) -> None:
        """Make a directory :meth:`place` checked with ``create = False``."""
        if self.writes and self.origin == "created" and not self.run_dir.is_dir():
            self.run_dir.mkdir(parents=True)

    # ----------------------------------------------------------------------------------- lock

    def lock(self) -> "RunSession":
        """Take the run's lock for this session, or raise UserError naming the holder (exit 2;
        :class:`~fgbench.atomic.DiskFullError` when even the lock file does not fit). A new
        directory is checked again once locked: another process may have written into it in
        between. A process whose parent holds the lock for it takes nothing."""
        if locked_by_parent(self.run_dir) or self._lock is not None:
            return self
        try:
            try:
                lock = RunLock(self.run_dir).acquire()
            except RunBusy as err:
                raise UserError(str(err)) from None
            except OSError as err:
                if disk_full_cause(err) is not None:
                    raise DiskFullError(self.run_dir / layout.LOCK_FILE) from None
                raise UserError(f"{self.run_dir}: cannot lock the run directory: {err.strerror or err}") from None
            if self.fresh and not layout.RunDir(self.run_dir).is_fresh():
                lock.release()  # (asking who holds the lock now would name this very process)
                raise UserError(f"{self.run_dir}: --run-dir is not empty (give a new or empty directory, "
                                "or --resume it)")
        except (UserError, DiskFullError):
            if self.origin == "created":  # made a moment ago for nothing: not left behind
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        self._lock = lock
        os.environ[LOCKED_ENV] = str(self.run_dir.absolute())  # torchrun workers of this run: already held
        return self

    @property
    def owned(self) -> bool:
        """This process (or its parent, for it) holds the run's lock: it may write and discard."""
        return self._lock is not None or locked_by_parent(self.run_dir)

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
            os.environ.pop(LOCKED_ENV, None)

    # ------------------------------------------------------------------------------ while training

    def open_log(self) -> None:
        """Open ``log.txt`` and the disk reserve (an OSError here, e.g. a full disk, is the caller's
        to report), then tee stdout and stderr into the log."""
        if not self.writes:
            return
        self._log = open(self.run_dir / layout.LOG_FILE, "a", encoding="utf-8", buffering=1)
        self._reserve = True
        make_reserve(self.run_dir)
        self._streams = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = Tee(sys.stdout, self._log), Tee(sys.stderr, self._log)

    @property
    def terminal(self) -> tuple[TextIO, TextIO]:
        """The (stdout, stderr) the session found: for what must not go into the log."""
        return self._streams or (sys.stdout, sys.stderr)

    def release_reserve(self) -> None:
        """Free the reserve now (the disk is full: the closing records need its room)."""
        if self._reserve:
            self._reserve = False
            release_reserve(self.run_dir)

    def watch_signals(self, on_signal: Callable[[str], None]) -> None:
        self._signals.update(install_signals(on_signal))

    def close(self) -> None:
        """Restore the signal handlers and the streams, close the log, free the reserve. Safe to
        call twice; :meth:`__exit__` calls it."""
        restore_signals(self._signals)
        self._signals = {}
        self.release_reserve()
        if self._streams is not None:
            sys.stdout, sys.stderr = self._streams
            self._streams = None
        if self._log is not None:
            log, self._log = self._log, None
            try:
                log.close()
            except OSError as err:  # a full disk may refuse the last flush; the outcome is already told
                if disk_full_cause(err) is None:
                    raise

    # ---------------------------------------------------------------------------------- ending

    def discard(self) -> None:
        """Undo a fresh run directory: remove what this invocation created, or empty again a
        directory that was given empty (a launcher's files stay for it). Unlocks first."""
        self.unlock()
        if not self.fresh or not self.writes or layout.RunDir(self.run_dir).has_results():
            return  # a directory with results (a checkpoint, an ended epoch) is never touched
        if self.origin == "created":
            shutil.rmtree(self.run_dir, ignore_errors=True)
            return
        if not self.run_dir.is_dir():
            return
        rd = layout.RunDir(self.run_dir)
        keep = layout.LAUNCH_FILES - {layout.LOCK_FILE} if rd.launch.exists() else frozenset()
        for p in self.run_dir.iterdir():
            if layout.is_launch_file(p.name, keep):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    def __enter__(self) -> "RunSession":
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.close()
        finally:
            if isinstance(err, UserError) and self.fresh and self.owned:
                self.discard()  # bad input, also when found mid-run (an undecodable image): nothing left
            self.unlock()

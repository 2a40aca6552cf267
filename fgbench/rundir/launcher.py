"""Starting and stopping trainers: the one launcher the TUI and sweeps use (stdlib only).

Decisions and trade-offs:

* A launch makes the run directory first (``create_run_dir``), then starts a small **supervisor**
  (``python -m fgbench.rundir.supervise``, stdlib only, about 30 ms) in a new session, which
  starts ``fgbench run ... --run-dir DIR`` and waits for it. The new session means that quitting
  the TUI, a dropped SSH connection or Ctrl-C in the sweep's terminal never reaches the trainer.
  The supervisor is what makes every end of a run visible from the files alone: it writes
  ``launch.json`` (its own and the trainer's pid *with start times*, so a reused pid is never taken
  for the run) and, when the trainer ends, ``exit.json`` (the exit code, or the signal that killed
  it: SIGKILL from the out-of-memory killer is recorded, not guessed). The launcher's own process
  may be long gone by then.
* **Nothing orphaned:** if the trainer rejects its input (exit 2) before writing anything of its
  own, the supervisor hands the trainer's last lines to the launcher (its stdout, a pipe) and
  removes the directory: a rejected launch leaves nothing, as a rejected ``fgbench run`` does.
* ``subprocess.Popen``, not asyncio's subprocess transport, which kills a child still running
  when the transport is closed (quitting the TUI). The command is an argument list, never a shell.
* Stop is SIGINT to the supervisor, which forwards it to the trainer: the trainer finishes its
  step, checkpoints, writes ``run_finished`` (interrupted) and exits 130. A second SIGINT is the
  trainer's "stop now". The supervisor is found through ``launch.json`` (pid and start time), so a
  restarted TUI can stop a run another TUI started.
* The command prefix is injectable (``fgbench_cmd``) so tests launch a fake trainer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from fgbench.atomic import atomic_write_text
from fgbench.textsafe import safe
from fgbench.rundir import layout, procs


class LaunchError(Exception):
    """The trainer could not be started at all (a missing executable, a full disk)."""


@dataclass
class Launched:
    run_dir: Path
    process: subprocess.Popen
    command: list[str]
    launch_id: str
    rejection: str | None = field(default=None)
    """The trainer's last lines when it rejected its input (exit 2) and the directory was removed."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None and self.rejection is None and self.process.stdout is not None:
            try:
                text = self.process.stdout.read().decode("utf-8", errors="replace").strip()
            except (OSError, ValueError):
                text = ""
            finally:
                self.process.stdout.close()
            self.rejection = text or None
        return code

    def wait(self, timeout: float | None = None) -> int:
        self.process.wait(timeout)
        code = self.poll()
        assert code is not None
        return code


def supervisor_command(run_dir: Path, launch_id: str, command: Sequence[str], *, tee: bool = False) -> list[str]:
    return [sys.executable, "-m", "fgbench.rundir.supervise", *(["--tee"] if tee else []), str(run_dir), launch_id,
            "--", *command]


class Launcher:
    def __init__(self, runs_root: str | os.PathLike[str], fgbench_cmd: Sequence[str] | None = None):
        self.runs_root = Path(runs_root).absolute()
        self.prefix = list(fgbench_cmd) if fgbench_cmd else [sys.executable, "-m", "fgbench"]
        self.children: dict[Path, Launched] = {}
        self.extra_env: dict[str, str] = {}
        self._lock = threading.Lock()

    def spawn(self, run_dir: Path, args: Sequence[str], *, env: dict[str, str] | None = None,
              tee: bool = False) -> Launched:
        """Start ``fgbench ARGS`` under a supervisor for ``run_dir`` (which must exist). ``tee``:
        also copy the trainer's output to this process's stderr (a sweep in the foreground)."""
        command = [*self.prefix, *args]
        full_env = dict(os.environ)
        full_env.update(self.extra_env)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        launch_id = uuid.uuid4().hex[:12]
        try:
            proc = subprocess.Popen(
                supervisor_command(run_dir, launch_id, command, tee=tee),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=None if tee else subprocess.DEVNULL,
                start_new_session=True, env=full_env, close_fds=True,
            )
        except OSError as err:
            raise LaunchError(f"cannot start {sys.executable}: {err}") from None
        launched = Launched(run_dir, proc, command, launch_id)
        with self._lock:
            self.children[run_dir] = launched
        return launched

    def start(self, recipe_toml: str, name: str, *, args: Sequence[str] = (),
              env: dict[str, str] | None = None, tee: bool = False) -> Launched:
        """A new run of this recipe (TOML text): its directory, ``launch.toml``, the trainer."""
        run_dir = layout.create_run_dir(name, self.runs_root)
        rd = layout.RunDir(run_dir)
        try:
            atomic_write_text(rd.launch_recipe, recipe_toml)
            return self.spawn(run_dir, ["run", str(rd.launch_recipe), "--run-dir", str(run_dir), *args], env=env, tee=tee)
        except BaseException:
            remove_fresh(run_dir)  # nothing started: leave nothing behind
            raise

    def resume(self, run_dir: str | os.PathLike[str], *, args: Sequence[str] = (),
               env: dict[str, str] | None = None, tee: bool = False) -> Launched:
        run_dir = Path(run_dir).absolute()
        with self._lock:
            live = self.children.get(run_dir)
        if live is not None and live.process.poll() is None:
            raise LaunchError(f"{run_dir.name}: the trainer is still running")
        return self.spawn(run_dir, ["run", "--resume", str(run_dir), *args], env=env, tee=tee)

    def reap(self) -> dict[Path, Launched]:
        """The launches that have ended since the last call (their supervisor exited)."""
        done: dict[Path, Launched] = {}
        with self._lock:
            for run_dir, launched in list(self.children.items()):
                if launched.poll() is not None:
                    done[run_dir] = launched
                    del self.children[run_dir]
        return done


def remove_fresh(run_dir: Path) -> None:
    """Remove a run directory that holds nothing but a launcher's files (no run began there)."""
    rd = layout.RunDir(run_dir)
    if rd.path.is_dir() and rd.is_fresh():
        for p in rd.path.iterdir():
            p.unlink(missing_ok=True)
        try:
            rd.path.rmdir()
        except OSError:
            pass


@dataclass(frozen=True)
class StopAnswer:
    """What a Stop did: ``sent`` SIGINT or not, and the line that says so."""

    sent: bool
    message: str


def request_stop(run_dir: str | os.PathLike[str]) -> StopAnswer:
    """Ask the run's trainer to stop (it checkpoints first), by the rule for signals: only a
    process whose recorded pid, start time and host all match the live process is signalled
    (see :mod:`fgbench.rundir.procs`). A live pid recorded without a start time that proves it
    is the run's process is *unknown*: nothing is signalled, and the answer says so.

    Through the launch's supervisor when there is one alive (it forwards the signal), else to the
    pid that holds the run's lock (a run started with ``fgbench run`` in a shell)."""
    from fgbench.rundir import lock

    rd = layout.RunDir(run_dir)
    name = safe(rd.name)
    unknown: list[str] = []
    launch = layout.read_json(rd.launch)
    exit_rec = layout.read_json(rd.exit)
    if isinstance(launch, dict) and not (isinstance(exit_rec, dict) and exit_rec.get("launch") == launch.get("launch")):
        sup = launch.get("supervisor")
        if not isinstance(sup, dict):
            sup = {}
        if procs.alive(sup.get("pid"), sup.get("pid_start"), sup.get("host")):
            return _signal(sup["pid"], name)
        if procs.unverifiable(sup.get("pid"), sup.get("pid_start"), sup.get("host")):
            unknown.append(f"{layout.LAUNCH_FILE} names pid {sup.get('pid')}")
    holder = lock.holder(rd.path)
    if holder:
        if procs.alive(holder.get("pid"), holder.get("pid_start"), holder.get("host")):
            return _signal(holder["pid"], name)
        if procs.unverifiable(holder.get("pid"), holder.get("pid_start"), holder.get("host")):
            unknown.append(f"{layout.LOCK_FILE} names pid {holder.get('pid')}")
    if unknown:
        return StopAnswer(False, f"{name}: the run's process is unknown ({'; '.join(unknown)}, but not that "
                          "process's start time): nothing was signalled")
    return StopAnswer(False, f"{name} is not running")


def stop(run_dir: str | os.PathLike[str]) -> bool:
    """:func:`request_stop`, answering only whether SIGINT was sent."""
    return request_stop(run_dir).sent


def _signal(pid: int, name: str) -> StopAnswer:
    try:
        os.kill(pid, signal.SIGINT)
    except (ProcessLookupError, PermissionError) as err:
        return StopAnswer(False, f"{name}: cannot signal pid {pid}: {err.strerror or err}")
    return StopAnswer(True, f"Stopping {name}: sent SIGINT, it writes a checkpoint first")

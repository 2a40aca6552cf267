"""Starting, stopping and resuming trainer processes (no textual here).

Decisions and trade-offs:

* A run is its own process in its own session (``start_new_session=True``): quitting the TUI, a
  dropped SSH connection (SIGHUP to the TUI's session) or Ctrl+C in the TUI's terminal never
  reaches the trainer. The TUI only watches the run directory, so a later TUI re-attaches by
  reading the same files.
* ``subprocess.Popen``, not ``asyncio.create_subprocess_exec``: asyncio's subprocess transport
  *kills* a child that is still running when the transport is closed or garbage-collected (see
  ``asyncio.base_subprocess.BaseSubprocessTransport.close``), which is exactly what must not
  happen when the user quits the TUI. Popen does not; starting it is a fork/exec that takes
  milliseconds, and the exit code is collected by :meth:`Launcher.reap`, called from the run
  list's refresh worker. The command is an argument list, never a shell string.
* The command prefix is injectable (``fgbench_cmd``), so tests launch a fake trainer that writes
  scripted metrics events instead of importing torch.
* The recipe that is run is the editor's current (validated) recipe. The TUI creates the run
  directory (``runs.create_run_dir``) and passes it with ``--run-dir``; the trainer accepts only a
  new or empty directory there, so the TUI's own launch files live beside it, in
  ``<runs>/.launches/<run id>/``: ``launch.toml`` (the recipe as run), ``launch.json`` (pid and
  command, so a restarted TUI knows the run is starting before the trainer has written
  anything) and ``console.txt`` (the trainer's stdout and stderr; the trainer also writes its own
  ``log.txt`` in the run directory). The console matters most when the trainer stops before the
  run directory has any file, e.g. a dataset that is not downloaded: the run is then shown as
  failed with the tail of that output.
* Stop is SIGINT to the trainer's pid: it checkpoints, writes ``run_finished`` (interrupted) and
  exits 130. Resume is ``fgbench run --resume DIR``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fgbench import runs
from fgbench.atomic import atomic_write_text
from fgbench.errors import UserError
from fgbench.tui.monitor import CONSOLE_FILE, LAUNCH_INFO, launch_dir

if TYPE_CHECKING:
    from fgbench.recipe import Recipe

LAUNCH_RECIPE = "launch.toml"


@dataclass
class Launched:
    run_dir: Path
    process: subprocess.Popen
    command: list[str]

    @property
    def pid(self) -> int:
        return self.process.pid


class Launcher:
    def __init__(self, runs_root: Path, fgbench_cmd: list[str] | None = None):
        self.runs_root = Path(runs_root).absolute()
        self.prefix = list(fgbench_cmd) if fgbench_cmd else [sys.executable, "-m", "fgbench"]
        self.children: dict[Path, Launched] = {}
        self.extra_env: dict[str, str] = {}
        self._lock = threading.Lock()

    def _spawn(self, run_dir: Path, args: list[str]) -> Launched:
        command = [*self.prefix, *args]
        env = dict(os.environ)
        env.update(self.extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        side = launch_dir(run_dir)
        side.mkdir(parents=True, exist_ok=True)
        with open(side / CONSOLE_FILE, "ab") as console:
            try:
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=console,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                    close_fds=True,
                )
            except OSError as err:
                raise UserError(f"cannot start {command[0]}: {err}") from None
        launched = Launched(run_dir, proc, command)
        with self._lock:
            self.children[run_dir] = launched
        runs.write_json(side / LAUNCH_INFO, {"pid": proc.pid, "command": command, "time": time.time()})
        return launched

    def start(self, recipe: Recipe) -> Launched:
        from fgbench.tui.form import full_toml  # the recipe schema: not needed before the first paint

        run_dir = runs.create_run_dir(recipe.name, self.runs_root)
        recipe_path = launch_dir(run_dir) / LAUNCH_RECIPE
        atomic_write_text(recipe_path, full_toml(recipe))
        return self._spawn(run_dir, ["run", str(recipe_path), "--run-dir", str(run_dir), "--progress", "lines"])

    def resume(self, run_dir: Path) -> Launched:
        run_dir = Path(run_dir).absolute()
        if not (run_dir / runs.CHECKPOINT_DIR / runs.LAST_CKPT).is_file():
            raise UserError(f"{run_dir.name}: no checkpoint to resume from ({runs.CHECKPOINT_DIR}/{runs.LAST_CKPT})")
        with self._lock:
            live = self.children.get(run_dir)
        if live is not None and live.process.poll() is None:
            raise UserError(f"{run_dir.name}: the trainer is still running")
        return self._spawn(run_dir, ["run", "--resume", str(run_dir), "--progress", "lines"])

    @staticmethod
    def stop(pid: int | None) -> bool:
        """SIGINT to the trainer (it checkpoints and exits 130). False if it is not running."""
        if not runs.pid_alive(pid):
            return False
        try:
            os.kill(pid, signal.SIGINT)  # type: ignore[arg-type]
        except ProcessLookupError:
            return False
        return True

    def reap(self) -> dict[Path, int]:
        """Exit codes of launched trainers that have ended since the last call."""
        done: dict[Path, int] = {}
        with self._lock:
            for run_dir, launched in list(self.children.items()):
                code = launched.process.poll()
                if code is not None:
                    done[run_dir] = code
                    del self.children[run_dir]
        return done

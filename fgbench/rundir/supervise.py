"""The launch supervisor: ``python -m fgbench.rundir.supervise [--tee] RUN_DIR LAUNCH_ID -- COMMAND...``

Started by :class:`fgbench.rundir.launcher.Launcher` in a session of its own. It runs COMMAND (a
``fgbench run`` into RUN_DIR), records in the run directory what only a parent can know, and
exits with the trainer's exit code (128 + N for a signal N):

* ``launch.json``: the launch id, the command, and the supervisor's and trainer's pid with their
  start times, written before and right after the trainer starts;
* ``console.txt``: the trainer's stdout and stderr, from its first byte (an import error or a
  missing dataset shows here even before the trainer has a log);
* ``exit.json``: the trainer's exit code, or the signal that killed it, when it ends.

SIGINT and SIGTERM are forwarded to the trainer (each one: the second is the trainer's "stop
now"). When the trainer rejected its input (exit 2) and left nothing of its own in the directory,
the last lines of its output go to this process's stdout (the launcher reads them) and the
directory is removed: a rejected launch leaves nothing behind.

Stdlib only and tiny: it lives as long as the run, so it must cost nothing.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import cast

from fgbench.rundir import layout, procs

TAIL_BYTES = 4000
LAUNCH_ENV = "FGBENCH_LAUNCH_ID"
"""Set for the trainer: the id of the launch (``launch.json``) that started it."""


def _write_launch(rd: layout.RunDir, launch_id: str, command: list[str], trainer: dict | None) -> None:
    layout.write_json(rd.launch, {"launch": launch_id, "command": command, "time": time.time(),
                                  "supervisor": procs.identity(), "trainer": trainer})


def _tail(fd: int) -> str:
    size = os.fstat(fd).st_size
    data = os.pread(fd, TAIL_BYTES, max(0, size - TAIL_BYTES))
    lines = [ln.rsplit("\r", 1)[-1] for ln in data.decode("utf-8", errors="replace").splitlines()]
    return "\n".join(ln for ln in lines if ln.strip())


def main(argv: list[str]) -> int:
    tee = False
    if argv and argv[0] == "--tee":
        tee, argv = True, argv[1:]
    if len(argv) < 4 or argv[2] != "--":
        print("usage: python -m fgbench.rundir.supervise [--tee] RUN_DIR LAUNCH_ID -- COMMAND...", file=sys.stderr)
        return 2
    rd, launch_id, command = layout.RunDir(argv[0]), argv[1], argv[3:]
    _write_launch(rd, launch_id, command, None)
    console_fd = os.open(rd.console, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    reader_fd = os.open(rd.console, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)

    child: subprocess.Popen | None = None
    pending: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if child is not None and child.poll() is None:
            try:
                child.send_signal(signum)
            except ProcessLookupError:
                pass
        else:
            pending.append(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        # the trainer learns which launch it belongs to: its own supervisor is not "another" trainer
        env = {**os.environ, LAUNCH_ENV: launch_id}
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, env=env,
                                 stdout=subprocess.PIPE if tee else console_fd, stderr=subprocess.STDOUT)
    except OSError as err:
        os.write(console_fd, f"cannot start {command[0]}: {err}\n".encode())
        layout.write_json(rd.exit, {"launch": launch_id, "code": 127, "signal": None, "time": time.time()})
        print(f"cannot start {command[0]}: {err}", flush=True)
        return 127
    _write_launch(rd, launch_id, command, procs.identity(child.pid))
    for signum in pending:
        child.send_signal(signum)
    copier = None
    if tee:
        def copy() -> None:
            assert child is not None and child.stdout is not None
            # a PIPE with the default buffering is a BufferedReader: read1 returns what is there
            stdout = cast(io.BufferedReader, child.stdout)
            for chunk in iter(lambda: stdout.read1(65536), b""):
                os.write(console_fd, chunk)
                try:
                    os.write(2, chunk)
                except OSError:
                    pass

        copier = threading.Thread(target=copy, daemon=True)
        copier.start()
    while True:
        try:
            code = child.wait()
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
            continue
    if copier is not None:
        copier.join(timeout=5)
    sig = signal.Signals(-code).name if code < 0 else None
    exit_code = 128 - code if code < 0 else code
    if code == 2 and rd.is_fresh():
        # rejected input, nothing of the run written: hand the reason over, leave nothing behind
        try:
            sys.stdout.write(_tail(reader_fd) + "\n")
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        os.close(reader_fd)
        os.close(console_fd)
        shutil.rmtree(rd.path, ignore_errors=True)
        return exit_code
    layout.write_json(rd.exit, {"launch": launch_id, "code": exit_code, "signal": sig, "time": time.time(),
                                "trainer_pid": child.pid})
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""A run's lock belongs to the process that took it, not to the children it forks: a trainer killed
with SIGKILL leaves its run unlocked at once, even while its DataLoader workers (forked, not
exec'd) are still alive. Before, the workers' inherited descriptor kept the ``flock`` for the
seconds they took to notice, and the killed run read ``running`` and ``--resume`` named a dead pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fgbench.rundir import lock

REPO = Path(__file__).resolve().parents[2]

HOLDER = """
import os, sys, time
from fgbench.rundir.lock import RunLock
RunLock(sys.argv[1]).acquire()
child = os.fork()
if child == 0:
    if sys.argv[2] == "child-exits":
        os._exit(0)  # a worker that ends while its parent trains on
    os.write(1, b"%d\\n" % os.getpid())  # a worker that lives on after its parent dies
    time.sleep(120)
    os._exit(0)
if sys.argv[2] == "child-exits":
    os.waitpid(child, 0)
    print(0, flush=True)
time.sleep(120)
"""


def _start(run_dir: Path, mode: str) -> tuple[subprocess.Popen, int]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir), mode], stdout=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def test_a_killed_holder_frees_the_run_while_its_forked_child_lives(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    proc, worker = _start(run, "child-lives")
    try:
        assert lock.holder(run) is not None and lock.holder(run).get("pid") == proc.pid
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        os.kill(worker, 0)  # the forked child is still alive ...
        assert lock.holder(run) is None  # ... and holds nothing
        with lock.RunLock(run).acquire(patience_s=0.1):  # a resume takes the run at once
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
        os.kill(worker, signal.SIGKILL)
        _wait_gone(worker)


def test_a_forked_child_that_ends_leaves_the_lock_with_its_parent(tmp_path: Path) -> None:
    """The child closes its copy; it never unlocks, which would release the parent's lock too."""
    run = tmp_path / "run"
    run.mkdir()
    proc, _ = _start(run, "child-exits")
    try:
        holder = lock.holder(run)
        assert holder is not None and holder.get("pid") == proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert lock.holder(run) is None

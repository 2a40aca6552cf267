"""The rule for signals: only a process whose recorded pid, start time and host all match the live
process is signalled (fgbench.rundir.procs, fgbench.rundir.launcher.request_stop). A live pid
recorded without such a start time is unknown: nothing is signalled, the answer says so, and the
record does not keep the run "running" (so `runs rm` and `--resume` can proceed)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakes.run_factory import make_run

from fgbench import rundir
from fgbench.rundir import launcher, procs
from fgbench.rundir.reader import RunReader


@pytest.fixture
def bystander():
    """A live process fgbench did not start (it reports SIGINT by exiting with code 7)."""
    code = "import signal, sys, time\nsignal.signal(signal.SIGINT, lambda *a: sys.exit(7))\nprint('ready', flush=True)\ntime.sleep(600)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _forge_launch(run_dir: Path, supervisor: dict) -> None:
    rundir.write_json(run_dir / rundir.LAUNCH_FILE, {"launch": "forged", "command": ["x"], "time": 1.0,
                                                      "supervisor": supervisor, "trainer": None})


def _boot_ticks_record(pid: int) -> str:
    """How fgbench recorded a start time before psutil: "<boot id>:<ticks since boot>"."""
    with open(f"/proc/{pid}/stat") as f:
        ticks = f.read().rsplit(")", 1)[1].split()[19]
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f"{f.read().strip()}:{ticks}"


@pytest.mark.parametrize("record", [
    lambda pid: {"pid": pid, "host": socket.gethostname()},                      # no start time
    lambda pid: {"pid": pid, "pid_start": None, "host": socket.gethostname()},   # an explicit null
    lambda pid: {"pid": pid, "pid_start": 12345.0, "host": socket.gethostname()},  # another process's start
    lambda pid: {"pid": pid, "pid_start": "boot:1", "host": socket.gethostname()},  # a forged legacy record
    lambda pid: {"pid": pid, "pid_start": procs.start_time(pid), "host": "elsewhere"},  # another host
], ids=["no-start", "null-start", "wrong-start", "wrong-legacy", "other-host"])
def test_a_process_fgbench_did_not_start_is_never_signalled(runs_root: Path, cli, bystander, record) -> None:
    run = make_run(runs_root, "forged")
    _forge_launch(run, record(bystander.pid))
    answer = launcher.request_stop(run)
    assert not answer.sent
    time.sleep(0.2)  # a signal, had one been sent, is delivered by now
    assert bystander.poll() is None  # still alive: not signalled
    if record(bystander.pid)["host"] == socket.gethostname():
        assert "the run's process is unknown" in answer.message and f"pid {bystander.pid}" in answer.message
    reader = RunReader(run)
    reader.update()
    assert reader.status().status != "running"  # not "running" forever
    # so `runs rm` may delete it (it refuses only a running run)
    code, out, err = cli("runs", "rm", run.name, "--yes", "--runs-root", runs_root)
    assert code == 0 and not run.exists(), err


def test_the_recorded_process_is_signalled(runs_root: Path, bystander) -> None:
    run = make_run(runs_root, "ours", status=None)
    _forge_launch(run, procs.identity(bystander.pid))
    reader = RunReader(run)
    reader.update()
    assert reader.status().status == "running"
    answer = launcher.request_stop(run)
    assert answer.sent and "sent SIGINT" in answer.message
    assert bystander.wait(timeout=60) == 7


def test_a_start_time_recorded_before_psutil_still_identifies_the_process(bystander) -> None:
    legacy = _boot_ticks_record(bystander.pid)
    assert procs.alive(bystander.pid, legacy, socket.gethostname())
    boot, ticks = legacy.rsplit(":", 1)
    assert not procs.alive(bystander.pid, f"{boot}:{int(ticks) + 100}", socket.gethostname())  # 1 s later


def test_start_times_come_from_psutil_and_match_the_kernels(bystander) -> None:
    # independently: the kernel's start ticks since boot, plus the boot time, in seconds
    ticks = int(_boot_ticks_record(bystander.pid).rsplit(":", 1)[1])
    with open("/proc/stat") as f:
        btime = next(int(line.split()[1]) for line in f if line.startswith("btime"))
    assert procs.start_time(bystander.pid) == pytest.approx(btime + ticks / os.sysconf("SC_CLK_TCK"), abs=0.02)
    assert procs.start_time(4_999_999) is None
    assert procs.identity()["pid_start"] == procs.start_time(os.getpid())


def test_a_zombie_is_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # exited, not reaped: a zombie
        with open(f"/proc/{proc.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.05)
    try:
        assert not procs.pid_alive(proc.pid)
    finally:
        proc.wait()
    assert procs.pid_alive(os.getpid())


def test_sweep_cancel_signals_only_the_recorded_sweep_process(bystander) -> None:
    from types import SimpleNamespace

    from fgbench.sweeps.local import LocalBackend

    forged = SimpleNamespace(tag="t", controller={"pid": bystander.pid, "host": socket.gethostname()})
    answer = LocalBackend().cancel(forged)
    time.sleep(0.2)
    assert "the sweep's process is unknown" in answer and bystander.poll() is None
    recorded = SimpleNamespace(tag="t", controller=procs.identity(bystander.pid))
    assert LocalBackend().cancel(recorded).startswith(f"asked the sweep process {bystander.pid} to stop")
    assert bystander.wait(timeout=60) == 7

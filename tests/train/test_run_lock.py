"""One process trains in a run directory at a time: the run lock, tested with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from fgbench.rundir import layout
from fgbench.rundir.lock import RunLock, holder

from .conftest import write_recipe
from .test_run import REPO, run_cli, run_subprocess, wait_for_event

HOLD = ("import sys, time; from fgbench.rundir.lock import RunLock; "
        "RunLock(sys.argv[1]).acquire(command='a test holder'); print('locked', flush=True); time.sleep(600)")


def _hold(run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_run_into_a_locked_directory_exits_2_naming_the_holder(tmp_path, tiny_folder, capsys) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    other = _hold(run_dir)
    try:
        recipe = write_recipe(tmp_path, tiny_folder)
        assert run_cli(str(recipe), "--run-dir", str(run_dir)) == 2
        err = capsys.readouterr().err.strip()
        assert f"pid {other.pid}" in err and "a test holder" in err and len(err.splitlines()) == 1
        assert sorted(p.name for p in run_dir.iterdir()) == [layout.LOCK_FILE]  # nothing of ours written
    finally:
        other.kill()
        other.wait()
    # the holder was killed: its lock went with it, and the directory can be trained in
    assert holder(run_dir) is None
    lock = RunLock(run_dir).acquire()
    lock.release()


def test_two_trainers_never_share_a_run_and_a_stale_lock_is_taken_over(tmp_path, tiny_folder) -> None:
    run_dir = tmp_path / "run"
    recipe = write_recipe(tmp_path, tiny_folder, schedule={"name": "cosine", "epochs": 200})
    first = run_subprocess(str(recipe), "--run-dir", str(run_dir), wait=False)
    try:
        wait_for_event(run_dir, lambda e: e["event"] == "checkpoint" and e["kind"] == "last", first)
        code, _, err = run_subprocess(str(recipe), "--run-dir", str(run_dir))
        assert code == 2 and f"in use by pid {first.pid}" in err, err
        code, _, err = run_subprocess("--resume", str(run_dir))
        assert code == 2 and f"in use by pid {first.pid}" in err, err
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    # the killed trainer's lock is stale: a resume takes it over and runs
    second = run_subprocess("--resume", str(run_dir), wait=False)
    try:
        wait_for_event(run_dir, lambda e: e["event"] == "run_started" and e.get("resumed"), second)
        h = holder(run_dir)
        assert h is not None and h["pid"] == second.pid
    finally:
        second.send_signal(signal.SIGINT)
        second.communicate(timeout=120)
    assert second.returncode == 130


def test_a_launched_run_stops_and_resumes_through_the_launcher(tmp_path, tiny_folder) -> None:
    """The TUI's and the sweeps' path with the real trainer: the resumed trainer must not take its
    own launch's supervisor for another trainer."""
    import time

    from fgbench.rundir.launcher import Launcher, stop
    from fgbench.rundir.reader import read_run

    recipe = write_recipe(tmp_path, tiny_folder, schedule={"name": "cosine", "epochs": 200}).read_text()
    launcher = Launcher(tmp_path / "runs")
    launcher.extra_env["PYTHONPATH"] = str(REPO)
    first = launcher.start(recipe, "tiny", args=["--progress", "none"])
    rd = layout.RunDir(first.run_dir)

    def wait(cond, what):
        end = time.monotonic() + 180
        while time.monotonic() < end:
            if cond():
                return
            assert first.process.poll() is None or what == "exit", (what, rd.console.read_text()[-2000:])
            time.sleep(0.1)
        raise AssertionError(what)

    wait(lambda: rd.last_ckpt.is_file(), "a checkpoint")
    assert read_run(rd.path).status == "running"
    assert stop(rd.path)
    assert first.wait(120) == 130
    assert read_run(rd.path).status == "interrupted"
    again = launcher.resume(rd.path, args=["--progress", "none"])
    end = time.monotonic() + 180
    while time.monotonic() < end and rd.metrics.read_text().count('"run_started"') < 2:
        assert again.process.poll() is None, rd.console.read_text()[-2000:]
        time.sleep(0.1)
    assert rd.metrics.read_text().count('"run_started"') == 2
    assert read_run(rd.path).status == "running"
    assert stop(rd.path)
    assert again.wait(120) == 130
    assert read_run(rd.path).status == "interrupted"

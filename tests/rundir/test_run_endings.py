"""Every way a run ends, launched for real (the fake trainer, through the one launcher), then read by
the CLI (``fgbench runs list --format json``), the TUI's run store, a sweep's point status and
``--resume``'s reader: all must say the same status. No torch: the fake trainer speaks the
trainer's process contract."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from fgbench.cli import main as cli_main
from fgbench.rundir import layout, procs
from fgbench.rundir.launcher import Launcher, stop
from fgbench.rundir.reader import read_run
from fgbench.sweeps import plan as P, state as S
from fgbench.runmodel import RunStore
from fakes.fake_trainer import fake_cmd

RECIPE = 'name = "endings"\n[data]\ndataset = "synthetic"\n[model]\narch = "resnet8"\n[schedule]\nepochs = 3\n'


def _launcher(root: Path, mode: str = "normal", **opts) -> Launcher:
    return Launcher(root, fake_cmd(mode, **opts))


def _wait(cond, what: str, timeout: float = 30.0, run_dir: Path | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}" + (_state(run_dir) if run_dir is not None else ""))


def _state(run_dir: Path) -> str:
    """What a run directory holds, for a timeout's message (one CI run once waited 30 s in vain for
    the fake trainer's first step, and did not say why)."""
    files = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else "no directory"
    parts = [f"; {run_dir} holds {files}"]
    for name in (layout.CONSOLE_FILE, layout.EXIT_FILE, layout.LAUNCH_FILE, layout.METRICS_FILE):
        p = run_dir / name
        if p.is_file():
            parts.append(f"\n--- {name}:\n{p.read_text(errors='replace')[-2000:]}")
    return "".join(parts)


def _events(run_dir: Path) -> list[str]:
    from fgbench.rundir.events import read_events

    return [e["event"] for e in read_events(layout.RunDir(run_dir).metrics)]


def _dead(run_dir: Path) -> bool:
    """The killed trainer has let go of its run: one reader, since readers asked one after the
    other while it dies can disagree (a full suite once had `runs list` say running and the next
    reader interrupted). ``_statuses`` then checks that they all agree."""
    return read_run(run_dir).status != "running"


def _statuses(root: Path) -> dict[str, tuple[str, str | None]]:
    """{run id: (status, error)} as each reader sees it; asserts they agree."""
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli_main(["runs", "list", "--runs-root", str(root), "--format", "json"]) == 0
    text = out.getvalue().strip()
    cli = {r["run"]: r["status"] for r in (json.loads(text) if text else [])}
    store = RunStore(root)
    store.refresh()
    tui = {r.run_id: (r.status, r.error) for r in store.rows()}
    direct = {p.name: (read_run(p).status, read_run(p).error) for p in layout.run_dirs(root)}
    swept = {p.name: S.point_status(P.Point(index=0, label=p.name, name=p.name, variant=None, overrides={},
                                                   run_dir=str(p)))
             for p in layout.run_dirs(root)}  # what a sweep's table and --status say of its point
    assert {k: v[0] for k, v in tui.items()} == cli == swept == {k: v[0] for k, v in direct.items()}, \
        (cli, tui, swept, direct)
    assert tui == direct
    return direct


def test_completed(tmp_path: Path) -> None:
    launched = _launcher(tmp_path, delay=0).start(RECIPE, "endings")
    assert launched.wait(60) == 0
    st = _statuses(tmp_path)
    assert st == {launched.run_dir.name: ("completed", None)}
    assert layout.read_json(layout.RunDir(launched.run_dir).exit)["code"] == 0


def test_rejected_input_before_the_start_leaves_nothing(tmp_path: Path) -> None:
    launched = _launcher(tmp_path, "reject").start(RECIPE, "endings")
    assert launched.wait(60) == 2
    assert not launched.run_dir.exists()
    assert "not downloaded" in (launched.rejection or "")
    assert _statuses(tmp_path) == {}
    assert list(tmp_path.iterdir()) == []


def test_an_exception_is_failed_with_its_error(tmp_path: Path) -> None:
    launched = _launcher(tmp_path, "crash").start(RECIPE, "endings")
    assert launched.wait(60) == 1
    (status, error), = _statuses(tmp_path).values()
    assert status == "failed" and "out of memory (fake)" in error


def test_a_crash_before_any_event_is_failed_with_its_exit_code(tmp_path: Path) -> None:
    launched = _launcher(tmp_path, "hardcrash").start(RECIPE, "endings")
    assert launched.wait(60) == 3
    (status, error), = _statuses(tmp_path).values()
    assert status == "failed" and "code 3" in error
    assert "ImportError" in layout.RunDir(launched.run_dir).console.read_text()
    # a failed launch is an ordinary run: listed everywhere (above) and deleted like any other
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli_main(["runs", "rm", "--runs-root", str(tmp_path), launched.run_dir.name, "--yes"]) == 0
    assert not launched.run_dir.exists() and _statuses(tmp_path) == {}


def test_sigint_through_the_launcher_is_interrupted_and_resumable(tmp_path: Path) -> None:
    launcher = _launcher(tmp_path, delay=0.05, epochs=50)
    launched = launcher.start(RECIPE, "endings")
    _wait(lambda: "step" in _events(launched.run_dir), "the first step", run_dir=launched.run_dir)
    assert _statuses(tmp_path)[launched.run_dir.name][0] == "running"
    assert stop(launched.run_dir)
    assert launched.wait(60) == 130
    assert _statuses(tmp_path) == {launched.run_dir.name: ("interrupted", None)}
    assert layout.RunDir(launched.run_dir).last_ckpt.is_file()
    again = launcher.resume(launched.run_dir)
    _wait(lambda: _events(launched.run_dir).count("run_started") == 2, "the resumed start")
    assert _statuses(tmp_path)[launched.run_dir.name][0] == "running"
    assert stop(launched.run_dir)
    assert again.wait(60) == 130


@pytest.mark.parametrize("after_checkpoint", [False, True])
def test_sigkill_of_the_whole_session_is_interrupted(tmp_path: Path, after_checkpoint: bool) -> None:
    """kill -9 of everything (a lost node): nothing can record how it ended."""
    launched = _launcher(tmp_path, delay=0.02, epochs=200, steps_per_epoch=3).start(RECIPE, "endings")
    wanted = "checkpoint" if after_checkpoint else "step"
    _wait(lambda: wanted in _events(launched.run_dir), wanted)
    os.killpg(launched.pid, signal.SIGKILL)  # the supervisor's session: supervisor and trainer
    launched.wait(60)
    _wait(lambda: layout.RunDir(launched.run_dir).lock.exists() and _dead(launched.run_dir), "the trainer to die")
    assert _statuses(tmp_path) == {launched.run_dir.name: ("interrupted", None)}
    assert layout.RunDir(launched.run_dir).last_ckpt.is_file() == after_checkpoint


def test_an_oom_style_sigkill_of_the_trainer_is_failed(tmp_path: Path) -> None:
    """The kernel kills only the trainer; the supervisor records it."""
    launched = _launcher(tmp_path, delay=0.05, epochs=50).start(RECIPE, "endings")
    _wait(lambda: "step" in _events(launched.run_dir), "the first step", run_dir=launched.run_dir)
    trainer = layout.read_json(layout.RunDir(launched.run_dir).launch)["trainer"]
    os.kill(trainer["pid"], signal.SIGKILL)
    assert launched.wait(60) == 137
    (status, error), = _statuses(tmp_path).values()
    assert status == "failed" and "SIGKILL" in error


def test_a_reused_pid_is_not_the_run(tmp_path: Path) -> None:
    """A run killed long ago whose recorded pid now belongs to another process (here: this test)."""
    launched = _launcher(tmp_path, delay=0.05, epochs=50).start(RECIPE, "endings")
    _wait(lambda: "step" in _events(launched.run_dir), "the first step", run_dir=launched.run_dir)
    os.killpg(launched.pid, signal.SIGKILL)
    launched.wait(60)
    rd = layout.RunDir(launched.run_dir)
    _wait(lambda: _dead(rd.path), "the trainer to die")
    # every pid the directory records now names a live process with another start time
    me = procs.identity()
    impostor = {**me, "pid_start": "other-boot:42"}
    launch = layout.read_json(rd.launch)
    launch["supervisor"] = launch["trainer"] = impostor
    layout.write_json(rd.launch, launch)
    layout.write_run_info(rd.path, pid=me["pid"], pid_start="other-boot:42")
    assert _statuses(tmp_path) == {rd.name: ("interrupted", None)}
    # without a lock file (a run from before locks) the recorded pids decide: still not running
    rd.lock.unlink()
    assert _statuses(tmp_path) == {rd.name: ("interrupted", None)}


def test_a_launch_file_being_rewritten_does_not_make_the_directory_taken(tmp_path: Path) -> None:
    # The supervisor rewrites launch.json (atomically, through a temporary file next to it) just
    # after starting the trainer, which meanwhile checks that the directory holds only launch
    # files: caught in that instant, the trainer refused its own directory (exit 2, directory
    # removed; seen twice in CI rehearsals, as a sweep point "failed" and a run that never started).
    rd = layout.RunDir(tmp_path / "run")
    rd.path.mkdir()
    for name in (layout.LOCK_FILE, layout.LAUNCH_FILE, layout.CONSOLE_FILE):
        (rd.path / name).write_text("{}")
    (rd.path / f".{layout.LAUNCH_FILE}.k2x9_q.tmp").write_text("{")
    assert rd.is_fresh()
    (rd.path / f".{layout.SUMMARY_FILE}.k2x9_q.tmp").write_text("{")  # a run's own file: not fresh
    assert not rd.is_fresh()
    assert not layout.is_launch_file(f"{layout.LAUNCH_FILE}.k2x9_q.tmp")
    assert not layout.is_launch_file(f".{layout.LAUNCH_FILE}.k2x9_q")

"""What a sweep refuses or never leaves behind: a missing dataset before the first point, a run
directory without its recipe after an interruption, a grid too large to expand, a second sweep
writer; and what its commands show: deleted runs, every point in the table, `--best -o -`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from fgbench import rundir
from fgbench.errors import UserError
from fgbench.sweeps import local, plan as P, state as S, tables
from fakes.fake_trainer import FAKE_TRAINER

FAKE = [sys.executable, str(FAKE_TRAINER)]
REPO = Path(__file__).resolve().parents[2]

BASE = """
name = "toy"
[optim]
name = "sgd"
lr = 0.01
[schedule]
name = "cosine"
epochs = 2
"""


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def make_state(tmp_path: Path, runs_root: Path, tag: str, n: int = 2, epochs: int = 2):
    lrs = ", ".join(str(0.01 * (i + 1)) for i in range(n))
    f = write(tmp_path, BASE.replace("epochs = 2", f"epochs = {epochs}") + f'[sweep]\ngrid = {{ "optim.lr" = [{lrs}] }}\n')
    return S.create_state(P.load_plan(f), tag, runs_root)


def wait_for(what: str, check, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"gave up waiting for {what}")


# ------------------------------------------------------------------------- before the first point


def test_a_missing_dataset_is_one_line_before_anything_is_written(cli, tmp_path: Path, runs_root: Path) -> None:
    f = write(tmp_path, BASE + '[data]\ndataset = "cub200"\n[sweep]\ngrid = { "optim.lr" = [0.1, 0.2] }\n')
    code, out, err = cli("sweep", f, "--tag", "nd", "--runs-root", runs_root)
    assert code == 2, out + err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "data.dataset: cub200 is not downloaded" in err and "run `fgbench data download cub200`" in err
    assert list(runs_root.iterdir()) == []  # no sweep state, no run directory


def test_continue_checks_the_datasets_of_the_points_left(cli, tmp_path: Path, runs_root: Path) -> None:
    f = write(tmp_path, BASE + '[data]\ndataset = "cub200"\n[sweep]\ngrid = { "optim.lr" = [0.1, 0.2] }\n')
    S.create_state(P.load_plan(f), "nc", runs_root)  # planned where the dataset was (a shared disk, say)
    code, out, err = cli("sweep", "--continue", "nc", "--runs-root", runs_root)
    assert code == 2 and len(err.strip().splitlines()) == 1, out + err
    assert err.startswith("sweep nc: data.dataset: cub200 is not downloaded")
    assert [p.name for p in runs_root.iterdir()] == ["sweeps"]


def test_a_sweep_stopped_while_its_trainer_starts_leaves_no_run_without_its_recipe(
        tmp_path: Path, runs_root: Path) -> None:
    """Ctrl-C while the trainer is still importing (it has written nothing): the directory the
    sweep made for it is removed, the point is interrupted and starts afresh on --continue."""
    slow = tmp_path / "slow_start.py"
    slow.write_text("import signal, sys, time\n"
                    "signal.signal(signal.SIGINT, lambda *a: sys.exit(130))\n"
                    "time.sleep(60)\n")
    state = make_state(tmp_path, runs_root, "ss")

    def interrupt() -> None:
        def launched():
            p = S.SweepState.load("ss", runs_root).points[0]
            return p.run_dir and (Path(p.run_dir) / rundir.LAUNCH_FILE).is_file()

        wait_for("the first point's launch", launched)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=interrupt)
    t.start()
    code = local.run_sweep(state, base_cmd=[sys.executable, str(slow)], poll_s=0.02, out=open(os.devnull, "w"))
    t.join()
    assert code == 130
    assert [p.name for p in runs_root.iterdir()] == ["sweeps"]  # no run directory without recipe.toml
    assert [p.status for p in state.points] == ["interrupted", "pending"] and state.points[0].run_dir is None
    assert local.run_sweep(state, base_cmd=FAKE, poll_s=0.02, out=open(os.devnull, "w")) == 0
    assert all((i.path / rundir.RECIPE_FILE).is_file() for i in rundir.list_runs(runs_root))
    assert len(rundir.list_runs(runs_root)) == 2


# ----------------------------------------------------------------------------- counted, not expanded


def _limited(argv: list[str], tmp_path: Path, timeout_s: float = 300) -> subprocess.CompletedProcess:
    """``fgbench ARGV`` in a process that may not take more than 3 GB of address space: a sweep
    that expanded 10^10 points would die of MemoryError, not answer."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "fgbench", *argv], capture_output=True, text=True, timeout=timeout_s,
                          env=env, preexec_fn=limit, cwd=tmp_path)


@pytest.mark.parametrize("command", [["recipe", "validate"], ["sweep", "--dry-run"]])
def test_a_huge_grid_is_counted_and_refused_not_expanded(command: list[str], tmp_path: Path) -> None:
    axes = ", ".join(f'"model.{k}" = [{", ".join(str(v) for v in range(10))}]' for k in
                     ("dropout", "stochastic_depth", "num_classes")) + ", " + ", ".join(
        f'"optim.{k}" = [{", ".join(str(0.001 * (v + 1)) for v in range(10))}]'
        for k in ("lr", "weight_decay", "momentum")) + ", " + ", ".join(
        f'"{k}" = [{", ".join(str(v + 1) for v in range(10))}]'
        for k in ("schedule.epochs", "data.batch_size", "runtime.seed", "data.workers"))
    f = write(tmp_path, BASE + f"[sweep]\ngrid = {{ {axes} }}\n")
    assert len(f.read_bytes()) < 1500
    argv = [command[0], *command[1:2]] if command[0] == "recipe" else ["sweep", str(f), "--dry-run"]
    if command[0] == "recipe":
        argv.append(str(f))
    r = _limited([*argv, "--runs-root", str(tmp_path / "runs")] if command[0] == "sweep" else argv, tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert "10,000,000,000 points, more than a sweep may have (10,000)" in r.stderr


# ------------------------------------------------------------- a sweep's own files, damaged


def _damage(path: Path, how: str) -> None:
    path.unlink()
    if how == "fifo":
        os.mkfifo(path)
    elif how == "dev_zero":
        path.symlink_to("/dev/zero")
    else:  # nested past every parser's limit (TOML or JSON alike)
        path.write_text(("a = " if path.suffix == ".toml" else "") + "[" * 20000 + "]" * 20000 + "\n")


@pytest.mark.parametrize("how", ["fifo", "dev_zero", "deep"])
@pytest.mark.parametrize("which, argv, code", [
    ("recipe", ["--continue", "dm"], 2),  # a pending point's recipe: its dataset is checked first
    ("recipe", ["--continue", "dm", "--seeds", "2"], 2),  # every group's seed is read
    ("recipe", ["--status", "dm"], 0),  # the point keeps its row, without its recipe
    ("state", ["--status", "dm"], 2),
    ("state", ["--continue", "dm"], 2),
    ("state", ["--cancel", "dm"], 2),
])
def test_a_damaged_sweep_file_is_one_line_not_a_hang(tmp_path: Path, runs_root: Path, how: str, which: str,
                                                     argv: list[str], code: int) -> None:
    """Sweep state files are read through the guarded readers: a point's recipe file (or
    ``sweep.json``) that is a FIFO hung ``sweep --continue`` forever, a link to /dev/zero ate the
    memory, and TOML nested 20,000 deep gave a RecursionError traceback."""
    state = make_state(tmp_path, runs_root, "dm")
    target = Path(state.points[0].recipe_file) if which == "recipe" else state.path
    _damage(target, how)
    r = _limited(["sweep", *argv, "--runs-root", str(runs_root)], tmp_path, timeout_s=120)  # a hang is forever
    assert r.returncode == code, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    if code == 2:
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        why = {"fifo": "is a FIFO (named pipe)", "dev_zero": "is a character device", "deep": "nested"}[how]
        assert target.name in r.stderr and why in r.stderr, r.stderr
        assert "no such sweep" not in r.stderr
    else:
        assert "lr=0.01" in r.stdout and "lr=0.02" in r.stdout


@pytest.mark.parametrize("how, kind", [("fifo", "a FIFO (named pipe)"), ("dev_zero", "a symbolic link"),
                                       ("directory", "a directory")])
def test_a_sweep_lock_that_is_not_a_file_is_one_line(tmp_path: Path, runs_root: Path, how: str, kind: str) -> None:
    """``writer.lock`` (and the SLURM jobs' ``sweep.lock``) is opened as a run's lock is: a FIFO
    gave "not seekable", a link to /dev/zero "Invalid argument" and a directory IsADirectoryError,
    each a traceback; ``sweep.lock`` as a FIFO blocked its opener forever."""
    import threading

    state = make_state(tmp_path, runs_root, "lk")
    for name in (S.WRITER_FILE, S.LOCK_FILE):
        target = state.dir / name
        if how == "fifo":
            os.mkfifo(target)
        elif how == "dev_zero":
            target.symlink_to("/dev/zero")
        else:
            target.mkdir()
    r = _limited(["sweep", "--continue", "lk", "--runs-root", str(runs_root)], tmp_path, timeout_s=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip() == f"{state.dir / S.WRITER_FILE}: cannot lock the sweep: is {kind}, not a regular file"
    assert [p.name for p in runs_root.iterdir()] == ["sweeps"]  # no point started

    errors: list[BaseException] = []

    def take() -> None:
        try:
            with S.locked(state.dir):
                pass
        except UserError as err:
            errors.append(err)

    t = threading.Thread(target=take, daemon=True)
    t.start()
    t.join(timeout=120)  # a hang guard, not a speed target
    if t.is_alive():
        os.close(os.open(state.dir / S.LOCK_FILE, os.O_RDONLY | os.O_NONBLOCK))
        pytest.fail("sweep.lock: opening it blocked")
    assert [str(e) for e in errors] == [f"{state.dir / S.LOCK_FILE}: cannot lock the sweep: is {kind}, not a regular file"]


@pytest.mark.parametrize("root_kind, why", [
    ("loop", "cannot read the runs directory: Too many levels of symbolic links"),
    ("file", "the runs directory exists and is not a directory"),
    ("dangling", "the runs directory is a broken symbolic link"),
])
@pytest.mark.parametrize("mode", ["new", "status", "continue"])
def test_a_runs_root_that_cannot_hold_a_sweep_is_one_line(tmp_path: Path, cli, root_kind: str, why: str,
                                                          mode: str) -> None:
    """``fgbench sweep RECIPE --runs-root LOOP`` gave a RuntimeError traceback (pathlib's resolve),
    and --status/--continue called the loop a missing or damaged sweep."""
    root = tmp_path / "root"
    if root_kind == "loop":
        root.symlink_to(root)
    elif root_kind == "file":
        root.write_text("not a directory")
    else:
        root.symlink_to(tmp_path / "nowhere")
    f = write(tmp_path, BASE + '[sweep]\ngrid = { "optim.lr" = [0.1, 0.2] }\n')
    argv = {"new": [f, "--tag", "rr"], "status": ["--status", "rr"], "continue": ["--continue", "rr"]}[mode]
    code, out, err = cli("sweep", *argv, "--runs-root", root)
    assert code == 2 and err.strip() == f"{root}: {why}", err
    assert not (tmp_path / "nowhere").exists()


def test_point_counts_before_expanding(tmp_path: Path) -> None:
    assert P.count_points(3, {"a": [1, 2], "b": [1, 2, 3]}, 5) == 90
    assert P.count_points(0, {}, 4) == 4 and P.count_points(2, {}, 0) == 2
    f = write(tmp_path, BASE + '[data]\nval_fraction = 0.2\n[sweep.search]\ntrials = 20000\n[sweep.search.params]\n'
                               '"optim.lr" = { type = "uniform", low = 0.1, high = 0.2 }\n')
    with pytest.raises(UserError, match="sweep.search.trials make 20,000 points"):
        P.load_plan(f)
    g = write(tmp_path, BASE + '[sweep]\ngrid = { "optim.lr" = [0.1, 0.2] }\n', "g.toml")
    with pytest.raises(UserError, match="the variants, grid values and seeds make 10,002 points"):
        P.load_plan(g, seeds=list(range(5001)))


def test_a_sweep_stopped_after_its_last_run_ended_says_it_completed(tmp_path: Path, runs_root: Path,
                                                                     capsys) -> None:
    """`sweep --cancel` that reaches the sweep as its last run completes: every point completed,
    yet the sweep exited 130 and printed "continue with: fgbench sweep --continue"."""
    import argparse

    from fgbench.cli import sweep as cli_sweep

    state = make_state(tmp_path, runs_root, "done", n=2)
    assert local.run_sweep(state, base_cmd=FAKE, poll_s=0.02, out=open(os.devnull, "w")) == 0
    capsys.readouterr()
    args = argparse.Namespace(format="markdown", baseline=None, runs_root=str(runs_root))
    assert cli_sweep._sweep_report(S.SweepState.load("done", runs_root), 130, args) == 0
    out = capsys.readouterr().out
    assert "sweep done: 2 completed" in out and "--continue" not in out


# ------------------------------------------------------------------------------------ one writer


SWEEP_DRIVER = """
import sys
sys.path.insert(0, {repo!r})
from fgbench.sweeps import local, state as S
state = S.SweepState.load({tag!r}, {root!r})
sys.exit(local.run_sweep(state, base_cmd={fake!r}, poll_s=0.02))
"""


def test_a_second_sweep_writer_is_refused_naming_the_first(tmp_path: Path, runs_root: Path, monkeypatch) -> None:
    """Two `fgbench sweep --continue TAG` at once: the second says who runs the sweep and exits
    2, instead of training every pending point a second time."""
    make_state(tmp_path, runs_root, "w2", n=2, epochs=40)
    driver = tmp_path / "driver.py"
    driver.write_text(SWEEP_DRIVER.format(repo=str(REPO), tag="w2", root=str(runs_root), fake=FAKE))
    proc = subprocess.Popen([sys.executable, str(driver)], env=dict(os.environ, FAKE_EPOCH_S="0.2"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def first_epoch():  # the first run trains (a SIGINT before would end it failed, not interrupted)
            p = S.SweepState.load("w2", runs_root).points[0]
            return p.run_dir and (Path(p.run_dir) / rundir.SUMMARY_FILE).is_file()

        wait_for("the first sweep's first epoch", first_epoch)
        with pytest.raises(UserError) as err:
            local.run_sweep(S.SweepState.load("w2", runs_root), base_cmd=FAKE, poll_s=0.02, out=open(os.devnull, "w"))
        assert f"another `fgbench sweep` (pid {proc.pid} on " in str(err.value)
        assert "fgbench sweep --cancel w2" in str(err.value)
        assert len([d for d in runs_root.iterdir() if d.name != "sweeps"]) == 1  # the second started nothing
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130
    # the lock went with its holder: continuing now works
    monkeypatch.setenv("FAKE_EPOCH_S", "0.01")
    assert local.run_sweep(S.SweepState.load("w2", runs_root), base_cmd=FAKE, poll_s=0.02,
                           out=open(os.devnull, "w")) == 0


# ---------------------------------------------------------------------------- what the commands show


def test_status_leaves_out_deleted_runs_and_the_table_shows_every_point(cli, tmp_path: Path, runs_root: Path) -> None:
    state = make_state(tmp_path, runs_root, "st", n=3)
    assert local.run_sweep(state, base_cmd=FAKE, poll_s=0.02, out=open(os.devnull, "w")) == 0
    gone = Path(str(state.points[1].run_dir))
    shutil.rmtree(gone)  # as `fgbench runs rm` does
    code, out, err = cli("sweep", "--status", "st", "--format", "json", "--runs-root", runs_root)
    assert code == 0, err
    assert str(gone) not in out and gone.name not in out
    row = [ln for ln in out.splitlines() if ln.split()[:2] == ["2", "lr=0.02"]]
    assert row and row[0].split()[2] == "pending", out
    columns, rows, _notes = tables.sweep_table(S.SweepState.load("st", runs_root))
    assert [(r["variant"], r["status"]) for r in rows] == [
        ("lr=0.01", "completed"), ("lr=0.02", "pending"), ("lr=0.03", "completed")]
    assert rows[1].get("test_top1_best") is None and rows[0]["test_top1_best"] == pytest.approx(69.0)
    # --continue runs the deleted point again, in a new directory
    assert local.run_sweep(S.SweepState.load("st", runs_root), base_cmd=FAKE, poll_s=0.02,
                           out=open(os.devnull, "w")) == 0
    assert [S.point_status(p) for p in S.SweepState.load("st", runs_root).points] == ["completed"] * 3


def test_best_to_standard_output(cli, tmp_path: Path, monkeypatch) -> None:
    from fakes.run_factory import make_run

    root = tmp_path / "runs"
    f = write(tmp_path, BASE + '[data]\nval_fraction = 0.2\n[sweep.search]\ntrials = 2\n[sweep.search.params]\n'
                               '"optim.lr" = { type = "uniform", low = 0.01, high = 0.2 }\n')
    state = S.create_state(P.load_plan(f), "bo", root)
    for p, (value, lr) in zip(state.points, [(50.0, 0.05), (70.0, 0.1)]):
        p.run_dir = str(make_run(root, f"bo-trial{p.index}", sets=[f"optim.lr={lr}"], val=[value] * 3,
                                 stamp=1_700_000_000.0 + p.index))
        p.trial, p.label, p.value, p.overrides = p.index, f"trial {p.index}", value, {"optim.lr": lr}
        p.recipe_file = str(Path(p.run_dir) / rundir.RECIPE_FILE)
    state.save()
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("sweep", "--best", "bo", "-o", "-", "--runs-root", root)
    assert code == 0, err
    assert out == tables.best_recipe_text(state)[0] and out.startswith("# The best trial of search bo: trial 1")
    assert "trial 1 of sweep bo (val_top1 = 70.00)" in err
    assert not (tmp_path / "-").exists()

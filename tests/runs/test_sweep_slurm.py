"""`fgbench sweep --launcher slurm` against a real SLURM: the one-node cluster on 127.0.0.1 that
`.ci/slurm-up` starts (as root: munged, slurmctld, slurmd). Without one the test skips and says
how to start it.

One sweep of three tiny CPU runs (at most two at once): the long one is requeued with
`scontrol requeue` after its first epoch and must resume from its checkpoint in the same run
directory; the third is cancelled while it waits; `--status` shows both sides; `--continue`
submits only the cancelled point; the ablation table ends with all three."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fgbench import rundir
from fgbench.sweeps import slurm, state as S, tables
from fgbench.rundir import events as metrics
from fakes.tiny_data import folder_recipe_head, make_images

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _cluster_reason() -> str | None:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM client on PATH; start a one-node cluster with `sudo .ci/slurm-up` (see README, Sweeps)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as err:
        return f"sinfo failed ({err}); start a one-node cluster with `sudo .ci/slurm-up`"
    if not any(s.startswith(("idle", "mix", "alloc", "comp")) for s in out.split()):
        return f"no SLURM node is up (sinfo: {out.strip() or 'nothing'}); start one with `sudo .ci/slurm-up`"
    return None


REASON = _cluster_reason()


def _wait(cond, what: str, limit_s: float = 300.0, every: float = 0.3):
    """Poll ``cond`` until it returns a true value (a hang guard, not a speed check)."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_slurm_sweep_requeue_cancel_continue(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_images(data, {"train": 12, "test": 8})
    root = tmp_path / "runs"
    recipe = tmp_path / "s.toml"
    recipe.write_text(folder_recipe_head(data, "sl") + textwrap.dedent("""
        [schedule]
        name = "cosine"
        epochs = 3
        [runtime]
        device = "cpu"
        [sweep]
        launcher = "slurm"
        [sweep.slurm]
        cpus_per_run = 1
        max_parallel = 2
        time_limit_min = 10
        [[sweep.variants]]
        name = "long"
        set = { "schedule.epochs" = 40 }
        [[sweep.variants]]
        name = "short"
        [[sweep.variants]]
        name = "later"
        set = { "optim.lr" = 0.05, "schedule.epochs" = 150 }
        """), encoding="utf-8")
    # "later" trains for about ten seconds once started, so that the `--cancel` below lands while its
    # resubmitted job is queued or running: with three epochs (well under a second) it once finished
    # first, and the `--continue` after the cancel rightly found nothing to submit
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")

    def fg(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "fgbench", *argv, "--runs-root", str(root)], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)

    sub = fg("sweep", str(recipe), "--tag", "sl")
    assert sub.returncode == 0, sub.stdout + sub.stderr
    assert "submitted 3 point(s) as SLURM job array" in sub.stdout
    state = S.SweepState.load("sl", root)
    jobs = [p.job_id for p in state.points]
    array = jobs[0].split("_")[0]
    assert jobs == [f"{array}_0", f"{array}_1", f"{array}_2"]

    # the third point waits behind the array's limit of 2: cancel it before it starts
    assert slurm.query([jobs[2]])[jobs[2]].state == "PENDING"
    cancelled = subprocess.run(["scancel", jobs[2]], capture_output=True, text=True)
    assert cancelled.returncode == 0, cancelled.stderr

    def long_dir_with_epoch():
        p = S.SweepState.load("sl", root).points[0]
        if p.run_dir and any(e["event"] == "epoch" for e in metrics.read_events(Path(p.run_dir) / metrics.METRICS_FILE)):
            return p.run_dir
        return None

    long_dir = Path(_wait(long_dir_with_epoch, "the long point's first epoch"))
    rq = subprocess.run(["scontrol", "requeue", jobs[0]], capture_output=True, text=True)
    assert rq.returncode == 0, rq.stderr

    def all_ended():
        rows = tables.status_rows(S.SweepState.load("sl", root))
        return rows if not any(r["active"] for r in rows) else None

    rows = _wait(all_ended, "every job to end")
    by_label = {r["label"]: r for r in rows}
    assert by_label["long"]["status"] == "completed"
    assert by_label["long"]["scheduler"] == "COMPLETED, requeued 1x"
    assert by_label["short"]["status"] == "completed" and by_label["short"]["scheduler"] == "COMPLETED"
    # SLURM forgets an array task cancelled before it started unless accounting (slurmdbd) is on
    assert by_label["later"]["status"] == "pending"
    assert by_label["later"]["scheduler"].startswith(("CANCELLED", "not queued (no scheduler record)"))

    # the requeued run resumed from its checkpoint in the same directory: two starts, each epoch once
    events = metrics.read_events(long_dir / metrics.METRICS_FILE)
    starts = [e for e in events if e["event"] == "run_started"]
    assert len(starts) == 2 and starts[1].get("resumed")
    finished = [e["status"] for e in events if e["event"] == "run_finished"]
    assert finished == ["interrupted", "completed"]
    assert sorted(e["epoch"] for e in events if e["event"] == "epoch") == list(range(1, 41))
    assert S.SweepState.load("sl", root).points[0].run_dir == str(long_dir)
    assert rundir.read_run(long_dir).summary.epochs_done == 40

    status = fg("sweep", "--status", "sl")
    assert status.returncode == 0, status.stderr
    lines = {ln.split()[1]: ln for ln in status.stdout.splitlines() if ln[:1].isdigit()}
    assert "completed" in lines["long"] and "COMPLETED, requeued 1x" in lines["long"]
    assert "pending" in lines["later"] and ("CANCELLED" in lines["later"] or "not queued" in lines["later"])

    cont = fg("sweep", "--continue", "sl")
    assert cont.returncode == 0, cont.stdout + cont.stderr
    assert "submitted 1 point(s)" in cont.stdout
    state = S.SweepState.load("sl", root)
    assert state.points[2].previous_job_ids == [jobs[2]] and state.points[2].job_id != jobs[2]
    assert [p.job_id for p in state.points[:2]] == jobs[:2]  # finished points are not resubmitted

    # `fgbench sweep --cancel` cancels what is left (the resubmitted point), and only that
    second = state.points[2].job_id
    cancel = fg("sweep", "--cancel", "sl")
    assert cancel.returncode == 0, cancel.stderr
    assert f"cancelled 1 SLURM job(s): {second}" in cancel.stdout
    _wait(all_ended, "the cancelled point")
    assert fg("sweep", "--cancel", "sl").stdout.startswith("sweep sl: no SLURM job of this sweep is queued or running")
    cont = fg("sweep", "--continue", "sl")
    assert cont.returncode == 0 and "submitted 1 point(s)" in cont.stdout, cont.stdout + cont.stderr
    assert S.SweepState.load("sl", root).points[2].previous_job_ids == [jobs[2], second]
    _wait(all_ended, "the continued point")
    final = fg("sweep", "--status", "sl")
    table = [ln for ln in final.stdout.splitlines() if ln.startswith("| ")]
    assert [ln.split("|")[1].strip() for ln in table[1:]] == ["long", "short", "later"]
    assert all(r["status"] == "completed" for r in tables.status_rows(S.SweepState.load("sl", root)))
    started = [p.run_dir for p in S.SweepState.load("sl", root).points]
    assert len(set(started)) == 3 and all(json.loads((Path(d) / "run.json").read_text())["sweep_tag"] == "sl"
                                           for d in started)

    # the TUI's Runs pane shows the SLURM state next to fgbench's status
    from fgbench.runmodel import RunStore
    from fgbench.tui.widgets.runs_pane import status_text

    store = RunStore(root)
    store.refresh()
    shown = {row.path.resolve(): status_text(row).plain for row in store.rows()}
    assert shown[long_dir.resolve()] == "completed · SLURM COMPLETED, requeued 1x"
    assert sorted(shown.values()).count("completed · SLURM COMPLETED") == 2


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_slurm_search_jobs_share_one_study(tmp_path: Path) -> None:
    """A search on SLURM: each array task asks the shared study (SQLite in the sweep folder) for
    its trial when it starts, runs it, and tells the study how it ended."""
    from fgbench.sweeps import search

    data = tmp_path / "data"
    make_images(data, {"train": 8, "test": 4})
    root = tmp_path / "runs"
    recipe = tmp_path / "s.toml"
    recipe.write_text(folder_recipe_head(data, "ss", workers=0) + textwrap.dedent("""
        [schedule]
        name = "cosine"
        epochs = 2
        [runtime]
        device = "cpu"
        [sweep.search]
        trials = 3
        sampler = "random"
        seed = 1
        pruner = "none"
        [sweep.search.params]
        "optim.lr" = { type = "log_uniform", low = 1e-3, high = 0.5 }
        """), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "fgbench", "sweep", str(recipe), "--launcher", "slurm", "--tag", "ss",
                          "--runs-root", str(root), "--cpus-per-run", "1", "--max-parallel", "2", "--wait"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    state = S.SweepState.load("ss", root)
    trials = search.trials_table(state.search)
    assert sorted(p.trial for p in state.points) == [0, 1, 2] == sorted(trials)
    for p in state.points:
        assert rundir.read_run(p.run_dir).status == "completed"
        assert trials[p.trial]["state"] == "COMPLETE" and trials[p.trial]["value"] == p.value
        assert trials[p.trial]["params"]["optim.lr"] == p.overrides["optim.lr"]
        assert rundir.read_run(p.run_dir).recipe["optim"]["lr"] == p.overrides["optim.lr"]
    assert len({p.overrides["optim.lr"] for p in state.points}) == 3
    # the table, best first
    rows = [ln for ln in res.stdout.splitlines() if ln.startswith("| trial ")]
    labels = [c for c in (ln.split("|")[1].strip() for ln in rows) if c != "trial"]  # not the header
    best_first = sorted(state.points, key=lambda p: -p.value)
    assert labels == [p.label for p in best_first]


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_slurm_time_limit_signal_checkpoints_then_requeues(tmp_path: Path) -> None:
    """The signal SLURM sends before a time limit (SIGUSR2, submitit's --signal): submitit asks
    PointJob.checkpoint, which stops the run with SIGINT (the run itself ignores SIGUSR2), then
    requeues the job; the requeued job resumes the run from last.pt."""
    data = tmp_path / "data"
    make_images(data, {"train": 8, "test": 4})
    root = tmp_path / "runs"
    recipe = tmp_path / "s.toml"
    recipe.write_text(folder_recipe_head(data, "tl", workers=0) + textwrap.dedent("""
        [schedule]
        name = "cosine"
        epochs = 30
        [runtime]
        device = "cpu"
        [sweep]
        grid = { "optim.lr" = [0.1] }
        """), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    sub = subprocess.run([sys.executable, "-m", "fgbench", "sweep", str(recipe), "--launcher", "slurm", "--tag", "tl",
                          "--runs-root", str(root), "--cpus-per-run", "1"], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert sub.returncode == 0, sub.stdout + sub.stderr
    job = S.SweepState.load("tl", root).points[0].job_id

    def run_dir_with_epoch():
        p = S.SweepState.load("tl", root).points[0]
        if p.run_dir and any(e["event"] == "epoch" for e in metrics.read_events(Path(p.run_dir) / metrics.METRICS_FILE)):
            return p.run_dir
        return None

    run_dir = Path(_wait(run_dir_with_epoch, "the first epoch"))
    sig = subprocess.run(["scancel", "--signal=USR2", job], capture_output=True, text=True)
    assert sig.returncode == 0, sig.stderr

    def ended():
        rows = tables.status_rows(S.SweepState.load("tl", root))
        return rows if not any(r["active"] for r in rows) else None

    (row,) = _wait(ended, "the job to end")
    assert row["status"] == "completed" and row["scheduler"] == "COMPLETED, requeued 1x"
    events = metrics.read_events(run_dir / metrics.METRICS_FILE)
    finished = [e for e in events if e["event"] == "run_finished"]
    assert [e["status"] for e in finished] == ["interrupted", "completed"]
    assert finished[0]["error"] == "stopped by SIGINT"  # PointJob.checkpoint's SIGINT, not SLURM's SIGTERM
    assert sorted(e["epoch"] for e in events if e["event"] == "epoch") == list(range(1, 31))

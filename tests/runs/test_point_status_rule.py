"""A sweep point's status: the one rule of fgbench.sweeps.state.point_status, a case per clause,
fed hand-made run directories and scheduler states (no trainer, no scheduler, no torch)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fgbench.sweeps import launch, plan as P, slurm, state as S
from fgbench.sweeps.backend import SchedulerState
from fakes.run_factory import make_run

QUEUED = SchedulerState("PENDING", "PENDING (Priority)", active=True)
RUNNING = SchedulerState("RUNNING", "RUNNING", active=True, running=True)
REQUEUED = SchedulerState("PENDING", "PENDING (BeginTime), requeued 1x", active=True)
DIED = SchedulerState("NODE_FAIL", "NODE_FAIL", active=False, died=True)
CANCELLED = SchedulerState("CANCELLED", "CANCELLED", active=False)
DONE = SchedulerState("COMPLETED", "COMPLETED", active=False)


def point(**kw) -> P.Point:
    return P.Point(index=0, label="lr=0.1", name="toy", variant=None, overrides={}, **kw)


# 1. a point with a run: the run directory's status, whatever the scheduler says


@pytest.mark.parametrize("sched", [None, QUEUED, RUNNING, REQUEUED, DIED, CANCELLED, DONE])
@pytest.mark.parametrize("status", ["completed", "failed", "interrupted"])
def test_a_point_with_a_run_has_its_run_directorys_status(runs_root: Path, status: str, sched) -> None:
    run = make_run(runs_root, status=status)
    assert S.point_status(point(run_dir=str(run), status="pending"), sched) == status


# 2. no run yet, the scheduler holds the job: pending (queued) or running (the trainer is starting)


@pytest.mark.parametrize("made_dir", [False, True])
def test_no_run_yet_and_a_job_the_scheduler_holds_is_pending_or_running(runs_root: Path, made_dir: bool) -> None:
    run_dir = runs_root / "20250101-000000-toy"
    if made_dir:
        run_dir.mkdir()  # the sweep made it, empty, before the trainer started: not a run yet
    p = point(run_dir=str(run_dir) if made_dir else None, status="failed")
    assert S.point_status(p, QUEUED) == "pending"
    assert S.point_status(p, REQUEUED) == "pending"
    assert S.point_status(p, RUNNING) == "running"


# 3. no run, the job died at the scheduler before its run directory was written: failed


def test_a_job_that_died_before_its_run_directory_was_written_is_failed(runs_root: Path) -> None:
    assert S.point_status(point(status="pending"), DIED) == "failed"
    empty = runs_root / "20250101-000000-toy"
    empty.mkdir()
    assert S.point_status(point(run_dir=str(empty), status="interrupted"), DIED) == "failed"
    # a person's scancel is not a death: the point keeps what the sweep recorded
    assert S.point_status(point(status="pending"), CANCELLED) == "pending"
    assert S.point_status(point(status="interrupted"), DONE) == "interrupted"


@pytest.mark.parametrize("state, died", [("FAILED", True), ("NODE_FAIL", True), ("OUT_OF_MEMORY", True),
                                         ("TIMEOUT", True), ("BOOT_FAIL", True), ("CANCELLED", False),
                                         ("COMPLETED", False), ("PENDING", False), ("RUNNING", False),
                                         ("?", False)])
def test_slurm_says_which_job_states_are_deaths(state: str, died: bool) -> None:
    said = slurm.JobState(state).scheduler_state()
    assert said.died is died
    assert said.active is (state in ("PENDING", "RUNNING"))


# 4. otherwise what the sweep recorded for a point without a run


@pytest.mark.parametrize("recorded, shown", [("pending", "pending"), ("failed", "failed"),
                                             ("interrupted", "interrupted"), ("running", "pending"),
                                             ("completed", "pending")])
def test_a_point_without_a_run_or_a_scheduler_word_keeps_what_was_recorded(recorded: str, shown: str) -> None:
    assert S.point_status(point(status=recorded)) == shown
    assert S.point_status(point(status=recorded), CANCELLED) == shown


def test_a_point_whose_run_directory_was_deleted_is_pending_again(runs_root: Path) -> None:
    gone = runs_root / "20250101-000000-toy"
    assert S.point_status(point(run_dir=str(gone), status="failed")) == "pending"


# how a trainer's end becomes the recorded status when nothing in its directory speaks for it


@pytest.mark.parametrize("code, recorded", [
    (2, "failed"),           # refused its input
    (0, "failed"),           # exited cleanly without starting the run
    (1, "failed"),
    (130, "interrupted"),    # Ctrl-C
    (143, "interrupted"),    # 128 + SIGTERM
    (-2, "interrupted"),     # killed by SIGINT
    (-15, "interrupted"),    # killed by SIGTERM
    (-9, "failed"),          # SIGKILL: the out-of-memory killer
])
def test_a_trainer_that_wrote_nothing_is_recorded_by_the_run_directorys_exit_rule(
        runs_root: Path, code: int, recorded: str) -> None:
    run_dir = runs_root / "20250101-000000-toy"
    run_dir.mkdir()  # as the sweep made it; the trainer wrote nothing into it (a SLURM node)
    p = point(run_dir=str(run_dir), status="running")
    state = S.SweepState(tag="t", source="s.toml", runs_root=str(runs_root), created=0.0, points=[p])
    launch.finish_point(state, p, code)
    assert (p.status, p.exit_code, p.run_dir) == (recorded, code, None)
    assert not run_dir.exists()  # no directory without a recipe stays behind
    assert S.point_status(p) == recorded


def test_the_status_table_and_continue_follow_the_rule(monkeypatch, tmp_path: Path, runs_root: Path) -> None:
    """`--status` rows and `--continue` read a point's status by the one rule: a run's status is
    never replaced by the scheduler's word (shown beside it), and a job that died before its run
    directory was written is a failed point, resubmitted only with --retry-failed."""
    from fgbench.sweeps import tables

    f = tmp_path / "s.toml"
    f.write_text('name = "toy"\n[sweep]\ngrid = { "optim.lr" = [0.1, 0.2, 0.3] }\n')
    state = S.create_state(P.load_plan(f), "rule", runs_root, launcher="slurm", slurm={"max_parallel": 2})
    state.points[0].run_dir = str(make_run(runs_root, status="interrupted"))
    for p, job in zip(state.points, ("5_0", "5_1", "5_2")):
        p.job_id = job
    state.save()
    # 5_0: its interrupted run's job is queued again (requeued); 5_1 died before writing its run
    # directory; 5_2 is running, its trainer still starting
    monkeypatch.setattr(slurm, "query", lambda ids, timeout_s=20.0: {
        "5_0": slurm.JobState("PENDING", "BeginTime", restarts=1), "5_1": slurm.JobState("NODE_FAIL"),
        "5_2": slurm.JobState("RUNNING")})
    rows = tables.status_rows(state)
    assert [(r["status"], r["scheduler"]) for r in rows] == [
        ("interrupted", "PENDING, requeued 1x (BeginTime)"), ("failed", "NODE_FAIL"), ("running", "RUNNING")]
    monkeypatch.setattr(slurm, "query", lambda ids, timeout_s=20.0: {j: slurm.JobState("NODE_FAIL") for j in ids})
    asked: list[list[int]] = []
    monkeypatch.setattr(slurm, "submit", lambda st, idx: asked.append(list(idx)) or [f"6_{i}" for i in idx])
    assert slurm.submit_points(state) == [0]  # the failed points wait for --retry-failed
    assert slurm.submit_points(state, retry_failed=True) == [0, 1, 2]  # 0: its run is still interrupted

"""The Backend protocol and its registry, and the SLURM backend's bookkeeping without a cluster:
a job's node side (PointJob) with the stand-in trainer, the scheduler's word in the status table,
submission and cancel with the scheduler's commands replaced. The real cluster is
test_sweep_slurm.py (it skips without one)."""

from __future__ import annotations

import sys
import textwrap
import typing
from pathlib import Path

import pytest

from fgbench import rundir
from fgbench.errors import UserError
from fgbench.recipe import SweepConfig
from fgbench.sweeps import backend, launch, plan as P, slurm, state as S, tables
from fakes.fake_trainer import FAKE_TRAINER

FAKE = [sys.executable, str(FAKE_TRAINER)]

BASE = """
name = "toy"
[optim]
name = "sgd"
lr = 0.01
[schedule]
name = "cosine"
epochs = 2
"""


def make_state(tmp_path: Path, runs_root: Path, grid: str = "0.01, 0.02", tag: str = "sb", launcher: str = "slurm"):
    f = tmp_path / "s.toml"
    f.write_text(textwrap.dedent(BASE) + f'[sweep]\ngrid = {{ "runtime.seed" = [0], "optim.lr" = [{grid}] }}\n')
    cfg = {"max_parallel": 2} if launcher == "slurm" else None
    return S.create_state(P.load_plan(f), tag, runs_root, launcher=launcher, slurm=cfg)


def test_the_registry_is_the_one_list_of_backends() -> None:
    # the schema's sweep.launcher choices and the registry name the same backends
    assert backend.names() == list(typing.get_args(SweepConfig.model_fields["launcher"].annotation))
    for name in backend.names():
        b = backend.get(name)
        assert b.name == name
        for method in ("unavailable", "configure", "submit", "poll", "cancel", "scheduler_states"):
            assert callable(getattr(b, method)), (name, method)
    with pytest.raises(UserError, match="launcher 'pbs': not one of local, slurm"):
        backend.get("pbs")


@pytest.fixture
def fake_node(monkeypatch: pytest.MonkeyPatch):
    """A SLURM array task's environment, its `fgbench run` the stand-in trainer."""
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    monkeypatch.setenv("SLURM_JOB_ID", "78")
    for var in ("SLURM_JOB_NUM_NODES", "SLURM_NNODES", "SLURM_NODEID", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(var, raising=False)
    real = launch.point_command
    monkeypatch.setattr(slurm, "point_command", lambda point, state, base_cmd, extra: real(point, state, FAKE, extra))


def test_a_job_runs_its_point_once_and_records_it(fake_node, tmp_path: Path, runs_root: Path) -> None:
    state = make_state(tmp_path, runs_root)
    job = slurm.PointJob(str(state.dir))
    assert job(0) == 0
    p = S.SweepState.load("sb", runs_root).points[0]
    assert (p.job_id, S.point_status(p), p.exit_code) == ("77_0", "completed", 0)
    info = rundir.read_run(str(p.run_dir))
    assert info.info["sweep_tag"] == "sb" and info.recipe["optim"]["lr"] == 0.01
    # a requeue or resubmission of a finished point runs nothing
    assert job(0) == 0
    assert len(rundir.list_runs(runs_root)) == 1


def test_a_job_whose_run_fails_raises_for_submitit(fake_node, tmp_path: Path, runs_root: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text(textwrap.dedent(BASE) + "[sweep]\nseeds = [13]\n")  # the stand-in fails seed 13
    state = S.create_state(P.load_plan(f), "sf", runs_root, launcher="slurm", slurm={"max_parallel": 1})
    with pytest.raises(RuntimeError, match=r"point 1 \(seed=13\) failed with exit code 1: see .*log.txt"):
        slurm.PointJob(str(state.dir))(0)
    assert S.point_status(S.SweepState.load("sf", runs_root).points[0]) == "failed"


def test_a_job_whose_trainer_refuses_leaves_no_directory(fake_node, monkeypatch, tmp_path: Path,
                                                        runs_root: Path) -> None:
    """No launcher's supervisor on a node: the sweep itself removes the directory the trainer
    never wrote into, and the exit code (2) makes the point failed, not interrupted."""
    real = launch.point_command
    reject = [sys.executable, str(FAKE_TRAINER), "--mode", "reject", "--"]
    monkeypatch.setattr(slurm, "point_command", lambda point, state, base_cmd, extra: real(point, state, reject, extra))
    state = make_state(tmp_path, runs_root)
    with pytest.raises(RuntimeError, match="failed with exit code 2"):
        slurm.PointJob(str(state.dir))(0)
    p = S.SweepState.load("sb", runs_root).points[0]
    assert (p.status, p.run_dir, p.exit_code) == ("failed", None, 2)
    assert [d.name for d in runs_root.iterdir()] == ["sweeps"]


def _states(table: dict[str, slurm.JobState]):
    def query(job_ids, timeout_s: float = 20.0):
        return {j: table.get(j, slurm.JobState("?")) for j in job_ids if j}
    return query


def test_submission_skips_what_is_finished_or_queued(monkeypatch, tmp_path: Path, runs_root: Path) -> None:
    state = make_state(tmp_path, runs_root, grid="0.01, 0.02, 0.03")
    asked: list[list[int]] = []

    def submit(st, indices):
        asked.append(list(indices))
        return [f"{90 + len(asked)}_{i}" for i in range(len(indices))]

    monkeypatch.setattr(slurm, "submit", submit)
    monkeypatch.setattr(slurm, "query", _states({}))
    b = backend.get("slurm")
    done = b.submit(state, backend.SubmitOptions())
    assert not done.finished and done.points == [0, 1, 2]
    assert done.message == "submitted 3 point(s) as SLURM job array 91 (at most 2 at once)"
    assert [p.job_id for p in S.SweepState.load("sb", runs_root).points] == ["91_0", "91_1", "91_2"]
    # 91_0 still queued, 91_1 running; 91_2 was cancelled before it started: only it is resubmitted
    monkeypatch.setattr(slurm, "query", _states({"91_0": slurm.JobState("PENDING", "Priority"),
                                                 "91_1": slurm.JobState("RUNNING")}))
    done = b.submit(state, backend.SubmitOptions(fresh=False))
    assert done.points == [2] and asked[-1] == [2]
    p = S.SweepState.load("sb", runs_root).points[2]
    assert (p.job_id, p.previous_job_ids) == ("92_0", ["91_2"])
    # what the status table says: the scheduler's words beside fgbench's status
    rows = tables.status_rows(state)
    assert [(r["status"], r["scheduler"], r["active"]) for r in rows] == [
        ("pending", "PENDING (Priority)", True), ("running", "RUNNING", True),
        ("pending", "not queued (no scheduler record)", False)]
    # cancel: scancel only the jobs that are queued or running
    cancelled: list[list[str]] = []
    monkeypatch.setattr(slurm, "cancel", lambda ids: cancelled.append(list(ids)))
    assert b.cancel(S.SweepState.load("sb", runs_root)) == "cancelled 2 SLURM job(s): 91_0, 91_1"
    assert cancelled == [["91_0", "91_1"]]


def test_a_failed_submission_of_a_new_sweep_leaves_nothing(monkeypatch, tmp_path: Path, runs_root: Path) -> None:
    state = make_state(tmp_path, runs_root)

    def refuse(st, indices):
        raise UserError("sweep sb: sbatch refused the job array: Invalid partition name specified")

    monkeypatch.setattr(slurm, "submit", refuse)
    monkeypatch.setattr(slurm, "query", _states({}))
    with pytest.raises(UserError, match="Invalid partition"):
        backend.get("slurm").submit(state, backend.SubmitOptions(fresh=True))
    assert not state.dir.exists()


def test_launcher_help_names_every_registered_backend(monkeypatch):
    # the registry is the one place a backend is described: --launcher's help is built from it
    assert backend.help_text() == ("local: on this machine (default); "
                                   "slurm: one job per point, as a job array through submitit")
    monkeypatch.setitem(backend.BACKENDS, "echo", ("fgbench.sweeps.local:LocalBackend", "a test backend"))
    assert backend.help_text().endswith("; echo: a test backend")

"""Sweep expansion, validation, state and scheduling (with a torch-free stand-in trainer; real
trainings are in test_real_runs.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fgbench import rundir
from fgbench.rundir import events as metrics
from fgbench.errors import UserError
from fgbench.recipe import RecipeError
from fgbench.sweeps import local, plan as P, state as S
from fakes.fake_trainer import FAKE_TRAINER

HERE = Path(__file__).resolve().parent
FAKE = [sys.executable, str(FAKE_TRAINER)]
REPO = HERE.parents[1]


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


BASE = """
name = "toy"
[optim]
name = "sgd"
lr = 0.01
momentum = 0.9
[schedule]
name = "cosine"
epochs = 3
"""


# --------------------------------------------------------------------------------- expansion


def test_grid_times_variants_in_order_with_labels(tmp_path: Path) -> None:
    f = write(tmp_path, BASE + """
    [sweep]
    grid = { "optim.weight_decay" = [0.0, 0.0005] }
    [[sweep.variants]]
    name = "B"
    [[sweep.variants]]
    name = "B+A"
    set = { optim = { name = "adam", lr = 1e-4 } }
    """)
    plan = P.load_plan(f)
    assert [p.label for p in plan.points] == [
        "B weight_decay=0", "B weight_decay=0.0005", "B+A weight_decay=0", "B+A weight_decay=0.0005"]
    assert [r.name for r in plan.recipes] == [
        "toy-B-weight_decay0", "toy-B-weight_decay0.0005", "toy-B+A-weight_decay0", "toy-B+A-weight_decay0.0005"]
    r = plan.recipes[3]
    assert (r.optim.name, r.optim.lr, r.optim.weight_decay) == ("adam", 1e-4, 0.0005)
    # sgd's momentum, written in the base, does not follow the switch to adam: it is dropped and said
    assert plan.points[2].notes == ["optim.name is now 'adam': dropped optim.momentum"]
    assert plan.points[0].notes == []
    assert all(rec.sweep is None for rec in plan.recipes)


def test_cli_grid_adds_axes_and_replaces_recipe_axes(tmp_path: Path) -> None:
    f = write(tmp_path, BASE + """
    [sweep]
    grid = { "optim.lr" = [0.1, 0.2, 0.3] }
    """)
    plan = P.load_plan(f, cli_grid=["optim.lr=0.5,0.05", "augment.hflip=true,false"])
    assert [(r.optim.lr, r.augment.hflip) for r in plan.recipes] == [
        (0.5, True), (0.5, False), (0.05, True), (0.05, False)]
    assert plan.points[0].label == "lr=0.5 hflip=true"


def test_grid_on_a_recipe_without_sweep_table_and_set_on_the_base(tmp_path: Path) -> None:
    f = write(tmp_path, BASE)
    plan = P.load_plan(f, overrides=["schedule.epochs=7"], cli_grid=["optim.name=sgd,adam"])
    assert [r.optim.name for r in plan.recipes] == ["sgd", "adam"]
    assert all(r.schedule.epochs == 7 for r in plan.recipes)


def test_only_selects_variants(tmp_path: Path) -> None:
    f = write(tmp_path, BASE + """
    [[sweep.variants]]
    name = "a"
    [[sweep.variants]]
    name = "b"
    set = { "optim.lr" = 0.5 }
    [[sweep.variants]]
    name = "c"
    """)
    assert [p.label for p in P.load_plan(f, only=["c", "b"]).points] == ["b", "c"]
    with pytest.raises(UserError, match=r"--only zz: no such sweep variant \(variants: a, b, c\)"):
        P.load_plan(f, only=["zz"])


def test_every_point_is_validated_before_anything_runs(tmp_path: Path) -> None:
    f = write(tmp_path, BASE + """
    [[sweep.variants]]
    name = "ok"
    [[sweep.variants]]
    name = "bad"
    set = { "optim.lr" = -1, "optim.momentom" = 0.5 }
    """)
    with pytest.raises(RecipeError) as err:
        P.load_plan(f)
    assert err.value.lines == [
        f"{f}: sweep.variants[1] (bad): optim.lr: Input should be greater than 0",
        f"{f}: sweep.variants[1] (bad): optim.momentom: Extra inputs are not permitted",
    ]


@pytest.mark.parametrize("table,message", [
    ('[sweep]\ngrid = { "optim.lr" = 0.1 }', "sweep.grid.optim.lr: expected a non-empty list of values"),
    ('[sweep]\ngrid = { "optim.lr" = [] }', "sweep.grid.optim.lr: expected a non-empty list of values"),
    ("[sweep]\n", "sweep.grid: a sweep needs sweep.grid, sweep.variants, sweep.seeds or sweep.search"),
    ('[[sweep.variants]]\nname = "a b"', "sweep.variants[0].name: String should match pattern"),
    ('[[sweep.variants]]\nname = "a"\n[[sweep.variants]]\nname = "a"', "sweep.variants[1].name: variant names must be unique: 'a'"),
    ('[[sweep.variants]]\nname = "a"\nsett = {}', "sweep.variants[0].sett: Extra inputs are not permitted"),
    ('[[sweep.variants]]\nname = "a"\nset = { "name" = "x" }', "sweep.variants[0].set.name: cannot be set by a variant"),
    ('[sweep]\ngrid = { "schedule.epochs.x" = [1] }', "schedule.epochs is not a table"),
])
def test_sweep_table_errors_name_file_and_path(tmp_path: Path, table: str, message: str) -> None:
    f = write(tmp_path, BASE + table)
    with pytest.raises((RecipeError, UserError)) as err:
        P.load_plan(f)
    text = str(err.value)
    assert text.startswith(f"{f}: ") and message in text, text
    assert "\n" not in text


def test_nothing_to_sweep(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nothing to sweep"):
        P.load_plan(write(tmp_path, BASE))


@pytest.mark.parametrize("arg,expected", [
    ("optim.lr=0.1,0.01", ("optim.lr", [0.1, 0.01])),
    ("optim.name=sgd,adam", ("optim.name", ["sgd", "adam"])),
    ("eval.final_test_sizes=[224,448],[448]", ("eval.final_test_sizes", [[224, 448], [448]])),
    ("augment.hflip=true,false", ("augment.hflip", [True, False])),
    ("model.arch=resnet18", ("model.arch", ["resnet18"])),
])
def test_parse_grid_arg(arg: str, expected) -> None:
    assert P.parse_grid_arg(arg) == expected


@pytest.mark.parametrize("arg", ["optim.lr", "optim.lr=", "=1,2", "optim..lr=1", "optim.name=a,,b"])
def test_parse_grid_arg_errors(arg: str) -> None:
    with pytest.raises(UserError, match="--grid"):
        P.parse_grid_arg(arg)


# ------------------------------------------------------------------------------------ state


def make_state(tmp_path: Path, runs_root: Path, extra: str = "", epochs: int = 3, n: int = 4, tag: str = "t1"):
    lrs = ", ".join(str(0.01 * (i + 1)) for i in range(n))
    f = write(tmp_path, BASE.replace("epochs = 3", f"epochs = {epochs}") + extra
              + f'\n[sweep]\ngrid = {{ "optim.lr" = [{lrs}] }}\n')
    plan = P.load_plan(f)
    return S.create_state(plan, tag, runs_root)


def test_state_file_round_trip_and_tag_reuse_refused(tmp_path: Path, runs_root: Path) -> None:
    state = make_state(tmp_path, runs_root)
    assert state.path == runs_root / "sweeps" / "t1" / "sweep.json"
    again = S.SweepState.load("t1", runs_root)
    assert [p.label for p in again.points] == ["lr=0.01", "lr=0.02", "lr=0.03", "lr=0.04"]
    assert all(Path(p.recipe_file).is_file() and p.status == "pending" for p in again.points)
    with pytest.raises(UserError, match="exists .*--continue t1"):
        make_state(tmp_path, runs_root)
    with pytest.raises(UserError, match="no such sweep"):
        S.SweepState.load("nope", runs_root)
    with pytest.raises(UserError, match="--tag"):
        S.check_tag("a/b")
    # the sweeps folder is not mistaken for a run
    assert rundir.list_runs(runs_root) == []


def test_run_sweep_sequential_tags_every_run(tmp_path: Path, runs_root: Path) -> None:
    state = make_state(tmp_path, runs_root)
    code = local.run_sweep(state, base_cmd=FAKE, poll_s=0.02, out=open(os.devnull, "w"))
    assert code == 0
    state = S.SweepState.load("t1", runs_root)
    assert [p.status for p in state.points] == ["completed"] * 4
    infos, labels = S.state_runs(state)
    assert labels == ["lr=0.01", "lr=0.02", "lr=0.03", "lr=0.04"]
    assert [i.info["sweep_tag"] for i in infos] == ["t1"] * 4
    assert [i.recipe["optim"]["lr"] for i in infos] == [0.01, 0.02, 0.03, 0.04]
    assert [i.status for i in infos] == ["completed"] * 4
    # nothing left to do: a second call returns at once
    assert local.run_sweep(state, base_cmd=FAKE, poll_s=0.02, out=open(os.devnull, "w")) == 0


def test_parallel_slots_get_their_own_gpu_and_log(tmp_path: Path, runs_root: Path) -> None:
    state = make_state(tmp_path, runs_root)
    code = local.run_sweep(state, slots=["0", "1"], base_cmd=FAKE, poll_s=0.02, out=open(os.devnull, "w"))
    assert code == 0
    infos, _ = S.state_runs(state)
    seen = [i.info["cuda_visible_devices"] for i in infos]
    assert sorted(seen) == ["0", "0", "1", "1"]
    # each run's console output is in its own directory (the rundir supervisor's console.txt)
    assert all((i.path / "console.txt").is_file() and (i.path / "exit.json").is_file() for i in infos) and len(infos) == 4


def test_failed_run_then_retry_failed_keeps_the_old_directory(tmp_path: Path, runs_root: Path) -> None:
    f = write(tmp_path, BASE + """
    [runtime]
    seed = 0
    [sweep]
    grid = { "runtime.seed" = [0, 13] }
    """)
    state = S.create_state(P.load_plan(f), "tf", runs_root)
    devnull = open(os.devnull, "w")
    assert local.run_sweep(state, base_cmd=FAKE, poll_s=0.02, out=devnull) == 1
    assert [p.status for p in state.points] == ["completed", "failed"]
    first_dir = state.points[1].run_dir
    assert rundir.read_run(first_dir).status == "failed"
    # continuing without --retry-failed leaves it failed
    assert local.run_sweep(state, base_cmd=FAKE, poll_s=0.02, out=devnull) == 1
    assert state.points[1].run_dir == first_dir
    assert local.run_sweep(state, base_cmd=FAKE, poll_s=0.02, out=devnull, retry_failed=True) == 1
    assert state.points[1].run_dir != first_dir
    assert state.points[1].previous_run_dirs == [first_dir]
    assert Path(first_dir).is_dir()  # nothing but `runs rm` deletes a run


def test_reconcile_after_a_killed_sweep(tmp_path: Path, runs_root: Path) -> None:
    state = make_state(tmp_path, runs_root, n=2)
    state.points[0].status = "running"  # the sweep died while this ran; its run dir was never filled
    state.points[0].run_dir = str(rundir.create_run_dir("x", runs_root))
    S.reconcile(state)
    assert state.points[0].status == "interrupted"


SWEEP_DRIVER = """
import sys
sys.path.insert(0, {repo!r})
from fgbench.sweeps import local, state as S
state = S.SweepState.load({tag!r}, {root!r})
sys.exit(local.run_sweep(state, base_cmd={fake!r}, poll_s=0.02))
"""


def test_interrupted_sweep_continues_where_it_stopped(tmp_path: Path, runs_root: Path, monkeypatch) -> None:
    """SIGINT to the sweep process: the running run checkpoints and stops, the sweep exits 130;
    continuing resumes that run from its checkpoint and runs the rest."""
    state = make_state(tmp_path, runs_root, epochs=20, n=4, tag="ti")
    driver = tmp_path / "driver.py"
    driver.write_text(SWEEP_DRIVER.format(repo=str(REPO), tag="ti", root=str(runs_root), fake=FAKE))
    # slow epochs while we interrupt (a wide window even on a loaded machine), fast ones after
    env = dict(os.environ, FAKE_EPOCH_S="0.1")
    proc = subprocess.Popen([sys.executable, str(driver)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the second run has finished an epoch
        st = json.loads(state.path.read_text())
        p = st["points"][1]
        if p["status"] == "running" and p["run_dir"] and Path(p["run_dir"], rundir.SUMMARY_FILE).exists():
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the second run never started")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "stopping" in out
    state = S.SweepState.load("ti", runs_root)
    assert [p.status for p in state.points] == ["completed", "interrupted", "pending", "pending"], out
    interrupted_dir = state.points[1].run_dir
    assert (Path(interrupted_dir) / "checkpoints" / "last.pt").is_file()
    assert rundir.read_run(interrupted_dir).status == "interrupted"

    monkeypatch.setenv("FAKE_EPOCH_S", "0.01")
    code = local.run_sweep(state, base_cmd=FAKE, poll_s=0.02, out=open(os.devnull, "w"))
    assert code == 0
    assert [p.status for p in state.points] == ["completed"] * 4
    assert state.points[1].run_dir == interrupted_dir  # resumed in place, not restarted
    events = metrics.read_events(Path(interrupted_dir) / metrics.METRICS_FILE)
    assert [e["resumed"] for e in events if e["event"] == "run_started"] == [False, True]
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == list(range(1, 21))


def test_detect_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    assert local.detect_gpus(None) == [None]
    assert local.detect_gpus("0,1") == ["0", "1"]
    assert local.detect_gpus("3,3") == ["3", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert local.detect_gpus("auto") == ["2", "5"]
    with pytest.raises(UserError, match="--gpus"):
        local.detect_gpus("0,,1")


# ------------------------------------------------------------------------------------- CLI


def test_cli_dry_run_prints_the_plan_and_starts_nothing(cli, runs_root: Path) -> None:
    code, out, err = cli("sweep", REPO / "recipes" / "sweep_hy_intel_tricks.toml", "--only", "B,B+A",
                         "--dry-run", "--runs-root", runs_root)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].endswith("sweep_hy_intel_tricks.toml: 2 run(s)")
    # B changes nothing but the seed's reference it carries (recipes/hy_intel_b.toml's [reference])
    assert lines[1].split()[:2] == ["1.", "B"] and "reference.rule=last_epoch" in lines[1]
    assert "optim.name=adam, optim.lr=0.0001" in lines[3]
    assert "note: optim.name is now 'adam': dropped optim.momentum, optim.nesterov" in out
    assert "(dry run: nothing started)" in out
    assert list(runs_root.iterdir()) == []


@pytest.mark.parametrize("argv,message", [
    (["sweep"], "fgbench sweep: give a RECIPE, or --continue / --status / --cancel / --best TAG"),
    (["sweep", "--continue", "nope"], "no such sweep"),
    (["sweep", "--continue", "x", "--grid", "optim.lr=1,2"], "--continue TAG takes no RECIPE"),
    (["sweep", "RECIPE", "--retry-failed"], "--retry-failed goes with --continue TAG"),
    (["sweep", "RECIPE", "--grid", "optim.lr"], "--grid optim.lr: expected KEY=V1,V2"),
    (["sweep", "RECIPE", "--grid", "optim.lr=-1,0.1"], "sweep.grid (lr=-1): optim.lr: Input should be greater than 0"),
    (["sweep", "RECIPE", "--grid", "optim.lr=0.1", "--tag", "a b"], "--tag 'a b': use letters"),
    (["sweep", "RECIPE", "--grid", "optim.lr=0.1", "--gpus", ","], "--gpus ,: expected auto or a list"),
    (["sweep", "missing.toml", "--grid", "optim.lr=0.1"], "missing.toml: file not found"),
])
def test_cli_errors_are_one_line_exit_2(cli, tmp_path: Path, runs_root: Path, argv, message) -> None:
    recipe = write(tmp_path, BASE)
    argv = [str(recipe) if a == "RECIPE" else a for a in argv]
    code, out, err = cli(*argv, "--runs-root", runs_root)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (runs_root / "sweeps").exists() or message == "no such sweep"


def test_cancel_of_a_local_sweep_stops_it_like_ctrl_c(tmp_path: Path, runs_root: Path, monkeypatch) -> None:
    """`fgbench sweep --cancel TAG` of a local sweep: SIGINT to the sweep process recorded in the
    state (here this test process), which stops its run with a checkpoint; --continue resumes."""
    import threading


    monkeypatch.setenv("FAKE_EPOCH_S", "0.3")
    state = make_state(tmp_path, runs_root, epochs=20, n=2, tag="lc")
    said: list[str] = []

    def cancel_when_running() -> None:
        for _ in range(400):
            s = S.SweepState.load("lc", runs_root)
            p = s.points[0]
            if s.controller and p.run_dir and any(
                    e["event"] == "epoch" for e in metrics.read_events(Path(p.run_dir) / metrics.METRICS_FILE)):
                said.append(local.LocalBackend().cancel(s))
                return
            time.sleep(0.05)

    t = threading.Thread(target=cancel_when_running)
    t.start()
    code = local.run_sweep(state, base_cmd=FAKE, poll_s=0.02, out=open(os.devnull, "w"))
    t.join()
    assert said and said[0].startswith(f"asked the sweep process {os.getpid()} to stop")
    assert code == 130 and [p.status for p in state.points] == ["interrupted", "pending"]
    assert S.SweepState.load("lc", runs_root).controller is None
    assert local.LocalBackend().cancel(S.SweepState.load("lc", runs_root)) == "the sweep is not running"
    monkeypatch.setenv("FAKE_EPOCH_S", "0.01")
    assert local.run_sweep(state, base_cmd=FAKE, poll_s=0.02, out=open(os.devnull, "w")) == 0
    assert [p.status for p in state.points] == ["completed", "completed"]


def test_slurm_settings_merge_and_bad_input_is_one_line(cli, tmp_path: Path, runs_root: Path, monkeypatch) -> None:
    from fgbench import paths

    paths.settings_file().parent.mkdir(parents=True, exist_ok=True)
    paths.settings_file().write_text('[slurm]\npartition = "gpu"\naccount = "lab"\nmax_parallel = 4\n'
                                     'sbatch = { constraint = "a100" }\n')
    f = write(tmp_path, BASE + """
    [sweep]
    grid = { "optim.lr" = [0.1, 0.2] }
    launcher = "slurm"
    [sweep.slurm]
    account = "mine"
    time_limit_min = 30
    sbatch = { exclude = "node7" }
    """)
    code, out, err = cli("sweep", f, "--max-parallel", "2", "--sbatch", "qos=high", "--dry-run", "--runs-root", runs_root)
    assert code == 0, err
    line = [ln for ln in out.splitlines() if ln.startswith("slurm: ")][0]
    assert "partition=gpu" in line and "account=mine" in line and "time_limit_min=30" in line
    assert "max_parallel=2" in line and "{'constraint': 'a100', 'exclude': 'node7', 'qos': 'high'}" in line
    # what submitit turns it into: the sbatch script's own lines
    import submitit.slurm.slurm as S

    from fgbench.sweeps import slurm

    plan = P.load_plan(f)
    cfg = slurm.resolve_slurm(plan.spec, {}, str(f))
    params = slurm.executor_parameters(cfg, "fgbench-t")
    params.pop("job_name")
    script = S._make_sbatch_string(command="true", folder=str(tmp_path / "j"), map_count=6, job_name="x", **params)
    for flag in ("--array=0-5%4", "--partition=gpu", "--account=mine", "--time=30", "--signal=USR2@120",
                 "--constraint=a100", "--exclude=node7", "--cpus-per-task=2", "--ntasks-per-node=1"):
        assert f"#SBATCH {flag}\n" in script, flag
    # no SLURM client: one line, exit 2, nothing written
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, out, err = cli("sweep", f, "--tag", "x", "--runs-root", runs_root)
    assert code == 2 and "sbatch" in err and "not found on PATH" in err and len(err.strip().splitlines()) == 1
    assert not (runs_root / "sweeps").exists()
    paths.settings_file().write_text('[slurm]\nmax_parallel = 0\n')
    code, out, err = cli("sweep", f, "--dry-run", "--runs-root", runs_root)
    assert code == 2 and f"{paths.settings_file()}: slurm.max_parallel" in err


def test_a_point_rejected_on_bad_input_is_failed_and_leaves_no_directory(tmp_path: Path, runs_root: Path) -> None:
    """Exit 2 (say, the dataset is not downloaded): the point is failed, never interrupted; the sweep
    does not ask for --continue; no empty run directory stays behind."""
    import io

    state = make_state(tmp_path, runs_root, n=2)
    out = io.StringIO()
    rejecting = [sys.executable, str(FAKE_TRAINER), "--mode", "reject", "--"]
    code = local.run_sweep(state, base_cmd=rejecting, poll_s=0.02, out=out)
    assert code == 1, out.getvalue()  # failed work, not 130 (interrupted)
    assert [p.status for p in state.points] == ["failed", "failed"]
    assert [p.exit_code for p in state.points] == [2, 2]
    assert rundir.list_runs(runs_root) == []
    assert not [p for p in runs_root.iterdir() if p.name != "sweeps"]
    assert "--continue" not in out.getvalue()

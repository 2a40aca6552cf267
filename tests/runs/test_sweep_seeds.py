"""Seeds as a sweep axis: `[sweep] seeds`, `--seeds`, one run directory per (point, seed), and
seeds added to a finished sweep (with the torch-free stand-in trainer)."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from fgbench import rundir
from fgbench.errors import UserError
from fgbench.recipe import RecipeError
from fgbench.sweeps import local, plan as P, state as S
from fgbench.tomlread import tomllib
from fakes.fake_trainer import FAKE_TRAINER

FAKE = [sys.executable, str(FAKE_TRAINER)]

BASE = """
name = "toy"
[optim]
name = "sgd"
lr = 0.01
momentum = 0.9
[schedule]
name = "cosine"
epochs = 2
"""


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def run_seeds(infos) -> list[int]:
    return [i.recipe["runtime"]["seed"] for i in infos]


def test_seeds_cross_every_variant_and_grid_point(tmp_path: Path) -> None:
    f = write(tmp_path, BASE + """
    [sweep]
    grid = { "optim.weight_decay" = [0.0, 0.0005] }
    seeds = [0, 1, 2]
    [[sweep.variants]]
    name = "B"
    [[sweep.variants]]
    name = "B+A"
    set = { optim = { name = "adam", lr = 1e-4 } }
    """)
    plan = P.load_plan(f)
    # 2 variants x 2 grid values x 3 seeds, each seed right after the other of its point
    assert len(plan.points) == 12
    assert [p.label for p in plan.points[:4]] == [
        "B weight_decay=0 seed=0", "B weight_decay=0 seed=1", "B weight_decay=0 seed=2", "B weight_decay=0.0005 seed=0"]
    assert [p.group_label for p in plan.points[:4]] == ["B weight_decay=0"] * 3 + ["B weight_decay=0.0005"]
    assert [r.runtime.seed for r in plan.recipes] == [0, 1, 2] * 4
    assert len({r.name for r in plan.recipes}) == 12 and plan.recipes[1].name == "toy-B-weight_decay0-seed1"
    # the runs of one group differ in runtime.seed and the name only
    a, b = (r.model_dump() for r in plan.recipes[9:11])
    for d in (a, b):
        d["runtime"].pop("seed")
        d.pop("name")
    assert a == b


def test_seeds_on_a_plain_recipe_and_from_the_command_line(tmp_path: Path) -> None:
    f = write(tmp_path, BASE)
    plan = P.load_plan(f, seeds=P.parse_seeds("3"))
    assert [p.label for p in plan.points] == ["seed=0", "seed=1", "seed=2"]
    assert [r.runtime.seed for r in plan.recipes] == [0, 1, 2]
    assert [r.name for r in plan.recipes] == ["toy-seed0", "toy-seed1", "toy-seed2"]
    # --seeds replaces the table's seeds
    g = write(tmp_path, BASE + "[sweep]\nseeds = [0, 1, 2, 3]\n", "g.toml")
    assert [r.runtime.seed for r in P.load_plan(g).recipes] == [0, 1, 2, 3]
    assert [r.runtime.seed for r in P.load_plan(g, seeds=[7, 5]).recipes] == [7, 5]


@pytest.mark.parametrize("text,expected", [("3", [0, 1, 2]), ("1", [0]), ("0,5", [0, 5]), ("4,", [4]),
                                           (" 2 , 9 ", [2, 9])])
def test_parse_seeds(text: str, expected: list[int]) -> None:
    assert P.parse_seeds(text) == expected


@pytest.mark.parametrize("text,message", [("0", "at least one seed"), ("a", "expected a number of seeds"),
                                          ("1,1", "seed 1 is given twice"), ("1,-2", "not between 0"),
                                          ("100000", "more than a sweep may have")])
def test_parse_seeds_errors(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        P.parse_seeds(text)


@pytest.mark.parametrize("table,message", [
    ("[sweep]\nseeds = [1, 1]", "sweep.seeds[1]: seeds must be unique: 1 is used twice"),
    ("[sweep]\nseeds = [-1]", "sweep.seeds[0]: a seed is between 0"),
    ("[sweep]\nseeds = []", "sweep.seeds: List should have at least 1 item"),
    ('[sweep]\nseeds = [0, 1]\ngrid = { "runtime.seed" = [3, 4] }', "sweep.grid.runtime.seed: the sweep has seeds"),
    ('[sweep]\nseeds = [0, 1]\n[[sweep.variants]]\nname = "a"\nset = { "runtime.seed" = 5 }',
     "sweep.variants[0].set.runtime.seed: the sweep has seeds"),
    ('[sweep]\nseeds = [0]\n[sweep.search]\n[sweep.search.params]\n"optim.lr" = { type = "uniform", low = 0.1, high = 0.2 }',
     "sweep.search cannot be combined with sweep.grid, sweep.variants or sweep.seeds"),
])
def test_seed_table_errors_name_file_and_path(tmp_path: Path, table: str, message: str) -> None:
    f = write(tmp_path, BASE + table)
    with pytest.raises((RecipeError, UserError)) as err:
        P.load_plan(f)
    text = str(err.value)
    assert text.startswith(f"{f}: ") and message in text, text


def test_each_point_and_seed_is_one_run_and_new_seeds_run_alone(tmp_path: Path, runs_root: Path) -> None:
    f = write(tmp_path, BASE + '[sweep]\ngrid = { "optim.lr" = [0.01, 0.02] }\nseeds = [0, 1]\n')
    state = S.create_state(P.load_plan(f), "sd", runs_root)
    devnull = open(os.devnull, "w")
    assert local.run_sweep(state, base_cmd=FAKE, poll_s=0.02, out=devnull) == 0
    infos, labels = S.state_runs(state)
    assert labels == ["lr=0.01", "lr=0.01", "lr=0.02", "lr=0.02"]  # a run's row label is its group's
    assert run_seeds(infos) == [0, 1, 0, 1] and [i.recipe["optim"]["lr"] for i in infos] == [0.01, 0.01, 0.02, 0.02]
    assert len({i.path for i in infos}) == 4 and all(i.status == "completed" for i in infos)
    first = {i.path: (i.path / rundir.METRICS_FILE).read_bytes() for i in infos}

    # seeds added to the finished sweep: only the new (point, seed) pairs run, in their groups
    again = S.SweepState.load("sd", runs_root)
    added = S.add_seeds(again, [0, 1, 2, 3])
    assert [p.label for p in added] == ["lr=0.01 seed=2", "lr=0.01 seed=3", "lr=0.02 seed=2", "lr=0.02 seed=3"]
    assert S.add_seeds(S.SweepState.load("sd", runs_root), [1, 2]) == []  # nothing new
    assert local.run_sweep(again, base_cmd=FAKE, poll_s=0.02, out=devnull) == 0
    infos, labels = S.state_runs(S.SweepState.load("sd", runs_root))
    assert len(infos) == 8 and len(rundir.list_runs(runs_root)) == 8
    assert run_seeds(infos[4:]) == [2, 3, 2, 3] and [i.recipe["optim"]["lr"] for i in infos[4:]] == [0.01, 0.01, 0.02, 0.02]
    assert all(i.status == "completed" for i in infos)
    assert {p: (p / rundir.METRICS_FILE).read_bytes() for p in first} == first  # the old runs untouched


def test_seeds_added_to_a_sweep_without_a_seed_axis_keep_its_seed(tmp_path: Path, runs_root: Path) -> None:
    """A sweep that ran its points once (with the recipe's runtime.seed, here 4) gets only the
    other seeds, and the new runs join the old one's group."""
    f = write(tmp_path, BASE + '[runtime]\nseed = 4\n[[sweep.variants]]\nname = "B"\n')
    state = S.create_state(P.load_plan(f), "ns", runs_root)
    added = S.add_seeds(state, [3, 4, 5])
    assert [(p.label, p.seed, p.group_label) for p in added] == [("B seed=3", 3, "B"), ("B seed=5", 5, "B")]
    recipe = tomllib.loads(Path(str(added[1].recipe_file)).read_text())
    assert recipe["runtime"]["seed"] == 5 and recipe["name"] == "toy-B-seed5"
    assert len(S.SweepState.load("ns", runs_root).points) == 3


def test_a_failed_seed_is_rerun_alone_with_retry_failed(tmp_path: Path, runs_root: Path) -> None:
    """Points of a seed axis are points: one failed seed (13 always fails in the stand-in) is
    rerun with --retry-failed, the others are not repeated."""
    f = write(tmp_path, BASE + "[sweep]\nseeds = [0, 13, 2]\n")
    state = S.create_state(P.load_plan(f), "cf", runs_root)
    devnull = open(os.devnull, "w")
    assert local.run_sweep(state, base_cmd=FAKE, poll_s=0.02, out=devnull) == 1
    done = {p.seed: p.run_dir for p in state.points if S.point_status(p) == "completed"}
    assert sorted(done) == [0, 2]
    assert local.run_sweep(state, base_cmd=FAKE, poll_s=0.02, out=devnull, retry_failed=True) == 1
    assert {p.seed: p.run_dir for p in state.points if S.point_status(p) == "completed"} == done


@pytest.fixture
def fake_sweeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """`fgbench sweep` in-process, its points run by the stand-in trainer."""
    real = local.run_sweep

    def run(state, **kw):
        return real(state, base_cmd=FAKE, poll_s=0.02, out=open(os.devnull, "w"), **kw)

    monkeypatch.setattr(local, "run_sweep", run)


def test_cli_seeds_then_continue_with_more_seeds(cli, fake_sweeps, tmp_path: Path, runs_root: Path) -> None:
    f = write(tmp_path, BASE)
    code, out, err = cli("sweep", f, "--seeds", "2", "--tag", "cs", "--runs-root", runs_root)
    assert code == 0, err
    assert "2 run(s)" in out and "seed=0" in out and "seed=1" in out
    assert sorted(run_seeds(rundir.list_runs(runs_root))) == [0, 1]
    code, out, err = cli("sweep", "--continue", "cs", "--seeds", "0,1,2,5", "--runs-root", runs_root)
    assert code == 0, err
    assert "added 2 point(s) for new seeds" in out
    assert sorted(run_seeds(rundir.list_runs(runs_root))) == [0, 1, 2, 5]
    code, out, err = cli("sweep", "--continue", "cs", "--seeds", "3", "--runs-root", runs_root)
    assert code == 0 and "every point has these seeds already" in out, err
    assert len(rundir.list_runs(runs_root)) == 4
    code, out, err = cli("sweep", f, "--seeds", "0", "--runs-root", runs_root)
    assert code == 2 and "--seeds 0: at least one seed" in err and len(err.strip().splitlines()) == 1


def test_the_end_of_sweep_table_shows_groups_of_seeds(cli, fake_sweeps, tmp_path: Path, runs_root: Path) -> None:
    """Two variants x three seeds: two rows of n = 3, the baseline row first, the other's
    difference to it. The stand-in trainer reaches test top-1 ``50 + 1000 * lr * epochs - 1``
    whatever the seed: 69 for lr 0.01 and 89 for lr 0.02 after two epochs."""
    from fgbench.sweeps import tables

    f = write(tmp_path, BASE + """
    [sweep]
    seeds = [0, 1, 2]
    [[sweep.variants]]
    name = "B"
    [[sweep.variants]]
    name = "B+lr"
    set = { "optim.lr" = 0.02 }
    """)
    code, out, err = cli("sweep", f, "--tag", "gr", "--runs-root", runs_root)
    assert code == 0, err
    assert "| n " in out and "Δ test top-1 @best" in out and "row - baseline (B)" in out
    columns, rows, notes = tables.sweep_table(S.SweepState.load("gr", runs_root))
    assert [(r["variant"], r["n"], r["seeds"]) for r in rows] == [("B", 3, "0,1,2"), ("B+lr", 3, "0,1,2")]
    assert rows[0]["test_top1_best"].mean == pytest.approx(69.0) and rows[0]["test_top1_best"].sd == 0
    assert rows[1]["test_top1_best"].mean == pytest.approx(89.0)
    assert rows[0]["diff:test_top1_best"] == "baseline"
    assert rows[1]["diff:test_top1_best"].diff == pytest.approx(20.0)
    # another baseline row, by its label; a label no row has is one line, and the table still prints
    _c, rows, _n = tables.sweep_table(S.SweepState.load("gr", runs_root), baseline="B+lr")
    assert rows[1]["diff:test_top1_best"] == "baseline" and rows[0]["diff:test_top1_best"].diff == pytest.approx(-20.0)
    code, out, err = cli("sweep", "--status", "gr", "--baseline", "nope", "--runs-root", runs_root)
    assert code == 0 and "--baseline nope: no row of the table match" in err and "| B+lr" in out


def test_a_grid_over_runtime_seed_is_the_seed_axis(tmp_path: Path) -> None:
    f = write(tmp_path, BASE + '[sweep]\ngrid = { "runtime.seed" = [3, 4], "optim.lr" = [0.1, 0.2] }\n')
    plan = P.load_plan(f)
    assert [(p.label, p.group_label, p.seed) for p in plan.points] == [
        ("lr=0.1 seed=3", "lr=0.1", 3), ("lr=0.1 seed=4", "lr=0.1", 4),
        ("lr=0.2 seed=3", "lr=0.2", 3), ("lr=0.2 seed=4", "lr=0.2", 4)]
    assert [r.runtime.seed for r in plan.recipes] == [3, 4, 3, 4]

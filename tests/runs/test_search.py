"""Searches (`[sweep.search]`, Optuna): validation of the table, the pruning reporter against a
real study in SQLite, and one real search of tiny runs where poor trials are pruned."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fgbench import rundir
from fgbench.sweeps import plan as P, search, state as S, tables
from fgbench.rundir import events as metrics
from fgbench.recipe import RecipeError, load_recipe
from fakes.tiny_data import folder_recipe_head

REPO = Path(__file__).resolve().parents[2]

BASE = """
name = "toy"
[data]
val_fraction = 0.2
[optim]
name = "sgd"
lr = 0.01
[schedule]
name = "cosine"
epochs = 3
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


@pytest.mark.parametrize("table, message", [
    ('"optim.lr" = { type = "log_uniform", low = 0, high = 0.1 }', "log_uniform needs low > 0"),
    ('"optim.lr" = { type = "choice" }', "type 'choice' needs a non-empty values list"),
    ('"optim.lr" = { type = "uniform", low = 0.5, high = 0.1 }', "low is greater than high"),
    ('"optim.lr" = { type = "normal", low = 0, high = 1 }', 'sweep.search.params."optim.lr".type'),
    ('"optim.lrr" = { type = "uniform", low = 0.1, high = 0.5 }', "optim.lrr"),
    ('"optim.lr" = { type = "uniform", low = -1.0, high = 0.5 }', "optim.lr"),
])
def test_search_table_errors_name_file_and_field(tmp_path: Path, table: str, message: str) -> None:
    f = write(tmp_path, BASE + "[sweep.search.params]\n" + table + "\n")
    with pytest.raises(RecipeError) as err:
        P.load_plan(f)
    text = "\n".join(err.value.lines)
    assert str(f) in text and message in text


def test_search_never_optimises_a_test_number(tmp_path: Path) -> None:
    f = write(tmp_path, BASE.replace("val_fraction = 0.2", "val_fraction = 0.0") + """
    [eval]
    select_on = "last"
    [sweep.search.params]
    "optim.lr" = { type = "log_uniform", low = 1e-4, high = 0.1 }
    """)
    with pytest.raises(RecipeError) as err:
        P.load_plan(f)
    assert "needs a validation split" in "\n".join(err.value.lines)
    f2 = write(tmp_path, BASE + '[sweep.search]\nmetric = "test_top1"\n[sweep.search.params]\n'
                                '"optim.lr" = { type = "uniform", low = 0.1, high = 0.2 }\n')
    with pytest.raises(RecipeError) as err2:
        P.load_plan(f2)
    assert "sweep.search.metric" in "\n".join(err2.value.lines)


def test_search_cannot_mix_with_a_grid(tmp_path: Path) -> None:
    f = write(tmp_path, BASE + """
    [sweep]
    grid = { "optim.weight_decay" = [0.0, 0.1] }
    [sweep.search.params]
    "optim.lr" = { type = "uniform", low = 0.1, high = 0.2 }
    """)
    with pytest.raises(RecipeError, match="cannot be combined"):
        P.load_plan(f)


def test_nested_param_tables_and_plan_text(tmp_path: Path) -> None:
    f = write(tmp_path, BASE + """
    [sweep.search]
    trials = 5
    [sweep.search.params.optim.lr]
    type = "log_uniform"
    low = 1e-4
    high = 0.1
    [sweep.search.params.data]
    train_size = { type = "choice", values = [16, 24] }
    """)
    plan = P.load_plan(f)
    assert list(plan.spec.search.params) == ["optim.lr", "data.train_size"]
    assert len(plan.points) == 5 and plan.recipes == []
    text = P.plan_text(plan)
    assert "a search of 5 trial(s), maximising val_top1" in text and "optim.lr: log_uniform 0.0001 .. 0.1" in text


def _spec(tmp_path: Path, **kw) -> dict:
    spec = {"params": {"optim.lr": {"type": "log_uniform", "low": 1e-4, "high": 0.1},
                       "data.train_size": {"type": "choice", "values": [[16, 16], 24]}},
            "metric": "val_top1", "sampler": "random", "seed": 0, "pruner": "median", "startup_trials": 1,
            "warmup_epochs": 0, "reduction_factor": 3, "storage": f"sqlite:///{tmp_path / 'o.db'}", "study": "s"}
    spec.update(kw)
    search.create(spec)
    return spec


class Stop:
    requested = False
    signal = None


def _eval(epoch: int, top1: float, split: str = "val", model: str = "raw") -> dict:
    return metrics.make_event("eval", epoch=epoch, step=epoch * 10, split=split, model=model, top1=top1)


def test_trial_reporter_prunes_below_the_median_from_val_events_only(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    n0, params = search.ask(spec)
    assert set(params) == {"optim.lr", "data.train_size"}
    assert params["data.train_size"] in ([16, 16], 24)  # a list choice comes back as the list
    r0 = search.TrialReporter(spec, n0, Stop())
    for epoch, v in enumerate([40.0, 60.0, 80.0], 1):
        r0(_eval(epoch, v))
    search.tell(spec, n0, "completed", 80.0)

    n1, _ = search.ask(spec)
    stop = Stop()
    r1 = search.TrialReporter(spec, n1, stop)
    r1(_eval(1, 50.0))  # above the first trial's 40 at epoch 1
    assert not stop.requested
    r1(_eval(2, 99.0, split="test"))  # a test number is never reported
    r1(_eval(2, 99.0, model="ema"))   # nor another model's
    assert not stop.requested
    r1(_eval(2, 30.0))  # below the median (60) of epoch 2
    assert stop.requested and stop.signal == "pruned"
    search.tell(spec, n1, "pruned", None)
    table = search.trials_table(spec)
    assert table[n0]["state"] == "COMPLETE" and table[n0]["value"] == 80.0
    assert table[n1]["state"] == "PRUNED"


def test_trial_value_is_the_best_val_top1_of_the_searched_model() -> None:
    events = [_eval(1, 50.0), _eval(2, 70.0), _eval(3, 65.0), _eval(2, 99.0, split="test"), _eval(2, 90.0, model="ema")]
    assert search.trial_value(events, "val_top1") == 70.0
    assert search.trial_value(events, "ema_val_top1") == 90.0
    assert search.trial_value([], "val_top1") is None


def test_best_needs_a_search_and_a_completed_trial(tmp_path: Path, cli) -> None:
    root = tmp_path / "runs"
    f = write(tmp_path, BASE + '[sweep.search]\ntrials = 2\n[sweep.search.params]\n'
                               '"optim.lr" = { type = "uniform", low = 0.1, high = 0.2 }\n')
    plan = P.load_plan(f)
    state = S.create_state(plan, "s1", root)
    assert (state.dir / "optuna.db").is_file() and (state.dir / "search.json").is_file()
    code, out, err = cli("sweep", "--best", "s1", "-o", str(tmp_path / "b.toml"), "--runs-root", str(root))
    assert code == 2 and "no trial has completed yet" in err and not (tmp_path / "b.toml").exists()


# ------------------------------------------------------------------------------- a real search

def _solid_colours(root: Path, per_class: dict[str, int]) -> None:
    """Three classes of nearly solid colour: a trained model separates them in an epoch or two, a
    model that does not learn (lr 1e-7) stays where its initial weights put it."""
    import random

    from PIL import Image

    rng = random.Random(0)
    for split, n in per_class.items():
        for name, rgb in {"red": (220, 30, 30), "green": (30, 220, 30), "blue": (30, 30, 220)}.items():
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                im = Image.new("RGB", (16, 16))
                im.putdata([tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in rgb) for _ in range(256)])
                im.save(d / f"{i}.png")


@pytest.mark.slow
def test_real_search_prunes_poor_trials_and_writes_the_best_recipe(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _solid_colours(data, {"train": 16, "test": 4})
    root = tmp_path / "runs"
    recipe = write(tmp_path, folder_recipe_head(data, "se") + textwrap.dedent("""
        [schedule]
        name = "cosine"
        epochs = 4
        [runtime]
        device = "cpu"
        [sweep.search]
        trials = 4
        sampler = "random"
        seed = 3
        pruner = "median"
        startup_trials = 1
        warmup_epochs = 0
        [sweep.search.params]
        "optim.lr" = { type = "choice", values = [0.1, 1e-7] }
        """))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "fgbench", "sweep", str(recipe), "--tag", "se", "--runs-root", str(root)],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    state = S.SweepState.load("se", root)
    statuses = [rundir.read_run(p.run_dir).status for p in state.points]
    assert set(statuses) <= {"completed", "pruned"} and "pruned" in statuses and "completed" in statuses
    trials = search.trials_table(state.search)
    for p, st in zip(state.points, statuses):
        assert trials[p.trial]["state"] == {"completed": "COMPLETE", "pruned": "PRUNED"}[st]
        assert trials[p.trial]["params"]["optim.lr"] == p.overrides["optim.lr"]
        ev = metrics.read_events(Path(p.run_dir) / metrics.METRICS_FILE)
        assert metrics.last_of(ev, "run_finished")["status"] == st
        if st == "pruned":  # stopped early, after the warm-up epoch
            assert rundir.read_run(p.run_dir).summary.status == "pruned"
            assert rundir.read_run(p.run_dir).summary.epochs_done < 4
        else:
            assert trials[p.trial]["value"] == search.trial_value(ev, "val_top1") == p.value
    # the table: trials by value, best first, pruned after the completed ones
    table = [ln for ln in res.stdout.splitlines() if ln.startswith("| trial")]
    order = [c for c in (ln.split("|")[1].strip() for ln in table) if c != "trial"]  # not the header
    done = sorted((p for p, st in zip(state.points, statuses) if st == "completed"), key=lambda p: -p.value)
    assert order[:len(done)] == [p.label for p in done]
    assert "pruned" in res.stdout.split("| trial", 1)[1]
    # the pruned ones show as such in `runs list`
    ls = subprocess.run([sys.executable, "-m", "fgbench", "runs", "list", "--status", "pruned", "--runs-root", str(root),
                         "--format", "json"], env=env, capture_output=True, text=True, timeout=120)
    assert ls.returncode == 0, ls.stderr
    assert ls.stdout.count('"pruned"') == statuses.count("pruned")
    # --best writes the best completed trial's recipe, which loads as an ordinary recipe
    out = tmp_path / "best.toml"
    best = subprocess.run([sys.executable, "-m", "fgbench", "sweep", "--best", "se", "-o", str(out), "--runs-root",
                           str(root)], env=env, capture_output=True, text=True, timeout=120)
    assert best.returncode == 0, best.stderr
    r = load_recipe(out)
    assert r.optim.lr == done[0].overrides["optim.lr"] and r.sweep is None
    assert f"val_top1 = {done[0].value:.2f}" in out.read_text()
    again = subprocess.run([sys.executable, "-m", "fgbench", "sweep", "--best", "se", "-o", str(out), "--runs-root",
                            str(root)], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_a_seeded_search_repeats_and_its_trials_differ(tmp_path: Path) -> None:
    """Every trial is asked by a fresh process (a sweep point or a SLURM job): a seed must give one
    sequence of values, not the same first value again and again."""
    params = {"optim.lr": {"type": "uniform", "low": 0.0, "high": 1.0}}

    def draws(db: str) -> list[float]:
        spec = _spec(tmp_path, params=params, storage=f"sqlite:///{tmp_path / db}")
        return [search.ask(spec)[1]["optim.lr"] for _ in range(4)]

    a, b = draws("a.db"), draws("b.db")
    assert a == b and len(set(a)) == 4


def test_the_table_of_a_search_lists_trials_by_value_best_first(tmp_path: Path) -> None:
    from fakes.run_factory import make_run

    root = tmp_path / "runs"
    f = write(tmp_path, BASE + '[sweep.search]\ntrials = 4\n[sweep.search.params]\n'
                               '"optim.lr" = { type = "uniform", low = 0.01, high = 0.2 }\n')
    state = S.create_state(P.load_plan(f), "tb", root)
    # trial order 0..3; values 50 (completed), 70 (completed), 90 (pruned: a pruned trial's value so
    # far never ranks it above a completed one), 60 (completed)
    plan = [("completed", 50.0, 0.05), ("completed", 70.0, 0.1), ("pruned", 90.0, 0.15), ("completed", 60.0, 0.02)]
    for p, (status, value, lr) in zip(state.points, plan):
        p.run_dir = str(make_run(root, f"tb-trial{p.index}", sets=[f"optim.lr={lr}"], status=status, val=[value] * 3,
                                 stamp=1_700_000_000.0 + p.index))
        p.trial, p.label, p.value, p.overrides, p.status = p.index, f"trial {p.index}", value, {"optim.lr": lr}, status
        p.recipe_file = str(Path(p.run_dir) / rundir.RECIPE_FILE)
    state.save()
    columns, rows = tables.ablation_table(state)
    assert [r["trial"] for r in rows] == ["trial 1", "trial 3", "trial 0", "trial 2"]
    assert [r["value"] for r in rows] == [70.0, 60.0, 50.0, 90.0]
    keys = [c[0] for c in columns]
    assert keys[:3] == ["trial", "value", "status"] and "recipe:optim.lr" in keys
    assert [r["recipe:optim.lr"] for r in rows] == [0.1, 0.02, 0.05, 0.15]
    text, best = tables.best_recipe_text(state)
    assert best.label == "trial 1" and "val_top1 = 70.00" in text  # the best *completed* trial


def test_successive_halving_prunes_the_worse_half_at_a_rung(tmp_path: Path) -> None:
    spec = _spec(tmp_path, pruner="successive_halving", warmup_epochs=1, reduction_factor=2)
    n0, _ = search.ask(spec)
    r0 = search.TrialReporter(spec, n0, Stop())
    r0(_eval(1, 80.0))
    search.tell(spec, n0, "completed", 80.0)
    n1, _ = search.ask(spec)
    good = Stop()
    search.TrialReporter(spec, n1, good)(_eval(1, 90.0))  # better than the rung's other trial: goes on
    assert not good.requested
    n2, _ = search.ask(spec)
    poor = Stop()
    search.TrialReporter(spec, n2, poor)(_eval(1, 10.0))  # in the worse half at the first rung
    assert poor.requested and poor.signal == "pruned"

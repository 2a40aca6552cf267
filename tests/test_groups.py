"""Group identity (fgbench.groups): runs whose resolved recipes differ only in the seed (and in
fields that do not change training) form one group; anything else never shares a group."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fgbench import groups
from fgbench.recipe import apply_overrides, recipe_to_dict, validate_recipe


def resolved(*sets: str, name: str = "toy") -> dict[str, Any]:
    return recipe_to_dict(validate_recipe(apply_overrides({"name": name}, list(sets))), full=True)


def run(recipe: dict[str, Any], label: str = "", damaged: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(recipe=recipe, damaged=damaged, run_id=label)


def test_seeds_of_one_recipe_are_one_group() -> None:
    runs = [run(resolved(f"runtime.seed={s}")) for s in (0, 1, 2)]
    (g,) = groups.group_runs(runs)
    assert g.runs == runs and g.seeds == [0, 1, 2]


def test_bookkeeping_fields_do_not_split_a_group() -> None:
    a = resolved("runtime.seed=0", "runtime.log_every_steps=5", name="a")
    b = resolved("runtime.seed=1", "description='other words'", "runtime.checkpoint_every_epochs=3", name="b")
    b["sweep"] = {"seeds": [0, 1]}
    b["tracking"] = {"tensorboard": {}}
    b["reference"] = {"source": "x"}
    assert len(groups.group_runs([run(a), run(b)])) == 1


def test_a_training_field_splits_the_group() -> None:
    for change in ("optim.lr=0.05", "data.batch_size=32", "data.workers=0", "ema.enabled=true",
                   "runtime.precision='bf16'", "data.val_seed=1", "eval.select_on='last'"):
        a, b = resolved(), resolved(change)
        assert len(groups.group_runs([run(a), run(b)])) == 2, change


def test_numbers_compare_by_value_and_missing_fields_differ() -> None:
    a = resolved()
    b = copy.deepcopy(a)
    b["optim"]["lr"] = int(a["optim"]["lr"]) if float(a["optim"]["lr"]).is_integer() else a["optim"]["lr"]
    b["schedule"]["epochs"] = float(a["schedule"]["epochs"])  # 10 and 10.0: the same value
    assert groups.identity(a) == groups.identity(b)
    c = copy.deepcopy(a)
    del c["data"]["crop_padding"]
    assert groups.identity(a) != groups.identity(c)


def test_unreadable_runs_are_groups_of_their_own() -> None:
    runs = [run({}), run({}), run(resolved(), damaged="summary.json: not JSON"), run(resolved())]
    assert [len(g) for g in groups.group_runs(runs)] == [1, 1, 1, 1]
    assert groups.seed_of({}) is None


def test_identity_is_stable_text() -> None:
    key = groups.identity(resolved())
    assert len(key) == 12 and int(key, 16) >= 0
    assert key == groups.identity(resolved("runtime.seed=7"))


CHOICES = {
    "runtime.seed": [0, 1, 2],
    "name": ["'a'", "'b'"],
    "optim.lr": [0.1, 0.05],
    "data.batch_size": [32, 64],
    "augment.hflip": ["true", "false"],
    "runtime.log_every_steps": [10, 20],
}


def _strip(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe without what identity ignores, written out here independently of fgbench."""
    r = copy.deepcopy(recipe)
    for top in ("name", "description", "sweep", "reference", "tracking"):
        r.pop(top, None)
    for key in ("seed", "log_every_steps", "checkpoint_every_epochs"):
        r["runtime"].pop(key, None)
    return r


@settings(max_examples=40, deadline=None)
@given(st.lists(st.fixed_dictionaries({k: st.sampled_from(v) for k, v in CHOICES.items()}), min_size=2, max_size=8))
def test_a_group_never_mixes_recipes_that_differ_beyond_the_seed(picks: list[dict[str, Any]]) -> None:
    runs = []
    for i, pick in enumerate(picks):
        sets = [f"{k}={v}" for k, v in pick.items() if k != "name"]
        runs.append(run(resolved(*sets, name=pick["name"].strip("'")), label=str(i)))
    found = groups.group_runs(runs)
    assert sorted(r.run_id for g in found for r in g.runs) == sorted(r.run_id for r in runs)
    for g in found:
        for r in g.runs:
            assert _strip(r.recipe) == _strip(g.first.recipe)
    for i, g in enumerate(found):
        for h in found[i + 1:]:
            assert _strip(g.first.recipe) != _strip(h.first.recipe)


# ------------------------------------------------------------------------------ the group's chart


def test_seed_curve_of_distinct_seeds_by_hand() -> None:
    a = (0, [1.0, 2.0, 3.0], [10.0, 20.0, 30.0])
    b = (1, [1.0, 2.0, 3.0], [14.0, 22.0, 36.0])
    c = (2, [1.0, 2.0], [12.0, 30.0])  # still running: it has not reached x = 3
    xs, mean, lo, hi = groups.seed_curve([b, c, a])  # the lowest member last: min is no accident of order
    assert xs == [1.0, 2.0, 3.0]
    assert mean == [pytest.approx(12.0), pytest.approx(24.0), pytest.approx(33.0)]
    assert lo == [10.0, 20.0, 30.0] and hi == [14.0, 30.0, 36.0]
    # a member logged at other xs reads as its last value at or before x
    xs, mean, _lo, _hi = groups.seed_curve([(0, [1.0, 3.0], [10.0, 30.0]), (1, [2.0, 3.0], [20.0, 40.0])])
    assert xs == [1.0, 2.0, 3.0] and mean == [10.0, 15.0, 35.0]


def test_seed_curve_counts_a_seed_run_twice_once() -> None:
    """Seeds 0, 0, 1 (the table's seeds column "0x2,1"). Seed 0's value is the mean of its two runs:
    (10+20)/2 = 15, (20+40)/2 = 30, (30+50)/2 = 40; seed 1 reads 40, 30, 60. The curve is the mean of
    the two seeds: 27.5, 30, 50 (over runs it was 23.3, 30, 46.7); the band spans the seeds: 15..40,
    30..30, 40..60 (over runs it was 10..40, 20..40, 30..60)."""
    runs = [(0, [1.0, 2.0, 3.0], [10.0, 20.0, 30.0]),
            (1, [1.0, 2.0, 3.0], [40.0, 30.0, 60.0]),
            (0, [1.0, 2.0, 3.0], [20.0, 40.0, 50.0])]
    xs, mean, lo, hi = groups.seed_curve(runs)
    assert xs == [1.0, 2.0, 3.0]
    assert mean == [pytest.approx(27.5), pytest.approx(30.0), pytest.approx(50.0)]
    assert lo == [15.0, 30.0, 40.0] and hi == [40.0, 30.0, 60.0]
    # the rerun that has not reached x = 3 yet: seed 0 is its other run there, 30
    xs, mean, lo, hi = groups.seed_curve([runs[0], runs[1], (0, [1.0, 2.0], [20.0, 40.0])])
    assert mean[2] == pytest.approx((30.0 + 60.0) / 2) and (lo[2], hi[2]) == (30.0, 60.0)
    # a run whose seed is unknown stands alone, as in the tables
    xs, mean, _lo, _hi = groups.seed_curve([(None, [1.0], [10.0]), (None, [1.0], [20.0]), (0, [1.0], [60.0])])
    assert mean == [pytest.approx(30.0)]

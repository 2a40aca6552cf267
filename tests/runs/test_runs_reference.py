"""The seeds' numbers as data: a recipe's ``[reference]`` is printed beside the run's own number
measured under the same rule (``runs show``, ``runs compare``), with the difference, and for a
group whether the seed's number lies inside its interval. Expected numbers are read off the
curves written here by hand."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest

from fakes.run_factory import make_run
from fgbench import report, rundir

REF = ["reference.source='a seed README, table 1, row X'"]
# raw val/test and EMA val/test per epoch; summary selects on val (make_run)
CURVES = dict(val=[50.0, 70.0, 60.0], test=[55.0, 52.0, 58.0], ema_val=[40.0, 45.0, 65.0], ema_test=[41.0, 50.0, 49.0])


def _run(root: Path, rule: str, *, stamp: float = 1.7e9, **numbers: float) -> Path:
    sets = REF + [f"reference.rule='{rule}'", "ema.enabled=true"] + [f"reference.{k}={v}" for k, v in numbers.items()]
    return make_run(root, "ref", sets=sets, final_sizes={"448": {"raw": 61.0, "ema": 62.0}}, stamp=stamp, **CURVES)


@pytest.mark.parametrize("rule,expected", [
    # the best test number of any epoch, raw and EMA apart
    ("max_over_test_epochs", {"raw": 58.0, "ema": 50.0, "val": None, "raw@448": None, "ema@448": None}),
    # after the last epoch
    ("last_epoch", {"raw": 58.0, "ema": 49.0, "val": 60.0, "raw@448": None, "ema@448": None}),
    # raw: best val 70 at epoch 2 -> test 52; EMA: best EMA val 65 at epoch 3 -> EMA test 49; the run
    # selected on val, so its final 448 numbers were measured under this rule
    ("best_val_epoch", {"raw": 52.0, "ema": 49.0, "val": 70.0, "raw@448": 61.0, "ema@448": 62.0}),
])
def test_numbers_under_each_rule(runs_root: Path, rule: str, expected: dict) -> None:
    run = rundir.read_run(_run(runs_root, rule, raw=50.0))
    assert report.numbers_under_rule(rule, run) == expected


def test_runs_show_prints_the_reference_beside_the_run(cli, runs_root: Path) -> None:
    _run(runs_root, "best_val_epoch", raw=53.5, ema=47.0, val=71.0)
    code, out, err = cli("runs", "show", "ref", "--runs-root", runs_root, "--no-plots", "--no-recipe")
    assert code == 0, err
    section = out.split("## reference", 1)[1].split("\n## ", 1)[0]
    assert "source: a seed README, table 1, row X" in section
    assert "rule:   best_val_epoch (the test accuracy at the epoch with the best validation accuracy)" in section
    lines = {ln.split()[0] + (" " + ln.split()[1] if ln.startswith("EMA") else ""): ln.split()[-3:]
             for ln in section.splitlines()[3:] if ln.strip()}
    assert lines["test"] == ["53.50", "52.00", "-1.50"]
    assert lines["EMA test"] == ["47.00", "49.00", "+2.00"]
    assert lines["val"] == ["71.00", "70.00", "-1.00"]


def test_a_size_not_measured_under_the_rule_says_so(cli, runs_root: Path) -> None:
    make_run(runs_root, "ref", sets=REF + ["reference.rule='max_over_test_epochs'",
                                           "reference.test_sizes.448.raw=60.0"],
             final_sizes={"448": {"raw": 61.0}})
    code, out, _err = cli("runs", "show", "ref", "--runs-root", runs_root, "--no-plots", "--no-recipe")
    assert code == 0
    assert "test @448  60.00         -  not measured under this rule (the run selected on val)" in out


def test_compare_puts_a_groups_interval_beside_the_seeds_number(cli, runs_root: Path) -> None:
    # three seeds, rule last_epoch: the runs end on test 57, 58, 59.5 (mean 58.1667)
    for seed, last in enumerate((57.0, 58.0, 59.5)):
        make_run(runs_root, "ref", sets=REF + [f"runtime.seed={seed}", "reference.rule='last_epoch'",
                                               "reference.raw=60.5"], test=[50.0, 52.0, last], stamp=1.7e9 + seed)
    make_run(runs_root, "solo", sets=REF + ["optim.lr=0.05", "reference.rule='last_epoch'", "reference.raw=56.0"],
             test=[50.0, 52.0, 55.25], stamp=1.7e9 + 10)
    code, out, _err = cli("runs", "compare", "*", "--runs-root", runs_root, "--format", "csv")
    assert code == 0
    rows = {r["run"]: r for r in csv.DictReader(io.StringIO(out))}
    group = rows["ref"]
    mean = (57.0 + 58.0 + 59.5) / 3
    sd = math.sqrt(((57 - mean) ** 2 + (58 - mean) ** 2 + (59.5 - mean) ** 2) / 2)
    half = 4.302653 * sd / math.sqrt(3)  # t(0.975, 2) from a printed table
    assert (mean - half, mean + half) == (pytest.approx(55.04, abs=0.01), pytest.approx(61.29, abs=0.01))
    assert float(group["reference"]) == 60.5 and group["reference_what"] == "test, last_epoch"
    assert float(group["reference_run"]) == pytest.approx(mean)
    assert float(group["reference_run_ci_high"]) == pytest.approx(mean + half, abs=1e-5)
    assert float(group["reference_diff"]) == pytest.approx(mean - 60.5)
    assert group["reference_inside"] == "yes"  # 60.5 < 61.29
    solo = next(r for k, r in rows.items() if k.endswith("-solo"))
    assert float(solo["reference_run"]) == 55.25 and float(solo["reference_diff"]) == pytest.approx(-0.75)
    assert solo["reference_inside"] == ""  # one run: no interval
    code, out, _err = cli("runs", "compare", "*", "--runs-root", runs_root)
    assert "same rule" in out and "Δ seed = same rule - seed" in out


def test_compare_without_references_has_no_reference_columns(cli, runs_root: Path) -> None:
    make_run(runs_root, "a", stamp=1.7e9)
    make_run(runs_root, "b", sets=["optim.lr=0.05"], stamp=1.7e9 + 1)
    code, out, _err = cli("runs", "compare", "*", "--runs-root", runs_root)
    assert code == 0 and "seed" not in out


@pytest.mark.parametrize("body,message", [
    ('[reference]\nsource = "x"\nrule = "best_epoch"\nraw = 1.0\n',
     "reference.rule: Input should be 'max_over_test_epochs', 'last_epoch' or 'best_val_epoch'"),
    ('[reference]\nsource = "x"\nrule = "last_epoch"\n', "reference.raw: a reference needs a number: raw, ema or test_sizes"),
    ('[reference]\nsource = "x"\nrule = "last_epoch"\n[reference.test_sizes.big]\nraw = 1.0\n',
     "reference.test_sizes.big: a test size is a number of pixels between 8 and 2048"),
    ('[reference]\nsource = "x"\nrule = "last_epoch"\nraw = 101.0\n', "reference.raw: Input should be less than or equal to 100"),
])
def test_a_bad_reference_is_one_line_naming_the_field(cli, tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "r.toml"
    path.write_text('name = "r"\n' + body)
    code, out, err = cli("recipe", "validate", path)
    assert code == 2 and "Traceback" not in err
    assert err.strip().startswith(f"{path}: {message}"), err


def test_the_reference_never_splits_a_group() -> None:
    from fgbench import groups
    from fgbench.recipe import apply_overrides, recipe_to_dict, validate_recipe

    a = recipe_to_dict(validate_recipe(apply_overrides({"name": "a"}, ["reference.source='x'", "reference.rule='last_epoch'",
                                                                        "reference.raw=50.0"])))
    b = recipe_to_dict(validate_recipe({"name": "a"}))
    assert groups.identity(a) == groups.identity(b)


def test_a_hostile_source_never_writes_an_escape_sequence(cli, runs_root: Path) -> None:
    make_run(runs_root, "ref", sets=['reference.source="row \\u001b[31mred"', "reference.rule='last_epoch'",
                                     "reference.raw=50.0"])
    code, out, _err = cli("runs", "show", "ref", "--runs-root", runs_root, "--no-plots", "--no-recipe")
    assert code == 0 and "\x1b" not in out and "source: row " in out

"""`fgbench runs compare` with groups: runs that differ only in the seed are one row with n, mean,
t interval, sd, min-max, and each row's difference to the baseline. Expected numbers are worked
out here by hand (t quantiles from a printed table)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from fakes.run_factory import make_run

T975_2 = 4.302653  # t(0.975, 2 degrees of freedom), printed table


def _seeds(root: Path, name: str, tests: list[float], *sets: str, stamp: float, reverse: bool = False) -> None:
    """Seeds 0, 1, 2 of one recipe (started in reverse order with ``reverse``)."""
    for s, t in enumerate(tests):
        make_run(root, name, sets=[f"runtime.seed={s}", *sets], test=[50.0, 60.0, t],
                 stamp=stamp + (len(tests) - s if reverse else s))


@pytest.fixture
def groups3(runs_root: Path) -> Path:
    _seeds(runs_root, "base", [70.0, 71.0, 72.5], stamp=1.7e9)
    # started seed 2 first: the groups' first runs differ in the seed, which is still no column
    _seeds(runs_root, "lr", [71.0, 72.5, 73.0], "optim.lr=0.05", stamp=1.7e9 + 10, reverse=True)
    return runs_root


def test_a_group_is_one_row_with_hand_checked_numbers(cli, groups3: Path) -> None:
    code, out, err = cli("runs", "compare", "*", "--runs-root", groups3)
    assert code == 0, err
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(table) == 3  # header and two groups, not six runs
    # base: mean 71.1667, deviations -1.1667, -0.1667, 1.3333, sum of squares 3.1667 / 2 -> sd 1.2583
    sd = math.sqrt(3.1666667 / 2)
    half = T975_2 * sd / math.sqrt(3)
    assert f"{71.1667 - half:.2f}" == "68.04" and f"{71.1667 + half:.2f}" == "74.29"
    base = next(line for line in table if line.startswith("| base "))
    assert "| 3 | 0,1,2 |" in base and "| 3 | 2,1,0 |" in table[2]
    assert "71.17 [68.04, 74.29] sd 1.26, 70.00-72.50" in base
    # lr - base per seed: +1.0, +1.5, +0.5 -> mean 1, sd 0.5, half 4.302653 * 0.5 / sqrt(3) = 1.2421
    lr = next(line for line in table if line.startswith("| lr "))
    assert "+1.00 [-0.24, +2.24] within noise" in lr and "baseline" in base
    assert "0.05" in lr and "runtime.seed" not in out
    assert "paired by seed" in out and "one comparison: not adjusted" in out
    assert "95 % t interval of the mean" in out


def test_holm_is_named_with_more_than_one_comparison(cli, groups3: Path) -> None:
    _seeds(groups3, "wd", [75.0, 76.1, 77.4], "optim.weight_decay=0.001", stamp=1.7e9 + 20)
    code, out, err = cli("runs", "compare", "*", "--runs-root", groups3)
    assert code == 0, err
    assert "Holm-adjusted across 2 comparisons" in out
    # wd - base: +5.0, +5.1, +4.9 (the smaller p, tested first at 0.05/2 -> a 97.5 % interval)
    wd = next(line for line in out.splitlines() if line.startswith("| wd "))
    assert "at 97.5 %" in wd and wd.rstrip(" |").split("|")[-3].strip().endswith("resolved")
    assert "+5.00 [" in wd


def test_baseline_option_and_its_error(cli, groups3: Path) -> None:
    code, out, _err = cli("runs", "compare", "*", "--runs-root", groups3, "--baseline", "lr")
    assert code == 0
    base = next(line for line in out.splitlines() if line.startswith("| base "))
    assert "-1.00 [-2.24, +0.24] within noise" in base
    assert "row - baseline (lr)" in out
    code, out, err = cli("runs", "compare", "*", "--runs-root", groups3, "--baseline", "nosuch")
    assert code == 2 and out == ""
    assert err.strip() == "--baseline nosuch: no row of the table match; give a row label, a run or a recipe name"


def test_csv_and_json_spread_a_group_over_columns(cli, groups3: Path) -> None:
    code, out, _err = cli("runs", "compare", "*", "--runs-root", groups3, "--format", "csv")
    assert code == 0
    rows = {r["run"]: r for r in csv.DictReader(io.StringIO(out))}
    base, lr = rows["base"], rows["lr"]
    assert base["test_top1_best_n"] == "3" and base["seeds"] == "0,1,2"
    assert float(base["test_top1_best"]) == pytest.approx((70 + 71 + 72.5) / 3)
    assert float(base["test_top1_best_sd"]) == pytest.approx(math.sqrt(3.1666667 / 2), abs=1e-6)
    assert float(base["test_top1_best_min"]) == 70.0 and float(base["test_top1_best_max"]) == 72.5
    assert float(lr["diff_test_top1_best"]) == pytest.approx(1.0)
    assert float(lr["diff_test_top1_best_ci_high"]) == pytest.approx(1 + T975_2 * 0.5 / math.sqrt(3), abs=1e-5)
    assert lr["diff_test_top1_best_method"] == "paired" and lr["diff_test_top1_best_verdict"] == "within noise"
    assert base["diff_test_top1_best_verdict"] == "baseline"
    code, out, _err = cli("runs", "compare", "*", "--runs-root", groups3, "--format", "json")
    data = {r["run"]: r for r in json.loads(out)}
    assert data["lr"]["test_top1_best_ci_low"] == pytest.approx(float(rows["lr"]["test_top1_best_ci_low"]))
    assert data["lr"]["diff_test_top1_best_confidence"] == pytest.approx(0.95)


def test_a_failed_seed_is_not_averaged_in(cli, groups3: Path) -> None:
    make_run(groups3, "base", sets=["runtime.seed=3"], test=[1.0, 2.0, 3.0], status="failed", stamp=1.7e9 + 5)
    code, out, _err = cli("runs", "compare", "*", "--runs-root", groups3)
    base = next(line for line in out.splitlines() if line.startswith("| base "))
    assert "3/4 completed" in base and "| 3 | 0,1,2 |" in base and "71.17 [68.04, 74.29]" in base


def test_single_runs_still_read_as_before(cli, runs_root: Path) -> None:
    make_run(runs_root, "a", stamp=1.7e9)
    make_run(runs_root, "b", sets=["optim.lr=0.05"], stamp=1.7e9 + 1)
    code, out, _err = cli("runs", "compare", "*", "--runs-root", runs_root)
    assert code == 0
    header = out.splitlines()[0]
    assert "| n |" not in header and "Δ" not in out and "interval" not in out


def test_export_names_each_runs_group_and_seed(cli, groups3: Path, tmp_path: Path) -> None:
    out_csv = tmp_path / "all.csv"
    code, _out, err = cli("runs", "export", "*", "--runs-root", groups3, "--format", "csv", "-o", out_csv)
    assert code == 0, err
    rows = list(csv.DictReader(out_csv.open()))
    by_run = {r["run"]: (r["name"], r["group"], r["seed"]) for r in rows}
    assert len(by_run) == 6
    keys = {name: {g for n, g, _s in by_run.values() if n == name} for name in ("base", "lr")}
    assert all(len(k) == 1 for k in keys.values()) and keys["base"] != keys["lr"]  # one key per group
    assert sorted(s for n, _g, s in by_run.values() if n == "base") == ["0", "1", "2"]
    code, out, _err = cli("runs", "export", "*", "--runs-root", groups3, "--format", "jsonl", "-o", "-")
    first = json.loads(out.splitlines()[0])
    assert first["group"] in keys["base"] | keys["lr"] and first["seed"] in (0, 1, 2)


def test_a_groups_label_is_what_its_runs_labels_share() -> None:
    from fgbench.report import _group_label

    assert _group_label(["B+A", "B+A", "B+A"]) == "B+A"
    assert _group_label(["B+A seed=0", "B+A seed=1", "B+A seed=12"]) == "B+A"
    assert _group_label(["x-1", "y-2"]) == "x-1 (+1)"


def test_a_seed_run_twice_counts_once_as_the_mean_of_its_runs(cli, groups3: Path) -> None:
    """A rerun of seed 0 (on a CPU, the same number again) is not another seed: n stays 3 and the
    interval is that of the three seeds' values, seed 0's value being its runs' mean."""
    make_run(groups3, "base", sets=["runtime.seed=0"], test=[50.0, 60.0, 74.0], stamp=1.7e9 + 5)
    code, out, err = cli("runs", "compare", "*", "--runs-root", groups3)
    assert code == 0, err
    base = next(line for line in out.splitlines() if line.startswith("| base "))
    # seed 0: (70 + 74) / 2 = 72; seeds 72, 71, 72.5: mean 71.8333, deviations 0.1667, -0.8333, 0.6667,
    # sum of squares 0.02778 + 0.69444 + 0.44444 = 1.16667, sd sqrt(1.16667 / 2) = 0.7638
    sd = math.sqrt(1.1666667 / 2)
    half = T975_2 * sd / math.sqrt(3)
    assert f"{71.8333 - half:.2f}" == "69.94" and f"{71.8333 + half:.2f}" == "73.73"
    assert "| 3 | 0x2,1,2 |" in base
    assert "71.83 [69.94, 73.73] sd 0.76, 71.00-72.50" in base
    # still paired by seed with lr (seeds 0, 1, 2 each once after averaging): lr - base = -1.0, +1.5, +0.5
    assert "paired by seed" in out and "seeds 0x2: seed 0 ran twice" in out


def test_two_runs_of_one_seed_are_one_value_without_an_interval(cli, runs_root: Path) -> None:
    make_run(runs_root, "q", test=[50.0, 60.0, 80.0], stamp=1.7e9)
    make_run(runs_root, "q", test=[50.0, 60.0, 80.0], stamp=1.7e9 + 1)
    code, out, err = cli("runs", "compare", "*", "--runs-root", runs_root, "--format", "csv")
    assert code == 0, err
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert row["seeds"] == "0x2" and row["test_top1_best_n"] == "1"
    assert float(row["test_top1_best"]) == 80.0 and row["test_top1_best_ci_low"] in ("", "None")

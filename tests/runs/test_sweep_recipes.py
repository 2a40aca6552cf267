"""The seeds' ablation tables as sweeps: every point must be exactly the single-row seed recipe
that another file in recipes/ spells out (so the sweep reproduces the same settings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fgbench.sweeps import plan as P
from fgbench.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"

HY_ROWS = {
    "B-scratch": "hy_intel_b_scratch", "B": "hy_intel_b", "B+A": "hy_intel_ba", "B+A+W": "hy_intel_baw",
    "B+A+W+C": "hy_intel_bawc", "B+A+W+S": "hy_intel_baws", "B+A+W+C+S": "hy_intel_bawcs",
    "B+A+W+M": "hy_intel_bawm", "B+A+W+S+M": "hy_intel_bawsm", "B+A+W+C+S+M": "hy_intel_bawcsm",
    "BAWC+CM": "hy_intel_bawc_cm", "BWCS+R": "hy_intel_bwcs_r", "BAWCS+RA": "hy_intel_bawcs_ra",
    "BAWCS+E": "hy_intel_bawcs_e", "BWC+CM+R": "hy_intel_bwc_cm_r",
    "EN+AWCSM": "hy_intel_en_awcsm", "EN+AWC+CM": "hy_intel_en_awc_cm", "EN+WCS+R": "hy_intel_en_wcs_r",
    "EN+WC+CM+R": "hy_intel_en_wc_cm_r", "RN+AWCSM": "hy_intel_rn_awcsm", "RN+AWC+CM": "hy_intel_rn_awc_cm",
    "RN+WCS+R": "hy_intel_rn_wcs_r", "RN+WC+CM+R": "hy_intel_rn_wc_cm_r",
}
DS = {"cub200": "cub", "stanford_cars": "cars"}
SC_EMA_ROWS = {"CUB-R18": "sc_cub_r18_ema", "CUB-R50": "sc_cub_r50_ema", "CARS-R18": "sc_cars_r18_ema",
               "CARS-R50": "sc_cars_r50_ema", "CIFAR10-R18": "sc_cifar10_r18_ema", "CIFAR100-R18": "sc_cifar100_r18_ema"}
SC_PRE_ROWS = {"R18": "r18_ema", "R18-IN1k": "r18_in1k_ema", "R50": "r50_ema", "R50-IN1k": "r50_in1k_ema",
               "R50-MoCoV2": "r50_moco_ema"}
SC_FIX_ROWS = {"train224": "r50_fixres_train224", "train448": "r50_fixres_train448", "two-stage": "r50_fixres_two_stage"}


def _row_file(sweep_file: str, point: P.Point) -> str:
    if sweep_file == "sweep_hy_intel_tricks":
        return HY_ROWS[point.variant]
    if sweep_file == "sweep_sc_ema":
        return SC_EMA_ROWS[point.variant]
    ds = DS[point.overrides["data.dataset"]]
    table = SC_PRE_ROWS if sweep_file == "sweep_sc_pretraining" else SC_FIX_ROWS
    row, label = point.variant.rsplit("-", 1)  # one variant per row and dataset: "R18-IN1k-CUB"
    assert label == ds.upper()
    return f"sc_{ds}_{table[row]}"


def _body(recipe) -> dict:
    d = recipe.model_dump(mode="json")
    for k in ("name", "description", "sweep"):
        d.pop(k, None)
    return d


@pytest.mark.parametrize("sweep_file,count", [
    ("sweep_hy_intel_tricks", 23), ("sweep_sc_ema", 6), ("sweep_sc_pretraining", 10), ("sweep_sc_fixres", 6),
])
def test_sweep_points_equal_the_seed_row_recipes(sweep_file: str, count: int) -> None:
    plan = P.load_plan(RECIPES / f"{sweep_file}.toml")
    assert len(plan.points) == count
    seen = set()
    for point, recipe in zip(plan.points, plan.recipes):
        row = _row_file(sweep_file, point)
        seen.add(row)
        expected = load_recipe(RECIPES / f"{row}.toml")
        assert _body(recipe) == _body(expected), f"{sweep_file} {point.label} differs from {row}.toml"
        assert recipe.name.startswith(f"{sweep_file}-")
        assert recipe.sweep is None
    assert len(seen) == count  # every row once


def test_every_sweep_recipe_is_covered() -> None:
    files = sorted(p.stem for p in RECIPES.glob("sweep_*.toml"))
    assert files == ["sweep_hy_intel_tricks", "sweep_sc_ema", "sweep_sc_fixres", "sweep_sc_pretraining"]

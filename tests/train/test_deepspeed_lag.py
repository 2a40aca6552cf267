"""``schedule.deepspeed_lag`` (issue 18): the enhuiz seed's DeepSpeed (0.5 to 0.15) built its LR
scheduler without touching the optimizer, so the first optimizer step ran at Adam's default 1e-3
and step k at the schedule's value for step k - 1. The expected values are DeepSpeed's
WarmupDecayLR as the enhuiz recipes state it (linear 1e-6 -> 2e-4 over 500 steps, then linear to
1e-6 at step 5000), written out here."""

from __future__ import annotations

from pathlib import Path

import pytest

from fgbench.cli import main
from fgbench.recipe import load_recipe
from fgbench.train.schedule import plan_for_stage

from .conftest import events_of, write_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def warmup_decay(k: int) -> float:
    """The seed's schedule at 0-based step k (no lag)."""
    if k < 500:
        return 1e-6 + (2e-4 - 1e-6) * k / 500
    return 2e-4 - (2e-4 - 1e-6) * (k - 500) / 4500


def _plan(recipe):
    s = recipe.schedule
    return plan_for_stage(s, lr=recipe.optim.lr, epochs=s.epochs, steps_per_epoch=390, warmup_epochs=s.warmup_epochs,
                          warmup_steps=s.warmup_steps, min_lr=None, max_steps=s.max_steps)


def test_every_enhuiz_recipe_lags_and_says_so():
    files = sorted(RECIPES.glob("ez_*.toml"))
    assert len(files) == 19
    for f in files:
        r = load_recipe(f)
        assert r.schedule.deepspeed_lag, f.name
        assert "schedule.deepspeed_lag" in r.description and "1e-3" in r.description, f.name


def test_first_step_at_adams_default_and_step_k_at_the_schedule_of_k_minus_1():
    r = load_recipe(RECIPES / "ez_cifar100_resnet18.toml")
    p = _plan(r)
    assert p.lr(0) == 1e-3
    for k in (1, 2, 250, 500, 501, 2750, 4999):
        assert p.lr(k) == pytest.approx(warmup_decay(k - 1), rel=1e-12), k
    off = _plan(r.model_copy(update={"schedule": r.schedule.model_copy(update={"deepspeed_lag": False})}))
    assert off.lr(0) == pytest.approx(1e-6) and off.lr(501) == pytest.approx(warmup_decay(501))
    # the constant-LR config: 1e-3 once, then 1e-4
    c = _plan(load_recipe(RECIPES / "ez_cifar100_resnet18_clr1e-4.toml"))
    assert [c.lr(k) for k in (0, 1, 2, 4999)] == pytest.approx([1e-3, 1e-4, 1e-4, 1e-4])


def test_the_trainer_steps_with_the_lagged_lr(tmp_path, tiny_folder):
    """A real run: the LR each optimizer step used (the step events, logged every step)."""
    recipe = write_recipe(tmp_path, tiny_folder,
                          optim={"name": "adam", "lr": 2e-4},
                          schedule={"name": "linear", "epochs": 2, "warmup_steps": 4, "warmup_start_lr": 1e-6,
                                    "min_lr": 1e-6, "deepspeed_lag": True},
                          runtime={"device": "cpu", "seed": 1, "log_every_steps": 1})
    run = tmp_path / "run"
    assert main(["run", str(recipe), "--run-dir", str(run), "--progress", "none"]) == 0
    steps = [e for e in events_of(run) if e["event"] == "step"]
    total = len(steps)  # 128 training images / 16 = 8 steps an epoch, 2 epochs
    assert total == 16

    def plan(k: int) -> float:  # linear 1e-6 -> 2e-4 over 4 steps, then linear to 1e-6 at the end
        if k < 4:
            return 1e-6 + (2e-4 - 1e-6) * k / 4
        return 2e-4 - (2e-4 - 1e-6) * (k - 4) / (total - 4)

    # event "step" s (1-based) is the optimizer step with 0-based index s - 1
    assert steps[0]["step"] == 1 and steps[0]["lr"] == pytest.approx(1e-3, rel=1e-12)
    for ev in steps[1:]:
        assert ev["lr"] == pytest.approx(plan(ev["step"] - 2), rel=1e-9), ev["step"]

"""LR schedule values at chosen steps (pure function; no training)."""

import math

import pytest

from fgbench.recipe import validate_recipe
from fgbench.train.schedule import LRPlan, plan_for_stage


def plan(**kw) -> LRPlan:
    base = dict(kind="cosine", peak=0.1, total_steps=100, steps_per_epoch=10)
    base.update(kw)
    return LRPlan(**base)


def test_quadratic_warmup_from_zero_then_cosine_to_min():
    p = plan(warmup_steps=20, warmup="quadratic", min_lr=1e-4)
    assert p.lr(0) == 0.0
    assert p.lr(10) == pytest.approx(0.1 * (10 / 20) ** 2)  # SimpleClassification: max_lr * (it/W)^2
    assert p.lr(5) == pytest.approx(0.1 * 0.0625)
    assert p.lr(20) == pytest.approx(0.1)  # warm-up done: peak
    # halfway through the cosine part: the mean of peak and min
    assert p.lr(60) == pytest.approx(1e-4 + (0.1 - 1e-4) * 0.5)
    # the last step is just above min_lr; the cosine ends at min_lr
    assert p.lr(99) == pytest.approx(1e-4 + (0.1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * 79 / 80)))
    assert p.lr(100) == pytest.approx(1e-4)
    assert p.lr(10**6) == pytest.approx(1e-4)


def test_linear_warmup_from_start_lr_then_linear_decay():
    # enhuiz: DeepSpeed WarmupDecayLR, 1e-6 -> 2e-4 over 500 steps, then linearly down to
    # warmup_min_lr = 1e-6 at 5000: lr = min + (max - min) * (5000 - step) / (5000 - 500)
    p = plan(kind="linear", peak=2e-4, total_steps=5000, steps_per_epoch=390, warmup_steps=500,
             warmup_start_lr=1e-6, min_lr=1e-6)
    assert p.lr(0) == pytest.approx(1e-6)
    assert p.lr(250) == pytest.approx(1e-6 + (2e-4 - 1e-6) * 0.5)
    assert p.lr(500) == pytest.approx(2e-4)
    assert p.lr(2750) == pytest.approx(1e-6 + (2e-4 - 1e-6) * 2250 / 4500)
    assert p.lr(4999) == pytest.approx(1e-6 + (2e-4 - 1e-6) * 1 / 4500)
    assert p.lr(5000) == pytest.approx(1e-6)


def test_multistep_milestones_are_epochs():
    p = plan(kind="multistep", total_steps=1200, steps_per_epoch=10, milestones=(30, 60, 90), gamma=0.1)
    assert p.lr(0) == pytest.approx(0.1)
    assert p.lr(299) == pytest.approx(0.1)  # epoch 29 (0-based)
    assert p.lr(300) == pytest.approx(0.01)  # epoch 30
    assert p.lr(600) == pytest.approx(0.001)
    assert p.lr(1199) == pytest.approx(0.0001)


def test_epoch_stepping_holds_the_value_of_the_epochs_first_step():
    # cyizhuo: CosineAnnealingLR(T_max=128) stepped per epoch, no warm-up
    p = plan(total_steps=128 * 10, steps_per_epoch=10, stepping="epoch")
    for e in (0, 1, 64, 127):
        expected = 0.1 * 0.5 * (1 + math.cos(math.pi * e / 128))
        assert all(p.lr(e * 10 + i) == pytest.approx(expected) for i in range(10))
    assert p.lr(645) == p.lr(640) != p.lr(650)


def test_constant_after_warmup_and_factor():
    p = plan(kind="constant", warmup_steps=4)
    assert [round(p.lr(s), 6) for s in range(6)] == [0.0, 0.025, 0.05, 0.075, 0.1, 0.1]
    assert p.factor(2) == pytest.approx(0.5)


def test_plan_from_recipe_sections():
    r = validate_recipe({"schedule": {"name": "cosine", "epochs": 5, "warmup_epochs": 0.5, "min_lr": 0.001},
                         "optim": {"lr": 0.05}})
    p = plan_for_stage(r.schedule, lr=0.05, epochs=5, steps_per_epoch=8, warmup_epochs=0.5, warmup_steps=None,
                       min_lr=None)
    assert (p.total_steps, p.warmup_steps, p.min_lr, p.peak) == (40, 4, 0.001, 0.05)
    r2 = validate_recipe({"schedule": {"name": "linear", "max_steps": 30, "warmup_steps": 7}})
    p2 = plan_for_stage(r2.schedule, lr=0.1, epochs=99, steps_per_epoch=8, warmup_epochs=0.0, warmup_steps=7,
                        min_lr=None, max_steps=30)
    assert (p2.total_steps, p2.warmup_steps) == (30, 7)


def test_lambdalr_applies_the_plan_every_step():
    import torch

    p = plan(warmup_steps=5, warmup="quadratic", min_lr=0.0, total_steps=20)
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=p.peak)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, p.factor)
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([p.lr(s) for s in range(20)])


def _hoya_gradual_warmup_cosine(epoch: int, base: float, warm: int = 12, t_max: int = 120) -> float:
    """hoya012's per-epoch LR as its code steps it (written from the seed notes, not its code):
    GradualWarmupScheduler(multiplier=1, total_epoch=warm) gives base * e / warm up to epoch `warm`;
    after that its CosineAnnealingLR(T_max) is stepped from 0 one epoch later, at epoch warm + 1."""
    if epoch <= warm:
        return base * epoch / warm
    k = epoch - warm - 1
    return base * 0.5 * (1 + math.cos(math.pi * k / t_max))


def test_cosine_hold_and_period_reproduce_the_hoya_seed_epoch_by_epoch():
    r = validate_recipe({"schedule": {"name": "cosine", "epochs": 120, "warmup_epochs": 12, "hold_epochs": 1,
                                      "period_epochs": 120, "stepping": "epoch"}, "optim": {"lr": 1e-4}})
    spe = 7
    p = plan_for_stage(r.schedule, lr=1e-4, epochs=120, steps_per_epoch=spe, warmup_epochs=12, warmup_steps=None,
                       min_lr=None, hold_epochs=r.schedule.hold_epochs, period_epochs=r.schedule.period_epochs)
    for e in range(120):
        for s in (e * spe, e * spe + spe - 1):  # held for the whole epoch
            assert p.lr(s) == pytest.approx(_hoya_gradual_warmup_cosine(e, 1e-4)), (e, s)
    assert p.lr(0) == 0.0 and p.lr(12 * spe) == p.lr(13 * spe) == pytest.approx(1e-4)
    # cut off at 106/120: the last epoch is still at 3.3 % of the peak, not at min_lr
    assert p.lr(119 * spe) / 1e-4 == pytest.approx(0.5 * (1 + math.cos(math.pi * 106 / 120)))
    assert 0.032 < p.lr(119 * spe) / 1e-4 < 0.034


def test_cosine_without_period_spans_the_rest_of_the_stage_after_the_hold():
    p = plan(warmup_steps=10, hold_steps=10)
    assert p.lr(15) == pytest.approx(0.1)  # held
    assert p.lr(20) == pytest.approx(0.1)  # the cosine starts
    assert p.lr(60) == pytest.approx(0.05)  # halfway through the remaining 80 steps
    assert p.lr(100) == pytest.approx(0.0)
    # a period shorter than the rest: min_lr is reached and kept
    q = plan(decay_steps=40)
    assert q.lr(20) == pytest.approx(0.05) and q.lr(40) == q.lr(99) == pytest.approx(0.0)


def test_period_applies_to_the_first_stage_only_and_hold_to_all():
    from fgbench.train.stages import resolve_stages

    r = validate_recipe({"schedule": {"name": "cosine", "epochs": 4, "hold_epochs": 1, "period_epochs": 10},
                         "stages": [{"epochs": 2, "train_size": 48}]})
    first, second = resolve_stages(r, n_train=640)
    assert (first.hold_epochs, first.period_epochs) == (1.0, 10.0)
    assert (second.hold_epochs, second.period_epochs) == (1.0, None)
    with pytest.raises(Exception, match="period_epochs"):
        validate_recipe({"schedule": {"name": "cosine", "period_epochs": 0}})


def _from_recipe(schedule: dict, *, lr=0.1, epochs=10, spe=10, min_lr=None, warmup_steps=None) -> LRPlan:
    r = validate_recipe({"schedule": {"epochs": epochs, **schedule}})
    s = r.schedule
    return plan_for_stage(s, lr=lr, epochs=epochs, steps_per_epoch=spe, warmup_epochs=s.warmup_epochs,
                          warmup_steps=warmup_steps, min_lr=min_lr, hold_epochs=getattr(s, "hold_epochs", 0.0),
                          period_epochs=getattr(s, "period_epochs", None),
                          warmup_in_period=getattr(s, "warmup_in_period", False))


def test_every_schedule_field_reaches_the_plan():
    # quadratic warm-up from the recipe: 0.1 * (step / 20)^2 over 2 epochs of 10 steps
    p = _from_recipe({"name": "cosine", "warmup_epochs": 2, "warmup": "quadratic"})
    assert p.lr(5) == pytest.approx(0.1 * (5 / 20) ** 2) and p.lr(10) == pytest.approx(0.1 * 0.25)
    # multi-step milestones and gamma from the recipe (no min_lr field on this schedule)
    m = _from_recipe({"name": "multistep", "milestones": [3, 7], "gamma": 0.5})
    assert [m.lr(e * 10) for e in (0, 2, 3, 6, 7, 9)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    c = _from_recipe({"name": "constant", "warmup_epochs": 1})
    assert c.lr(5) == pytest.approx(0.05) and c.lr(50) == pytest.approx(0.1)
    # a stage's own min_lr wins over the schedule's; unset, the schedule's is used
    own = _from_recipe({"name": "cosine", "min_lr": 0.01}, min_lr=0.02)
    inherited = _from_recipe({"name": "cosine", "min_lr": 0.01})
    assert own.lr(99) == pytest.approx(0.02 + 0.08 * 0.5 * (1 + math.cos(math.pi * 99 / 100)))
    assert inherited.lr(99) == pytest.approx(0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * 99 / 100)))


def test_a_one_step_cosine_period_reaches_min_lr_after_one_step():
    # period_epochs 0.1 of a 10-step epoch is one step: the step after the start is at min_lr
    p = _from_recipe({"name": "cosine", "period_epochs": 0.1, "min_lr": 0.001})
    assert p.lr(0) == pytest.approx(0.1) and p.lr(1) == pytest.approx(0.001) and p.lr(50) == pytest.approx(0.001)


def test_an_unknown_kind_is_an_error_naming_it():
    with pytest.raises(ValueError, match="unknown schedule 'exp'"):
        plan(kind="exp").lr(50)

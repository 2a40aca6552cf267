"""The learning rate as a pure function of the stage's optimizer step.

``LRPlan.lr(step)`` is the whole schedule: warm-up (linear or quadratic from ``warmup_start_lr``),
then cosine / multi-step / linear / constant, held per epoch when ``stepping = "epoch"``. The trainer
wraps it in a ``torch.optim.lr_scheduler.LambdaLR`` (stepped after every optimizer step), so the
scheduler's state is one integer and a resumed or staged run lands on exactly the same value.

Decisions:

* ``step`` is the 0-based index of the optimizer step about to be taken, counted within the stage.
  Warm-up covers steps ``0 .. W-1`` with ``t = step / W``: lr = start + (peak - start) * t (linear)
  or * t**2 (quadratic, SimpleClassification's ``max_lr * (it / warmup_iters) ** 2``). Step 0 of a
  warm-up from 0 therefore has LR 0, as in both seeds that warm up.
* After warm-up the decay runs over ``p = (step - W) / (T - W)`` in [0, 1), T = the stage's total
  steps: cosine ``min + (peak - min) * (1 + cos(pi p)) / 2``, linear ``peak - (peak - min) * p``.
  A cosine may first hold the peak for H steps and may have its own period P:
  ``p = (step - W - H) / P``, capped at 1; with P longer than what remains, training ends before
  ``min_lr`` (the hoya seed: 12 warm-up epochs, 1 held, T_max 120 over the 107 left).
* ``warmup_in_period`` (cosine): timm's CosineLRScheduler with ``warmup_prefix = False``, in which
  the warm-up is part of the period: after it, ``p = step / T`` (T the stage's steps or P), so the
  cosine goes on from where it would be at step W instead of restarting at the peak.
* Multi-step milestones are epochs: in 0-based epoch ``e = step // steps_per_epoch`` the LR is
  ``peak * gamma ** (number of milestones <= e)``, which is ``MultiStepLR`` stepped per epoch. The hoya
  seed's GradualWarmupScheduler shifted its milestones by the warm-up length; that quirk is not
  reproduced (the recipe can say the shifted milestones instead).
* ``stepping = "epoch"`` evaluates the function at the first step of the current epoch, which is a
  per-epoch PyTorch scheduler (the cyizhuo cosine over 128 epochs, the hoya schedules).
* ``deepspeed_lag`` (the enhuiz seed): DeepSpeed 0.5 to 0.15 built its LR scheduler without
  touching the optimizer (``last_batch_iteration = -1``, no ``step()`` in ``__init__``), and the
  engine stepped it after each optimizer step. So step 0 ran at the optimizer's own LR, 1e-3 for
  DeepSpeed's Adam with no ``lr`` in the config, and step k at the schedule's value for k - 1:
  ``lr(0) = 1e-3``, ``lr(k) = plan(k - 1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DEEPSPEED_ADAM_LR = 1e-3
"""The LR of DeepSpeed's Adam when the config gives none: the enhuiz seed's first step (``deepspeed_lag``)."""


@dataclass(frozen=True)
class LRPlan:
    kind: str  # cosine | multistep | linear | constant
    peak: float
    total_steps: int
    steps_per_epoch: int
    warmup_steps: int = 0
    warmup: str = "linear"  # linear | quadratic
    warmup_start_lr: float = 0.0
    min_lr: float = 0.0
    milestones: tuple[int, ...] = field(default_factory=tuple)
    gamma: float = 0.1
    stepping: str = "iteration"  # iteration | epoch
    hold_steps: int = 0  # at the peak after warm-up (cosine)
    decay_steps: int | None = None  # the cosine's period; None: the rest of the stage
    warmup_in_period: bool = False  # cosine: p counts from step 0, warm-up included (timm)
    first_lr: float | None = None  # deepspeed_lag: the LR of step 0; step k then gets the plan's k - 1

    def lr(self, step: int) -> float:
        if self.first_lr is not None:
            if step == 0:
                return self.first_lr
            step -= 1
        if self.stepping == "epoch":
            step = (step // self.steps_per_epoch) * self.steps_per_epoch
        w = self.warmup_steps
        if step < w:
            t = step / w
            if self.warmup == "quadratic":
                t = t * t
            return self.warmup_start_lr + (self.peak - self.warmup_start_lr) * t
        if self.kind == "constant":
            return self.peak
        if self.kind == "multistep":
            e = step // self.steps_per_epoch
            return self.peak * self.gamma ** sum(1 for m in self.milestones if m <= e)
        start = w + self.hold_steps
        if step < start:
            return self.peak
        if self.kind == "cosine" and self.warmup_in_period:
            start = 0
        span = self.decay_steps or max(1, self.total_steps - start)
        p = min(1.0, (step - start) / span)
        if self.kind == "cosine":
            return self.min_lr + (self.peak - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))
        if self.kind == "linear":
            return self.peak - (self.peak - self.min_lr) * p
        raise ValueError(f"unknown schedule {self.kind!r}")

    def factor(self, step: int) -> float:
        """``lr(step) / peak``: what ``LambdaLR`` multiplies the optimizer's base LR by."""
        return self.lr(step) / self.peak


def plan_for_stage(schedule, *, lr: float, epochs: int, steps_per_epoch: int, warmup_epochs: float,
                   warmup_steps: int | None, min_lr: float | None, max_steps: int | None = None,
                   hold_epochs: float = 0.0, period_epochs: float | None = None,
                   warmup_in_period: bool = False) -> LRPlan:
    """The plan of one stage from the recipe's ``schedule`` section and the stage's overrides
    (``warmup_steps``, when set, wins over ``warmup_epochs``)."""
    total = max_steps if max_steps else epochs * steps_per_epoch
    if warmup_steps is not None:
        warmup = warmup_steps
    else:
        warmup = int(round(warmup_epochs * steps_per_epoch))
    warmup = min(warmup, total)
    return LRPlan(
        kind=schedule.name,
        peak=lr,
        total_steps=total,
        steps_per_epoch=steps_per_epoch,
        warmup_steps=warmup,
        warmup=schedule.warmup,
        warmup_start_lr=schedule.warmup_start_lr,
        min_lr=min_lr if min_lr is not None else getattr(schedule, "min_lr", 0.0),
        milestones=tuple(getattr(schedule, "milestones", ()) or ()),
        gamma=getattr(schedule, "gamma", 0.1),
        stepping=schedule.stepping,
        hold_steps=int(round(hold_epochs * steps_per_epoch)),
        decay_steps=max(1, int(round(period_epochs * steps_per_epoch))) if period_epochs else None,
        warmup_in_period=warmup_in_period,
        first_lr=DEEPSPEED_ADAM_LR if schedule.deepspeed_lag else None,  # every schedule variant has it
    )

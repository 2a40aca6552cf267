"""Exponential moving average of the weights, with SimpleClassification's warm-up ramp.

``decay(u) = decay * (1 - exp(-u / ramp_steps))`` after ``u`` updates (u counts from 1, so the
first update copies the model almost exactly), applied to every floating-point entry of the
state dict: parameters **and** BatchNorm running statistics. Integer buffers
(``num_batches_tracked``) are copied. The average lives in its own module in eval mode, in float32,
on the training device, so evaluating it is an ordinary forward pass.

Own code rather than ``torch.optim.swa_utils.AveragedModel`` because the seed's ramp depends on
the update count in a way ``get_ema_multi_avg_fn`` (a fixed decay) does not express, and
``AveragedModel`` averages buffers only with ``use_buffers=True`` and then also runs its own
``n_averaged`` bookkeeping that a checkpoint would have to carry separately. One fused
``_foreach_lerp_`` per update keeps it cheap.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def ramp_decay(decay: float, ramp_steps: float, updates: int) -> float:
    if ramp_steps <= 0:
        return decay
    return decay * (1.0 - math.exp(-updates / ramp_steps))


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float, ramp_steps: float):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.ramp_steps = decay, ramp_steps
        self.updates = 0
        self._pairs(model)

    def _pairs(self, model: nn.Module) -> None:
        mine = dict(self.module.state_dict(keep_vars=True))
        theirs = dict(model.state_dict(keep_vars=True))
        self._float_ema, self._float_src, self._int_ema, self._int_src = [], [], [], []
        self._source_id = id(model)
        for name, t in mine.items():
            src = theirs[name]
            if t.dtype.is_floating_point:
                self._float_ema.append(t.data if isinstance(t, nn.Parameter) else t)
                self._float_src.append(src.data if isinstance(src, nn.Parameter) else src)
            else:
                self._int_ema.append(t)
                self._int_src.append(src)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        if id(model) != self._source_id:
            self._pairs(model)
        self.updates += 1
        d = ramp_decay(self.decay, self.ramp_steps, self.updates)
        # ema <- ema + (1 - d) * (model - ema) == d * ema + (1 - d) * model
        torch._foreach_lerp_(self._float_ema, self._float_src, 1.0 - d)
        for e, s in zip(self._int_ema, self._int_src):
            e.copy_(s)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])

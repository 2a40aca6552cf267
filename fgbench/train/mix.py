"""Batch-level MixUp / CutMix with torchvision.transforms.v2.

Per batch: with probability ``mix_prob`` the batch is mixed, else it trains on its plain labels
(the hoya seed's CutMix had no forward pass at all in its else-branch; here it is an ordinary
step). When both are on, a mixed batch uses CutMix with probability ``mix_switch_prob``, else
MixUp. One lambda per batch, drawn by v2 from ``Beta(alpha, alpha)``; CutMix recomputes it from the
clipped box. All draws come from torch's global generator, which the checkpoint saves, so a
resumed run mixes exactly as the uninterrupted one.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2


class BatchMixer:
    def __init__(self, augment, num_classes: int):
        self.mixup = v2.MixUp(alpha=augment.mixup_alpha, num_classes=num_classes) if augment.mixup_alpha > 0 else None
        self.cutmix = v2.CutMix(alpha=augment.cutmix_alpha, num_classes=num_classes) if augment.cutmix_alpha > 0 else None
        self.prob, self.switch_prob = augment.mix_prob, augment.mix_switch_prob

    @property
    def enabled(self) -> bool:
        return self.mixup is not None or self.cutmix is not None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, target)``: target is ``y`` (class indices) for an unmixed batch, else (B, C) probabilities."""
        if not self.enabled or (self.prob < 1.0 and torch.rand(()).item() >= self.prob):
            return x, y
        if self.mixup is not None and self.cutmix is not None:
            op = self.cutmix if torch.rand(()).item() < self.switch_prob else self.mixup
        else:
            op = self.mixup or self.cutmix
        return op(x, y)

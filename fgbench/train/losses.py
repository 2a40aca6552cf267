"""Cross-entropy with label smoothing in both of the seeds' styles, on hard or soft (mixed) targets.

* ``torch`` (hoya; ``nn.CrossEntropyLoss(label_smoothing=s)``): target ``(1 - s) * t + s / C``,
  i.e. 1 - s + s/C on the true class and s/C elsewhere. PyTorch's own loss is used, for integer
  and for probability targets alike.
* ``cyizhuo``: ``(1 - s) * t + s / (C - 1) * (1 - t)``, i.e. 1 - s on the true class and s/(C-1)
  on each other class. Own code, since PyTorch has no such option.

Both maps are affine in ``t``, so smoothing a MixUp/CutMix target ``lam * a + (1 - lam) * b`` is the
same as mixing the smoothed one-hots: the order of mixing and smoothing does not matter, and the
smoothed soft target still sums to 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smooth_targets(target: torch.Tensor, num_classes: int, smoothing: float, style: str) -> torch.Tensor:
    """The probability targets the loss trains towards (used by the loss and by the tests)."""
    t = target if target.is_floating_point() else F.one_hot(target, num_classes).float()
    if smoothing == 0:
        return t
    if style == "torch":
        return t * (1 - smoothing) + smoothing / num_classes
    if style == "cyizhuo":
        return t * (1 - smoothing) + (1 - t) * (smoothing / (num_classes - 1))
    raise ValueError(f"unknown smoothing style {style!r}")


class ClassificationLoss:
    def __init__(self, num_classes: int, smoothing: float = 0.0, style: str = "torch"):
        self.num_classes, self.smoothing, self.style = num_classes, smoothing, style
        self._torch = torch.nn.CrossEntropyLoss(label_smoothing=smoothing if style == "torch" else 0.0)

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.style == "cyizhuo" and self.smoothing:
            q = smooth_targets(target, self.num_classes, self.smoothing, "cyizhuo")
            return -(q * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        return self._torch(logits, target)

"""The learned input normalizer (``data.normalize = "learned"``), after enhuiz/image-classification.

Instead of fixed dataset constants, the model keeps a running mean and variance of its input
pixels: initialised from the first training batch, then an exponential moving average with
momentum 0.01, over all pixels (one value) or per channel. In training the statistics are updated
*before* the batch is normalized with them (as the seed does); in eval mode they are only read.

Decisions:

* The statistics are buffers, so they travel with the state dict, the checkpoint and the EMA
  model (the EMA copies float buffers too). "Not initialised yet" is a NaN in the buffer, as in
  the seed, so no extra flag needs saving.
* The wrapper keeps the wrapped network under ``model.`` in the state dict; ``unwrap`` in
  ``build`` sees through it for the classifier and the extra metrics.
* Population variance, eps 1e-9 inside the square root, as the seed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LearnedNormalizer(nn.Module):
    running_mean: Tensor  # buffers (registered below), declared for the type checker
    running_var: Tensor

    def __init__(self, per_channel: bool = False, channels: int = 3, momentum: float = 0.01, eps: float = 1e-9):
        super().__init__()
        self.per_channel = per_channel
        self.momentum = momentum
        self.eps = eps
        n = channels if per_channel else 1
        self.register_buffer("running_mean", torch.full((n,), float("nan")))
        self.register_buffer("running_var", torch.full((n,), float("nan")))

    @torch.no_grad()
    def _update(self, x: Tensor) -> None:
        x = x.detach().float()
        if self.per_channel:
            flat = x.transpose(0, 1).flatten(1)
        else:
            flat = x.flatten().unsqueeze(0)
        mean = flat.mean(dim=1)
        var = (flat - mean[:, None]).pow(2).mean(dim=1)
        if torch.isnan(self.running_mean).any():
            self.running_mean.copy_(mean)
            self.running_var.copy_(var)
        else:
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var, self.momentum)

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self._update(x)
        shape = (1, -1, 1, 1) if self.per_channel else (1, 1, 1, 1)
        mean = self.running_mean.view(shape).to(x.dtype)
        std = (self.running_var + self.eps).sqrt().view(shape).to(x.dtype)
        return (x - mean) / std

    def extra_repr(self) -> str:
        return f"per_channel={self.per_channel}, momentum={self.momentum}"


class NormalizedModel(nn.Module):
    """``model(normalizer(x))``; anything the inner model returns (aux outputs included) passes through."""

    def __init__(self, model: nn.Module, normalizer: LearnedNormalizer):
        super().__init__()
        self.normalizer = normalizer
        self.model = model

    def forward(self, x: Tensor):
        return self.model(self.normalizer(x))

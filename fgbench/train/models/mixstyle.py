"""MixStyle (Zhou et al., "Domain Generalization with MixStyle", ICLR 2021), as enhuiz inserts it
after ResNet stages 1..N.

With probability ``p`` per batch (training only), each sample's per-channel feature statistics
(mean, std over H, W) are replaced by a Beta(alpha, alpha)-weighted mix of its own and those of a
random other sample of the batch. In eval mode it is the identity.

Decisions:

* The statistics are detached, as in the reference implementation, and the variance is the
  unbiased one (``Tensor.var``'s default), as there.
* Randomness comes from torch's generator (not Python's ``random`` as in the seed), so a seeded
  run is reproducible and resumable with the RNG state the checkpoint stores.
* The per-batch coin flip reads a CPU tensor with ``.item()``: no device sync, but a graph break
  under torch.compile (the rest of the model still compiles).
* The module is appended to the stage's ``nn.Sequential`` (``layer1.mixstyle``). It has no
  parameters or buffers, so state-dict keys do not change.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MixStyle(nn.Module):
    def __init__(self, p: float = 0.5, alpha: float = 0.1, eps: float = 1e-6):
        super().__init__()
        self.p = p
        self.alpha = alpha
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p <= 0 or x.size(0) < 2:
            return x
        if torch.rand(()).item() >= self.p:  # CPU generator: no device sync
            return x
        b = x.size(0)
        mu = x.mean(dim=(2, 3), keepdim=True)
        sig = (x.var(dim=(2, 3), keepdim=True) + self.eps).sqrt()
        mu, sig = mu.detach(), sig.detach()
        x_normed = (x - mu) / sig
        beta = torch.distributions.Beta(torch.tensor(self.alpha), torch.tensor(self.alpha))
        lmda = beta.sample((b, 1, 1, 1)).to(device=x.device, dtype=x.dtype)
        perm = torch.randperm(b).to(x.device)
        mu_mix = mu * lmda + mu[perm] * (1 - lmda)
        sig_mix = sig * lmda + sig[perm] * (1 - lmda)
        return x_normed * sig_mix + mu_mix

    def extra_repr(self) -> str:
        return f"p={self.p}, alpha={self.alpha}"


def insert_mixstyle(model: nn.Module, layers: int, p: float, alpha: float) -> list[str]:
    names = []
    for i in range(1, layers + 1):
        stage = getattr(model, f"layer{i}", None)
        if not isinstance(stage, nn.Sequential):
            raise ValueError(f"model has no layer{i} stage for MixStyle")
        stage.add_module("mixstyle", MixStyle(p, alpha))
        names.append(f"layer{i}")
    return names

"""A short training of each model family on tiny generated tensors lowers the loss.

The task: 4 classes of 16x16 images, each class a fixed random colour pattern plus noise. Every
family gets ~40 Adam steps on CPU; the loss on the training tensors (eval mode) must fall to less
than half of where it started. That fails if gradients do not reach the weights, if a swap breaks
the forward pass, or if the aux losses or the normalizer misbehave.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fgbench.recipe import DataConfig, ModelConfig
from fgbench.train.models import build_model, forward_train

FAMILIES = {
    "small_cnn": dict(arch="small_cnn"),
    "resnet8_cifar": dict(arch="resnet8_cifar"),
    "resnet8_zero_init_dropout": dict(arch="resnet8_cifar", zero_init_residual=True, dropout=0.1),
    "resnet8_gn": dict(arch="resnet8_cifar", norm="gn"),
    "resnet8_evonorm": dict(arch="resnet8_cifar", norm="evonorm"),
    "resnet8_mixstyle": dict(arch="resnet8_cifar", mixstyle_layers=2),
    "resnet8_frozen_stem": dict(arch="resnet8_cifar", freeze_stages=1),
    "vit_aux": dict(arch="vit_cifar", vit=dict(patch_size=4, depth=2, width=32, heads=4, aux_heads=1, dropout=0.0)),
    "vitn_all_options": dict(arch="vitn_cifar", vit=dict(patch_size=4, depth=2, width=32, heads=4, rel_pos=True, diag_mask=True, temperature="log", dropout=0.0)),
    "vitn_plain_tau_aux": dict(arch="vitn_cifar", vit=dict(patch_size=4, depth=2, width=32, heads=4, temperature="plain", aux_heads=1, dropout=0.0)),
}


def _data(n: int = 64, classes: int = 4, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(classes, 3, size, size, generator=g)
    y = torch.arange(n) % classes
    x = protos[y] + 0.3 * torch.randn(n, 3, size, size, generator=g)
    return x.clamp(0, 1), y


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_short_training_lowers_the_loss(name: str) -> None:
    torch.manual_seed(0)
    learned = name.startswith(("small_cnn", "vit"))  # exercise the learned normalizer on some families
    built = build_model(ModelConfig(**FAMILIES[name]), 4, data_cfg=DataConfig(normalize="learned" if learned else "none"))
    model = built.model
    x, y = _data()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(F.cross_entropy(model(x), y))

    model.train()
    forward_train(model, x[:16])  # initialise the normalizer's statistics before the first measurement
    before = eval_loss()
    for _step in range(40):
        model.train()
        idx = torch.randint(0, len(x), (16,))
        logits, aux = forward_train(model, x[idx])
        loss = F.cross_entropy(logits, y[idx]) + sum(F.cross_entropy(a, y[idx]) for a in aux)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    print(f"{name}: loss {before:.3f} -> {after:.3f}")
    assert after < 0.5 * before, (before, after)

"""Issue 6's ResNet options: GroupNorm, EvoNorm-S0, MixStyle, freezing."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from fgbench.recipe import ModelConfig
from fgbench.train.models import build_model, forward_train, set_trainable
from fgbench.train.models.mixstyle import MixStyle
from fgbench.train.models.norms import EvoBasicBlock, EvoBottleneck, EvoNormS0


def _batchnorms(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._NormBase)]


def _train_step(model: nn.Module, x: torch.Tensor) -> None:
    model.train()
    logits, _ = forward_train(model, x)
    logits.logsumexp(1).mean().backward()


@pytest.mark.parametrize("arch", ["resnet8_cifar", "resnet18", "resnet50"])
def test_groupnorm_swap_leaves_no_batchnorm(arch: str) -> None:
    built = build_model(ModelConfig(arch=arch, norm="gn"), 10)
    m = built.model
    assert _batchnorms(m) == []
    gns = [x for x in m.modules() if isinstance(x, nn.GroupNorm)]
    n_bn = len(_batchnorms(build_model(ModelConfig(arch=arch), 10).model))
    assert len(gns) == n_bn
    assert all(g.num_groups == 16 for g in gns)
    _train_step(m, torch.randn(2, 3, 32, 32))
    # GroupNorm has no batch statistics: a sample's output does not depend on the rest of its batch
    m.train()
    x = torch.randn(4, 3, 32, 32)
    assert torch.allclose(m(x)[:1], m(x[:1]), atol=1e-5)


@pytest.mark.parametrize("arch, block", [("resnet8_cifar", EvoBasicBlock), ("resnet18", EvoBasicBlock), ("resnet50", EvoBottleneck)])
def test_evonorm_swap_leaves_no_batchnorm_and_fuses_relu(arch: str, block: type) -> None:
    built = build_model(ModelConfig(arch=arch, norm="evonorm"), 10)
    m = built.model
    assert _batchnorms(m) == []
    assert isinstance(m.relu, nn.Identity) and isinstance(m.bn1, EvoNormS0) and m.bn1.v is not None
    blocks = [b for b in m.modules() if isinstance(b, block)]
    assert blocks and not any(type(b).__name__ in {"BasicBlock", "Bottleneck"} for b in m.modules())
    last = blocks[0].bn3 if block is EvoBottleneck else blocks[0].bn2
    assert last.v is None  # the norm before the residual addition has no non-linearity
    _train_step(m, torch.randn(2, 3, 32, 32))
    assert m.bn1.v.grad is not None


def test_evonorm_s0_matches_the_paper_formula() -> None:
    torch.manual_seed(0)
    evo = EvoNormS0(8, groups=4)
    with torch.no_grad():
        evo.v.uniform_(0.5, 1.5)
        evo.weight.uniform_(0.5, 1.5)
        evo.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, 8, 5, 5)
    g = x.reshape(3, 4, 2, 5, 5)
    std = (g.var(dim=(2, 3, 4), unbiased=False, keepdim=True) + 1e-5).sqrt().expand_as(g).reshape(3, 8, 5, 5)
    v, w, b = (t.view(1, -1, 1, 1) for t in (evo.v, evo.weight, evo.bias))
    expected = x * torch.sigmoid(v * x) / std * w + b
    assert torch.allclose(evo(x), expected, atol=1e-6)
    plain = EvoNormS0(8, groups=4, nonlinearity=False)
    assert torch.allclose(plain(x), x / std, atol=1e-6)
    # it is not a batch norm: per-sample statistics, identical in train and eval
    evo.eval()
    assert torch.allclose(evo(x)[:1], evo(x[:1]), atol=1e-6)


def test_evonorm_copies_pretrained_affine() -> None:
    from fgbench.train.models.norms import to_evonorm

    bn = nn.BatchNorm2d(16)
    with torch.no_grad():
        bn.weight.fill_(2.0)
        bn.bias.fill_(-1.0)
    evo = to_evonorm(bn, 32, nonlinearity=True)
    assert evo.groups == 16 and torch.equal(evo.weight, bn.weight) and torch.equal(evo.bias, bn.bias)


def test_mixstyle_is_identity_in_eval_and_mixes_statistics_in_training() -> None:
    ms = MixStyle(p=1.0, alpha=0.1)
    x = torch.randn(6, 4, 5, 5) * torch.arange(1, 7).view(6, 1, 1, 1) + torch.arange(6).view(6, 1, 1, 1)
    ms.eval()
    assert ms(x) is x
    ms.train()
    torch.manual_seed(3)
    y = ms(x)
    assert not torch.allclose(y, x)
    # the normalized content of each sample is kept: only its per-channel mean/std change
    def normed(t):
        return (t - t.mean((2, 3), keepdim=True)) / (t.var((2, 3), keepdim=True) + 1e-6).sqrt()

    assert torch.allclose(normed(y), normed(x), atol=1e-3)
    # every new mean lies within the range of the batch's means (a convex mix of two of them)
    mu_x, mu_y = x.mean((2, 3)), y.mean((2, 3))
    assert (mu_y >= mu_x.min(0).values - 1e-4).all() and (mu_y <= mu_x.max(0).values + 1e-4).all()
    assert torch.equal(MixStyle(p=0.0).train()(x), x)


def test_mixstyle_layers_in_the_model() -> None:
    built = build_model(ModelConfig(arch="resnet18", mixstyle_layers=3, mixstyle_p=1.0), 10)
    m = built.model
    assert [n for n, x in m.named_modules() if isinstance(x, MixStyle)] == ["layer1.mixstyle", "layer2.mixstyle", "layer3.mixstyle"]
    assert set(m.state_dict()) == set(build_model(ModelConfig(arch="resnet18"), 10).model.state_dict())
    x = torch.randn(4, 3, 32, 32)
    m.eval()
    a, b = m(x), m(x)
    assert torch.equal(a, b)  # identity in eval: deterministic
    _train_step(m, x)


def test_freezing_stem_and_stages() -> None:
    built = build_model(ModelConfig(arch="resnet18", freeze_stages=3), 10)
    m = built.model
    frozen_prefixes = ("conv1.", "bn1.", "layer1.", "layer2.")
    for name, p in m.named_parameters():
        assert p.requires_grad == (not name.startswith(frozen_prefixes)), name
    assert isinstance(m.bn1, FrozenBatchNorm2d) and isinstance(m.layer2[0].downsample[1], FrozenBatchNorm2d)
    assert isinstance(m.layer3[0].bn1, nn.BatchNorm2d)
    before = m.layer1[0].bn1.running_mean.clone()
    _train_step(m, torch.randn(2, 3, 32, 32))
    assert torch.equal(m.layer1[0].bn1.running_mean, before)  # frozen statistics even in train mode
    assert all(p.grad is None for n, p in m.named_parameters() if n.startswith(frozen_prefixes))
    assert m.layer3[0].conv1.weight.grad is not None
    # a later "train everything" stage does not thaw the frozen part
    set_trainable(m, "all")
    assert not m.conv1.weight.requires_grad and m.layer3[0].conv1.weight.requires_grad
    assert "frozen (no gradient, FrozenBatchNorm2d): conv1, bn1, layer1, layer2" in built.report


def test_freeze_everything_but_the_classifier_is_a_linear_probe() -> None:
    m = build_model(ModelConfig(arch="resnet8_cifar", freeze_stages=4), 10).model
    assert {n for n, p in m.named_parameters() if p.requires_grad} == {"fc.weight", "fc.bias"}
    assert not any(isinstance(x, nn.BatchNorm2d) for x in m.modules())


def test_frozen_checkpoint_round_trip() -> None:
    a = build_model(ModelConfig(arch="resnet8_cifar", freeze_stages=2), 10).model
    b = build_model(ModelConfig(arch="resnet8_cifar", freeze_stages=2), 10).model
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(a.eval()(x), b.eval()(x))

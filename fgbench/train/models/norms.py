"""Normalization swaps for ResNets: GroupNorm (enhuiz ``-gn``) and EvoNorm-S0 (hoya ``E``).

Decisions:

* EvoNorm-S0 (Liu et al. 2020, "Evolving Normalization-Activation Layers") is
  ``y = x * sigmoid(v * x) / group_std(x) * gamma + beta``: a normalization *and* an activation,
  so it replaces a BatchNorm+ReLU pair. The hoya seed meant to use it but its replacement never
  took effect (and its layer referenced undefined functions); this one is written from the paper.
  group_std is the population standard deviation over (channels of the group, H, W) per sample.
* torchvision's blocks share one ``relu`` module between the inner activation and the one after
  the residual addition, so dropping "the ReLU after bn1" cannot be done by swapping modules. The
  blocks are therefore replaced by ``EvoBasicBlock`` / ``EvoBottleneck``, which take over the
  original convolutions (same state-dict keys: ``conv1``, ``bn1``, ... ``downsample.1``) and
  drop the ReLU wherever an EvoNorm with its non-linearity stands in for it. The ReLU after the
  residual addition stays (it follows no norm).
* A BatchNorm that is *not* followed by a ReLU (the last of each residual branch, the shortcut's)
  becomes EvoNorm-S0 without its non-linearity: ``x / group_std(x) * gamma + beta``. (timm's
  ``apply_act=False`` keeps only the affine part; we keep the normalization, which is what the
  swapped BatchNorm did.)
* The affine parameters of the replaced BatchNorm/GroupNorm are copied (``weight``/``bias`` keep
  their names), so pretrained gammas and betas survive; running statistics have no counterpart
  and are dropped (reported).
* Group counts are reduced to the greatest common divisor with a layer's channels when the
  channels are not a multiple (16 groups on a 16-channel CIFAR layer is fine; 32 on 16 becomes 16).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from torchvision.models.resnet import BasicBlock, Bottleneck


def group_std(x: Tensor, groups: int, eps: float) -> Tensor:
    b, c, h, w = x.shape
    g = x.float().reshape(b, groups, c // groups, h, w)
    std = g.var(dim=(2, 3, 4), unbiased=False, keepdim=True).add(eps).sqrt()
    return std.expand_as(g).reshape(b, c, h, w).to(x.dtype)


class EvoNormS0(nn.Module):
    def __init__(self, num_features: int, groups: int = 32, eps: float = 1e-5, nonlinearity: bool = True):
        super().__init__()
        self.num_features = num_features
        self.groups = math.gcd(num_features, groups)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.v = nn.Parameter(torch.ones(num_features)) if nonlinearity else None

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1, 1, 1)
        std = group_std(x, self.groups, self.eps)
        if self.v is not None:
            num = x * torch.sigmoid(self.v.view(shape).to(x.dtype) * x)
        else:
            num = x
        return num / std * self.weight.view(shape).to(x.dtype) + self.bias.view(shape).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_features}, groups={self.groups}, nonlinearity={self.v is not None}"


def _copy_affine(src: nn.Module, dst: "nn.GroupNorm | EvoNormS0") -> None:
    w, b = getattr(src, "weight", None), getattr(src, "bias", None)
    with torch.no_grad():
        if isinstance(w, torch.Tensor) and w.shape == dst.weight.shape:
            dst.weight.copy_(w)
        if isinstance(b, torch.Tensor) and b.shape == dst.bias.shape:
            dst.bias.copy_(b)


def to_groupnorm(bn: nn.BatchNorm2d, groups: int) -> nn.GroupNorm:
    gn = nn.GroupNorm(math.gcd(bn.num_features, groups), bn.num_features, eps=bn.eps, affine=True)
    if bn.affine:
        _copy_affine(bn, gn)
    return gn


def to_evonorm(bn: nn.Module, groups: int, nonlinearity: bool) -> EvoNormS0:
    if isinstance(bn, nn.BatchNorm2d):
        channels = bn.num_features
    elif isinstance(bn, nn.GroupNorm):
        channels = bn.num_channels
    else:
        raise TypeError(f"EvoNorm-S0 replaces a BatchNorm2d or a GroupNorm, not {type(bn).__name__}")
    evo = EvoNormS0(channels, groups, nonlinearity=nonlinearity)
    _copy_affine(bn, evo)
    return evo


def swap_groupnorm(model: nn.Module, groups: int) -> int:
    """Replace every BatchNorm2d with GroupNorm; returns how many were replaced."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    for n, bn in found:
        model.set_submodule(n, to_groupnorm(bn, groups))
    return len(found)


class EvoBasicBlock(nn.Module):
    """torchvision's BasicBlock with EvoNorm-S0: conv-evo(act)-conv-evo(no act) + shortcut, ReLU."""

    def __init__(self, block: "BasicBlock", groups: int):
        super().__init__()
        self.conv1 = block.conv1
        self.bn1 = to_evonorm(block.bn1, groups, nonlinearity=True)
        self.conv2 = block.conv2
        self.bn2 = to_evonorm(block.bn2, groups, nonlinearity=False)
        self.downsample = _evo_downsample(block.downsample, groups)
        self.relu = nn.ReLU(inplace=True)
        self.stride = block.stride

    @property
    def residual_last_norm(self) -> nn.Module:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.bn1(self.conv1(x))))
        return self.relu(out + identity)


class EvoBottleneck(nn.Module):
    """torchvision's Bottleneck with EvoNorm-S0 in place of its three BN(+ReLU)s."""

    def __init__(self, block: "Bottleneck", groups: int):
        super().__init__()
        self.conv1 = block.conv1
        self.bn1 = to_evonorm(block.bn1, groups, nonlinearity=True)
        self.conv2 = block.conv2
        self.bn2 = to_evonorm(block.bn2, groups, nonlinearity=True)
        self.conv3 = block.conv3
        self.bn3 = to_evonorm(block.bn3, groups, nonlinearity=False)
        self.downsample = _evo_downsample(block.downsample, groups)
        self.relu = nn.ReLU(inplace=True)
        self.stride = block.stride

    @property
    def residual_last_norm(self) -> nn.Module:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn1(self.conv1(x))
        out = self.bn2(self.conv2(out))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _evo_downsample(ds: nn.Module | None, groups: int) -> nn.Module | None:
    if ds is None:
        return None
    if not isinstance(ds, nn.Sequential):
        raise TypeError(f"a ResNet shortcut is a Sequential (conv, norm), not {type(ds).__name__}")
    for i, m in enumerate(ds):
        if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            ds[i] = to_evonorm(m, groups, nonlinearity=False)
    return ds


def swap_evonorm(model: nn.Module, groups: int) -> int:
    """Replace a ResNet's BatchNorm(+ReLU) pairs with EvoNorm-S0; returns the number of norms replaced."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    count = 0
    # the stem: conv1 -> bn1 -> relu: the EvoNorm's non-linearity replaces the ReLU
    model.set_submodule("bn1", to_evonorm(model.get_submodule("bn1"), groups, nonlinearity=True))
    model.set_submodule("relu", nn.Identity())
    count += 1
    for name, m in list(model.named_modules()):
        if isinstance(m, Bottleneck):
            model.set_submodule(name, EvoBottleneck(m, groups))
            count += 3 + (m.downsample is not None)
        elif isinstance(m, BasicBlock):
            model.set_submodule(name, EvoBasicBlock(m, groups))
            count += 2 + (m.downsample is not None)
    left = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
    if left:
        raise RuntimeError(f"EvoNorm swap left BatchNorm layers behind: {left}")
    return count

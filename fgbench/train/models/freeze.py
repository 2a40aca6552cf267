"""Freezing the stem and the first N stages of a ResNet (enhuiz's ``finetune_level``).

Frozen parts get ``requires_grad = False`` and their BatchNorms become
``torchvision.ops.FrozenBatchNorm2d`` (statistics and affine parameters held as buffers), so
train mode cannot update their running statistics either.

Decisions:

* The frozen prefixes are remembered on the model (``fgbench_frozen_prefixes``, a plain attribute
  that deep copies and pickles keep), so ``set_trainable("all")`` at a later stage does not
  unfreeze them by accident.
* FrozenBatchNorm2d's buffers keep the BatchNorm's key names (``weight``, ``bias``,
  ``running_mean``, ``running_var``), so a checkpoint of the frozen model loads into it and a
  file of the unfrozen model loads into the frozen one; only ``num_batches_tracked`` goes away.
"""

from __future__ import annotations

from torch import nn

FROZEN_ATTR = "fgbench_frozen_prefixes"
"""The model attribute that remembers the frozen prefixes (see the module docstring)."""

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")


def _prefixes(model: nn.Module, n: int) -> list[str]:
    out: list[str] = []
    for stage in STAGES[:n]:
        if stage == "stem":
            out += ["conv1", "bn1"]
        else:
            if not hasattr(model, stage):
                raise ValueError(f"model has no {stage} to freeze")
            out.append(stage)
    return out


def freeze_stages(model: nn.Module, n: int) -> list[str]:
    """Freeze the stem and stages ``1..n-1``; returns the frozen module names."""
    from torchvision.ops import FrozenBatchNorm2d

    prefixes = _prefixes(model, n)
    for prefix in prefixes:
        part = model.get_submodule(prefix)
        for name, m in list(part.named_modules()):
            if isinstance(m, nn.BatchNorm2d):
                frozen = FrozenBatchNorm2d(m.num_features, eps=m.eps)
                frozen.load_state_dict(m.state_dict(), strict=False)
                full = f"{prefix}.{name}" if name else prefix
                model.set_submodule(full, frozen)
        for p in model.get_submodule(prefix).parameters():
            p.requires_grad_(False)
    setattr(model, FROZEN_ATTR, tuple(prefixes))  # not a parameter, buffer or submodule: a plain attribute
    return prefixes


def is_frozen_param(model: nn.Module, name: str) -> bool:
    prefixes = getattr(model, FROZEN_ATTR, ())  # absent on a model that was never frozen
    return any(name == p or name.startswith(p + ".") for p in prefixes)

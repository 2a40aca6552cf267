"""Optimizer from the recipe's ``optim`` section (torch.optim), with optional no-decay groups.

Decisions:

* Every parameter goes to the optimizer, trainable or not. Frozen ones (a ``bn_fc`` stage) have no
  gradient and torch's optimizers skip them, so the same optimizer layout serves every stage and a
  resumed run rebuilds exactly the parameter list its checkpoint's optimizer state refers to.
* ``no_decay_norm_bias``: parameters of normalization layers and every parameter with fewer than
  two dimensions (biases, norm scales, scalar temperatures) get weight decay 0. Without it, the
  decay reaches all parameters, as in every seed.
"""

from __future__ import annotations

import torch
from torch import nn

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def param_groups(model: nn.Module, weight_decay: float, no_decay_norm_bias: bool) -> list[dict]:
    if not no_decay_norm_bias or weight_decay == 0:
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            (no_decay if isinstance(module, _NORMS) or p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(cfg, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay, cfg.no_decay_norm_bias)
    match cfg.name:
        case "sgd":
            return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
        case "adam":
            return torch.optim.Adam(groups, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps)
        case "adamw":
            return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps)
        case "radam":
            return torch.optim.RAdam(groups, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                     decoupled_weight_decay=cfg.decoupled_weight_decay)
    raise ValueError(f"unknown optimizer {cfg.name!r}")

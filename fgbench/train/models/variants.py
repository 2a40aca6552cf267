"""The ResNet options of issue 6 applied by the builder: norm swaps, MixStyle, freezing.

Each function returns report lines. The recipe validator already refuses these options on
non-ResNet architectures; the checks here repeat it for callers that build from code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from fgbench.errors import UserError

if TYPE_CHECKING:
    from fgbench.recipe import ModelConfig


def _need_resnet(field: str, cfg: "ModelConfig", resnet: bool) -> None:
    if not resnet:
        raise UserError(f"model.{field}: applies to ResNets only, not to '{cfg.arch}'")


def apply_structure(model: nn.Module, cfg: "ModelConfig", *, resnet: bool) -> list[str]:
    from . import mixstyle, norms

    report: list[str] = []
    match cfg.norm:
        case "bn":
            pass
        case "gn":
            _need_resnet("norm", cfg, resnet)
            n = norms.swap_groupnorm(model, cfg.gn_groups)
            report.append(f"norm: {n} BatchNorm layers replaced by GroupNorm({cfg.gn_groups} groups; affine copied)")
        case "evonorm":
            _need_resnet("norm", cfg, resnet)
            n = norms.swap_evonorm(model, cfg.evonorm_groups)
            report.append(
                f"norm: {n} BatchNorm layers replaced by EvoNorm-S0 ({cfg.evonorm_groups} groups; BN+ReLU pairs fused; "
                "affine copied, running statistics dropped)"
            )
    if cfg.mixstyle_layers:
        _need_resnet("mixstyle_layers", cfg, resnet)
        try:
            names = mixstyle.insert_mixstyle(model, cfg.mixstyle_layers, cfg.mixstyle_p, cfg.mixstyle_alpha)
        except ValueError as err:
            raise UserError(f"model.mixstyle_layers: {err}") from None
        report.append(f"MixStyle(p={cfg.mixstyle_p}, alpha={cfg.mixstyle_alpha}) after {', '.join(names)} (training only)")
    return report


def apply_freezing(model: nn.Module, cfg: "ModelConfig", *, resnet: bool) -> list[str]:
    from .freeze import freeze_stages

    if not cfg.freeze_stages:
        return []
    _need_resnet("freeze_stages", cfg, resnet)
    try:
        names = freeze_stages(model, cfg.freeze_stages)
    except ValueError as err:
        raise UserError(f"model.freeze_stages: {err}") from None
    return [f"frozen (no gradient, FrozenBatchNorm2d): {', '.join(names)}"]

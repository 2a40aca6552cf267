"""Build the network a recipe's ``model`` section describes.

The order of operations is the contract (each step's report lines say what happened):

1. the architecture: fgbench's own (``resnet8_cifar``, ``resnet20_cifar``, ``small_cnn``, ``toy_dilated``,
   ``vit_cifar``, ``vitn_cifar``) or any torchvision classification model by name, built with the
   right head size; with torchvision weights it is built pretrained and its head replaced;
2. structural changes: the CIFAR stem, GroupNorm / EvoNorm-S0 in place of BatchNorm, MixStyle;
3. zero-init of the last norm of each residual branch (before any *file* is loaded, after
   torchvision weights: as the hoya seed, the zero gamma applies even to pretrained branches);
4. a ``file`` or ``moco`` state dict, loaded by key and shape (so a file of an identical model,
   e.g. the first FixRes stage, restores everything, its classifier included);
5. freezing the stem and the first N stages (FrozenBatchNorm2d, no gradients);
6. dropout on the classifier input; 7. the learned input normalizer around it all.

Decisions:

* The head size is ``model.num_classes`` when set (the enhuiz seed's 1000-output head on
  CIFAR-100), else the dataset's class count.
* Dropout is applied by swapping the classifier for ``DropoutLinear``, a Linear that drops its
  input: the state-dict keys stay ``fc.weight``/``fc.bias``, so checkpoints load either way. When
  the architecture already has a Dropout right before its classifier (EfficientNet, MobileNet,
  VGG...), that one's probability is set instead of adding a second.
* Models with auxiliary heads (our ViT-aux, torchvision's GoogLeNet/Inception without
  pretrained weights) return extra outputs only in training mode; ``forward_train`` turns every
  form into ``(logits, [aux logits])`` so the trainer handles one shape. Going through
  ``model(x)`` (not a side method) keeps DDP and torch.compile in the path.
* Helpers that inspect a model (``classifier``, ``extra_metrics``) look through DDP
  (``.module``), torch.compile (``._orig_mod``), ``AveragedModel`` and the normalizer wrapper.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from fgbench.errors import UserError
from fgbench.recipe import FileWeights, MocoWeights, TorchvisionWeights

from . import cifar, pretrained

if TYPE_CHECKING:
    from fgbench.recipe import DataConfig, ModelConfig

OWN_ARCHS = {
    "resnet8_cifar": cifar.resnet8_cifar,
    "resnet20_cifar": cifar.resnet20_cifar,
    "small_cnn": cifar.small_cnn,
    "toy_dilated": cifar.toy_dilated,
}


# Models whose training step ran faster in channels_last than in NCHW on the CPU, on both machines
# measured with benchmarks/cpu_options.py (BENCHMARKS.md): resnet8_cifar x1.35 / x1.60, resnet20_cifar
# x1.26 / x1.36, small_cnn x1.20 / x1.33. Not on both: toy_dilated x0.84 / x1.09, shufflenet_v2_x0_5
# at 224 px x0.97 / x1.18; slower on both: torchvision resnet18 at 32 px x0.90 / x0.89.
CHANNELS_LAST_ON_CPU = ("resnet8_cifar", "resnet20_cifar", "small_cnn")


def channels_last_for(setting: object, arch: str, device_type: str) -> tuple[bool, str]:
    """``runtime.channels_last`` resolved for this model and device: (use it, why)."""
    if setting is True or setting is False:
        return bool(setting), f"runtime.channels_last = {str(setting).lower()}"
    if device_type == "cpu":
        if arch in CHANNELS_LAST_ON_CPU:
            return True, f"auto: {arch} trains faster in channels_last on the CPU"
        return False, f"auto: {arch} is not one of the models measured faster in channels_last on the CPU"
    return False, f"auto: channels_last is not measured on {device_type} yet"


@dataclass
class BuiltModel:
    model: nn.Module
    report: list[str] = field(default_factory=list)


class DropoutLinear(nn.Linear):
    """A Linear layer that applies dropout to its input; same parameters and keys as nn.Linear."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, p: float = 0.0):
        super().__init__(in_features, out_features, bias=bias)
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(nn.functional.dropout(x, self.p, self.training))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", dropout={self.p}"


# ------------------------------------------------------------------------------ inspection


def unwrap(model: nn.Module) -> nn.Module:
    """The bare network inside DDP, torch.compile, AveragedModel and the learned normalizer."""
    from .normalizer import NormalizedModel

    seen = 0
    while seen < 10:
        seen += 1
        compiled = getattr(model, "_orig_mod", None)  # torch.compile's wrapper
        wrapped = getattr(model, "module", None)
        if isinstance(compiled, nn.Module):
            model = compiled
        elif isinstance(model, NormalizedModel):
            model = model.model
        elif isinstance(wrapped, nn.Module) and type(model).__name__ in {
            "DistributedDataParallel", "DataParallel", "AveragedModel"
        }:
            model = wrapped
        else:
            break
    return model


def _classifier_name(model: nn.Module) -> str:
    name = getattr(model, "classifier_name", None)
    if isinstance(name, str):
        return name
    fc = getattr(model, "fc", None)
    if isinstance(fc, nn.Linear):
        return "fc"
    last = None
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            last = n
    if last is None:  # SqueezeNet: a 1x1 conv is the classifier
        for n, m in model.named_modules():
            if isinstance(m, nn.Conv2d) and n.startswith("classifier"):
                last = n
    if last is None:
        raise ValueError(f"cannot find the classifier of {type(model).__name__}")
    return last


def classifier(model: nn.Module) -> nn.Module:
    """The final classification layer (``fc`` of a ResNet, ``head`` of our ViTs, ``classifier[-1]`` ...)."""
    inner = unwrap(model)
    return inner.get_submodule(_classifier_name(inner))


def _replace_head(model: nn.Module, num_classes: int) -> str | None:
    name = _classifier_name(model)
    old = model.get_submodule(name)
    if isinstance(old, nn.Linear):
        if old.out_features == num_classes:
            return None
        new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
        shape = f"({old.out_features}, {old.in_features}) -> ({num_classes}, {old.in_features})"
    elif isinstance(old, nn.Conv2d):
        if old.out_channels == num_classes:
            return None
        k, s, p = old.kernel_size, old.stride, old.padding  # a Conv2d's: pairs (padding: or a string)
        new = nn.Conv2d(old.in_channels, num_classes, (k[0], k[1]), (s[0], s[1]),
                        p if isinstance(p, str) else (p[0], p[1]), bias=old.bias is not None)
        shape = f"{old.out_channels} -> {num_classes} channels"
    else:
        raise ValueError(f"cannot replace classifier {name} of type {type(old).__name__}")
    model.set_submodule(name, new)
    return f"replaced classifier {name}: {shape} (new random initialisation)"


def _set_dropout(model: nn.Module, p: float) -> str:
    name = _classifier_name(model)
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, nn.Sequential) and child.isdigit() and int(child) > 0:
        before = parent[int(child) - 1]
        if isinstance(before, nn.Dropout):
            before.p = p
            return f"set the classifier's dropout {parent_name}.{int(child) - 1} to p={p}"
    old = model.get_submodule(name)
    if not isinstance(old, nn.Linear):
        raise UserError(f"model.dropout: cannot add dropout before the {type(old).__name__} classifier of this architecture")
    new = DropoutLinear(old.in_features, old.out_features, bias=old.bias is not None, p=p)
    new.load_state_dict(old.state_dict())
    model.set_submodule(name, new)
    return f"dropout p={p} on the input of classifier {name}"


def is_resnet(model: nn.Module) -> bool:
    from torchvision.models import ResNet

    return isinstance(model, (ResNet, cifar.CifarResNet))


# ------------------------------------------------------------------------------ building


def _unknown_arch(arch: str, known: list[str]) -> UserError:
    close = difflib.get_close_matches(arch, known, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return UserError(
        f"model.arch: unknown architecture '{arch}'{hint}; use a torchvision classification model name "
        f"(resnet18, resnet50, efficientnet_b2, ...) or one of fgbench's: {', '.join(sorted(OWN_ARCHS) + ['vit_cifar', 'vitn_cifar'])}"
    )


def _base_model(cfg: "ModelConfig", out: int) -> tuple[nn.Module, list[str]]:
    import torchvision.models as tvm

    arch = cfg.arch
    source = cfg.pretrained.source
    if arch in OWN_ARCHS or arch in ("vit_cifar", "vitn_cifar"):
        if source == "torchvision":
            raise UserError(f"model.pretrained.source: '{arch}' is fgbench's own architecture and has no torchvision weights")
        if arch in OWN_ARCHS:
            return OWN_ARCHS[arch](out), [f"built {arch} with {out} outputs"]
        from .vit import build_vit

        return build_vit(cfg, out), [f"built {arch} with {out} outputs"]

    known = tvm.list_models(module=tvm)
    if arch not in known:
        raise _unknown_arch(arch, known)
    kwargs = {}
    if cfg.stochastic_depth is not None:
        import inspect

        # builders take **kwargs and pass them to the model class: ask the class
        cls = inspect.signature(tvm.get_model_builder(arch)).return_annotation
        if "stochastic_depth_prob" not in inspect.signature(cls).parameters:
            raise UserError(f"model.stochastic_depth: torchvision's {arch} has no stochastic depth")
        kwargs["stochastic_depth_prob"] = cfg.stochastic_depth
    if isinstance(cfg.pretrained, TorchvisionWeights):
        model, report = pretrained.build_torchvision_pretrained(arch, cfg.pretrained.weights, **kwargs)
        line = _replace_head(model, out)
        if line:
            report.append(line)
        return model, report
    try:
        model = tvm.get_model(arch, weights=None, num_classes=out, **kwargs)
    except (ValueError, TypeError) as err:
        raise UserError(f"model.arch: cannot build {arch} with {out} classes: {err}") from None
    return model, [f"built torchvision {arch} with {out} outputs"]


def _pytorch_default_init(model: nn.Module) -> str:
    """Every layer with parameters of its own back to PyTorch's default (``reset_parameters()``:
    kaiming-uniform with a = sqrt(5) for convolutions and linear layers, ones and zeros for norms)."""
    n = 0
    for m in model.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset) and next(m.parameters(recurse=False), None) is not None:
            reset()
            n += 1
    return f"init: {n} layers reset to PyTorch's per-layer defaults"


def _cifar_stem(model: nn.Module) -> str:
    if isinstance(model, cifar.CifarResNet):
        return "cifar_stem: resnet*_cifar already has a 3x3 stride-1 stem"
    old = model.get_submodule("conv1")
    if not isinstance(old, nn.Conv2d):
        raise ValueError(f"cifar_stem: conv1 of {type(model).__name__} is a {type(old).__name__}, not a Conv2d")
    conv = nn.Conv2d(old.in_channels, old.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    model.conv1 = conv
    model.maxpool = nn.Identity()
    return "cifar_stem: conv1 is now 3x3 stride 1 (new random initialisation), max-pool removed"


def residual_last_norms(model: nn.Module) -> list[nn.Module]:
    """The last norm layer of each residual branch: bn2 of a BasicBlock, bn3 of a Bottleneck."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    out = []
    for m in model.modules():
        if isinstance(m, Bottleneck):
            out.append(m.bn3)
        elif isinstance(m, BasicBlock):
            out.append(m.bn2)
        elif hasattr(m, "residual_last_norm"):
            out.append(m.residual_last_norm)
    return out


def _zero_init_residual(model: nn.Module) -> str:
    norms = residual_last_norms(model)
    n = 0
    for norm in norms:
        w = getattr(norm, "weight", None)
        if isinstance(w, nn.Parameter):
            with torch.no_grad():
                w.zero_()
            n += 1
    return f"zero_init_residual: zeroed the last norm weight of {n} residual branches"


def build_model(model_cfg: "ModelConfig", num_classes: int, *, data_cfg: "DataConfig | None" = None) -> BuiltModel:
    """The network for ``model_cfg`` with ``model_cfg.num_classes or num_classes`` outputs."""
    cfg = model_cfg
    out = cfg.num_classes or num_classes
    model, report = _base_model(cfg, out)
    resnet = is_resnet(model)

    if cfg.cifar_stem:
        if not resnet:
            raise UserError(f"model.cifar_stem: only ResNets have the stem it replaces, not '{cfg.arch}'")
        report.append(_cifar_stem(model))

    from . import variants

    report += variants.apply_structure(model, cfg, resnet=resnet)

    if cfg.init == "pytorch":
        report.append(_pytorch_default_init(model))

    if cfg.zero_init_residual:
        if not resnet:
            raise UserError(f"model.zero_init_residual: '{cfg.arch}' has no residual blocks of a ResNet")
        report.append(_zero_init_residual(model))

    match cfg.pretrained:  # the variant class is the source tag's
        case FileWeights() as fw:
            obj = pretrained.read_weights_file(fw.path, "model.pretrained.path")
            sd = pretrained.extract_state_dict(obj, fw.key, fw.strip_prefix, fw.path, "model.pretrained")
            report += pretrained.load_matching(model, sd, fw.path, "model.pretrained")
        case MocoWeights() as mw:
            obj = pretrained.read_weights_file(mw.path, "model.pretrained.path")
            sd = pretrained.moco_state_dict(obj, mw.path)
            report.append(f"MoCo: kept {len(sd)} query-encoder tensors (module.encoder_q.* without fc), prefix stripped")
            report += pretrained.load_matching(model, sd, mw.path, "model.pretrained")
        case _:  # none, torchvision (built above)
            pass

    report += variants.apply_freezing(model, cfg, resnet=resnet)

    if cfg.dropout is not None:
        report.append(_set_dropout(model, cfg.dropout))

    if data_cfg is not None and data_cfg.normalize == "learned":
        from .normalizer import LearnedNormalizer, NormalizedModel

        per_channel = cfg.normalizer_per_channel
        model = NormalizedModel(model, LearnedNormalizer(per_channel=per_channel))
        report.append(f"learned input normalizer ({'per channel' if per_channel else 'global'}, momentum 0.01)")

    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    report.append(f"{n_params / 1e6:.2f} M parameters, {n_train / 1e6:.2f} M trainable")
    return BuiltModel(model=model, report=report)


# ------------------------------------------------------------------------------ training helpers


NORM_TYPES: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def _is_norm(m: nn.Module) -> bool:
    from .norms import EvoNormS0

    return isinstance(m, NORM_TYPES + (EvoNormS0,))


def set_trainable(model: nn.Module, mode: Literal["all", "bn_fc"]) -> None:
    """``all``: every parameter trains. ``bn_fc``: only normalization layers and the classifier
    (the FixRes paper's fine-tuning). Parameters frozen by ``model.freeze_stages`` stay frozen."""
    from .freeze import is_frozen_param

    inner = unwrap(model)
    head = {id(p) for p in classifier(inner).parameters()}
    norm_params = {id(p) for m in inner.modules() if _is_norm(m) for p in m.parameters(recurse=False)}
    for name, p in inner.named_parameters():
        if is_frozen_param(inner, name):
            p.requires_grad_(False)
        elif mode == "all":
            p.requires_grad_(True)
        elif mode == "bn_fc":
            p.requires_grad_(id(p) in head or id(p) in norm_params)
        else:
            raise ValueError(f"unknown trainable mode {mode!r}")


def forward_train(model: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Logits and auxiliary logits (empty for most models) of a forward pass in training mode."""
    out = model(x)
    if isinstance(out, Tensor):
        return out, []
    # torchvision InceptionOutputs(logits, aux_logits), GoogLeNetOutputs(logits, aux2, aux1), our ModelOutputs(logits, aux)
    logits, *rest = tuple(out)
    aux: list[Tensor] = []
    for r in rest:
        if isinstance(r, Tensor):
            aux.append(r)
        elif isinstance(r, (list, tuple)):
            aux.extend(t for t in r if isinstance(t, Tensor))
    return logits, aux


def extra_metrics(model: nn.Module) -> dict:
    """Model-specific numbers worth logging, e.g. ``{"taus": [...]}`` (the mean learned softmax
    temperature of each ViT layer). Empty for most models."""
    inner = unwrap(model)
    fn = getattr(inner, "extra_metrics", None)
    return fn() if callable(fn) else {}

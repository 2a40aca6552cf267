"""The recipe: one declarative description of a training run, read from TOML.

Decisions:

* Each field is declared once, with its bounds and a docstring. ``use_attribute_docstrings`` turns
  the docstring into ``Field.description``, which the README's recipe reference and the TUI form's
  help text are generated from. Adding a field here adds it to both.
* Unknown keys are errors (``extra="forbid"``) so that a typo fails loudly instead of silently
  training with a default.
* A choice that brings its own fields (optimizer, LR schedule, pretrained source) is a
  discriminated union on a tag field; the TUI shows a variant picker from it.
* Validators only check. They never fill in or rewrite values, so what ``recipe show`` prints is
  what the user wrote plus the declared defaults, nothing more.
* Optional fields default to ``None`` because TOML has no null; ``save_recipe`` drops them.
* This module is in the pure zone: no torch, no textual.
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence, Union

import tomli_w
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from fgbench.atomic import atomic_write_text
from fgbench.errors import RecipeError

SCHEMA_VERSION = 1

DatasetName = Literal[
    "synthetic",
    "folder",
    "cifar10",
    "cifar100",
    "cub200",
    "stanford_cars",
    "fgvc_aircraft",
    "flowers102",
    "oxford_pets",
    "intel_scenes",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=False)


def _tagged_union(tag: str, *variants: type[BaseModel]) -> Any:
    """A discriminated union on ``tag`` whose first variant is the default when the tag is left out,
    so ``--set optim.lr=0.01`` works on a recipe that never wrote an ``[optim]`` table."""
    tags = [v.model_fields[tag].default for v in variants]

    def pick(value: Any) -> str | None:
        if isinstance(value, dict):
            return value.get(tag, tags[0])
        return getattr(value, tag, None)

    members = tuple(Annotated[v, Tag(t)] for v, t in zip(variants, tags))
    return Annotated[
        Union[members],  # type: ignore[valid-type]
        Discriminator(pick),
    ]


def union_members(annotation: Any) -> list[type[BaseModel]] | None:
    """The variant classes of a tagged-union annotation (as on ``FieldInfo.annotation``), else None."""
    import typing

    if typing.get_origin(annotation) is not Union:
        return None
    members = []
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is Annotated:
            arg = typing.get_args(arg)[0]
        if not (isinstance(arg, type) and issubclass(arg, BaseModel)):
            return None
        members.append(arg)
    return members if len(members) > 1 else None


def union_tag(members: list[type[BaseModel]]) -> str:
    """The tag field shared by a union's variants (``name`` or ``source``)."""
    for tag in ("name", "source"):
        if all(tag in m.model_fields for m in members):
            return tag
    raise ValueError(f"no tag field shared by {members}")


# ---------------------------------------------------------------------------------------- data


class DataConfig(_Section):
    dataset: DatasetName = "synthetic"
    """Which dataset to train on: a catalog entry (see `fgbench data list`), `synthetic` (the
    built-in offline dataset) or `folder` (your own `train/` and `test/` or `val/` class folders)."""

    root: str | None = None
    """Where the dataset lives. Required for `folder`; for catalog datasets it overrides the
    prepared location under the fgbench data directory."""

    train_size: int = Field(224, ge=8, le=2048)
    """Side of the square training crop in pixels."""

    test_size: int = Field(224, ge=8, le=2048)
    """Side of the square test crop in pixels."""

    train_crop: Literal["random_resized", "pad_crop", "resize_crop", "resize"] = "random_resized"
    """Training crop policy. `random_resized`: RandomResizedCrop(train_size, crop_scale).
    `pad_crop`: pad by `crop_padding` then RandomCrop(train_size), as used for CIFAR.
    `resize_crop`: Resize(`train_resize`) then RandomCrop(train_size, padding=`crop_padding`),
    as in the cyizhuo recipe. `resize`: Resize to train_size x train_size, no crop."""

    crop_scale: tuple[float, float] = (0.08, 1.0)
    """Area fraction range of RandomResizedCrop."""

    crop_padding: int = Field(4, ge=0, le=256)
    """Padding in pixels for `pad_crop` and `resize_crop`."""

    train_resize: tuple[int, int] | None = None
    """(height, width) to resize to before the random crop of `resize_crop`, e.g. (512, 512)."""

    test_crop: Literal["ratio", "fixed", "resize", "none"] = "ratio"
    """Test preprocessing. `ratio`: Resize(int(test_size * test_resize_ratio)) on the shorter side
    then CenterCrop(test_size). `fixed`: Resize(`test_resize`) then CenterCrop(test_size).
    `resize`: Resize to test_size x test_size. `none`: images are used as they are (CIFAR)."""

    test_resize_ratio: float = Field(1.14, ge=1.0, le=2.0)
    """Resize ratio of the `ratio` test crop (1.14 gives 255 for 224 and 510 for 448)."""

    test_resize: tuple[int, int] | None = None
    """(height, width) for the `fixed` test crop, e.g. (512, 512)."""

    normalize: Literal["imagenet", "dataset", "explicit", "none", "learned"] = "imagenet"
    """Input normalization: ImageNet mean/std, the dataset's own constants (CIFAR), the explicit
    `mean`/`std` below, none, or `learned` (running mean/variance inside the model, as enhuiz)."""

    mean: tuple[float, float, float] | None = None
    """Per-channel mean for `normalize = "explicit"`."""

    std: tuple[float, float, float] | None = None
    """Per-channel std for `normalize = "explicit"`."""

    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    """Fraction of the training set held out (stratified, seeded) as a validation split. The best
    epoch is chosen on it, never on the test set. 0 disables it."""

    val_seed: int = 0
    """Seed of the validation split, independent of the training seed."""

    batch_size: int = Field(64, ge=1, le=65536)
    """Training batch size (per process under torchrun unless `distributed.global_batch`)."""

    eval_batch_size: int | None = Field(None, ge=1, le=65536)
    """Evaluation batch size; defaults to twice the training batch size (per process)."""

    workers: int = Field(2, ge=0, le=128)
    """DataLoader worker processes (0 loads in the training process)."""

    drop_last: bool = True
    """Drop the last incomplete training batch of each epoch."""

    loader: Literal["auto", "standard", "cached", "device"] = "auto"
    """`standard`: decode images each epoch in worker processes. `cached`: decode each image once
    into a uint8 memory-mapped file (the same pixels, at the cost of disk). `device`: hold the
    whole split as uint8 tensors on the training device and crop/flip there in batches, with no
    DataLoader (pad-and-crop or resize, flips, mixing). `auto`: `device` when the decoded splits
    fit a memory budget and the augmentation allows it, else `cached` for JPEGs read every epoch
    when the disk allows, else `standard`; the log says which and why. All give the model the
    same images."""

    decode: Literal["auto", "off"] = "auto"
    """JPEG decoding at a reduced libjpeg scale (1/2, 1/4, 1/8). `auto`: only where it is lossless,
    i.e. every crop the transform can take (RandomResizedCrop at its smallest scale and extreme
    aspect ratio; the resize before a center crop) still has at least the output size in source
    pixels. `off`: always decode at full size."""

    skip_corrupt: bool = False
    """Skip images that cannot be decoded (counted in the metrics) instead of stopping."""

    crop_banner: bool = False
    """Crop the 20-pixel copyright banner at the bottom of FGVC Aircraft images."""

    @model_validator(mode="after")
    def _check(self) -> "DataConfig":
        if self.dataset == "folder" and not self.root:
            raise ValueError("dataset 'folder' needs data.root (a folder with train/ and test/ or val/)")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError("crop_scale must satisfy 0 < low <= high <= 1")
        if self.train_crop == "resize_crop" and self.train_resize is None:
            raise ValueError("train_crop 'resize_crop' needs data.train_resize, e.g. [512, 512]")
        if self.test_crop == "fixed" and self.test_resize is None:
            raise ValueError("test_crop 'fixed' needs data.test_resize, e.g. [512, 512]")
        if self.normalize == "explicit" and (self.mean is None or self.std is None):
            raise ValueError("normalize 'explicit' needs data.mean and data.std")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")
        return self


# --------------------------------------------------------------------------------------- model


class NoPretrained(_Section):
    source: Literal["none"] = "none"
    """Random initialisation."""


class TorchvisionWeights(_Section):
    source: Literal["torchvision"] = "torchvision"
    """ImageNet weights from torchvision's weights enums."""

    weights: str = "DEFAULT"
    """Weights enum member, e.g. `IMAGENET1K_V1` or `IMAGENET1K_V2`, or `DEFAULT`."""


class FileWeights(_Section):
    source: Literal["file"] = "file"
    """A local state-dict file, loaded by key and shape; what does not match is reported and skipped."""

    path: str
    """Path of the `.pth` / `.pt` file."""

    key: str | None = None
    """Key of the state dict inside the file (e.g. `model` or `state_dict`); the whole file if unset."""

    strip_prefix: str | None = None
    """Prefix removed from every key before matching, e.g. `module.`."""


class MocoWeights(_Section):
    source: Literal["moco"] = "moco"
    """A MoCo v2 checkpoint: keeps the query encoder (`module.encoder_q.*`) without its MLP head."""

    path: str
    """Path of the MoCo `.pth.tar` checkpoint."""


Pretrained = _tagged_union("source", NoPretrained, TorchvisionWeights, FileWeights, MocoWeights)


class ViTConfig(_Section):
    patch_size: int = Field(8, ge=1, le=64)
    """Side of the square patches in pixels; the image side must be a multiple of it (8 on 32x32 gives 16 tokens + cls)."""

    depth: int = Field(12, ge=1, le=64)
    """Number of transformer layers (all blocks together when there are auxiliary heads)."""

    width: int = Field(256, ge=8, le=4096)
    """Token width (embedding channels); even, and a multiple of `heads`."""

    heads: int = Field(4, ge=1, le=64)
    """Attention heads per layer."""

    mlp_ratio: float = Field(4.0, gt=0, le=16)
    """Hidden width of each layer's MLP as a multiple of `width`."""

    dropout: float = Field(0.1, ge=0, lt=1)
    """Dropout in the attention/MLP residual branches (and in the MLP)."""

    rel_pos: bool = False
    """`vitn_cifar` only: Transformer-XL relative position terms over the token sequence (cls
    included), with learnable u, v biases per head (enhuiz's `-ra` rows)."""

    diag_mask: bool = False
    """`vitn_cifar` only: a token may not attend to itself (the diagonal of the attention is
    masked: locality self-attention, arXiv 2112.13492; enhuiz's `-dm` rows)."""

    temperature: Literal["none", "log", "plain"] = "none"
    """`vitn_cifar` only: a learnable softmax temperature per layer. `log` learns log(1/tau) from 0
    (enhuiz `-lt`); `plain` learns tau from 1 and divides by it (enhuiz `-ltv`). The mean tau of each
    layer is logged as the `taus` metric."""

    aux_heads: int = Field(0, ge=0, le=16)
    """Auxiliary classification heads: the layers are split into `aux_heads + 1` equal blocks, each
    followed by its own head; the cross-entropy of every auxiliary head is added to the loss, and the
    last head classifies (enhuiz `vit-aux-3x4x256`: depth 12, aux_heads 2). Predictions use the last head."""

    @model_validator(mode="after")
    def _check(self) -> "ViTConfig":
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not a multiple of heads {self.heads}")
        if self.width % 2:
            raise ValueError("width must be even (sinusoidal position encoding)")
        if self.depth % (self.aux_heads + 1):
            raise ValueError(f"depth {self.depth} does not split into aux_heads + 1 = {self.aux_heads + 1} equal blocks")
        return self


_RESNET_ARCH = re.compile(r"^(resnet\d+|wide_resnet\d+_2|resnext\d+_\d+x\d+d|resnet\d+_cifar)$")
_VIT_ARCHS = ("vit_cifar", "vitn_cifar")


class ModelConfig(_Section):
    arch: str = Field("resnet18", min_length=1, pattern=r"^[a-z0-9_]+$")
    """Architecture: any torchvision classification model name (`resnet18`, `resnet50`,
    `efficientnet_b2`, `regnet_y_1_6gf`, ...) or one of fgbench's own: `resnet8_cifar`,
    `resnet20_cifar` (CIFAR ResNets, 16-32-64 channels), `small_cnn`, `vit_cifar` (post-norm ViT for
    small images, as enhuiz's `vit`) and `vitn_cifar` (pre-norm ViT with the `model.vit` options)."""

    num_classes: int | None = Field(None, ge=2)
    """Output classes. Unset: the dataset's class count (the head is replaced to match). The enhuiz
    seed keeps torchvision's 1000-output head on CIFAR-100 (`num_classes = 1000`)."""

    cifar_stem: bool = False
    """ResNets: replace the 7x7/2 stem and max-pool with a 3x3 stride-1 conv and no pool (for 32x32)."""

    init: Literal["default", "pytorch"] = "default"
    """Initial weights of a model built without torchvision weights: `default` is the architecture's
    own (torchvision's ResNets: kaiming fan-out convolutions, norm weights 1), `pytorch` resets every
    layer to PyTorch's per-layer default (`reset_parameters()`), as SimpleClassification's own
    ResNets. Weights from `pretrained` files load over it."""

    zero_init_residual: bool = False
    """ResNets: zero-init the weight of the last norm of each residual branch (bn2 of a basic block,
    bn3 of a bottleneck: the "zero gamma" trick). Applies after torchvision weights too, as the hoya seed."""

    pretrained: Pretrained = Field(default_factory=NoPretrained)
    """Where initial weights come from."""

    stochastic_depth: float | None = Field(None, ge=0.0, lt=1.0)
    """Stochastic depth probability of torchvision architectures that have it (EfficientNet,
    ConvNeXt, Swin, ...). Unset: the architecture's default (0.2 for efficientnet_b2)."""

    dropout: float | None = Field(None, ge=0.0, lt=1.0)
    """Dropout on the classifier's input. Unset: the architecture's own default (none for ResNets).
    Architectures with a dropout right before their classifier (EfficientNet, MobileNet, VGG) get
    that one set to this value."""

    norm: Literal["bn", "gn", "evonorm"] = "bn"
    """ResNets: `bn` BatchNorm; `gn` GroupNorm(`gn_groups`) in place of every BatchNorm (enhuiz
    `-gn`); `evonorm` EvoNorm-S0 in place of every BatchNorm+ReLU pair (the hoya seed's `E`)."""

    gn_groups: int = Field(16, ge=1, le=512)
    """Groups of the GroupNorm swap (reduced to a divisor of a layer's channels where needed)."""

    evonorm_groups: int = Field(32, ge=1, le=512)
    """Groups of EvoNorm-S0's group standard deviation (reduced to a divisor where needed)."""

    mixstyle_layers: int = Field(0, ge=0, le=4)
    """ResNets: MixStyle after layer1..layerN (0 disables; enhuiz `-ms1/2/3`). Active only in
    training; the identity in eval mode."""

    mixstyle_p: float = Field(0.5, ge=0, le=1)
    """Probability that MixStyle mixes a given batch."""

    mixstyle_alpha: float = Field(0.1, gt=0)
    """Beta(alpha, alpha) distribution of MixStyle's mixing weight."""

    freeze_stages: int = Field(0, ge=0, le=5)
    """ResNets: freeze the stem (1), the stem and layer1 (2), ... up to layer4 (5): their parameters
    get no gradient and their BatchNorms become FrozenBatchNorm2d. enhuiz's `finetune_level` L is
    `freeze_stages = 5 - L`."""

    normalizer_per_channel: bool = False
    """With `data.normalize = "learned"`: keep running statistics per colour channel instead of one
    global mean/variance (enhuiz `-pcnorm`)."""

    vit: ViTConfig = Field(default_factory=ViTConfig)
    """Shape and options of `vit_cifar` / `vitn_cifar` (ignored by other architectures)."""

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        resnet = bool(_RESNET_ARCH.match(self.arch))
        if self.init == "pytorch" and self.pretrained.source == "torchvision":
            raise ValueError("init = \"pytorch\" would reset the torchvision weights; it applies to models built "
                             "without them (pretrained.source none, file or moco)")
        resnet_only = {
            "cifar_stem": self.cifar_stem,
            "zero_init_residual": self.zero_init_residual,
            "norm": self.norm != "bn",
            "mixstyle_layers": self.mixstyle_layers > 0,
            "freeze_stages": self.freeze_stages > 0,
        }
        for name, used in resnet_only.items():
            if used and not resnet:
                raise ValueError(f"{name} applies to ResNets only, not to arch '{self.arch}'")
        if self.arch.endswith("_cifar") and resnet:
            if self.mixstyle_layers > 3 or self.freeze_stages > 4:
                raise ValueError(f"{self.arch} has 3 stages: mixstyle_layers <= 3 and freeze_stages <= 4")
        if self.arch != "vitn_cifar":
            used = [n for n, on in (("rel_pos", self.vit.rel_pos), ("diag_mask", self.vit.diag_mask),
                                    ("temperature", self.vit.temperature != "none")) if on]
            if used:
                raise ValueError(f"vit.{used[0]} needs arch 'vitn_cifar' (the pre-norm ViT)")
        if self.arch in _VIT_ARCHS and self.pretrained.source == "torchvision":
            raise ValueError(f"{self.arch} is fgbench's own architecture: no torchvision weights")
        return self


# ----------------------------------------------------------------------------------- optimizer


class _OptimBase(_Section):
    lr: float = Field(0.1, gt=0, le=10)
    """Peak learning rate (after warm-up)."""

    weight_decay: float = Field(5e-4, ge=0, le=1)
    """Weight decay (coupled L2 for SGD/Adam/RAdam, decoupled for AdamW)."""

    no_decay_norm_bias: bool = False
    """Exempt normalization weights and all biases from weight decay."""

    grad_clip: float | None = Field(None, gt=0)
    """Clip the global gradient norm to this value."""


class SGDConfig(_OptimBase):
    name: Literal["sgd"] = "sgd"
    """Stochastic gradient descent."""

    momentum: float = Field(0.9, ge=0, lt=1)
    """Momentum factor."""

    nesterov: bool = False
    """Nesterov momentum."""


class _AdamBase(_OptimBase):
    lr: float = Field(1e-3, gt=0, le=10)
    """Peak learning rate (after warm-up)."""

    betas: tuple[float, float] = (0.9, 0.999)
    """Adam's (beta1, beta2)."""

    eps: float = Field(1e-8, gt=0)
    """Adam's epsilon."""


class AdamConfig(_AdamBase):
    name: Literal["adam"] = "adam"
    """Adam."""


class AdamWConfig(_AdamBase):
    name: Literal["adamw"] = "adamw"
    """AdamW (decoupled weight decay)."""


class RAdamConfig(_AdamBase):
    name: Literal["radam"] = "radam"
    """Rectified Adam."""

    decoupled_weight_decay: bool = False
    """Decay the weights directly (p -= lr * weight_decay * p, as AdamW and LiyuanLucasLiu's RAdam
    used by the hoya seed) instead of adding weight_decay * p to the gradient (coupled L2)."""


Optimizer = _tagged_union("name", SGDConfig, AdamConfig, AdamWConfig, RAdamConfig)


# ------------------------------------------------------------------------------------ schedule


class _ScheduleBase(_Section):
    epochs: int = Field(10, ge=1, le=100000)
    """Training epochs of the first stage."""

    max_steps: int | None = Field(None, ge=1)
    """Stop after this many optimizer steps; the schedule spans them instead of `epochs`."""

    warmup_epochs: float = Field(0.0, ge=0)
    """Warm-up length in epochs (fractions allowed), stepped per iteration."""

    warmup_steps: int | None = Field(None, ge=0)
    """Warm-up length in optimizer steps; overrides `warmup_epochs`."""

    warmup: Literal["linear", "quadratic"] = "linear"
    """Warm-up shape from `warmup_start_lr` to `lr`: linear, or quadratic (lr * (t/T)^2, as SimpleClassification)."""

    warmup_start_lr: float = Field(0.0, ge=0)
    """LR at the first warm-up step."""

    stepping: Literal["iteration", "epoch"] = "iteration"
    """`iteration`: the LR changes every step. `epoch`: it is held for each epoch at the value of
    the epoch's first step (as the per-epoch PyTorch schedulers of the cyizhuo and hoya seeds)."""


class CosineSchedule(_ScheduleBase):
    name: Literal["cosine"] = "cosine"
    """Cosine decay from `lr` to `min_lr` after warm-up."""

    min_lr: float = Field(0.0, ge=0)
    """LR at the end of the cosine."""

    hold_epochs: float = Field(0.0, ge=0)
    """Epochs held at the peak LR between the warm-up and the cosine (the hoya seed's
    GradualWarmupScheduler holds one)."""

    period_epochs: float | None = Field(None, gt=0)
    """Length of the first stage's cosine in epochs, from its start to `min_lr` (unset: the rest of
    the stage). Longer than what remains, training ends before the LR reaches `min_lr`, as the
    hoya seed's CosineAnnealingLR(T_max=120) after a warm-up. Later stages span their own epochs."""


class MultiStepSchedule(_ScheduleBase):
    name: Literal["multistep"] = "multistep"
    """Multiply the LR by `gamma` at each milestone epoch."""

    milestones: list[int] = Field(default_factory=lambda: [30, 60, 90])
    """Epochs at which the LR is decayed."""

    gamma: float = Field(0.1, gt=0, le=1)
    """Decay factor at each milestone."""

    @model_validator(mode="after")
    def _check(self) -> "MultiStepSchedule":
        if sorted(self.milestones) != self.milestones or any(m < 1 for m in self.milestones):
            raise ValueError("milestones must be positive and increasing")
        return self


class LinearSchedule(_ScheduleBase):
    name: Literal["linear"] = "linear"
    """Linear decay from `lr` to `min_lr` after warm-up (DeepSpeed's WarmupDecayLR)."""

    min_lr: float = Field(0.0, ge=0)
    """LR at the last step."""


class ConstantSchedule(_ScheduleBase):
    name: Literal["constant"] = "constant"
    """Constant LR after warm-up."""


Schedule = _tagged_union("name", CosineSchedule, MultiStepSchedule, LinearSchedule, ConstantSchedule)


# ------------------------------------------------------------------------------- augmentation


class AugmentConfig(_Section):
    hflip: bool = True
    """Random horizontal flip."""

    rotation: float = Field(0.0, ge=0, le=180)
    """Random rotation range in degrees (0 disables)."""

    randaugment_ops: int = Field(0, ge=0, le=16)
    """RandAugment number of ops N (0 disables)."""

    randaugment_magnitude: int = Field(9, ge=0, le=30)
    """RandAugment magnitude M, out of `randaugment_bins - 1`."""

    randaugment_bins: int = Field(31, ge=2, le=100)
    """RandAugment magnitude bins (31 makes M out of 30, as the hoya seed)."""

    randaugment_policy: Literal["torchvision", "ildoonet16"] = "torchvision"
    """`torchvision`: torchvision's RandAugment (14 ops). `ildoonet16`: the hoya seed's 16-op port of
    ildoonet's (ops drawn with replacement, each value M/(bins-1) of its range, random sign for
    geometric ops; at M=15 four ops are no-ops and Posterize keeps 2 bits)."""

    randaugment_before_resize: bool = False
    """Apply RandAugment to the image as loaded, before the crop/resize (the hoya seed), instead of
    after it (torchvision's and timm's order)."""

    trivialaugment: bool = False
    """TrivialAugmentWide."""

    random_erasing: float = Field(0.0, ge=0, le=1)
    """Random erasing probability (0 disables)."""

    mixup_alpha: float = Field(0.0, ge=0)
    """MixUp Beta(alpha, alpha) parameter (0 disables)."""

    cutmix_alpha: float = Field(0.0, ge=0)
    """CutMix Beta(alpha, alpha) parameter (0 disables)."""

    mix_prob: float = Field(1.0, ge=0, le=1)
    """Probability that a batch is mixed at all (when mixup or cutmix is on)."""

    mix_switch_prob: float = Field(0.5, ge=0, le=1)
    """With both on: probability of CutMix rather than MixUp for a mixed batch."""

    @model_validator(mode="after")
    def _check(self) -> "AugmentConfig":
        if self.randaugment_ops and self.trivialaugment:
            raise ValueError("choose RandAugment or TrivialAugment, not both")
        if self.randaugment_magnitude >= self.randaugment_bins:
            raise ValueError("randaugment_magnitude must be below randaugment_bins")
        return self


# --------------------------------------------------------------------------------- loss, EMA


class LossConfig(_Section):
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    """Label smoothing s (0 disables)."""

    smoothing_style: Literal["torch", "cyizhuo"] = "torch"
    """`torch`: targets 1-s+s/C and s/C (nn.CrossEntropyLoss). `cyizhuo`: 1-s and s/(C-1)."""


class EMAConfig(_Section):
    enabled: bool = False
    """Keep an exponential moving average of the weights (parameters and BN buffers) and evaluate it too."""

    decay: float = Field(0.9998, gt=0, lt=1)
    """EMA decay after the ramp."""

    ramp_steps: float = Field(2000.0, ge=0)
    """Ramp: decay(u) = decay * (1 - exp(-u / ramp_steps)) after u updates (0 disables the ramp)."""

    every: int = Field(1, ge=1)
    """Update the EMA every this many optimizer steps."""


# ---------------------------------------------------------------------------------- runtime


class RuntimeConfig(_Section):
    device: Literal["auto", "cuda", "cpu"] = "auto"
    """Where to train: `auto` picks CUDA when available."""

    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Autocast precision of the forward pass; fp16 adds a gradient scaler."""

    channels_last: bool = False
    """Use the channels-last memory format (faster convolutions on recent GPUs)."""

    compile: bool = False
    """Compile the model with torch.compile."""

    seed: int = 0
    """Seed of every random generator of the run."""

    deterministic: bool = False
    """Deterministic algorithms (slower on GPU; cudnn.benchmark off)."""

    log_every_steps: int = Field(20, ge=1)
    """Write a step event every this many optimizer steps."""

    eval_every_epochs: int = Field(1, ge=1)
    """Evaluate every this many epochs (the last epoch of each stage is always evaluated)."""

    checkpoint_every_epochs: int = Field(1, ge=1)
    """Write the `last` checkpoint every this many epochs (and always at the end of a stage)."""


# ------------------------------------------------------------------------------ stages, eval


class StageConfig(_Section):
    name: str = Field("stage", min_length=1)
    """Stage name shown in the logs, e.g. `fixres-448`."""

    epochs: int = Field(ge=1, le=100000)
    """Epochs of this stage."""

    train_size: int | None = Field(None, ge=8, le=2048)
    """Training crop size of this stage (unset: as before)."""

    test_size: int | None = Field(None, ge=8, le=2048)
    """Test crop size of this stage (unset: as before)."""

    lr: float | None = Field(None, gt=0, le=10)
    """Peak LR of this stage (unset: as the first stage)."""

    min_lr: float | None = Field(None, ge=0)
    """Final LR of this stage's cosine/linear decay (unset: as the first stage)."""

    warmup_epochs: float | None = Field(None, ge=0)
    """Warm-up of this stage (unset: as the first stage)."""

    batch_size: int | None = Field(None, ge=1, le=65536)
    """Batch size of this stage (unset: as before)."""

    init_from: Literal["last_raw", "last_ema", "best_raw", "best_ema"] = "last_raw"
    """Weights this stage starts from: the previous stage's last or best, raw or EMA model."""

    trainable: Literal["all", "bn_fc"] = "all"
    """`all` layers, or only BatchNorm and the classifier (the FixRes paper's fine-tuning)."""

    new_optimizer: bool = True
    """Start a fresh optimizer state (and EMA ramp) for this stage, as a separate run would."""


class EvalConfig(_Section):
    final_test_sizes: list[int] = Field(default_factory=list)
    """Extra test sizes evaluated on the selected model at the end (e.g. [224, 448])."""

    top_k: int = Field(5, ge=1, le=100)
    """The k of the top-k accuracy that is reported beside top-1."""

    select_on: Literal["val", "test", "last"] = "val"
    """Which split picks the best epoch. `val` needs a validation split; `test` is the seeds'
    (optimistic) habit, kept for reproduction only; `last` takes the final epoch."""


class DistributedConfig(_Section):
    global_batch: bool = False
    """Treat `data.batch_size` as the global batch across all processes instead of per process."""

    sync_bn: bool = False
    """Convert BatchNorm layers to SyncBatchNorm under DDP."""


# ------------------------------------------------------------------------------------ recipe


class SweepVariant(_Section):
    name: str = Field(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9_.+-]+$")
    """Row label of the ablation table, e.g. `B+A+W`; it is also appended to the run name."""

    set: dict[str, Any] = Field(default_factory=dict)
    """Recipe fields this variant changes, as dotted keys, e.g. `{ "optim.name" = "adam", "optim.lr" = 1e-4 }`."""

    description: str = ""
    """What the variant changes, in words (shown by `fgbench sweep --dry-run`)."""


class SweepConfig(_Section):
    grid: dict[str, Any] = Field(default_factory=dict)
    """Dotted recipe field -> list of values; every combination is run (crossed with each
    variant), e.g. `{ "optim.lr" = [0.1, 0.01] }`."""

    variants: list[SweepVariant] = Field(default_factory=list)
    """Named variants, run in this order; each is a set of field changes (crossed with the grid)."""

    @model_validator(mode="after")
    def _check(self) -> "SweepConfig":
        if not self.grid and not self.variants:
            raise ValueError("a sweep needs sweep.grid or sweep.variants")
        names = [v.name for v in self.variants]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"variant names must be unique: {', '.join(dup)}")

        def leaves(node: Any, prefix: str):
            for k, v in node.items():
                path = f"{prefix}{k}"
                if isinstance(v, dict):
                    yield from leaves(v, path + ".")
                else:
                    yield path, v

        for path, values in leaves(self.grid, ""):
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid.{path}: expected a non-empty list of values")
        return self


class Recipe(_Section):
    name: str = Field("unnamed", min_length=1, max_length=120, pattern=r"^[A-Za-z0-9_.+-]+$")
    """Short name used in run directory names."""

    description: str = ""
    """Free text: what this recipe reproduces or tests."""

    data: DataConfig = Field(default_factory=DataConfig)
    """Dataset, preprocessing and loading."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    """Network architecture and initial weights."""

    optim: Optimizer = Field(default_factory=SGDConfig)
    """Optimizer."""

    schedule: Schedule = Field(default_factory=CosineSchedule)
    """Epochs and learning-rate schedule."""

    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    """Training augmentations."""

    loss: LossConfig = Field(default_factory=LossConfig)
    """Loss function."""

    ema: EMAConfig = Field(default_factory=EMAConfig)
    """Exponential moving average of the weights."""

    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    """Device, precision, seeding and logging cadence."""

    eval: EvalConfig = Field(default_factory=EvalConfig)
    """Model selection and final evaluation."""

    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    """Multi-process training under torchrun."""

    stages: list[StageConfig] = Field(default_factory=list)
    """Further stages after the first (e.g. FixRes: 224 then 448)."""

    sweep: SweepConfig | None = None
    """Sweep definition, used by `fgbench sweep` (see the README's Sweeps section); a single run ignores it."""

    @model_validator(mode="after")
    def _check(self) -> "Recipe":
        if self.eval.select_on == "val" and self.data.val_fraction == 0:
            raise ValueError("eval.select_on is 'val' but data.val_fraction is 0: hold out a validation split or select on 'last'")
        if isinstance(self.schedule, MultiStepSchedule) and self.schedule.milestones:
            if self.schedule.milestones[-1] > self.schedule.epochs:
                raise ValueError("schedule.milestones lie beyond schedule.epochs")
        return self


# ------------------------------------------------------------------------------ load / save




def _loc(loc: tuple[Any, ...]) -> str:
    # pydantic puts the union tag into the location (optim.sgd.lr); users wrote optim.lr.
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            continue
        if item in _UNION_TAGS:
            continue
        parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(recipe)"


_UNION_TAGS = {
    "none", "torchvision", "file", "moco",
    "sgd", "adam", "adamw", "radam",
    "cosine", "multistep", "linear", "constant",
}


def format_errors(err: ValidationError, source: str) -> list[str]:
    lines = []
    for e in err.errors(include_url=False):
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "union_tag_invalid":
            ctx = e.get("ctx", {})
            msg = f"unknown variant {ctx.get('tag')!r}, expected one of {ctx.get('expected_tags')}"
        lines.append(f"{source}: {_loc(tuple(e['loc']))}: {msg}")
    return lines


def validate_recipe(data: dict[str, Any], source: str = "<recipe>") -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(format_errors(err, source)) from None


def parse_recipe_text(text: str, source: str = "<recipe>") -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError([f"{source}: TOML syntax: {err}"]) from None


def read_recipe_data(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The TOML data of a recipe file with ``--set`` overrides applied, not yet validated."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError([f"{p}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise RecipeError([f"{p}: cannot read: {err}"]) from None
    data = parse_recipe_text(text, str(p))
    if overrides:
        data = apply_overrides(data, list(overrides), str(p))
    return data


def load_recipe(path: str | os.PathLike[str], overrides: Sequence[str] | None = None) -> Recipe:
    """Read, apply ``--set`` overrides, validate. Every problem is raised as a RecipeError."""
    return validate_recipe(read_recipe_data(path, overrides or ()), str(path))


def parse_override_value(raw: str) -> Any:
    """``--set`` values are TOML values (``0.1``, ``true``, ``[224, 448]``, ``"adamw"``); a bare
    word that is not valid TOML is taken as a string (``--set optim.name=adamw``)."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str = "--set") -> dict[str, Any]:
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise RecipeError([f"{source}: --set {item}: expected KEY=VALUE, e.g. optim.lr=0.01"])
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise RecipeError([f"{source}: --set {item}: empty key part"])
        node = out
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise RecipeError([f"{source}: --set {key}: {part} is not a table"])
            node = nxt
        node[parts[-1]] = parse_override_value(raw)
    return out


def recipe_to_dict(recipe: Recipe, *, full: bool = True) -> dict[str, Any]:
    """Plain data for TOML: ``full`` keeps defaults (the resolved recipe), otherwise only what
    differs from them. None is dropped since TOML has no null."""
    data = recipe.model_dump(mode="json", exclude_none=True, exclude_defaults=not full)
    if not full:
        _keep_union_tags(recipe, data)
    return data


def _keep_union_tags(recipe: Recipe, data: dict[str, Any]) -> None:
    # exclude_defaults drops a union's tag (it is each variant's default), which would leave e.g.
    # `[optim] lr = 0.01` with no `name`: unloadable. Put the tag back wherever the section is
    # written or is not the default variant.
    default = Recipe()
    for path in UNION_SECTIONS:
        parts = path.split(".")
        obj: Any = recipe
        ref: Any = default
        for part in parts:
            obj, ref = getattr(obj, part), getattr(ref, part)
        node: Any = data
        for part in parts:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None and type(obj) is type(ref):
            continue
        node = data
        for part in parts:
            node = node.setdefault(part, {})
        tag = "source" if parts[-1] == "pretrained" else "name"
        node[tag] = getattr(obj, tag)


def dumps_recipe(recipe: Recipe, *, full: bool = True) -> str:
    return tomli_w.dumps(recipe_to_dict(recipe, full=full), multiline_strings=True)


def save_recipe(recipe: Recipe, path: str | os.PathLike[str], *, full: bool = False) -> None:
    atomic_write_text(path, dumps_recipe(recipe, full=full))


# --------------------------------------------------------------------------- schema walking


def iter_fields(model: type[BaseModel] = Recipe, prefix: str = ""):
    """Yield ``(dotted_path, FieldInfo, annotation)`` for every leaf and section, depth first. The
    README reference and its consistency test use it."""
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        yield path, info
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from iter_fields(ann, path + ".")


def union_variants(field_path: str) -> dict[str, type[BaseModel]]:
    """Variants of a discriminated-union section keyed by tag, e.g. ``optim`` -> {sgd: SGDConfig, ...}."""
    table = {
        "optim": ("name", [SGDConfig, AdamConfig, AdamWConfig, RAdamConfig]),
        "schedule": ("name", [CosineSchedule, MultiStepSchedule, LinearSchedule, ConstantSchedule]),
        "model.pretrained": ("source", [NoPretrained, TorchvisionWeights, FileWeights, MocoWeights]),
    }
    tag, classes = table[field_path]
    return {c.model_fields[tag].default: c for c in classes}


UNION_SECTIONS = ("optim", "schedule", "model.pretrained")

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
  what the user wrote plus the declared defaults, nothing more. (The one "before" validator hands a
  TOML array to a tuple field as a tuple: the container changes, never a value.)
* Types are strict (TOML has types: ``batch_size = true`` is an error, not 1; an int is still a
  float) and ``inf``/``nan`` are refused in every field, lists included.
* A rule between fields raises ``FieldProblem`` naming the field to report (``schedule.min_lr``,
  not ``schedule``) and the fields it involves, so an error blames the ``--set`` that caused it:
  ``FILE: field.path: message`` for the file, ``--set KEY=VALUE: message`` for an override.
* One walker of the schema (``union_sections``) finds the union sections and their tags; error
  locations, the TOML writer (``dumps_recipe``, the only one), sweeps, the docs and the TUI use it.
* Optional fields default to ``None`` because TOML has no null; ``save_recipe`` drops them.
* This module is in the pure zone: no torch, no textual.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Iterable, Literal, Sequence, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from fgbench import schema
from fgbench.atomic import atomic_write_text
from fgbench.errors import RecipeError, UserError
from fgbench.textsafe import safe
from fgbench.formats import BARE_KEY
from fgbench.textfile import read_text_file
from fgbench.tomlread import tomllib

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

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
    # strict: TOML has types, so `batch_size = true` or `lr = "0.05"` is an error, not a coercion (an
    # int is still a float: `lr = 1`). allow_inf_nan: inf/nan are never a sane setting, in any field.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=False,
                              strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _toml_arrays(cls, data: Any) -> Any:
        # TOML (and JSON) have arrays, not tuples, and strict mode wants a tuple for a tuple field:
        # hand the array over as one. This changes the container, never a value.
        if isinstance(data, dict):
            tuples = _tuple_fields(cls)
            if tuples and any(isinstance(data.get(k), list) for k in tuples):
                data = {k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in data.items()}
        return data


class FieldProblem(ValueError):
    """A cross-field problem found by a section's validator, reported at ``field`` (a path relative
    to the section, e.g. ``min_lr`` or ``betas[1]``) instead of at the whole section. ``involves``
    names the other fields it depends on, so a ``--set`` of any of them is blamed for it."""

    def __init__(self, field: str, message: str, *involves: str):
        super().__init__(message)
        self.field = field
        self.involves = involves


_tuple_fields = functools.cache(schema.tuple_fields)


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


# ---------------------------------------------------------------------------------------- data


MIN_SIDE, MAX_SIDE, MAX_RESIZE = 8, 2048, 8192
"""Bounds of crop sizes (train/test sizes) and of resize targets, in pixels."""

MAX_SEED = 2**32 - 1
"""Largest seed: every generator fgbench seeds (Python, torch, NumPy) takes it as it is."""


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

    crop_ratio: tuple[float, float] = (0.75, 1.3333333333333333)
    """Aspect-ratio range (width / height) of RandomResizedCrop, drawn log-uniformly; torchvision's
    and timm's default is 3/4 to 4/3."""

    interpolation: Literal["bilinear", "bicubic", "random"] = "bilinear"
    """Interpolation of the training resizes and crops (RandomResizedCrop, `resize`, `resize_crop`):
    `random` draws bilinear or bicubic for each crop, as timm's `interpolation = "random"`."""

    test_interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    """Interpolation of the test (and validation) resize."""

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

    val_seed: int = Field(0, ge=0, le=MAX_SEED)
    """Seed of the validation split, independent of the training seed."""

    batch_size: int = Field(64, ge=1, le=65536)
    """Training batch size (per process under torchrun unless `distributed.global_batch`)."""

    eval_batch_size: int | None = Field(None, ge=1, le=65536)
    """Evaluation batch size; defaults to twice the training batch size (per process)."""

    workers: Annotated[int, Field(ge=0, le=128)] | Literal["auto"] = 2
    """DataLoader worker processes, 0 to 128 (0 loads in the training process). `auto`: one per CPU this
    process may use (divided among a node's DDP processes), less one for the training process,
    at most 8; the log says how many."""

    @field_validator("workers", mode="before")
    @classmethod
    def _workers_number_or_auto(cls, v: Any) -> Any:
        # one message for both halves of the union (pydantic would print one line per half)
        if v == "auto" and isinstance(v, str):
            return v
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 128:
            return v
        raise ValueError('should be a number of worker processes from 0 to 128, or "auto"')

    drop_last: bool = True
    """Drop the last incomplete training batch of each epoch."""

    loader: Literal["auto", "standard", "cached", "device"] = "auto"
    """`standard`: decode images each epoch in worker processes. `cached`: decode each image once
    into a uint8 memory-mapped file (the same pixels, at the cost of disk). `device`: hold the
    whole split as uint8 tensors on the training device and crop/flip there in batches, with no
    DataLoader (pad-and-crop or resize, flips, mixing; not `interpolation = "random"`). `auto`:
    `device` when the decoded splits fit a memory budget and the augmentation allows it, else
    `cached` for JPEGs read every epoch when the disk allows, else `standard`; the log says which
    and why. With `decode = "full"` all give the model the same images."""

    decode: Literal["full", "reduced"] = "full"
    """`full`: every JPEG is decoded at full size, as the seeds, timm and torchvision do. `reduced`:
    an opt-in speed option that decodes a JPEG at a reduced libjpeg scale (1/2, 1/4, 1/8) where
    every crop the transform can take (RandomResizedCrop at its smallest scale and extreme aspect
    ratio; the resize before a center crop) still has at least the output size in source pixels.
    It is not lossless: the model receives other pixels (on 1280x854 photos through a 224 px test
    transform, 0.45 to 0.64 levels of 255 on average, up to 11), and the loaders no longer hand
    the model identical images (the cache stores what the most demanding transform needs)."""

    @field_validator("decode", mode="before")
    @classmethod
    def _decode_legacy(cls, v: Any) -> Any:
        # recipes saved before the rename (run directories, checkpoints) keep what they meant
        return {"auto": "reduced", "off": "full"}.get(v, v) if isinstance(v, str) else v

    skip_corrupt: bool = False
    """Skip images that cannot be decoded (counted in the metrics) instead of stopping."""

    crop_banner: bool = False
    """Crop the 20-pixel copyright banner at the bottom of FGVC Aircraft images."""

    @model_validator(mode="after")
    def _check(self) -> "DataConfig":
        if self.dataset == "folder" and not self.root:
            raise FieldProblem("root", "dataset 'folder' needs data.root (a folder with train/ and test/ or val/)",
                               "dataset")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise FieldProblem("crop_scale", "crop_scale must satisfy 0 < low <= high <= 1")
        lo, hi = self.crop_ratio
        if not 0 < lo <= hi <= 10:
            raise FieldProblem("crop_ratio", "crop_ratio must satisfy 0 < low <= high <= 10")
        if self.loader == "device" and self.interpolation == "random":
            raise FieldProblem("interpolation", "the device loader resizes each image once, so it cannot draw an "
                               "interpolation per crop; use data.loader = \"standard\"", "loader")
        if self.train_crop == "resize_crop" and self.train_resize is None:
            raise FieldProblem("train_resize", "train_crop 'resize_crop' needs data.train_resize, e.g. [512, 512]",
                               "train_crop")
        if self.test_crop == "fixed" and self.test_resize is None:
            raise FieldProblem("test_resize", "test_crop 'fixed' needs data.test_resize, e.g. [512, 512]", "test_crop")
        if self.normalize == "explicit" and (self.mean is None or self.std is None):
            raise FieldProblem("mean" if self.mean is None else "std",
                               "normalize 'explicit' needs data.mean and data.std", "normalize")
        if self.std is not None:
            for i, v in enumerate(self.std):
                if v <= 0:
                    raise FieldProblem(f"std[{i}]", "std values must be positive")
        return self

    @model_validator(mode="after")
    def _check_resizes(self) -> "DataConfig":
        for name in ("train_resize", "test_resize"):
            for i, v in enumerate(getattr(self, name) or ()):
                if not MIN_SIDE <= v <= MAX_RESIZE:
                    raise FieldProblem(f"{name}[{i}]", f"a resize side must be between {MIN_SIDE} and {MAX_RESIZE} pixels")
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


if TYPE_CHECKING:  # the type checker sees the plain union; at run time the tag picks the variant
    Pretrained = Union[NoPretrained, TorchvisionWeights, FileWeights, MocoWeights]
else:
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
            raise FieldProblem("width", f"width {self.width} is not a multiple of heads {self.heads}", "heads")
        if self.width % 2:
            raise FieldProblem("width", "width must be even (sinusoidal position encoding)")
        if self.depth % (self.aux_heads + 1):
            raise FieldProblem("depth", f"depth {self.depth} does not split into aux_heads + 1 = {self.aux_heads + 1} "
                               "equal blocks", "aux_heads")
        return self


_RESNET_ARCH = re.compile(r"^(resnet\d+|wide_resnet\d+_2|resnext\d+_\d+x\d+d|resnet\d+_cifar)$")
_VIT_ARCHS = ("vit_cifar", "vitn_cifar")


class ModelConfig(_Section):
    arch: str = Field("resnet18", min_length=1, pattern=r"^[a-z0-9_]+$")
    """Architecture: any torchvision classification model name (`resnet18`, `resnet50`,
    `efficientnet_b2`, `regnet_y_1_6gf`, ...) or one of fgbench's own: `resnet8_cifar`,
    `resnet20_cifar` (CIFAR ResNets, 16-32-64 channels), `small_cnn`, `toy_dilated` (enhuiz's four
    dilated 3x3 convolutions of 32 channels), `vit_cifar` (post-norm ViT for
    small images, as enhuiz's `vit`) and `vitn_cifar` (pre-norm ViT with the `model.vit` options)."""

    num_classes: int | None = Field(None, ge=2, le=1_000_000)
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

    mixstyle_alpha: float = Field(0.1, gt=0, le=100)
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
            raise FieldProblem("init", "init = \"pytorch\" would reset the torchvision weights; it applies to models "
                               "built without them (pretrained.source none, file or moco)", "pretrained.source")
        resnet_only = {
            "cifar_stem": self.cifar_stem,
            "zero_init_residual": self.zero_init_residual,
            "norm": self.norm != "bn",
            "mixstyle_layers": self.mixstyle_layers > 0,
            "freeze_stages": self.freeze_stages > 0,
        }
        for name, used in resnet_only.items():
            if used and not resnet:
                raise FieldProblem(name, f"{name} applies to ResNets only, not to arch '{self.arch}'", "arch")
        if self.arch.endswith("_cifar") and resnet:
            if self.mixstyle_layers > 3 or self.freeze_stages > 4:
                raise FieldProblem("mixstyle_layers" if self.mixstyle_layers > 3 else "freeze_stages",
                                   f"{self.arch} has 3 stages: mixstyle_layers <= 3 and freeze_stages <= 4", "arch")
        if self.arch != "vitn_cifar":
            vit_used = [n for n, on in (("rel_pos", self.vit.rel_pos), ("diag_mask", self.vit.diag_mask),
                                        ("temperature", self.vit.temperature != "none")) if on]
            if vit_used:
                raise FieldProblem(f"vit.{vit_used[0]}", f"vit.{vit_used[0]} needs arch 'vitn_cifar' (the pre-norm ViT)",
                                   "arch")
        if self.arch in _VIT_ARCHS and self.pretrained.source == "torchvision":
            raise FieldProblem("pretrained.source", f"{self.arch} is fgbench's own architecture: no torchvision weights",
                               "arch")
        return self


# ----------------------------------------------------------------------------------- optimizer


class _OptimBase(_Section):
    lr: float = Field(0.1, gt=0, le=10)
    """Peak learning rate (after warm-up)."""

    weight_decay: float = Field(5e-4, ge=0, le=1)
    """Weight decay (coupled L2 for SGD/Adam/RAdam, decoupled for AdamW)."""

    no_decay_norm_bias: bool = False
    """Exempt normalization weights and all biases from weight decay."""

    grad_clip: float | None = Field(None, gt=0, le=1e6)
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

    eps: float = Field(1e-8, gt=0, le=1)
    """Adam's epsilon."""

    @model_validator(mode="after")
    def _check_betas(self) -> "_AdamBase":
        for i, b in enumerate(self.betas):
            if not 0 <= b < 1:
                raise FieldProblem(f"betas[{i}]", "Adam's betas must lie in [0, 1)")
        return self


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


if TYPE_CHECKING:
    Optimizer = Union[SGDConfig, AdamConfig, AdamWConfig, RAdamConfig]
else:
    Optimizer = _tagged_union("name", SGDConfig, AdamConfig, AdamWConfig, RAdamConfig)


# ------------------------------------------------------------------------------------ schedule


MAX_STEPS = 10**9
"""Upper bound of every count of optimizer steps in a recipe."""


class _ScheduleBase(_Section):
    epochs: int = Field(10, ge=1, le=100000)
    """Training epochs of the first stage."""

    max_steps: int | None = Field(None, ge=1, le=MAX_STEPS)
    """Stop after this many optimizer steps; the schedule spans them instead of `epochs`."""

    warmup_epochs: float = Field(0.0, ge=0, le=100000)
    """Warm-up length in epochs (fractions allowed), stepped per iteration."""

    warmup_steps: int | None = Field(None, ge=0, le=MAX_STEPS)
    """Warm-up length in optimizer steps; overrides `warmup_epochs`."""

    warmup: Literal["linear", "quadratic"] = "linear"
    """Warm-up shape from `warmup_start_lr` to `lr`: linear, or quadratic (lr * (t/T)^2, as SimpleClassification)."""

    warmup_start_lr: float = Field(0.0, ge=0, le=10)
    """LR at the first warm-up step."""

    stepping: Literal["iteration", "epoch"] = "iteration"
    """`iteration`: the LR changes every step. `epoch`: it is held for each epoch at the value of
    the epoch's first step (as the per-epoch PyTorch schedulers of the cyizhuo and hoya seeds)."""

    deepspeed_lag: bool = False
    """Reproduce the DeepSpeed releases of 0.5 to 0.15 (the enhuiz seed), whose scheduler did not set
    the LR when it was built: each stage's first optimizer step runs at 1e-3 (the default LR of
    DeepSpeed's Adam) and every later step k at this schedule's value for step k-1."""

    @model_validator(mode="after")
    def _check_warmup(self) -> "_ScheduleBase":
        if self.max_steps is not None:
            if self.warmup_steps is not None and self.warmup_steps >= self.max_steps:
                raise FieldProblem("warmup_steps", f"the warm-up ({self.warmup_steps} steps) must be shorter than the run "
                                   f"(max_steps = {self.max_steps})", "max_steps")
        elif self.warmup_steps is None and self.warmup_epochs >= self.epochs:
            raise FieldProblem("warmup_epochs", f"the warm-up ({self.warmup_epochs:g} epochs) must be shorter than the "
                               f"run (epochs = {self.epochs})", "epochs")
        return self


class CosineSchedule(_ScheduleBase):
    name: Literal["cosine"] = "cosine"
    """Cosine decay from `lr` to `min_lr` after warm-up."""

    min_lr: float = Field(0.0, ge=0, le=10)
    """LR at the end of the cosine."""

    hold_epochs: float = Field(0.0, ge=0, le=100000)
    """Epochs held at the peak LR between the warm-up and the cosine (the hoya seed's
    GradualWarmupScheduler holds one)."""

    period_epochs: float | None = Field(None, gt=0, le=100000)
    """Length of the first stage's cosine in epochs, from its start to `min_lr` (unset: the rest of
    the stage). Longer than what remains, training ends before the LR reaches `min_lr`, as the
    hoya seed's CosineAnnealingLR(T_max=120) after a warm-up. Later stages span their own epochs."""

    warmup_in_period: bool = False
    """The warm-up is part of the cosine's period, as timm's CosineLRScheduler (`warmup_prefix =
    False`): after the warm-up the cosine is at `p = step / T` (T the stage's steps, or
    `period_epochs`), not starting again from the peak. Off: the cosine starts at the peak after the
    warm-up (and `hold_epochs`)."""

    @model_validator(mode="after")
    def _check(self) -> "CosineSchedule":
        if self.warmup_in_period and self.hold_epochs:
            raise ValueError("warmup_in_period: a cosine that includes the warm-up has no hold at the peak (hold_epochs)")
        return self


class MultiStepSchedule(_ScheduleBase):
    name: Literal["multistep"] = "multistep"
    """Multiply the LR by `gamma` at each milestone epoch."""

    milestones: list[int] = Field(default_factory=lambda: [30, 60, 90], max_length=1000)
    """Epochs at which the LR is decayed."""

    gamma: float = Field(0.1, gt=0, le=1)
    """Decay factor at each milestone."""

    @model_validator(mode="after")
    def _check(self) -> "MultiStepSchedule":
        for i, m in enumerate(self.milestones):
            if m < 1:
                raise FieldProblem(f"milestones[{i}]", "milestones must be positive")
            if i and m <= self.milestones[i - 1]:
                raise FieldProblem(f"milestones[{i}]", "milestones must be strictly increasing")
            if self.max_steps is None and m > self.epochs:
                raise FieldProblem(f"milestones[{i}]", f"milestone {m} lies beyond the run (epochs = {self.epochs})",
                                   "epochs")
        return self


class LinearSchedule(_ScheduleBase):
    name: Literal["linear"] = "linear"
    """Linear decay from `lr` to `min_lr` after warm-up (DeepSpeed's WarmupDecayLR)."""

    min_lr: float = Field(0.0, ge=0, le=10)
    """LR at the last step."""


class ConstantSchedule(_ScheduleBase):
    name: Literal["constant"] = "constant"
    """Constant LR after warm-up."""


if TYPE_CHECKING:
    Schedule = Union[CosineSchedule, MultiStepSchedule, LinearSchedule, ConstantSchedule]
else:
    Schedule = _tagged_union("name", CosineSchedule, MultiStepSchedule, LinearSchedule, ConstantSchedule)


# ------------------------------------------------------------------------------- augmentation


class AugmentConfig(_Section):
    hflip: bool = True
    """Random horizontal flip."""

    rotation: float = Field(0.0, ge=0, le=180)
    """Random rotation range in degrees (0 disables)."""

    color_jitter: float = Field(0.0, ge=0, le=1)
    """ColorJitter strength for brightness, contrast and saturation (each factor drawn from
    [1 - v, 1 + v], as timm's `color_jitter = v`); 0 disables. Applied after the flip and rotation."""

    color_jitter_hue: float = Field(0.0, ge=0, le=0.5)
    """ColorJitter hue shift range [-v, v] (0 leaves the hue alone, as timm's scalar `color_jitter`)."""

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

    mixup_alpha: float = Field(0.0, ge=0, le=100)
    """MixUp Beta(alpha, alpha) parameter (0 disables)."""

    cutmix_alpha: float = Field(0.0, ge=0, le=100)
    """CutMix Beta(alpha, alpha) parameter (0 disables)."""

    mix_prob: float = Field(1.0, ge=0, le=1)
    """Probability that a batch is mixed at all (when mixup or cutmix is on)."""

    mix_switch_prob: float = Field(0.5, ge=0, le=1)
    """With both on: probability of CutMix rather than MixUp for a mixed batch."""

    @model_validator(mode="after")
    def _check(self) -> "AugmentConfig":
        if self.randaugment_ops and self.trivialaugment:
            raise FieldProblem("trivialaugment", "choose RandAugment or TrivialAugment, not both", "randaugment_ops")
        if self.randaugment_magnitude >= self.randaugment_bins:
            raise FieldProblem("randaugment_magnitude", "randaugment_magnitude must be below randaugment_bins",
                               "randaugment_bins")
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

    ramp_steps: float = Field(2000.0, ge=0, le=MAX_STEPS)
    """Ramp: decay(u) = decay * (1 - exp(-u / ramp_steps)) after u updates (0 disables the ramp)."""

    every: int = Field(1, ge=1, le=1_000_000)
    """Update the EMA every this many optimizer steps."""


# ---------------------------------------------------------------------------------- runtime


class RuntimeConfig(_Section):
    device: Literal["auto", "cuda", "cpu"] = "auto"
    """Where to train: `auto` picks CUDA when available."""

    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"
    """Autocast precision of the forward pass; fp16 adds a gradient scaler. `auto`: the fastest
    precision the device supports without a gradient scaler: bf16 on a CUDA GPU with native bf16
    (Ampere and later), fp32 elsewhere (the CPU included). The run records what it chose: its
    `recipe.toml` holds the chosen precision (so a resumed run keeps it), and its log and
    `run_started` say why. The seed recipes never use `auto`: their precision is part of what they
    reproduce."""

    channels_last: Literal["auto", True, False] = "auto"
    """Channels-last memory format. `auto`: on for `resnet8_cifar`, `resnet20_cifar` and `small_cnn`
    on the CPU (measured 1.2-1.6x faster per step on two CPUs, `benchmarks/cpu_options.py`), off
    otherwise (not faster on both CPUs measured; not yet measured on CUDA). The run's log and
    `run_started` say what was chosen."""

    compile: bool = False
    """Compile the model with torch.compile."""

    tf32: Literal["auto", True, False, "pytorch"] = "auto"
    """TensorFloat-32 on CUDA (Ampere and later; no effect on the CPU). `auto`: off for `fp32` recipes,
    so they compute in true fp32 as the seeds' numbers were measured (carrier-of-tricks on a GTX 1080
    Ti, which has no TF32; PyTorch 1.7-1.11 turned it on by default for matmuls and convolutions,
    1.12 and later for convolutions only), and PyTorch's own default for autocast recipes. `true`:
    matmuls and convolutions in TF32 (10-bit mantissa; the fast choice for fp32 on an A100 or H100, as
    timm and PyTorch's convolution default do). `false`: both off whatever the precision. `pytorch`:
    leave PyTorch's defaults (convolutions TF32, matmuls fp32)."""

    @field_validator("tf32", mode="before")
    @classmethod
    def _tf32_exactly(cls, v: Any) -> Any:
        if v is True or v is False or isinstance(v, str) and v in ("auto", "pytorch"):
            return v
        raise ValueError('should be "auto", true, false or "pytorch"')

    @field_validator("channels_last", mode="before")
    @classmethod
    def _channels_last_exactly(cls, v: Any) -> Any:
        # a Literal of booleans would take 1 and 0 for true and false; TOML has booleans
        if v is True or v is False or v == "auto" and isinstance(v, str):
            return v
        raise ValueError('should be "auto", true or false')

    seed: int = Field(0, ge=0, le=MAX_SEED)
    """Seed of every random generator of the run."""

    deterministic: bool = False
    """Deterministic algorithms (slower on GPU; cudnn.benchmark off)."""

    log_every_steps: int = Field(20, ge=1, le=1_000_000)
    """Write a step event every this many optimizer steps."""

    eval_every_epochs: int = Field(1, ge=1, le=100000)
    """Evaluate every this many epochs (the last epoch of each stage is always evaluated)."""

    checkpoint_every_epochs: int = Field(1, ge=1, le=100000)
    """Write the `last` checkpoint every this many epochs (and always at the end of a stage)."""


# ------------------------------------------------------------------------------ stages, eval


class StageConfig(_Section):
    name: str = Field("stage", min_length=1, max_length=120)
    """Stage name shown in the logs, e.g. `fixres-448`."""

    epochs: int = Field(ge=1, le=100000)
    """Epochs of this stage."""

    train_size: int | None = Field(None, ge=8, le=2048)
    """Training crop size of this stage (unset: as before)."""

    test_size: int | None = Field(None, ge=8, le=2048)
    """Test crop size of this stage (unset: as before)."""

    lr: float | None = Field(None, gt=0, le=10)
    """Peak LR of this stage (unset: as the first stage)."""

    min_lr: float | None = Field(None, ge=0, le=10)
    """Final LR of this stage's cosine/linear decay (unset: as the first stage)."""

    warmup_epochs: float | None = Field(None, ge=0, le=100000)
    """Warm-up of this stage (unset: as the first stage)."""

    batch_size: int | None = Field(None, ge=1, le=65536)
    """Batch size of this stage (unset: as before)."""

    init_from: Literal["last_raw", "last_ema", "best_raw", "best_ema"] = "last_raw"
    """Weights this stage starts from: the previous stage's last or best, raw or EMA model."""

    trainable: Literal["all", "bn_fc"] = "all"
    """`all` layers, or only BatchNorm and the classifier (the FixRes paper's fine-tuning)."""

    train_crop: Literal["random_resized", "pad_crop", "resize_crop", "resize", "test"] | None = None
    """Training preprocessing of this stage: one of `data.train_crop`'s policies (with the recipe's
    augmentations), or `test`: the test preprocessing itself (`data.test_crop` at this stage's train
    size; no flip, RandAugment, erasing, MixUp or CutMix), as the FixRes paper fine-tunes BN and the
    classifier. Unset: `test` for a `trainable = "bn_fc"` stage, else as the stage before."""

    new_optimizer: bool = True
    """Start a fresh optimizer state (and EMA ramp) for this stage, as a separate run would."""


class EvalConfig(_Section):
    final_test_sizes: list[int] = Field(default_factory=list, max_length=32)
    """Extra test sizes evaluated on the selected model at the end (e.g. [224, 448])."""

    top_k: int = Field(5, ge=1, le=100)
    """The k of the top-k accuracy that is reported beside top-1."""

    select_on: Literal["val", "test", "last"] = "val"
    """Which split picks the best epoch. `val` needs a validation split; `test` is the seeds'
    (optimistic) habit, kept for reproduction only; `last` takes the final epoch."""

    precision: Literal["fp32", "train"] = "fp32"
    """Precision of every evaluation (validation, test, final sizes, `fgbench evaluate`/`predict`):
    `fp32` evaluates in full precision even when `runtime.precision` trains under autocast (as
    SimpleClassification and cyizhuo do); `train` evaluates under the training autocast."""

    @model_validator(mode="after")
    def _check_sizes(self) -> "EvalConfig":
        for i, size in enumerate(self.final_test_sizes):
            if not MIN_SIDE <= size <= MAX_SIDE:
                raise FieldProblem(f"final_test_sizes[{i}]",
                                   f"a test size must be between {MIN_SIDE} and {MAX_SIDE} pixels")
        return self


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


class SlurmConfig(_Section):
    """How `fgbench sweep --launcher slurm` submits (settings.toml's `[slurm]` gives the defaults;
    the recipe's `[sweep.slurm]` and the command line win)."""

    partition: str | None = None
    """SLURM partition (`sbatch --partition`); unset: the cluster's default partition."""

    account: str | None = None
    """Account to charge (`sbatch --account`)."""

    qos: str | None = None
    """Quality of service (`sbatch --qos`)."""

    time_limit_min: int = Field(60, ge=1)
    """Time limit of each job in minutes. A job that reaches it checkpoints and is requeued."""

    gpus_per_run: int = Field(0, ge=0)
    """GPUs per node for each run (`--gpus-per-node`); each run trains with this many processes."""

    cpus_per_run: int = Field(2, ge=1)
    """CPUs for each run (per node) (`--cpus-per-task`)."""

    nodes_per_run: int = Field(1, ge=1)
    """Nodes per run: more than 1 trains one run with DDP across nodes (torchrun on each node)."""

    mem_gb: float | None = Field(None, gt=0)
    """Memory per node in GB (`--mem`); unset: the partition's default."""

    max_parallel: int = Field(16, ge=1)
    """Concurrency limit of the job array: at most this many points run at once (`--array=...%N`)."""

    signal_delay_s: int = Field(120, ge=10)
    """Seconds before the time limit at which SLURM signals the job to checkpoint (`--signal`)."""

    sbatch: dict[str, str | int | bool] = Field(default_factory=dict)
    """Further sbatch options, e.g. `{ constraint = "a100", exclude = "node7" }`."""

    setup: list[str] = Field(default_factory=list)
    """Shell lines run in each job before the run, e.g. `["module load cuda/12.1"]`."""


class SearchParam(_Section):
    """One searched recipe field."""

    type: Literal["uniform", "log_uniform", "int", "choice"]
    """Distribution: `uniform` / `log_uniform` floats in [low, high], `int` in [low, high] (with
    `step`), `choice` among `values`."""

    low: float | None = None
    """Lower bound (uniform, log_uniform, int)."""

    high: float | None = None
    """Upper bound, inclusive (uniform, log_uniform, int)."""

    step: int | None = Field(None, ge=1)
    """Step of an `int` distribution (1 when unset)."""

    values: list[Any] | None = None
    """The choices of a `choice` distribution (numbers, strings, booleans or lists)."""

    @model_validator(mode="after")
    def _check(self) -> "SearchParam":
        if self.type == "choice":
            if not self.values:
                raise ValueError("type 'choice' needs a non-empty values list")
            if self.low is not None or self.high is not None:
                raise ValueError("type 'choice' takes values, not low/high")
            return self
        if self.values is not None:
            raise ValueError(f"type {self.type!r} takes low and high, not values")
        if self.low is None or self.high is None:
            raise ValueError(f"type {self.type!r} needs low and high")
        if self.low > self.high:
            raise ValueError("low is greater than high")
        if self.type == "log_uniform" and self.low <= 0:
            raise ValueError("log_uniform needs low > 0")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("type 'int' needs whole-number low and high")
        if self.step is not None and self.type != "int":
            raise ValueError("step goes with type 'int' only")
        return self


class SearchConfig(_Section):
    """A search (Optuna): trials sampled from distributions, poor ones pruned from their `eval` events."""

    params: dict[str, SearchParam] = Field(min_length=1)
    """Dotted recipe field -> distribution, e.g. `"optim.lr" = { type = "log_uniform", low = 1e-4, high = 0.1 }`."""

    trials: int = Field(20, ge=1)
    """Trial budget: how many runs the search starts (pruned ones count)."""

    metric: Literal["val_top1", "ema_val_top1"] = "val_top1"
    """What is maximised: the best validation top-1 of the raw (or EMA) model. Never a test number."""

    sampler: Literal["tpe", "random"] = "tpe"
    """Optuna sampler."""

    seed: int | None = None
    """Sampler seed (unset: random)."""

    pruner: Literal["median", "successive_halving", "none"] = "median"
    """Stops poor trials early from their per-epoch validation top-1."""

    startup_trials: int = Field(2, ge=0)
    """Median pruner: trials that finish before any is pruned."""

    warmup_epochs: int = Field(1, ge=0)
    """Epochs a trial always runs before it can be pruned (successive halving: its minimum resource, at least 1)."""

    reduction_factor: int = Field(3, ge=2)
    """Successive halving: keep the best 1/reduction_factor of trials at each rung."""

    storage: str | None = None
    """Optuna RDB storage URL shared by all trials (e.g. `postgresql://...`); unset: SQLite in the sweep folder."""

    @model_validator(mode="before")
    @classmethod
    def _flatten_params(cls, data: Any) -> Any:
        # `[sweep.search.params.optim.lr]` nests tables; a distribution is the table that has `type`.
        if isinstance(data, dict) and isinstance(data.get("params"), dict):
            flat: dict[str, Any] = {}

            def walk(node: dict, prefix: str) -> None:
                for k, v in node.items():
                    if isinstance(v, dict) and "type" not in v:
                        walk(v, f"{prefix}{k}.")
                    else:
                        flat[f"{prefix}{k}"] = v

            walk(data["params"], "")
            data = {**data, "params": flat}
        return data


class SweepConfig(_Section):
    grid: dict[str, Any] = Field(default_factory=dict)
    """Dotted recipe field -> list of values; every combination is run (crossed with each
    variant), e.g. `{ "optim.lr" = [0.1, 0.01] }`."""

    variants: list[SweepVariant] = Field(default_factory=list)
    """Named variants, run in this order; each is a set of field changes (crossed with the grid)."""

    seeds: list[int] | None = Field(None, min_length=1, max_length=10_000)
    """Run every point once per seed (`runtime.seed`), e.g. `[0, 1, 2]`; each (point, seed) is its own
    run, and the runs of a point form a group in the ablation table. `fgbench sweep --seeds` replaces it."""

    search: SearchConfig | None = None
    """A search instead of a grid: Optuna samples the fields, prunes poor trials (see the README)."""

    launcher: Literal["local", "slurm"] = "local"
    """Where the points run: `local` (this machine, one after another or one per GPU) or `slurm`
    (a job array submitted through submitit)."""

    slurm: SlurmConfig | None = None
    """SLURM job settings for `launcher = "slurm"` (defaults from settings.toml's `[slurm]`)."""

    @model_validator(mode="after")
    def _check(self) -> "SweepConfig":
        if self.search is not None:
            if self.grid or self.variants or self.seeds:
                raise FieldProblem("search", "sweep.search cannot be combined with sweep.grid, sweep.variants "
                                   "or sweep.seeds", "grid", "variants", "seeds")
            return self
        if not self.grid and not self.variants and not self.seeds:
            raise FieldProblem("grid", "a sweep needs sweep.grid, sweep.variants, sweep.seeds or sweep.search",
                               "variants", "seeds", "search")
        if self.seeds:
            for i, seed in enumerate(self.seeds):
                if not 0 <= seed <= MAX_SEED:
                    raise FieldProblem(f"seeds[{i}]", f"a seed is between 0 and {MAX_SEED}, not {seed}")
                if seed in self.seeds[:i]:
                    raise FieldProblem(f"seeds[{i}]", f"seeds must be unique: {seed} is used twice")
        names = [v.name for v in self.variants]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise FieldProblem(f"variants[{i}].name", f"variant names must be unique: {name!r} is used twice")

        def leaves(node: Any, prefix: str):
            for k, v in node.items():
                path = f"{prefix}{k}"
                if isinstance(v, dict):
                    yield from leaves(v, path + ".")
                else:
                    yield path, v

        for path, values in leaves(self.grid, ""):
            if not isinstance(values, list) or not values:
                raise FieldProblem(f"grid.{path}", "expected a non-empty list of values")
        return self


class TensorBoardTracking(_Section):
    enabled: bool = True
    """Write TensorBoard event files live during the run (needs `pip install 'fgbench[tensorboard]'`)."""

    log_dir: str | None = None
    """Event-file directory; unset: `tensorboard/` inside the run directory."""


class MLflowTracking(_Section):
    enabled: bool = True
    """Log to MLflow (needs `pip install 'fgbench[mlflow]'`)."""

    tracking_uri: str | None = None
    """Any MLflow tracking URI; unset: SQLite at `<runs root>/mlflow.db`."""

    experiment: str | None = None
    """Experiment name; unset: the sweep tag, or `fgbench` for a single run."""


class WandbTracking(_Section):
    enabled: bool = True
    """Log to Weights & Biases (needs `pip install 'fgbench[wandb]'`)."""

    project: str = "fgbench"
    """W&B project."""

    entity: str | None = None
    """W&B entity (team or user); unset: your default."""

    mode: Literal["offline", "online"] = "offline"
    """`offline` writes run files locally with no account (`wandb sync` uploads them later)."""

    dir: str | None = None
    """Where W&B writes its files; unset: the run directory."""


class TrackingConfig(_Section):
    """Experiment trackers fed from the run's events. The metrics file stays the source of truth: a
    tracker that fails is logged once and never stops training."""

    tensorboard: TensorBoardTracking | None = None
    """TensorBoard event files; unset here: settings.toml's `[tracking.tensorboard]`, if any."""

    mlflow: MLflowTracking | None = None
    """MLflow run with metrics, the resolved recipe as parameters and the final summary."""

    wandb: WandbTracking | None = None
    """Weights & Biases run (offline by default)."""


REFERENCE_RULES = ("max_over_test_epochs", "last_epoch", "best_val_epoch")


class ReferenceNumbers(_Section):
    raw: float | None = Field(None, ge=0, le=100)
    """Test top-1 (%) of the raw model at this test size, as the seed reported it."""

    ema: float | None = Field(None, ge=0, le=100)
    """Test top-1 (%) of the EMA model at this test size."""


class ReferenceConfig(_Section):
    """What a seed reported for this recipe, as data: printed beside the run's own number measured
    under the same rule (`fgbench runs show`, `runs compare`). It never changes training and is left
    out of group identity."""

    source: str = Field(min_length=1, max_length=600)
    """Where the numbers come from: the seed, its table and row (and column), e.g.
    `SimpleClassification README, baseline table, row LR 0.05 / EMA TRUE / ResNet18, column CUB`."""

    rule: Literal["max_over_test_epochs", "last_epoch", "best_val_epoch"]
    """How the seed chose the epoch its numbers are from: `max_over_test_epochs` (the best test accuracy
    over every evaluation: selection on the test set), `last_epoch` (test accuracy after the last
    epoch), `best_val_epoch` (test accuracy at the epoch with the best validation accuracy)."""

    raw: float | None = Field(None, ge=0, le=100)
    """Test top-1 (%) of the raw model at `data.test_size` (the last stage's test size)."""

    ema: float | None = Field(None, ge=0, le=100)
    """Test top-1 (%) of the EMA model at `data.test_size`."""

    val: float | None = Field(None, ge=0, le=100)
    """Validation top-1 (%) the seed reported beside its test number (raw model), where it did."""

    test_sizes: dict[str, ReferenceNumbers] = Field(default_factory=dict)
    """Numbers at other test sizes, keyed by the size in pixels (`eval.final_test_sizes`), e.g.
    `{ "448" = { ema = 86.07 } }`."""

    @model_validator(mode="after")
    def _check(self) -> "ReferenceConfig":
        for key in self.test_sizes:
            if not (key.isdigit() and MIN_SIDE <= int(key) <= MAX_SIDE):
                raise FieldProblem(f"test_sizes.{key}", f"a test size is a number of pixels between {MIN_SIDE} "
                                   f"and {MAX_SIDE}, e.g. \"448\"")
        if self.raw is None and self.ema is None and not self.test_sizes:
            raise FieldProblem("raw", "a reference needs a number: raw, ema or test_sizes")
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

    tracking: TrackingConfig | None = None
    """Experiment trackers (TensorBoard, MLflow, W&B) fed live from the run's events."""

    reference: ReferenceConfig | None = None
    """What the seed this recipe reproduces reported, and under which rule (see the README's
    Statistics section); ignored by training and by group identity."""

    @model_validator(mode="after")
    def _check(self) -> "Recipe":
        if self.eval.select_on == "val" and self.data.val_fraction == 0:
            raise FieldProblem("eval.select_on", "eval.select_on is 'val' but data.val_fraction is 0: hold out a "
                               "validation split or select on 'last'", "data.val_fraction")
        crop: str = self.data.train_crop  # a stage may also say "test"
        for i, st in enumerate(self.stages):
            crop = st.train_crop or ("test" if st.trainable == "bn_fc" else crop)
            if self.data.loader == "device" and crop not in ("pad_crop", "resize"):
                implied = "" if st.train_crop else " (a bn_fc stage trains on the test preprocessing unless told)"
                raise FieldProblem(f"stages[{i}].train_crop", f"{crop!r}{implied} is not available with data.loader = "
                                   "\"device\" (pad_crop or resize); set it, or use data.loader = \"standard\"",
                                   "data.loader", f"stages[{i}].trainable")
        return self

    @model_validator(mode="after")
    def _check_lr_and_stages(self) -> "Recipe":
        # What the recipe alone can tell about the LR plan of every stage (stage 0 is the recipe).
        lr, min_lr = self.optim.lr, getattr(self.schedule, "min_lr", None)
        if min_lr is not None and min_lr > lr:
            raise FieldProblem("schedule.min_lr", f"min_lr {min_lr:g} is above the peak optim.lr {lr:g}", "optim.lr")
        for i, st in enumerate(self.stages):
            st_lr = st.lr if st.lr is not None else lr
            st_min = st.min_lr if st.min_lr is not None else min_lr
            if st_min is not None and st_min > st_lr:
                where = "min_lr" if st.min_lr is not None else "lr"
                raise FieldProblem(f"stages[{i}].{where}", f"this stage's min_lr {st_min:g} is above its lr {st_lr:g}",
                                   f"stages[{i}].lr", f"stages[{i}].min_lr", "optim.lr", "schedule.min_lr")
            if st.warmup_epochs is not None and st.warmup_epochs >= st.epochs:
                raise FieldProblem(f"stages[{i}].warmup_epochs", f"the warm-up ({st.warmup_epochs:g} epochs) must be "
                                   f"shorter than the stage (epochs = {st.epochs})", f"stages[{i}].epochs")
        return self

    @model_validator(mode="after")
    def _check_patch_size(self) -> "Recipe":
        if self.model.arch not in _VIT_ARCHS:
            return self
        p = self.model.vit.patch_size
        sizes: list[tuple[str, int | None]] = [("data.train_size", self.data.train_size)]
        if self.data.test_crop != "none":  # "none" keeps the images' own size, which only the data knows
            sizes.append(("data.test_size", self.data.test_size))
            sizes += [(f"eval.final_test_sizes[{i}]", v) for i, v in enumerate(self.eval.final_test_sizes)]
        for i, st in enumerate(self.stages):
            sizes.append((f"stages[{i}].train_size", st.train_size))
            if self.data.test_crop != "none":
                sizes.append((f"stages[{i}].test_size", st.test_size))
        for field, size in sizes:
            if size is not None and size % p:
                raise FieldProblem(field, f"{size} px is not a multiple of model.vit.patch_size {p}",
                                   "model.vit.patch_size", "model.arch")
        return self


# --------------------------------------------------------------------------- schema walking
#
# The recipe's union sections, their tags and variants, discovered from the pydantic models by the one
# schema walker (fgbench/schema.py); everything else (error locations, the TOML writer, sweeps, the
# docs, the TUI form) asks these functions instead of keeping its own list.


@functools.cache
def union_sections() -> dict[str, tuple[str, dict[str, type[BaseModel]]]]:
    """Every discriminated-union section of the recipe by dotted path (a list item is ``[]``, as in
    ``stages[].x``): ``(tag field, {tag value: variant class})``, in schema order."""
    return {path: (tag, members) for path, tag, members in schema.walk_unions(Recipe)}


def union_variants(field_path: str) -> dict[str, type[BaseModel]]:
    """Variants of a discriminated-union section keyed by tag, e.g. ``optim`` -> {sgd: SGDConfig, ...}."""
    return union_sections()[field_path][1]


def union_tag_field(field_path: str) -> str:
    """The tag field of a union section: ``optim`` -> ``name``, ``model.pretrained`` -> ``source``."""
    return union_sections()[field_path][0]


UNION_SECTIONS = tuple(union_sections())


def _schema_path(parts: Sequence[str | int]) -> str:
    return ".".join("[]" if isinstance(p, int) else p for p in parts).replace(".[]", "[]")


def user_path(loc: Sequence[Any]) -> tuple[str | int, ...]:
    """A pydantic error location as the user wrote it: pydantic puts the union tag into the
    location (``optim.sgd.lr``); users wrote ``optim.lr``."""
    out: list[str | int] = []
    for item in loc:
        if isinstance(item, str) and out:
            union = union_sections().get(_schema_path(out))
            if union is not None and item in union[1]:
                continue
        out.append(item)
    return tuple(out)


def path_text(parts: Sequence[str | int]) -> str:
    """``stages[0].epochs``; a key that is not a bare TOML key is quoted and escaped
    (``sweep.grid."optim.lr"``, ``data."\\x1b[31m"``), so every path prints on one line."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        key = part if BARE_KEY.fullmatch(part) else '"' + safe(part).replace('"', '\\"') + '"'
        out += ("." if out else "") + key
    return out or "(recipe)"


# ------------------------------------------------------------------------------ load / save

MAX_RECIPE_BYTES = 1 << 20
"""A recipe is a few kilobytes; anything over 1 MB is not one (and is not read)."""

MAX_DEPTH = 20
"""Deepest nesting of tables and arrays a recipe may have (the schema itself needs about 6)."""


@dataclass(frozen=True)
class Override:
    """One ``--set KEY=VALUE``: the text as given, the key's parts and the parsed value."""

    text: str
    key: tuple[str, ...]
    value: Any

    @property
    def source(self) -> str:
        return f"--set {safe(self.text)}"


def parse_override(item: str) -> Override:
    if "=" not in item:
        raise RecipeError([f"--set {safe(item)}: expected KEY=VALUE, e.g. optim.lr=0.01"])
    key, raw = item.split("=", 1)
    parts = tuple(p.strip() for p in key.strip().split("."))
    if not all(parts):
        raise RecipeError([f"--set {safe(item)}: empty key part"])
    try:
        value = parse_override_value(raw)
    except ValueError as err:
        raise RecipeError([f"--set {safe(item)}: {safe(str(err))}"]) from None
    problem = _too_deep(value, 1)
    if problem:
        raise RecipeError([f"--set {safe(item)}: {problem}"])
    return Override(item, parts, value)


def _field_of(e: ErrorDetails) -> tuple[tuple[str | int, ...], tuple[tuple[str | int, ...], ...], str]:
    """(path, other paths involved, message) of one pydantic error."""
    path = user_path(e["loc"])
    msg = e["msg"].removeprefix("Value error, ")
    involves: tuple[tuple[str | int, ...], ...] = ()
    error = (e.get("ctx") or {}).get("error")
    if isinstance(error, FieldProblem):
        path = path + schema.parse_path(error.field)
        involves = tuple(user_path(e["loc"]) + schema.parse_path(f) for f in error.involves)
    elif e["type"] == "union_tag_invalid":
        ctx = e.get("ctx", {})
        union = union_sections().get(_schema_path(path))
        if union is not None:
            path = path + (union[0],)
        msg = f"unknown variant {ctx.get('tag')!r}, expected one of {ctx.get('expected_tags')}"
    elif e["type"] in ("union_tag_not_found", "model_type", "model_attributes_type", "dict_type"):
        msg = "expected a table (a [section] or { key = value, ... })"
    return path, involves, msg


def _blame(path: tuple[str | int, ...], involves: Sequence[tuple[str | int, ...]],
           overrides: Sequence[Override]) -> Override | None:
    """The ``--set`` an error comes from: the last one whose key is the error's field, a table above
    it or a key below it, or the tag of the union section the field is in."""
    for ov in reversed(overrides):
        for p in (path, *involves):
            names = tuple(x for x in p if isinstance(x, str))
            n = min(len(names), len(ov.key))
            if names[:n] == ov.key[:n]:
                return ov
            section = _schema_path(ov.key[:-1])
            if section in union_sections() and union_sections()[section][0] == ov.key[-1] \
                    and names[:len(ov.key) - 1] == ov.key[:-1]:
                return ov
    return None


def format_errors(err: ValidationError, source: str, overrides: Sequence[Override] = ()) -> list[str]:
    """One line per problem: ``FILE: field.path: message``, or ``--set KEY=VALUE: message`` when an
    override is where the problem comes from (with the field too when it is not the key itself)."""
    lines = []
    for e in err.errors(include_url=False):
        path, involves, msg = _field_of(e)
        ov = _blame(path, involves, overrides)
        msg = safe(msg)
        if ov is not None:
            if tuple(x for x in path if isinstance(x, str)) == ov.key and not any(isinstance(x, int) for x in path):
                lines.append(f"{ov.source}: {msg}")
            else:
                lines.append(f"{ov.source}: {path_text(path)}: {msg}")
        else:
            lines.append(f"{safe(source)}: {path_text(path)}: {msg}")
    return lines


def validate_recipe(data: object, source: str = "<recipe>", overrides: Sequence[Override | str] = ()) -> Recipe:
    """The Recipe for ``data`` (overrides already applied), or a RecipeError naming ``source`` or
    the ``--set`` each problem comes from. ``data`` is whatever was read (a table, or anything a
    damaged file or checkpoint holds): checking it is this function's job."""
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        ovs = [o if isinstance(o, Override) else parse_override(o) for o in overrides]
        raise RecipeError(format_errors(err, source, ovs)) from None


def _too_deep(value: Any, start: int = 0) -> str | None:
    stack = [(value, start)]
    while stack:
        node, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth >= MAX_DEPTH:
            return f"nested more than {MAX_DEPTH} tables or arrays deep"
        stack.extend((c, depth + 1) for c in children)
    return None


def parse_recipe_text(text: str, source: str = "<recipe>") -> dict[str, Any]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        msg = str(err)
        if msg.endswith("(at end of document)"):  # say where that is, like every other syntax error
            msg = msg.removesuffix("(at end of document)") + f"(at the end of the file, line {text.count(chr(10)) + 1})"
        raise RecipeError([f"{safe(source)}: TOML syntax: {safe(msg)}"]) from None
    except RecursionError:
        msg = f"TOML syntax: nested more than {MAX_DEPTH} tables or arrays deep"
        raise RecipeError([f"{safe(source)}: {msg}"]) from None
    problem = _too_deep(data)
    if problem:
        raise RecipeError([f"{safe(source)}: {problem}"])
    return data


def read_recipe_data(path: str | os.PathLike[str], overrides: Sequence[str | Override] = ()) -> dict[str, Any]:
    """The TOML data of a recipe file with ``--set`` overrides applied, not yet validated."""
    try:
        text = read_text_file(path, MAX_RECIPE_BYTES, "recipe")
    except RecipeError:
        raise
    except UserError as err:
        raise RecipeError([str(err)]) from None
    data = parse_recipe_text(text, str(path))
    if overrides:
        data = apply_overrides(data, list(overrides))
    return data


def load_recipe(path: str | os.PathLike[str], overrides: Sequence[str] | None = None) -> Recipe:
    """Read, apply ``--set`` overrides, validate. Every problem is raised as a RecipeError."""
    ovs = [parse_override(o) for o in overrides or ()]
    return validate_recipe(read_recipe_data(path, ovs), str(path), ovs)


def parse_override_value(raw: str) -> Any:
    """``--set`` values are TOML values (``0.1``, ``true``, ``[224, 448]``, ``"adamw"``); a bare
    word that is not valid TOML is taken as a string (``--set optim.name=adamw``). Raises
    ValueError for text that starts like a TOML string, array or table but is not one."""
    try:
        parsed = tomllib.loads(f"v = {raw}")
    except tomllib.TOMLDecodeError as err:
        if raw.strip()[:1] in ("[", "{", '"', "'"):
            raise ValueError(f"not a TOML value: {err}") from None
        return raw
    except RecursionError:
        raise ValueError(f"not a TOML value: nested more than {MAX_DEPTH} arrays or tables deep") from None
    if set(parsed) != {"v"}:
        raise ValueError("not one TOML value (a newline or a second key in the value)")
    return parsed["v"]


def apply_overrides(data: dict[str, Any], overrides: Sequence[str | Override], source: str = "--set") -> dict[str, Any]:
    """``data`` with each ``--set`` applied in order (``source`` is kept for old callers; errors name
    the override itself)."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        ov = item if isinstance(item, Override) else parse_override(item)
        node = out
        for i, part in enumerate(ov.key[:-1]):
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise RecipeError([f"{ov.source}: {path_text(ov.key[:i + 1])}: is not a table, so it has no "
                                   f"key {safe(ov.key[i + 1])!r}"])
            node = nxt
        node[ov.key[-1]] = copy.deepcopy(ov.value)
    return out


# --------------------------------------------------------------------------------- writing


def recipe_to_dict(recipe: Recipe, *, full: bool = True) -> dict[str, Any]:
    """Plain data for TOML: ``full`` keeps defaults (the resolved recipe), otherwise only what
    differs from them, with the tag of every union section that is written (or that is not the
    default variant), so the file loads back. None is dropped since TOML has no null."""
    data = recipe.model_dump(mode="json", exclude_none=True, exclude_defaults=not full)
    if not full:
        _keep_union_tags(recipe, data)
    return data


def _keep_union_tags(model: BaseModel, data: dict[str, Any]) -> None:
    # exclude_defaults drops a union's tag (it is each variant's default), which would leave e.g.
    # `[optim] lr = 0.01` with no `name`: unloadable, or loaded as SGD. Put the tag back, first. A
    # section whose variant is not the default is always in `data` (as {} when its fields are all
    # defaults), so walking what is there finds every union that needs its tag.
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        sub = data.get(name)
        members = schema.union_members(schema.strip_optional(info.annotation)[0])
        if members and isinstance(value, BaseModel) and isinstance(sub, dict):
            tag = schema.union_tag(members)
            data[name] = sub = {tag: getattr(value, tag), **{k: v for k, v in sub.items() if k != tag}}
        if isinstance(value, BaseModel) and isinstance(sub, dict):
            _keep_union_tags(value, sub)
        elif isinstance(value, list) and isinstance(sub, list):
            for item, item_data in zip(value, sub):
                if isinstance(item, BaseModel) and isinstance(item_data, dict):
                    _keep_union_tags(item, item_data)


def dumps_recipe(recipe: Recipe, *, full: bool = True) -> str:
    """The one TOML writer of recipes (``recipe show``, run directories, sweeps, the TUI's files):
    ``full`` spells out every default, otherwise only what differs. Written as a person writes
    TOML (tomlkit): a multi-line string (a long description) as a multi-line string with its
    quotes unescaped, a list of numbers on one line (``crop_scale = [0.08, 1.0]``), a list of
    tables (``[[stages]]``) as tables. tomli-w escaped every quote and put each list element on
    its own line."""
    import tomlkit

    def value(v: Any) -> Any:
        if isinstance(v, str) and "\n" in v and "\r" not in v:  # a CR there would read back as LF
            return tomlkit.string(v, multiline=True)
        if isinstance(v, dict):
            return {k: value(x) for k, x in v.items()}
        if isinstance(v, list):
            return [value(x) for x in v]
        return v

    doc = tomlkit.document()
    for key, v in recipe_to_dict(recipe, full=full).items():
        doc[key] = value(v)
    return tomlkit.dumps(doc)


def save_recipe(recipe: Recipe, path: str | os.PathLike[str], *, full: bool = False) -> None:
    atomic_write_text(path, dumps_recipe(recipe, full=full))

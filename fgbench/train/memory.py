"""Sizes the recipe schema allows but the machine's memory does not (issue 21, item 10).

Two guards, each giving one line instead of a traceback (or the kernel's out-of-memory killer):

* Before anything is built, :func:`check_model_fits` builds the model on PyTorch's ``meta`` device
  (shapes only, no memory) and counts its parameters. Training holds each parameter several times
  in fp32: the weights, their gradients, the optimizer's state (two moments for the Adam family,
  one momentum buffer for SGD with momentum) and an EMA copy. When that alone exceeds the device's
  whole memory (a ViT of width 4096 and depth 64: 12.9 billion parameters, about 260 GB with
  AdamW), the run is refused as bad input (exit 2) naming the fields. Allocating it for real
  would take minutes and end in the allocator or the OOM killer.
* Activations depend on the images (2048 px at batch 64 is 34 GB for one convolution's output)
  and are not estimated; an allocation that fails while training is :func:`oom_line`: one line
  naming the sizes to lower, the run recorded ``failed`` (exit 1) with the traceback kept in its
  events.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from fgbench.errors import UserError

if TYPE_CHECKING:
    import torch


def _fmt_gb(n: float) -> str:
    return f"{n / 2**30:.1f} GB"


def device_memory(device: "torch.device") -> int | None:
    """The whole memory of ``device`` in bytes (a GPU's, or the machine's RAM for the CPU)."""
    try:
        if device.type == "cuda":
            import torch

            return int(torch.cuda.get_device_properties(device).total_memory)
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001 - no estimate is better than a wrong refusal
        return None


def training_copies(recipe) -> int:
    """How many fp32 copies of the parameters training keeps (weights, gradients, optimizer state, EMA).
    The optimizer's state is read off its recipe section, so a new optimizer needs no entry here: one
    with ``betas`` keeps two moments (the Adam family), one with a nonzero ``momentum`` one buffer."""
    optim = recipe.optim
    state = 2 if getattr(optim, "betas", None) is not None else 1 if getattr(optim, "momentum", 0) else 0
    return 2 + state + (1 if recipe.ema.enabled else 0)


def count_parameters(model_cfg, num_classes: int, data_cfg) -> int | None:
    """Parameters of the model the recipe describes, counted on the ``meta`` device (no memory)."""
    import torch

    from fgbench.recipe import NoPretrained
    from fgbench.train.models import build_model

    try:
        with torch.device("meta"):
            built = build_model(model_cfg.model_copy(update={"pretrained": NoPretrained()}), num_classes,
                                data_cfg=data_cfg)
        return sum(p.numel() for p in built.model.parameters())
    except Exception:  # noqa: BLE001 - a model that cannot be built on meta is checked by the real build
        return None


def check_model_fits(recipe, model_cfg, num_classes: int, device: "torch.device") -> None:
    """Refuse (``UserError``) a model whose parameters alone cannot fit in ``device``'s memory."""
    total = device_memory(device)
    if total is None:
        return
    params = count_parameters(model_cfg, num_classes, recipe.data)
    if params is None:
        return
    copies = training_copies(recipe)
    need = params * 4 * copies
    if need > total:
        where = "this GPU" if device.type == "cuda" else "this machine"
        count = f"{params / 1e9:.1f} billion" if params >= 1e9 else f"{params / 1e6:.1f} million"
        raise UserError(f"model: {recipe.model.arch} has {count} parameters; training holds "
                        f"them {copies} times in fp32 (weights, gradients, optimizer state"
                        f"{', EMA' if recipe.ema.enabled else ''}), about {_fmt_gb(need)}, more than the "
                        f"{_fmt_gb(total)} of {where}: choose a smaller model (e.g. model.vit.width or depth)")


_ALLOC = re.compile(r"tried to allocate ([\d.]+) ?(bytes|[KMGT]i?B)", re.IGNORECASE)


def is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, MemoryError):
        return True
    try:
        import torch

        if isinstance(err, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    text = str(err)
    return isinstance(err, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


def oom_line(err: BaseException, recipe: Any, device: "torch.device", batch_size: int | None = None,
             train_size: int | None = None) -> str:
    """One line for an allocation that failed while training."""
    m = _ALLOC.search(str(err))
    tried = ""
    if m:
        n, unit = float(m.group(1)), m.group(2).upper().replace("I", "")
        scale = {"BYTES": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}.get(unit, 1)
        tried = f" (it tried to allocate {_fmt_gb(n * scale)})"
    bs = batch_size or recipe.data.batch_size
    size = train_size or recipe.data.train_size
    return (f"out of memory on {device.type}{tried}: {size} px images at batch {bs} do not "
            f"fit; lower data.batch_size or data.train_size (or use runtime.precision = \"bf16\")")

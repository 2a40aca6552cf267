"""`fgbench predict` and `fgbench evaluate`: use a finished (or stopped) run's checkpoint.

Engine zone (torch). Everything is rebuilt from the run directory alone: the checkpoint embeds the
resolved recipe and the class names, so a run directory copied to another machine still predicts.

Decisions:

* The model is rebuilt with ``build_model`` from the checkpoint's recipe, but with
  ``pretrained`` switched off: the checkpoint's weights replace any initial weights, and
  rebuilding must not need the ImageNet file (or the network).
* Weights: ``--checkpoint best`` (default) or ``last``; ``--ema`` takes the EMA weights stored
  beside the raw ones, and fails with a clear message when the run kept none.
* Preprocessing is the run's own test transform (``fgbench.data.transforms.test_transform``) at
  the test size of the stage the checkpoint comes from (a FixRes second stage tests at 448), or
  at ``--test-size``. Recipes with ``test_crop = "none"`` (CIFAR) use the dataset's images as
  they are; an image of another size given to ``predict`` is first resized to the test size, since
  a photo from elsewhere is rarely 32x32, and ``evaluate --test-size N`` with N other than the
  recipe's resizes the images to N x N (otherwise the size would change nothing). ``data.crop_banner`` is applied as in training.
* ``evaluate`` measures with the trainer's own ``evaluate`` (same top-1/top-k, loss and
  confusion code, same splits: the validation split is re-derived from ``data.val_seed``), so a
  re-evaluation at the recipe's test size reproduces the run's own number. Precision follows
  ``runtime.precision`` on CUDA and is fp32 on CPU.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from fgbench.rundir import layout
from fgbench.errors import UserError
from fgbench.recipe import NoPretrained, Recipe, RecipeError, validate_recipe


@dataclass
class LoadedRun:
    recipe: Recipe
    class_names: list[str]
    model: torch.nn.Module
    checkpoint: str  # best | last
    epoch: int | None
    weights: str  # raw | ema
    test_size: int
    device: torch.device
    channels_last: bool = False  # the memory format training used (runtime.channels_last on this device)


def pick_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")


def _stage_test_size(recipe: Recipe, stage: Any) -> int:
    """The test size in force during the checkpoint's stage (stage 0 is the first)."""
    sizes = [recipe.data.test_size]
    for st in recipe.stages:
        sizes.append(st.test_size or sizes[-1])
    if isinstance(stage, str):
        names = ["stage"] + [st.name for st in recipe.stages]
        stage = names.index(stage) if stage in names else 0
    if not isinstance(stage, int) or not 0 <= stage < len(sizes):
        stage = 0
    return sizes[stage]


def _state_dict(entry: Any) -> dict[str, torch.Tensor] | None:
    """The checkpoint's ``model``/``ema`` entry as a state dict (the EMA may be stored as
    ``{"module": state_dict, "updates": n}``)."""
    if entry is None:
        return None
    if isinstance(entry, dict) and isinstance(entry.get("module"), dict):
        return entry["module"]
    return entry


def load_run(run_dir: str | os.PathLike[str], *, checkpoint: str = "best", ema: bool = False,
             device: str = "auto", test_size: int | None = None) -> LoadedRun:
    from fgbench.train.checkpoint import load_checkpoint
    from fgbench.train.models import build_model, channels_last_for

    run_dir = Path(run_dir)
    path = run_dir / layout.CHECKPOINT_DIR / (layout.BEST_CKPT if checkpoint == "best" else layout.LAST_CKPT)
    if not path.is_file():
        other = "last" if checkpoint == "best" else "best"
        other_file = layout.LAST_CKPT if other == "last" else layout.BEST_CKPT
        hint = (f"; try --checkpoint {other}" if (run_dir / layout.CHECKPOINT_DIR / other_file).is_file()
                else " (the run has not finished an epoch)")
        raise UserError(f"{path}: no such checkpoint{hint}")
    ckpt = load_checkpoint(path)  # a CheckpointError is one line naming the file
    try:
        recipe = validate_recipe(ckpt.get("recipe"), f"{path} (embedded recipe)")
    except RecipeError as err:
        raise UserError(f"{err.lines[0]}") from None
    class_names = list(ckpt.get("class_names") or [])
    if not class_names:
        raise UserError(f"{path}: the checkpoint has no class names")
    weights = _state_dict(ckpt.get("ema") if ema else ckpt.get("model"))
    if weights is None:
        raise UserError(f"{path}: no EMA weights in this checkpoint (the run had ema.enabled = false); drop --ema"
                        if ema else f"{path}: no model weights in this checkpoint")
    dev = pick_device(device)
    model_cfg = recipe.model.model_copy(update={"pretrained": NoPretrained()})
    num_classes = recipe.model.num_classes or len(class_names)
    built = build_model(model_cfg, num_classes, data_cfg=recipe.data)
    model = built.model
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise UserError(f"{path}: weights do not fit the recipe's model ({str(err).splitlines()[0]})") from None
    model.to(dev).eval()
    channels_last = channels_last_for(recipe.runtime.channels_last, recipe.model.arch, dev.type)[0]
    if channels_last:
        model.to(memory_format=torch.channels_last)
    size = test_size or _stage_test_size(recipe, ckpt.get("stage", 0))
    epoch = weights_epoch(ckpt, "ema" if ema else "raw")
    return LoadedRun(recipe, class_names, model, checkpoint, epoch, "ema" if ema else "raw", size, dev, channels_last)


def weights_epoch(ckpt: dict, which: str) -> int | None:
    """The epoch the checkpoint's ``which`` ("raw"/"ema") weights are from. ``last.pt`` holds both
    models of its ``epoch``; ``best.pt`` each model's own best epoch (``epochs``; older files: the
    best tracker's record, which is the same number)."""
    if ckpt.get("kind") == "best":
        epochs = ckpt.get("epochs")
        if isinstance(epochs, dict):
            e = epochs.get(which)
        else:
            e = ((ckpt.get("best_tracker") or {}).get("best") or {}).get(which, {}) or {}
            e = e.get("epoch")
        return int(e) if e is not None else None
    e = ckpt.get("epoch")
    return int(e) if e is not None else None


def _autocast(loaded: LoadedRun):
    """The run's evaluation precision (``eval.precision``): fp32 unless it evaluated under autocast."""
    precision = loaded.recipe.runtime.precision if loaded.recipe.eval.precision == "train" else "fp32"
    if precision in ("bf16", "fp16"):  # as the trainer's Engine.eval_autocast
        return torch.autocast(loaded.device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict_images(run_dir: str | os.PathLike[str], images: Sequence[str], *, top_k: int = 5, ema: bool = False,
                   checkpoint: str = "best", device: str = "auto", test_size: int | None = None) -> list[dict]:
    """Top-k classes of each image: ``[{"image", "top": [{"class", "index", "probability"}]}]``."""
    from fgbench.data import transforms
    from fgbench.data.loaders import FileSource, decode_errors, decode_need

    loaded = load_run(run_dir, checkpoint=checkpoint, ema=ema, device=device, test_size=test_size)
    data = loaded.recipe.data
    tf = transforms.test_transform(data, loaded.test_size)
    draft = decode_need(tf, data)
    source = FileSource([(str(p), 0) for p in images], 20 if data.crop_banner else 0)
    k = min(top_k, len(loaded.class_names))
    out = []
    for i, image in enumerate(images):
        try:
            img = source.load(i, draft)
        except decode_errors() as err:
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise UserError(msg if str(image) in msg else f"{image}: cannot decode image ({msg})") from None
        if data.test_crop == "none" and img.size != (loaded.test_size, loaded.test_size):
            img = img.resize((loaded.test_size, loaded.test_size))
        x = tf(img).unsqueeze(0).to(loaded.device)
        with _autocast(loaded):
            logits = loaded.model(x)
        if not isinstance(logits, torch.Tensor):
            logits = logits[0]
        probs = logits.float().softmax(dim=1)[0]
        p, idx = probs.topk(k)
        out.append({"image": str(image), "checkpoint": loaded.checkpoint, "model": loaded.weights,
                    "epoch": loaded.epoch, "top": [
            {"class": loaded.class_names[j], "index": int(j), "probability": float(q)}
            for q, j in zip(p.tolist(), idx.tolist())
        ]})
    return out


class _EvalEngine:
    """What ``fgbench.train.loop.evaluate`` reads from its engine: device, autocast, memory format."""

    reduce = None  # one process: nothing to sum over

    def __init__(self, loaded: LoadedRun):
        self.device = loaded.device
        self.channels_last = loaded.channels_last
        self._loaded = loaded

    def eval_autocast(self):
        return _autocast(self._loaded)


def evaluate_run(run_dir: str | os.PathLike[str], *, test_sizes: Sequence[int] | None = None, ema: bool = False,
                 checkpoint: str = "best", split: str = "test", device: str = "auto",
                 batch_size: int | None = None, workers: int | None = None) -> list[dict]:
    """Accuracy of a checkpoint on the run's test (or val) split at each test size."""
    from fgbench.data.index import resolve_index
    from fgbench.data.loaders import eval_loader, load_splits
    from fgbench.train.loop import evaluate

    loaded = load_run(run_dir, checkpoint=checkpoint, ema=ema, device=device)
    recipe = loaded.recipe
    data = recipe.data if workers is None else recipe.data.model_copy(update={"workers": workers})
    if split == "val" and data.val_fraction == 0:
        raise UserError(f"{run_dir}: --split val: the run has no validation split (data.val_fraction = 0)")
    splits = load_splits(resolve_index(data), data)
    if len(splits.class_names) != len(loaded.class_names) or list(splits.class_names) != loaded.class_names:
        raise UserError(f"{run_dir}: the dataset's classes no longer match the checkpoint's "
                        f"({len(splits.class_names)} vs {len(loaded.class_names)})")
    bs = batch_size or data.eval_batch_size or data.batch_size
    engine = _EvalEngine(loaded)
    results = []
    for size in (list(test_sizes) if test_sizes else [loaded.test_size]):
        size_data = data
        if data.test_crop == "none" and size != loaded.test_size:
            # the recipe uses its images as they are (CIFAR): another test size means resizing to it
            size_data = data.model_copy(update={"test_crop": "resize"})
        loader = eval_loader(splits, size_data, test_size=size, batch_size=bs, device=loaded.device, split=split)

        def corrupt(paths: tuple[str, ...]) -> None:
            if not data.skip_corrupt:
                raise UserError(f"{paths[0]}: cannot decode image; set data.skip_corrupt = true to skip such files")

        res = evaluate(loaded.model, loader, engine, num_classes=len(loaded.class_names),
                       top_k=recipe.eval.top_k, on_corrupt=corrupt)
        results.append({
            "test_size": size, "top1": res["top1"], "topk": res["topk"], "k": min(recipe.eval.top_k, len(loaded.class_names)),
            "loss": res["loss"], "images": res["images"], "checkpoint": loaded.checkpoint, "epoch": loaded.epoch,
            "model": loaded.weights, "split": split, "test_crop": size_data.test_crop,
            "class_names": loaded.class_names,
            **({"confusion": res["confusion"].tolist()} if res["confusion"] is not None
               else {"confusion_cells": res["confusion_cells"].tolist()}),
        })
    return results

"""What a run needs before it writes anything, built once: :class:`RunPlan` (engine zone).

:func:`build_plan` loads and checks the recipe (once), resolves the device, indexes the dataset,
resolves the stages (once, with the global batch), decides the loader (``splits.choice``, the one
source the trainer's loaders follow: :func:`~fgbench.data.loaders.choose_loader` is also the one
check that the recipe allows an explicit ``data.loader = "device"``), checks the transforms and
what only the dataset can tell about the recipe (:func:`preflight`), builds the model and reads the
resume point. Everything here raises ``UserError`` / ``RecipeError`` on the user's input, which the
CLI prints as one line with exit code 2; no file of the run exists yet.
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from fgbench.errors import RecipeError, UserError
from fgbench.recipe import FileWeights, MocoWeights, Recipe, load_recipe, validate_recipe
from fgbench.rundir import layout
from fgbench.rundir.request import RunRequest
from fgbench.textfile import file_kind
from fgbench.textsafe import safe
from fgbench.train.stages import StageSpec, resolve_stages

if TYPE_CHECKING:
    from fgbench.data.loaders import Splits
    from fgbench.train.distributed import World


@dataclass(frozen=True)
class ResumePoint:
    """The run being continued: its directory and checkpoints (``best.pt`` may be missing)."""

    run_dir: Path
    last: dict[str, Any]
    best: dict[str, Any] | None


@dataclass(frozen=True)
class RunPlan:
    """Everything a run needs that can fail on the user's input, made before any file is written."""

    request: RunRequest
    recipe: Recipe
    device: torch.device
    splits: "Splits"
    stages: tuple[StageSpec, ...]
    """resolved with the global batch (``distributed.global_batch_recipe``)"""
    model: torch.nn.Module
    channels_last: tuple[bool, str]
    """(train in channels_last, why): the model was converted by this rule"""
    report: tuple[str, ...]
    """lines about the dataset folder and the model, logged at the start of the run"""
    resume: ResumePoint | None = None
    world_size: int = 1
    precision: tuple[str, str] = ("fp32", "runtime.precision = \"fp32\"")
    """(what ``runtime.precision`` resolved to, why); ``recipe`` already holds the resolved value"""

    @property
    def source(self) -> str | None:
        """The recipe file a message names (None for a resumed run, whose recipe is its own)."""
        return None if self.request.resume else self.request.recipe


# ------------------------------------------------------------------------------------ preparing


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("runtime.device: \"cuda\" was asked for but no CUDA device is available (use auto or cpu)")
    return torch.device(name)


def setup_runtime(recipe: Recipe, device: torch.device) -> None:
    rt = recipe.runtime
    if rt.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if device.type == "cuda":
        matmul, conv = tf32_flags(rt.tf32, rt.precision)
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = conv
    seed_everything(rt.seed)


def cuda_bf16_native(device: torch.device) -> bool:
    """Whether this CUDA device computes bf16 natively (compute capability 8.0 and later); older GPUs
    only emulate it, slower than fp32."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # pragma: no cover - torch before 2.3 has no ``including_emulation``
        return torch.cuda.get_device_capability(device) >= (8, 0)


def resolve_precision(asked: str, device: torch.device, *,
                      bf16_native: Callable[[torch.device], bool] = cuda_bf16_native) -> tuple[str, str]:
    """(the precision to train in, why) for ``runtime.precision`` on ``device``. ``auto`` is bf16
    autocast on a CUDA device with native bf16 (no gradient scaler, about twice fp32's speed on
    tensor cores) and fp32 elsewhere; any other value is taken as written. ``bf16_native``: the
    capability probe (tests pass a fake one)."""
    if asked != "auto":
        return asked, f"runtime.precision = \"{asked}\""
    if device.type == "cuda":
        if bf16_native(device):
            return "bf16", "runtime.precision = \"auto\": this CUDA device computes bf16 natively"
        return "fp32", "runtime.precision = \"auto\": this CUDA device has no native bf16 (before compute capability 8.0)"
    return "fp32", f"runtime.precision = \"auto\": fp32 on the {device.type.upper()} (auto picks bf16 on CUDA only)"


def with_precision(recipe: Recipe, precision: str) -> Recipe:
    """``recipe`` with ``runtime.precision`` set to a resolved value (no other field changes)."""
    if recipe.runtime.precision == precision:
        return recipe
    runtime = recipe.runtime.model_copy(update={"precision": precision})
    return recipe.model_copy(update={"runtime": runtime})


PYTORCH_TF32 = (False, True)
"""PyTorch's own defaults since 1.12: (matmul, cuDNN convolutions)."""


def tf32_flags(tf32: bool | str, precision: str) -> tuple[bool, bool]:
    """(matmul, convolution) TF32 for ``runtime.tf32`` and the precision. ``auto`` keeps fp32 recipes
    in true fp32 (TF32 would silently change the results of the seeds' fp32 recipes) and leaves
    autocast recipes at PyTorch's defaults."""
    if tf32 is True:
        return True, True
    if tf32 is False:
        return False, False
    if tf32 == "pytorch" or precision != "fp32":
        return PYTORCH_TF32
    return False, False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:  # pragma: no cover - numpy ships with torchvision
        pass


def check_transforms(recipe: Recipe) -> None:
    """Build every transform the run will use once: normalization constants (``data.normalize =
    "dataset"`` needs known ones) and the crop settings fail here, not after the run exists."""
    from fgbench.data import transforms

    data = recipe.data
    for size in {data.train_size, *(st.train_size for st in recipe.stages if st.train_size)}:
        transforms.train_transform(data, recipe.augment, size)
    for size in {data.test_size, *(st.test_size for st in recipe.stages if st.test_size), *recipe.eval.final_test_sizes}:
        transforms.test_transform(data, size)


MAGIC_BYTES = (b"PK\x03\x04", b"\x80")
"""How a torch.save file starts: a zip archive (the format since torch 1.6) or a pickle (older)."""


def preflight(recipe: Recipe, splits: "Splits", source: str | None = None) -> None:
    """What only the dataset can tell about the recipe, checked before the run directory exists
    (``source``: the recipe file, named in the message): the model's outputs hold every class, the
    validation split has an image of every class, a pretrained file is a weights file."""
    where = f"{safe(source)}: " if source else ""
    n = splits.num_classes
    want = recipe.model.num_classes
    if want is not None and want < n:
        raise UserError(f"{where}model.num_classes: {want} outputs cannot hold the {n} classes of "
                        f"{recipe.data.dataset}; unset it to use the dataset's class count")
    if recipe.data.val_fraction > 0:
        labels = splits.train_source.labels
        in_val = {labels[i] for i in splits.val}
        missing = sorted(set(labels) - in_val)
        if missing:
            name = splits.class_names[missing[0]] if missing[0] < len(splits.class_names) else str(missing[0])
            count = sum(1 for y in labels if y == missing[0])
            raise UserError(f"{where}data.val_fraction: the validation split has no image of {len(missing)} of the "
                            f"{n} classes (e.g. {safe(str(name))!r}, with {count} training image"
                            f"{'s' if count != 1 else ''}); every class needs at least 2 training images, or "
                            "set data.val_fraction = 0 and eval.select_on = \"last\"")
    pre = recipe.model.pretrained
    path = pre.path if isinstance(pre, (FileWeights, MocoWeights)) else None
    if path:
        field = f"{where}model.pretrained.path"
        p = Path(path).expanduser()
        shown = safe(str(p))
        try:
            st = os.stat(p)
        except OSError:
            raise UserError(f"{field}: {shown}: weights file not found") from None
        import stat

        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (a FIFO or device)"
            raise UserError(f"{field}: {shown} is {kind}, not a weights file")
        try:
            fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            try:
                head = os.read(fd, 4)
            finally:
                os.close(fd)
        except OSError as err:
            raise UserError(f"{field}: {shown}: cannot read: {err.strerror or err}") from None
        if not head.startswith(MAGIC_BYTES):
            raise UserError(f"{field}: {shown} is not a PyTorch weights file (torch.save writes a zip archive "
                            "or a pickle)")


def resume_dir(request: RunRequest) -> Path:
    """The run ``--resume`` names, checked to be a run directory."""
    assert request.resume is not None
    try:
        run_dir = layout.resolve_run(request.resume, request.runs_root)
    except FileNotFoundError as err:
        raise UserError(f"--resume: {err}") from None
    if not (run_dir / layout.RECIPE_FILE).is_file():
        raise UserError(f"{run_dir}: not a run directory (no {layout.RECIPE_FILE})")
    return run_dir


def _resume_point(run_dir: Path) -> ResumePoint:
    from fgbench.train import checkpoint

    last = run_dir / layout.CHECKPOINT_DIR / layout.LAST_CKPT
    if not last.is_file() and os.path.lexists(last):  # a FIFO (torch.load would block on it), a device, a folder
        try:
            why = f"is {file_kind(os.stat(last).st_mode) or 'not a regular file'}, not a checkpoint file"
        except OSError as err:  # a symlink loop
            why = f"cannot be read ({err.strerror or err})"
        raise UserError(f"{run_dir}: cannot resume: {last} {why}")
    if not last.is_file():
        # killed before its first checkpoint landed (the checkpoint is written in the background
        # while the next epoch trains): its recipe is all there is to go on
        raise UserError(f"{run_dir}: no checkpoint to resume from ({last} is missing: the run was stopped before "
                        f"its first checkpoint was written); start it again as a new run: fgbench run "
                        f"{run_dir / layout.RECIPE_FILE}")
    ckpt = checkpoint.load_checkpoint(last)  # a CheckpointError is one line naming the file
    best = None
    best_path = run_dir / layout.CHECKPOINT_DIR / layout.BEST_CKPT
    if best_path.is_file():
        try:
            best = checkpoint.load_checkpoint(best_path)
        except checkpoint.CheckpointError as err:
            raise checkpoint.CheckpointError(f"{err}; move it away to resume without the best weights so far") from None
    return ResumePoint(run_dir, ckpt, best)


def check_same_images(ckpt: dict[str, Any], splits: "Splits", run_dir: Path) -> None:
    """A resumed run trains on the images its checkpoint was taken with. A file deleted, moved or
    added while the run was stopped is not in the new scan, and the rest shift: a validation split
    drawn by index would mix training and validation images, and the mid-epoch position would point
    elsewhere. The counts say what moved; a digest of the file list catches a rename or a swap that
    keeps them. One line instead (checkpoints from before these records are not checked)."""
    had = ckpt.get("data_images")
    if not isinstance(had, dict):
        return
    now = splits.image_counts()
    changed = [f"{k} {now[k]} images, {had[k]} at the checkpoint" for k in now
               if isinstance(had.get(k), int) and had[k] != now[k]]
    if changed:
        raise UserError(f"{run_dir}: the dataset changed since the run's last checkpoint ({', '.join(changed)}): "
                        "an image was deleted, moved or added; put the dataset back as it was, or start a new run")
    digests = ckpt.get("data_digests")
    if isinstance(digests, dict):
        now_digests = splits.image_digests()
        other = [k for k in now_digests if isinstance(digests.get(k), str) and digests[k] != now_digests[k]]
        if other:
            raise UserError(f"{run_dir}: the dataset changed since the run's last checkpoint (the {' and '.join(other)} "
                            "images are not the files it had: one renamed, moved, or swapped for another); put the "
                            "dataset back as it was, or start a new run")


def build_plan(request: RunRequest, *, recipe: Recipe | None = None, resume: Path | None = None,
               world: "World | None" = None, launcher: bool = False) -> RunPlan:
    """Load and check the recipe (``recipe``: already loaded from ``request``, e.g. by the CLI
    before torch was imported), the dataset and the model. ``resume``: the run directory of a
    ``--resume`` (locked by the caller). ``world``: this process's place in a DDP job;
    ``launcher``: the ``--nproc`` parent, which checks but trains nothing. A problem found after
    the recipe loaded names the recipe file too."""
    try:
        return _build(request, recipe=recipe, resume=resume, world=world, launcher=launcher)
    except RecipeError:
        raise
    except UserError as err:
        if request.resume or not request.recipe:
            raise
        source = safe(str(request.recipe))
        msg = str(err)
        if msg.startswith((f"{source}: ", "-")):  # already named, or about a command-line flag
            raise
        raise UserError(f"{source}: {msg}") from None


def _build(request: RunRequest, *, recipe: Recipe | None, resume: Path | None, world: "World | None",
           launcher: bool) -> RunPlan:
    from fgbench.data.index import folder_report, resolve_index
    from fgbench.data.loaders import load_splits, mix_seed
    from fgbench.recipe import NoPretrained
    from fgbench.train import distributed
    from fgbench.train.models import build_model, channels_last_for

    point = None
    if resume is not None:
        recipe = load_recipe(resume / layout.RECIPE_FILE, list(request.overrides))  # only RESUME_OVERRIDES
        point = _resume_point(resume)
    elif recipe is None:
        assert request.recipe is not None  # RunRequest.check: a recipe or --resume
        recipe = load_recipe(request.recipe, list(request.overrides))
    if request.device:
        data = recipe.model_dump(mode="json")
        data["runtime"]["device"] = request.device
        recipe = validate_recipe(data, "--device")

    world_size = world.size if world is not None else 1
    if launcher:
        world_size = distributed.check_launch(request, recipe)
        device = torch.device("cpu")  # the launcher only builds the model to check it
    elif world is not None:
        device = distributed.device_for(recipe.runtime.device, world)
        if device.type == "cuda":
            torch.cuda.set_device(device)
    else:
        device = resolve_device(recipe.runtime.device)
    precision = resolve_precision(recipe.runtime.precision, device)
    if not launcher:  # the launcher's device is a placeholder: each worker resolves on its own device
        recipe = with_precision(recipe, precision[0])
    index = resolve_index(recipe.data)
    schedule: Any = recipe.schedule  # every variant of the tagged union has ``epochs``
    for path in index.not_files if world is None or world.is_main else []:
        print(f"{safe(str(path))}: not a regular file (a FIFO, device or dangling link); skipped", file=sys.stderr)
    splits = load_splits(index, recipe.data,
                         train_sizes=[st.train_size for st in recipe.stages if st.train_size],
                         test_sizes=[st.test_size for st in recipe.stages if st.test_size] + recipe.eval.final_test_sizes,
                         augment=recipe.augment, device=device,
                         epochs=schedule.epochs + sum(st.epochs for st in recipe.stages))
    if point is not None and resume is not None:
        check_same_images(point.last, splits, resume)
    preflight(recipe, splits, None if request.resume else request.recipe)
    # the stages, resolved once with the global batch: what only the data can check, and the trainer's
    stages = tuple(resolve_stages(distributed.global_batch_recipe(recipe, world_size), len(splits.train)))
    distributed.check_batches(recipe, len(splits.train), world_size)
    check_transforms(recipe)
    if not launcher:
        setup_runtime(recipe, device)
    model_cfg = recipe.model
    if point is not None:
        # The checkpoint holds the weights; do not reach for the pretrained file again.
        model_cfg = model_cfg.model_copy(update={"pretrained": NoPretrained()})
    from fgbench.train.memory import check_model_fits, is_out_of_memory

    check_model_fits(recipe, model_cfg, splits.num_classes, device)  # 12.9 billion parameters: one line, not the OOM killer
    try:
        built = build_model(model_cfg, splits.num_classes, data_cfg=recipe.data)
    except Exception as err:
        if not is_out_of_memory(err):
            raise
        raise UserError(f"model: {recipe.model.arch} does not fit in memory while it is built ({err}); choose a "
                        "smaller model") from None
    model = built.model
    if not launcher:
        if world is not None and world.rank > 0:
            # Same initial weights everywhere (DDP also broadcasts rank 0's), but from here on each
            # process draws its own dropout masks and mixing pairs; rank 0 keeps the run's stream.
            seed_everything(mix_seed(recipe.runtime.seed, world.rank))
        if world_size > 1 and recipe.distributed.sync_bn:
            model = distributed.convert_sync_bn(model, device)
        model = model.to(device)
    channels_last = channels_last_for(recipe.runtime.channels_last, recipe.model.arch, device.type)
    if channels_last[0] and not launcher:
        model = model.to(memory_format=torch.channels_last)
    report = (*folder_report(index, len(splits.val)), *built.report,
              f"memory format: {'channels_last' if channels_last[0] else 'NCHW'} ({channels_last[1]})",
              f"precision: {precision[0]} ({precision[1]})")
    if splits.loader != "device":  # the device loader has no workers
        from fgbench.data.loaders import resolve_workers

        workers, why_workers = resolve_workers(recipe.data)
        report = (*report, f"loader workers: {workers} ({why_workers})")
    return RunPlan(request=request, recipe=recipe, device=device, splits=splits, stages=stages, model=model,
                   channels_last=channels_last, report=report, resume=point, world_size=world_size,
                   precision=precision)

"""``fgbench run``: from arguments to a finished (or cleanly stopped) run directory.

Order of work, chosen so that a user's mistake never leaves a half-made run behind: load and
validate the recipe (and ``--set``), resolve the device, index the dataset, build the model; only
then create the run directory and write its files. Everything up to that point raises
``UserError`` / ``RecipeError``, which the CLI prints as one line with exit code 2.

Once the run exists, every outcome is recorded as a ``run_finished`` event and in
``summary.json``: ``completed`` (exit 0), ``interrupted`` by SIGINT/SIGTERM after the current step
and a ``last.pt`` checkpoint (exit 130), ``failed`` with the error and traceback (exit 1), or
``failed`` because the disk is full (exit 1, one line naming the file and the free space). Bad
data found while training, e.g. an undecodable or missing image, is exit 2 like any bad input.

The trainer's stdout and stderr are copied into ``log.txt`` (a tee, so the terminal still shows
them); the progress bar's in-place redraws go to the terminal only.

A run directory that this invocation made (new, or given empty with ``--run-dir``) is removed (or
emptied again) when a ``UserError`` stops the run: bad input leaves nothing behind, also when it
is only found while the first stage is set up (a ``device`` loader that cannot stack the images)
or in the first epoch (an undecodable image without ``data.skip_corrupt``), and so is one whose
first files could not be written for a full disk. A run with results (a checkpoint, or an ended
epoch: ``RunDir.has_results``) is never removed by fgbench: bad data found later ends it ``failed``
(exit 2) with its checkpoints, and the one line says how to ``--resume`` it once the file is fixed.
A resumed run's directory is never removed.

One process trains in a run directory at a time: the run's lock (``fgbench.rundir.lock``) is
taken before anything is written there (for ``--resume``, before its status is trusted) and held
until the process exits, so a second ``fgbench run --run-dir DIR`` or ``--resume`` of the same run
exits 2 naming the holder instead of interleaving metrics and overwriting checkpoints.

``--nproc N`` / ``--nnodes`` run the same code in N processes through torchrun
(``fgbench.train.distributed``): this process becomes the launcher (checks everything, creates the
run directory, starts torchrun, returns rank 0's exit code) and each worker prepares exactly as a
single process does, agrees with the others that preparation succeeded, and trains its shard;
only rank 0 writes the run directory.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from fgbench.atomic import DiskFullError, disk_full_cause, free_text
from fgbench.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UserError
from fgbench.textsafe import safe, safe_lines
from fgbench.rundir import events as metrics
from fgbench.rundir import layout as runs
from fgbench.rundir import procs
from fgbench.rundir.lock import LOCKED_ENV, RunBusy, RunLock, holder, locked_by_parent
from fgbench.rundir.reader import RunReader
from fgbench.recipe import RecipeError, dumps_recipe, load_recipe, validate_recipe



class Tee(io.TextIOBase):
    """Writes to the terminal stream and to the log file."""

    def __init__(self, stream: TextIO, log: TextIO):
        self.stream, self.log = stream, log

    def write(self, s: str) -> int:
        self.stream.write(s)
        try:
            self.log.write(s)
        except ValueError:  # log closed during shutdown
            pass
        return len(s)

    def flush(self) -> None:
        self.stream.flush()
        try:
            self.log.flush()
        except ValueError:
            pass

    def isatty(self) -> bool:
        return getattr(self.stream, "isatty", lambda: False)()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")


# ------------------------------------------------------------------------------------ preparing


def _resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("runtime.device: \"cuda\" was asked for but no CUDA device is available (use auto or cpu)")
    return torch.device(name)


def _setup_runtime(recipe, device) -> None:
    import torch

    rt = recipe.runtime
    if rt.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if device.type == "cuda" and recipe.runtime.precision == "fp32":
        # Keep fp32 honest: TF32 would silently change results of the seeds' fp32 recipes.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    seed_everything(rt.seed)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:  # pragma: no cover - numpy ships with torchvision
        pass


def _check_fresh(path: Path) -> None:
    if not runs.RunDir(path).is_fresh():
        busy = holder(path)
        if busy is not None:
            raise UserError(str(RunBusy(path, busy)))
        raise UserError(f"{path}: --run-dir is not empty (give a new or empty directory, or --resume it)")


def _empty_or_new(path: Path, create: bool = True) -> str:
    """Check (and create) a ``--run-dir``; returns "created" or "emptied" (it existed, empty, or held
    only a launcher's files): what to undo if the run stops on bad input before it starts training."""
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise UserError(f"{path}: --run-dir exists and is not a directory")
        _check_fresh(path)
        return "emptied"
    if create:
        try:
            path.mkdir(parents=True)
        except FileExistsError:  # another process made it a moment ago
            return _empty_or_new(path, create)
        except OSError as err:
            raise UserError(f"{path}: --run-dir cannot be created: {err.strerror or err}") from None
    return "created"


def _new_run_dir(name: str, root) -> Path:
    """``runs.create_run_dir`` with a runs root that cannot be written reported as bad input."""
    try:
        return runs.create_run_dir(name, root)
    except OSError as err:
        where = getattr(err, "filename", None) or root or "the runs directory"
        raise UserError(f"{where}: cannot create the run directory: {err.strerror or err}") from None


_LOCK: RunLock | None = None
"""The run lock this process holds (one run per process); released at exit by the kernel."""


def _lock_run(run_dir: Path, *, fresh: str | None) -> None:
    """Take the run's lock for this process, or exit 2 naming the holder. A new directory is checked
    again once locked: another process may have written into it in between."""
    global _LOCK
    if locked_by_parent(run_dir) or (_LOCK is not None and _LOCK.run_dir == run_dir):
        return
    try:
        lock = RunLock(run_dir).acquire()
    except RunBusy as err:
        raise UserError(str(err)) from None
    except OSError as err:
        if disk_full_cause(err) is not None:
            raise DiskFullError(run_dir / runs.LOCK_FILE) from None  # exit 1, see run_command
        raise UserError(f"{run_dir}: cannot lock the run directory: {err.strerror or err}") from None
    if fresh is not None:
        try:
            _check_fresh(run_dir)
        except UserError:
            lock.release()
            raise
    _LOCK = lock
    os.environ[LOCKED_ENV] = str(run_dir.absolute())  # torchrun workers of this run: already held


def _unlock() -> None:
    global _LOCK
    if _LOCK is not None:
        _LOCK.release()
        _LOCK = None
    os.environ.pop(LOCKED_ENV, None)


def _discard(run_dir: Path, fresh: str) -> None:
    """Undo a run directory that bad input stopped before training: remove what this invocation
    created, or empty again a directory that was given empty (a launcher's files stay for it).
    A directory with results (``RunDir.has_results``) is never touched."""
    _unlock()
    if runs.RunDir(run_dir).has_results():
        return
    if fresh == "created":
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    keep = runs.LAUNCH_FILES - {runs.LOCK_FILE} if runs.RunDir(run_dir).launch.exists() else frozenset()
    for p in run_dir.iterdir():
        if runs.is_launch_file(p.name, keep):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _load_for_resume(args, check: bool = True) -> tuple[Any, Path, dict, dict | None]:
    """The run to resume. ``check = False`` (DDP ranks other than 0) skips the status checks:
    rank 0 makes them, and may already have marked the run as its own."""
    from fgbench.train import checkpoint as C

    if args.recipe:
        raise UserError("fgbench run: give either a RECIPE or --resume RUN_DIR, not both")
    if args.overrides:
        raise UserError("fgbench run --resume: --set is not allowed (a resumed run keeps its recipe)")
    try:
        run_dir = runs.resolve_run(args.resume, args.runs_root)
    except FileNotFoundError as err:
        raise UserError(f"--resume: {err}") from None
    recipe_path = run_dir / runs.RECIPE_FILE
    if not recipe_path.is_file():
        raise UserError(f"{run_dir}: not a run directory (no {runs.RECIPE_FILE})")
    recipe = load_recipe(recipe_path)
    if check and not locked_by_parent(run_dir):
        from fgbench.rundir.supervise import LAUNCH_ENV

        reader = RunReader(run_dir)
        reader.update()
        status = reader.status(own_launch=os.environ.get(LAUNCH_ENV)).status
        if status == "running":
            busy = holder(run_dir)
            raise UserError(str(RunBusy(run_dir, busy)) if busy is not None else
                            f"{run_dir}: the run is still running (pid {reader.pid}); stop it first")
        if status == "completed":
            raise UserError(f"{run_dir}: the run has already completed")
        _lock_run(run_dir, fresh=None)
    last = run_dir / runs.CHECKPOINT_DIR / runs.LAST_CKPT
    if not last.is_file():
        raise UserError(f"{run_dir}: no checkpoint to resume from ({last} is missing)")
    ckpt = C.load_checkpoint(last)  # a CheckpointError is one line naming the file
    best = None
    best_path = run_dir / runs.CHECKPOINT_DIR / runs.BEST_CKPT
    if best_path.is_file():
        try:
            best = C.load_checkpoint(best_path)
        except C.CheckpointError as err:
            raise C.CheckpointError(f"{err}; move it away to resume without the best weights so far") from None
    return recipe, run_dir, ckpt, best


# ---------------------------------------------------------------------------------------- run


@dataclass
class Prepared:
    """Everything a run needs that can fail on the user's input, made before any file is written."""

    recipe: Any
    run_dir: Path | None  # the resumed run's directory, else None
    resume_ckpt: dict | None
    resume_best: dict | None
    device: Any
    splits: Any
    model: Any
    report: list[str]
    world_size: int = 1


def _check_transforms(recipe) -> None:
    """Build every transform the run will use once: normalization constants (``data.normalize =
    "dataset"`` needs known ones) and the crop settings fail here, not after the run exists."""
    from fgbench.data import transforms as T

    data = recipe.data
    for size in {data.train_size, *(st.train_size for st in recipe.stages if st.train_size)}:
        T.train_transform(data, recipe.augment, size)
    for size in {data.test_size, *(st.test_size for st in recipe.stages if st.test_size), *recipe.eval.final_test_sizes}:
        T.test_transform(data, size)


MAGIC_BYTES = (b"PK\x03\x04", b"\x80")
"""How a torch.save file starts: a zip archive (the format since torch 1.6) or a pickle (older)."""


def preflight(recipe, splits, source: str | None = None) -> None:
    """What only the dataset can tell about the recipe, checked before the run directory exists
    (``source``: the recipe file, named in the message): the model's outputs hold every class, the
    validation split has an image of every class, a pretrained file is a weights file."""
    from fgbench.errors import escape

    where = f"{escape(source)}: " if source else ""
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
                            f"{n} classes (e.g. {escape(str(name))!r}, with {count} training image"
                            f"{'s' if count != 1 else ''}); every class needs at least 2 training images, or "
                            "set data.val_fraction = 0 and eval.select_on = \"last\"")
    pre = recipe.model.pretrained
    path = getattr(pre, "path", None)
    if path:
        field = f"{where}model.pretrained.path"
        p = Path(path).expanduser()
        shown = escape(str(p))
        try:
            st = os.stat(p)
        except OSError:
            raise UserError(f"{field}: {shown}: weights file not found") from None
        import stat as S

        if not S.S_ISREG(st.st_mode):
            kind = "a directory" if S.S_ISDIR(st.st_mode) else "not a regular file (a FIFO or device)"
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


def _prepare(args, *, world=None, launcher: bool = False) -> Prepared:
    """Load and check the recipe, the dataset and the model. ``world``: this process's place in
    a DDP job; ``launcher``: the ``--nproc`` parent, which checks but trains nothing. A problem
    found after the recipe loaded names the recipe file too."""
    try:
        return _prepare_checked(args, world=world, launcher=launcher)
    except RecipeError:
        raise
    except UserError as err:
        if args.resume or not args.recipe:
            raise
        from fgbench.errors import escape

        source = escape(str(args.recipe))
        msg = str(err)
        if msg.startswith((f"{source}: ", "-")):  # already named, or about a command-line flag
            raise
        raise UserError(f"{source}: {msg}") from None


def _prepare_checked(args, *, world=None, launcher: bool = False) -> Prepared:
    from fgbench.train import distributed as D

    resume_ckpt = resume_best = None
    if args.resume:
        recipe, run_dir, resume_ckpt, resume_best = _load_for_resume(args, check=world is None or world.is_main)
    else:
        recipe = load_recipe(args.recipe, args.overrides)
        run_dir = None
    if args.device:
        data = recipe.model_dump(mode="json")
        data["runtime"]["device"] = args.device
        recipe = validate_recipe(data, "--device")

    import torch

    from fgbench.data.index import resolve_index
    from fgbench.data.loaders import load_splits
    from fgbench.recipe import NoPretrained
    from fgbench.train.models import build_model

    world_size = world.size if world is not None else 1
    if launcher:
        world_size = D.check_launch(args, recipe)
        device = torch.device("cpu")  # the launcher only builds the model to check it
    elif world is not None:
        device = D.device_for(recipe.runtime.device, world)
        if device.type == "cuda":
            torch.cuda.set_device(device)
    else:
        device = _resolve_device(recipe.runtime.device)
    index = resolve_index(recipe.data)
    for path in index.not_files if world is None or world.is_main else []:
        print(f"{safe(str(path))}: not a regular file (a FIFO, device or dangling link); skipped", file=sys.stderr)
    splits = load_splits(index, recipe.data,
                         train_sizes=[st.train_size for st in recipe.stages if st.train_size],
                         test_sizes=[st.test_size for st in recipe.stages if st.test_size] + recipe.eval.final_test_sizes,
                         augment=recipe.augment, device=device,
                         epochs=recipe.schedule.epochs + sum(st.epochs for st in recipe.stages))
    from fgbench.train.stages import resolve_stages

    preflight(recipe, splits, None if args.resume else args.recipe)
    resolve_stages(D.global_batch_recipe(recipe, world_size), len(splits.train))  # what only the data can check
    D.check_batches(recipe, len(splits.train), world_size)
    if splits.loader == "device":
        from fgbench.data.loaders import check_device_loader

        check_device_loader(recipe.data, recipe.augment)
    _check_transforms(recipe)
    if not launcher:
        _setup_runtime(recipe, device)
    model_cfg = recipe.model
    if resume_ckpt is not None:
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
            from fgbench.data.loaders import mix_seed

            seed_everything(mix_seed(recipe.runtime.seed, world.rank))
        if world_size > 1 and recipe.distributed.sync_bn:
            model = D.convert_sync_bn(model, device)
        model = model.to(device)
    from fgbench.train.models import channels_last_for

    channels_last, why = channels_last_for(recipe.runtime.channels_last, recipe.model.arch, device.type)
    if channels_last and not launcher:
        model = model.to(memory_format=torch.channels_last)
    from fgbench.data.index import folder_report

    report = [*folder_report(index, len(splits.val)), *built.report,
              f"memory format: {'channels_last' if channels_last else 'NCHW'} ({why})"]
    if splits.loader != "device":  # the device loader has no workers
        from fgbench.data.loaders import resolve_workers

        workers, why_workers = resolve_workers(recipe.data)
        report.append(f"loader workers: {workers} ({why_workers})")
    return Prepared(recipe, run_dir, resume_ckpt, resume_best, device, splits, model, report, world_size)


def run_command(args) -> int:
    from fgbench.train import distributed as D

    if args.nproc < 1:
        raise UserError(f"--nproc: must be at least 1, not {args.nproc}")
    world = D.world_from_env()
    if world is not None:
        return _run_worker(args, world)
    if D.wants_launch(args):
        try:
            return _launch(args)
        finally:
            _unlock()
    try:
        p = _prepare(args)
    except DiskFullError as err:  # the lock of a --resume could not be written
        _unlock()
        print(safe_lines(str(err)), file=sys.stderr, flush=True)
        return EXIT_FAILED
    except BaseException:
        _unlock()  # a --resume that was locked, then stopped on bad input
        raise

    # ---- from here on the run directory exists
    run_dir, fresh = p.run_dir, None
    if run_dir is None:
        if args.run_dir:
            run_dir = Path(args.run_dir).expanduser()
            fresh = _empty_or_new(run_dir)
        else:
            run_dir = _new_run_dir(p.recipe.name, args.runs_root)
            fresh = "created"
        try:
            _lock_run(run_dir, fresh=fresh)
        except (UserError, DiskFullError) as err:
            if fresh == "created":
                shutil.rmtree(run_dir, ignore_errors=True)
            if isinstance(err, DiskFullError):  # a full disk is not bad input: one line, exit 1
                print(safe_lines(str(err)), file=sys.stderr, flush=True)
                return EXIT_FAILED
            raise
    return _run_in_dir(args, p.recipe, run_dir, p.device, p.splits, p.model, p.report, p.resume_ckpt, p.resume_best,
                       fresh=fresh)


def _launch(args) -> int:
    """``--nproc``/``--nnodes``: check everything here, make the run directory, run torchrun."""
    from fgbench.train import distributed as D

    p = _prepare(args, launcher=True)
    created = False
    if p.run_dir is not None:  # --resume
        run_dir: Path | None = p.run_dir
    elif args.run_dir:
        run_dir = Path(args.run_dir).expanduser().absolute()
        if args.node_rank == 0:
            fresh = _empty_or_new(run_dir)
            created = fresh == "created"
            _lock_run(run_dir, fresh=fresh)
    elif args.node_rank == 0:
        run_dir = _new_run_dir(p.recipe.name, args.runs_root).absolute()
        created = True
        _lock_run(run_dir, fresh="created")
    else:
        run_dir = None  # other nodes never write it
    del p  # the workers build their own model and data
    code = D.launch(args, run_dir=run_dir)
    if created and run_dir is not None and run_dir.is_dir() and runs.RunDir(run_dir).is_fresh():
        _unlock()
        shutil.rmtree(run_dir, ignore_errors=True)  # the workers stopped before writing anything (bad input)
    return code


def _run_worker(args, world) -> int:
    """One torchrun process: returns its exit code to torchrun (see ``distributed.quiet_code``)."""
    from fgbench.train import distributed as D

    # torchrun started us with SIGINT ignored (see distributed.launch); until training installs its
    # own handler, Ctrl-C means "stop now" as in any Python program.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    D.register_worker(world)
    code, symmetric = EXIT_FAILED, False
    try:
        code, symmetric = _worker(args, world)
    except UserError as err:  # found after preparation (bad data), possibly by this process only
        print(safe_lines(str(err)), file=sys.stderr)
        code = EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    finally:
        D.record_exit(world, code)
    return D.quiet_code(code, symmetric)


def _worker(args, world) -> tuple[int, bool]:
    """(exit code, whether every process ends the same way)."""
    from fgbench.train import distributed as D

    d = D.Dist(world).start()
    try:
        error: UserError | None = None
        fresh = None
        try:
            p = _prepare(args, world=world)
            run_dir = p.run_dir
            if run_dir is None and args.run_dir:
                run_dir = Path(args.run_dir).expanduser()
                if world.is_main:
                    fresh = _empty_or_new(run_dir, create=False)
        except UserError as err:
            error = err
        failed = d.failed_ranks(error is not None)
        if failed:
            if error is not None and world.rank == failed[0]:
                print(safe_lines(str(error)), file=sys.stderr)  # one line for the job, from the lowest failing rank
            return EXIT_BAD_INPUT, True
        d.device = p.device
        if world.is_main and run_dir is None:
            run_dir = _new_run_dir(p.recipe.name, args.runs_root)
            fresh = "created"
        elif fresh == "created":
            run_dir.mkdir(parents=True)
        if world.is_main and p.run_dir is None:
            _lock_run(run_dir, fresh=fresh)
        code = _run_in_dir(args, p.recipe, run_dir, p.device, p.splits, p.model, p.report, p.resume_ckpt,
                           p.resume_best, fresh=fresh, dist=d)
        return code, code == EXIT_OK or (code == EXIT_INTERRUPTED and d.stopped)
    finally:
        d.close()


def _run_in_dir(args, recipe, run_dir: Path | None, device, splits, model, report, resume_ckpt, resume_best, *,
                fresh: str | None = None, dist=None) -> int:
    """Train in ``run_dir``. ``fresh``: "created"/"emptied" when this invocation made the directory
    (undone on bad input before training), None for a resumed one. ``dist``: the DDP job, where
    only rank 0 writes files, prints and reports."""
    from fgbench.recipe import atomic_write_text
    from fgbench.train.progress import Progress
    from fgbench.train.trainer import RunContext, StopFlag, Trainer

    main = dist is None or dist.rank == 0
    ddp_info = {"world_size": dist.size} if dist is not None else {}
    orig_out, orig_err = sys.stdout, sys.stderr
    log_file = None
    try:
        if not main:
            run_dir = run_dir or Path(f"/nonexistent/fgbench-rank-{dist.rank}")  # never written
        elif resume_ckpt is None:
            atomic_write_text(run_dir / runs.RECIPE_FILE, dumps_recipe(recipe, full=True))
            runs.write_run_info(
                run_dir, argv=sys.argv, overrides=list(args.overrides or []),
                source_recipe=str(Path(args.recipe).resolve()) if args.recipe else None,
                **procs.identity(), sweep_tag=getattr(args, "sweep_tag", None),
                created=time.time(), cwd=os.getcwd(), **ddp_info,
            )
            runs.write_json(run_dir / runs.CLASSES_FILE, list(splits.class_names))
        else:
            # what a killed session wrote past the checkpoint is trained again: each epoch once in the file
            metrics.drop_replayed(run_dir / metrics.METRICS_FILE, step=int(resume_ckpt["step"]),
                                  final_done=bool(resume_ckpt.get("final_sizes")))
            info = runs.read_json(run_dir / runs.RUN_INFO_FILE) or {}
            resumes = list(info.get("resumes", []))
            resumes.append({"time": time.time(), "argv": sys.argv, "from_epoch": int(resume_ckpt["epoch"]),
                            "from_step": int(resume_ckpt["step"]), **ddp_info})
            runs.write_run_info(run_dir, **procs.identity(), resumes=resumes)
        if main:
            log_file = open(run_dir / runs.LOG_FILE, "a", encoding="utf-8", buffering=1)
            writer: Any = metrics.MetricsWriter(run_dir / metrics.METRICS_FILE)
            _make_reserve(run_dir)
    except OSError as err:
        if disk_full_cause(err) is None:
            raise
        # the disk is full before the run could record anything: leave no half-made run behind
        print(_disk_full_line(err, run_dir), file=orig_err, flush=True)
        if main:
            _release_reserve(run_dir)
        if log_file is not None:
            with contextlib.suppress(OSError):
                log_file.close()
        if fresh is not None:
            _discard(run_dir, fresh)
        _unlock()
        return EXIT_FAILED
    if main:
        sys.stdout, sys.stderr = Tee(orig_out, log_file), Tee(orig_err, log_file)
    else:
        from fgbench.train.distributed import NullWriter

        writer = NullWriter()
    stop = StopFlag()
    if main:  # trackers and a search trial's pruner see every event (fgbench.tracking)
        from fgbench.tracking import EventFanout, run_listeners

        listeners = run_listeners(recipe, run_dir, sweep_tag=getattr(args, "sweep_tag", None),
                                  trial=getattr(args, "trial", None), stop=stop,
                                  report=lambda m, w=writer: w.emit("log", level="warning", message=m))
        if listeners:
            writer = EventFanout(writer, listeners)
    progress = Progress(args.progress if main else "none", stream=orig_out)
    old_handlers = _install_signals(stop, quiet=not main, progress=progress)
    ctx = RunContext(recipe=recipe, run_dir=run_dir, run_id=run_dir.name, device=device, splits=splits, model=model,
                     model_report=report, writer=writer, progress=progress, stop=stop, resume=resume_ckpt,
                     resume_best=resume_best, dist=dist)
    trainer = None
    discard = False
    try:
        if main:
            print(f"run directory: {safe(str(run_dir))}", flush=True)
            for line in report:
                if line.startswith("data: "):  # which folder it tests on (also a log event)
                    print(safe(line), flush=True)
        trainer = Trainer(ctx)
        progress.total_steps = trainer.total_steps
        status = trainer.run()
        progress.close()
        if status == "interrupted" and stop.signal == "pruned":
            trainer.status = status = "pruned"  # a search's pruner stopped it (fgbench.search)
        summary = trainer.write_summary()
        if status == "pruned":
            writer.emit("run_finished", status="pruned", summary=summary, exit_code=EXIT_OK,
                        error="pruned by the search")
            return EXIT_OK
        if status == "completed":
            writer.emit("run_finished", status="completed", summary=summary, exit_code=EXIT_OK)
            if main:
                _print_result(summary, k=min(recipe.eval.top_k, splits.num_classes))
            return EXIT_OK
        writer.emit("run_finished", status="interrupted", summary=summary, exit_code=EXIT_INTERRUPTED,
                    error=f"stopped by {stop.signal or 'request'}")
        if main:
            more = f" --nproc {dist.world.local_size}" if dist is not None else ""
            at = f" at step {trainer.engine.step}" if trainer.engine is not None else ""
            print(f"interrupted ({stop.signal or 'stop requested'}); checkpoint written{at}. "
                  f"Continue with: fgbench run --resume {run_dir}{more}", flush=True)
        return EXIT_INTERRUPTED
    except (UserError, RecipeError) as err:
        progress.close()
        if main and fresh is not None and not runs.RunDir(run_dir).has_results():
            discard = True  # bad input before any epoch ended (an undecodable image too): leave nothing behind
            raise
        # a run with results is never deleted: it ends failed, its checkpoints kept, and says how to go on
        line = str(err)
        if main and runs.RunDir(run_dir).last_ckpt.is_file():
            line += f"; the run is kept (failed): fix that, then continue with: fgbench run --resume {run_dir}"
        _finish_failed(writer, trainer, line, None, EXIT_BAD_INPUT)
        if line == str(err):
            raise
        raise UserError(line) from None
    except KeyboardInterrupt:
        # A second Ctrl-C while stopping: leave at once, the last checkpoint stays valid.
        progress.close()
        summary = _safe_summary(trainer, "interrupted")
        writer.emit("run_finished", status="interrupted", summary=summary, exit_code=EXIT_INTERRUPTED,
                    error="interrupted twice; stopped without a new checkpoint")
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - a crash is recorded, then reported with its traceback
        progress.close()
        if disk_full_cause(err) is not None:
            # One line, no traceback; earlier checkpoints are untouched. The reserve makes room
            # for the summary and the closing event, so the run reads as failed.
            line = _disk_full_line(err, run_dir)
            print(safe(line), file=orig_err, flush=True)
            _release_reserve(run_dir)
            with contextlib.suppress(OSError):
                _finish_failed(writer, trainer, line, None, EXIT_FAILED)
            return EXIT_FAILED
        tb = traceback.format_exc()
        from fgbench.train.memory import is_out_of_memory, oom_line

        if is_out_of_memory(err):  # sizes the schema allows but memory does not: one line, the traceback kept in the events
            st = trainer.stage if trainer is not None else None
            line = oom_line(err, recipe, device, getattr(st, "batch_size", None), getattr(st, "train_size", None))
            print(line, file=orig_err, flush=True)
            _finish_failed(writer, trainer, line, tb, EXIT_FAILED)
            return EXIT_FAILED
        print(safe_lines(tb), file=sys.stderr, end="")  # an error may quote a file name from the data set
        _finish_failed(writer, trainer, f"{type(err).__name__}: {err}", tb, EXIT_FAILED)
        return EXIT_FAILED
    finally:
        _restore_signals(old_handlers)
        if main:
            _release_reserve(run_dir)
        sys.stdout, sys.stderr = orig_out, orig_err
        for f in (writer, log_file):
            try:
                if f is not None:
                    f.close()
            except OSError as err:  # a full disk may refuse the last flush; the outcome is already told
                if disk_full_cause(err) is None:
                    raise
        if discard:
            _discard(run_dir, fresh)
        if main:
            _unlock()


#: a file of zeros kept in the run directory while training and deleted when the disk fills up,
#: so that the summary and the closing event still fit (a full disk otherwise leaves no status)
RESERVE_FILE = ".disk-reserve"
RESERVE_BYTES = 256 << 10


def _make_reserve(run_dir: Path) -> None:
    with open(run_dir / RESERVE_FILE, "wb") as f:
        f.write(bytes(RESERVE_BYTES))  # real blocks, not a sparse file
        f.flush()
        os.fsync(f.fileno())


def _release_reserve(run_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (run_dir / RESERVE_FILE).unlink()


def _disk_full_line(err: BaseException, run_dir: Path) -> str:
    """One line for a full disk: the file (or the run directory) and the free space."""
    if isinstance(err, DiskFullError):
        return str(err)
    cause = disk_full_cause(err)
    where = getattr(cause, "filename", None) or run_dir
    return f"{where}: disk full ({free_text(where)} free)"


def _safe_summary(trainer, status: str) -> dict | None:
    if trainer is None:
        return None
    try:
        trainer.status = status
        return trainer.write_summary()
    except Exception:  # noqa: BLE001 - the summary must not hide the original error
        return None


def _finish_failed(writer, trainer, error: str, tb: str | None, code: int) -> None:
    summary = _safe_summary(trainer, "failed")
    fields: dict[str, Any] = {"status": "failed", "error": error, "exit_code": code}
    if tb:
        fields["traceback"] = tb
    if summary is not None:
        fields["summary"] = summary
    writer.emit("run_finished", **fields)


def _print_result(s: dict, k: int = 5) -> None:
    """The final lines; ``k`` is the top-k that ``test_topk`` holds (``eval.top_k``, capped at the classes)."""
    def pct(v):
        return "-" if v is None else f"{v:.2f}%"

    from fgbench.report import plural, selected_epoch_text

    lines = [f"finished {s['run_id']}: {plural(s['epochs_done'], 'epoch')}, {plural(s['step'], 'step')}, "
             f"{s['duration_s']:.0f}s"]
    for model in ("raw", "ema"):
        b = s["best"].get(model)
        if b:
            lines.append(f"  {model}: {selected_epoch_text(b['epoch'], s['select_on'])}: val {pct(b['val_top1'])}, "
                         f"test {pct(b['test_top1'])} (top-{k} {pct(b['test_topk'])})")
    last = s.get("last") or {}
    for model in ("raw", "ema"):
        v = last.get(model)
        if v:
            lines.append(f"  {model}: last epoch {last['epoch']}: test {pct(v['test_top1'])}")
    for size, v in (s.get("final_test_sizes") or {}).items():
        lines.append(f"  test at {size}px: raw {pct(v.get('raw'))}, ema {pct(v.get('ema'))}")
    print("\n".join(lines), flush=True)


def _install_signals(stop, quiet: bool = False, progress=None) -> dict:
    old = {}

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.requested = True
        stop.signal = name
        if quiet:  # DDP ranks other than 0: rank 0 says it once
            return
        text = f"{name}: finishing the current step, then writing a checkpoint (Ctrl-C again to leave at once)"
        try:
            if progress is not None:
                progress.notice(text)  # erases the bar (and the terminal's ^C) instead of leaving it stale
            else:
                sys.stderr.write(f"\n{text}\n")
        except Exception:  # noqa: BLE001
            pass

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
    return old


def _restore_signals(old: dict) -> None:
    for sig, h in old.items():
        try:
            signal.signal(sig, h)
        except ValueError:
            pass

"""``fgbench run``: from arguments to a finished (or cleanly stopped) run directory.

Order of work, chosen so that a user's mistake never leaves a half-made run behind: load and
validate the recipe (and ``--set``), resolve the device, index the dataset, build the model; only
then create the run directory and write its files. Everything up to that point raises
``UserError`` / ``RecipeError``, which the CLI prints as one line with exit code 2.

Once the run exists, every outcome is recorded as a ``run_finished`` event and in
``summary.json``: ``completed`` (exit 0), ``interrupted`` by SIGINT/SIGTERM after the current step
and a ``last.pt`` checkpoint (exit 130), ``failed`` with the error and traceback (exit 1), or
``failed`` because of bad data found while training, e.g. an undecodable image (exit 2, one line).

The trainer's stdout and stderr are copied into ``log.txt`` (a tee, so the terminal still shows
them); the progress bar's in-place redraws go to the terminal only.

``--nproc`` above 1 (torchrun/DDP) is refused with a clear message: multi-process training is not
part of this module yet.
"""

from __future__ import annotations

import io
import os
import random
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

from fgbench import metrics, runs
from fgbench.errors import UserError
from fgbench.recipe import RecipeError, dumps_recipe, load_recipe, validate_recipe

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


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


def _empty_or_new(path: Path) -> None:
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{path}: --run-dir exists and is not a directory")
        if any(path.iterdir()):
            raise UserError(f"{path}: --run-dir is not empty (give a new or empty directory, or --resume it)")
    else:
        path.mkdir(parents=True)


def _load_for_resume(args) -> tuple[Any, Path, dict, dict | None]:
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
    events = metrics.read_events(run_dir / metrics.METRICS_FILE)
    info = runs.read_json(run_dir / runs.RUN_INFO_FILE) or {}
    status, _ = runs.status_from_events(events, info.get("pid"))
    if status == "running":
        raise UserError(f"{run_dir}: the run is still running (pid {info.get('pid')}); stop it first")
    if status == "completed":
        raise UserError(f"{run_dir}: the run has already completed")
    last = run_dir / runs.CHECKPOINT_DIR / runs.LAST_CKPT
    if not last.is_file():
        raise UserError(f"{run_dir}: no checkpoint to resume from ({last} is missing)")
    try:
        ckpt = C.load_checkpoint(last)
    except Exception as err:
        raise UserError(f"{last}: cannot read the checkpoint: {err}") from None
    best = None
    best_path = run_dir / runs.CHECKPOINT_DIR / runs.BEST_CKPT
    if best_path.is_file():
        try:
            best = C.load_checkpoint(best_path)
        except Exception:
            best = None
    return recipe, run_dir, ckpt, best


# ---------------------------------------------------------------------------------------- run


def run_command(args) -> int:
    if getattr(args, "nproc", 1) and args.nproc > 1:
        raise UserError("--nproc: multi-process (torchrun/DDP) training is not available in this version; "
                        "run with one process")
    resume_ckpt = resume_best = None
    if args.resume:
        recipe, run_dir, resume_ckpt, resume_best = _load_for_resume(args)
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

    device = _resolve_device(recipe.runtime.device)
    index = resolve_index(recipe.data)
    splits = load_splits(index, recipe.data,
                         train_sizes=[st.train_size for st in recipe.stages if st.train_size],
                         test_sizes=[st.test_size for st in recipe.stages if st.test_size] + recipe.eval.final_test_sizes)
    from fgbench.train.stages import resolve_stages

    resolve_stages(recipe, len(splits.train))  # stage settings that only the data can check
    if recipe.data.loader == "device":
        from fgbench.data.loaders import check_device_loader

        check_device_loader(recipe.data, recipe.augment)
    _setup_runtime(recipe, device)
    model_cfg = recipe.model
    if resume_ckpt is not None:
        # The checkpoint holds the weights; do not reach for the pretrained file again.
        model_cfg = model_cfg.model_copy(update={"pretrained": NoPretrained()})
    built = build_model(model_cfg, splits.num_classes, data_cfg=recipe.data)
    model = built.model.to(device)
    if recipe.runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)

    # ---- from here on the run directory exists
    if run_dir is None:
        if args.run_dir:
            run_dir = Path(args.run_dir).expanduser()
            _empty_or_new(run_dir)
        else:
            run_dir = runs.create_run_dir(recipe.name, args.runs_root)
    return _run_in_dir(args, recipe, run_dir, device, splits, model, built.report, resume_ckpt, resume_best)


def _run_in_dir(args, recipe, run_dir: Path, device, splits, model, report, resume_ckpt, resume_best) -> int:
    from fgbench.recipe import atomic_write_text
    from fgbench.train.progress import Progress
    from fgbench.train.trainer import RunContext, StopFlag, Trainer

    if resume_ckpt is None:
        atomic_write_text(run_dir / runs.RECIPE_FILE, dumps_recipe(recipe, full=True))
        runs.write_run_info(
            run_dir, argv=sys.argv, overrides=list(args.overrides or []),
            source_recipe=str(Path(args.recipe).resolve()) if args.recipe else None,
            pid=os.getpid(), host=socket.gethostname(), sweep_tag=getattr(args, "sweep_tag", None),
            created=time.time(), cwd=os.getcwd(),
        )
        runs.write_json(run_dir / "classes.json", list(splits.class_names))
    else:
        info = runs.read_json(run_dir / runs.RUN_INFO_FILE) or {}
        resumes = list(info.get("resumes", []))
        resumes.append({"time": time.time(), "argv": sys.argv, "from_epoch": int(resume_ckpt["epoch"]),
                        "from_step": int(resume_ckpt["step"])})
        runs.write_run_info(run_dir, pid=os.getpid(), host=socket.gethostname(), resumes=resumes)

    log_file = open(run_dir / runs.LOG_FILE, "a", encoding="utf-8", buffering=1)
    orig_out, orig_err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Tee(orig_out, log_file), Tee(orig_err, log_file)
    writer = metrics.MetricsWriter(run_dir / metrics.METRICS_FILE)
    stop = StopFlag()
    old_handlers = _install_signals(stop)
    progress = Progress(args.progress, stream=orig_out)
    ctx = RunContext(recipe=recipe, run_dir=run_dir, run_id=run_dir.name, device=device, splits=splits, model=model,
                     model_report=report, writer=writer, progress=progress, stop=stop, resume=resume_ckpt,
                     resume_best=resume_best)
    trainer = None
    try:
        print(f"run directory: {run_dir}", flush=True)
        trainer = Trainer(ctx)
        progress.total_steps = trainer.total_steps
        status = trainer.run()
        progress.close()
        summary = trainer.write_summary()
        if status == "completed":
            writer.emit("run_finished", status="completed", summary=summary, exit_code=EXIT_OK)
            _print_result(summary)
            return EXIT_OK
        writer.emit("run_finished", status="interrupted", summary=summary, exit_code=EXIT_INTERRUPTED,
                    error=f"stopped by {stop.signal or 'request'}")
        print(f"interrupted ({stop.signal or 'stop requested'}); checkpoint written. "
              f"Continue with: fgbench run --resume {run_dir}", flush=True)
        return EXIT_INTERRUPTED
    except (UserError, RecipeError) as err:
        progress.close()
        _finish_failed(writer, trainer, str(err), None, EXIT_BAD_INPUT)
        raise
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
        tb = traceback.format_exc()
        print(tb, file=sys.stderr, end="")
        _finish_failed(writer, trainer, f"{type(err).__name__}: {err}", tb, EXIT_FAILED)
        return EXIT_FAILED
    finally:
        _restore_signals(old_handlers)
        writer.close()
        sys.stdout, sys.stderr = orig_out, orig_err
        log_file.close()


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


def _print_result(s: dict) -> None:
    def pct(v):
        return "-" if v is None else f"{v:.2f}%"

    lines = [f"finished {s['run_id']}: {s['epochs_done']} epochs, {s['step']} steps, {s['duration_s']:.0f}s"]
    for model in ("raw", "ema"):
        b = s["best"].get(model)
        if b:
            lines.append(f"  {model}: best epoch {b['epoch']} (on {s['select_on']}): val {pct(b['val_top1'])}, "
                         f"test {pct(b['test_top1'])} (top-5 {pct(b['test_top5'])})")
    last = s.get("last") or {}
    for model in ("raw", "ema"):
        v = last.get(model)
        if v:
            lines.append(f"  {model}: last epoch {last['epoch']}: test {pct(v['test_top1'])}")
    for size, v in (s.get("final_test_sizes") or {}).items():
        lines.append(f"  test at {size}px: raw {pct(v.get('raw'))}, ema {pct(v.get('ema'))}")
    print("\n".join(lines), flush=True)


def _install_signals(stop) -> dict:
    old = {}

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.requested = True
        stop.signal = name
        try:
            sys.stderr.write(f"\n{name}: finishing the current step, then writing a checkpoint "
                             "(Ctrl-C again to leave at once)\n")
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

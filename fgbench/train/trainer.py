"""The outer loop: stages, epochs, evaluation, model selection, checkpoints, summary.

``Trainer.run()`` drives ``train_one_epoch`` / ``evaluate`` (``fgbench.train.loop``) and owns every
decision about what happens between them. It writes the metrics events, ``summary.json``,
``checkpoints/{last,best}.pt``, ``classes.json``, ``confusion.json`` and ``predictions.json`` of the
run directory.

Decisions:

* **Model selection** is per model: the raw and the EMA weights each have their best epoch by
  ``eval.select_on`` (validation top-1; test top-1 only to reproduce the seeds; or simply the last
  epoch). The test numbers reported for a run are those *at* that epoch and at the last epoch,
  never a maximum over test. The "selected" model (for ``confusion.json``) is the EMA when its
  selection score is at least the raw model's, else the raw one.
* A later stage replaces the model, so the best epoch is tracked per stage: the run's ``best`` is
  the last stage's, and ``init_from = best_*`` takes the previous stage's best weights.
* ``best.pt`` holds the best raw weights and the best EMA weights (each from its own best epoch,
  recorded per model in its ``epochs = {"raw", "ema"}``; ``epoch`` is the epoch it was written at);
  in-memory CPU copies of both are kept so that writing one never needs the other's epoch back.
* ``last.pt`` is the resume point. It is written every ``checkpoint_every_epochs``, at the end of
  each stage, and when a stop is requested (then possibly in the middle of an epoch, with the
  epoch's running sums). Resuming restores model, optimizer, LambdaLR, GradScaler, EMA (with its
  update count), tracker, sums and the RNG state, and the data order is a function of
  (seed, epoch) (``fgbench.data.loaders``), so a resumed run reproduces the uninterrupted one.
* Events that a killed run wrote after its last checkpoint stay in ``metrics.jsonl``; the resumed
  run appends a new ``run_started`` with ``resumed = {"epoch", "step"}`` and then repeats those
  epochs. Readers keep the last event per epoch/step.
* Under DDP (``RunContext.dist``, see ``fgbench.train.distributed``) every process runs this
  same loop on identical weights and takes every decision from all-reduced numbers, so all of
  them stop, evaluate, select and checkpoint at the same points; only rank 0 writes (its writer
  is the real one, the others get a null writer; summary, checkpoints and ``confusion.json`` are
  written by rank 0). Stages are resolved with the *global* batch. A stop request is agreed on
  (every process stops after the same step), and ``last.pt`` keeps every rank's RNG state.
* ``eval.final_test_sizes`` with ``data.test_crop = "none"``: a size other than the last stage's
  test size resizes the images to N x N (as ``fgbench evaluate --test-size N`` does), otherwise
  every size would evaluate the same pixels.
"""

from __future__ import annotations

import math
import os
import platform
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, cast

import torch

from fgbench.rundir import events
from fgbench.rundir import layout
from fgbench.rundir import procs
from fgbench.rundir.summary import LastEpoch, ModelBest, SplitNumbers, Summary, SummaryError, read_summary, write_summary
from fgbench.data import loaders
from fgbench.rundir.confusion import write_confusion
from fgbench.atomic import disk_full_cause
from fgbench.errors import BadImage
from fgbench.recipe import recipe_to_dict
from fgbench.train import checkpoint
from fgbench.train.ema import ModelEMA
from fgbench.train import telemetry
from fgbench.train.loop import Engine, EpochStats, StepHooks, evaluate, train_one_epoch
from fgbench.train.losses import ClassificationLoss
from fgbench.train.mix import BatchMixer
from fgbench.train.models import extra_metrics, set_trainable
from fgbench.train.optim import build_optimizer
from fgbench.train.progress import Progress
from fgbench.train.schedule import plan_for_stage
from fgbench.train.selection import BestTracker
from fgbench.train.stages import StageSpec

AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class StopFlag:
    """Set by the signal handlers; the loop checks it after every step."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: str | None = None

    def __call__(self) -> bool:
        return self.requested


# ------------------------------------------------------------------------------------ trainer


@dataclass
class RunContext:
    """What the runner prepared before any file of the run was written."""

    recipe: Any
    run_dir: Path
    run_id: str
    device: torch.device
    splits: loaders.Splits
    model: torch.nn.Module
    model_report: list[str]
    writer: events.MetricsWriter
    progress: Progress
    stop: StopFlag
    stages: tuple[StageSpec, ...]  # resolved once by the plan, with the global batch
    channels_last: tuple[bool, str]  # (use channels_last, why): the plan converted the model by this rule
    precision: tuple[str, str] | None = None  # (runtime.precision resolved, why); the recipe holds the value
    resume: dict | None = None  # the last.pt checkpoint
    resume_best: dict | None = None  # best.pt, when resuming
    dist: Any = None  # fgbench.train.distributed.Dist under torchrun (world size > 1)


class Trainer:
    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.r = ctx.recipe
        self.device = ctx.device
        self.memory_format = ctx.channels_last
        self.splits = ctx.splits
        self.model = ctx.model
        self.writer = telemetry.SerialWriter(ctx.writer)  # the health sampler writes from its own thread
        self.progress = ctx.progress
        self.num_classes = self.splits.num_classes
        self.dist = ctx.dist
        self.main = self.dist is None or self.dist.rank == 0  # the process that writes files
        self.shard = (self.dist.rank, self.dist.size) if self.dist is not None else None
        self.stages = list(ctx.stages)
        self.total_epochs = self.stages[-1].last_epoch
        self.total_steps = sum(s.total_steps for s in self.stages)
        self.recipe_dict = recipe_to_dict(self.r)
        self.tracker = BestTracker(self.r.eval.select_on, self.r.ema.enabled)
        self.best_states: dict[str, dict | None] = {"raw": None, "ema": None}
        self.last_results: dict | None = None
        self.last_epoch_done = 0
        self.skipped: set[str] = set()
        self.evaluated: dict[str, int] = {}  # split -> images its last evaluation counted (skipped ones excluded)
        self.totals = {"train_time": 0.0, "train_images": 0, "duration": 0.0, **telemetry.TOTALS}
        self.sampler: telemetry.Sampler | None = None  # while run() runs, on the process that writes
        self.peak_mem_mb: float | None = None
        self.engine: Engine | None = None
        self.ema: ModelEMA | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.loaders: loaders.StageLoaders | None = None
        self.stage: StageSpec | None = None
        self._t_session = time.monotonic()
        self.final_sizes: dict[str, dict] = {}
        self.status = "running"
        self._saved_at: int | None = None
        self.saver = checkpoint.BackgroundSaver()  # checkpoints are written while training goes on
        self.kept_predictions: dict[str, dict[str, Any]] = {}  # model -> the last epoch's test predictions
        self.training_started = False  # set before the first training batch is asked for

    # ------------------------------------------------------------------------------ helpers

    @property
    def ckpt_dir(self) -> Path:
        return self.ctx.run_dir / layout.CHECKPOINT_DIR

    def _emit(self, event: str, /, **fields: Any) -> None:
        self.writer.emit(event, **fields)

    def _log_event(self, message: str, level: str = "info") -> None:
        self._emit("log", level=level, message=message)
        self.progress.line(message)

    def _on_corrupt(self, paths: tuple[str, ...]) -> None:
        if not self.r.data.skip_corrupt:
            if loaders.is_missing(paths[0]):
                raise BadImage(f"{paths[0]}: image file missing (deleted or moved while the run trained); put it "
                               "back, or set data.skip_corrupt = true", paths[0], missing=True)
            raise BadImage(f"{paths[0]}: cannot decode image; fix or remove it, or set data.skip_corrupt = true",
                           paths[0], missing=False)
        new = [p for p in paths if p not in self.skipped]
        self.skipped.update(paths)
        for p in new:
            what = "missing" if loaders.is_missing(p) else "undecodable"
            self._emit("log", level="warning", message=f"skipped {what} image {p}")

    @property
    def eng(self) -> Engine:
        """The current stage's engine: ``_begin_stage`` or ``_restore`` builds it before any epoch."""
        assert self.engine is not None, "no stage has begun"
        return self.engine

    def _bare(self, name: str) -> torch.nn.Module:
        """The module whose weights are ``name``'s ("raw" or "ema")."""
        return self.model if name == "raw" else self._ema_module()

    def _ema_module(self) -> torch.nn.Module:
        """The EMA's weights (best EMA weights are recorded only when the recipe has an EMA)."""
        assert self.ema is not None, "the recipe has no EMA"
        return self.ema.module

    def _duration(self) -> float:
        return self.totals["duration"] + (time.monotonic() - self._t_session)

    # -------------------------------------------------------------------------------- engine

    def _build_engine(self, st: StageSpec, *, new_optimizer: bool) -> None:
        r = self.r
        model = self.model
        prev_step = self.engine.step if self.engine else 0
        self.engine = None  # drop the previous stage's DDP wrapper (and its gradient hooks) first
        if new_optimizer or self.optimizer is None:
            self.optimizer = build_optimizer(r.optim, model, st.lr)
        plan = plan_for_stage(r.schedule, lr=st.lr, epochs=st.epochs, steps_per_epoch=st.steps_per_epoch,
                              warmup_epochs=st.warmup_epochs, warmup_steps=st.warmup_steps, min_lr=st.min_lr,
                              max_steps=st.max_steps, hold_epochs=st.hold_epochs, period_epochs=st.period_epochs,
                              warmup_in_period=st.warmup_in_period)
        for g in self.optimizer.param_groups:
            g["initial_lr"] = st.lr
            g["lr"] = st.lr
        scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, plan.factor)
        scaler = None
        if r.runtime.precision == "fp16":
            scaler = torch.amp.GradScaler(self.device.type)
        forward = model
        if r.runtime.compile:
            forward = cast(torch.nn.Module, torch.compile(model))  # compiling a Module gives an OptimizedModule
        ddp: dict[str, Any] = {}
        if self.dist is not None:
            # DDP wraps the (compiled) model, as PyTorch advises; evaluation uses it unwrapped.
            ddp = dict(eval_forward=forward, reduce=self.dist.sum_, world=self.dist.size, global_batch=st.batch_size,
                       train_images=len(self.splits.train))
            forward = self.dist.wrap(forward)
        mixer = BatchMixer(r.augment, self.num_classes)
        if st.train_crop == "test":  # the test preprocessing: no augmentation, mixing included
            mixer = BatchMixer(r.augment.model_copy(update={"mixup_alpha": 0.0, "cutmix_alpha": 0.0}), self.num_classes)
        self.engine = Engine(
            model=model, forward=forward, optimizer=self.optimizer, scheduler=scheduler,
            criterion=ClassificationLoss(self.num_classes, r.loss.label_smoothing, r.loss.smoothing_style),
            device=self.device, amp_dtype=AMP_DTYPES[r.runtime.precision], scaler=scaler,
            eval_amp_dtype=AMP_DTYPES[r.runtime.precision] if r.eval.precision == "train" else None,
            grad_clip=r.optim.grad_clip, ema=self.ema, ema_every=r.ema.every,
            mixer=mixer if mixer.enabled else None,
            channels_last=self.memory_format[0],
            step=prev_step, stage_step=0, max_stage_steps=st.max_steps, **ddp,
        )
        self.plan = plan

    def _new_ema(self) -> None:
        self.ema = ModelEMA(self.model, self.r.ema.decay, self.r.ema.ramp_steps) if self.r.ema.enabled else None

    def _build_loaders(self, st: StageSpec) -> None:
        if self.loaders is not None:
            self.loaders.close()
        data = self.r.data
        if st.train_crop is not None and st.train_crop != data.train_crop:
            data = data.model_copy(update={"train_crop": st.train_crop})
        self.loaders = loaders.build_loaders(self.splits, data, self.r.augment, train_size=st.train_size,
                                             test_size=st.test_size, batch_size=st.batch_size, seed=self.r.runtime.seed,
                                             device=self.device, shard=self.shard)

    # -------------------------------------------------------------------------------- stages

    def _begin_stage(self, st: StageSpec) -> None:
        """A stage that starts now (not resumed into): weights, trainable layers, optimizer, EMA."""
        if st.index > 0:
            src = st.init_from
            if src == "last_raw":
                pass  # the model already holds them
            elif src == "last_ema":
                assert self.ema is not None
                self.model.load_state_dict(self.ema.module.state_dict())
            else:
                which = "raw" if src == "best_raw" else "ema"
                state = self.best_states.get(which)
                if state is None:
                    raise RuntimeError(f"stage {st.name}: no {src} weights were recorded by the previous stage")
                self.model.load_state_dict(state)
            self._log_event(f"stage {st.name}: starting from the previous stage's {src.replace('_', ' ')} weights")
        set_trainable(self.model, st.trainable)
        fresh = st.index == 0 or st.new_optimizer
        if fresh or self.ema is None:
            self._new_ema()
        self._build_engine(st, new_optimizer=fresh)
        self.tracker = BestTracker(self.r.eval.select_on, self.r.ema.enabled, stage=st.index)
        self.best_states = {"raw": None, "ema": None}
        self._emit("stage_started", stage=st.index, name=st.name, epochs=st.epochs, first_epoch=st.first_epoch,
                   train_size=st.train_size, test_size=st.test_size, lr=st.lr, init_from=st.init_from if st.index else None,
                   trainable=st.trainable, steps_per_epoch=st.steps_per_epoch, total_steps=st.total_steps)

    def _restore(self, ckpt: dict, best: dict | None) -> None:
        """Load the resume checkpoint's state into the (already built) model and engine."""
        si = int(ckpt["stage"])
        st = self.stages[si]
        self.model.load_state_dict(ckpt["model"])
        set_trainable(self.model, st.trainable)
        self._new_ema()
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.load_state_dict({"module": ckpt["ema"], "updates": ckpt.get("ema_updates", 0)})
        self._build_engine(st, new_optimizer=True)
        assert self.engine is not None and self.optimizer is not None
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.engine.scheduler.load_state_dict(ckpt["scheduler"])
        if self.engine.scaler is not None and ckpt.get("scaler"):
            self.engine.scaler.load_state_dict(ckpt["scaler"])
        self.engine.step = int(ckpt["step"])
        self.engine.stage_step = int(ckpt["stage_step"])
        self.tracker.load_state_dict(ckpt["best_tracker"])
        if best is not None and int(best.get("stage", -1)) == self.tracker.stage:
            self.best_states = {"raw": best.get("model"), "ema": best.get("ema")}
        self.last_results = ckpt.get("last_results")
        self.last_epoch_done = int(ckpt["epoch"])
        self.skipped = set(ckpt.get("skipped", []))
        self.totals = {**self.totals, **ckpt.get("totals", {})}  # checkpoints from before telemetry lack some
        self.totals["duration"] = max(self.totals["duration"], _previous_duration(self.ctx.run_dir))
        self.peak_mem_mb = ckpt.get("peak_mem_mb")
        self.final_sizes = dict(ckpt.get("final_sizes", {}))

    # ------------------------------------------------------------------------------ checkpoint

    def _payload(self, kind: str, *, stage: int, epoch: int, batch: int, stats: EpochStats | None,
                 copies: dict[str, Any] | None = None) -> dict:
        """The ``last`` checkpoint's contents (live state, snapshotted by the saver); ``copies``: CPU
        copies of the raw/EMA weights taken at this step, used instead of copying them again."""
        copies = copies or {}
        eng = self.engine
        assert eng is not None and self.optimizer is not None
        return {
            "format": checkpoint.FORMAT, "kind": kind, "epoch": epoch, "batch": batch, "step": eng.step,
            "stage_step": eng.stage_step, "stage": stage, "recipe": self.recipe_dict,
            "class_names": list(self.splits.class_names),
            # live state: the saver snapshots the whole payload before training goes on
            "model": checkpoint.Frozen(copies["raw"]) if "raw" in copies else self.model.state_dict(),
            "ema": (None if self.ema is None else
                    checkpoint.Frozen(copies["ema"]) if "ema" in copies else self.ema.module.state_dict()),
            "ema_updates": self.ema.updates if self.ema is not None else 0,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": eng.scheduler.state_dict(),
            "scaler": eng.scaler.state_dict() if eng.scaler is not None else None,
            "rng": checkpoint.rng_state(),
            "best_tracker": self.tracker.state_dict(),
            "epoch_stats": stats.as_dict() if stats is not None and batch else None,
            "last_results": self.last_results,
            "skipped": sorted(self.skipped),
            "totals": {**self.totals, "duration": self._duration(),
                       **telemetry.gpu_totals(self.totals, self.sampler)},
            "peak_mem_mb": self.peak_mem_mb,
            "final_sizes": self.final_sizes,
            "data_images": self.splits.image_counts(),  # a resume checks it trains on the same images
            "data_digests": self.splits.image_digests(),
        }

    def _save_last(self, *, stage: int, epoch: int, batch: int = 0, stats: EpochStats | None = None,
                   copies: dict[str, Any] | None = None) -> None:
        path = self.ckpt_dir / layout.LAST_CKPT
        rng_ranks = self.dist.gather_objects(checkpoint.rng_state()) if self.dist is not None else None  # every rank calls
        if not self.main:
            return
        payload = self._payload("last", stage=stage, epoch=epoch, batch=batch, stats=stats, copies=copies)
        if rng_ranks is not None:
            payload["rng_ranks"] = rng_ranks
            payload["world_size"] = self.dist.size
        step = payload["step"]
        self.saver.save(path, payload, done=lambda: self._emit("checkpoint", epoch=epoch, step=step, kind="last",
                                                                path=str(path)))

    def _save_best(self, improved: list[str], epoch: int) -> None:
        if "raw" in improved:
            self.best_states["raw"] = checkpoint.cpu_state_dict(self.model)
        if "ema" in improved and self.ema is not None:
            self.best_states["ema"] = checkpoint.cpu_state_dict(self.ema.module)
        if not self.main:
            return
        path = self.ckpt_dir / layout.BEST_CKPT
        # each model's weights come from its own best epoch ("epoch" is when the file was written)
        epochs = {m: (b["epoch"] if b is not None and self.best_states.get(m) is not None else None)
                  for m, b in self.tracker.best.items()}
        payload = {
            "format": checkpoint.FORMAT, "kind": "best", "stage": self.tracker.stage, "epoch": epoch, "epochs": epochs,
            "step": self.eng.step,
            "recipe": self.recipe_dict, "class_names": list(self.splits.class_names),
            "model": self.best_states["raw"], "ema": self.best_states["ema"],
            "best_tracker": checkpoint.snapshot(self.tracker.state_dict()), "selected": self.tracker.selected(),
        }
        step = payload["step"]

        def done() -> None:
            for m in improved:
                self._emit("checkpoint", epoch=epoch, step=step, kind="best", path=str(path), model=m)

        # the weights are the CPU copies above, which are replaced, never changed: no second copy
        self.saver.save(path, payload, copy=False, done=done)

    # -------------------------------------------------------------------------------- epochs

    def _evaluate_all(self, epoch: int, test_size: int, *, keep_predictions: bool = False) -> dict[str, dict | None]:
        """Evaluate each model on validation and test. ``keep_predictions`` (the run's last epoch):
        keep each model's per-image test predictions, so that ``predictions.json`` needs no extra
        test pass when the selected model's best epoch is this one."""
        assert self.loaders is not None and self.engine is not None
        models = {"raw": self.engine.eval_forward or self.engine.forward}
        if self.ema is not None:
            models["ema"] = self.ema.module
        if self.dist is not None:
            # Weights are identical on every process; BN statistics of a plain (not synced) BN
            # and the EMA's copies of them are each process's own: evaluate rank 0's everywhere.
            self.dist.broadcast_buffers(self.model)
            if self.ema is not None:
                self.dist.broadcast_buffers(self.ema.module)
        out: dict[str, dict | None] = {"raw": None, "ema": None}
        for name, model in models.items():
            res: dict[str, Any] = {}
            for split, loader in (("val", self.loaders.val), ("test", self.loaders.test)):
                if loader is None:
                    res[split] = None
                    continue
                keep = keep_predictions and split == "test" and model is self._bare(name)
                bad: set[str] = set()

                def on_corrupt(paths: tuple[str, ...], bad: set[str] = bad) -> None:
                    bad.update(paths)
                    self._on_corrupt(paths)

                ev = evaluate(model, loader, self.engine, num_classes=self.num_classes, top_k=self.r.eval.top_k,
                              on_corrupt=on_corrupt, predictions=keep)
                if keep:
                    self.kept_predictions[name] = {"epoch": epoch, "labels": ev.pop("labels"),
                                                   "predicted": ev.pop("predicted"), "bad": bad}
                res[split] = ev
                self.evaluated[split] = ev["images"]
                self._emit("eval", epoch=epoch, step=self.engine.step, split=split, model=name, top1=ev["top1"],
                           topk=ev["topk"], loss=ev["loss"], test_size=test_size, images=ev["images"])
            out[name] = res
        return out

    def _end_epoch(self, st: StageSpec, epoch: int, res: dict, *, last_in_stage: bool) -> None:
        r = self.r
        if self.dist is not None and r.data.skip_corrupt:  # each process skipped the images of its shards
            self.skipped = set().union(*self.dist.gather_objects(sorted(self.skipped)))
        self.totals["train_time"] += res["train_time"]
        self.totals["train_images"] += res["images"]
        timing = res["telemetry"]
        self.totals["data_wait_s"] += timing.get("data_wait_s", 0.0)
        self.totals["step_wall_s"] += timing.get("wall_s", 0.0)
        fields: dict[str, Any] = {
            "stage": st.index, "images_per_s": res["images_per_s"], "epoch_time": res["train_time"],
            "skipped_images": len(self.skipped),
            **{k: v for k, v in timing.items() if k in events.TIMING_FIELDS},
        }
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
            fields["peak_mem_mb"] = peak
            self.peak_mem_mb = max(self.peak_mem_mb or 0.0, peak)
        due = last_in_stage or (epoch - st.first_epoch + 1) % r.runtime.eval_every_epochs == 0
        improved: list[str] = []
        if due:
            results = self._evaluate_all(epoch, st.test_size,
                                         keep_predictions=last_in_stage and st.index == len(self.stages) - 1)
            for model, prefix in (("raw", ""), ("ema", "ema_")):
                mres = results.get(model)
                if mres is None:
                    continue
                for split in ("val", "test"):
                    if mres.get(split) is not None:
                        fields[f"{prefix}{split}_top1"] = mres[split]["top1"]
                        fields[f"{prefix}{split}_topk"] = mres[split]["topk"]
            improved = self.tracker.update(epoch, results)
            fields["improved"] = list(improved)
            self.last_results = {
                "epoch": epoch,
                **{m: (None if v is None else {f"{s}_{k}": (v[s][k] if v.get(s) else None)
                                               for s in ("val", "test") for k in ("top1", "topk")})
                   for m, v in results.items()},
            }
        extra = {k: v for k, v in extra_metrics(self.model).items() if k in events.EVENT_FIELDS["epoch"][1]}
        self._emit("epoch", epoch=epoch, step=self.eng.step, train_loss=res["train_loss"],
                   train_top1=res["train_top1"], lr=self.eng.last_lr, **fields, **extra)
        self.last_epoch_done = epoch
        self._print_epoch(epoch, res, fields)
        if improved:
            self._save_best(improved, epoch)
        # the weights of a model that improved were just copied for best.pt, at this very step: last.pt
        # takes that copy instead of a second one (the copy is what a checkpoint costs the training thread)
        copies = {m: self.best_states[m] for m in improved if self.best_states.get(m) is not None}
        if last_in_stage or (epoch - st.first_epoch + 1) % r.runtime.checkpoint_every_epochs == 0:
            self._save_last(stage=st.index, epoch=epoch, copies=copies)
            self._saved_at = epoch
        self.write_summary()

    def _print_epoch(self, epoch: int, res: dict, f: dict) -> None:
        parts = [f"epoch {epoch}/{self.total_epochs}", f"loss {res['train_loss']:.4f}", f"train {res['train_top1']:.2f}%"]
        for key, label in (("val_top1", "val"), ("test_top1", "test"), ("ema_val_top1", "ema val"),
                           ("ema_test_top1", "ema test")):
            if f.get(key) is not None:
                parts.append(f"{label} {f[key]:.2f}%")
        parts.append(f"lr {self.eng.last_lr:.3g}")
        if res.get("images_per_s"):
            parts.append(f"{res['images_per_s']:.0f} img/s")
        parts.append(f"{res['train_time']:.1f}s")
        if f.get("improved"):
            # said where it first appears: which model's best moved, on what, and where it is saved
            if not self._star_told:
                self._star_told = True
                which = " and ".join(f["improved"])
                on = {"val": "on validation top-1", "test": "on test top-1"}.get(
                    self.tracker.select_on, "(eval.select_on = \"last\": the latest epoch)")
                parts.append(f"*  (* = a new best epoch of the {which} model {on}, saved in {layout.CHECKPOINT_DIR}/{layout.BEST_CKPT})")
            else:
                parts.append("*")
        self.progress.line("  ".join(parts))

    _star_told = False

    # -------------------------------------------------------------------------------- summary

    def summary(self) -> Summary:
        t = self.tracker
        last = None
        if self.last_results is not None:
            lr_ = self.last_results
            last = LastEpoch(epoch=lr_["epoch"], raw=_split_view(lr_.get("raw")), ema=_split_view(lr_.get("ema")))
        best = {m: (None if b is None else ModelBest(**b)) for m, b in (("raw", t.public("raw")), ("ema", t.public("ema")))}
        if not self.r.ema.enabled:
            best["ema"] = None
        return Summary(
            run_id=self.ctx.run_id, name=self.r.name, status=self.status,
            dataset=self.r.data.dataset, arch=self.r.model.arch,
            epochs_done=self.last_epoch_done, total_epochs=self.total_epochs,
            step=self.engine.step if self.engine else 0, duration_s=round(self._duration(), 3),
            images_per_s=(self.totals["train_images"] / self.totals["train_time"]) if self.totals["train_time"] else None,
            peak_mem_mb=self.peak_mem_mb,
            train_images=len(self.splits.train),
            val_images=self.evaluated.get("val", len(self.splits.val)),
            test_images=self.evaluated.get("test", len(self.splits.test)), select_on=self.r.eval.select_on,
            top_k=min(self.r.eval.top_k, self.num_classes),
            best=best,
            selected=t.selected() if t.best.get("raw") or t.best.get("ema") else None,
            last=last,
            final_test_sizes={str(size): dict(v) for size, v in self.final_sizes.items()},
            skipped_images=len(self.skipped),
            **telemetry.summary_numbers(self.totals, self.sampler),
        )

    def write_summary(self) -> Summary:
        """The run's summary, checked as every reader checks it (finite numbers, the declared types),
        written to ``summary.json`` by the process that writes files."""
        s = Summary.from_json(self.summary().to_json())
        if self.main:
            write_summary(self.ctx.run_dir, s)
        return s

    # ----------------------------------------------------------------------------------- run

    def _position(self) -> tuple[int, int, EpochStats | None]:
        """(stage index, epoch index within that stage, partial-epoch sums) to continue from."""
        ckpt = self.ctx.resume
        if ckpt is None:
            return 0, 0, None
        si = int(ckpt["stage"])
        st = self.stages[si]
        done_in_stage = int(ckpt["epoch"]) - (st.first_epoch - 1)
        batch = int(ckpt.get("batch", 0))
        if batch:
            return si, done_in_stage, EpochStats(**ckpt["epoch_stats"])
        finished = done_in_stage >= st.epochs or (st.max_steps is not None and int(ckpt["stage_step"]) >= st.max_steps)
        if finished:
            return si + 1, 0, None
        return si, done_in_stage, None

    def run(self) -> str:
        """Train every stage; returns "completed" or "interrupted" (exceptions propagate)."""
        try:
            # the run's loader workers end with it, however it ends (see workers_end_with)
            with loaders.workers_end_with():
                if not self.main:
                    return self._run()
                self.sampler = telemetry.Sampler(self.writer.emit, self.device, self._where)
                with self.sampler:
                    return self._run()
        except BaseException as err:
            try:
                self.saver.wait()  # a checkpoint being written is finished
            except Exception as failed:  # noqa: BLE001 - otherwise the training error is the one to report
                if disk_full_cause(err) is not None and disk_full_cause(failed) is not None:
                    # the disk filled up while a checkpoint was being written: say that one (the
                    # summary written meanwhile failed for the same reason)
                    raise failed from None
            raise
        finally:
            self.saver.wait()  # nothing is left half-done in the background when run() returns

    def _where(self) -> tuple[int, int]:
        """(epoch, step) now, for the sampler's events: the epoch in progress."""
        epoch = min(self.total_epochs, self.last_epoch_done + (1 if self.training_started else 0))  # not past the last
        return epoch, self.engine.step if self.engine else 0

    def _run(self) -> str:
        ctx = self.ctx
        si0, e0, stats0 = self._position()
        if ctx.resume is not None:
            self._restore(ctx.resume, ctx.resume_best)
            self._remove_stale_temps()
        self._emit_started()
        for line in ctx.model_report if ctx.resume is None else []:
            self._emit("log", level="info", message=line)
        if ctx.resume is not None:
            rng = ctx.resume["rng"]
            ranks = ctx.resume.get("rng_ranks")
            if self.dist is not None and ranks is not None and len(ranks) == self.dist.size:
                rng = ranks[self.dist.rank]  # each process continues its own random stream
            checkpoint.set_rng_state(rng)
        self.progress.start(self.engine.step if self.engine else 0)

        resumed_into = ctx.resume is not None and si0 == int(ctx.resume["stage"])
        for si in range(si0, len(self.stages)):
            st = self.stages[si]
            self.stage = st
            if not (si == si0 and resumed_into):
                self._begin_stage(st)
            self._build_loaders(st)
            start_e = e0 if si == si0 else 0
            for e in range(start_e, st.epochs):
                epoch = st.first_epoch + e
                stats = stats0 if (si == si0 and e == start_e and stats0 is not None) else EpochStats()
                if self.device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(self.device)
                self.training_started = True
                res = self._train_epoch(st, epoch, stats)
                if not res["completed"] and not res["stopped"]:
                    assert self.loaders is not None  # built for this stage above
                    raise RuntimeError(f"the training loader ended after {stats.batches} of "
                                       f"{self.loaders.train.steps_per_epoch} batches in epoch {epoch}")
                if not res["completed"]:
                    self._save_last(stage=si, epoch=epoch - 1, batch=stats.batches, stats=stats)
                    self._remove_stale_temps()
                    self.status = "interrupted"
                    self.write_summary()
                    return "interrupted"
                last = e == st.epochs - 1 or res["reached_max_steps"]
                self._saved_at = None
                self._end_epoch(st, epoch, res, last_in_stage=last)
                final_epoch = si == len(self.stages) - 1 and (last or res["reached_max_steps"])
                stop = ctx.stop.requested if self.dist is None else self.dist.stop_agreed(ctx.stop, wait=True)
                if stop and not final_epoch:
                    if self._saved_at != epoch:
                        self._save_last(stage=si, epoch=epoch)
                    self._remove_stale_temps()
                    self.status = "interrupted"
                    self.write_summary()
                    return "interrupted"
                if res["reached_max_steps"]:
                    break
        if self.stage is None:  # resumed from the final checkpoint (killed before the end): finish the run
            self.stage = self.stages[-1]
            self._build_loaders(self.stage)
        self._final()
        self._remove_stale_temps()
        self.status = "completed"
        return "completed"

    def _remove_stale_temps(self) -> None:
        """Temporary checkpoint files a killed run left (``.last.pt.XXXX.tmp``)."""
        self.saver.wait()  # not the temporary file of a write in progress
        if self.main:
            checkpoint.remove_stale_temps(self.ckpt_dir, (layout.LAST_CKPT, layout.BEST_CKPT))

    def _train_epoch(self, st: StageSpec, epoch: int, stats: EpochStats) -> dict:
        assert self.loaders is not None and self.engine is not None
        spe = self.loaders.train.steps_per_epoch
        prog = self.progress

        def on_log(ev: dict) -> None:
            self._emit("step", stage=st.index, **ev)
            if ev["loss"] != ev["loss"] or math.isinf(ev["loss"]):
                raise FloatingPointError(f"the training loss is {ev['loss']} at step {ev['step']} (diverged)")
            prog.logged(epoch=epoch, total_epochs=self.total_epochs, batch=stats.batches, batches=spe,
                        step=ev["step"], loss=ev["loss"], top1=ev.get("top1"), lr=ev["lr"],
                        images_per_s=ev.get("images_per_s"))

        def on_tick(batch: int, step: int) -> None:
            prog.tick(epoch=epoch, total_epochs=self.total_epochs, batch=batch, batches=spe, step=step)

        should_stop: Callable[[], bool] = self.ctx.stop
        dist = self.dist
        if dist is not None:
            def agreed() -> bool:  # every process stops after the same step
                return dist.stop_agreed(self.ctx.stop)
            should_stop = agreed
        hooks = StepHooks(log_every=self.r.runtime.log_every_steps, on_log=on_log, on_tick=on_tick,
                          on_corrupt=self._on_corrupt, should_stop=should_stop)
        batches = self.loaders.train.batches(epoch, stats.batches)
        return train_one_epoch(self.engine, batches, epoch=epoch, num_batches=spe, stats=stats, hooks=hooks)

    def _final(self) -> None:
        """Final evaluation of the selected weights at ``eval.final_test_sizes``; confusion.json."""
        sizes = self.r.eval.final_test_sizes
        t = self.tracker
        if sizes and not self.final_sizes:
            bs = loaders.eval_batch_size(self.r.data, self.stage.batch_size if self.stage else self.r.data.batch_size,
                                         self.shard)  # stage batch sizes are global here
            for model_name in ("raw", "ema"):
                state = self.best_states.get(model_name)
                if state is None:
                    continue
                target = self.model if model_name == "raw" else self._ema_module()
                target.load_state_dict(state)
                for size in sizes:
                    data = self.r.data
                    if data.test_crop == "none" and self.stage is not None and size != self.stage.test_size:
                        # the images are used as they are: another size means resizing them to it
                        data = data.model_copy(update={"test_crop": "resize"})
                    loader = loaders.eval_loader(self.splits, data, test_size=size, batch_size=bs, device=self.device,
                                                 shard=self.shard)
                    ev = evaluate(target, loader, self.eng, num_classes=self.num_classes, top_k=self.r.eval.top_k,
                                  on_corrupt=self._on_corrupt)
                    best = t.best.get(model_name)
                    self._emit("final_eval", model=model_name, test_size=size, top1=ev["top1"], topk=ev["topk"],
                               epoch=best["epoch"] if best else None)
                    entry = self.final_sizes.setdefault(str(size), {"raw": None, "ema": None})
                    entry[model_name] = ev["top1"]
                    self.progress.line(f"final test at {size}px ({model_name}, epoch {best['epoch'] if best else '?'}): "
                                       f"top-1 {ev['top1']:.2f}%  top-{min(self.r.eval.top_k, self.num_classes)} "
                                       f"{ev['topk']:.2f}%")
        sel = t.selected()
        if t.confusion.get(sel) is not None:
            self._write_predictions(sel)  # every process: an evaluation (collective under DDP)
        if t.confusion.get(sel) is not None and self.main:
            conf = t.confusion[sel]
            best_sel = t.best.get(sel)
            write_confusion(self.ctx.run_dir, model=sel, class_names=list(self.splits.class_names),
                            epoch=best_sel["epoch"] if best_sel else None,
                            matrix=conf if isinstance(conf, list) else None,
                            cells=conf.numpy() if isinstance(conf, torch.Tensor) else None)

    def _write_predictions(self, sel: str) -> None:
        """``predictions.json``: the selected model's best weights on the test split (at the last
        stage's test size, as at its best epoch), each image's prediction, so that the TUI can show
        the images behind a confusion. When the best epoch is the run's last, its own test pass kept
        them (``_evaluate_all``); otherwise one extra test pass at the end of the run, through the
        stage's own test loader. The numbers of the run are not touched."""
        state = self.best_states.get(sel)
        if state is None or self.stage is None or self.engine is None:
            return
        best = self.tracker.best.get(sel)
        kept = self.kept_predictions.get(sel)
        if kept is not None and best is not None and best["epoch"] == kept["epoch"]:
            # the best epoch is the last one: its own test pass, with these very weights, kept them
            ev: dict[str, Any] = kept
            bad: set[str] = kept["bad"]
        else:
            target = self._bare(sel)
            target.load_state_dict(state)
            # the last stage's own test loader, the one its epochs were evaluated with: the same images,
            # transform, shard and batch, and no second pool of workers or decoded copy of the split
            assert self.loaders is not None
            bad = set()

            def on_corrupt(paths: tuple[str, ...]) -> None:
                bad.update(paths)
                self._on_corrupt(paths)

            ev = evaluate(target, self.loaders.test, self.engine, num_classes=self.num_classes,
                          top_k=self.r.eval.top_k, on_corrupt=on_corrupt, predictions=True)
        src = self.splits.test_source
        idx = self.splits.test if self.shard is None else self.splits.test[self.shard[0]::self.shard[1]]
        if bad:
            idx = [i for i in idx if src.describe(i) not in bad]
        part = (idx, ev["labels"], ev["predicted"])
        parts = self.dist.gather_objects(part) if self.dist is not None else [part]
        if not self.main:
            return
        by_index: dict[int, tuple[int, int]] = {}
        for ids, labels, preds in parts:
            if len(ids) != len(preds):  # cannot tell which image each prediction is of
                self.progress.line("predictions.json not written: images and predictions do not line up")
                return
            by_index.update({i: (y, p) for i, y, p in zip(ids, labels, preds)})
        order = sorted(by_index)
        files = src.paths if isinstance(src, (loaders.FileSource, loaders.CachedSource)) else None
        layout.write_json(self.ctx.run_dir / layout.PREDICTIONS_FILE, {
            "split": "test", "model": sel, "epoch": best["epoch"] if best else None,
            "test_size": self.stage.test_size, "class_names": list(self.splits.class_names),
            "index": order, "file": [files[i] if files is not None else None for i in order],
            "label": [by_index[i][0] for i in order], "predicted": [by_index[i][1] for i in order],
        })

    def _emit_started(self) -> None:
        ctx = self.ctx
        import torchvision

        from fgbench import __version__

        extra: dict[str, Any] = {}
        if ctx.resume is not None:
            extra["resumed"] = {"epoch": int(ctx.resume["epoch"]), "step": int(ctx.resume["step"]),
                                "batch": int(ctx.resume.get("batch", 0))}
        self._emit(
            "run_started", run_id=ctx.run_id, recipe=self.recipe_dict, class_names=list(self.splits.class_names),
            device=_device_name(self.device), host=socket.gethostname(), pid=os.getpid(),
            pid_start=procs.start_time(os.getpid()),
            versions={"fgbench": __version__, "python": platform.python_version(), "torch": torch.__version__,
                      "torchvision": torchvision.__version__},
            train_images=len(self.splits.train), val_images=len(self.splits.val),
            test_images=len(self.splits.test), steps_per_epoch=self.stages[0].steps_per_epoch,
            total_epochs=self.total_epochs, total_steps=self.total_steps,
            world_size=self.dist.size if self.dist is not None else 1,
            top_k=min(self.r.eval.top_k, self.num_classes),
            loader=self.splits.choice.as_event() if self.splits.choice else None,
            memory_format={"channels_last": self.memory_format[0], "reason": self.memory_format[1]},
            precision={"precision": self.r.runtime.precision,
                       "reason": ctx.precision[1] if ctx.precision else f"runtime.precision = \"{self.r.runtime.precision}\""},
            **extra,
        )
        loader = (f"data loader: {self.splits.choice.kind} ({self.splits.choice.reason})"
                  if self.splits.choice is not None else None)
        if ctx.resume is None:
            if loader:
                self._log_event(loader)
            return
        # Resumed: where it continues from, and the loader line again, on the console only (the
        # run_started event carries "resumed"; the first start logged the loader).
        self.progress.line(resumed_text(ctx.resume, self.total_epochs))
        if loader:
            self.progress.line(loader)


def resumed_text(ckpt: dict, total_epochs: int) -> str:
    """The console's line for a resumed run: the checkpoint, the epoch (and batch, from a stop in
    the middle of an epoch) and the step it continues from."""
    done, batch, step = int(ckpt["epoch"]), int(ckpt.get("batch", 0)), int(ckpt["step"])
    where = f"{layout.CHECKPOINT_DIR}/{layout.LAST_CKPT}"
    if batch:
        return (f"resumed from {where}: epoch {done + 1}/{total_epochs} after batch {batch}, step {step}; "
                f"continuing with batch {batch + 1}")
    return f"resumed from {where}: after epoch {done}/{total_epochs}, step {step}; continuing with epoch {done + 1}"


def _split_view(v: dict | None) -> SplitNumbers | None:
    if v is None:
        return None
    return SplitNumbers(val_top1=v.get("val_top1"), test_top1=v.get("test_top1"), test_topk=v.get("test_topk"))


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _previous_duration(run_dir: Path) -> float:
    """The time the run's earlier sessions spent, as their last summary says (0 when there is none or
    it cannot be read). A resumed run's duration counts on from it rather than from the checkpoint's
    own figure, which misses what a session did after its last checkpoint (its stop, its last summary):
    without it, a resumed run could report less time than it had already reported."""
    try:
        prev = read_summary(run_dir)
    except SummaryError:
        return 0.0
    return float(prev.duration_s or 0.0) if prev is not None else 0.0

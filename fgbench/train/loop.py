"""The step loop: ``train_one_epoch`` and ``evaluate``, each returning a plain dict.

The outer loop (``fgbench.train.trainer``) decides what to log, checkpoint and schedule; these two
functions only train and measure. ``Engine`` bundles what one optimizer step needs (model,
optimizer, scheduler, scaler, EMA, loss, mixer, precision), built once per stage.

Cost control: the step itself never calls ``.item()``. Loss and accuracy are summed into float64
tensors on the device; they are read back (one CPU-GPU sync) only on logging steps, when the loop
is asked to stop, and at the end of the epoch. Those are the only sync points, marked below.
The step's data wait and phases are timed by ``fgbench.train.telemetry.StepClock`` (host clocks,
and on CUDA events read only right after those same sync points): timing adds no sync.
Running sums are float64 so that the epoch's numbers do not depend on where they were read.

Under DDP (``Engine.reduce`` set; ``fgbench.train.distributed``) ``forward`` is the
DistributedDataParallel wrapper and each process sees its shard of the global batch. The running
sums are then this process's share and are summed over the processes at exactly the same sync
points (an all-reduce instead of a bare read-back), so logged and returned numbers are over the
whole global batch; ``EpochStats`` always holds global sums. DDP averages gradients over the
processes, which equals the single-process mean over the global batch only when the shards are
equally large; the last batch of an epoch may not be, so each process scales its loss by
``n_local * world / n_global`` for the backward pass (a float known without communication).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from fgbench.train.models import forward_train
from fgbench.rundir.confusion import DENSE_MAX_CLASSES
from fgbench.train.telemetry import StepClock


class EvalEngine(Protocol):
    """What :func:`evaluate` reads of its engine: an :class:`Engine` has it all; evaluating a
    saved run (``fgbench.train.predict``) needs only this."""

    @property
    def device(self) -> torch.device: ...

    @property
    def channels_last(self) -> bool: ...

    @property
    def reduce(self) -> Callable[[torch.Tensor], None] | None:
        """The sum over the DDP processes (None in a single process)."""

    def eval_autocast(self) -> Any: ...


@dataclass
class Engine:
    model: nn.Module  # the bare model (state dicts, EMA source)
    forward: nn.Module  # what the step calls: the model, or torch.compile of it
    optimizer: torch.optim.Optimizer
    scheduler: Any  # LambdaLR
    criterion: Callable
    device: torch.device
    amp_dtype: torch.dtype | None = None  # autocast of the training step
    eval_amp_dtype: torch.dtype | None = None  # autocast of evaluation (None: fp32, ``eval.precision``)
    scaler: Any = None  # torch.amp.GradScaler for fp16
    grad_clip: float | None = None
    ema: Any = None  # fgbench.train.ema.ModelEMA
    ema_every: int = 1
    mixer: Any = None
    channels_last: bool = False
    step: int = 0  # global optimizer step (across stages)
    stage_step: int = 0  # optimizer steps in the current stage (the schedule's clock)
    max_stage_steps: int | None = None
    last_lr: float = 0.0
    # DDP (all unset in a single process): what evaluation calls instead of ``forward`` (the bare
    # model, not the DDP wrapper), the sum-over-processes all-reduce, and the global batch geometry.
    eval_forward: nn.Module | None = None
    reduce: Callable[[torch.Tensor], None] | None = None
    world: int = 1
    global_batch: int = 0
    train_images: int = 0

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def eval_autocast(self):
        if self.eval_amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.eval_amp_dtype)


@dataclass
class EpochStats:
    """Sums over the epoch so far; kept in the checkpoint when a run stops mid-epoch."""

    loss_sum: float = 0.0
    correct: float = 0.0
    seen: int = 0
    batches: int = 0
    train_time: float = 0.0
    timed_images: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class StepHooks:
    """What the loop reports to, and asks, the outer loop."""

    log_every: int = 20
    on_log: Callable[[dict], None] = lambda ev: None  # a step event's fields (synced values)
    on_tick: Callable[[int, int], None] = lambda batch, step: None  # every step, no sync
    on_corrupt: Callable[[tuple[str, ...]], None] = lambda paths: None  # raises unless skipping
    should_stop: Callable[[], bool] = lambda: False
    clock: StepClock | None = None  # times the data wait and the step's phases (fgbench.train.telemetry)


def train_one_epoch(engine: Engine, batches: Iterable, *, epoch: int, num_batches: int, stats: EpochStats,
                    hooks: StepHooks) -> dict:
    """Train over ``batches`` (the rest of the epoch from ``stats.batches`` on).

    Returns ``{"completed", "stopped", "reached_max_steps", "train_loss", "train_top1", ...}``;
    ``stats`` is updated in place so that a stop mid-epoch can be checkpointed and resumed.
    """
    model, opt, dev = engine.model, engine.optimizer, engine.device
    model.train()
    if engine.ema is not None:
        engine.ema.module.eval()
    reduce = engine.reduce  # set under DDP only
    ddp = reduce is not None
    # Under DDP the sums below are this process's share of the images trained in this call.
    acc = torch.tensor([0.0, 0.0] if ddp else [stats.loss_sum, stats.correct], dtype=torch.float64, device=dev)
    seen = 0 if ddp else stats.seen
    win_acc = acc.clone()  # values at the previous logging step
    win_seen, win_time = seen, time.perf_counter()
    t_start = time.perf_counter()
    stopped = reached_max = False
    cl = torch.channels_last if engine.channels_last else None
    clock = hooks.clock if hooks.clock is not None else StepClock(dev)
    clock.begin()

    for x, y, bad in batches:
        clock.batch()
        if bad:
            hooks.on_corrupt(bad)
        if y.numel() == 0:
            if ddp:  # the other processes are about to wait for this one's gradients
                raise RuntimeError(f"every image of this process's share of batch {stats.batches + 1} of epoch {epoch} "
                                   "was undecodable; remove those files (fgbench data verify --deep)")
            stats.batches += 1
            clock.end_step()
            continue
        x = x.to(dev, non_blocking=True)
        y = y.to(dev, non_blocking=True)
        if cl is not None:
            x = x.contiguous(memory_format=cl)
        target = y
        if engine.mixer is not None:
            x, target = engine.mixer(x, y)
        with engine.autocast():
            logits, aux = forward_train(engine.forward, x)
            loss = engine.criterion(logits, target)
            for a in aux:
                loss = loss + engine.criterion(a, target)
        clock.mark()  # forward
        backward_loss = loss
        if engine.world > 1:
            n_global = min(engine.global_batch, engine.train_images - stats.batches * engine.global_batch)
            if y.shape[0] * engine.world != n_global:  # an uneven shard: make DDP's mean the global mean
                backward_loss = loss * (y.shape[0] * engine.world / n_global)
        opt.zero_grad(set_to_none=True)
        engine.last_lr = opt.param_groups[0]["lr"]  # the LR this step uses (the scheduler moves it after)
        grad_norm = None
        if engine.scaler is not None:
            engine.scaler.scale(backward_loss).backward()
            clock.mark()  # backward
            if engine.grad_clip:
                engine.scaler.unscale_(opt)
                grad_norm = nn.utils.clip_grad_norm_(model.parameters(), engine.grad_clip)
            engine.scaler.step(opt)
            engine.scaler.update()
        else:
            backward_loss.backward()
            clock.mark()  # backward
            if engine.grad_clip:
                grad_norm = nn.utils.clip_grad_norm_(model.parameters(), engine.grad_clip)
            opt.step()
        engine.scheduler.step()
        engine.step += 1
        engine.stage_step += 1
        clock.mark()  # optimizer
        if engine.ema is not None and engine.stage_step % engine.ema_every == 0:
            engine.ema.update(model)
        clock.mark()  # ema

        n = y.shape[0]
        with torch.no_grad():
            hard = target if target is y else target.argmax(dim=1)
            acc += torch.stack([loss.detach().double() * n, (logits.argmax(dim=1) == hard).sum().double()])
        seen += n
        stats.batches += 1

        if engine.step % hooks.log_every == 0:
            if reduce is not None:
                window = torch.cat([acc - win_acc, acc.new_tensor([seen - win_seen])])
                reduce(window)  # all-reduce over the processes (logging steps only)
                loss_sum, correct, k = window.tolist()  # CPU-GPU sync point
            else:
                loss_sum, correct = (acc - win_acc).tolist()  # CPU-GPU sync point (logging steps only)
                k = seen - win_seen
            now = time.perf_counter()
            event = {"epoch": epoch, "step": engine.step, "loss": loss_sum / max(k, 1),
                     "top1": 100.0 * correct / max(k, 1), "lr": engine.last_lr,
                     "images_per_s": k / max(now - win_time, 1e-9), **clock.window()}
            if grad_norm is not None:
                event["grad_norm"] = float(grad_norm)  # already synced by tolist above
            hooks.on_log(event)
            win_acc, win_seen, win_time = acc.clone(), seen, now
        hooks.on_tick(stats.batches, engine.step)
        clock.end_step()
        if engine.max_stage_steps is not None and engine.stage_step >= engine.max_stage_steps:
            reached_max = True
            break
        if hooks.should_stop():
            stopped = True
            break

    if reduce is not None:
        total = torch.cat([acc, acc.new_tensor([seen])])
        reduce(total)  # all-reduce over the processes (end of epoch or stop)
        loss_sum, correct, n = total.tolist()  # CPU-GPU sync point
        loss_sum, correct, seen = stats.loss_sum + loss_sum, stats.correct + correct, stats.seen + int(round(n))
    else:
        loss_sum, correct = acc.tolist()  # CPU-GPU sync point (end of epoch or stop)
    elapsed = time.perf_counter() - t_start
    stats.train_time += elapsed
    stats.timed_images += seen - stats.seen
    stats.loss_sum, stats.correct, stats.seen = loss_sum, correct, seen
    return {
        "completed": stats.batches >= num_batches or reached_max,
        "stopped": stopped,
        "reached_max_steps": reached_max,
        "train_loss": loss_sum / max(seen, 1),
        "train_top1": 100.0 * correct / max(seen, 1),
        "images": seen,
        "train_time": stats.train_time,
        "images_per_s": stats.timed_images / stats.train_time if stats.train_time > 0 else None,
        "telemetry": clock.epoch(),  # data wait and phase times of this call's steps (after the sync above)
    }


def evaluate(model: nn.Module, loader, engine: EvalEngine, *, num_classes: int, top_k: int = 5,
             on_corrupt: Callable[[tuple[str, ...]], None] | None = None, predictions: bool = False) -> dict:
    """Top-1 / top-k accuracy (percent), mean loss and the confusion matrix of one split:
    ``confusion``, a dense ``(C, C)`` tensor up to ``DENSE_MAX_CLASSES`` classes; past that
    ``confusion`` is None and ``confusion_cells`` holds the non-zero ``(true, predicted, count)`` rows.
    Under DDP (``engine.reduce``) ``loader`` holds this process's shard and the counts are summed
    over the processes, so every process returns the numbers of the whole split.
    ``predictions``: also return ``labels`` and ``predicted`` (top-1 class) per image, in the
    loader's order (this process's shard only; undecodable images skipped)."""
    with torch.no_grad():  # not a decorator, so that the mutation tests can reach the body
        return _evaluate(model, loader, engine, num_classes=num_classes, top_k=top_k, on_corrupt=on_corrupt,
                         predictions=predictions)


def _evaluate(model: nn.Module, loader, engine: EvalEngine, *, num_classes: int, top_k: int,
              on_corrupt: Callable[[tuple[str, ...]], None] | None, predictions: bool) -> dict:
    was_training = model.training
    model.eval()
    dev = engine.device
    k = min(top_k, num_classes)
    sums = torch.zeros(3, dtype=torch.float64, device=dev)  # loss, top1, topk
    reduce = engine.reduce
    # Up to DENSE_MAX_CLASSES (or under DDP, whose processes sum their counts) the matrix is counted
    # densely; past it only the cells that occur: 10,000 classes would be a 10^8-cell matrix.
    dense = num_classes <= DENSE_MAX_CLASSES or reduce is not None
    confusion = torch.zeros(num_classes * num_classes if dense else 0, dtype=torch.long, device=dev)
    codes: list[torch.Tensor] = []
    images = 0
    preds: list[torch.Tensor] = []
    truth: list[torch.Tensor] = []
    cl = torch.channels_last if engine.channels_last else None
    try:
        for x, y, bad in loader.batches():
            if bad and on_corrupt is not None:
                on_corrupt(bad)
            if y.numel() == 0:
                continue
            x = x.to(dev, non_blocking=True)
            y = y.to(dev, non_blocking=True)
            if cl is not None:
                x = x.contiguous(memory_format=cl)
            with engine.eval_autocast():
                logits = model(x)
            if not isinstance(logits, torch.Tensor):
                logits = logits[0]
            logits = logits.float()
            top = logits.topk(k, dim=1).indices
            hit = top == y[:, None]
            sums += torch.stack([F.cross_entropy(logits, y, reduction="sum").double(),
                                 hit[:, 0].sum().double(), hit.any(dim=1).sum().double()])
            if dense:
                confusion += torch.bincount(y * num_classes + top[:, 0], minlength=num_classes * num_classes)
            else:
                codes.append(y * num_classes + top[:, 0])
            if predictions:
                preds.append(top[:, 0])
                truth.append(y)
            images += y.shape[0]
        if reduce is not None:
            sums = torch.cat([sums, sums.new_tensor([images])])
            reduce(sums)
            reduce(confusion)
            loss_sum, c1, ck, n_all = sums.tolist()  # CPU-GPU sync point (once per evaluation)
            images = int(round(n_all))
        else:
            loss_sum, c1, ck = sums.tolist()  # CPU-GPU sync point (once per evaluation)
    finally:
        model.train(was_training)
    n = max(images, 1)
    out = {
        "top1": 100.0 * c1 / n,
        "topk": 100.0 * ck / n,
        "loss": loss_sum / n,
        "images": images,
    }
    if dense and num_classes <= DENSE_MAX_CLASSES:
        out["confusion"] = confusion.view(num_classes, num_classes).cpu()
    else:
        if dense:
            code = confusion.nonzero().flatten()
            count = confusion[code]
        else:
            code, count = (torch.cat(codes).unique(return_counts=True) if codes
                           else (torch.zeros(0, dtype=torch.long, device=dev),) * 2)
        out["confusion"] = None
        out["confusion_cells"] = torch.stack([code // num_classes, code % num_classes, count], dim=1).cpu()
    if predictions:
        out["predicted"] = torch.cat(preds).tolist() if preds else []
        out["labels"] = torch.cat(truth).tolist() if truth else []
    return out

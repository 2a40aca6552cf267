"""``fgbench bench RECIPE``: how fast this recipe can go on this machine, and what stops it.

Four measurements, each for a fixed number of seconds (``--seconds``, after a short warm-up):

1. **the limit**: the model's training step (forward, backward, optimizer, EMA, exactly as the
   trainer runs it: ``fgbench.train.loop.train_one_epoch``) on a few batches already on the
   device, cycled. No loader can make training faster than this. It is timed twice, before and
   after the end-to-end run, and the faster is kept (a process's first steps can be slower).
2. **the loader alone**, for each loader the recipe allows (its own choice first; ``device`` when
   the augmentation allows it and the splits fit the memory budget; ``cached`` for JPEGs;
   ``standard`` always): training batches per second with no model, after the first batch (the
   first batch's delay, worker start-up included, is shown apart).
3. **end to end**: the same step fed by the recipe's own loader, with the step clock of
   ``fgbench.train.telemetry`` saying how much of the time went to waiting for data.
4. **a cheaper step** where the hardware has one: bf16 autocast with ``channels_last`` on the
   same in-memory batches (on a CPU only when it supports bf16: ``torch.ops.mkldnn``), unless
   the recipe already trains that way. It is a recommendation: a seed recipe's precision is part
   of what it reproduces, so fgbench never switches it by itself.

The bottleneck is the slowest of the step (the limit) and the loader; end to end is compared with
the limit. Nothing is written into the runs root (``--json FILE`` writes the numbers where asked).
Evaluation is not measured: it runs once per epoch, and its share shows in a real run's events.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import sys
import time
from argparse import Namespace
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch

from fgbench.data.loaders import resolve_workers
from fgbench.train.loop import EpochStats, StepHooks, train_one_epoch
from fgbench.train.telemetry import StepClock

WARMUP_STEPS = 2
MIN_STEPS = 3
IN_MEMORY_BATCHES = 4


@dataclass
class Rate:
    """One measurement: ``images`` in ``seconds``; ``ratio`` is images/s over the limit's."""

    name: str
    images: int
    seconds: float
    ratio: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass
class BenchReport:
    recipe: str
    setup: dict[str, Any]
    limit: Rate
    loaders: list[Rate]
    end_to_end: Rate
    cheaper: Rate | None
    bottleneck: str
    advice: list[str]

    def to_json(self) -> dict[str, Any]:
        def rate(r: Rate | None) -> dict[str, Any] | None:
            return None if r is None else {**asdict(r), "images_per_s": r.images_per_s}

        return {"recipe": self.recipe, "setup": self.setup, "limit": rate(self.limit),
                "loaders": [rate(r) for r in self.loaders], "end_to_end": rate(self.end_to_end),
                "cheaper": rate(self.cheaper), "bottleneck": self.bottleneck, "advice": self.advice}


# ---------------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # a sync point: bench timing only, never in a run


def _timed_steps(engine, batches: Iterable, *, seconds: float, batch_size: int) -> tuple[int, float, dict]:
    """Train on ``batches`` for about ``seconds`` (at least MIN_STEPS steps) after WARMUP_STEPS
    untimed ones. Returns (images, seconds, the step clock's fields)."""
    it = iter(batches)
    warm = EpochStats()
    train_one_epoch(engine, itertools.islice(it, WARMUP_STEPS), epoch=1, num_batches=WARMUP_STEPS, stats=warm,
                    hooks=StepHooks(log_every=1 << 30))
    _sync(engine.device)
    t0 = time.perf_counter()
    count = [0]

    def should_stop() -> bool:
        count[0] += 1
        return count[0] >= MIN_STEPS and time.perf_counter() - t0 >= seconds

    stats = EpochStats()
    clock = StepClock(engine.device)
    res = train_one_epoch(engine, it, epoch=1, num_batches=1 << 30, stats=stats,
                          hooks=StepHooks(log_every=1 << 30, should_stop=should_stop, clock=clock))
    _sync(engine.device)
    return res["images"], time.perf_counter() - t0, res["telemetry"]


def _loader_rate(loader, *, seconds: float) -> tuple[int, float, float]:
    """(images, seconds, seconds to the first batch) of iterating a training loader without a model."""
    t0 = time.perf_counter()
    it = loader.batches(1, 0)
    first = next(it)
    t_first = time.perf_counter() - t0
    images, t1 = 0, time.perf_counter()
    for _x, y, _bad in it:
        images += int(y.shape[0])
        if time.perf_counter() - t1 >= seconds and images >= 2 * int(first[1].shape[0]):
            break
    else:  # one epoch was shorter than the time asked: a second epoch continues the count
        for _x, y, _bad in loader.batches(2, 0):
            images += int(y.shape[0])
            if time.perf_counter() - t1 >= seconds:
                break
    if images == 0:  # a single-batch epoch
        images = int(first[1].shape[0])
        return images, t_first, t_first
    return images, time.perf_counter() - t1, t_first


def _cycle_on_device(batches: Iterator, device: torch.device, n: int) -> Iterator:
    """``n`` batches taken once and moved to the device, then repeated for ever."""
    held = []
    for x, y, _bad in itertools.islice(batches, n):
        held.append((x.to(device), y.to(device), ()))
    if not held:
        raise RuntimeError("the training loader gave no batches")
    return itertools.cycle(held)


def cpu_bf16_supported() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_bf16_supported()


# ---------------------------------------------------------------------------------- the bench


def allowed_loaders(recipe, splits) -> list[str]:
    """The loaders to time: the recipe's own (or what ``auto`` chose) first, then the others it allows."""
    from fgbench.data.loaders import FileSource, _formats, check_device_loader
    from fgbench.errors import UserError

    own = splits.loader
    kinds = [own]
    try:
        check_device_loader(recipe.data, recipe.augment)
        device_ok = True
    except UserError:
        device_ok = False
    if device_ok and own != "device":
        kinds.append("device")
    if own != "standard":
        kinds.append("standard")
    if own != "cached" and splits.index.kind != "cifar" and "JPEG" in _formats(FileSource(splits.index.train)):
        kinds.append("cached")
    return kinds


class _Bench:
    def __init__(self, args: Namespace):
        from fgbench.rundir.request import RunRequest
        from fgbench.train.plan import build_plan

        plan = build_plan(RunRequest(recipe=args.recipe, overrides=tuple(args.overrides or ()), device=args.device))
        self.args = args
        self.plan = plan
        self.recipe = plan.recipe
        self.device = plan.device
        self.splits = plan.splits
        self.model = plan.model
        self.seconds = float(args.seconds)
        self.stage = plan.stages[0]

    def trainer(self, recipe=None):
        """A trainer that is never run: it builds the engine and loaders exactly as a run does."""
        from fgbench.train.distributed import NullWriter
        from fgbench.train.progress import Progress
        from fgbench.train.trainer import RunContext, StopFlag, Trainer

        from fgbench.train.models import channels_last_for

        r = recipe or self.recipe  # (a variant differs in precision and memory format only: same stages)
        ctx = RunContext(recipe=r, run_dir=Path(os.devnull), run_id="bench",
                         device=self.device, splits=self.splits, model=self.model, model_report=[],
                         writer=NullWriter(), progress=Progress("none"), stop=StopFlag(), stages=self.plan.stages,
                         channels_last=channels_last_for(r.runtime.channels_last, r.model.arch, self.device.type))
        t = Trainer(ctx)
        t._new_ema()
        t._build_engine(self.stage, new_optimizer=True)
        t.engine.max_stage_steps = None
        return t

    def loaders(self, kind: str, splits=None):
        from fgbench.data.loaders import build_loaders

        st = self.stage
        data = self.recipe.data.model_copy(update={"loader": kind})
        return build_loaders(splits or self.splits, data, self.recipe.augment, train_size=st.train_size,
                             test_size=st.test_size, batch_size=st.batch_size, seed=self.recipe.runtime.seed,
                             device=self.device)

    def splits_for(self, kind: str):
        if kind == self.splits.loader:
            return self.splits
        from fgbench.data.index import resolve_index
        from fgbench.data.loaders import load_splits

        data = self.recipe.data.model_copy(update={"loader": kind})
        return load_splits(resolve_index(data), data, train_sizes=[self.stage.train_size],
                           test_sizes=[self.stage.test_size], augment=self.recipe.augment, device=self.device,
                           epochs=self.stage.epochs)  # the first stage is what is timed

    def run(self) -> BenchReport:
        r, st, bs = self.recipe, self.stage, self.stage.batch_size
        say = self.args.say
        own = self.splits.loader
        own_loaders = self.loaders(own)
        try:
            # 1. the limit: the step on batches already on the device
            say("timing the step on batches in memory (the limit) ...")
            engine = self.trainer().engine
            held = _cycle_on_device(own_loaders.train.batches(1, 0), self.device, IN_MEMORY_BATCHES)
            first = _timed_steps(engine, held, seconds=self.seconds, batch_size=bs)
            # 3. end to end with the recipe's loader (before the other loaders, while it is warm)
            say(f"timing end to end with the {own} loader ...")
            engine = self.trainer().engine
            batches = (b for e in itertools.count(1) for b in own_loaders.train.batches(e, 0))
            images, secs, clock = _timed_steps(engine, batches, seconds=self.seconds, batch_size=bs)
            e2e = Rate("end to end", images, secs, None, f"{own} loader",
                       {"data_wait_frac": clock.get("data_wait_frac", 0.0)})
            # the limit again, after end to end: a process's first steps can run slower (allocator,
            # oneDNN primitives, a load spike), and the limit is the faster of the two
            say("timing the step on batches in memory again ...")
            engine = self.trainer().engine
            second = _timed_steps(engine, held, seconds=self.seconds, batch_size=bs)
            rates_seen = [m[0] / m[1] for m in (first, second)]
            images, secs, _ = max(first, second, key=lambda m: m[0] / m[1])
            limit = Rate("limit", images, secs, 1.0, "model step on batches in memory",
                         {"rates": rates_seen})
            e2e.ratio = e2e.images_per_s / limit.images_per_s
            # 2. the loaders alone
            rates = []
            for kind in allowed_loaders(r, self.splits):
                say(f"timing the {kind} loader alone ...")
                if kind == own:
                    lds = own_loaders
                else:
                    lds = self.loaders(kind, self.splits_for(kind))
                try:
                    images, secs, t_first = _loader_rate(lds.train, seconds=self.seconds)
                finally:
                    if lds is not own_loaders:
                        lds.close()
                note = "the recipe's" if kind == own else ""
                rate = Rate(f"loader: {kind}", images, secs, None, note, {"first_batch_s": t_first, "kind": kind})
                rate.ratio = rate.images_per_s / limit.images_per_s
                rates.append(rate)
            # 4. a cheaper step
            cheaper = None
            already = r.runtime.precision == "bf16" and engine.channels_last
            if not already and bf16_supported(self.device):
                say("timing bf16 autocast + channels_last on the same batches ...")
                cheaper = self._cheaper(held, bs, limit)
        finally:
            own_loaders.close()
        from fgbench.train.plan import resolve_precision

        auto_bf16 = resolve_precision("auto", self.device)[0] == "bf16"
        bottleneck, advice = diagnose(limit, rates, e2e, cheaper, recipe=r, auto_bf16=auto_bf16)
        setup = {"arch": r.model.arch, "device": str(self.device), "threads": torch.get_num_threads(),
                 "batch_size": bs, "train_size": st.train_size, "precision": r.runtime.precision,
                 "channels_last": bool(engine.channels_last), "loader": own, "workers": resolve_workers(r.data)[0],
                 "loader_reason": self.splits.choice.reason if self.splits.choice is not None else "",
                 "seconds": self.seconds}
        return BenchReport(str(self.args.recipe), setup, limit, rates, e2e, cheaper, bottleneck, advice)

    def _cheaper(self, held: Iterator, bs: int, limit: Rate) -> Rate:
        data = self.recipe.model_dump(mode="json")
        data["runtime"].update(precision="bf16", channels_last=True)
        from fgbench.recipe import validate_recipe

        fast = validate_recipe(data, "bench")
        saved = copy.deepcopy(self.model.state_dict())
        self.model.to(memory_format=torch.channels_last)
        try:
            t = self.trainer(fast)
            t.engine.channels_last = True
            images, secs, _ = _timed_steps(t.engine, held, seconds=self.seconds, batch_size=bs)
        finally:
            self.model.to(memory_format=torch.contiguous_format)
            self.model.load_state_dict(saved)
        rate = Rate("bf16 + channels_last", images, secs, None, "model step on batches in memory")
        rate.ratio = rate.images_per_s / limit.images_per_s
        return rate


def diagnose(limit: Rate, loaders: list[Rate], e2e: Rate, cheaper: Rate | None, *, recipe,
             auto_bf16: bool = False) -> tuple[str, list[str]]:
    """The bottleneck in a sentence, and what to change (pure arithmetic on the rates). ``auto_bf16``:
    ``runtime.precision = "auto"`` would train in bf16 on this device (a CUDA GPU with native bf16)."""
    own = loaders[0]
    advice: list[str] = []
    wait = e2e.extra.get("data_wait_frac", 0.0)
    if own.images_per_s < limit.images_per_s:
        bottleneck = (f"the loader: {own.extra['kind']} gives {own.images_per_s:.0f} images/s, the model could take "
                      f"{limit.images_per_s:.0f} (end to end waits for data {100 * wait:.0f} % of the time)")
        better = [r for r in loaders[1:] if r.images_per_s > own.images_per_s]
        if better:
            best = max(better, key=lambda r: r.images_per_s)
            advice.append(f"set data.loader = \"{best.extra['kind']}\" ({best.images_per_s:.0f} images/s alone)")
        if own.extra["kind"] in ("standard", "cached"):
            cores = os.cpu_count() or 1
            workers = resolve_workers(recipe.data)[0]
            if workers < cores:
                advice.append(f"more loader workers (data.workers = {workers}; this machine has {cores} cores; "
                              "data.workers = \"auto\" takes one per core but one)")
            advice.append("or a smaller test-time resize / cheaper augmentation")
    else:
        bottleneck = (f"the model step: {limit.images_per_s:.0f} images/s on batches in memory; the {own.extra['kind']} "
                      f"loader alone gives {own.images_per_s:.0f}")
        if e2e.ratio is not None and e2e.ratio < 0.9:
            advice.append(f"end to end reaches {e2e.ratio:.2f}x the limit although the loader is faster: the loader "
                          "and the step share the CPU cores (fewer data.workers may help)")
    if cheaper is not None and cheaper.ratio is not None and cheaper.ratio > 1.1:
        # "auto" picks bf16 on a CUDA GPU with native bf16 only: elsewhere (this CPU) name bf16 itself
        which = ("runtime.precision = \"auto\" (bf16 on this GPU, fp32 where there is none)" if auto_bf16
                 else "runtime.precision = \"bf16\"")
        advice.append(f"bf16 autocast + channels_last is {cheaper.ratio:.2f}x the step rate here: set "
                      f"{which} and runtime.channels_last = true if this recipe's precision "
                      "is not part of what it reproduces (check the accuracy on a short run)")
    if not advice:
        advice.append("nothing obvious: end to end is close to the limit")
    return bottleneck, advice


def render(rep: BenchReport) -> str:
    s = rep.setup
    lines = [f"{rep.recipe}: {s['arch']}, batch {s['batch_size']}, {s['train_size']} px, {s['device']} "
             f"({s['threads']} threads), {s['precision']}, {'channels_last' if s['channels_last'] else 'NCHW'}, "
             f"loader {s['loader']} ({s['loader_reason']}), {s['workers']} workers",
             f"{'':44}{'images/s':>10}  {'x limit':>8}"]

    def row(label: str, r: Rate, tail: str = "") -> None:
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
        lines.append(f"{label:44}{r.images_per_s:>10.0f}  {ratio:>8}  {tail}".rstrip())

    row("limit: the step on batches in memory", rep.limit, f"{rep.limit.images} images in {rep.limit.seconds:.1f} s")
    for r in rep.loaders:
        kind = r.extra["kind"]
        row(f"loader alone: {kind}{' (the recipe' + chr(39) + 's)' if r.note else ''}", r,
            f"first batch after {r.extra['first_batch_s']:.2f} s")
    row(f"end to end ({rep.end_to_end.note})", rep.end_to_end,
        f"waiting for data {100 * rep.end_to_end.extra['data_wait_frac']:.0f} % of the time")
    if rep.cheaper is not None:
        row("bf16 autocast + channels_last, in memory", rep.cheaper)
    lines.append(f"bottleneck: {rep.bottleneck}")
    for a in rep.advice:
        lines.append(f"to change: {a}")
    return "\n".join(lines)


def bench_command(args: Namespace) -> int:
    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    args.say = say
    t0 = time.perf_counter()
    rep = _Bench(args).run()
    print(render(rep))
    if args.json:
        from fgbench.recipe import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(rep.to_json(), indent=2) + "\n")
    say(f"({time.perf_counter() - t0:.0f} s)")
    return 0


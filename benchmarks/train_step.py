"""fgbench's training step loop against a bare PyTorch loop, side by side in one process.

Both loops train the same architecture (two copies with identical initial weights) with the same
optimizer (SGD, momentum 0.9), batch, precision and memory format, on the same batches held in
memory on the device, so the only difference is the loop: fgbench's ``train_one_epoch`` (LambdaLR
stepped every iteration, running loss/accuracy sums on the device, a synced step event every
``--log-every`` steps, stop checks, progress hooks) versus the minimal
``forward / backward / step`` a tutorial would write.

The two loops alternate (bare, fgbench, bare, fgbench, ...) for ``--repeats`` rounds of
``--steps`` steps after a warm-up, and the median images/s of each is compared, so that load from
other processes affects both alike. GPU timings use CUDA events around each round.

    python benchmarks/train_step.py                       # resnet8_cifar, 32 px, batch 128, CPU
    python benchmarks/train_step.py --arch resnet18 --cifar-stem --precision bf16 --channels-last
    python benchmarks/train_step.py --json out.json        # also write the numbers
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from fgbench.recipe import ModelConfig  # noqa: E402
from fgbench.train.loop import Engine, EpochStats, StepHooks, train_one_epoch  # noqa: E402
from fgbench.train.losses import ClassificationLoss  # noqa: E402
from fgbench.train.models import build_model  # noqa: E402
from fgbench.train.schedule import LRPlan  # noqa: E402

AMP = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet8_cifar")
    p.add_argument("--cifar-stem", action="store_true")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=40, help="steps per timed round")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before the first round")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--precision", choices=list(AMP), default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave the default)")
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--json", metavar="FILE")
    return p.parse_args()


def main() -> None:
    a = parse()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if a.device == "auto" else a.device))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    cfg = ModelConfig(arch=a.arch, cifar_stem=a.cifar_stem)
    base = build_model(cfg, a.classes).model.to(dev)
    if a.channels_last:
        base = base.to(memory_format=torch.channels_last)
    n_batches = 8
    xs = [torch.randn(a.batch, 3, a.size, a.size, device=dev) for _ in range(n_batches)]
    ys = [torch.randint(0, a.classes, (a.batch,), device=dev) for _ in range(n_batches)]
    if a.channels_last:
        xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
    amp = AMP[a.precision]

    def autocast():
        return torch.autocast(dev.type, dtype=amp) if amp is not None else torch.autocast(dev.type, enabled=False)

    # ---- the bare loop
    bare_model = copy.deepcopy(base)
    bare_fwd = torch.compile(bare_model) if a.compile else bare_model
    bare_opt = torch.optim.SGD(bare_model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    bare_scaler = torch.amp.GradScaler(dev.type) if a.precision == "fp16" else None

    def bare(steps: int, offset: int) -> None:
        for i in range(steps):
            x, y = xs[(offset + i) % n_batches], ys[(offset + i) % n_batches]
            with autocast():
                loss = F.cross_entropy(bare_fwd(x), y)
            bare_opt.zero_grad(set_to_none=True)
            if bare_scaler is not None:
                bare_scaler.scale(loss).backward()
                bare_scaler.step(bare_opt)
                bare_scaler.update()
            else:
                loss.backward()
                bare_opt.step()

    # ---- fgbench's loop
    fg_model = copy.deepcopy(base)
    fg_opt = torch.optim.SGD(fg_model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    plan = LRPlan(kind="cosine", peak=0.01, total_steps=10**9, steps_per_epoch=10**6)
    engine = Engine(model=fg_model, forward=torch.compile(fg_model) if a.compile else fg_model, optimizer=fg_opt,
                    scheduler=torch.optim.lr_scheduler.LambdaLR(fg_opt, plan.factor),
                    criterion=ClassificationLoss(a.classes), device=dev, amp_dtype=amp,
                    scaler=torch.amp.GradScaler(dev.type) if a.precision == "fp16" else None,
                    channels_last=a.channels_last)
    hooks = StepHooks(log_every=a.log_every)

    def fgbench(steps: int, offset: int) -> None:
        batches = ((xs[(offset + i) % n_batches], ys[(offset + i) % n_batches], ()) for i in range(steps))
        train_one_epoch(engine, batches, epoch=1, num_batches=steps, stats=EpochStats(), hooks=hooks)

    def timed(fn, steps: int, offset: int) -> float:
        if dev.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn(steps, offset)
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1000
        t = time.perf_counter()
        fn(steps, offset)
        return time.perf_counter() - t

    bare_model.train()
    timed(bare, a.warmup, 0)
    timed(fgbench, a.warmup, 0)
    rates = {"bare": [], "fgbench": []}
    for r in range(a.repeats):
        for name, fn in (("bare", bare), ("fgbench", fgbench)) if r % 2 == 0 else (("fgbench", fgbench), ("bare", bare)):
            secs = timed(fn, a.steps, r * a.steps)
            rates[name].append(a.steps * a.batch / secs)
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio = med["fgbench"] / med["bare"]
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; {a.arch}{' cifar_stem' if a.cifar_stem else ''} {a.size}px, batch {a.batch}, "
          f"{a.precision}{', channels_last' if a.channels_last else ''}{', compiled' if a.compile else ''}; "
          f"{a.repeats} rounds of {a.steps} steps, median")
    print(f"bare PyTorch loop : {med['bare']:10.1f} images/s   (rounds: {', '.join(f'{v:.0f}' for v in rates['bare'])})")
    print(f"fgbench step loop : {med['fgbench']:10.1f} images/s   (rounds: {', '.join(f'{v:.0f}' for v in rates['fgbench'])})")
    print(f"ratio fgbench/bare: {ratio:.3f}  (target >= 0.97)")
    if a.json:
        Path(a.json).write_text(json.dumps({"device": name, "args": vars(a), "images_per_s": med, "rounds": rates,
                                            "ratio": ratio}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""What checkpoints cost the training loop: written in the background against the old synchronous path.

    python benchmarks/checkpoint_cost.py                  # 5 rounds of 4 epochs, about 3-6 minutes on 2 cores
    python benchmarks/checkpoint_cost.py --rounds 3 --epochs 3 --steps 10

The state is the one of ``benchmarks/end_to_end.py``'s png32 job: a torchvision ResNet-18 for 10
classes (11.2 M parameters) trained by SGD with momentum, batch 32 of 32 x 32 images, in fp32 on the
CPU. Each "epoch" is ``--steps`` real training steps of that model on random batches, then what the
trainer does at the end of an epoch whose model improved: ``best.pt`` (the weights, 45 MB) and
``last.pt`` (weights, momentum buffers, scheduler, RNG..., 90 MB), written atomically with an fsync
through ``fgbench.train.checkpoint.BackgroundSaver``, exactly as ``Trainer._save_best`` and
``Trainer._save_last`` call it. Three ways, taking turns within each round so that load from other
processes hits all alike (none, old, new, then new, none, old, ...):

* ``none``: no checkpoint (the training alone);
* ``old``: the code before this change: the weights copied for ``best.pt`` and again for ``last.pt``
  (the optimizer's buffers pickled live), each serialised, fsynced and renamed in the training thread;
* ``new``: ``BackgroundSaver()`` as the trainer now calls it: one copy of the weights (``last.pt``
  reuses ``best.pt``'s, taken at the same step) and a copy of the optimizer's buffers in the training
  thread, the rest on a background thread while the next epoch trains (the last write is waited for,
  as a run's end waits for it).

It prints each way's median wall time per round, the checkpoints' cost (the median of the per-round
differences from ``none``), new over old, and the time the training thread spent blocked in the
checkpoint calls (the copy, and for ``old`` the write; for ``new`` the wait for a previous write and
for the last one at the end), which is steadier than wall time on a loaded machine. Written under a temporary directory on the disk that
holds ``--dir`` (default: the system's temporary folder), removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torchvision  # noqa: E402

from fgbench.train import checkpoint as C  # noqa: E402


def build(seed: int = 0):
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    return model, opt, sched, x, y


def train_steps(model, opt, sched, x, y, steps: int) -> None:
    model.train()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()


def one_round(way: str, epochs: int, steps: int, folder: Path) -> tuple[float, float]:
    """(wall seconds of the round, seconds the training thread spent in checkpoint calls)."""
    model, opt, sched, x, y = build()
    train_steps(model, opt, sched, x, y, 1)  # momentum buffers exist, as after a real first step
    saver = C.BackgroundSaver()
    t0 = time.perf_counter()
    blocked = 0.0
    for epoch in range(1, epochs + 1):
        train_steps(model, opt, sched, x, y, steps)
        if way == "none":
            continue
        t = time.perf_counter()
        best = C.cpu_state_dict(model)  # Trainer._save_best: a CPU copy kept in memory, then written
        if way == "old":  # the code before: both written in the training thread; last.pt copied the
            # weights again and pickled the optimizer's live buffers (safe only because it was synchronous)
            C.save_checkpoint(folder / "best.pt", {"format": C.FORMAT, "kind": "best", "epoch": epoch,
                                                   "model": best, "ema": None})
            C.save_checkpoint(folder / "last.pt", {"format": C.FORMAT, "kind": "last", "epoch": epoch,
                                                   "model": C.cpu_state_dict(model), "ema": None,
                                                   "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                                   "rng": C.rng_state()})
        else:  # Trainer now: last.pt reuses the best copy of this step and snapshots the optimizer
            saver.save(folder / "best.pt", {"format": C.FORMAT, "kind": "best", "epoch": epoch, "model": best,
                                            "ema": None}, copy=False)
            saver.save(folder / "last.pt", {"format": C.FORMAT, "kind": "last", "epoch": epoch,
                                            "model": C.Frozen(best), "ema": None,
                                            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                            "rng": C.rng_state()})
        blocked += time.perf_counter() - t
    t = time.perf_counter()
    saver.wait()  # a run's end waits for the last write
    blocked += time.perf_counter() - t
    return time.perf_counter() - t0, blocked


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=18, help="training steps per epoch (png32: 600 images / 32)")
    ap.add_argument("--dir", default=None, help="where to write (a temporary folder under it)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="fgbench-ckpt-cost-", dir=args.dir))
    ways = ["none", "old", "new"]
    times: dict[str, list[float]] = {w: [] for w in ways}
    blocked: dict[str, list[float]] = {w: [] for w in ways}
    loads: list[float] = []
    try:
        one_round("new", 1, 2, work)  # warm-up: allocator, oneDNN primitives, the page cache
        size = sum(p.stat().st_size for p in work.glob("*.pt")) / 1e6
        for r in range(args.rounds):
            order = ways[r % 3:] + ways[:r % 3]
            for way in order:
                wall, stall = one_round(way, args.epochs, args.steps, work)
                times[way].append(wall)
                blocked[way].append(stall)
            loads.append(os.getloadavg()[0])
            print(f"round {r + 1}: " + ", ".join(f"{w} {times[w][-1]:.2f} s (blocked {blocked[w][-1]:.2f} s)"
                                                 for w in ways)
                  + f"  (load {loads[-1]:.1f})", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cost = {w: statistics.median(t - n for t, n in zip(times[w], times["none"])) for w in ("old", "new")}
    med = {w: statistics.median(times[w]) for w in ways}
    ratio = statistics.median(n / o for n, o in zip(times["new"], times["old"]))
    stall = {w: statistics.median(blocked[w]) / args.epochs for w in ("old", "new")}
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.rounds} rounds x {args.epochs} epochs x {args.steps} steps; "
          f"{size:.0f} MB of checkpoints per epoch; load average {min(loads):.1f}-{max(loads):.1f}")
    for w in ways:
        print(f"  {w:<5} median {med[w]:7.2f} s per round" + ("" if w == "none" else
              f"   checkpoints cost {cost[w]:6.2f} s per round ({cost[w] / args.epochs:.2f} s per epoch)"))
    print(f"  new / old wall time per round (median of the rounds' ratios): {ratio:.3f}")
    print(f"  the training thread blocked in checkpoint calls, per epoch (median): old {stall['old']:.3f} s, "
          f"new {stall['new']:.3f} s (x{stall['new'] / stall['old']:.3f}; the new path's last write is waited for "
          "at the end and counted)")
    if args.json:
        Path(args.json).write_text(json.dumps({"times": times, "blocked": blocked, "stall_per_epoch": stall,
                                               "cost": cost, "ratio": ratio, "loads": loads,
                                               "mb_per_epoch": size}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

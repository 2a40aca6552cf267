"""Training-step throughput of one model in eager NCHW, channels_last, and torch.compile, side by side.

    python benchmarks/cpu_options.py --arch resnet8_cifar --size 32 --batch 128
    python benchmarks/cpu_options.py --arch resnet18 --size 32 --batch 64 --variants eager channels_last
    python benchmarks/cpu_options.py --arch shufflenet_v2_x0_5 --size 224 --batch 16 --json out.json

What it measures: the recipe options ``runtime.channels_last`` and ``runtime.compile`` on the
training step alone (forward, cross-entropy, backward, SGD with momentum), fp32, on the machine
it runs on (the CPU unless ``--device cuda``). Every variant is a copy of one model with the same
initial weights, fed the same few batches of random data held in memory. The variants take turns
round by round (eager, channels_last, compile, eager, ...) so that load from other processes hits
them alike; each round is ``--steps`` steps after a warm-up (for ``compile`` the warm-up includes
compiling, whose time is printed separately: a short run pays it once, it never pays it back).
Printed: the median images/s of each variant and its ratio to eager NCHW (the baseline), per round
and as the median of the per-round ratios.
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

VARIANTS = ("eager", "channels_last", "compile")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet8_cifar", help="an fgbench model.arch (torchvision names included)")
    p.add_argument("--cifar-stem", action="store_true")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=10, help="steps per timed round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant before the first round")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per variant")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)

    import torch
    from torch import nn

    from fgbench.recipe import ModelConfig
    from fgbench.train.models.build import build_model

    dev = torch.device(args.device)
    torch.manual_seed(0)
    base = build_model(ModelConfig(arch=args.arch, cifar_stem=args.cifar_stem), args.classes).model.to(dev)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.batch, 3, args.size, args.size, generator=g).to(dev),
                torch.randint(0, args.classes, (args.batch,), generator=g).to(dev)) for _ in range(4)]
    loss_fn = nn.CrossEntropyLoss()

    def make(variant: str):
        model = copy.deepcopy(base).train()
        cl = variant == "channels_last"
        if cl:
            model = model.to(memory_format=torch.channels_last)
        fwd = torch.compile(model) if variant == "compile" else model
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        state = {"i": 0}

        def step():
            x, y = batches[state["i"] % len(batches)]
            state["i"] += 1
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = loss_fn(fwd(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        return step

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    steps, warm = {}, {}
    for v in args.variants:
        steps[v] = make(v)
        t = time.perf_counter()
        for _ in range(args.warmup):
            steps[v]()
        sync()
        warm[v] = time.perf_counter() - t
    rates: dict[str, list[float]] = {v: [] for v in args.variants}
    for _ in range(args.repeats):
        for v in args.variants:
            t = time.perf_counter()
            for _ in range(args.steps):
                steps[v]()
            sync()
            rates[v].append(args.steps * args.batch / (time.perf_counter() - t))
    print(f"{args.arch}{' (cifar stem)' if args.cifar_stem else ''}, {args.size} px, batch {args.batch}, "
          f"{args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.repeats} rounds x {args.steps} steps")
    out = {}
    for v in args.variants:
        ratios = [r / e for r, e in zip(rates[v], rates["eager"])] if "eager" in rates else []
        out[v] = {"images_per_s": rates[v], "median": statistics.median(rates[v]), "warmup_s": warm[v],
                  "ratio_per_round": ratios, "median_ratio": statistics.median(ratios) if ratios else None}
        per = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"  {v:14s} median {out[v]['median']:8.1f} img/s   warm-up {warm[v]:6.1f} s"
              + (f"   vs eager: x{out[v]['median_ratio']:.3f} (rounds {per})" if ratios and v != "eager" else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "variants": out}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

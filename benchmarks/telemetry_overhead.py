"""What telemetry costs a training step: the step clock and the health sampler.

* **The step clock** (``fgbench.train.telemetry.StepClock``): ``train_one_epoch`` on the same
  in-memory batches, once with the real clock and once with a clock whose methods do nothing,
  alternating (off, on, off, on, ...) for ``--repeats`` rounds of ``--steps`` steps, so that load
  from other processes hits both alike; the cost is the difference of the median step times.
  Under load the rounds' spread is far larger than the clock's cost, so the clock's own calls are
  also timed directly: a step's worth of them (``batch``, four ``mark``, ``end_step``, and a
  ``window`` every ``--log-every`` steps) repeated 20,000 times, over the median step time.
* **The sampler** (``fgbench.train.telemetry.Sampler``): the time one sample takes (psutil on the
  trainer, its workers and the machine; NVML on CUDA), over the sampling interval, is the share of
  one core it uses; against a step that uses ``torch.get_num_threads()`` cores it costs at most
  that share of the step time (the sampler holds the GIL only while it samples).

    python benchmarks/telemetry_overhead.py                      # resnet8_cifar 32 px batch 64 (quickstart)
    python benchmarks/telemetry_overhead.py --arch resnet18 --cifar-stem --batch 32
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from fgbench.recipe import ModelConfig  # noqa: E402
from fgbench.train import telemetry  # noqa: E402
from fgbench.train.loop import Engine, EpochStats, StepHooks, train_one_epoch  # noqa: E402
from fgbench.train.losses import ClassificationLoss  # noqa: E402
from fgbench.train.models import build_model  # noqa: E402


class NoClock(telemetry.StepClock):
    """The loop's calls, doing nothing: the step without telemetry."""

    def begin(self) -> None: ...
    def batch(self) -> None: ...
    def mark(self) -> None: ...
    def end_step(self) -> None: ...
    def window(self) -> dict: return {}
    def epoch(self) -> dict: return {}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet8_cifar")
    p.add_argument("--cifar-stem", action="store_true")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="steps per timed round")
    p.add_argument("--repeats", type=int, default=7, help="rounds of each")
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--samples", type=int, default=50, help="health samples timed")
    p.add_argument("--json", metavar="FILE")
    return p.parse_args()


def main() -> None:
    a = parse()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(ModelConfig(arch=a.arch, cifar_stem=a.cifar_stem), 10).model.to(dev)
    if dev.type == "cpu" and a.arch in ("resnet8_cifar", "resnet20_cifar", "small_cnn"):
        model = model.to(memory_format=torch.channels_last)  # as runtime.channels_last = "auto" does
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    eng = Engine(model=model, forward=model, optimizer=opt,
                 scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0),
                 criterion=ClassificationLoss(10, 0.0, "torch"), device=dev,
                 channels_last=dev.type == "cpu" and a.arch in ("resnet8_cifar", "resnet20_cifar", "small_cnn"))
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(a.batch, 3, a.size, a.size, generator=g).to(dev),
                torch.randint(0, 10, (a.batch,), generator=g).to(dev), ()) for _ in range(4)]

    def rnd(clock) -> float:
        feed = (batches[i % 4] for i in range(a.steps))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_one_epoch(eng, feed, epoch=1, num_batches=a.steps, stats=EpochStats(),
                        hooks=StepHooks(log_every=a.log_every, clock=clock))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / a.steps

    rnd(NoClock(dev))  # warm-up
    off, on = [], []
    for _ in range(a.repeats):
        off.append(rnd(NoClock(dev)))
        on.append(rnd(telemetry.StepClock(dev)))
    m_off, m_on = statistics.median(off), statistics.median(on)

    clock = telemetry.StepClock(dev)
    clock.begin()
    n = 20_000
    t0 = time.perf_counter()
    for i in range(n):
        clock.batch()
        clock.mark()
        clock.mark()
        clock.mark()
        clock.mark()
        if i % a.log_every == 0:
            clock.window()
        clock.end_step()
    clock_direct = (time.perf_counter() - t0) / n

    sampler = telemetry.Sampler(lambda *args, **kw: None, dev, lambda: (1, 0), every_s=3600)
    sampler.start()
    times = []
    for _ in range(a.samples):
        t0 = time.perf_counter()
        sampler.sample()
        times.append(time.perf_counter() - t0)
    sampler.stop()
    per_sample = statistics.median(times)
    sampler_share = per_sample / telemetry.SAMPLE_EVERY_S  # of one core
    # against a step that keeps torch.get_num_threads() cores busy
    sampler_vs_step = sampler_share / max(1, torch.get_num_threads())

    out = {
        "arch": a.arch, "size": a.size, "batch": a.batch, "device": str(dev), "threads": torch.get_num_threads(),
        "step_ms_without": 1000 * m_off, "step_ms_with": 1000 * m_on,
        "clock_cost_frac": (m_on - m_off) / m_off,
        "clock_us_per_step": 1e6 * clock_direct, "clock_direct_frac": clock_direct / m_off,
        "clock_rounds_ms": {"without": [1000 * x for x in off], "with": [1000 * x for x in on]},
        "sample_ms": 1000 * per_sample, "sample_every_s": telemetry.SAMPLE_EVERY_S,
        "sampler_cost_frac": sampler_vs_step,
    }
    print(f"{a.arch} {a.size}px batch {a.batch} on {dev} ({out['threads']} threads), "
          f"{a.repeats} alternated rounds of {a.steps} steps")
    print(f"  step without telemetry  {out['step_ms_without']:.2f} ms (median)")
    print(f"  step with the clock     {out['step_ms_with']:.2f} ms (median): "
          f"{100 * out['clock_cost_frac']:+.2f} % (noise: rounds spread "
          f"{1000 * (max(off) - min(off)):.1f} ms without)")
    print(f"  the clock's own calls   {out['clock_us_per_step']:.1f} us per step: "
          f"{100 * out['clock_direct_frac']:.4f} % of the step")
    print(f"  one health sample       {out['sample_ms']:.2f} ms every {telemetry.SAMPLE_EVERY_S:g} s: "
          f"{100 * sampler_vs_step:.3f} % of the step's CPU")
    print(f"  total (direct)          {100 * (out['clock_direct_frac'] + sampler_vs_step):.3f} % (target <= 1 %)")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Monitor cost: open a run with a million step events, then time redraws of the live view.

    python benchmarks/monitor.py [--steps 1000000] [--size 120x40] [--redraws 40] [--keep DIR]

Writes a synthetic run directory (one ``step`` event per optimizer step, an ``eval`` and an
``epoch`` event every 1000 steps, exactly the trainer's JSON encoding), then measures:

* **open**: a fresh :class:`fgbench.runmodel.RunModel` reading the whole run (what the run
  list and the monitor do when the TUI starts or re-attaches), best and median of 3;
* **poll**: reading 100 newly appended step events (the steady state while a run goes on);
* **redraw**: :meth:`RunView.show` with a new snapshot plus plotext building all four plots'
  canvases, in a headless Textual app of the given size, with new events appended between
  redraws so that no plot can skip its work; mean and worst.

Targets (issue 4): open < 1 s, redraw < 50 ms. No torch is imported.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fgbench.rundir import events as metrics  # noqa: E402
from fgbench.runmodel import RunModel  # noqa: E402


def write_run(run_dir: Path, steps: int, steps_per_epoch: int = 1000) -> int:
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = 1_700_000_000.0
    out = [metrics.encode(metrics.make_event(
        "run_started", run_id=run_dir.name, recipe={"name": "bench", "data": {"dataset": "cub200"},
                                                    "model": {"arch": "resnet50"}},
        class_names=["a"], device="cuda", host="bench", pid=4_999_999, steps_per_epoch=steps_per_epoch,
        total_epochs=steps // steps_per_epoch, total_steps=steps, time=t0))]
    for s in range(1, steps + 1):
        e = (s - 1) // steps_per_epoch + 1
        t = t0 + s * 0.05
        out.append(metrics.encode(metrics.make_event(
            "step", epoch=e, step=s, loss=2.0 / (1 + s / 1e4) + 0.1 * ((s * 7919) % 13) / 13,
            lr=0.1 * (1 - s / steps), images_per_s=1200.0 + (s % 17), time=t)))
        if s % steps_per_epoch == 0:
            val = 80.0 * (1 - 1 / (1 + e / 50))
            out.append(metrics.encode(metrics.make_event("eval", epoch=e, step=s, split="val", model="raw",
                                                         top1=val, time=t)))
            out.append(metrics.encode(metrics.make_event("eval", epoch=e, step=s, split="test", model="raw",
                                                         top1=val - 1, time=t)))
            out.append(metrics.encode(metrics.make_event("epoch", epoch=e, step=s, train_loss=1.0,
                                                         train_top1=val + 5, lr=0.1, time=t)))
    path = run_dir / metrics.METRICS_FILE
    path.write_text("".join(out))
    return path.stat().st_size


def append_steps(run_dir: Path, first: int, n: int) -> None:
    with metrics.MetricsWriter(run_dir / metrics.METRICS_FILE) as w:
        for s in range(first, first + n):
            w.emit("step", epoch=s // 1000 + 1, step=s, loss=0.5 + (s % 5) / 50, lr=0.01, images_per_s=1100.0)


def bench_open(run_dir: Path) -> tuple[list[float], RunModel]:
    times = []
    model = None
    for _ in range(3):
        model = RunModel(run_dir)
        t = time.perf_counter()
        model.update()
        times.append(time.perf_counter() - t)
    return times, model  # type: ignore[return-value]


async def bench_redraw(run_dir: Path, model: RunModel, size: tuple[int, int], redraws: int) -> list[float]:
    from textual.app import App, ComposeResult

    from fgbench.tui.plots import MetricPlot
    from fgbench.tui.widgets.run_view import RunView

    class Bench(App):
        def compose(self) -> ComposeResult:
            yield RunView()

    app = Bench()
    times: list[float] = []
    async with app.run_test(size=size) as pilot:
        view = app.query_one(RunView)
        await pilot.pause()
        step = model.step + 1
        for i in range(redraws + 3):
            append_steps(run_dir, step, 50)
            step += 50
            model.update()
            t = time.perf_counter()
            view.show(model.snapshot())
            for plot in view.query(MetricPlot):
                plot.plot.render()  # plotext builds the canvas here
            elapsed = time.perf_counter() - t
            if i >= 3:  # the first draws warm caches
                times.append(elapsed)
            await pilot.pause()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--size", default="120x40")
    ap.add_argument("--redraws", type=int, default=40)
    ap.add_argument("--keep", metavar="DIR", help="write the run here and keep it")
    args = ap.parse_args()
    width, height = (int(x) for x in args.size.split("x"))
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fgbench-monitor-"))
    run_dir = base / "20250101-000000-bench"
    t = time.perf_counter()
    size = write_run(run_dir, args.steps)
    print(f"wrote {args.steps:,} step events, {size / 1e6:.0f} MB, in {time.perf_counter() - t:.1f} s")

    opens, model = bench_open(run_dir)
    snap = model.snapshot()
    print(f"open: best {min(opens) * 1000:.0f} ms, median {statistics.median(opens) * 1000:.0f} ms "
          f"({snap.events:,} events parsed, history sampled: {snap.sampled}, "
          f"{len(snap.series['loss'][0])} loss points, {len(snap.series['val_top1'][0])} val points)")

    append_steps(run_dir, model.step + 1, 100)
    t = time.perf_counter()
    model.update()
    print(f"poll of 100 new events: {(time.perf_counter() - t) * 1000:.1f} ms")

    redraws = asyncio.run(bench_redraw(run_dir, model, (width, height), args.redraws))
    print(f"redraw at {width}x{height}: mean {statistics.mean(redraws) * 1000:.1f} ms, "
          f"worst {max(redraws) * 1000:.1f} ms over {len(redraws)} redraws")
    if not args.keep:
        import shutil

        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

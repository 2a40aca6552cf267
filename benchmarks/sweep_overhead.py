"""Scheduling overhead per sweep point: from the moment a point may start to its run's first step.

    python benchmarks/sweep_overhead.py [--points 4] [--no-slurm]

Three ways to run the same tiny CPU recipe (a ResNet-8 on a generated 3-class folder data set of
16 px images, 1 epoch, a step event at every step), alternated so that machine load hits all alike:

* **baseline**: ``fgbench run`` started directly: time from ``Popen`` to the run's first ``step``
  event (Python, torch import, data, model: the cost every run pays, with or without a sweep);
* **local**: ``fgbench sweep --launcher local`` of ``--points`` points; per point, from when it may
  start (the sweep's start for the first, the previous run's ``run_finished`` for the others: the
  points go one after another) to its first ``step`` event;
* **slurm**: the same sweep with ``--launcher slurm --max-parallel 1`` on the cluster SLURM's
  client reaches (the one-node test cluster of ``.ci/slurm-up``, or a real one); per point, from the
  submission (the first) or the previous point's ``run_finished`` to its first ``step``: sbatch,
  the scheduler's decision, the job's start, submitit's unpickling and the ``fgbench run``.

Prints the median seconds of each and the ratio to the baseline. The times come from the runs'
own event timestamps (same clock, one machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fgbench import metrics  # noqa: E402


def make_data(root: Path) -> None:
    import random

    from PIL import Image

    rng = random.Random(0)
    for split, n in {"train": 8, "test": 4}.items():
        for name, rgb in {"r": (200, 40, 40), "g": (40, 200, 40), "b": (40, 40, 200)}.items():
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                im = Image.new("RGB", (16, 16))
                im.putdata([tuple(max(0, min(255, c + rng.randint(-30, 30))) for c in rgb) for _ in range(256)])
                im.save(d / f"{i}.png")


def recipe_text(data: Path, points: int) -> str:
    lrs = ", ".join(str(0.1 + 0.01 * i) for i in range(points))
    return textwrap.dedent(f"""
        name = "bench"
        [data]
        dataset = "folder"
        root = "{data}"
        train_size = 16
        test_size = 16
        test_crop = "resize"
        batch_size = 8
        val_fraction = 0.25
        workers = 0
        [model]
        arch = "resnet8_cifar"
        [schedule]
        name = "constant"
        epochs = 1
        [runtime]
        device = "cpu"
        log_every_steps = 1
        [sweep]
        grid = {{ "optim.lr" = [{lrs}] }}
        [sweep.slurm]
        cpus_per_run = 1
        max_parallel = 1
        time_limit_min = 10
        """)


def first_step(run_dir: Path) -> float:
    ev = metrics.read_events(run_dir / metrics.METRICS_FILE)
    return min(e["time"] for e in ev if e["event"] == "step")


def finished(run_dir: Path) -> float:
    ev = metrics.read_events(run_dir / metrics.METRICS_FILE)
    return max(e["time"] for e in ev if e["event"] == "run_finished")


def baseline(recipe: Path, root: Path, env: dict) -> float:
    run_dir = Path(tempfile.mkdtemp(prefix="base-", dir=root))
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "fgbench", "run", str(recipe), "--run-dir", str(run_dir), "--progress", "none"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return first_step(run_dir) - t0


def sweep_points(recipe: Path, root: Path, env: dict, launcher: str, tag: str) -> list[float]:
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "fgbench", "sweep", str(recipe), "--launcher", launcher, "--tag", tag,
                    "--runs-root", str(root), *(["--wait"] if launcher == "slurm" else [])],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    state = json.loads((root / "sweeps" / tag / "sweep.json").read_text())
    dirs = [Path(p["run_dir"]) for p in state["points"]]
    out, ready = [], t0
    for d in dirs:
        out.append(first_step(d) - ready)
        ready = finished(d)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-slurm", action="store_true")
    args = ap.parse_args()
    use_slurm = not args.no_slurm and shutil.which("sbatch") is not None
    tmp = Path(tempfile.mkdtemp(prefix="fgbench-sweep-bench-"))
    try:
        make_data(tmp / "data")
        recipe = tmp / "r.toml"
        recipe.write_text(recipe_text(tmp / "data", args.points))
        (tmp / "runs").mkdir()
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", FGBENCH_HOME=str(tmp / "home"))
        res: dict[str, list[float]] = {"baseline": [], "local": [], "slurm": []}
        for r in range(args.rounds):
            for _ in range(args.points):
                res["baseline"].append(baseline(recipe, tmp / "runs", env))
            res["local"] += sweep_points(recipe, tmp / "runs", env, "local", f"local{r}")
            if use_slurm:
                res["slurm"] += sweep_points(recipe, tmp / "runs", env, "slurm", f"slurm{r}")
        base = statistics.median(res["baseline"])
        print(f"{args.rounds} rounds x {args.points} points; median seconds from 'may start' to the first step")
        print("| how | points | median s | min s | max s | ratio to a bare `fgbench run` |")
        print("|---|---|---|---|---|---|")
        for k, v in res.items():
            if v:
                print(f"| {k} | {len(v)} | {statistics.median(v):.2f} | {min(v):.2f} | {max(v):.2f} | "
                      f"{statistics.median(v) / base:.2f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

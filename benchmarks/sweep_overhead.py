"""Scheduling overhead per sweep point: from submission to the run's first step.

    python benchmarks/sweep_overhead.py [--rounds 4] [--no-slurm]

The same tiny CPU run (a ResNet-8 on a generated 3-class folder data set of 16 px images, one
epoch, a ``step`` event at every step) started three ways, taking turns so that machine load hits
all alike, each timed from just before the command is started to the run's first ``step`` event:

* **baseline**: ``fgbench run`` itself (Python, the torch import, the data, the model: what every
  run pays, in a sweep or not);
* **local**: ``fgbench sweep --launcher local`` of one point (the sweep's own start: reading and
  validating the plan, the state file, the rundir supervisor, then the same ``fgbench run``);
* **slurm**: ``fgbench sweep --launcher slurm`` of one point on the cluster SLURM's client reaches
  (the one-node cluster of ``.ci/slurm-up``, or a real one): the sweep's start, submitit writing
  the job, ``sbatch``, the scheduler's decision, the job's start on the node, submitit unpickling
  the job, then the same ``fgbench run``.

Prints each one's median and spread and the overhead per point (median minus the baseline's
median). Times come from the runs' own event timestamps and this process's clock (one machine).
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

from fgbench.rundir import events as metrics  # noqa: E402


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
    lrs = ", ".join(str(round(0.1 + 0.01 * i, 4)) for i in range(points))
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


def baseline(recipe: Path, root: Path, env: dict) -> float:
    run_dir = Path(tempfile.mkdtemp(prefix="base-", dir=root))
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "fgbench", "run", str(recipe), "--run-dir", str(run_dir), "--progress", "none"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return first_step(run_dir) - t0


def sweep_one(recipe: Path, root: Path, env: dict, launcher: str, tag: str) -> float:
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "fgbench", "sweep", str(recipe), "--launcher", launcher, "--tag", tag,
                    "--runs-root", str(root), *(["--wait"] if launcher == "slurm" else [])],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = json.loads((root / "sweeps" / tag / "sweep.json").read_text())
    return first_step(Path(state["points"][0]["run_dir"])) - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--no-slurm", action="store_true")
    args = ap.parse_args()
    use_slurm = not args.no_slurm and shutil.which("sbatch") is not None
    tmp = Path(tempfile.mkdtemp(prefix="fgbench-sweep-bench-"))
    try:
        make_data(tmp / "data")
        recipe = tmp / "r.toml"
        recipe.write_text(recipe_text(tmp / "data", 1))
        (tmp / "runs").mkdir()
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", FGBENCH_HOME=str(tmp / "home"))
        res: dict[str, list[float]] = {"baseline": [], "local": [], "slurm": []}
        for r in range(args.rounds):
            res["baseline"].append(baseline(recipe, tmp / "runs", env))
            res["local"].append(sweep_one(recipe, tmp / "runs", env, "local", f"local{r}"))
            if use_slurm:
                res["slurm"].append(sweep_one(recipe, tmp / "runs", env, "slurm", f"slurm{r}"))
        base = statistics.median(res["baseline"])
        print(f"{args.rounds} rounds; seconds from starting the command to the run's first step")
        print("| how | runs | median s | min s | max s | overhead per point (median - baseline) | ratio |")
        print("|---|---|---|---|---|---|---|")
        for k, v in res.items():
            if v:
                m = statistics.median(v)
                print(f"| {k} | {len(v)} | {m:.2f} | {min(v):.2f} | {max(v):.2f} | {m - base:+.2f} s | {m / base:.2f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

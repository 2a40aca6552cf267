"""Cost of each tracker per logged step, against the bare metrics file.

    python benchmarks/trackers.py [--events 2000] [--rounds 3]

What a run does at every logged step is one ``step`` event: written to ``metrics.jsonl`` (the
baseline: ``fgbench.rundir.events.MetricsWriter``) and, with ``[tracking]``, handed to each tracker
through ``fgbench.tracking.EventFanout``. Each round opens a fresh run directory in a temporary
folder, sends ``run_started`` (with a real resolved recipe, so MLflow logs its parameters and W&B its
config, as in a run), then ``--events`` step events with the fields the trainer writes, then
``run_finished`` and closes; the step events are timed (per event), and separately the end (``run_finished``, flushing what a
tracker queued, closing). Configurations: bare file,
+tensorboard (its event-file writer), +mlflow (SQLite store in the temporary folder), +wandb
(offline mode). Prints microseconds per step event (median of the rounds) and the ratio to the bare
file; W&B and MLflow hand work to a background process or thread, so their per-step cost here is
what the training loop waits for, not their total work.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fgbench import tracking  # noqa: E402
from fgbench.rundir import events as metrics  # noqa: E402
from fgbench.recipe import TrackingConfig, recipe_to_dict, validate_recipe  # noqa: E402


END: dict[str, list[float]] = {"bare": [], "tensorboard": [], "mlflow": [], "wandb": []}
"""Seconds spent in run_finished + close (flushing what a tracker queued), per round."""


def one_round(kind: str, n: int, base: Path) -> float:
    run_dir = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=base))
    writer: object = metrics.MetricsWriter(run_dir / metrics.METRICS_FILE)
    if kind != "bare":
        cfgs = {"tensorboard": {"tensorboard": {}}, "mlflow": {"mlflow": {"tracking_uri": f"sqlite:///{base / 'ml.db'}"}},
                "wandb": {"wandb": {"mode": "offline"}}}[kind]
        configs = tracking.resolve_tracking(TrackingConfig.model_validate(cfgs), {})
        listeners = tracking.build_trackers(configs, run_dir=run_dir, runs_root=base, sweep_tag=None)
        writer = tracking.EventFanout(writer, listeners)
    recipe = recipe_to_dict(validate_recipe({"name": "bench"}), full=True)
    writer.emit("run_started", run_id=run_dir.name, recipe=recipe, class_names=["a", "b"], device="cpu",  # type: ignore[attr-defined]
                host="h", pid=os.getpid())
    t0 = time.perf_counter()
    for i in range(n):
        writer.emit("step", epoch=1 + i // 100, step=i + 1, loss=2.0 / (i + 1), lr=0.1, images_per_s=1234.5,  # type: ignore[attr-defined]
                    top1=50.0, stage=0)
    dt = time.perf_counter() - t0
    t1 = time.perf_counter()
    writer.emit("run_finished", status="completed", summary={"best": {"raw": {"val_top1": 50.0}}}, exit_code=0)  # type: ignore[attr-defined]
    writer.close()  # type: ignore[attr-defined]
    END[kind].append(time.perf_counter() - t1)
    for listener in getattr(writer, "listeners", []):
        if getattr(listener, "failed", False):
            raise SystemExit(f"{kind}: the tracker failed; see above")
    return dt / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", action="append", choices=["tensorboard", "mlflow", "wandb"], help="measure only these")
    args = ap.parse_args()
    os.environ.setdefault("WANDB_SILENT", "true")
    kinds = ["bare", *(args.only or ["tensorboard", "mlflow", "wandb"])]
    times: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for k in kinds:  # warm-up: imports, database creation
            one_round(k, 10, base)
        for _ in range(args.rounds):
            for k in kinds:
                times[k].append(one_round(k, args.events, base))
    bare = statistics.median(times["bare"])
    print(f"{args.events} step events x {args.rounds} rounds (median)")
    print("| configuration | us per step event | ratio to the bare file | s at the end (run_finished, flush, close) |")
    print("|---|---|---|---|")
    for k in kinds:
        m = statistics.median(times[k])
        end = statistics.median(END[k][-args.rounds:])
        print(f"| {'bare metrics file' if k == 'bare' else 'file + ' + k} | {m * 1e6:.1f} | {m / bare:.2f} | {end:.2f} |")


if __name__ == "__main__":
    main()

"""Run directories made by hand (events through MetricsWriter, summary.json in the trainer's
contract), so that the runs commands are tested on exact, known numbers. Tests on runs produced by
real trainings live in test_real_runs.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fgbench import rundir

from fgbench.rundir import events as metrics
from fgbench.recipe import apply_overrides, dumps_recipe, validate_recipe

REPO = Path(__file__).resolve().parents[2]


def make_run(
    root: Path,
    name: str = "toy",
    *,
    sets: list[str] | None = None,
    epochs: int = 3,
    total_epochs: int | None = None,
    val: list[float] | None = None,
    test: list[float] | None = None,
    ema_val: list[float] | None = None,
    ema_test: list[float] | None = None,
    status: str | None = "completed",
    classes: list[str] | None = None,
    confusion: list[list[int]] | None = None,
    final_sizes: dict[str, dict[str, float | None]] | None = None,
    sweep_tag: str | None = None,
    stamp: float = 1_700_000_000.0,
    steps_per_epoch: int = 4,
) -> Path:
    """A finished (or running/failed) run directory with ``epochs`` epoch events."""
    recipe = validate_recipe(apply_overrides({"name": name}, sets or []))
    run_dir = rundir.create_run_dir(name, root, now=stamp)
    (run_dir / rundir.RECIPE_FILE).write_text(dumps_recipe(recipe, full=True), encoding="utf-8")
    info: dict[str, Any] = {"argv": ["fgbench", "run"], "pid": 999_999_999}
    if sweep_tag:
        info["sweep_tag"] = sweep_tag
    rundir.write_run_info(run_dir, **info)
    classes = classes or ["alpha", "beta", "gamma"]
    val = val or [50.0 + 10 * e for e in range(epochs)]
    test = test or [48.0 + 10 * e for e in range(epochs)]
    t0 = stamp
    with metrics.MetricsWriter(run_dir / metrics.METRICS_FILE) as w:
        w.emit("run_started", run_id=run_dir.name, recipe=recipe.model_dump(mode="json"), class_names=classes,
               device="cpu", host="test", pid=999_999_999, total_epochs=total_epochs or epochs, time=t0)
        step = 0
        for e in range(1, epochs + 1):
            for _ in range(steps_per_epoch):
                step += 1
                w.emit("step", epoch=e, step=step, loss=2.0 / step, lr=0.1 / e, images_per_s=100.0, time=t0 + step)
            fields = dict(epoch=e, step=step, train_loss=2.0 / e, train_top1=40.0 + 10 * e, lr=0.1 / e,
                          val_top1=val[e - 1], test_top1=test[e - 1], test_top5=min(100.0, test[e - 1] + 20),
                          images_per_s=100.0, epoch_time=1.0)
            if ema_val:
                fields.update(ema_val_top1=ema_val[e - 1], ema_test_top1=ema_test[e - 1])
            w.emit("epoch", time=t0 + step + 0.5, **fields)
            w.emit("eval", epoch=e, step=step, split="test", model="raw", top1=test[e - 1], time=t0 + step + 0.5)
        for size, by in (final_sizes or {}).items():
            for model, top1 in by.items():
                if top1 is not None:
                    w.emit("final_eval", model=model, test_size=int(size), top1=top1, time=t0 + step + 1)
        if status is not None and status != "running":
            w.emit("run_finished", status=status, time=t0 + step + 2, **({"error": "boom"} if status == "failed" else {}))
    best_i = max(range(epochs), key=lambda i: (val[i], -i))
    summary = {
        "run_id": run_dir.name, "name": name, "status": status or "running", "dataset": recipe.data.dataset,
        "arch": recipe.model.arch, "epochs_done": epochs, "total_epochs": total_epochs or epochs,
        "step": epochs * steps_per_epoch, "duration_s": 75.0 * epochs, "images_per_s": 123.4, "peak_mem_mb": None,
        "train_images": 90, "val_images": 10, "test_images": 30, "select_on": "val",
        "best": {"raw": {"epoch": best_i + 1, "val_top1": val[best_i], "test_top1": test[best_i],
                         "test_top5": min(100.0, test[best_i] + 20)},
                 "ema": None},
        "last": {"epoch": epochs, "raw": {"val_top1": val[-1], "test_top1": test[-1], "test_top5": None}, "ema": None},
        "final_test_sizes": final_sizes or {}, "skipped_images": 0,
    }
    if ema_val:
        bi = max(range(epochs), key=lambda i: (ema_val[i], -i))
        summary["best"]["ema"] = {"epoch": bi + 1, "val_top1": ema_val[bi], "test_top1": ema_test[bi], "test_top5": None}
        summary["last"]["ema"] = {"val_top1": ema_val[-1], "test_top1": ema_test[-1], "test_top5": None}
    rundir.write_json(run_dir / rundir.SUMMARY_FILE, summary)
    rundir.write_json(run_dir / "classes.json", classes)
    if confusion is not None:
        rundir.write_json(run_dir / "confusion.json",
                        {"split": "test", "model": "raw", "class_names": classes, "matrix": confusion})
    return run_dir



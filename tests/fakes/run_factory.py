"""The tests' one factory of run directories made by hand: recipe.toml, run.json, metrics.jsonl
through :class:`fgbench.rundir.events.MetricsWriter` and summary.json in the trainer's contract,
with exact, known numbers and times (no trainer runs), so that what the runs commands and the TUI
show can be checked number by number. Runs produced by real trainings are tested in
tests/runs/test_real_runs.py and tests/train.

* :func:`make_run`: a run named by its start stamp (``create_run_dir``), any recipe (``--set``
  overrides), chosen val/test (and EMA) curves, final-size evals, a confusion matrix, a sweep tag,
  any final status (None: still running).
* :func:`make_fixture_run`: a run with a given id and the TUI's long curves (25 steps an epoch,
  wobbling loss, val/test/EMA evals); ``status`` completed, failed (mid last epoch) or interrupted
  (checkpoint after the second-to-last epoch, no run_finished).
* :func:`fixture_runs`: the four runs of the TUI snapshots and views.

Every run records :data:`DEAD_PID` as its trainer, so none of them is ever "running" by pid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fgbench import rundir
from fgbench.recipe import apply_overrides, dumps_recipe, validate_recipe
from fgbench.rundir import events as metrics

DEAD_PID = 4_999_999  # above Linux's pid_max: never a live process


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
    info: dict[str, Any] = {"argv": ["fgbench", "run"], "pid": DEAD_PID}
    if sweep_tag:
        info["sweep_tag"] = sweep_tag
    rundir.write_run_info(run_dir, **info)
    classes = classes or ["alpha", "beta", "gamma"]
    val = val or [50.0 + 10 * e for e in range(epochs)]
    test = test or [48.0 + 10 * e for e in range(epochs)]
    t0 = stamp
    with metrics.MetricsWriter(run_dir / metrics.METRICS_FILE) as w:
        w.emit("run_started", run_id=run_dir.name, recipe=recipe.model_dump(mode="json"), class_names=classes,
               device="cpu", host="test", pid=DEAD_PID, total_epochs=total_epochs or epochs, time=t0)
        step = 0
        for e in range(1, epochs + 1):
            for _ in range(steps_per_epoch):
                step += 1
                w.emit("step", epoch=e, step=step, loss=2.0 / step, lr=0.1 / e, images_per_s=100.0, time=t0 + step)
            fields = dict(epoch=e, step=step, train_loss=2.0 / e, train_top1=40.0 + 10 * e, lr=0.1 / e,
                          val_top1=val[e - 1], test_top1=test[e - 1], test_topk=min(100.0, test[e - 1] + 20),
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
                         "test_topk": min(100.0, test[best_i] + 20)},
                 "ema": None},
        "last": {"epoch": epochs, "raw": {"val_top1": val[-1], "test_top1": test[-1], "test_topk": None}, "ema": None},
        "final_test_sizes": final_sizes or {}, "skipped_images": 0,
    }
    if ema_val:
        bi = max(range(epochs), key=lambda i: (ema_val[i], -i))
        summary["best"]["ema"] = {"epoch": bi + 1, "val_top1": ema_val[bi], "test_top1": ema_test[bi], "test_topk": None}
        summary["last"]["ema"] = {"val_top1": ema_val[-1], "test_top1": ema_test[-1], "test_topk": None}
    rundir.write_json(run_dir / rundir.SUMMARY_FILE, summary)
    rundir.write_json(run_dir / "classes.json", classes)
    if confusion is not None:
        rundir.write_json(run_dir / "confusion.json",
                        {"split": "test", "model": "raw", "class_names": classes, "matrix": confusion})
    return run_dir


def make_fixture_run(root: Path, run_id: str, *, name: str, dataset: str, arch: str, epochs: int = 4,
                     steps_per_epoch: int = 25, status: str = "completed", seed: float = 0.0,
                     t0: float = 1_700_000_000.0, ema: bool = False, run_seed: int = 0) -> Path:
    """A finished (or stopped) run directory with fixed numbers and times, for snapshots and the
    compare view. ``status``: completed, failed, or interrupted (no run_finished, dead pid).
    ``seed`` shifts the curves; ``run_seed`` is the recipe's ``runtime.seed`` (runs of one recipe
    with different ``run_seed`` are one group); ``ema`` sets ``ema.enabled``."""
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    recipe = validate_recipe({"name": name, "data": {"dataset": dataset}, "model": {"arch": arch},
                              "schedule": {"epochs": epochs}, "ema": {"enabled": ema},
                              "runtime": {"seed": run_seed}})
    (run_dir / rundir.RECIPE_FILE).write_text(dumps_recipe(recipe, full=True))
    rundir.write_json(run_dir / rundir.RUN_INFO_FILE, {"pid": DEAD_PID, "created": t0})
    total = epochs * steps_per_epoch
    t = t0
    best = None
    with metrics.MetricsWriter(run_dir / metrics.METRICS_FILE) as w:
        w.emit("run_started", run_id=run_id, recipe=recipe.model_dump(mode="json"), class_names=["a", "b"],
               device="cuda", host="gpu1", pid=DEAD_PID, train_images=5394, val_images=600, test_images=5794,
               steps_per_epoch=steps_per_epoch, total_epochs=epochs, total_steps=total, time=t)
        w.emit("stage_started", stage=0, name="main", epochs=epochs, first_epoch=1, steps_per_epoch=steps_per_epoch,
               train_size=224, time=t)
        step = 0
        for epoch in range(1, epochs + 1):
            for _ in range(steps_per_epoch):
                step += 1
                t += 0.5
                wobble = 0.15 * ((step * 7919) % 13) / 13
                w.emit("step", epoch=epoch, step=step, loss=3.0 / (1 + (0.04 + seed) * step) + wobble,
                       lr=0.1 * (1 - step / total), images_per_s=900.0 + 40 * ((step * 31) % 7), time=t)
                if status == "failed" and epoch == epochs and step == total - steps_per_epoch // 2:
                    w.emit("log", level="error", message="CUDA out of memory", time=t)
                    w.emit("run_finished", status="failed", error="RuntimeError: CUDA out of memory",
                           traceback="Traceback (most recent call last):\n  File \"loop.py\", line 88\n"
                                     "RuntimeError: CUDA out of memory", exit_code=1, time=t)
                    return run_dir
            val = 30.0 + 40 * (1 - 1 / (1 + (0.5 + seed) * epoch))
            test = val - 1.5
            w.emit("eval", epoch=epoch, step=step, split="val", model="raw", top1=val, time=t)
            w.emit("eval", epoch=epoch, step=step, split="test", model="raw", top1=test, topk=test + 15, time=t)
            w.emit("eval", epoch=epoch, step=step, split="test", model="ema", top1=test + 0.7, time=t)
            if best is None or val > best["val_top1"]:
                best = {"epoch": epoch, "val_top1": round(val, 2), "test_top1": round(test, 2),
                        "test_topk": round(test + 15, 2)}
            w.emit("epoch", epoch=epoch, step=step, train_loss=3.0 / (1 + 0.04 * step), train_top1=val + 5,
                   lr=0.1 * (1 - step / total), val_top1=val, test_top1=test, epoch_time=12.5, time=t)
            if status == "interrupted" and epoch == epochs - 1:
                w.emit("checkpoint", epoch=epoch, step=step, kind="last", path="checkpoints/last.pt", time=t)
                break
        summary = {
            "run_id": run_id, "name": name, "status": status, "dataset": dataset, "arch": arch,
            "epochs_done": epoch, "total_epochs": epochs, "step": step, "duration_s": t - t0,
            "images_per_s": 1000.0, "peak_mem_mb": 2048.0, "train_images": 5394, "val_images": 600,
            "test_images": 5794, "select_on": "val", "best": {"raw": best, "ema": None},
            "last": {"epoch": epoch, "raw": {"val_top1": round(val, 2), "test_top1": round(test, 2),
                                             "test_topk": round(test + 15, 2)}, "ema": None},
            "final_test_sizes": {}, "skipped_images": 0,
        }
        rundir.write_json(run_dir / rundir.SUMMARY_FILE, summary)
        if status == "completed":
            w.emit("run_finished", status="completed", summary=summary, exit_code=0, time=t)
    return run_dir


def fixture_runs(root: Path) -> list[Path]:
    return [
        make_fixture_run(root, "20250301-090000-cub_r50", name="cub_r50", dataset="cub200", arch="resnet50"),
        make_fixture_run(root, "20250302-100000-cub_r50_ema", name="cub_r50_ema", dataset="cub200",
                         arch="resnet50", seed=0.03, ema=True),
        make_fixture_run(root, "20250303-110000-cars_r18", name="cars_r18", dataset="stanford_cars",
                         arch="resnet18", status="failed"),
        make_fixture_run(root, "20250304-120000-cifar_r18", name="cifar_r18", dataset="cifar10",
                         arch="resnet18", status="interrupted"),
    ]


def make_event_run(root: Path, run_id: str, events: list[dict[str, Any]], *, epochs: int = 4,
                   steps_per_epoch: int = 25, live: bool = False, summary: dict[str, Any] | None = None) -> Path:
    """A run directory whose metrics hold ``run_started`` and then exactly ``events`` (each a dict
    with its ``event``; times one second apart unless given), for the monitor's header: what a
    trainer writes around a stop, a long evaluation or a kill, spelled out in the test. ``live``:
    the trainer is this test process (``procs.identity``), so the run is ``running``; otherwise it
    is the dead :data:`DEAD_PID`. ``summary``: ``summary.json``'s fields over a minimal valid one."""
    from fgbench.rundir import procs

    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    recipe = validate_recipe({"name": "header", "schedule": {"epochs": epochs}})
    (run_dir / rundir.RECIPE_FILE).write_text(dumps_recipe(recipe, full=True))
    me = procs.identity() if live else {"pid": DEAD_PID}
    t0 = 1_700_000_000.0
    rundir.write_json(run_dir / rundir.RUN_INFO_FILE, {**me, "created": t0})
    with metrics.MetricsWriter(run_dir / metrics.METRICS_FILE) as w:
        w.emit("run_started", run_id=run_id, recipe=recipe.model_dump(mode="json"), class_names=["a", "b"],
               device="cpu", host=me.get("host", "test"), pid=me["pid"],
               **({"pid_start": me["pid_start"]} if live else {}), steps_per_epoch=steps_per_epoch,
               total_epochs=epochs, total_steps=epochs * steps_per_epoch, time=t0)
        for i, ev in enumerate(events, 1):
            fields = {k: v for k, v in ev.items() if k != "event"}
            fields.setdefault("time", t0 + i)
            w.emit(ev["event"], **fields)
    if summary is not None:
        rundir.write_json(run_dir / rundir.SUMMARY_FILE, {
            "run_id": run_id, "name": "header", "status": "running", "dataset": recipe.data.dataset,
            "arch": recipe.model.arch, "epochs_done": 0, "total_epochs": epochs, "step": 0,
            "select_on": "val", "best": {"raw": None, "ema": None}, **summary})
    return run_dir

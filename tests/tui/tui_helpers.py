"""Helpers of the TUI tests: directories, the fake trainer command, fixed run directories, and
waiting on conditions (never on sleeps)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

from fgbench import rundir

from fgbench.rundir import events as metrics
from fgbench.recipe import dumps_recipe, validate_recipe

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FAKE_TRAINER = HERE / "fake_trainer.py"
DEAD_PID = 4_999_999  # above Linux's pid_max: never a live process

TINY_RECIPE = """\
name = "tiny"
description = "a tiny recipe for the TUI tests"

[data]
dataset = "synthetic"
train_size = 16
test_size = 16
batch_size = 8

[model]
arch = "small_cnn"

[schedule]
epochs = 3
"""


def make_dirs(base: Path) -> SimpleNamespace:
    d = SimpleNamespace(project=base / "project", user=base / "user", runs=base / "runs", data=base / "data")
    for p in (d.project, d.user, d.runs, d.data):
        p.mkdir(parents=True, exist_ok=True)
    (d.project / "tiny.toml").write_text(TINY_RECIPE)
    return d


def fake_cmd(mode: str = "normal", **opts) -> list[str]:
    args = [sys.executable, str(FAKE_TRAINER), "--mode", mode]
    for key, value in opts.items():
        flag = f"--{key.replace('_', '-')}"
        args += [flag] if value is True else [flag, str(value)]
    return args + ["--"]


async def wait_for(pilot, condition: Callable[[], object], timeout: float = 15.0, what: str = "") -> None:
    """Let the app run until ``condition()`` is true; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except Exception:  # a widget not mounted yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what or condition}")
        await pilot.pause(0.05)


async def ready_pane(pilot, name: str):
    """The app's pane ``name`` once it has mounted (the Recipes pane mounts after the first paint,
    when the recipe schema is imported)."""
    app = pilot.app
    await wait_for(pilot, lambda: app.pane(name) is not None, what=f"the {name} pane mounts")
    return app.pane(name)


def wait_pid_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not rundir.pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def kill_quietly(pid: int | None) -> None:
    if pid and rundir.pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def make_fixture_run(root: Path, run_id: str, *, name: str, dataset: str, arch: str, epochs: int = 4,
                     steps_per_epoch: int = 25, status: str = "completed", seed: float = 0.0,
                     t0: float = 1_700_000_000.0) -> Path:
    """A finished (or stopped) run directory with fixed numbers and times, for snapshots and the
    compare view. ``status``: completed, failed, or interrupted (no run_finished, dead pid)."""
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    recipe = validate_recipe({"name": name, "data": {"dataset": dataset}, "model": {"arch": arch},
                              "schedule": {"epochs": epochs}})
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
            w.emit("eval", epoch=epoch, step=step, split="test", model="raw", top1=test, top5=test + 15, time=t)
            w.emit("eval", epoch=epoch, step=step, split="test", model="ema", top1=test + 0.7, time=t)
            if best is None or val > best["val_top1"]:
                best = {"epoch": epoch, "val_top1": round(val, 2), "test_top1": round(test, 2),
                        "test_top5": round(test + 15, 2)}
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
                                             "test_top5": round(test + 15, 2)}, "ema": None},
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
                         arch="resnet50", seed=0.03),
        make_fixture_run(root, "20250303-110000-cars_r18", name="cars_r18", dataset="stanford_cars",
                         arch="resnet18", status="failed"),
        make_fixture_run(root, "20250304-120000-cifar_r18", name="cifar_r18", dataset="cifar10",
                         arch="resnet18", status="interrupted"),
    ]

"""A stand-in for ``fgbench run`` that writes scripted metrics events and never imports torch.

Usage (the TUI launcher appends the ``fgbench`` arguments after ``--``)::

    python fake_trainer.py [--mode normal|crash|hardcrash|reject] [--epochs N] [--steps-per-epoch N]
                           [--delay S] [--garbage] [--checkpoint-every-epoch]
                           -- run RECIPE --run-dir DIR --progress lines
    python fake_trainer.py ... -- run --resume DIR --progress lines

It keeps the trainer's contracts: run.json with the pid, recipe.toml, metrics.jsonl through
``fgbench.rundir.events.MetricsWriter``, summary.json, SIGINT -> checkpoints/last.pt, run_finished
"interrupted", exit 130; a crash -> run_finished "failed" with error and traceback, exit 1;
"hardcrash" dies with exit 3 before writing anything, like an import error; "reject" exits 2 at
once, like a trainer whose dataset is not downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fgbench import rundir  # noqa: E402
from fgbench.rundir.events import MetricsWriter, read_events  # noqa: E402
from fgbench.rundir.lock import RunBusy, RunLock  # noqa: E402


def parse(argv: list[str]) -> tuple[dict, list[str]]:
    opts = {"mode": "normal", "epochs": None, "steps_per_epoch": 5, "delay": 0.02, "garbage": False}
    if "--" in argv:
        cut = argv.index("--")
        own, rest = argv[:cut], argv[cut + 1:]
    else:
        own, rest = [], argv
    i = 0
    while i < len(own):
        key = own[i].lstrip("-").replace("-", "_")
        if key in ("garbage", "checkpoint_every_epoch"):
            opts[key] = True
            i += 1
            continue
        opts[key] = own[i + 1]
        i += 2
    return opts, rest


def main() -> int:
    opts, args = parse(sys.argv[1:])
    mode = opts["mode"]
    if mode == "reject":
        print("fake trainer: dataset 'nope' is not downloaded", file=sys.stderr)
        return 2
    if mode == "hardcrash":
        print("Traceback (most recent call last):", file=sys.stderr)
        print("ImportError: fake trainer could not import its engine", file=sys.stderr)
        return 3
    assert args[0] == "run", args
    resume = "--resume" in args
    if resume:
        run_dir = Path(args[args.index("--resume") + 1])
        recipe = tomllib.loads((run_dir / rundir.RECIPE_FILE).read_text())
    else:
        recipe_path = Path(args[1])
        run_dir = Path(args[args.index("--run-dir") + 1])
        if not rundir.RunDir(run_dir).is_fresh():
            print(f"{run_dir}: --run-dir is not empty", file=sys.stderr)
            return 2
        run_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = RunLock(run_dir).acquire(command="fake trainer")  # the trainer's contract: one process per run
    except RunBusy as err:
        print(err, file=sys.stderr)
        return 2
    if not resume:
        shutil.copyfile(recipe_path, run_dir / rundir.RECIPE_FILE)
        recipe = tomllib.loads(recipe_path.read_text())
    epochs = int(opts["epochs"] or recipe.get("schedule", {}).get("epochs", 3))
    spe = int(opts["steps_per_epoch"])
    delay = float(opts["delay"])
    rundir.write_run_info(run_dir, pid=os.getpid())
    stop = {"flag": False}
    signal.signal(signal.SIGINT, lambda *_: stop.__setitem__("flag", True))

    first_epoch, step = 1, 0
    if resume:
        events = read_events(run_dir / "metrics.jsonl")
        ckpts = [e for e in events if e["event"] == "checkpoint"]
        if ckpts:
            first_epoch, step = ckpts[-1]["epoch"] + 1, ckpts[-1]["step"]
    writer = MetricsWriter(run_dir / "metrics.jsonl")
    print(f"fake trainer: {run_dir.name} mode={mode}", flush=True)
    writer.emit("run_started", run_id=run_dir.name, recipe=recipe, class_names=["a", "b"], device="cpu",
                host="test", pid=os.getpid(), resumed=resume, train_images=90, val_images=10, test_images=50,
                steps_per_epoch=spe, total_epochs=epochs, total_steps=epochs * spe)
    writer.emit("stage_started", stage=0, name="main", epochs=epochs, first_epoch=first_epoch, steps_per_epoch=spe)
    best = {"epoch": 0, "val_top1": -1.0, "test_top1": None, "test_top5": None}

    def summary(status: str, epoch: int) -> dict:
        data = {"run_id": run_dir.name, "name": recipe.get("name"), "status": status,
                "dataset": recipe.get("data", {}).get("dataset"), "arch": recipe.get("model", {}).get("arch"),
                "epochs_done": epoch, "total_epochs": epochs, "step": step, "duration_s": 12.0,
                "images_per_s": 1000.0, "peak_mem_mb": None, "train_images": 90, "val_images": 10,
                "test_images": 50, "select_on": "val", "best": {"raw": dict(best), "ema": None},
                "last": {"epoch": epoch, "raw": {"val_top1": best["val_top1"], "test_top1": best["test_top1"],
                                                 "test_top5": None}, "ema": None},
                "final_test_sizes": {}, "skipped_images": 0}
        rundir.write_json(run_dir / rundir.SUMMARY_FILE, data)
        return data

    for epoch in range(first_epoch, epochs + 1):
        for _ in range(spe):
            time.sleep(delay)
            step += 1
            if stop["flag"]:
                ckpt = run_dir / rundir.CHECKPOINT_DIR / rundir.LAST_CKPT
                ckpt.parent.mkdir(exist_ok=True)
                ckpt.write_bytes(b"fake checkpoint")
                writer.emit("checkpoint", epoch=epoch - 1, step=(epoch - 1) * spe, kind="last", path=str(ckpt))
                writer.emit("log", level="warning", message="interrupted: checkpoint written")
                writer.emit("run_finished", status="interrupted", summary=summary("interrupted", epoch - 1),
                            exit_code=130)
                print("interrupted", flush=True)
                return 130
            if mode == "crash" and step >= 3:
                tb = ("Traceback (most recent call last):\n  File \"train.py\", line 1, in step\n"
                      "RuntimeError: CUDA out of memory (fake)")
                print(tb, file=sys.stderr, flush=True)
                writer.emit("run_finished", status="failed", error="RuntimeError: CUDA out of memory (fake)",
                            traceback=tb, exit_code=1)
                return 1
            writer.emit("step", epoch=epoch, step=step, loss=2.0 / (1 + 0.3 * step), lr=0.1 * (1 - step / (epochs * spe)),
                        images_per_s=1000.0 + step)
            if opts["garbage"] and step == 2:
                with open(run_dir / "metrics.jsonl", "a") as f:
                    f.write('{"event": "step", "broken\n')
        val = 40.0 + 10 * epoch
        test = 38.0 + 10 * epoch
        writer.emit("eval", epoch=epoch, step=step, split="val", model="raw", top1=val)
        writer.emit("eval", epoch=epoch, step=step, split="test", model="raw", top1=test, top5=90.0)
        if val > best["val_top1"]:
            best = {"epoch": epoch, "val_top1": val, "test_top1": test, "test_top5": 90.0}
        writer.emit("epoch", epoch=epoch, step=step, train_loss=2.0 / (1 + 0.3 * step), train_top1=35.0 + 10 * epoch,
                    lr=0.05, val_top1=val, test_top1=test, epoch_time=delay * spe)
        summary("running", epoch)
        if opts.get("checkpoint_every_epoch"):
            ckpt = run_dir / rundir.CHECKPOINT_DIR / rundir.LAST_CKPT
            ckpt.parent.mkdir(exist_ok=True)
            ckpt.write_bytes(b"fake checkpoint")
            writer.emit("checkpoint", epoch=epoch, step=step, kind="last", path=str(ckpt))
    final = summary("completed", epochs)
    writer.emit("run_finished", status="completed", summary=final, exit_code=0)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

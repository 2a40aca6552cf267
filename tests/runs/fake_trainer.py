"""A stand-in for `python -m fgbench run` that speaks its process contract (arguments, run
directory files, exit codes 0/1/130, SIGINT -> last.pt + interrupted) without torch, so that the
sweep's scheduling, interruption and continuation are tested in well under a second per run.
Real trainings through the real trainer are tested in test_real_runs.py.

    fake_trainer.py run RECIPE --run-dir DIR --sweep-tag TAG [...]
    fake_trainer.py run --resume DIR --sweep-tag TAG [...]

Epoch time: FAKE_EPOCH_S (default 0.05 s). A recipe with runtime.seed = 13 fails at epoch 1.
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

from fgbench import metrics, runs  # noqa: E402
from fgbench.rundir import layout  # noqa: E402

stop = False


def on_sigint(signum, frame):
    global stop
    stop = True


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, on_sigint)
    assert argv[0] == "run"
    args = argv[1:]
    opts = {}
    positional = []
    i = 0
    while i < len(args):
        if args[i].startswith("--"):
            opts[args[i][2:]] = args[i + 1]
            i += 2
        else:
            positional.append(args[i])
            i += 1
    resumed = "resume" in opts
    run_dir = Path(opts["resume"] if resumed else opts["run-dir"])
    if not resumed:
        assert run_dir.is_dir() and layout.RunDir(run_dir).is_fresh(), "--run-dir must be new or empty"
        shutil.copy(positional[0], run_dir / runs.RECIPE_FILE)
    recipe = tomllib.loads((run_dir / runs.RECIPE_FILE).read_text())
    runs.write_run_info(run_dir, pid=os.getpid(), sweep_tag=opts.get("sweep-tag"), argv=["fake"] + argv,
                        cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
    start_epoch = 1
    ckpt = run_dir / runs.CHECKPOINT_DIR / runs.LAST_CKPT
    if resumed:
        start_epoch = json.loads(ckpt.read_text())["epoch"] + 1
    epochs = recipe["schedule"]["epochs"]
    lr = recipe["optim"]["lr"]
    epoch_s = float(os.environ.get("FAKE_EPOCH_S", "0.05"))
    with metrics.MetricsWriter(run_dir / metrics.METRICS_FILE) as w:
        w.emit("run_started", run_id=run_dir.name, recipe=recipe, class_names=["a", "b"], device="cpu",
               host="fake", pid=os.getpid(), resumed=resumed, total_epochs=epochs)
        for epoch in range(start_epoch, epochs + 1):
            if recipe["runtime"]["seed"] == 13:
                w.emit("run_finished", status="failed", error="seed 13 always fails")
                return 1
            time.sleep(epoch_s)
            acc = min(100.0, 50.0 + 1000 * lr * epoch)
            w.emit("epoch", epoch=epoch, step=epoch * 10, train_loss=1.0 / epoch, train_top1=acc, lr=lr,
                   val_top1=acc, test_top1=acc - 1)
            ckpt.parent.mkdir(exist_ok=True)
            ckpt.write_text(json.dumps({"epoch": epoch}))
            summary = {"run_id": run_dir.name, "name": recipe["name"], "status": "running", "epochs_done": epoch,
                       "total_epochs": epochs, "step": epoch * 10, "duration_s": epoch * epoch_s,
                       "best": {"raw": {"epoch": epoch, "val_top1": acc, "test_top1": acc - 1, "test_topk": None},
                                "ema": None},
                       "last": {"epoch": epoch, "raw": {"val_top1": acc, "test_top1": acc - 1, "test_topk": None},
                                "ema": None}}
            runs.write_json(run_dir / runs.SUMMARY_FILE, summary)
            if stop:
                w.emit("run_finished", status="interrupted")
                return 130
        summary["status"] = "completed"
        runs.write_json(run_dir / runs.SUMMARY_FILE, summary)
        w.emit("run_finished", status="completed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

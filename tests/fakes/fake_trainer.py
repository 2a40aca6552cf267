"""The tests' one stand-in for ``fgbench run``: it speaks the trainer's process contract through
:mod:`fgbench.rundir` and never imports torch, so that launching, watching, stopping, resuming and
sweeping are tested in well under a second a run. Real trainings are tested in tests/train and
tests/runs/test_real_runs.py.

Usage (own options first, then ``--`` and the ``fgbench`` arguments; with no own options the
``--`` may be left out, which is how a sweep calls it)::

    fake_trainer.py [OPTIONS] -- run RECIPE --run-dir DIR [--sweep-tag TAG] [--progress lines]
    fake_trainer.py [OPTIONS] -- run --resume DIR [--sweep-tag TAG] [--progress lines]

Options:

* ``--mode normal|crash|hardcrash|reject``: ``crash`` fails at step 3 (run_finished "failed" with
  error and traceback, exit 1); ``hardcrash`` exits 3 before writing anything, like an import
  error; ``reject`` exits 2 at once, like a trainer whose dataset is not downloaded.
* ``--epochs N`` (default: the recipe's ``schedule.epochs``), ``--steps-per-epoch N`` (default 10).
* ``--delay S``: seconds a step (default: ``FAKE_EPOCH_S`` / steps a epoch; ``FAKE_EPOCH_S``
  defaults to 0.05 s).
* ``--val-start V`` and ``--val-gain G``: epoch ``e`` reaches val top-1 ``min(100, V + G * e)`` and
  test top-1 one point less (defaults: V = 50, G = 1000 x the recipe's ``optim.lr``).
  The best epoch is the latest with the highest val top-1.
* ``--garbage``: a malformed line is appended to metrics.jsonl after step 2.
* ``--hold-at S``: a first session (not a resume) holds after step ``S`` until SIGINT, writing a
  ``system`` event every 0.2 s meanwhile (at most 1500, then it trains on), so that a test that
  stops the run never races a trainer that finishes first, and the monitor still gets news.

Whatever the options, like the real trainer it: refuses a ``--run-dir`` that holds more than a
launcher's files (exit 2); takes the run lock (:class:`fgbench.rundir.lock.RunLock`; a held lock
exits 2 naming the holder); writes recipe.toml, run.json (its identity, ``argv``, ``sweep_tag``
and ``cuda_visible_devices``), metrics.jsonl through :class:`fgbench.rundir.events.MetricsWriter`
and, after every epoch, summary.json and checkpoints/last.pt (with a checkpoint event); on
SIGINT (checked every step) it writes last.pt of the last finished epoch, run_finished
"interrupted" and exits 130; ``--resume`` continues from last.pt (JSON ``{"epoch": E, "step": S}``; ``step`` may be left out;
exit 2 without a readable one). A recipe with ``runtime.seed = 13`` fails at its first epoch (run_finished "failed",
error "seed 13 always fails", exit 1).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from fgbench.tomlread import tomllib

FAKE_TRAINER = Path(__file__).resolve()
REPO = FAKE_TRAINER.parents[2]


def fake_cmd(mode: str = "normal", *, steps_per_epoch: int = 5, delay: float = 0.02, val_start: float = 40.0,
             val_gain: float = 10.0, **opts) -> list[str]:
    """The command prefix of the fake trainer for a launcher (``fgbench_cmd``), ending in ``--``.
    The defaults are the TUI tests' run: 5 steps of 0.02 s an epoch, val top-1 ``40 + 10 * epoch``."""
    opts = dict(steps_per_epoch=steps_per_epoch, delay=delay, val_start=val_start, val_gain=val_gain, **opts)
    args = [sys.executable, str(FAKE_TRAINER), "--mode", mode]
    for key, value in opts.items():
        flag = f"--{key.replace('_', '-')}"
        args += [flag] if value is True else [flag, str(value)]
    return args + ["--"]


FLAGS = ("garbage",)


def parse(argv: list[str]) -> tuple[dict, list[str]]:
    """(own options, the fgbench arguments)."""
    opts: dict = {"mode": "normal", "epochs": None, "steps_per_epoch": "10", "delay": None, "val_start": "50",
                  "val_gain": None, "garbage": False, "hold_at": None}
    own, rest = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else ([], argv)
    i = 0
    while i < len(own):
        key = own[i].lstrip("-").replace("-", "_")
        if key not in opts:
            raise SystemExit(f"fake trainer: unknown option {own[i]}")
        if key in FLAGS:
            opts[key] = True
            i += 1
        else:
            opts[key] = own[i + 1]
            i += 2
    return opts, rest


def fgbench_args(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """(positional, {option: value}) of ``run ...``."""
    assert args and args[0] == "run", args
    positional, named = [], {}
    i = 1
    while i < len(args):
        if args[i].startswith("--"):
            named[args[i][2:]] = args[i + 1]
            i += 2
        else:
            positional.append(args[i])
            i += 1
    return positional, named


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(REPO))
    from fgbench import rundir
    from fgbench.rundir import procs
    from fgbench.rundir.events import MetricsWriter
    from fgbench.rundir.lock import RunBusy, RunLock

    opts, args = parse(argv)
    mode = opts["mode"]
    spe = int(opts["steps_per_epoch"])
    if mode == "reject":
        print("fake trainer: dataset 'nope' is not downloaded", file=sys.stderr)
        return 2
    if mode == "hardcrash":
        print("Traceback (most recent call last):", file=sys.stderr)
        print("ImportError: fake trainer could not import its engine", file=sys.stderr)
        return 3
    positional, named = fgbench_args(args)
    resume = "resume" in named
    run_dir = Path(named["resume"] if resume else named["run-dir"])
    rd = rundir.RunDir(run_dir)
    if not resume:
        if not rd.is_fresh():
            print(f"{run_dir}: --run-dir is not empty", file=sys.stderr)
            return 2
        run_dir.mkdir(parents=True, exist_ok=True)
    try:
        RunLock(run_dir).acquire(command="fake trainer")  # held until exit: one process per run
    except RunBusy as err:
        print(err, file=sys.stderr)
        return 2
    first_epoch, step = 1, 0
    if resume:
        try:
            ckpt = json.loads(rd.last_ckpt.read_text())
            first_epoch, step = int(ckpt["epoch"]) + 1, int(ckpt.get("step", int(ckpt["epoch"]) * spe))
        except (OSError, ValueError, KeyError, TypeError):
            print(f"{run_dir}: no checkpoint to resume from ({rd.last_ckpt} is missing or unreadable)",
                  file=sys.stderr)
            return 2
    else:
        shutil.copyfile(positional[0], run_dir / rundir.RECIPE_FILE)
    recipe = tomllib.loads((run_dir / rundir.RECIPE_FILE).read_text())
    rundir.write_run_info(run_dir, **procs.identity(), argv=["fake", *args], sweep_tag=named.get("sweep-tag"),
                          cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))

    epochs = int(opts["epochs"] or recipe.get("schedule", {}).get("epochs", 3))
    delay = float(opts["delay"]) if opts["delay"] is not None else float(os.environ.get("FAKE_EPOCH_S", "0.05")) / spe
    lr = float(recipe.get("optim", {}).get("lr", 0.1))
    val_start = float(opts["val_start"])
    val_gain = float(opts["val_gain"]) if opts["val_gain"] is not None else 1000 * lr
    seed = recipe.get("runtime", {}).get("seed")
    total = epochs * spe
    started = time.monotonic()
    stop = {"flag": False}
    signal.signal(signal.SIGINT, lambda *_: stop.__setitem__("flag", True))

    writer = MetricsWriter(run_dir / rundir.METRICS_FILE)
    print(f"fake trainer: {run_dir.name} mode={mode}", flush=True)
    writer.emit("run_started", run_id=run_dir.name, recipe=recipe, class_names=["a", "b"], device="cpu",
                host="fake", pid=os.getpid(), resumed=resume, train_images=90, val_images=10, test_images=50,
                steps_per_epoch=spe, total_epochs=epochs, total_steps=total)
    writer.emit("stage_started", stage=0, name="main", epochs=epochs, first_epoch=first_epoch, steps_per_epoch=spe)
    best = {"epoch": 0, "val_top1": -1.0, "test_top1": None, "test_topk": None}
    last = {"val_top1": None, "test_top1": None, "test_topk": None}

    def summary(status: str, epoch: int) -> dict:
        data = {"run_id": run_dir.name, "name": recipe.get("name"), "status": status,
                "dataset": recipe.get("data", {}).get("dataset"), "arch": recipe.get("model", {}).get("arch"),
                "epochs_done": epoch, "total_epochs": epochs, "step": step,
                "duration_s": round(time.monotonic() - started, 3), "images_per_s": 1000.0, "peak_mem_mb": None,
                "train_images": 90, "val_images": 10, "test_images": 50, "select_on": "val",
                "best": {"raw": dict(best), "ema": None}, "last": {"epoch": epoch, "raw": dict(last), "ema": None},
                "final_test_sizes": {}, "skipped_images": 0}
        rundir.write_json(rd.summary, data)
        return data

    def checkpoint(epoch: int, at_step: int) -> None:
        rd.last_ckpt.parent.mkdir(exist_ok=True)
        rd.last_ckpt.write_text(json.dumps({"epoch": epoch, "step": at_step}))
        writer.emit("checkpoint", epoch=epoch, step=at_step, kind="last", path=str(rd.last_ckpt))

    def fail(error: str, tb: str) -> int:
        print(tb, file=sys.stderr, flush=True)
        writer.emit("run_finished", status="failed", error=error, traceback=tb, exit_code=1)
        return 1

    for epoch in range(first_epoch, epochs + 1):
        if seed == 13:
            return fail("seed 13 always fails", "Traceback (most recent call last):\n  File \"fake_trainer.py\"\n"
                        "RuntimeError: seed 13 always fails")
        for _ in range(spe):
            time.sleep(delay)
            if stop["flag"]:
                checkpoint(epoch - 1, (epoch - 1) * spe)
                writer.emit("log", level="warning", message="interrupted: checkpoint written")
                step = (epoch - 1) * spe
                writer.emit("run_finished", status="interrupted", summary=summary("interrupted", epoch - 1),
                            exit_code=130)
                print("interrupted", flush=True)
                return 130
            step += 1
            if mode == "crash" and step >= 3:
                return fail("RuntimeError: CUDA out of memory (fake)",
                            "Traceback (most recent call last):\n  File \"train.py\", line 1, in step\n"
                            "RuntimeError: CUDA out of memory (fake)")
            writer.emit("step", epoch=epoch, step=step, loss=2.0 / (1 + 0.3 * step), lr=lr * (1 - step / total),
                        images_per_s=1000.0 + step)
            if opts["hold_at"] is not None and not resume and step == int(opts["hold_at"]):
                for _ in range(1500):  # bounded: a test that never stops the run ends anyway
                    if stop["flag"]:
                        break
                    writer.emit("system", epoch=epoch, step=step, cpu_percent=1.0, rss_mb=50.0)
                    time.sleep(0.2)
            if opts["garbage"] and step == 2:
                with open(rd.metrics, "a") as f:
                    f.write('{"event": "step", "broken\n')
        val = min(100.0, val_start + val_gain * epoch)
        test = val - 1
        writer.emit("eval", epoch=epoch, step=step, split="val", model="raw", top1=val)
        writer.emit("eval", epoch=epoch, step=step, split="test", model="raw", top1=test, topk=90.0)
        last = {"val_top1": val, "test_top1": test, "test_topk": 90.0}
        if val >= best["val_top1"]:  # the latest epoch with the highest val top-1
            best = {"epoch": epoch, **last}
        writer.emit("epoch", epoch=epoch, step=step, train_loss=1.0 / epoch, train_top1=val, lr=lr,
                    val_top1=val, test_top1=test, epoch_time=delay * spe)
        summary("running", epoch)
        checkpoint(epoch, step)
    final = summary("completed", epochs)
    writer.emit("run_finished", status="completed", summary=final, exit_code=0)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

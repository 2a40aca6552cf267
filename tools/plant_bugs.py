"""Plant realistic wiring bugs one at a time and check that the oracle test fails on each.

    python tools/plant_bugs.py              # every bug
    python tools/plant_bugs.py eval-mixes   # some of them
    python tools/plant_bugs.py --list

Each bug is one textual edit of the code that decides reported numbers, of the kinds issue 18's
audit found surviving the whole test suite. Each is planted in its own scratch copy of the
repository (``.mutation/plant-<name>/``, git-ignored), never in the working tree, and
``tests/train/test_oracle.py`` is run there. The report says, for each bug, whether the oracle
caught it and which of its tests failed. BENCHMARKS.md ("Oracle test") lists the results.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".mutation"
TEST = "tests/train/test_oracle.py"

# name -> (what the bug is, file, text, replacement)
BUGS: dict[str, tuple[str, str, str, str]] = {
    "val-serves-train": (
        "the validation loader serves training images (as many as the validation split has)",
        "fgbench/data/loaders.py",
        'evals["val"] = EvalDataset(splits.train_source, _shard(splits.val, shard), etf, eneed)',
        'evals["val"] = EvalDataset(splits.train_source, _shard(splits.train[:len(splits.val)], shard), etf, eneed)'),
    "val-serves-test": (
        "the validation loader serves test images",
        "fgbench/data/loaders.py",
        'evals["val"] = EvalDataset(splits.train_source, _shard(splits.val, shard), etf, eneed)',
        'evals["val"] = EvalDataset(splits.test_source, _shard(splits.test[:len(splits.val)], shard), etf, eneed)'),
    "eval-train-transform": (
        "the stage's evaluation loaders use the training transform",
        "fgbench/data/loaders.py",
        "    etf = fast_transform(T.test_transform(data, test_size))\n    # What each transform needs",
        "    etf = ttf\n    # What each transform needs"),
    "eval-mixes": (
        "MixUp/CutMix applied to evaluation batches",
        "fgbench/train/loop.py",
        "            if cl is not None:\n                x = x.contiguous(memory_format=cl)\n            with engine.eval_autocast():",
        "            if cl is not None:\n                x = x.contiguous(memory_format=cl)\n"
        "            if engine.mixer is not None:\n                x, _ = engine.mixer(x, y)\n"
        "            with engine.eval_autocast():"),
    "loss-no-smoothing": (
        "the trainer builds its loss without the recipe's smoothing",
        "fgbench/train/trainer.py",
        "criterion=ClassificationLoss(self.num_classes, r.loss.label_smoothing, r.loss.smoothing_style)",
        "criterion=ClassificationLoss(self.num_classes)"),
    "loss-style-ignored": (
        "the trainer builds its loss without the recipe's smoothing style (always torch's)",
        "fgbench/train/trainer.py",
        "criterion=ClassificationLoss(self.num_classes, r.loss.label_smoothing, r.loss.smoothing_style)",
        "criterion=ClassificationLoss(self.num_classes, r.loss.label_smoothing)"),
    "final-ema-raw-weights": (
        "the EMA's extra-size evaluations use the raw model's best weights",
        "fgbench/train/trainer.py",
        "state = self.best_states.get(model_name)",
        'state = self.best_states.get("raw")'),
    "list-ema-last-column": (
        "`runs list`'s EMA test@last column shows the EMA's test at its best epoch",
        "fgbench/rundir/summary.py",
        '"ema_test_top1_last": _float((last.ema or SplitNumbers()).test_top1),',
        '"ema_test_top1_last": _float(ema.test_top1),'),
    "best-latest-on-ties": (
        "a later epoch with an equal validation top-1 replaces the best one",
        "fgbench/train/selection.py",
        'return cur is None or score > cur["score"], score',
        'return cur is None or score >= cur["score"], score'),
    "stage-starts-from-raw": (
        "a stage with init_from = best_ema starts from the best raw weights",
        "fgbench/train/trainer.py",
        'which = "raw" if src == "best_raw" else "ema"',
        'which = "raw"'),
}


def plant(name: str) -> tuple[bool, str]:
    """(caught, the failed tests or why not) for one bug."""
    _, rel, old, new = BUGS[name]
    work = WORK / f"plant-{name}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for sub in ("fgbench", "tests"):
        shutil.copytree(REPO / sub, work / sub, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO / "pyproject.toml", work / "pyproject.toml")
    src = (work / rel).read_text(encoding="utf-8")
    if src.count(old) != 1:
        raise SystemExit(f"{name}: the text to replace occurs {src.count(old)} times in {rel}; update BUGS")
    (work / rel).write_text(src.replace(old, new), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(work)}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST], cwd=work, env=env,
                         capture_output=True, text=True)
    failed = sorted(set(re.findall(r"^(?:FAILED|ERROR) \S+::(\S+)", res.stdout, re.M)))
    shutil.rmtree(work)
    if res.returncode == 0:
        return False, "every oracle test passed"
    return True, ", ".join(failed) or res.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bugs", nargs="*", help=f"some of: {', '.join(BUGS)} (default: all)")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    if args.list:
        for name, (what, rel, _, _) in BUGS.items():
            print(f"{name}: {what} ({rel})")
        return 0
    missed = 0
    for name in args.bugs or list(BUGS):
        caught, detail = plant(name)
        missed += not caught
        print(f"{'CAUGHT' if caught else 'MISSED'} {name}: {BUGS[name][0]} -- {detail}", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Where the time of one ``fgbench run`` goes, from cProfile, for the jobs of ``end_to_end.py``.

    python benchmarks/profile_run.py                       # both jobs, this checkout
    python benchmarks/profile_run.py --jobs png32 --fgbench-path /path/to/other/checkout

Runs ``python -m cProfile -m fgbench run`` of the job's recipe (the same folder and recipe
``benchmarks/end_to_end.py`` builds) and prints the main process's time split into phases, from
cumulative times of the functions that do each part (pstats counts a recursive or re-entered
function once): imports, the training loops (and within them the time spent waiting for the next
batch from the data loader), evaluation, checkpoint writes, the final predictions pass, and the
rest (argument parsing, indexing, the loader choice, building the model, summary and metric
writes, teardown). ``--top N`` also lists the N functions with the most time of their own. Loader
workers are separate processes and are not profiled; their cost shows
as the main process waiting for batches. cProfile slows Python-heavy code, so the phases are
shares of a profiled run, not the wall times of ``end_to_end.py``.
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import end_to_end as E  # noqa: E402  (the jobs, folders and recipes)

# phase -> (filename part, function name): the cumulative time of every match is summed
PHASES = {
    "imports": [("importlib._bootstrap", "_find_and_load")],
    "training loops": [("fgbench/train/loop.py", "train_one_epoch")],
    "  of which waiting for batches": [("torch/utils/data/dataloader.py", "__next__")],
    "evaluation (every epoch)": [("fgbench/train/trainer.py", "_evaluate_all")],
    # what the training thread spends on checkpoints: the copy, and the write itself where it is not
    # in the background (written in the background, the rest runs on a thread cProfile does not see)
    "checkpoints (training thread)": [("fgbench/train/trainer.py", "_save_last"),
                                      ("fgbench/train/trainer.py", "_save_best"),
                                      ("fgbench/train/trainer.py", "_remove_stale_temps")],
    "final predictions pass": [("fgbench/train/trainer.py", "_write_predictions")],
}


def phases(prof: Path) -> dict[str, float]:
    st = pstats.Stats(str(prof))
    total = max(v[3] for v in st.stats.values())
    out = {}
    for phase, keys in PHASES.items():
        out[phase] = sum(v[3] for (fname, _line, func), v in st.stats.items()
                         if any(part in fname and func == name for part, name in keys))
    top = [k for k in out if not k.startswith("  ")]
    out["rest"] = total - sum(out[k] for k in top)
    out["total (profiled)"] = total
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", nargs="+", choices=list(E.JOBS), default=list(E.JOBS))
    ap.add_argument("--fgbench-path", type=Path, default=E.REPO)
    ap.add_argument("--top", type=int, default=0, help="also list the N functions with the most time of their own")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fgbench-prof-") as tmp:
        tmp = Path(tmp)
        for name in args.jobs:
            job = E.JOBS[name]
            root = E.make_folder(tmp / name, job)
            recipe = tmp / f"{name}.toml"
            recipe.write_text(E.recipe_text(job, root))
            prof = tmp / f"{name}.prof"
            env = {**os.environ, "PYTHONPATH": str(args.fgbench_path), "FGBENCH_HOME": str(tmp / f"home-{name}")}
            subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "fgbench", "run", str(recipe),
                            "--run-dir", str(tmp / f"run-{name}"), "--progress", "none"],
                           env=env, check=True, capture_output=True, cwd=tmp)  # not a checkout's root: see end_to_end
            res = phases(prof)
            total = res["total (profiled)"]
            print(f"{name} ({args.fgbench_path}):")
            for k, v in res.items():
                print(f"    {k:34s} {v:7.2f} s  {100 * v / total:5.1f} %")
            if args.top:
                st = pstats.Stats(str(prof))
                rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:args.top]
                print(f"    the {args.top} functions with the most time of their own:")
                for (fname, line, func), v in rows:
                    print(f"      {v[2]:7.2f} s  {v[1]:>8} calls  {func} ({Path(fname).name}:{line})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

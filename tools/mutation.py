"""Mutation testing of the code that computes reported numbers, with mutmut.

    python tools/mutation.py                      # every profile, one after the other
    python tools/mutation.py schedule ema         # some profiles
    python tools/mutation.py --list               # the profiles, their code and their tests
    python tools/mutation.py ema --only 'fgbench.train.ema.x_ramp_decay*'   # re-test some mutants
    python tools/mutation.py resume --only 'fgbench.train.trainer.x*_restore__mutmut_7?' \
        --tests tests/train/test_selection.py -k resumed   # survivors against a new test only

A profile is a piece of code (a module, or some functions of one: mutmut mutant-name globs) and the
tests that guard it. Each profile runs in its own scratch copy of the repository,
``.mutation/<profile>/`` (git-ignored), with a ``[tool.mutmut]`` section written for it, so that a
mutant of the LR schedule runs only the schedule's tests and not every training test that happens to
call it. A second run of a profile only re-tests what changed (mutmut's own cache). At the end each
profile prints mutmut's counts and lists the surviving mutants; ``mutmut show NAME`` inside
``.mutation/<profile>/`` prints one. mutmut is a development tool, not a dependency of fgbench:
``pip install mutmut``.
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".mutation"

# profile -> (source files to mutate, mutant-name globs or [] for all of them, test files)
PROFILES: dict[str, tuple[list[str], list[str], list[str]]] = {
    "schedule": (["fgbench/train/schedule.py"], [],
                 ["tests/train/test_schedule.py", "tests/train/test_peer_recipe_keys.py"]),
    "ema": (["fgbench/train/ema.py"], [],
            ["tests/train/test_ema_losses_mix.py", "tests/train/test_training_state.py"]),
    "losses": (["fgbench/train/losses.py"], [], ["tests/train/test_ema_losses_mix.py"]),
    "mixing": (["fgbench/train/mix.py"], [], ["tests/train/test_ema_losses_mix.py"]),
    "selection": (["fgbench/train/selection.py"], ["fgbench.train.selection.xǁBestTrackerǁ*"],
                  ["tests/train/test_selection_tracker.py"]),
    "evaluation": (["fgbench/train/loop.py"], ["fgbench.train.loop.x_evaluate*", "fgbench.train.loop.x__evaluate*"],
                   # the unit tests only: the bf16 end-to-end run costs a minute per mutant on 2 cores
                   ["tests/train/test_eval_precision.py", "-k", "not a_bf16_run"]),
    "resume": (["fgbench/train/trainer.py"],
               ["fgbench.train.trainer.xǁTrainerǁ_restore*", "fgbench.train.trainer.xǁTrainerǁ_position*"],
               ["tests/train/test_training_state.py", "tests/train/test_run.py", "tests/train/test_selection.py"]),
    # the wiring between the tested units, guarded by the oracle (issue 18): what the trainer builds
    # and evaluates, the loaders it gets, the step loop, and the runs list/compare columns
    "wiring": (["fgbench/train/trainer.py", "fgbench/data/loaders.py", "fgbench/train/loop.py", "fgbench/report.py",
                "fgbench/rundir/summary.py"],
               ["fgbench.train.trainer.xǁTrainerǁ_build_engine*", "fgbench.train.trainer.xǁTrainerǁ_build_loaders*",
                "fgbench.train.trainer.xǁTrainerǁ_begin_stage*", "fgbench.train.trainer.xǁTrainerǁ_evaluate_all*",
                "fgbench.train.trainer.xǁTrainerǁ_end_epoch*", "fgbench.train.trainer.xǁTrainerǁ_save_best*",
                "fgbench.train.trainer.xǁTrainerǁ_final*", "fgbench.train.trainer.xǁTrainerǁsummary*",
                "fgbench.data.loaders.x_build_loaders*", "fgbench.data.loaders.x_eval_loader*",
                "fgbench.data.loaders.x_load_splits*", "fgbench.train.loop.x_train_one_epoch*",
                "fgbench.rundir.summary.xǁSummaryǁheadline*", "fgbench.report.x_run_row*", "fgbench.report.x_compare_table*",
                "fgbench.report.x_list_table*"],
               ["tests/train/test_oracle.py"]),
}


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def prepare(name: str, tests_override: list[str] | None = None) -> Path:
    sources, _, tests = PROFILES[name]
    tests = tests_override or tests
    work = WORK / name
    work.mkdir(parents=True, exist_ok=True)
    for sub in ("fgbench", "tests"):
        # a fresh copy of the code and tests each time; mutmut's cache (mutants/) stays
        if (work / sub).exists():
            shutil.rmtree(work / sub)
        shutil.copytree(REPO / sub, work / sub, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # which tests cover which function is measured again every time (tests may have been added);
    # mutmut would otherwise reuse its old map and never run a new test against an old mutant
    (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    pyproject += (
        "\n[tool.mutmut]\n"
        f'source_paths = ["fgbench"]\n'
        f"only_mutate = {_toml_list(sources)}\n"
        f"pytest_add_cli_args = {_toml_list(['-q', '-p', 'no:cacheprovider', '-m', 'not slow'])}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(tests)}\n"
        'process_isolation = "forkserver"\n'  # torch is not fork-safe once initialised
        'timeout_multiplier = 60.0\n'  # a shared, loaded machine: a slow run is not a hang
    )
    (work / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    return work


def run(name: str, max_children: int, only: list[str] | None = None, tests: list[str] | None = None) -> int:
    _, globs, _ = PROFILES[name]
    globs = only or globs
    work = prepare(name, tests)
    env = {**os.environ, "PYTHONPATH": ""}  # the copy's own fgbench (mutmut puts mutants/ first)
    mutmut = [sys.executable, "-m", "mutmut"]
    print(f"== {name}: {', '.join(PROFILES[name][0])} {' '.join(globs)}", flush=True)
    code = subprocess.call([*mutmut, "run", "--max-children", str(max_children), *globs], cwd=work, env=env)
    out = subprocess.run([*mutmut, "results", "--all", "true"], cwd=work, env=env, capture_output=True, text=True).stdout
    status: dict[str, str] = {}
    for line in out.splitlines():
        mutant, sep, st = line.strip().rpartition(": ")
        if sep and (not globs or any(fnmatch.fnmatch(mutant, g) for g in globs)):
            status[mutant] = st
    counts = collections.Counter(status.values())
    print(f"== {name}: {len(status)} mutants: " + ", ".join(f"{n} {st}" for st, n in counts.most_common()))
    for mutant, st in sorted(status.items()):
        if st != "killed":
            print(f"   {st}: {mutant}")
    return code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profiles", nargs="*", help=f"some of: {', '.join(PROFILES)} (default: all)")
    ap.add_argument("--list", action="store_true", help="show the profiles and exit")
    ap.add_argument("--max-children", type=int, default=1, help="mutants tested in parallel (default 1)")
    ap.add_argument("--tests", nargs=argparse.REMAINDER, metavar="PYTEST_ARGS",
                    help="run these tests (pytest arguments, last on the line) instead of the profile's: a "
                         "survivor that a newly added test kills is killed, whatever the other tests do")
    ap.add_argument("--only", nargs="+", metavar="GLOB",
                    help="re-test only these mutants (mutmut names or globs), e.g. after adding a test")
    args = ap.parse_args(argv)
    if args.list:
        for name, (sources, globs, tests) in PROFILES.items():
            print(f"{name}: {' '.join(sources)} {' '.join(globs)}\n    tests: {' '.join(tests)}")
        return 0
    unknown = [p for p in args.profiles if p not in PROFILES]
    if unknown:
        print(f"tools/mutation.py: unknown profile {unknown[0]!r}; one of {', '.join(PROFILES)}", file=sys.stderr)
        return 2
    worst = 0
    for name in args.profiles or list(PROFILES):
        worst = max(worst, run(name, args.max_children, args.only, args.tests))
    return worst


if __name__ == "__main__":
    sys.exit(main())

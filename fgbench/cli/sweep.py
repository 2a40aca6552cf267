"""`fgbench sweep`: plan, run (on the sweep's backend), continue, follow, cancel a sweep.

Pure zone: the sweep's parts are in :mod:`fgbench.sweeps`; this module only reads the command
line and prints. Where the points run is the backend's business (``--launcher``, one registry:
:mod:`fgbench.sweeps.backend`); nothing here compares backend names.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from fgbench import report, rundir
from fgbench.cli.runs import _positive_int, _root, _root_arg
from fgbench.rundir.layout import check_runs_root
from fgbench.errors import UserError
from fgbench.textsafe import safe, safe_lines
from fgbench.sweeps import backend

SLURM_FLAGS = ("partition", "account", "qos", "time_limit_min", "gpus_per_run", "cpus_per_run", "nodes_per_run",
               "max_parallel")


def register(sub: argparse._SubParsersAction) -> None:
    sw = sub.add_parser("sweep", help="run a recipe's [sweep] (grid, named variants, seeds), or continue one",
                        description="Expand a recipe's [sweep] table (and --grid axes, --seeds), validate every run "
                        "up front, run them one after another (or one per GPU with --gpus, or on SLURM) as ordinary "
                        "runs tagged with the sweep, and print the ablation table (the runs of a point that differ "
                        "only in the seed as one row). Exit codes: 0 all completed, 1 some failed, 2 bad input, "
                        "130 interrupted (continue with --continue TAG).")
    sw.add_argument("recipe", nargs="?", metavar="RECIPE")
    sw.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                    help="add a grid axis, e.g. --grid optim.lr=0.1,0.01 (repeatable; values are TOML)")
    sw.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a field of the base recipe (repeatable)")
    sw.add_argument("--only", metavar="NAMES", help="run only these variants (comma-separated names)")
    sw.add_argument("--seeds", metavar="N|S1,S2",
                    help="run every point once per seed (runtime.seed): 3 means 0,1,2; or a list such as 0,1,2 "
                    "(replaces the recipe's sweep.seeds; with --continue, adds the seeds a point does not have yet)")
    sw.add_argument("--tag", metavar="TAG", help="sweep name (default: recipe name + time)")
    sw.add_argument("--continue", dest="cont", metavar="TAG", help="continue an interrupted sweep")
    sw.add_argument("--retry-failed", action="store_true", help="with --continue: run failed runs again")
    _root_arg(sw)
    sw.add_argument("--gpus", metavar="auto|IDS",
                    help="run several at a time, one per GPU: auto (CUDA_VISIBLE_DEVICES or nvidia-smi) or ids like 0,1")
    sw.add_argument("--device", choices=["auto", "cuda", "cpu"], help="passed to each run (overrides runtime.device)")
    sw.add_argument("--nproc", type=int, default=1, metavar="N",
                    help="train each run with N processes (DDP through torchrun); with --gpus, N GPU ids per run")
    sw.add_argument("--dry-run", action="store_true", help="validate and print the plan; run nothing")
    sw.add_argument("--format", choices=["markdown", "csv", "json", "text"], default="markdown",
                    help="format of the final table")
    sw.add_argument("--baseline", metavar="NAME",
                    help="the table's baseline row (a row label, run or recipe name; default: the first row): "
                    "every other row's difference to it, with an interval, resolved or within noise")
    sw.add_argument("--status", metavar="TAG", help="each point's fgbench status and SLURM state, then the table so far")
    sw.add_argument("--cancel", metavar="TAG", help="cancel what is left of a sweep (SLURM jobs; a local sweep is stopped "
                    "as with Ctrl-C); continue later with --continue TAG")
    sw.add_argument("--best", metavar="TAG", help="write the best trial's recipe of a search to -o FILE")
    sw.add_argument("-o", "--output", metavar="FILE", help="with --best: the TOML file to write (- for standard output)")
    sw.add_argument("--force", action="store_true", help="with --best: replace an existing file")
    sl = sw.add_argument_group("SLURM (--launcher slurm; defaults from the recipe's [sweep.slurm], then settings.toml's [slurm])")
    sl.add_argument("--launcher", choices=backend.names(),
                    help=backend.help_text())
    sl.add_argument("--partition", metavar="NAME")
    sl.add_argument("--account", metavar="NAME")
    sl.add_argument("--qos", metavar="NAME")
    sl.add_argument("--time-limit", dest="time_limit_min", type=_positive_int, metavar="MIN",
                    help="time limit per job in minutes (a job at its limit checkpoints and is requeued)")
    sl.add_argument("--gpus-per-run", type=int, metavar="N", help="GPUs per node for each run")
    sl.add_argument("--cpus-per-run", type=_positive_int, metavar="N", help="CPUs per node for each run")
    sl.add_argument("--nodes-per-run", type=_positive_int, metavar="N", help="nodes per run (multi-node DDP)")
    sl.add_argument("--max-parallel", type=_positive_int, metavar="N", help="at most N points at once (the array's %%N)")
    sl.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                    help="a further sbatch option, e.g. --sbatch constraint=a100 (repeatable)")
    sl.add_argument("--wait", action="store_true", help="wait until every job has ended, then print the table")
    sw.set_defaults(handler=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from fgbench.sweeps.state import SweepState

    root = _root(args)
    check_runs_root(root)  # a symlink loop or a file: one line, before anything is planned or read
    modes = [m for m in ("cont", "status", "cancel", "best") if getattr(args, m)]
    if len(modes) > 1:
        raise UserError("give one of --continue, --status, --cancel and --best")
    if args.status:
        return _sweep_status(SweepState.load(args.status, root), args.format, args.baseline)
    if args.cancel:
        return _sweep_cancel(SweepState.load(args.cancel, root))
    if args.best:
        return _sweep_best(SweepState.load(args.best, root), args.output, args.force)
    if args.output:
        raise UserError("-o/--output goes with --best TAG")
    from fgbench.sweeps import local
    from fgbench.sweeps.plan import parse_seeds

    seeds = parse_seeds(args.seeds) if args.seeds else None
    slots = local.group_slots(local.detect_gpus(args.gpus), args.nproc)
    extra: list[str] = []
    if args.device:
        extra += ["--device", args.device]
    if args.nproc > 1:
        extra += ["--nproc", str(args.nproc)]
    if args.cont:
        state = _continue_state(args, root, seeds)
        if state is None:
            return 0
    else:
        state = _new_state(args, root, seeds, extra)
        if state is None:
            return 0
        extra = []  # recorded in the state: every point (and a --continue) gets them
    if len(slots) > 1:
        extra += ["--progress", "lines"]
    done = backend.get(state.launcher).submit(state, backend.SubmitOptions(
        retry_failed=args.retry_failed, slots=slots, extra_args=extra, fresh=not args.cont))
    if done.finished:
        return _sweep_report(state, done.code, args)
    print(f"sweep {state.tag}: {safe_lines(done.message)}")
    if not args.wait:
        more = f" --runs-root {safe(args.runs_root)}" if args.runs_root else ""
        print(f"follow it with: fgbench sweep --status {state.tag}{more}")
        return 0
    return _wait(state, args)


def _new_state(args: argparse.Namespace, root: Path, seeds: list[int] | None, run_args: list[str]) -> Any:
    """Plan, check and record a new sweep; None after a dry run."""
    from fgbench.sweeps.plan import check_datasets, load_plan, plan_text
    from fgbench.sweeps.state import check_tag, create_state, default_tag

    if not args.recipe:
        raise UserError("fgbench sweep: give a RECIPE, or --continue / --status / --cancel / --best TAG")
    if args.retry_failed:
        raise UserError("--retry-failed goes with --continue TAG")
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    plan = load_plan(args.recipe, overrides=args.overrides, cli_grid=args.grid, only=only, seeds=seeds)
    launcher = backend.resolve_launcher(args.launcher, plan.spec)
    runner = backend.get(launcher)
    slurm_cfg = runner.configure(plan.spec, _slurm_flags(args), args.recipe)
    if args.gpus and not runner.runs_here:
        raise UserError(f"--gpus goes with --launcher local; on {runner.scheduler} say --gpus-per-run N")
    print(plan_text(plan), end="")
    if slurm_cfg is not None:
        # the partition, sbatch options and setup lines come from the recipe or settings.toml
        print(safe(f"{launcher}: " + ", ".join(f"{k}={v}" for k, v in slurm_cfg.items() if v not in (None, [], {}))))
    if args.dry_run:
        print("(dry run: nothing started)")
        return None
    why = runner.unavailable()
    if why:
        raise UserError(why)
    check_datasets([(r.data.dataset, r.data.root) for r in plan.recipes or [_base_recipe(plan)]], args.recipe)
    tag = check_tag(args.tag) if args.tag else default_tag(plan.base_name)
    state = create_state(plan, tag, root, launcher=launcher, slurm=slurm_cfg, run_args=run_args)
    print(f"sweep {tag}: state in {safe(state.path)}")
    return state


def _base_recipe(plan: Any) -> Any:
    from fgbench.recipe import validate_recipe

    return validate_recipe(plan.base or {}, plan.source)


def _continue_state(args: argparse.Namespace, root: Path, seeds: list[int] | None) -> Any:
    """The sweep to continue, with the seeds ``--seeds`` adds; None after a dry run."""
    from fgbench.sweeps.plan import check_datasets
    from fgbench.sweeps.state import SweepState, add_seeds, point_done, writer

    if args.recipe or args.grid or args.overrides or args.only or args.tag or _slurm_flags(args) or args.launcher:
        raise UserError("--continue TAG takes no RECIPE, --grid, --set, --only, --tag or SLURM settings: "
                        "the sweep's plan is fixed (--seeds adds seeds)")
    state = SweepState.load(args.cont, root)
    if args.dry_run:
        _print_state(state)
        return None
    if seeds:
        with writer(state):
            added = add_seeds(state, seeds)
        print(f"sweep {state.tag}: " + (f"added {len(added)} point(s) for new seeds" if added
                                        else "every point has these seeds already"))
    check_datasets([_dataset_of(Path(p.recipe_file)) for p in state.points
                      if p.recipe_file and not point_done(p)], f"sweep {state.tag}")
    return state


def _dataset_of(recipe_file: Path) -> tuple[str, str | None]:
    """A point's (``data.dataset``, ``data.root``) from its resolved recipe file (every field written)."""
    from fgbench.recipe import read_recipe_data

    data = read_recipe_data(recipe_file).get("data")
    data = data if isinstance(data, dict) else {}
    return str(data.get("dataset", "synthetic")), data.get("root")


def _wait(state: Any, args: argparse.Namespace) -> int:
    """Poll until the scheduler has no job of the sweep left, then the table (exit as a local sweep)."""
    from fgbench.sweeps import tables
    from fgbench.sweeps.state import SweepState

    while True:
        rows = tables.status_rows(state)
        if not any(r["active"] for r in rows):
            break
        time.sleep(5)
    state = SweepState.load_dir(state.dir)
    _print_status_rows(state, rows)
    code = 0
    if any(r["status"] == "failed" for r in rows):
        code = 1
    if any(r["status"] in ("pending", "interrupted") for r in rows):
        code = 130
    return _sweep_report(state, code, args)


def _print_table(state: Any, fmt: str, baseline: str | None) -> None:
    from fgbench.sweeps import tables

    try:
        columns, rows, notes = tables.sweep_table(state, baseline)
    except UserError as err:  # a --baseline that names no row: the table without it, the work kept
        if baseline is None:
            raise
        print(safe_lines(str(err)), file=sys.stderr)
        columns, rows, notes = tables.sweep_table(state)
    if rows:
        print()
        sys.stdout.write(report.render(columns, rows, fmt))
        if notes and fmt in ("markdown", "text"):
            sys.stdout.write("\n" + "".join(f"{n}\n" for n in notes))


def _sweep_report(state: Any, code: int, args: argparse.Namespace) -> int:
    from fgbench.sweeps.state import SweepState, point_status

    _print_table(state, args.format, args.baseline)
    statuses = [point_status(p) for p in SweepState.load_dir(state.dir).points] if state.path.is_file() else []
    counts = {s: statuses.count(s) for s in ("completed", "pruned", "failed", "interrupted", "running", "pending")}
    print(f"\nsweep {state.tag}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    more = f" --runs-root {safe(args.runs_root)}" if args.runs_root else ""
    if code == 130 and statuses and not (counts["interrupted"] or counts["running"] or counts["pending"]):
        code = 1 if counts["failed"] else 0  # stopped once its last run had ended: nothing to continue
    if code == 130:
        print(f"continue with: fgbench sweep --continue {state.tag}{more}")
    elif code == 1:
        print(f"see the failed runs' {rundir.LOG_FILE}; rerun them with: fgbench sweep --continue {state.tag} --retry-failed{more}")
    return code


def _slurm_flags(args: argparse.Namespace) -> dict[str, Any]:
    out = {k: getattr(args, k) for k in SLURM_FLAGS if getattr(args, k, None) is not None}
    if args.sbatch:
        extra: dict[str, Any] = {}
        for item in args.sbatch:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise UserError(f"--sbatch {item}: expected KEY=VALUE, e.g. --sbatch constraint=a100")
            extra[key.strip()] = value.strip()
        out["sbatch"] = extra
    return out


def _print_status_rows(state: Any, rows: list[dict[str, Any]]) -> None:
    columns = [("point", "#", "text"), ("label", "point", "text"), ("status", "fgbench", "text")]
    scheduler = backend.get(state.launcher).scheduler
    if scheduler:
        columns += [("job", f"{scheduler} job", "text"), ("scheduler", f"{scheduler} state", "text")]
    if state.search is not None:
        columns += [("value", state.search.get("metric", "value"), "acc")]
    columns += [("run_dir", "run directory", "text")]
    sys.stdout.write(report.render(columns, rows, "text"))


def _sweep_status(state: Any, fmt: str, baseline: str | None = None) -> int:
    from fgbench.sweeps import tables

    rows = tables.status_rows(state)
    where = state.launcher
    if state.slurm is not None:
        where = f"SLURM, {safe(state.slurm.get('partition') or 'default partition')}"
    print(f"sweep {state.tag} ({where}): {len(rows)} point(s), from {safe(state.source)}")
    _print_status_rows(state, rows)
    _print_table(state, fmt, baseline)
    return 0


def _sweep_cancel(state: Any) -> int:
    what = backend.get(state.launcher).cancel(state)
    print(f"sweep {state.tag}: {what}")
    print(f"continue it later with: fgbench sweep --continue {state.tag}")
    return 0


def _sweep_best(state: Any, output: str | None, force: bool) -> int:
    from fgbench.recipe import atomic_write_text
    from fgbench.sweeps import tables

    if not output:
        raise UserError("--best TAG needs -o FILE (the TOML file to write, or - for standard output)")
    out = Path(output).expanduser()
    if output != "-" and out.exists() and not force:
        raise UserError(f"{safe(out)}: already exists (use --force to replace it)")
    text, point = tables.best_recipe_text(state)
    said = f"{safe(point.label)} of sweep {state.tag} ({state.search['metric']} = {point.value:.2f})"
    if output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        print(said, file=sys.stderr)
        return 0
    atomic_write_text(out, text)
    print(f"{safe(out)}: {said}")
    return 0


def _print_state(state: Any) -> None:
    from fgbench.sweeps.state import point_status

    print(f"sweep {state.tag} ({safe(state.source)}): {len(state.points)} run(s)")
    for p in state.points:
        print(f"  {p.index + 1:>2}. {safe(p.label)}  {point_status(p)}  {safe(p.run_dir or '')}")

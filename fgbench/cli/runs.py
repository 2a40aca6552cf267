"""`fgbench runs list|show|compare|export|rm`, `fgbench predict`, `fgbench evaluate` (`fgbench sweep`
is :mod:`fgbench.cli.sweep`).

Pure zone except where marked: listing, showing, comparing and exporting to CSV/JSONL read run
directories with the standard library (tested in a fresh interpreter: torch is never imported).
`predict` and `evaluate` import the engine (torch) inside their handlers; `export --format
tensorboard` imports the optional ``tensorboard`` package inside its handler.

A run is named by its directory path, its directory name under the runs root, or a unique prefix
of that name (``fgbench.rundir.resolve_run``); ``compare``, ``export`` and ``rm`` also take globs
(``'2024*-hy_intel*'``) matched against the directory names under the runs root.

Deleting is explicit: ``runs rm`` is the only command that removes a run directory; it lists what
it will delete and asks (``--yes`` skips the question), and it refuses a run that is still running.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from fgbench import paths, report, rundir
from fgbench.rundir.events import STATUSES
from fgbench.atomic import DiskFullError
from fgbench.errors import UserError
from fgbench.textsafe import safe, safe_lines
from fgbench.report import plural

RUN_STATUSES = (*STATUSES, "damaged")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list, show, compare, export and delete runs")
    rs = p.add_subparsers(dest="runs_command", metavar="ACTION")

    ls = rs.add_parser("list", help="one line per run, with its headline numbers",
                       description="List runs: status, recipe, dataset, model, epochs, best validation top-1, "
                       "test top-1 at the selected epoch and at the last one, EMA numbers, time, images/s.")
    _root_arg(ls)
    ls.add_argument("--status", action="append", default=[], metavar="STATUS",
                    help=f"only runs with this status ({', '.join(RUN_STATUSES)}); repeatable or comma-separated")
    ls.add_argument("--name", metavar="PATTERN", help="recipe or run-directory name: a glob (sc_cub*) or a substring")
    ls.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                    help="resolved-recipe field equals (or with KEY!=VALUE differs from) a value, "
                    "e.g. --where optim.lr=0.005 (repeatable, all must hold)")
    ls.add_argument("--sweep", metavar="TAG", help="only the runs of this sweep")
    ls.add_argument("--format", choices=["text", "markdown", "csv", "json"], default="text")
    ls.set_defaults(handler=cmd_list)

    sh = rs.add_parser("show", help="one run: recipe, summary, curves, per-class accuracy, confusions")
    sh.add_argument("run", metavar="RUN")
    _root_arg(sh)
    sh.add_argument("--no-recipe", action="store_true", help="leave out the resolved recipe")
    sh.add_argument("--no-plots", action="store_true", help="leave out the metric curves")
    sh.add_argument("--all-classes", action="store_true", help="every class's accuracy, not only the worst and best")
    sh.add_argument("--pairs", type=_positive_int, default=10, metavar="N", help="most confused class pairs to show (10)")
    sh.add_argument("--width", type=_positive_int, default=56, metavar="COLS", help="plot width in characters (56)")
    sh.set_defaults(handler=cmd_show)

    cp = rs.add_parser("compare", help="one table of several runs; columns are the recipe fields that differ",
                       description="Compare runs in one table (Markdown by default, pasteable into a README). "
                       "Only the recipe fields whose values differ between the runs become columns. Runs that differ only "
                       "in runtime.seed are one row (a group): n, mean, 95 %% t interval, sd, min-max, and each row's "
                       "difference to the baseline row with a Holm-adjusted interval, resolved or within noise.")
    cp.add_argument("runs", nargs="*", metavar="RUN", help="runs or globs of run-directory names")
    _root_arg(cp)
    cp.add_argument("--sweep", metavar="TAG", help="the runs of this sweep, in the sweep's order, labelled by variant")
    cp.add_argument("--format", choices=["markdown", "csv", "json", "text"], default="markdown")
    cp.add_argument("--fields", metavar="A,B", help="show these recipe fields instead of the differing ones")
    cp.add_argument("--baseline", metavar="NAME",
                    help="the row the others are compared with (a row label, run or recipe name; default: the first row)")
    cp.set_defaults(handler=cmd_compare)

    ex = rs.add_parser("export", help="all metrics of several runs into one CSV / JSONL file, or TensorBoard logs",
                       description="Export the metrics of runs. csv: one row per scalar (run, name, event, epoch, "
                       "step, metric, value, time). jsonl: every event, with run and name added. tensorboard: "
                       "an event-file directory with one sub-directory per run (needs the tensorboard extra: "
                       "pip install 'fgbench[tensorboard]').")
    ex.add_argument("runs", nargs="*", metavar="RUN", help="runs or globs (default: every run, as runs list lists them)")
    _root_arg(ex)
    ex.add_argument("--sweep", metavar="TAG", help="the runs of this sweep")
    ex.add_argument("--format", choices=["csv", "jsonl", "tensorboard"], required=True)
    ex.add_argument("-o", "--output", required=True, metavar="PATH",
                    help="output file (csv, jsonl; - for standard output) or directory (tensorboard); "
                    "must not exist yet unless --force")
    ex.add_argument("--force", action="store_true", help="replace an existing output")
    ex.set_defaults(handler=cmd_export)

    rm = rs.add_parser("rm", help="delete runs (asks first)")
    rm.add_argument("runs", nargs="+", metavar="RUN")
    _root_arg(rm)
    rm.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    rm.set_defaults(handler=cmd_rm)

    pr = sub.add_parser("predict", help="top-k classes of images with a run's checkpoint",
                        description="Classify images with a run's checkpoint and its test transform; prints the "
                        "top-k class names with probabilities.")
    pr.add_argument("run", metavar="RUN")
    pr.add_argument("images", nargs="+", metavar="IMAGE")
    _root_arg(pr)
    pr.add_argument("--top-k", type=_positive_int, default=5, metavar="K")
    pr.add_argument("--ema", action="store_true", help="use the EMA weights of the checkpoint")
    pr.add_argument("--checkpoint", choices=["best", "last"], default="best")
    pr.add_argument("--test-size", type=_positive_int, metavar="N", help="test crop size (default: the recipe's)")
    pr.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    pr.add_argument("--format", choices=["text", "json"], default="text")
    pr.set_defaults(handler=cmd_predict)

    ev = sub.add_parser("evaluate", help="re-evaluate a run's checkpoint, e.g. at other test resolutions",
                        description="Evaluate a run's checkpoint on its test (or val) split at one or more test sizes.")
    ev.add_argument("run", metavar="RUN")
    _root_arg(ev)
    ev.add_argument("--test-size", dest="test_sizes", action="append", type=_positive_int, default=[], metavar="N",
                    help="test crop size (repeatable; default: the recipe's)")
    ev.add_argument("--ema", action="store_true", help="evaluate the EMA weights")
    ev.add_argument("--checkpoint", choices=["best", "last"], default="best")
    ev.add_argument("--split", choices=["test", "val"], default="test")
    ev.add_argument("--batch-size", type=_positive_int, metavar="N", help="default: the recipe's eval batch size")
    ev.add_argument("--workers", type=int, default=None, metavar="N", help="DataLoader workers (default: the recipe's)")
    ev.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    ev.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    ev.set_defaults(handler=cmd_evaluate)


def _root_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-root", metavar="DIR", help="where runs live (default: $FGBENCH_RUNS or the fgbench home)")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be at least 1")
    return v


def _root(args: argparse.Namespace) -> Path:
    return Path(args.runs_root).expanduser() if getattr(args, "runs_root", None) else paths.runs_dir()


# ------------------------------------------------------------------------------ selecting runs


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def select_runs(refs: list[str], root: Path) -> list[Path]:
    """Run directories for RUN arguments (paths, names, unique prefixes or globs), in the order
    given, each once. Globs without a slash match run-directory names under ``root``."""
    out: list[Path] = []
    for ref in refs:
        if _is_glob(ref):
            if "/" in ref or ref.startswith("."):
                found = [Path(p) for p in sorted(glob.glob(ref))]
            else:
                found = sorted(root.glob(ref)) if root.is_dir() else []
            found = [p for p in found if p.is_dir() and rundir.is_run_dir(p)]
            if not found:
                raise UserError(f"{ref}: no run matches (looked in {root})")
            out.extend(found)
        else:
            try:
                out.append(rundir.resolve_run(ref, root))
            except FileNotFoundError as err:
                raise UserError(str(err)) from None
    seen: set[Path] = set()
    unique = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _sweep_runs(tag: str, root: Path) -> tuple[list[rundir.RunInfo], list[str]]:
    from fgbench.sweeps.state import SweepState, state_runs

    state = SweepState.load(tag, root)
    infos, labels = state_runs(state)
    if not infos:
        raise UserError(f"sweep {tag}: no run has started yet")
    return infos, labels


def _parse_where(items: list[str]) -> list[tuple[str, Any, bool]]:
    from fgbench.recipe import parse_override_value

    out = []
    for item in items:
        negate = "!=" in item
        sep = "!=" if negate else "="
        if sep not in item:
            raise UserError(f"--where {item}: expected KEY=VALUE (or KEY!=VALUE), e.g. --where optim.lr=0.005")
        key, raw = item.split(sep, 1)
        key = key.strip()
        if not key or not all(key.split(".")):
            raise UserError(f"--where {item}: empty key part")
        try:
            value = parse_override_value(raw.strip())
        except ValueError as err:  # starts like a TOML array, table or string but is not one
            raise UserError(f"--where {item}: {err}") from None
        out.append((key, value, negate))
    return out


# ------------------------------------------------------------------------------------- list


def cmd_list(args: argparse.Namespace) -> int:
    root = _root(args)
    statuses = {s.strip() for item in args.status for s in item.split(",") if s.strip()}
    bad = sorted(statuses - set(RUN_STATUSES))
    if bad:
        raise UserError(f"--status {', '.join(bad)}: choose from {', '.join(RUN_STATUSES)}")
    where = _parse_where(args.where)
    if args.sweep:
        infos, _labels = _sweep_runs(args.sweep, root)
    else:
        infos = rundir.list_runs(root)
    selected = []
    for r in infos:
        if statuses and r.status not in statuses and not ("damaged" in statuses and r.damaged):
            continue
        if args.name and not report.name_matches(args.name, r.name, r.run_id):
            continue
        if not all(report.matches_where(r.recipe, k, v, negate=n) for k, v, n in where):
            continue
        selected.append(r)
    if not selected:
        what = "no runs" if not infos else "no run matches"
        print(f"{what} in {safe(str(root))}", file=sys.stderr)
        if args.format == "json":
            sys.stdout.write("[]\n")
        return 0
    columns, rows = report.list_table(selected)
    limits = None
    width = _terminal_width()
    if args.format == "text" and width is not None:
        columns, limits = report.fit_to_width(columns, rows, width)
    sys.stdout.write(report.render(columns, rows, args.format, max_widths=limits))
    return 0


def _terminal_width() -> int | None:
    """The width a text table must fit: the terminal's (``COLUMNS`` wins). None when the output
    goes to a pipe or file without ``COLUMNS``: then lines are never cut."""

    if os.environ.get("COLUMNS", "").strip().isdigit():
        return max(40, int(os.environ["COLUMNS"]))
    if sys.stdout.isatty():
        return max(40, shutil.get_terminal_size().columns)
    return None


# ------------------------------------------------------------------------------------- show


def cmd_show(args: argparse.Namespace) -> int:
    from fgbench.rundir import files
    from fgbench.rundir.events import METRICS_FILE, read_events

    root = _root(args)
    run_dir = select_runs([args.run], root)[0]
    info = rundir.read_run(run_dir)
    events = read_events(run_dir / METRICS_FILE)
    # everything shown comes from the run's files: written whole, made safe to display at once
    out = io.StringIO()
    out.write(f"run     {info.run_id}\npath    {run_dir}\nstatus  {info.status}"
              + (f" ({info.error})" if info.error else "") + "\n")
    if info.damaged:
        out.write(f"damaged {info.damaged}\n")
    out.write(f"recipe  {info.name}  dataset {info.dataset}  model {info.arch}"
              + (f"  sweep {info.info['sweep_tag']}" if info.info.get("sweep_tag") else "") + "\n")
    ckpts = [name for name in (rundir.BEST_CKPT, rundir.LAST_CKPT) if (run_dir / rundir.CHECKPOINT_DIR / name).is_file()]
    out.write(f"checkpoints  {', '.join(ckpts) if ckpts else 'none'}\n")
    if not args.no_recipe:
        out.write(f"\n## resolved recipe ({rundir.RECIPE_FILE})\n")
        try:
            text = files.read_text(run_dir / rundir.RECIPE_FILE)
        except files.RunFileError as err:
            text = f"({err})\n"
        out.write(text if text is not None else f"(no {rundir.RECIPE_FILE})\n")
    out.write("\n## summary\n")
    out.write(report.summary_text(info.summary))
    if isinstance(info.recipe.get("reference"), dict):
        out.write("\n## reference (the seed's numbers, and this run's under the same rule)\n")
        out.write(report.reference_text(info.recipe, [info]))
    if not args.no_plots:
        out.write("\n## curves\n")
        text = report.curves_text(events, width=args.width)
        out.write(text if text else "no epoch has finished yet\n")
    from fgbench.rundir.confusion import has_confusion, read_confusion

    confusion = read_confusion(run_dir)
    out.write("\n## classes\n")
    if confusion is not None and has_confusion(confusion):
        out.write(report.confusion_text(confusion, pairs=args.pairs, all_classes=args.all_classes))
    else:
        classes = rundir.read_json(run_dir / rundir.CLASSES_FILE)
        n = f"{len(classes)} classes; " if isinstance(classes, list) else ""
        out.write(f"{n}no {rundir.CONFUSION_FILE} yet (written when the run finishes)\n")
    sys.stdout.write(safe_lines(out.getvalue()))
    return 0


# ---------------------------------------------------------------------------------- compare


def _runs_for(args: argparse.Namespace) -> tuple[list[rundir.RunInfo], list[str] | None]:
    root = _root(args)
    if args.sweep and args.runs:
        raise UserError("give RUN arguments or --sweep TAG, not both")
    if args.sweep:
        return _sweep_runs(args.sweep, root)
    if not args.runs:
        raise UserError("name at least one RUN (a run directory, its name, a prefix or a glob), or --sweep TAG")
    return [rundir.read_run(p) for p in select_runs(args.runs, root)], None


def cmd_compare(args: argparse.Namespace) -> int:
    infos, labels = _runs_for(args)
    fields = [f.strip() for f in args.fields.split(",") if f.strip()] if args.fields else None
    if labels is not None and fields is None:
        fields = []  # the variant label already names what differs
    columns, rows, notes = report.group_compare_table(infos, labels, fields=fields, baseline=args.baseline,
                                                      label_header="variant" if labels is not None else "run")
    sys.stdout.write(report.render(columns, rows, args.format))
    if notes and args.format in ("markdown", "text"):
        sys.stdout.write("\n" + "".join(f"{n}\n" for n in notes))
    return 0


# ----------------------------------------------------------------------------------- export


def cmd_export(args: argparse.Namespace) -> int:
    if args.runs or args.sweep:
        infos, _labels = _runs_for(args)
    else:  # no RUN: every run, in the order `runs list` shows them
        root = _root(args)
        infos = rundir.list_runs(root)
        if not infos:
            raise UserError(f"no runs in {root} to export")
    if args.output == "-":
        if args.format == "tensorboard":
            raise UserError("-o -: tensorboard writes a directory; give a directory path")
        text, n = report.export_csv(infos) if args.format == "csv" else report.export_jsonl(infos)
        sys.stdout.write(text)
        sys.stdout.flush()
        print(f"{plural(len(infos), 'run')}, {plural(n, 'row' if args.format == 'csv' else 'event')}", file=sys.stderr)
        return 0
    out = Path(args.output).expanduser()
    if out.exists() and not args.force:
        raise UserError(f"{safe(str(out))}: already exists (use --force to replace it)")
    made = _missing_parents(out)
    try:
        if args.format == "tensorboard":
            from fgbench.export_tb import export_tensorboard

            n = export_tensorboard(infos, out, force=args.force)
            print(f"{safe(str(out))}: {plural(len(infos), 'run')}, {plural(n, 'scalar')}; "
                  f"view with: tensorboard --logdir {safe(str(out))}")
            return 0
        from fgbench.recipe import atomic_write_text

        text, n = report.export_csv(infos) if args.format == "csv" else report.export_jsonl(infos)
        if out.is_dir():
            raise UserError(f"{safe(str(out))}: is a directory; give a file name")
        atomic_write_text(out, text)
    except (OSError, UserError) as err:
        for d in made:  # leave no directory behind (deepest first; only ours, only if empty)
            try:
                d.rmdir()
            except OSError:
                break
        if isinstance(err, UserError):
            raise
        if isinstance(err, DiskFullError):
            raise UserError(str(err)) from None
        raise UserError(f"{safe(str(out))}: cannot write the export: {safe(err.strerror or str(err))}") from None
    print(f"{safe(str(out))}: {plural(len(infos), 'run')}, {plural(n, 'row' if args.format == 'csv' else 'event')}")
    return 0


def _missing_parents(path: Path) -> list[Path]:
    """The directories above ``path`` that do not exist yet, deepest first (an export that fails
    removes those it made)."""
    out = []
    for parent in path.absolute().parents:
        try:
            if os.path.lexists(parent):
                break
        except (OSError, ValueError):
            break
        out.append(parent)
    return out


# --------------------------------------------------------------------------------------- rm


def cmd_rm(args: argparse.Namespace) -> int:
    root = _root(args)
    targets = select_runs(args.runs, root)
    infos = [rundir.read_run(p) for p in targets]
    alive = [i for i in infos if i.status == "running"]
    if alive:
        raise UserError(f"{alive[0].path}: is still running; stop it before deleting it")
    print(f"delete {len(infos)} run(s):")
    for i in infos:  # made safe: a name with an escape sequence could blank or rewrite this list
        link = f"  (a link to {safe(os.readlink(i.path))}: only the link is removed)" if i.path.is_symlink() else ""
        print(f"  {safe(str(i.path))}  ({i.status}, {safe(i.name)}){link}")
    if not args.yes:
        print("delete them? [y/N] ", end="", flush=True)
        answer = sys.stdin.readline()
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    for i in infos:
        try:
            if i.path.is_symlink():  # a run linked into the root: what it points to is not ours to delete
                i.path.unlink()
            else:
                shutil.rmtree(i.path)
        except OSError as err:
            raise UserError(f"{safe(str(i.path))}: cannot delete: {safe(err.strerror or str(err))}") from None
    print(f"deleted {len(infos)} run(s)")
    return 0


# ----------------------------------------------------------------------- predict / evaluate


def cmd_predict(args: argparse.Namespace) -> int:
    root = _root(args)
    run_dir = select_runs([args.run], root)[0]
    missing = [i for i in args.images if not Path(i).is_file()]
    if missing:
        raise UserError(f"{safe(missing[0])}: no such image file")
    from fgbench.train.predict import predict_images  # torch from here on

    results = predict_images(run_dir, args.images, top_k=args.top_k, ema=args.ema, checkpoint=args.checkpoint,
                             device=args.device, test_size=args.test_size)
    if args.format == "json":
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
        return 0
    if results:
        head = results[0]
        print(f"{safe(run_dir.name)}: {head['checkpoint']} checkpoint, {'EMA' if head['model'] == 'ema' else 'raw'} "
              f"weights from epoch {head['epoch']}")
    for res in results:  # image paths and class names come from disk: shown safe
        print(safe(res["image"]))
        names = [safe(c["class"]) for c in res["top"]]
        w = max(len(n) for n in names)
        for rank, (c, name) in enumerate(zip(res["top"], names), 1):
            print(f"  {rank}. {name.ljust(w)}  {100 * c['probability']:6.2f}%")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    root = _root(args)
    run_dir = select_runs([args.run], root)[0]
    from fgbench.train.predict import evaluate_run  # torch from here on

    results = evaluate_run(run_dir, test_sizes=args.test_sizes or None, ema=args.ema, checkpoint=args.checkpoint,
                           split=args.split, device=args.device, batch_size=args.batch_size, workers=args.workers)
    if args.format == "json":
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
        return 0
    columns = [("test_size", "test size", "text"), ("top1", "top-1", "acc"), ("topk", f"top-{results[0]['k']}", "acc"),
               ("loss", "loss", "acc"), ("images", "images", "text")]
    head = results[0]
    print(f"{safe(run_dir.name)}: {head['checkpoint']} checkpoint, {'EMA' if head['model'] == 'ema' else 'raw'} "
          f"weights from epoch {head['epoch']}, {head['split']} split")
    rows = [{**r, "loss": r.get("loss")} for r in results]
    sys.stdout.write(report.render(columns, rows, "markdown" if args.format == "markdown" else "text"))
    return 0

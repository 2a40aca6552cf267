"""`fgbench run`: parse here (pure zone), train in ``fgbench.train.runner`` (imports torch)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from fgbench.errors import UserError

if TYPE_CHECKING:
    from fgbench.rundir.request import RunRequest


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="train a recipe headless",
        description="Train a recipe without the TUI. Exit codes: 0 done, 1 training failed, "
        "2 bad input, 130 interrupted (a checkpoint was written; continue with --resume).",
    )
    p.add_argument("recipe", nargs="?", metavar="RECIPE", help="recipe TOML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field, e.g. --set optim.lr=0.01 (repeatable)")
    p.add_argument("--run-dir", metavar="DIR", help="use this (new or empty) directory for the run")
    p.add_argument("--runs-root", metavar="DIR", help="create the run directory under DIR")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run from its last checkpoint")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], help="override runtime.device")
    p.add_argument("--progress", choices=["auto", "bar", "lines", "none"], default="auto",
                   help="progress display: a bar on a terminal, plain lines otherwise (auto)")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="processes (one per GPU) on this node; >1 trains with DistributedDataParallel, "
                   "launched through torchrun (python -m torch.distributed.run)")
    p.add_argument("--nnodes", default="1", metavar="N", help="nodes taking part (torchrun --nnodes); run the same "
                   "command on every node with its own --node-rank")
    p.add_argument("--node-rank", type=int, default=0, metavar="R", help="this node's rank, 0 to N-1 (node 0 "
                   "writes the run directory)")
    p.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="node 0's address and a free port, the same on "
                   "every node (needed with --nnodes > 1)")
    p.add_argument("--sweep-tag", metavar="TAG", help=argparse.SUPPRESS)
    p.add_argument("--trial", metavar="SPEC:NUMBER", help=argparse.SUPPRESS)  # a search trial (fgbench.search)
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from fgbench.rundir.request import RunRequest

    request = RunRequest.from_args(args)
    request.check()
    if request.trial:
        # A search trial: import optuna (and SQLAlchemy) before torch. Imported after torch, the
        # run's DataLoader workers outlived the run on Python 3.11 / torch 2.x and the process
        # hung at exit joining them (seen with optuna 5.0); imported first, it exits cleanly.
        from fgbench.sweeps import search

        search._optuna()
    recipe = None
    if request.resume:
        check_resumable(request)
        _check_resumed_dataset(request)
    else:
        check_output_dirs(request)
        from fgbench.recipe import load_recipe

        assert request.recipe is not None  # request.check(): a recipe or --resume
        recipe = load_recipe(request.recipe, list(request.overrides))  # a bad recipe fails here, before torch
        check_dataset(recipe, request.recipe)
    from fgbench.train.runner import run_command

    return run_command(request, recipe)


def check_resumable(args: RunRequest) -> None:
    """The run to resume can be read: a damaged one (a FIFO, a device or a forged file among its
    files, see ``fgbench.rundir.files``) is one line and exit 2, before torch is imported and
    before the trainer would open its files for writing."""
    from fgbench.rundir.layout import resolve_run
    from fgbench.rundir.reader import RunReader

    assert args.resume is not None
    try:
        run_dir = resolve_run(args.resume, args.runs_root)
    except FileNotFoundError as err:
        raise UserError(f"--resume: {err}") from None
    reader = RunReader(run_dir)
    reader.update()
    if reader.damaged:
        raise UserError(f"{_show(run_dir)}: cannot resume a damaged run: {reader.damaged}")


def check_dataset(recipe, source: str | os.PathLike[str]) -> None:
    """The recipe's dataset can be read: a file check before torch is imported (which costs
    seconds of CPU) and before anything is written, so a dataset that is not downloaded is one
    line naming it and the command that gets it, exit 2."""
    from fgbench.data import catalog

    catalog.require_ready(recipe.data.dataset, recipe.data.root, where=f"{_show(Path(source))}: ")


def _check_resumed_dataset(request: RunRequest) -> None:
    """``--resume``: the same check on the run's own recipe. A run directory whose recipe cannot
    be read is left to the runner, which owns those messages."""
    from fgbench.recipe import load_recipe
    from fgbench.rundir.layout import RunDir

    source = RunDir(Path(str(request.resume)).expanduser()).recipe
    try:
        recipe = load_recipe(source) if source.is_file() else None
    except (UserError, OSError):
        recipe = None
    if recipe is not None:
        check_dataset(recipe, source)


def check_output_dirs(args: RunRequest) -> None:
    """Where the run directory will go can be made: checked before torch is imported and before
    anything is written, so ``--run-dir`` under a regular file, a ``--runs-root`` that is a file
    or a directory that cannot be written is one line and exit 2, not a traceback after the
    dataset was indexed."""
    from fgbench import paths

    if args.run_dir:
        run_dir = Path(args.run_dir).expanduser()
        if os.path.lexists(run_dir) and not run_dir.is_dir():
            raise UserError(f"{_show(run_dir)}: --run-dir exists and is not a directory")
        if run_dir.is_dir():
            from fgbench.rundir.layout import RunDir
            from fgbench.rundir.lock import RunBusy, holder

            try:
                fresh = RunDir(run_dir).is_fresh()  # empty, or only what a launcher put there
            except OSError as err:
                raise UserError(f"{_show(run_dir)}: --run-dir cannot be read: {err.strerror or err}") from None
            if not fresh:
                busy = holder(run_dir)
                if busy is not None:
                    raise UserError(str(RunBusy(run_dir, busy)))
                raise UserError(f"{_show(run_dir)}: --run-dir is not empty (give a new or empty directory, "
                                "or --resume it)")
            _writable(run_dir, "--run-dir")
        else:
            _creatable(run_dir, "--run-dir")
        return
    if args.runs_root:
        root, flag = Path(args.runs_root).expanduser(), "--runs-root"
    else:
        root, flag = paths.runs_dir(), "the runs directory (FGBENCH_RUNS / FGBENCH_HOME)"
    if os.path.lexists(root) and not root.is_dir():
        raise UserError(f"{_show(root)}: {flag} exists and is not a directory")
    if root.is_dir():
        _writable(root, flag)
    else:
        _creatable(root, flag)


def _show(path: Path) -> str:
    from fgbench.textsafe import safe

    return safe(str(path))


def _writable(path: Path, flag: str) -> None:
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{_show(path)}: {flag}: permission denied (cannot write in this directory)")


def _creatable(path: Path, flag: str) -> None:
    """``path`` does not exist: its nearest existing ancestor must be a writable directory."""
    parent = path.absolute().parent
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{_show(path)}: {flag} cannot be created: {_show(parent)} is not a directory")
    _writable(parent, flag)

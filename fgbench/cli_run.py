"""`fgbench run`: parse here (pure zone), train in ``fgbench.train.runner`` (imports torch)."""

from __future__ import annotations

import argparse


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
    from fgbench.errors import UserError

    if not args.recipe and not args.resume:
        raise UserError("fgbench run: give a RECIPE file or --resume RUN_DIR")
    if args.trial:
        # A search trial: import optuna (and SQLAlchemy) before torch. Imported after torch, the
        # run's DataLoader workers outlived the run on Python 3.11 / torch 2.x and the process
        # hung at exit joining them (seen with optuna 5.0); imported first, it exits cleanly.
        from fgbench import search

        search._optuna()
    from fgbench.train.runner import run_command

    return run_command(args)

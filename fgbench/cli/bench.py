"""`fgbench bench RECIPE`: parse here (pure zone), measure in ``fgbench.train.bench`` (imports torch)."""

from __future__ import annotations

import argparse

from fgbench.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="how fast a recipe can train on this machine, and what stops it",
        description="Time the model's step on batches in memory (the limit), each loader the recipe allows "
        "alone, and a short end-to-end run; print images/s, the ratios to the limit, the bottleneck and what "
        "to change (including bf16 autocast + channels_last where the hardware supports bf16). Writes nothing "
        "into the runs root.",
    )
    p.add_argument("recipe", metavar="RECIPE", help="recipe TOML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field, e.g. --set data.workers=4 (repeatable)")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], help="override runtime.device")
    p.add_argument("--seconds", type=_seconds, default=2.0, metavar="S",
                   help="seconds per measurement, after a short warm-up (default 2)")
    p.add_argument("--json", metavar="FILE", help="also write the numbers to FILE")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(handler=_handle)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"expected more than 0 and at most 600 seconds, not {text}")
    return value


def _handle(args: argparse.Namespace) -> int:
    from fgbench.cli.train import check_dataset
    from fgbench.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)  # a bad recipe fails here, before torch is imported
    check_dataset(recipe, args.recipe)
    if args.json:
        from pathlib import Path

        out = Path(args.json).expanduser()
        if out.is_dir():
            raise UserError(f"--json {args.json}: is a directory; give a file name")
    from fgbench.train.bench import bench_command

    return bench_command(args)

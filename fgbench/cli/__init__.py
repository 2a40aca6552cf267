"""Command line entry point.

The top-level parser lives here; each area registers its own sub-commands
(``register(subparsers)`` in the modules of ``COMMAND_MODULES``) and imports its heavy parts
(torch, textual) only inside the handler, so ``fgbench --help`` and ``fgbench recipe validate``
stay in the pure zone and answer fast.

Exit codes are declared once, in :mod:`fgbench.errors`: 0 done, 1 the work failed, 2 bad input
(a one-line message, no traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from fgbench import __version__
from fgbench.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, UserError
from fgbench.textsafe import safe_lines

COMMAND_MODULES = (
    "fgbench.cli.recipes",   # fgbench recipe new|validate|show
    "fgbench.cli.train",     # fgbench run
    "fgbench.cli.data",      # fgbench data list|download|verify|import|remove
    "fgbench.cli.runs",      # fgbench runs ..., predict, evaluate
    "fgbench.cli.sweep",     # fgbench sweep
    "fgbench.cli.bench",     # fgbench bench
)



class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own exit code is 2 as well
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {safe_lines(message)}\n")  # it quotes the arguments


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fgbench",
        description="Train fine-grained image classifiers from TOML recipes. "
        "Without a command, opens the terminal workbench.",
    )
    parser.add_argument("--version", action="version", version=f"fgbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    tui = sub.add_parser("tui", help="open the terminal workbench (the default)")
    tui.set_defaults(handler=_run_tui)
    comp = sub.add_parser("completion", help="print a shell completion script (bash, zsh, fish)",
                          description="Print the completion script for SHELL. bash: "
                          "`fgbench completion bash > ~/.local/share/bash-completion/completions/fgbench`; "
                          "zsh: `fgbench completion zsh > ~/.zfunc/_fgbench` (with ~/.zfunc in $fpath); "
                          "fish: `fgbench completion fish > ~/.config/fish/completions/fgbench.fish`.")
    comp.add_argument("shell", choices=["bash", "zsh", "fish"], metavar="SHELL", help="bash, zsh or fish")
    comp.set_defaults(handler=_completion)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _completion(args: argparse.Namespace) -> int:
    """The script shtab generates from this very parser: every command, option and choice."""
    import shtab

    sys.stdout.write(shtab.complete(build_parser(), shell=args.shell))
    return EXIT_OK


def _run_tui(args: argparse.Namespace) -> int:
    from fgbench.tui import app

    return app.main()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        if args.command is None:
            handler = _run_tui
        else:  # a group such as `fgbench recipe` without its sub-command
            try:  # argparse's --help exits 0; a missing action is bad input
                parser.parse_args([args.command, "--help"])
            except SystemExit:
                pass
            return EXIT_BAD_INPUT
    try:
        return int(handler(args) or 0)
    except UserError as err:
        print(safe_lines(str(err)), file=sys.stderr)  # it may quote a file's content or a name
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())

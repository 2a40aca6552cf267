"""How a run was asked for: ``fgbench run``'s arguments as one frozen value (pure zone).

The CLI builds a :class:`RunRequest` from its parsed arguments; the runner, the torchrun launcher
and the run directory's ``run_info.json`` read it. Nothing downstream of the CLI sees an
``argparse.Namespace``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from fgbench.errors import UserError
from fgbench.textsafe import safe


RESUME_OVERRIDES = ("data.skip_corrupt",)
"""The recipe fields ``--resume`` may change with ``--set``: what a run that met an undecodable
image needs to go on without it. Every other field stays as the run began (its numbers depend on
them); the change is written into the run's ``recipe.toml`` and its resume record."""


@dataclass(frozen=True)
class RunRequest:
    recipe: str | None = None
    """the recipe file (None with ``resume``)"""
    overrides: tuple[str, ...] = ()
    """``--set KEY=VALUE`` items, in order"""
    run_dir: str | None = None
    """``--run-dir``: a new or empty directory for the run"""
    runs_root: str | None = None
    """``--runs-root``: where a new run directory goes (default: the user's runs directory)"""
    resume: str | None = None
    """``--resume``: the run to continue (a path, a name, a unique prefix...)"""
    device: str | None = None
    """``--device``: overrides ``runtime.device``"""
    progress: str = "auto"
    nproc: int = 1
    nnodes: str = "1"
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    sweep_tag: str | None = None
    """the sweep this run belongs to (recorded in ``run_info.json``)"""
    trial: str | None = None
    """``SPEC:NUMBER`` of a search trial (its pruner sees the run's events)"""
    argv: tuple[str, ...] = field(default_factory=lambda: tuple(sys.argv))
    """the command line, recorded in ``run_info.json``"""

    @classmethod
    def from_args(cls, args: Any) -> "RunRequest":
        """From ``fgbench run``'s parsed arguments (any object with those attributes)."""
        return cls(recipe=args.recipe, overrides=tuple(args.overrides or ()), run_dir=args.run_dir,
                   runs_root=args.runs_root, resume=args.resume, device=args.device, progress=args.progress,
                   nproc=args.nproc, nnodes=str(args.nnodes), node_rank=args.node_rank,
                   rdzv_endpoint=args.rdzv_endpoint, sweep_tag=args.sweep_tag, trial=args.trial)

    def check(self) -> None:
        """What the arguments alone can tell is wrong (exit 2), before anything is loaded."""
        if not self.recipe and not self.resume:
            raise UserError("fgbench run: give a RECIPE file or --resume RUN_DIR")
        if self.nproc < 1:
            raise UserError(f"--nproc: must be at least 1, not {self.nproc}")
        if self.resume and self.recipe:
            raise UserError("fgbench run: give either a RECIPE or --resume RUN_DIR, not both")
        for item in self.overrides if self.resume else ():
            key = item.split("=", 1)[0].strip()
            if key not in RESUME_OVERRIDES:
                raise UserError(f"--set {safe(item)}: not allowed with --resume (a resumed run keeps its recipe; "
                                f"only {', '.join(RESUME_OVERRIDES)} may change)")

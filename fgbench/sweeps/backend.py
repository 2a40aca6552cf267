"""Where a sweep's points run: the :class:`Backend` protocol and the one registry of backends.

Every place that depends on where points run (``fgbench sweep``, ``--status``, ``--cancel``,
``--continue``, the TUI's scheduler column) asks :func:`get` for the sweep's backend and calls the
protocol; none compares backend names. Adding a backend touches three files: its module (a class
with the protocol's methods), :data:`BACKENDS` here, and the ``sweep.launcher`` choices in
``fgbench/recipe.py`` (the schema; the command line's ``--launcher`` choices and help come from here).

Decisions:

* ``submit`` starts every point that is neither finished nor already queued. A backend that runs
  the points itself (local) returns when they have all ended, with the sweep's exit code; one that
  hands them to a scheduler (SLURM) returns once they are queued (``Submitted.finished`` is False)
  and ``poll`` tells when the scheduler is done with them.
* ``poll`` answers only what the scheduler alone knows (queued, requeued, why a job ended). A
  point's status comes from its run directory; the scheduler's word counts only for a point that
  has no run yet (one rule: :func:`fgbench.sweeps.state.point_status`).
* The registry holds import paths, not classes, so that choosing one backend never imports the
  other (and the modules may import this one for its types without a cycle).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from fgbench.errors import UserError

if TYPE_CHECKING:
    from fgbench.recipe import SweepConfig
    from fgbench.sweeps.state import SweepState

BACKENDS: dict[str, tuple[str, str]] = {
    "local": ("fgbench.sweeps.local:LocalBackend", "on this machine (default)"),
    "slurm": ("fgbench.sweeps.slurm:SlurmBackend", "one job per point, as a job array through submitit"),
}
"""Backend name (``--launcher``, ``sweep.launcher``) -> (``module:class``, what ``--launcher``'s help
says of it). The classes are imported only when used, so ``fgbench --help`` stays fast."""


@dataclass(frozen=True)
class SchedulerState:
    """What a scheduler says about one point's job (``state`` is ``?`` where no one can say)."""

    state: str
    text: str
    """As the status table shows it, e.g. ``PENDING (Priority)`` or ``RUNNING, requeued 1x``."""
    active: bool
    """Queued or running: the scheduler will still start or finish it."""
    running: bool = False
    """The scheduler runs the job now."""
    died: bool = False
    """The job ended abnormally at the scheduler (failed, node failure, out of memory, time
    limit), whatever its trainer did. See :func:`fgbench.sweeps.state.point_status` for what this
    may say of a point (only of one without a run)."""


@dataclass(frozen=True)
class SubmitOptions:
    """How ``fgbench sweep`` asked for the points to run."""

    retry_failed: bool = False
    slots: Sequence[str | None] = (None,)
    """Local: GPU ids per concurrent run (``--gpus``, ``--nproc``); ``(None,)`` is one at a time."""
    extra_args: Sequence[str] = ()
    """``fgbench run`` arguments for this invocation only (the state's ``run_args`` are for every run)."""
    fresh: bool = True
    """A new sweep (its folder is removed if nothing could be submitted), not a ``--continue``."""


@dataclass
class Submitted:
    finished: bool
    """The points have all ended (``code`` is the sweep's exit code), or they are queued."""
    code: int = 0
    points: list[int] = field(default_factory=list)
    """The indices of the points submitted (a scheduler backend)."""
    message: str = ""


class Backend(Protocol):
    name: str
    scheduler: str
    """The scheduler's name for the status table's columns, or "" when there is none."""
    runs_here: bool
    """The points run on this machine (``--gpus`` applies)."""

    def configure(self, spec: "SweepConfig | None", cli: dict[str, Any], source: str) -> dict[str, Any] | None:
        """The backend's resolved settings for a new sweep (recorded in the state), from the recipe's
        ``[sweep]`` table, settings.toml and the command line's scheduler flags; None when it has none."""

    def unavailable(self) -> str | None:
        """Why this backend cannot be used here (a missing client, say), or None."""

    def submit(self, state: "SweepState", options: SubmitOptions) -> Submitted:
        """Start (or queue) every point that is neither finished nor already queued."""

    def poll(self, state: "SweepState") -> dict[int, SchedulerState]:
        """The scheduler's state of each point that has a job (point index ->), {} without a scheduler."""

    def cancel(self, state: "SweepState") -> str:
        """Stop what is left (running runs checkpoint first); says what it did."""

    def scheduler_states(self, runs_root: str | Path) -> dict[str, str]:
        """Run directory -> the scheduler's word on its point's job, for every sweep of this backend
        under ``runs_root`` (the TUI's Runs pane); {} without a scheduler."""


def names() -> list[str]:
    return list(BACKENDS)


def help_text() -> str:
    """``--launcher``'s help: each backend with what it does."""
    return "; ".join(f"{name}: {what}" for name, (_target, what) in BACKENDS.items())


def get(name: str) -> Backend:
    try:
        target, _what = BACKENDS[name]
    except KeyError:
        raise UserError(f"launcher {name!r}: not one of {', '.join(BACKENDS)}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)()


def resolve_launcher(cli: str | None, spec: "SweepConfig | None") -> str:
    """``--launcher``, else the recipe's ``sweep.launcher`` when written, else settings.toml's
    ``[sweep] launcher``, else ``local``."""
    if cli:
        return cli
    if spec is not None and "launcher" in spec.model_fields_set:
        return spec.launcher
    from fgbench import paths, settings

    value = (settings.load_settings().get("sweep") or {}).get("launcher")
    if value is None:
        return "local"
    if value not in BACKENDS:
        raise UserError(f"{paths.settings_file()}: sweep.launcher: {value!r} is not one of {', '.join(BACKENDS)}")
    return value


def scheduler_states(runs_root: str | Path) -> dict[str, str]:
    """Every backend's :meth:`Backend.scheduler_states`, merged (what the TUI shows beside a run)."""
    out: dict[str, str] = {}
    for name in BACKENDS:
        out.update(get(name).scheduler_states(runs_root))
    return out

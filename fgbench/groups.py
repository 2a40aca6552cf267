"""Groups of runs: runs of the same experiment that differ only in their seed.

Pure zone (stdlib only; not even :mod:`fgbench.report`, which uses this module).

Identity. Two runs belong to the same group when their resolved recipes (``recipe.toml`` in the
run directory, every default written out) are equal once these fields are left out:

* :data:`IDENTITY_IGNORED`: ``runtime.seed`` (the axis a group spans), and fields that do not
  change what is trained or measured: the bookkeeping ``name``, ``description``, ``sweep`` (the
  sweep definition that launched it), ``reference`` (what the seed reported), ``tracking`` (where
  events are mirrored), ``runtime.log_every_steps`` and ``runtime.checkpoint_every_epochs``
  (how often a step event or the ``last`` checkpoint is written).

Everything else counts, including fields that only change numerics slightly (``data.workers``,
``runtime.device``, ``data.eval_batch_size``): a group never hides a difference a reader could
not see. The comparison is over every field of the nested recipe (``optim.lr``,
``data.train_size``, ...): numbers compare by value (an int 1 equals a float 1.0), a field present in one recipe and absent
in the other differs, lists compare as a whole. A run whose recipe could not be read is a group
of its own. The key is a short SHA-256 of that canonical form, so it is stable across processes
and fgbench versions that write the same recipe.

A seed run twice (same recipe, same seed) stays in the group as two runs, but the statistics count
it once (:func:`one_per_seed`): its runs are averaged into one value for that seed, and n counts
seeds. A rerun of a seed measures the machine's nondeterminism (none at all on a CPU), not the spread
over seeds; counted as another seed it would narrow the interval towards zero width and make any
difference look resolved.

The Compare pane's group chart follows the same rule at every x (:func:`seed_curve`): its curve
is the mean over seeds of each seed's mean, its band spans the seeds' values.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from fgbench.rundir.reader import RunInfo

SEED_FIELD = "runtime.seed"

IDENTITY_IGNORED: tuple[str, ...] = (
    "name",
    "description",
    "sweep",
    "reference",
    "tracking",
    SEED_FIELD,
    "runtime.log_every_steps",
    "runtime.checkpoint_every_epochs",
)
"""Dotted recipe fields (a table name covers everything in it) that group identity leaves out."""


def _ignored(key: str) -> bool:
    return any(key == f or key.startswith(f + ".") for f in IDENTITY_IGNORED)


def _canonical(value: Any, path: str = "") -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        out = {}
        for k in sorted(value, key=str):
            sub = f"{path}.{k}" if path else str(k)
            if not _ignored(sub):
                out[str(k)] = _canonical(value[k], sub)
        return out
    return repr(value)


def identity_fields(recipe: dict[str, Any]) -> dict[str, Any]:
    """The resolved recipe as group identity sees it: the ignored fields left out, numbers as
    floats, tables with sorted keys."""
    return _canonical(recipe)


def identity(recipe: dict[str, Any]) -> str:
    """The group key of a resolved recipe: 12 hex digits of the SHA-256 of its identity fields."""
    text = json.dumps(identity_fields(recipe), sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def seed_of(recipe: dict[str, Any]) -> int | None:
    """The run's ``runtime.seed`` (the schema's default 0 when the recipe leaves it out; None for
    a recipe that could not be read or holds no integer there)."""
    if not recipe:
        return None
    runtime = recipe.get("runtime")
    seed = runtime.get("seed", 0) if isinstance(runtime, dict) else 0
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


@dataclass
class Group:
    """Runs with the same identity, in the order they were given."""

    key: str
    runs: list[Any] = field(default_factory=list)
    """``fgbench.rundir.RunInfo`` objects (anything with ``.recipe``)"""

    @property
    def seeds(self) -> list[int | None]:
        return [seed_of(r.recipe) for r in self.runs]

    @property
    def first(self) -> Any:
        return self.runs[0]

    def __len__(self) -> int:
        return len(self.runs)


def group_runs(runs: Sequence["RunInfo"]) -> list[Group]:
    """Runs into groups by :func:`identity`, groups in the order of their first run."""
    groups: dict[str, Group] = {}
    for i, run in enumerate(runs):
        recipe = run.recipe if isinstance(run.recipe, dict) else {}
        key = identity(recipe) if recipe and not run.damaged else f"unread-{i}"
        groups.setdefault(key, Group(key)).runs.append(run)
    return list(groups.values())


SeedT = TypeVar("SeedT", int, "int | None")


def one_per_seed(pairs: Sequence[tuple[SeedT, float]]) -> list[tuple[SeedT, float]]:
    """One ``(seed, value)`` per seed, in the order seeds first appear: the mean of the values of a
    seed that ran more than once. A value whose seed is unknown (None) stays on its own."""
    by_seed: dict[object, tuple[SeedT, list[float]]] = {}
    for i, (seed, value) in enumerate(pairs):
        by_seed.setdefault(("unknown", i) if seed is None else seed, (seed, []))[1].append(value)
    return [(seed, sum(vals) / len(vals)) for seed, vals in by_seed.values()]


def seed_counts(seeds: Sequence[int | None]) -> str:
    """The seeds column: ``0,1,2``; a seed run more than once as ``0x2``; an unknown one as ``?``."""
    counts: dict[int, int] = {}
    order: list[int | None] = []
    for s in seeds:
        if s is None:
            order.append(None)
        elif s not in counts:
            counts[s] = 1
            order.append(s)
        else:
            counts[s] += 1
    return ",".join("?" if s is None else (f"{s}x{counts[s]}" if counts[s] > 1 else str(s)) for s in order)


def _value_at(xs: Sequence[float], ys: Sequence[float], x: float) -> float | None:
    """The value of the last point at or before ``x`` (xs ascending); None before the first
    point or past the last (the run never got there)."""
    if not xs or x < xs[0] - 1e-9 or x > xs[-1] + 1e-9:
        return None
    i = bisect.bisect_right(xs, x + 1e-9) - 1
    return ys[i] if i >= 0 else None


def seed_curve(members: Sequence[tuple[int | None, Sequence[float], Sequence[float]]],
               ) -> tuple[list[float], list[float], list[float], list[float]]:
    """One group's curve from its runs' ``(seed, xs, ys)``: at every x any run has, each run's
    value there (its last point at or before x; a run that has not reached x, or started after
    it, is left out), one value per seed by :func:`one_per_seed` (a seed run twice counts once, as
    the mean of its runs), then the mean, min and max over those seeds' values. Returns
    ``(xs, mean, min, max)``; the same rule as the tables' n, mean and min-max."""
    xs = sorted({x for _seed, mx, _my in members for x in mx})
    out_x: list[float] = []
    mean: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    for x in xs:
        found = [(seed, v) for seed, mx, my in members if (v := _value_at(mx, my, x)) is not None]
        vals = [v for _seed, v in one_per_seed(found)]
        if vals:
            out_x.append(x)
            mean.append(sum(vals) / len(vals))
            lo.append(min(vals))
            hi.append(max(vals))
    return out_x, mean, lo, hi

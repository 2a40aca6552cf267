"""A sweep's plan: its points, their expansion and overrides (pure: no torch, no files written).

The format (a ``[sweep]`` table in the recipe; see ``fgbench.recipe.SweepConfig``)::

    [sweep]
    grid = { "optim.lr" = [0.1, 0.01] }          # every combination of these values
    seeds = [0, 1, 2]                            # every point once per seed

    [[sweep.variants]]                           # named rows, in this order
    name = "B"
    [[sweep.variants]]
    name = "B+A"
    set = { "optim.name" = "adam", "optim.lr" = 1e-4 }

Variants are crossed with the grid and the grid with the seeds; ``fgbench sweep RECIPE --grid
key=v1,v2`` adds (or replaces) grid axes from the command line and ``--seeds 0,1,2`` (or ``--seeds
3``) replaces the seeds. A grid value wins over a variant's value for the same field.

Decisions:

* Everything is expanded and validated before the first run starts: a typo in the sixth variant
  fails in a second, not after five trainings. Errors read ``FILE: sweep.variants[5] (B+A+W+C):
  optim.lr: ...``.
* The points are counted before anything is expanded (variants x grid values x seeds, or a
  search's trials): past :data:`MAX_POINTS` the sweep is refused with one line, so a short file
  that describes 10^10 points never fills the memory (``recipe validate`` and ``--dry-run`` too).
* Overrides apply to the recipe as the user wrote it (not the resolved one with every default),
  so switching ``optim.name`` from sgd to adam does not drag SGD's ``momentum`` along. If the
  user did write a field that the new union variant does not have (``momentum`` under adam), it
  is dropped and the plan says so, instead of failing every such variant.
* Seeds are an axis like any other, with one difference: a point's *group* is its label without
  the seed (``B+A`` for ``B+A seed=1``), so the runs of one group differ only in ``runtime.seed``.
  A grid over ``runtime.seed`` (with no ``seeds``) is taken as the seed axis.
  Each (point, seed) is its own run directory. A sweep that also sweeps ``runtime.seed`` through
  its grid or a variant is refused: one seed axis.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from fgbench.errors import UserError
from fgbench.textsafe import safe
from fgbench.textsafe import safe_lines
from fgbench.recipe import (
    UNION_SECTIONS,
    Recipe,
    RecipeError,
    SweepConfig,
    parse_override_value,
    read_recipe_data,
    union_tag_field,
    union_variants,
    validate_recipe,
)

#: union sections and their tag field, as the recipe's schema declares them
UNION_TAGS = {section: union_tag_field(section) for section in UNION_SECTIONS}

PENDING, RUNNING, COMPLETED, FAILED, INTERRUPTED, PRUNED = (
    "pending", "running", "completed", "failed", "interrupted", "pruned")
#: a point in one of these is finished: --continue never runs it again
DONE = (COMPLETED, PRUNED)

MAX_POINTS = 10_000
"""The most points one sweep may have (counted before expanding; each is validated up front)."""
SEED_FIELD = "runtime.seed"

# ------------------------------------------------------------------------------- expansion


def flatten_set(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1}}`` and ``{"optim.lr": 1}`` both become ``{"optim.lr": 1}``."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_set(value, path + "."))
        else:
            out[path] = value
    return out


def parse_grid_arg(item: str) -> tuple[str, list[Any]]:
    """``--grid optim.lr=0.1,0.01`` -> ("optim.lr", [0.1, 0.01]). Values are TOML
    (``--grid data.train_size=[224,448],[448]`` gives two lists); bare words are strings
    (``--grid optim.name=sgd,adam``)."""
    if "=" not in item:
        raise UserError(f"--grid {item}: expected KEY=V1,V2,..., e.g. --grid optim.lr=0.1,0.01")
    key, raw = (s.strip() for s in item.split("=", 1))
    if not key or not all(key.split(".")):
        raise UserError(f"--grid {item}: empty key part")
    if not raw:
        raise UserError(f"--grid {item}: no values")
    from fgbench.tomlread import tomllib

    try:
        values = tomllib.loads(f"v = [{raw}]")["v"]
    except tomllib.TOMLDecodeError:
        try:
            values = [parse_override_value(part.strip()) for part in _split_top_level(raw)]
        except ValueError as err:  # a value that starts like a TOML array, table or string but is not one
            raise UserError(f"--grid {safe(item)}: {safe(str(err))}") from None
    if any(v == "" for v in values):
        raise UserError(f"--grid {item}: empty value")
    return key, values


def _split_top_level(raw: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in raw:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def apply_set(base: dict[str, Any], overrides: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The recipe dict with dotted ``overrides`` applied, plus notes on fields dropped because a
    union tag changed (see the module docstring). Raises ValueError on a path through a value."""
    out = copy.deepcopy(base)
    notes: list[str] = []
    for key, value in overrides.items():
        parts = key.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ValueError(f"{key}: {'.'.join(parts[:i + 1])} is not a table")
            node = nxt
        node[parts[-1]] = copy.deepcopy(value)
    for section, tag in UNION_TAGS.items():
        tag_key = f"{section}.{tag}"
        if tag_key not in overrides:
            continue
        table = _get_table(out, section)
        variants = union_variants(section)
        cls = variants.get(str(table.get(tag))) if table is not None else None
        if cls is None or table is None:
            continue  # an unknown tag: validation reports it with the list of choices
        dropped = [name for name in table if name not in cls.model_fields and f"{section}.{name}" not in overrides]
        for name in dropped:
            del table[name]
        if dropped:
            notes.append(f"{tag_key} is now {table.get(tag)!r}: dropped {', '.join(f'{section}.{n}' for n in dropped)}")
    return out, notes


def _get_table(data: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node if isinstance(node, dict) else None


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Shortest unambiguous suffix of each dotted key (``optim.lr`` -> ``lr``)."""
    out = {}
    for k in keys:
        parts = k.split(".")
        for n in range(1, len(parts) + 1):
            cand = ".".join(parts[-n:])
            if all(not (o == cand or o.endswith("." + cand)) for o in keys if o != k):
                out[k] = cand
                break
        else:
            out[k] = k
    return out


def label_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "[" + ",".join(label_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return json.dumps(v, separators=(",", ":"), sort_keys=True)
    return str(v)


def slug(text: str) -> str:
    s = text.replace(" ", "-").replace("=", "")
    s = re.sub(r"[^A-Za-z0-9_.+-]+", "-", s).strip("-_")
    return s or "point"


@dataclass
class Point:
    """One run of a sweep, as recorded in the state file."""

    index: int
    label: str
    name: str
    variant: str | None
    overrides: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    description: str = ""
    recipe_file: str | None = None
    run_dir: str | None = None
    status: str = PENDING
    exit_code: int | None = None
    previous_run_dirs: list[str] = field(default_factory=list)
    job_id: str | None = None
    """The SLURM job (array task ``A_i``) that runs the point, for ``--launcher slurm``."""
    previous_job_ids: list[str] = field(default_factory=list)
    trial: int | None = None
    """The Optuna trial number of a search point (assigned when the point starts)."""
    value: float | None = None
    """A search point's value: its best validation top-1 (``sweep.search.metric``)."""
    seed: int | None = None
    """The point's ``runtime.seed`` when the sweep has a seed axis (``sweep.seeds``, ``--seeds``)."""
    group: str | None = None
    """The label without the seed: the points of one group differ only in ``runtime.seed``."""

    @property
    def group_label(self) -> str:
        return self.group if self.group is not None else self.label


@dataclass
class Plan:
    source: str
    base_name: str
    points: list[Point]
    recipes: list[Recipe]
    spec: SweepConfig | None = None
    base: dict[str, Any] | None = None
    """The base recipe as written (``--set`` applied, no ``sweep`` table), kept for a search."""


def parse_seeds(text: str, where: str = "--seeds") -> list[int]:
    """``--seeds 0,1,2`` -> [0, 1, 2]; ``--seeds 3`` (one number, N) -> [0, 1, ..., N-1]."""
    parts = [x.strip() for x in text.split(",")]
    try:
        values = [int(x) for x in parts if x]
    except ValueError:
        raise UserError(f"{where} {safe(text)}: expected a number of seeds (3 means 0,1,2) or a list such as 0,1,2") \
            from None
    if not values or (len(parts) == 1 and values[0] < 1):
        raise UserError(f"{where} {safe(text)}: at least one seed")
    if len(parts) == 1:
        if values[0] > MAX_POINTS:
            raise UserError(f"{where} {text}: {values[0]:,} seeds is more than a sweep may have ({MAX_POINTS:,})")
        return list(range(values[0]))
    return check_seeds(values, where)


def check_seeds(values: Sequence[int], where: str) -> list[int]:
    from fgbench.recipe import MAX_SEED

    for v in values:
        if not 0 <= v <= MAX_SEED:
            raise UserError(f"{where}: seed {v} is not between 0 and {MAX_SEED}")
    dup = [v for i, v in enumerate(values) if v in values[:i]]
    if dup:
        raise UserError(f"{where}: seed {dup[0]} is given twice")
    return list(values)


def count_points(n_variants: int, grid: dict[str, list[Any]], n_seeds: int) -> int:
    """How many points a sweep has, without expanding it."""
    return max(1, n_variants) * math.prod(len(v) for v in grid.values()) * max(1, n_seeds)


def check_count(n: int, source: str, what: str) -> None:
    if n > MAX_POINTS:
        raise UserError(f"{source}: {what} make {n:,} points, more than a sweep may have ({MAX_POINTS:,}): "
                        f"split the sweep or shorten its lists")


def expand(
    base: dict[str, Any],
    source: str,
    *,
    cli_grid: Sequence[tuple[str, list[Any]]] = (),
    only: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> Plan:
    """Expand the recipe dict ``base`` (with an optional ``sweep`` table) into validated points.
    ``seeds`` (``--seeds``) replaces the table's ``sweep.seeds``. Every problem of every point is
    collected and raised as one RecipeError."""
    base = copy.deepcopy(base)
    raw_sweep = base.pop("sweep", None)
    spec: SweepConfig | None = None
    errors: list[str] = []
    if raw_sweep is not None:
        # Validated inside an otherwise default recipe so that errors carry the `sweep.` path.
        spec = validate_recipe({"sweep": raw_sweep}, source).sweep
    if spec is not None and spec.search is not None:
        if cli_grid or only:
            raise UserError(f"{source}: sweep.search: --grid and --only go with grids and variants, not a search")
        if seeds:
            raise UserError(f"{source}: sweep.search: --seeds goes with grids, variants and plain recipes, not a search")
        check_count(spec.search.trials, source, "sweep.search.trials")
        return _expand_search(base, source, spec)
    grid: dict[str, list[Any]] = flatten_set(spec.grid) if spec else {}
    for key, values in cli_grid:
        grid[key] = values
    if seeds is None and spec is not None and spec.seeds is not None:
        seeds = spec.seeds
    seeds = list(seeds or [])
    grid_seeds = grid.get(SEED_FIELD)
    if not seeds and grid_seeds and all(isinstance(v, int) and not isinstance(v, bool) for v in grid_seeds):
        seeds = list(grid.pop(SEED_FIELD))  # a grid over runtime.seed is the seed axis, its runs one group
    variants = list(spec.variants) if spec else []
    if only:
        wanted = list(only)
        unknown = [w for w in wanted if w not in {v.name for v in variants}]
        if unknown:
            known = ", ".join(v.name for v in variants) or "none"
            raise UserError(f"{source}: --only {', '.join(unknown)}: no such sweep variant (variants: {known})")
        variants = [v for v in variants if v.name in wanted]
    if not grid and not variants and not seeds:
        raise UserError(f"{source}: nothing to sweep: add a [sweep] table, --grid KEY=V1,V2 or --seeds N")
    check_count(count_points(len(variants), grid, len(seeds)), source,
                "the variants, grid values and seeds" if seeds else "the variants and grid values")
    for key in list(grid):
        if key.split(".")[0] in ("sweep", "name"):
            errors.append(f"{source}: sweep.grid.{key}: cannot be swept")
        elif key == SEED_FIELD and seeds:
            errors.append(f"{source}: sweep.grid.{key}: the sweep has seeds (sweep.seeds or --seeds); "
                          "give the seeds one way")
    base_name = str(base.get("name", "unnamed"))
    short = _short_keys(list(grid))
    points: list[Point] = []
    recipes: list[Recipe] = []
    for vi, variant in enumerate(variants or [None]):
        vset = flatten_set(variant.set) if variant is not None else {}
        for key in vset:
            if key.split(".")[0] in ("sweep", "name"):
                errors.append(f"{source}: sweep.variants[{vi}].set.{key}: cannot be set by a variant")
            elif key == SEED_FIELD and seeds:
                errors.append(f"{source}: sweep.variants[{vi}].set.{key}: the sweep has seeds "
                              "(sweep.seeds or --seeds); give the seeds one way")
        for combo in (itertools.product(*grid.values()) if grid else [()]):
            grid_label = " ".join(f"{short[k]}={label_value(v)}" for k, v in zip(grid.keys(), combo))
            group = " ".join(x for x in (variant.name if variant else "", grid_label) if x)
            seed_axis: list[int | None] = list(seeds) if seeds else [None]
            for seed in seed_axis:
                overrides = dict(vset)
                overrides.update(zip(grid.keys(), combo))
                label = group
                if seed is not None:
                    overrides[SEED_FIELD] = seed
                    label = " ".join(x for x in (group, f"seed={seed}") if x)
                if variant is not None:
                    where = " ".join(x for x in (f"sweep.variants[{vi}] ({variant.name})", grid_label,
                                                 f"seed={seed}" if seed is not None else "") if x)
                else:
                    where = f"{'sweep.grid' if grid_label else 'sweep.seeds'} ({label})"
                name = f"{base_name}-{slug(label)}"[:120].rstrip("-")
                try:
                    data, notes = apply_set(base, overrides)
                except ValueError as err:
                    errors.append(f"{source}: {where}: {err}")
                    continue
                data["name"] = name
                try:
                    recipe = validate_recipe(data, f"{source}: {where}")
                except RecipeError as err:
                    errors.extend(err.lines)
                    continue
                points.append(Point(index=len(points), label=label, name=name,
                                    variant=variant.name if variant else None, overrides=overrides, notes=notes,
                                    description=variant.description if variant else "", seed=seed,
                                    group=group if seed is not None else None))
                recipes.append(recipe)
    if errors:
        raise RecipeError(list(dict.fromkeys(errors)))
    return Plan(source=source, base_name=base_name, points=points, recipes=recipes, spec=spec, base=base)


def _expand_search(base: dict[str, Any], source: str, spec: SweepConfig) -> Plan:
    """A search's points: ``trials`` of them, each labelled ``trial N`` once it starts. Checked up
    front: the base recipe, and each searched field at its bounds (or each of its choices), so a
    typo in a field name fails now, not in the tenth trial."""
    search = spec.search
    assert search is not None
    errors: list[str] = []
    base_name = str(base.get("name", "unnamed"))
    try:
        recipe = validate_recipe(base, source)
    except RecipeError as err:
        raise RecipeError(err.lines) from None
    if recipe.data.val_fraction == 0:
        errors.append(f"{source}: sweep.search.metric: {search.metric} needs a validation split "
                      "(data.val_fraction > 0); a search never optimises a test number")
    if search.metric == "ema_val_top1" and not recipe.ema.enabled:
        errors.append(f"{source}: sweep.search.metric: ema_val_top1 needs ema.enabled = true")
    for key, param in search.params.items():
        if key.split(".")[0] in ("sweep", "name"):
            errors.append(f"{source}: sweep.search.params.{key}: cannot be searched")
            continue
        probes: list[Any] = list(param.values or []) if param.type == "choice" else [param.low, param.high]
        for value in probes:
            if param.type == "int":
                value = int(value)
            try:
                data, _notes = apply_set(base, {key: value})
                validate_recipe(data, f"{source}: sweep.search.params.{key}={label_value(value)}")
            except ValueError as err:
                errors.append(f"{source}: sweep.search.params.{key}: {err}")
            except RecipeError as err:
                errors.extend(err.lines)
    if errors:
        raise RecipeError(list(dict.fromkeys(errors)))
    points = [Point(index=i, label=f"trial {i + 1}", name=f"{base_name}-trial", variant=None, overrides={})
              for i in range(search.trials)]
    return Plan(source=source, base_name=base_name, points=points, recipes=[], spec=spec, base=base)


def load_plan(
    path: str | os.PathLike[str],
    *,
    overrides: Sequence[str] = (),
    cli_grid: Sequence[str] = (),
    only: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> Plan:
    """Read a recipe file, apply ``--set`` overrides to the base, expand and validate the sweep."""
    p = Path(path)
    data = read_recipe_data(p, overrides)
    if overrides:
        # the base with its --set, as `fgbench run` and `recipe validate` check it: a bad override is
        # blamed on the override, not on the file or a sweep point
        validate_recipe(data, str(p), overrides)
    grid = [parse_grid_arg(g) for g in cli_grid]
    return expand(data, str(p), cli_grid=grid, only=only, seeds=seeds)


def check_datasets(datasets: Iterable[tuple[str, str | None]], source: str) -> None:
    """Refuse a sweep whose points need a dataset that is not ready, before anything is written or
    started: one line naming the dataset and the command that gets it (a file check; no torch).
    Without it, every point imports torch and fails with the same line, one after another.
    ``datasets``: each point's (``data.dataset``, ``data.root``)."""
    from fgbench.data import catalog

    for name, root in dict.fromkeys(datasets):
        if name == "synthetic":
            continue  # built in: generated on first use
        status = catalog.status(name, root)
        if status == "ready":
            continue
        entry = catalog.get(name)
        what = "was only partly downloaded or prepared" if status == "partial" else "is not downloaded"
        if name == "folder":
            what = "is not a folder with train/ and test/ (or val/)"
        raise UserError(f"{source}: data.dataset: {name} {what} ({catalog.location(name, root)}): "
                        f"{catalog.how_to_get(entry)}; nothing was started")


def plan_text(plan: Plan) -> str:
    """What ``fgbench sweep --dry-run`` prints. The sweep file names the points (variant names,
    descriptions, grid values of string fields): the text is made safe line by line."""
    return safe_lines(_plan_lines(plan))


def _plan_lines(plan: Plan) -> str:
    if plan.spec is not None and plan.spec.search is not None:
        se = plan.spec.search
        lines = [f"{plan.source}: a search of {se.trials} trial(s), maximising {se.metric} "
                 f"({se.sampler} sampler, {se.pruner} pruner)"]
        for key, param in se.params.items():
            what = (", ".join(label_value(v) for v in param.values or []) if param.type == "choice"
                    else f"{label_value(param.low)} .. {label_value(param.high)}"
                    + (f" step {param.step}" if param.step else ""))
            lines.append(f"  {key}: {param.type} {what}")
        return "\n".join(lines) + "\n"
    lines = [f"{plan.source}: {len(plan.points)} run(s)"]
    w = max(len(p.label) for p in plan.points)
    for p in plan.points:
        sets = ", ".join(f"{k}={label_value(v)}" for k, v in p.overrides.items()) or "(the base recipe)"
        lines.append(f"  {p.index + 1:>2}. {p.label.ljust(w)}  {sets}")
        if p.description:
            lines.append(f"      {p.description}")
        for note in p.notes:
            lines.append(f"      note: {note}")
    return "\n".join(lines) + "\n"



"""Sweeps: one recipe, many runs (a grid and/or named variants), run one after another or one per GPU.

Pure zone: no torch. Each run is an ordinary `fgbench run` in its own process.

The format (a ``[sweep]`` table in the recipe; see ``fgbench.recipe.SweepConfig``)::

    [sweep]
    grid = { "optim.lr" = [0.1, 0.01] }          # every combination of these values

    [[sweep.variants]]                           # named rows, in this order
    name = "B"
    [[sweep.variants]]
    name = "B+A"
    set = { "optim.name" = "adam", "optim.lr" = 1e-4 }

Variants are crossed with the grid; ``fgbench sweep RECIPE --grid key=v1,v2`` adds (or replaces)
grid axes from the command line. A grid value wins over a variant's value for the same field.

Decisions:

* Everything is expanded and validated before the first run starts: a typo in the sixth variant
  fails in a second, not after five trainings. Errors read ``FILE: sweep.variants[5] (B+A+W+C):
  optim.lr: ...``.
* Overrides apply to the recipe as the user wrote it (not the resolved one with every default),
  so switching ``optim.name`` from sgd to adam does not drag SGD's ``momentum`` along. If the
  user did write a field that the new union variant does not have (``momentum`` under adam), it
  is dropped and the plan says so, instead of failing every such variant.
* Each point's resolved recipe is written to ``<runs root>/sweeps/<tag>/recipes/NN-<label>.toml``
  and run as ``python -m fgbench run FILE --run-dir DIR --sweep-tag TAG``. A file rather than
  ``--set`` arguments: the union pruning above cannot be said with ``--set``, and the file is the
  exact record of what the point is. The sweep creates the run directory itself (empty, as
  ``--run-dir`` requires) and records it in the state file before the process starts, so the
  state always knows which directory belongs to which point.
* The state file ``<runs root>/sweeps/<tag>/sweep.json`` is rewritten atomically after every
  change. ``fgbench sweep --continue TAG`` skips completed points, resumes interrupted ones from
  their ``last.pt`` (``fgbench run --resume``), restarts those that never wrote a checkpoint in a
  fresh directory (the old one is kept: nothing but ``fgbench runs rm`` deletes a run) and, with
  ``--retry-failed``, reruns failed ones.
* Runs start in their own session: Ctrl-C reaches only the sweep, which forwards exactly one
  SIGINT to each running trainer (each then checkpoints and exits 130), records them as
  interrupted and exits 130 itself. A second SIGINT to a trainer would be taken as "stop now".
* Parallel runs: one slot per GPU id (``--gpus 0,1`` or ``--gpus auto``, which reads
  ``CUDA_VISIBLE_DEVICES`` or ``nvidia-smi -L``); each run sees only its GPU through
  ``CUDA_VISIBLE_DEVICES``. Without ``--gpus`` the runs go one after another, their output copied
  to the terminal; every run's console output is in its ``console.txt`` (``fgbench.rundir``'s
  launcher and supervisor start each run, the same way the TUI does).
* ``--nproc N`` trains each run with N processes (``fgbench run --nproc N``, DDP through
  torchrun). With ``--gpus``, the ids are grouped N at a time into slots (``--gpus 0,1,2,3
  --nproc 2``: two runs at a time, each on two GPUs). The sweep's SIGINT goes to each run's
  ``fgbench run``, which hands it to its workers.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

from fgbench import paths, rundir
from fgbench.errors import UserError, escape
from fgbench.recipe import (
    UNION_SECTIONS,
    Recipe,
    RecipeError,
    SweepConfig,
    atomic_write_text,
    dumps_recipe,
    parse_override_value,
    read_recipe_data,
    union_tag_field,
    union_variants,
    validate_recipe,
)

STATE_FORMAT = 1
SWEEPS_DIR = "sweeps"
STATE_FILE = "sweep.json"
LOCK_FILE = "sweep.lock"
BASE_FILE = "base.toml"
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]+$")

#: union sections and their tag field, as the recipe's schema declares them
UNION_TAGS = {section: union_tag_field(section) for section in UNION_SECTIONS}

PENDING, RUNNING, COMPLETED, FAILED, INTERRUPTED, PRUNED = (
    "pending", "running", "completed", "failed", "interrupted", "pruned")
#: a point in one of these is finished: --continue never runs it again
DONE = (COMPLETED, PRUNED)
LAUNCHERS = ("local", "slurm")


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
    import tomllib

    try:
        values = tomllib.loads(f"v = [{raw}]")["v"]
    except tomllib.TOMLDecodeError:
        try:
            values = [parse_override_value(part.strip()) for part in _split_top_level(raw)]
        except ValueError as err:  # a value that starts like a TOML array, table or string but is not one
            raise UserError(f"--grid {escape(item)}: {escape(str(err))}") from None
    if any(v == "" for v in values):
        raise UserError(f"--grid {item}: empty value")
    return key, values


def _split_top_level(raw: str) -> list[str]:
    parts, depth, cur = [], 0, []
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
        node = _get_table(out, section)
        variants = union_variants(section)
        cls = variants.get(node.get(tag)) if node is not None else None
        if cls is None:
            continue  # an unknown tag: validation reports it with the list of choices
        dropped = [name for name in node if name not in cls.model_fields and f"{section}.{name}" not in overrides]
        for name in dropped:
            del node[name]
        if dropped:
            notes.append(f"{tag_key} is now {node.get(tag)!r}: dropped {', '.join(f'{section}.{n}' for n in dropped)}")
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


def _label_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "[" + ",".join(_label_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return json.dumps(v, separators=(",", ":"), sort_keys=True)
    return str(v)


def _slug(text: str) -> str:
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


@dataclass
class Plan:
    source: str
    base_name: str
    points: list[Point]
    recipes: list[Recipe]
    spec: SweepConfig | None = None
    base: dict[str, Any] | None = None
    """The base recipe as written (``--set`` applied, no ``sweep`` table), kept for a search."""


def expand(
    base: dict[str, Any],
    source: str,
    *,
    cli_grid: Sequence[tuple[str, list[Any]]] = (),
    only: Sequence[str] | None = None,
) -> Plan:
    """Expand the recipe dict ``base`` (with an optional ``sweep`` table) into validated points.
    Every problem of every point is collected and raised as one RecipeError."""
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
        return _expand_search(base, source, spec)
    grid: dict[str, list[Any]] = flatten_set(spec.grid) if spec else {}
    for key, values in cli_grid:
        grid[key] = values
    variants = list(spec.variants) if spec else []
    if only:
        wanted = list(only)
        unknown = [w for w in wanted if w not in {v.name for v in variants}]
        if unknown:
            known = ", ".join(v.name for v in variants) or "none"
            raise UserError(f"{source}: --only {', '.join(unknown)}: no such sweep variant (variants: {known})")
        variants = [v for v in variants if v.name in wanted]
    if not grid and not variants:
        raise UserError(f"{source}: nothing to sweep: add a [sweep] table or --grid KEY=V1,V2")
    for key in list(grid):
        if key.split(".")[0] in ("sweep", "name"):
            errors.append(f"{source}: sweep.grid.{key}: cannot be swept")
    base_name = str(base.get("name", "unnamed"))
    short = _short_keys(list(grid))
    combos = list(itertools.product(*grid.values())) if grid else [()]
    points: list[Point] = []
    recipes: list[Recipe] = []
    for vi, variant in enumerate(variants or [None]):
        vset = flatten_set(variant.set) if variant is not None else {}
        for key in vset:
            if key.split(".")[0] in ("sweep", "name"):
                errors.append(f"{source}: sweep.variants[{vi}].set.{key}: cannot be set by a variant")
        for combo in combos:
            overrides = dict(vset)
            overrides.update(zip(grid.keys(), combo))
            grid_label = " ".join(f"{short[k]}={_label_value(v)}" for k, v in zip(grid.keys(), combo))
            label = " ".join(x for x in (variant.name if variant else "", grid_label) if x)
            where = f"sweep.variants[{vi}] ({variant.name})" if variant is not None else "sweep.grid"
            if variant is not None and grid_label:
                where += f" {grid_label}"
            elif variant is None:
                where += f" ({grid_label})"
            name = f"{base_name}-{_slug(label)}"[:120].rstrip("-")
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
                                description=variant.description if variant else ""))
            recipes.append(recipe)
    if errors:
        seen: list[str] = []
        for e in errors:
            if e not in seen:
                seen.append(e)
        raise RecipeError(seen)
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
        probes = param.values if param.type == "choice" else [param.low, param.high]
        for value in probes:
            if param.type == "int":
                value = int(value)
            try:
                data, _notes = apply_set(base, {key: value})
                validate_recipe(data, f"{source}: sweep.search.params.{key}={_label_value(value)}")
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
) -> Plan:
    """Read a recipe file, apply ``--set`` overrides to the base, expand and validate the sweep."""
    p = Path(path)
    data = read_recipe_data(p, overrides)
    if overrides:
        # the base with its --set, as `fgbench run` and `recipe validate` check it: a bad override is
        # blamed on the override, not on the file or a sweep point
        validate_recipe(data, str(p), overrides)
    grid = [parse_grid_arg(g) for g in cli_grid]
    return expand(data, str(p), cli_grid=grid, only=only)


def plan_text(plan: Plan) -> str:
    if plan.spec is not None and plan.spec.search is not None:
        se = plan.spec.search
        lines = [f"{plan.source}: a search of {se.trials} trial(s), maximising {se.metric} "
                 f"({se.sampler} sampler, {se.pruner} pruner)"]
        for key, p in se.params.items():
            what = (", ".join(_label_value(v) for v in p.values or []) if p.type == "choice"
                    else f"{_label_value(p.low)} .. {_label_value(p.high)}" + (f" step {p.step}" if p.step else ""))
            lines.append(f"  {key}: {p.type} {what}")
        return "\n".join(lines) + "\n"
    lines = [f"{plan.source}: {len(plan.points)} run(s)"]
    w = max(len(p.label) for p in plan.points)
    for p in plan.points:
        sets = ", ".join(f"{k}={_label_value(v)}" for k, v in p.overrides.items()) or "(the base recipe)"
        lines.append(f"  {p.index + 1:>2}. {p.label.ljust(w)}  {sets}")
        if p.description:
            lines.append(f"      {p.description}")
        for note in p.notes:
            lines.append(f"      note: {note}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------- state


def sweep_dir(tag: str, runs_root: str | os.PathLike[str] | None = None) -> Path:
    base = Path(runs_root) if runs_root is not None else paths.runs_dir()
    return base / SWEEPS_DIR / tag


def check_tag(tag: str) -> str:
    if not TAG_PATTERN.match(tag):
        raise UserError(f"--tag {tag!r}: use letters, digits and _ . + - only")
    return tag


@dataclass
class SweepState:
    tag: str
    source: str
    runs_root: str
    created: float
    points: list[Point]
    format: int = STATE_FORMAT
    launcher: str = "local"
    slurm: dict[str, Any] | None = None
    """The resolved SLURM settings (``SlurmConfig``) the points are submitted with."""
    search: dict[str, Any] | None = None
    """A search's spec (``fgbench.search``): params, metric, pruner, storage URL, study name."""
    run_args: list[str] = field(default_factory=list)
    """Extra ``fgbench run`` arguments given to every point (``--device``, ``--nproc``)."""
    controller: dict[str, Any] | None = None
    """The local sweep process (pid, host) while it runs, so that ``--cancel`` can reach it."""

    @property
    def dir(self) -> Path:
        return sweep_dir(self.tag, self.runs_root)

    @property
    def path(self) -> Path:
        return self.dir / STATE_FILE

    def save(self) -> None:
        rundir.write_json(self.path, {
            "format": self.format, "tag": self.tag, "source": self.source, "runs_root": self.runs_root,
            "created": self.created, "launcher": self.launcher, "slurm": self.slurm, "search": self.search,
            "run_args": self.run_args, "controller": self.controller, "points": [asdict(p) for p in self.points],
        })

    @classmethod
    def load(cls, tag: str, runs_root: str | os.PathLike[str] | None = None) -> "SweepState":
        path = sweep_dir(tag, runs_root) / STATE_FILE
        data = rundir.read_json(path)
        if data is None:
            where = sweep_dir(tag, runs_root).parent
            known = sorted(p.name for p in where.iterdir() if (p / STATE_FILE).is_file()) if where.is_dir() else []
            hint = f" (sweeps there: {', '.join(known[-5:])})" if known else ""
            raise UserError(f"{path}: no such sweep{hint}")
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise UserError(f"{path}: not a sweep state file of format {STATE_FORMAT}")
        try:
            points = [Point(**p) for p in data["points"]]
            return cls(tag=data["tag"], source=data["source"], runs_root=data["runs_root"],
                       created=data["created"], points=points, launcher=data.get("launcher", "local"),
                       slurm=data.get("slurm"), search=data.get("search"), run_args=list(data.get("run_args") or []),
                       controller=data.get("controller"))
        except (KeyError, TypeError) as err:
            raise UserError(f"{path}: damaged sweep state ({err})") from None

    @classmethod
    def load_dir(cls, d: str | os.PathLike[str]) -> "SweepState":
        """The state in sweep folder ``d`` (``<runs root>/sweeps/<tag>``), wherever the runs root is mounted."""
        d = Path(d)
        return cls.load(d.name, d.parent.parent)


@contextlib.contextmanager
def locked(d: str | os.PathLike[str]):
    """Exclusive lock on a sweep folder's state: SLURM jobs of one sweep update it concurrently."""
    import fcntl

    Path(d).mkdir(parents=True, exist_ok=True)
    with open(Path(d) / LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def create_state(plan: Plan, tag: str, runs_root: str | os.PathLike[str] | None = None, *,
                 launcher: str = "local", slurm: dict[str, Any] | None = None,
                 run_args: Sequence[str] = ()) -> SweepState:
    """Write the state file and each point's resolved recipe (a search: its base recipe and its
    Optuna study); refuse an existing tag. Nothing is left behind when this fails."""
    check_tag(tag)
    root = Path(runs_root) if runs_root is not None else paths.runs_dir()
    d = sweep_dir(tag, root)
    if (d / STATE_FILE).exists():
        raise UserError(f"sweep {tag!r} exists ({d}): continue it with `fgbench sweep --continue {tag}` or pick another --tag")
    state = SweepState(tag=tag, source=str(Path(plan.source).resolve()), runs_root=str(root.resolve()),
                       created=time.time(), points=[copy.deepcopy(p) for p in plan.points], launcher=launcher,
                       slurm=slurm, run_args=list(run_args))
    existed = d.exists()
    try:
        for point, recipe in zip(state.points, plan.recipes):
            f = d / "recipes" / f"{point.index + 1:02d}-{_slug(point.label)}.toml"
            atomic_write_text(f, dumps_recipe(recipe, full=True))
            point.recipe_file = str(f)
        if plan.spec is not None and plan.spec.search is not None:
            from fgbench import search as S

            import tomli_w

            atomic_write_text(d / BASE_FILE, tomli_w.dumps(plan.base or {}))
            spec = plan.spec.search.model_dump(mode="json")
            spec["params"] = {k: v for k, v in spec["params"].items()}
            spec["storage"] = S.storage_url(spec, d)
            spec["study"] = tag
            spec["base_file"] = str(d / BASE_FILE)
            state.search = spec
            rundir.write_json(d / S.SPEC_FILE, spec)
            S.create(spec)
        state.save()
    except BaseException:
        if not existed:
            import shutil

            shutil.rmtree(d, ignore_errors=True)
        raise
    return state


def default_tag(base_name: str, now: float | None = None) -> str:
    return f"{base_name}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now or time.time()))}"


def detect_gpus(spec: str | None) -> list[str | None]:
    """Slots to run in: ``None`` -> one slot that inherits the environment; ``auto`` ->
    ``CUDA_VISIBLE_DEVICES`` or the GPUs ``nvidia-smi -L`` lists (one slot if none); a list of
    ids (``0,1``; repeat an id to run two runs on one GPU)."""
    if spec is None:
        return [None]
    if spec == "auto":
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
        if env is not None and env.strip():
            ids = [x.strip() for x in env.split(",") if x.strip()]
            return ids or [None]
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return [None]
        ids = [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]
        return ids or [None]
    ids = [x.strip() for x in spec.split(",")]
    if not ids or any(not x for x in ids):
        raise UserError(f"--gpus {spec}: expected auto or a list of GPU ids such as 0,1")
    return ids


def group_slots(slots: Sequence[str | None], nproc: int) -> list[str | None]:
    """Slots for runs of ``nproc`` processes each: consecutive GPU ids grouped ``nproc`` at a time
    (``["0", "1", "2", "3"]``, 2 -> ``["0,1", "2,3"]``); one inherited slot stays as it is."""
    if nproc < 1:
        raise UserError(f"--nproc: must be at least 1, not {nproc}")
    if nproc == 1 or list(slots) == [None]:
        return list(slots)
    ids = [str(s) for s in slots]
    if len(ids) % nproc:
        raise UserError(f"--gpus: {len(ids)} GPU id(s) do not split into runs of --nproc {nproc} processes")
    return [",".join(ids[i:i + nproc]) for i in range(0, len(ids), nproc)]


# ----------------------------------------------------------------------------------- running


@dataclass
class _Active:
    point: Point
    proc: subprocess.Popen
    slot: int
    log: TextIO | None
    launched: Any = None


def _status_from_exit(code: int, run_dir: str | None) -> str:
    if run_dir and Path(run_dir).is_dir():
        try:
            st = rundir.read_run(run_dir).status
        except OSError:
            st = None
        if st in (COMPLETED, FAILED, INTERRUPTED, PRUNED):
            # trust the run's own record, but an exit code of 130 always means interrupted
            return INTERRUPTED if code == 130 else st
    if code == 0:
        return COMPLETED
    if code in (130, -signal.SIGINT, -signal.SIGTERM):
        return INTERRUPTED
    return FAILED


def _dir_is_empty(p: Path) -> bool:
    """Nothing of a run in it yet (the launcher's own files do not count)."""
    from fgbench.rundir import layout

    return p.is_dir() and layout.RunDir(p).is_fresh()


def reconcile(state: SweepState) -> None:
    """After a sweep process died without cleaning up (SIGKILL, power loss), points it left as
    ``running`` take their run's own status; a run still alive stops the continuation."""
    for p in state.points:
        if p.status != RUNNING:
            continue
        if not p.run_dir or not Path(p.run_dir).is_dir() or _dir_is_empty(Path(p.run_dir)):
            p.status = INTERRUPTED
            continue
        st = rundir.read_run(p.run_dir).status
        if st == RUNNING:
            raise UserError(f"sweep {state.tag}: {p.run_dir} is still running; wait for it or stop it first")
        p.status = st if st in (COMPLETED, FAILED, INTERRUPTED, PRUNED) else INTERRUPTED


def point_command(point: Point, state: SweepState, base_cmd: Sequence[str], extra: Sequence[str]) -> list[str]:
    """The ``fgbench run`` of a point, decided from its run directory when it starts (by the local
    sweep, or by its SLURM job on the node): ``--resume`` of an interrupted run that has a
    ``last.pt``, else a fresh run of the point's recipe file in a new, empty run directory (a
    used one is kept and listed in ``previous_run_dirs``)."""
    run_dir = Path(point.run_dir) if point.run_dir else None
    trial = ["--trial", f"{state.dir / 'search.json'}:{point.trial}"] if point.trial is not None else []
    if run_dir is not None and (run_dir / rundir.CHECKPOINT_DIR / rundir.LAST_CKPT).is_file() \
            and rundir.read_run(run_dir).status in (INTERRUPTED, RUNNING):
        return [*base_cmd, "run", "--resume", str(run_dir), "--sweep-tag", state.tag, *trial, *extra]
    if run_dir is None or not _dir_is_empty(run_dir):
        if run_dir is not None:
            point.previous_run_dirs.append(str(run_dir))
        run_dir = rundir.create_run_dir(point.name, state.runs_root)
        point.run_dir = str(run_dir)
    return [*base_cmd, "run", str(point.recipe_file), "--run-dir", str(run_dir), "--sweep-tag", state.tag, *trial,
            *extra]


_command_for = point_command  # the name older callers use


def point_done(point: Point) -> bool:
    """True when the point's run finished for good (completed or pruned): never run again."""
    if not point.run_dir or not Path(point.run_dir).is_dir() or not rundir.is_run_dir(Path(point.run_dir)):
        return False
    return rundir.read_run(point.run_dir).status in DONE


def ensure_trial(state: SweepState, point: Point) -> None:
    """A search point that has not started gets its trial now: Optuna samples the fields, and the
    point gets its label, overrides and recipe file (written beside the others)."""
    if state.search is None or point.trial is not None:
        return
    import tomllib

    from fgbench import search as S

    number, values = S.ask(state.search)
    base = tomllib.loads(Path(state.search["base_file"]).read_text(encoding="utf-8"))
    data, notes = apply_set(base, values)
    point.trial = number
    point.overrides = values
    point.notes = notes
    point.label = f"trial {number}"
    point.name = f"{base.get('name', 'unnamed')}-trial{number}"[:120]
    data["name"] = point.name
    try:
        recipe = validate_recipe(data, f"{state.source}: sweep.search trial {number}")
    except RecipeError as err:
        S.tell(state.search, number, FAILED, None)
        raise UserError("; ".join(err.lines)) from None
    f = state.dir / "recipes" / f"{point.index + 1:02d}-trial{number}.toml"
    atomic_write_text(f, dumps_recipe(recipe, full=True))
    point.recipe_file = str(f)


def finish_point(state: SweepState, point: Point, code: int) -> None:
    """Record how a point's run ended (exit code and the run's own status); a search trial's
    outcome goes to the study."""
    point.exit_code = code
    point.status = _status_from_exit(code, point.run_dir)
    if state.search is not None and point.trial is not None and point.run_dir:
        from fgbench.rundir import events as metrics
        from fgbench import search as S

        events = metrics.read_events(Path(point.run_dir) / metrics.METRICS_FILE)
        point.value = S.trial_value(events, state.search.get("metric", "val_top1"))
        S.tell(state.search, point.trial, point.status, point.value)


def run_sweep(
    state: SweepState,
    *,
    slots: Sequence[str | None] = (None,),
    retry_failed: bool = False,
    base_cmd: Sequence[str] | None = None,
    extra_args: Sequence[str] = (),
    out: TextIO | None = None,
    poll_s: float = 0.2,
    on_start: Callable[[Point], None] | None = None,
) -> int:
    """Run every point that is not done; returns 0 (all completed), 1 (some failed) or 130
    (interrupted: continue later with the same state)."""
    out = out or sys.stdout
    base_cmd = list(base_cmd) if base_cmd else [sys.executable, "-m", "fgbench"]
    reconcile(state)
    extra_args = [*state.run_args, *extra_args]
    todo_status = {PENDING, INTERRUPTED} | ({FAILED} if retry_failed else set())
    queue = [p for p in state.points if p.status in todo_status]
    done_before = sum(p.status == COMPLETED for p in state.points)
    if done_before:
        print(f"sweep {state.tag}: {done_before} of {len(state.points)} run(s) already completed", file=out, flush=True)
    parallel = len(slots) > 1
    active: dict[int, _Active] = {}
    stopping = {"flag": False}

    def forward(signum, _frame):
        if not stopping["flag"]:
            print(f"\nsweep {state.tag}: stopping; the running run(s) write a checkpoint first", file=out, flush=True)
        stopping["flag"] = True
        for a in active.values():
            if a.proc.poll() is None:
                try:
                    a.proc.send_signal(signal.SIGINT)
                except ProcessLookupError:
                    pass

    old_handlers = {}
    in_main = _is_main_thread()
    if in_main:
        for sig in (signal.SIGINT, signal.SIGTERM):
            old_handlers[sig] = signal.signal(sig, forward)
    from fgbench.rundir import procs
    from fgbench.rundir.launcher import LaunchError, Launcher

    launcher = Launcher(state.runs_root, fgbench_cmd=base_cmd)
    state.controller = procs.identity()  # for `fgbench sweep --cancel`: pid, start time and host
    try:
        while queue or active:
            free = [s for s in range(len(slots)) if s not in active]
            while free and queue and not stopping["flag"]:
                slot = free.pop(0)
                point = queue.pop(0)
                try:
                    ensure_trial(state, point)
                except UserError as err:
                    point.status = FAILED
                    point.notes.append(str(err))
                    print(f"sweep {state.tag}: [{point.index + 1}/{len(state.points)}] {err}", file=out, flush=True)
                    state.save()
                    free.insert(0, slot)
                    continue
                cmd = point_command(point, state, base_cmd, extra_args)
                env = dict(os.environ)
                if slots[slot] is not None:
                    env["CUDA_VISIBLE_DEVICES"] = str(slots[slot])
                where = f" on GPU {slots[slot]}" if slots[slot] is not None else ""
                verb = "resuming" if "--resume" in cmd else "starting"
                print(f"sweep {state.tag}: [{point.index + 1}/{len(state.points)}] {verb} {point.label}{where} -> {point.run_dir}",
                      file=out, flush=True)
                point.status = RUNNING
                point.exit_code = None
                state.save()
                # through fgbench.rundir's launcher: a supervisor in its own session records the
                # trainer's exit (exit.json) and console (console.txt) in the run directory
                try:
                    launched = launcher.spawn(Path(str(point.run_dir)), cmd[len(base_cmd):],
                                              env={k: v for k, v in env.items() if k == "CUDA_VISIBLE_DEVICES"},
                                              tee=not parallel)
                except LaunchError as err:
                    point.status = FAILED
                    point.notes.append(str(err))
                    state.save()
                    raise UserError(f"sweep {state.tag}: {err}") from None
                active[slot] = _Active(point, launched.process, slot, None, launched)
                if on_start:
                    on_start(point)
            if not active:
                break
            time.sleep(poll_s)
            for slot, a in list(active.items()):
                code = a.launched.poll() if a.launched is not None else a.proc.poll()
                if code is None:
                    continue
                if a.launched is not None and a.launched.rejection:
                    print(a.launched.rejection, file=out, flush=True)  # the trainer refused its input
                finish_point(state, a.point, code)
                state.save()
                print(f"sweep {state.tag}: [{a.point.index + 1}/{len(state.points)}] {a.point.label}: {a.point.status}",
                      file=out, flush=True)
                del active[slot]
    finally:
        for a in active.values():  # only reached on an unexpected error in this loop
            if a.proc.poll() is None:
                a.proc.send_signal(signal.SIGINT)
                a.proc.wait()
            a.point.status = _status_from_exit(a.proc.returncode, a.point.run_dir)
        state.controller = None
        state.save()
        if in_main:
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
    if stopping["flag"] or any(p.status in (PENDING, INTERRUPTED) for p in state.points):
        return 130
    return 1 if any(p.status == FAILED for p in state.points) else 0


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def state_runs(state: SweepState) -> tuple[list[Any], list[str]]:
    """The sweep's runs (``fgbench.rundir.RunInfo``) in point order, with their labels; points
    that never got a run directory are left out."""
    infos, labels = [], []
    for p in state.points:
        if p.run_dir and Path(p.run_dir).is_dir() and rundir.is_run_dir(Path(p.run_dir)):
            infos.append(rundir.read_run(p.run_dir))
            labels.append(p.label)
    return infos, labels


def list_sweeps(runs_root: str | os.PathLike[str] | None = None) -> list[SweepState]:
    base = (Path(runs_root) if runs_root is not None else paths.runs_dir()) / SWEEPS_DIR
    if not base.is_dir():
        return []
    out = []
    for d in sorted(base.iterdir()):
        if (d / STATE_FILE).is_file():
            try:
                out.append(SweepState.load(d.name, base.parent))
            except UserError:
                continue
    return out


# ------------------------------------------------------------------------- launchers: settings


def resolve_launcher(cli: str | None, spec: SweepConfig | None) -> str:
    """``--launcher``, else the recipe's ``sweep.launcher`` when written, else settings.toml's
    ``[sweep] launcher``, else ``local``."""
    if cli:
        return cli
    if spec is not None and "launcher" in spec.model_fields_set:
        return spec.launcher
    from fgbench import settings

    value = (settings.load_settings().get("sweep") or {}).get("launcher")
    if value is None:
        return "local"
    if value not in LAUNCHERS:
        raise UserError(f"{paths.settings_file()}: sweep.launcher: {value!r} is not one of {', '.join(LAUNCHERS)}")
    return value


def resolve_slurm(spec: SweepConfig | None, cli: dict[str, Any], source: str) -> dict[str, Any]:
    """The SLURM settings of a sweep: settings.toml's ``[slurm]``, then what the recipe's
    ``[sweep.slurm]`` wrote, then the command line; validated as one ``SlurmConfig``."""
    from pydantic import ValidationError

    from fgbench import settings
    from fgbench.recipe import SlurmConfig

    merged: dict[str, Any] = {}
    table = settings.load_settings().get("slurm")
    if table is not None:
        if not isinstance(table, dict):
            raise UserError(f"{paths.settings_file()}: slurm: expected a table")
        try:
            merged.update(SlurmConfig.model_validate(table).model_dump(exclude_unset=True))
        except ValidationError as err:
            first = err.errors()[0]
            raise UserError(f"{paths.settings_file()}: slurm.{'.'.join(str(x) for x in first['loc'])}: "
                            f"{first['msg']}") from None
    sbatch = dict(merged.get("sbatch", {}))  # sbatch options add up: settings, then recipe, then --sbatch
    if spec is not None and spec.slurm is not None:
        written = spec.slurm.model_dump(exclude_unset=True)
        sbatch.update(written.get("sbatch", {}))
        merged.update(written)
    sbatch.update(cli.get("sbatch", {}))
    merged.update(cli)
    if sbatch:
        merged["sbatch"] = sbatch
    try:
        return SlurmConfig.model_validate(merged).model_dump(mode="json")
    except ValidationError as err:
        first = err.errors()[0]
        raise UserError(f"{source}: sweep.slurm.{'.'.join(str(x) for x in first['loc'])} "
                        f"(with settings.toml and the command line): {first['msg']}") from None


def _run_status(p: Point) -> str:
    """The run directory's status where the point has one, else what the state file says."""
    if p.run_dir and Path(p.run_dir).is_dir() and rundir.is_run_dir(Path(p.run_dir)):
        return rundir.read_run(p.run_dir).status
    return p.status


# ------------------------------------------------------------------------------- the table


def ablation_table(state: SweepState) -> tuple[list[tuple[str, str, str]], list[dict[str, Any]]]:
    """The sweep's table: rows in point order; a search's trials by value, best first (pruned and
    failed trials after, by their value so far), with the searched fields as columns."""
    from fgbench import report

    fresh = SweepState.load_dir(state.dir) if state.path.is_file() else state
    pts = [p for p in fresh.points if p.run_dir and Path(p.run_dir).is_dir() and rundir.is_run_dir(Path(p.run_dir))]
    if not pts:
        return [], []
    infos = [rundir.read_run(p.run_dir) for p in pts]
    if fresh.search is None:
        return report.compare_table(infos, [p.label for p in pts], fields=[], label_header="variant")
    from fgbench.rundir import events as metrics
    from fgbench import search as S

    values = []
    for p in pts:
        v = p.value
        if v is None:
            v = S.trial_value(metrics.read_events(Path(p.run_dir) / metrics.METRICS_FILE), fresh.search["metric"])
        values.append(v)
    order = sorted(range(len(pts)), key=lambda i: (infos[i].status != COMPLETED, -(values[i] if values[i] is not None else -1e9)))
    columns, rows = report.compare_table([infos[i] for i in order], [pts[i].label for i in order],
                                         fields=list(fresh.search["params"]), label_header="trial")
    for row, i in zip(rows, order):
        row["value"] = values[i]
    columns.insert(1, ("value", fresh.search["metric"], "acc"))
    if ("status", "status", "text") not in columns and any(r["status"] != COMPLETED for r in rows):
        columns.insert(2, ("status", "status", "text"))
    return columns, rows


def best_recipe_text(state: SweepState) -> tuple[str, Point]:
    """The recipe file of a search's best completed trial, headed by where it came from."""
    if state.search is None:
        raise UserError(f"sweep {state.tag}: --best needs a search (sweep.search); compare a grid with "
                        f"`fgbench runs compare --sweep {state.tag}`")
    from fgbench.rundir import events as metrics
    from fgbench import search as S

    best: Point | None = None
    for p in state.points:
        if p.trial is None or not p.recipe_file or _run_status(p) != COMPLETED:
            continue
        if p.value is None and p.run_dir:
            p.value = S.trial_value(metrics.read_events(Path(p.run_dir) / metrics.METRICS_FILE), state.search["metric"])
        if p.value is not None and (best is None or p.value > (best.value or -1)):
            best = p
    if best is None:
        raise UserError(f"sweep {state.tag}: no trial has completed yet")
    body = Path(best.recipe_file).read_text(encoding="utf-8")  # type: ignore[arg-type]
    sets = ", ".join(f"{k} = {_label_value(v)}" for k, v in best.overrides.items())
    head = (f"# The best trial of search {state.tag}: {best.label}, {state.search['metric']} = {best.value:.2f}\n"
            f"# (run {best.run_dir}); sampled: {sets}\n")
    return head + body, best

"""A sweep's state: ``<runs root>/sweeps/<tag>/sweep.json``, its locks, and each point's status.

Decisions:

* The state file is rewritten atomically after every change. It records which run directory
  belongs to which point (the sweep creates the directory, empty, and records it before the run
  starts), the SLURM job of each point, and a search's trial numbers and values.
* **A point's status is its run directory's**, by the one rule of :mod:`fgbench.rundir.status`;
  :func:`point_status` is the one rule for a point, and says what the scheduler's word and the
  state's own ``status`` field may add: both speak only for a point without a run.
* A run directory that ends with nothing of the trainer's in it (the sweep was stopped while the
  trainer was still starting) is removed and its point starts afresh on ``--continue``, so an interrupted sweep
  never leaves a run without its ``recipe.toml``.
* One sweep writer at a time (:func:`writer`): the process that runs or submits the points holds
  ``writer.lock`` (an ``flock``, released by the kernel when it dies); a second ``fgbench sweep
  --continue`` of the same sweep is refused with the holder's pid and host instead of training
  every pending point a second time. ``sweep.lock`` (:func:`locked`) is the short lock around one
  update of the state, taken by each SLURM job.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import socket
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from fgbench import paths, rundir
from fgbench.rundir import files
from fgbench.errors import UserError
from fgbench.textsafe import safe
from fgbench.textfile import file_kind
from fgbench.recipe import atomic_write_text, dumps_recipe, read_recipe_data, validate_recipe
from fgbench.sweeps.plan import (
    DONE, FAILED, INTERRUPTED, PENDING, RUNNING, SEED_FIELD, Plan, Point, check_count, slug,
)

if TYPE_CHECKING:
    from fgbench.sweeps.backend import SchedulerState

STATE_FORMAT = 1
SWEEPS_DIR = "sweeps"
STATE_FILE = "sweep.json"
LOCK_FILE = "sweep.lock"
WRITER_FILE = "writer.lock"
BASE_FILE = "base.toml"
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]+$")


def sweep_dir(tag: str, runs_root: str | os.PathLike[str] | None = None) -> Path:
    base = Path(runs_root) if runs_root is not None else paths.runs_dir()
    return base / SWEEPS_DIR / tag


def check_tag(tag: str) -> str:
    if not TAG_PATTERN.match(tag):
        raise UserError(f"--tag {safe(repr(tag))}: use letters, digits and _ . + - only")
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
    """The backend that runs the points (a name of :data:`fgbench.sweeps.backend.BACKENDS`)."""
    slurm: dict[str, Any] | None = None
    """The resolved SLURM settings (``SlurmConfig``) the points are submitted with."""
    search: dict[str, Any] | None = None
    """A search's spec (``fgbench.sweeps.search``): params, metric, pruner, storage URL, study name."""
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
        try:  # the guarded reader: a FIFO, a device link or JSON nested too deep is damage, not a hang
            data = files.read_json(path)
        except files.RunFileError as err:
            raise UserError(f"{safe(str(path.parent))}: damaged sweep state ({safe(str(err))})") from None
        if data is None:
            where = sweep_dir(tag, runs_root).parent
            known = sorted(p.name for p in where.iterdir() if (p / STATE_FILE).is_file()) if where.is_dir() else []
            hint = f" (sweeps there: {', '.join(known[-5:])})" if known else ""
            raise UserError(f"{safe(str(path))}: no such sweep{safe(hint)}")
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise UserError(f"{safe(str(path))}: not a sweep state file of format {STATE_FORMAT}")
        try:
            points = [Point(**p) for p in data["points"]]
            return cls(tag=data["tag"], source=data["source"], runs_root=data["runs_root"],
                       created=data["created"], points=points, launcher=data.get("launcher", "local"),
                       slurm=data.get("slurm"), search=data.get("search"), run_args=list(data.get("run_args") or []),
                       controller=data.get("controller"))
        except (KeyError, TypeError) as err:
            raise UserError(f"{safe(str(path))}: damaged sweep state ({safe(str(err))})") from None

    @classmethod
    def load_dir(cls, d: str | os.PathLike[str]) -> "SweepState":
        """The state in sweep folder ``d`` (``<runs root>/sweeps/<tag>``), wherever the runs root is mounted."""
        d = Path(d)
        return cls.load(d.name, d.parent.parent)


def _open_lock(path: Path) -> int:
    """A sweep's lock file, opened read-write (made when missing) the way a run's lock is
    (:func:`fgbench.rundir.lock.open_lock_file`): a FIFO, a device link, a directory or a link in
    its place is one line, never a hang (opening a FIFO to write waits for a reader) or a traceback."""
    from fgbench.rundir.lock import open_lock_file

    try:
        return open_lock_file(path, os.O_RDWR | os.O_CREAT)
    except OSError as err:
        try:
            mode = os.lstat(path).st_mode
            kind = "a symbolic link" if stat.S_ISLNK(mode) else file_kind(mode)
        except OSError:
            kind = None
        why = f"is {kind}, not a regular file" if kind else safe(err.strerror or str(err))
        raise UserError(f"{safe(str(path))}: cannot lock the sweep: {why}") from None


@contextlib.contextmanager
def locked(d: str | os.PathLike[str]) -> Iterator[None]:
    """Exclusive lock on a sweep folder's state: SLURM jobs of one sweep update it concurrently."""
    import fcntl

    Path(d).mkdir(parents=True, exist_ok=True)
    fd = _open_lock(Path(d) / LOCK_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def writer(state: SweepState) -> Iterator[None]:
    """Be the one process that runs or submits the sweep's points, or refuse (exit 2) naming the
    process that is. The kernel releases the lock when its holder dies, however it dies."""
    import fcntl

    state.dir.mkdir(parents=True, exist_ok=True)
    fd = _open_lock(state.dir / WRITER_FILE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(os.pread(fd, 65536, 0) or b"{}")
            except (OSError, ValueError, RecursionError):
                holder = {}
            who = (f"pid {holder.get('pid')} on {holder.get('host')}" if isinstance(holder, dict) and holder.get("pid")
                   else "another process")
            raise UserError(f"sweep {state.tag}: another `fgbench sweep` ({safe(who)}) is running it; wait for it "
                            f"or stop it with `fgbench sweep --cancel {state.tag}`") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


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
            f = d / "recipes" / f"{point.index + 1:02d}-{slug(point.label)}.toml"
            atomic_write_text(f, dumps_recipe(recipe, full=True))
            point.recipe_file = str(f)
        if plan.spec is not None and plan.spec.search is not None:
            import tomli_w

            from fgbench.sweeps import search

            atomic_write_text(d / BASE_FILE, tomli_w.dumps(plan.base or {}))
            spec = plan.spec.search.model_dump(mode="json")
            spec["params"] = {k: v for k, v in spec["params"].items()}
            spec["storage"] = search.storage_url(spec, d)
            spec["study"] = tag
            spec["base_file"] = str(d / BASE_FILE)
            state.search = spec
            rundir.write_json(d / search.SPEC_FILE, spec)
            search.create(spec)
        state.save()
    except BaseException:
        if not existed:
            import shutil

            shutil.rmtree(d, ignore_errors=True)
        raise
    return state


def default_tag(base_name: str, now: float | None = None) -> str:
    return f"{base_name}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now or time.time()))}"


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


# ------------------------------------------------------------------------------ a point's status


def has_run(point: Point) -> bool:
    """The point's run directory exists and holds a run."""
    return bool(point.run_dir) and rundir.is_run_dir(Path(str(point.run_dir)))


def point_status(point: Point, sched: "SchedulerState | None" = None) -> str:
    """A point's status: the one rule every reader follows (the status table, ``--continue``, the
    TUI). ``sched``: what the point's scheduler says of its job (its backend's ``poll``), if any.

    1. **The point has a run** (its run directory holds one): the run directory's status by the
       rule of :mod:`fgbench.rundir.status`, whatever the scheduler says (its word is shown
       beside the status, never instead of it: a requeued job waiting to resume is the
       ``interrupted`` run it will resume).
    2. No run yet and **the scheduler holds the job**: ``running`` while it runs it (the trainer
       is starting and has not written its run directory), else ``pending`` (queued).
    3. No run and **the job died at the scheduler** (failed, node failure, out of memory, time
       limit) before its run directory was written: ``failed``.
    4. Otherwise what the sweep recorded for a point without a run: ``pending`` (never started,
       cancelled while queued, or its run directory was deleted: ``--continue`` runs it again),
       ``interrupted`` (stopped while its trainer was starting) or ``failed`` before any run began
       (a trial that could not be made, a trainer that refused its input and left nothing
       behind; a trainer's end is read by the run directory's rule for a recorded end,
       :func:`fgbench.rundir.status.exit_status`)."""
    if has_run(point):
        return rundir.read_run(str(point.run_dir)).status
    if sched is not None and sched.active:
        return RUNNING if sched.running else PENDING
    if sched is not None and sched.died:
        return FAILED
    if point.run_dir and not Path(point.run_dir).exists():
        return PENDING
    return point.status if point.status in (PENDING, FAILED, INTERRUPTED) else PENDING


def point_done(point: Point) -> bool:
    """True when the point's run finished for good (completed or pruned): never run again."""
    return has_run(point) and point_status(point) in DONE


def settle(point: Point) -> str:
    """Record the point's status as its run directory says (see :func:`point_status`). A run
    directory the trainer never wrote into (only the launcher's files) is removed: the point is
    interrupted (``--continue`` starts it afresh) or failed (the reason goes to its notes)."""
    if point.run_dir and Path(point.run_dir).is_dir() and rundir.RunDir(point.run_dir).is_fresh():
        from fgbench.rundir.launcher import remove_fresh

        info = rundir.read_run(point.run_dir) if rundir.is_run_dir(Path(point.run_dir)) else None
        status = info.status if info is not None else INTERRUPTED
        if status == RUNNING:
            point.status = RUNNING
            return RUNNING
        if status == FAILED and info is not None and info.error:
            point.notes.append(info.error)
        remove_fresh(Path(point.run_dir))
        point.run_dir = None
        point.status = INTERRUPTED if status == INTERRUPTED else FAILED
        return point.status
    point.status = point_status(point)
    return point.status


def reconcile(state: SweepState) -> None:
    """Before the sweep's points start (again): every point takes its status from its run
    directory (a sweep process that died without cleaning up left some ``running``); a run still
    alive stops the continuation."""
    for p in state.points:
        if settle(p) == RUNNING:
            raise UserError(f"sweep {state.tag}: {p.run_dir} is still running; wait for it or stop it first")


def state_runs(state: SweepState) -> tuple[list[Any], list[str]]:
    """The sweep's runs (``fgbench.rundir.RunInfo``) in point order, with their row labels in a
    table (a point's label without its seed: the runs of one group share it); points that never
    got a run directory are left out."""
    infos, labels = [], []
    for p in state.points:
        if has_run(p):
            infos.append(rundir.read_run(str(p.run_dir)))
            labels.append(p.group_label)
    return infos, labels


# ---------------------------------------------------------------------------------- more seeds


def point_recipe(point: Point) -> dict[str, Any]:
    """The TOML data of a point's resolved recipe file, read as every recipe is (a FIFO, a device,
    an oversized or deeply nested file is one :class:`~fgbench.errors.RecipeError`, never a hang)."""
    return read_recipe_data(str(point.recipe_file))


def point_seed(point: Point) -> int:
    """The seed a point runs with: its seed-axis value, else its recipe's ``runtime.seed``."""
    if point.seed is not None:
        return point.seed
    data = point_recipe(point)
    runtime = data.get("runtime")
    return int(runtime.get("seed", 0)) if isinstance(runtime, dict) else 0


def add_seeds(state: SweepState, seeds: Sequence[int]) -> list[Point]:
    """Give every group of the sweep the seeds it does not have yet: one new point per (group,
    missing seed), its recipe the group's recipe with ``runtime.seed`` changed. Returns the new
    points (none when every group has every seed); the runs that exist are never touched."""
    if state.search is not None:
        raise UserError(f"sweep {state.tag}: --seeds goes with grids, variants and plain recipes, not a search")
    groups: dict[str, list[Point]] = {}
    for p in state.points:
        groups.setdefault(p.group_label, []).append(p)
    check_count(len(state.points) + sum(len(set(seeds) - {point_seed(p) for p in ps}) for ps in groups.values()),
                f"sweep {state.tag}", "its points and the new seeds")
    added: list[Point] = []
    for group, members in groups.items():
        have = {point_seed(p) for p in members}
        template = members[0]
        for seed in seeds:
            if seed in have:
                continue
            data = point_recipe(template)
            data.setdefault("runtime", {})["seed"] = seed
            base_name = str(data.get("name", "unnamed"))
            if template.seed is not None:
                base_name = base_name.removesuffix(f"-seed{template.seed}")
            label = " ".join(x for x in (group, f"seed={seed}") if x)
            point = Point(index=len(state.points), label=label, name=f"{base_name}-seed{seed}"[:120],
                          variant=template.variant, overrides={**template.overrides, SEED_FIELD: seed},
                          notes=list(template.notes), description=template.description, seed=seed, group=group)
            data["name"] = point.name
            recipe = validate_recipe(data, f"{state.source}: {label}")
            f = state.dir / "recipes" / f"{point.index + 1:02d}-{slug(label)}.toml"
            atomic_write_text(f, dumps_recipe(recipe, full=True))
            point.recipe_file = str(f)
            state.points.append(point)
            added.append(point)
    if added:
        state.save()
    return added

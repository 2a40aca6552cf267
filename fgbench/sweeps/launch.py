"""How a point's run starts and how its end is recorded: the part every backend shares.

A point's ``fgbench run`` is decided when it starts (by the local sweep, or by its SLURM job on
the node), from its run directory: ``--resume`` of an interrupted run that has a ``last.pt``,
else a fresh run of the point's recipe file in a new, empty run directory (a used one is kept and
listed in ``previous_run_dirs``: nothing but ``fgbench runs rm`` deletes a run). A recipe file
rather than ``--set`` arguments: the union pruning of :mod:`fgbench.sweeps.plan` cannot be said
with ``--set``, and the file is the exact record of what the point is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from fgbench import rundir
from fgbench.errors import UserError
from fgbench.recipe import RecipeError, atomic_write_text, dumps_recipe, read_recipe_data, validate_recipe
from fgbench.rundir.status import exit_status, process_end
from fgbench.sweeps.plan import FAILED, INTERRUPTED, RUNNING, Point, apply_set
from fgbench.sweeps.state import SweepState, settle


def point_command(point: Point, state: SweepState, base_cmd: Sequence[str], extra: Sequence[str]) -> list[str]:
    """The ``fgbench run`` of a point (see the module docstring); makes its run directory when
    it needs a new one."""
    run_dir = Path(point.run_dir) if point.run_dir else None
    trial = ["--trial", f"{state.dir / 'search.json'}:{point.trial}"] if point.trial is not None else []
    if run_dir is not None and (run_dir / rundir.CHECKPOINT_DIR / rundir.LAST_CKPT).is_file() \
            and rundir.read_run(run_dir).status in (INTERRUPTED, RUNNING):
        return [*base_cmd, "run", "--resume", str(run_dir), "--sweep-tag", state.tag, *trial, *extra]
    if run_dir is None or not (run_dir.is_dir() and rundir.RunDir(run_dir).is_fresh()):
        if run_dir is not None:
            point.previous_run_dirs.append(str(run_dir))
        run_dir = rundir.create_run_dir(point.name, state.runs_root)
        point.run_dir = str(run_dir)
    return [*base_cmd, "run", str(point.recipe_file), "--run-dir", str(run_dir), "--sweep-tag", state.tag, *trial,
            *extra]


def ensure_trial(state: SweepState, point: Point) -> None:
    """A search point that has not started gets its trial now: Optuna samples the fields, and the
    point gets its label, overrides and recipe file (written beside the others)."""
    if state.search is None or point.trial is not None:
        return
    from fgbench.sweeps import search

    number, values = search.ask(state.search)
    base = read_recipe_data(state.search["base_file"])
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
        search.tell(state.search, number, FAILED, None)
        raise UserError("; ".join(err.lines)) from None
    f = state.dir / "recipes" / f"{point.index + 1:02d}-trial{number}.toml"
    atomic_write_text(f, dumps_recipe(recipe, full=True))
    point.recipe_file = str(f)


def finish_point(state: SweepState, point: Point, code: int) -> None:
    """Record how a point's run ended: its status from its run directory (:func:`settle`); a
    search trial's outcome goes to the study."""
    point.exit_code = code
    run_dir = Path(point.run_dir) if point.run_dir else None
    if run_dir is not None and not rundir.is_run_dir(run_dir):
        # Nothing in the directory speaks for the run: the trainer refused its input (exit 2) and
        # a launcher's supervisor removed the directory, or no supervisor recorded the end (a
        # SLURM node) and the trainer wrote nothing. Its end is read by the run directory's own
        # rule for a recorded end (as exit.json would hold it), and the point keeps that as a point
        # without a run (see sweeps.state.point_status); no directory without a recipe stays behind.
        if run_dir.is_dir() and rundir.RunDir(run_dir).is_fresh():
            from fgbench.rundir.launcher import remove_fresh

            remove_fresh(run_dir)
        point.run_dir = None
        point.status = exit_status(process_end(code)).status  # interrupted or failed
    else:
        settle(point)  # the run directory's rule (a launcher's exit.json where the trainer wrote nothing)
    if state.search is not None and point.trial is not None and point.run_dir:
        from fgbench.rundir.events import METRICS_FILE, read_events
        from fgbench.sweeps import search

        events = read_events(Path(point.run_dir) / METRICS_FILE)
        point.value = search.trial_value(events, state.search.get("metric", "val_top1"))
        search.tell(state.search, point.trial, point.status, point.value)

"""A sweep's tables: the ablation table (every point, in the sweep's order; a search's trials by
value) and the status table (each point's fgbench status and its scheduler's word), and the best
trial's recipe of a search. Pure zone: run directories are read with ``fgbench.rundir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fgbench import rundir
from fgbench.errors import UserError
from fgbench.sweeps import backend
from fgbench.sweeps.plan import COMPLETED, INTERRUPTED, PENDING, RUNNING, Point, label_value
from fgbench.sweeps.state import SweepState, has_run, point_status


def point_runs(state: SweepState) -> tuple[list[Any], list[Point]]:
    """A ``RunInfo`` per point, in point order: the run's, or for a point without a run (pending,
    or failed before it began) one with its status and the point's recipe, and no numbers, so
    that every point of the sweep has its row."""
    import tomllib

    infos = []
    for p in state.points:
        if has_run(p):
            infos.append(rundir.read_run(str(p.run_dir)))
            continue
        recipe: dict[str, Any] = {}
        if p.recipe_file and Path(p.recipe_file).is_file():
            try:
                recipe = tomllib.loads(Path(p.recipe_file).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                recipe = {}
        infos.append(rundir.RunInfo(path=Path(p.name), status=point_status(p), name=p.name, recipe=recipe,
                                    summary=None, info={}, error="; ".join(p.notes[-1:]) or None))
    return infos, list(state.points)


def ablation_table(state: SweepState) -> tuple[list[tuple[str, str, str]], list[dict[str, Any]]]:
    """The sweep's table: a row per point in point order (points without a run show their status
    and no numbers); a search's trials that started, by value, best first (pruned and failed
    trials after, by their value so far), with the searched fields as columns."""
    from fgbench import report

    fresh = SweepState.load_dir(state.dir) if state.path.is_file() else state
    if fresh.search is None:
        infos, pts = point_runs(fresh)
        if not infos:
            return [], []
        return report.compare_table(infos, [p.label for p in pts], fields=[], label_header="variant")
    from fgbench.rundir import events as metrics
    from fgbench.sweeps import search as S

    pts = [p for p in fresh.points if has_run(p)]
    if not pts:
        return [], []
    infos = [rundir.read_run(str(p.run_dir)) for p in pts]
    values = []
    for p in pts:
        v = p.value
        if v is None:
            v = S.trial_value(metrics.read_events(Path(str(p.run_dir)) / metrics.METRICS_FILE), fresh.search["metric"])
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


def status_rows(state: SweepState) -> list[dict[str, Any]]:
    """One row per point: fgbench's status from the run directory and the scheduler's state of
    its job (its backend's :meth:`~fgbench.sweeps.backend.Backend.poll`). A run whose job the
    scheduler reports as running is running even where its process is on another node (the run's
    pid means nothing here); one whose job is queued again is waiting to resume. A run directory
    that no longer exists is not listed: the point is pending again."""
    fresh = SweepState.load_dir(state.dir)
    sched = backend.get(fresh.launcher).poll(fresh)
    rows = []
    for p in fresh.points:
        st = point_status(p)
        js = sched.get(p.index)
        if js is not None and js.running and st in (INTERRUPTED, PENDING, RUNNING):
            st = RUNNING
        elif js is not None and js.active and st == RUNNING:
            st = INTERRUPTED if has_run(p) else PENDING  # requeued: waiting to resume
        rows.append({"point": str(p.index + 1), "label": p.label, "status": st, "job": p.job_id or "",
                     "scheduler": js.text if js is not None else "", "active": bool(js is not None and js.active),
                     "value": p.value, "run_dir": p.run_dir if has_run(p) else ""})
    return rows


def best_recipe_text(state: SweepState) -> tuple[str, Point]:
    """The recipe file of a search's best completed trial, headed by where it came from."""
    if state.search is None:
        raise UserError(f"sweep {state.tag}: --best needs a search (sweep.search); compare a grid with "
                        f"`fgbench runs compare --sweep {state.tag}`")
    from fgbench.rundir import events as metrics
    from fgbench.sweeps import search as S

    best: Point | None = None
    for p in state.points:
        if p.trial is None or not p.recipe_file or point_status(p) != COMPLETED:
            continue
        if p.value is None and p.run_dir:
            p.value = S.trial_value(metrics.read_events(Path(p.run_dir) / metrics.METRICS_FILE), state.search["metric"])
        if p.value is not None and (best is None or p.value > (best.value or -1)):
            best = p
    if best is None:
        raise UserError(f"sweep {state.tag}: no trial has completed yet")
    body = Path(str(best.recipe_file)).read_text(encoding="utf-8")
    sets = ", ".join(f"{k} = {label_value(v)}" for k, v in best.overrides.items())
    head = (f"# The best trial of search {state.tag}: {best.label}, {state.search['metric']} = {best.value:.2f}\n"
            f"# (run {best.run_dir}); sampled: {sets}\n")
    return head + body, best

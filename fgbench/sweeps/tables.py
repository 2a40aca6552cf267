"""A sweep's tables: the ablation table (every point, in the sweep's order; a search's trials by
value) and the status table (each point's fgbench status and its scheduler's word), and the best
trial's recipe of a search. Pure zone: run directories are read with ``fgbench.rundir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fgbench import rundir
from fgbench.errors import UserError
from fgbench.recipe import MAX_RECIPE_BYTES
from fgbench.textfile import read_text_file
from fgbench.sweeps import backend
from fgbench.sweeps.plan import COMPLETED, Point, label_value
from fgbench.sweeps.state import SweepState, has_run, point_recipe, point_status


def point_runs(state: SweepState) -> tuple[list[Any], list[Point]]:
    """A ``RunInfo`` per point, in point order: the run's, or for a point without a run (pending,
    or failed before it began) one with its status and the point's recipe, and no numbers, so
    that every point of the sweep has its row."""
    infos = []
    for p in state.points:
        if has_run(p):
            infos.append(rundir.read_run(str(p.run_dir)))
            continue
        recipe: dict[str, Any] = {}
        if p.recipe_file:
            try:
                recipe = point_recipe(p)
            except UserError:  # missing or damaged: the row shows the point without its recipe
                recipe = {}
        infos.append(rundir.RunInfo(path=Path(p.name), status=point_status(p), name=p.name, recipe=recipe,
                                    summary=None, info={}, error="; ".join(p.notes[-1:]) or None))
    return infos, list(state.points)


def ablation_table(state: SweepState) -> tuple[list[tuple[str, str, str]], list[dict[str, Any]]]:
    """:func:`sweep_table` without its notes."""
    columns, rows, _notes = sweep_table(state)
    return columns, rows


def sweep_table(state: SweepState, baseline: str | None = None,
                ) -> tuple[list[tuple[str, str, str]], list[dict[str, Any]], list[str]]:
    """The sweep's table and the notes that go under it. A grid or variants: a row per point in
    point order (points without a run show their status and no numbers), and the runs of a point
    that differ only in the seed as one row (``fgbench.report.group_compare_table``: n, mean, t
    interval, sd, min-max, differences to the baseline row, the first or ``baseline``). A search:
    its trials that started, by value, best first (pruned and failed trials after, by their value
    so far), with the searched fields as columns."""
    from fgbench import report

    fresh = SweepState.load_dir(state.dir) if state.path.is_file() else state
    if fresh.search is None:
        infos, pts = point_runs(fresh)
        if not infos:
            return [], [], []
        return report.group_compare_table(infos, [p.group_label for p in pts], fields=[], label_header="variant",
                                          baseline=baseline)
    if baseline is not None:
        raise UserError(f"sweep {state.tag}: --baseline goes with grids, variants and seeds; a search's table "
                        "is ordered by value")
    columns, rows = _search_table(fresh)
    return columns, rows, []


def _search_table(fresh: SweepState) -> tuple[list[tuple[str, str, str]], list[dict[str, Any]]]:
    from fgbench import report
    from fgbench.rundir.events import METRICS_FILE, read_events
    from fgbench.sweeps import search

    spec = fresh.search
    assert spec is not None
    pts = [p for p in fresh.points if has_run(p)]
    if not pts:
        return [], []
    infos = [rundir.read_run(str(p.run_dir)) for p in pts]
    values = []
    for p in pts:
        v = p.value
        if v is None:
            v = search.trial_value(read_events(Path(str(p.run_dir)) / METRICS_FILE), spec["metric"])
        values.append(v)
    def rank(i: int) -> tuple[bool, float]:
        v = values[i]
        return infos[i].status != COMPLETED, -(v if v is not None else -1e9)

    order = sorted(range(len(pts)), key=rank)
    columns, rows = report.compare_table([infos[i] for i in order], [pts[i].label for i in order],
                                         fields=list(spec["params"]), label_header="trial")
    for row, i in zip(rows, order):
        row["value"] = values[i]
    columns.insert(1, ("value", spec["metric"], "acc"))
    if ("status", "status", "text") not in columns and any(r["status"] != COMPLETED for r in rows):
        columns.insert(2, ("status", "status", "text"))
    return columns, rows


def status_rows(state: SweepState) -> list[dict[str, Any]]:
    """One row per point: its status by the one rule (:func:`~fgbench.sweeps.state.point_status`:
    the run directory's; the scheduler's word only for a point without a run yet) and the
    scheduler's state of its job (its backend's :meth:`~fgbench.sweeps.backend.Backend.poll`)
    beside it. A run directory that no longer exists is not listed: the point is pending again."""
    fresh = SweepState.load_dir(state.dir)
    sched = backend.get(fresh.launcher).poll(fresh)
    rows = []
    for p in fresh.points:
        js = sched.get(p.index)
        st = point_status(p, js)
        rows.append({"point": str(p.index + 1), "label": p.label, "status": st, "job": p.job_id or "",
                     "scheduler": js.text if js is not None else "", "active": bool(js is not None and js.active),
                     "value": p.value, "run_dir": p.run_dir if has_run(p) else ""})
    return rows


def best_recipe_text(state: SweepState) -> tuple[str, Point]:
    """The recipe file of a search's best completed trial, headed by where it came from."""
    if state.search is None:
        raise UserError(f"sweep {state.tag}: --best needs a search (sweep.search); compare a grid with "
                        f"`fgbench runs compare --sweep {state.tag}`")
    from fgbench.rundir.events import METRICS_FILE, read_events
    from fgbench.sweeps import search

    best: Point | None = None
    for p in state.points:
        if p.trial is None or not p.recipe_file or point_status(p) != COMPLETED:
            continue
        if p.value is None and p.run_dir:
            p.value = search.trial_value(read_events(Path(p.run_dir) / METRICS_FILE), state.search["metric"])
        if p.value is not None and (best is None or p.value > (best.value or -1)):
            best = p
    if best is None:
        raise UserError(f"sweep {state.tag}: no trial has completed yet")
    body = read_text_file(str(best.recipe_file), MAX_RECIPE_BYTES, "recipe")
    sets = ", ".join(f"{k} = {label_value(v)}" for k, v in best.overrides.items())
    head = (f"# The best trial of search {state.tag}: {best.label}, {state.search['metric']} = {best.value:.2f}\n"
            f"# (run {best.run_dir}); sampled: {sets}\n")
    return head + body, best

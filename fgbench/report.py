"""Tables, curves and confusion summaries of finished (or running) runs, for `fgbench runs` and sweeps.

Pure zone: stdlib only (no torch, no plotext), so `fgbench runs list|compare|show` answer in a
fraction of a second even with hundreds of runs.

Decisions:

* Numbers come from ``summary.json`` (which the trainer rewrites after every epoch) and, for
  curves, from ``metrics.jsonl``. Nothing here recomputes an accuracy; "test at best" is the test
  accuracy of the epoch the run selected on ``eval.select_on``, never a max over test epochs.
* ``compare`` shows as columns only the recipe fields whose values differ between the runs (the
  ablation's variables); ``name``, ``description`` and ``sweep`` are bookkeeping and never count.
  A field present in one resolved recipe and missing in another counts as differing and shows as
  ``-``.
* Markdown tables are padded so that the raw text lines up, like the seeds' README tables: they
  read well in a terminal and paste into a README unchanged.
* Curves are drawn with our own small text plotter (one character cell per point, markers per
  series). plotext draws prettier charts but its output depends on the terminal and costs 40 us per
  point; these plots are tiny, deterministic and testable.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from fgbench.formats import MISSING, fmt_duration, fmt_value
from fgbench.rundir.layout import SUMMARY_FILE
from fgbench.rundir.confusion import class_count, iter_cells
from fgbench.rundir.events import METRICS_FILE, SERIES, event_scalars, read_events
from fgbench.rundir.summary import LastEpoch, SplitNumbers, Summary, size_order
from fgbench.textsafe import safe

if TYPE_CHECKING:
    from fgbench.rundir.reader import RunInfo

BOOKKEEPING_FIELDS = ("name", "description", "sweep")

# ------------------------------------------------------------------------------- recipe fields


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested tables to dotted keys (``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": 0.1}``).
    Lists stay values: ``stages`` or ``eval.final_test_sizes`` compare as a whole."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict) and value:
                out.update(flatten(value, path))
            else:
                out[path] = value
    else:
        out[prefix] = data
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    return a == b


def differing_fields(recipes: Sequence[dict[str, Any]], ignore: Iterable[str] = BOOKKEEPING_FIELDS) -> list[str]:
    """Dotted recipe fields whose values are not the same in every recipe, in schema order."""
    flats = [flatten(r) for r in recipes]
    skip = tuple(ignore)
    keys: list[str] = []
    seen: set[str] = set()
    for flat in flats:
        for k in flat:
            if k not in seen:
                seen.add(k)
                keys.append(k)
    out = []
    for k in keys:
        if k.split(".", 1)[0] in skip:
            continue
        values = [f.get(k, MISSING) for f in flats]
        first = values[0]
        if any(v is MISSING for v in values) and not all(v is MISSING for v in values):
            out.append(k)
        elif not all(_same(first, v) for v in values[1:]):
            out.append(k)
    # When a union's tag differs (optim.name sgd vs adam), the fields that only one variant has
    # (momentum, betas) follow from the tag: they are not variables of their own.
    from fgbench.recipe import UNION_SECTIONS, union_tag_field

    for section in UNION_SECTIONS:
        tag = union_tag_field(section)
        if f"{section}.{tag}" in out:
            implied = {k for k in out if k.startswith(section + ".") and k != f"{section}.{tag}"
                       and any(k not in f for f in flats)}
            out = [k for k in out if k not in implied]
    return out


def get_path(data: dict[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def matches_where(recipe: dict[str, Any], key: str, value: Any, *, negate: bool = False) -> bool:
    """``--where optim.lr=0.005``: compare a resolved-recipe value with a parsed TOML value.
    Numbers compare numerically (0.005 == 5e-3); a missing field never matches ``=``."""
    got = get_path(recipe, key, MISSING)
    if got is MISSING:
        return negate
    if isinstance(value, str) and not isinstance(got, str):
        equal = str(got) == value
    else:
        equal = _same(got, value) if not isinstance(got, list) else got == value
    return equal != negate


def name_matches(pattern: str, *names: str) -> bool:
    """``--name``: a glob (``sc_cub*``) or, without glob characters, a substring."""
    if any(c in pattern for c in "*?["):
        return any(fnmatchcase(n, pattern) for n in names)
    return any(pattern in n for n in names)


# ------------------------------------------------------------------------------------- values


def fmt_recipe_value(value: Any) -> str:
    """Recipe values keep their precision (an lr of 1e-4 must not print as 0.00)."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt_recipe_value(v) for v in value) + "]"
    return fmt_value(value)


def plural(n: Any, word: str, many: str | None = None) -> str:
    """``1 epoch``, ``2 epochs`` (``many`` for irregular plurals)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


SELECT_ON_TEXT = {"val": "chosen on validation", "test": "chosen on test", "last": "the last epoch"}


def selected_epoch_text(epoch: Any, select_on: Any) -> str:
    """How a run's selected epoch reads in a sentence: ``best epoch 3 (chosen on validation)``, or
    ``epoch 5 (the last epoch)`` when ``eval.select_on = "last"`` (no "best" was chosen then)."""
    if select_on == "last":
        return f"epoch {fmt_value(epoch)} (the last epoch)"
    return f"best epoch {fmt_value(epoch)} ({SELECT_ON_TEXT.get(select_on, f'chosen on {select_on}')})"


# ------------------------------------------------------------------------------- run rows


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def run_row(run: "RunInfo") -> dict[str, Any]:
    """One run as a flat row of raw values. A run whose files cannot be read (``run.damaged``)
    shows as ``damaged`` with the reason, its numbers left out."""
    damaged = run.damaged
    row = {
        "run": run.run_id,
        "status": "damaged" if damaged else run.status,
        "damaged": damaged,
        "recipe": run.name,
        "dataset": run.dataset,
        "model": run.arch,
        "sweep": run.info.get("sweep_tag"),
        "path": str(run.path),
    }
    row.update((run.summary or Summary()).headline())
    return row


# (key, header, kind) ; kind drives formatting
LIST_COLUMNS: list[tuple[str, str, str]] = [
    ("run", "run", "text"),
    ("status", "status", "text"),
    ("recipe", "recipe", "text"),
    ("dataset", "dataset", "text"),
    ("model", "model", "text"),
    ("epochs", "epochs", "text"),
    ("val_top1", "val@best", "acc"),
    ("test_top1_best", "test@best", "acc"),
    ("test_top1_last", "test@last", "acc"),
    ("ema_val_top1", "ema val@best", "acc"),
    ("ema_test_top1_best", "ema test@best", "acc"),
    ("ema_test_top1_last", "ema test@last", "acc"),
    ("duration_s", "time", "duration"),
    ("images_per_s", "img/s", "rate"),
    ("data_wait_frac", "data wait", "share"),
    ("gpu_util", "GPU", "percent"),
    ("damaged", "damaged", "text"),
]

#: the telemetry of summary.json (fgbench.train.telemetry), shown when some run has it
TELEMETRY_COLUMNS: list[tuple[str, str, str]] = [("data_wait_frac", "data wait", "share"), ("gpu_util", "GPU", "percent")]

METRIC_COLUMNS: list[tuple[str, str, str]] = [
    ("val_top1", "val top-1 @best", "acc"),
    ("test_top1_best", "test top-1 @best", "acc"),
    ("test_top1_last", "test top-1 @last", "acc"),
    ("ema_val_top1", "EMA val @best", "acc"),
    ("ema_test_top1_best", "EMA test @best", "acc"),
    ("ema_test_top1_last", "EMA test @last", "acc"),
]


def _with_epochs(row: dict[str, Any]) -> dict[str, Any]:
    done, total = row.get("epochs_done"), row.get("total_epochs")
    if done is None and total is None:
        row["epochs"] = "-"
    elif total is None:
        row["epochs"] = f"{done}"
    else:
        row["epochs"] = f"{done if done is not None else 0}/{total}"
    return row


"""the value of a recipe field that a run's recipe does not have (a compare table cell ``-``)"""


def cell_text(value: Any, kind: str) -> str:
    """One table cell as the Markdown and text tables print it (the TUI's tables use it too)."""
    return _cell(value, kind)


def _cell(value: Any, kind: str) -> str:
    if kind == "duration":
        return fmt_duration(value)
    if kind == "rate":
        return "-" if value is None else f"{value:.0f}"
    if kind == "share":  # a fraction 0..1 shown as a percentage
        return "-" if value is None else f"{100 * value:.0f}%"
    if kind == "percent":
        return "-" if value is None else f"{value:.0f}%"
    if kind == "recipe":
        return "-" if value is MISSING or value is None else fmt_recipe_value(value)
    if kind == "acc":
        return fmt_value(value, 2)
    if kind in ("stat", "diff"):
        return _stat_cell(value)
    return fmt_value(value)


def _drop_empty(columns: list[tuple[str, str, str]], rows: list[dict[str, Any]], optional: Iterable[str]) -> list[tuple[str, str, str]]:
    """Leave out optional columns that are empty in every row (no EMA, no val split)."""
    opt = set(optional)
    return [c for c in columns if c[0] not in opt or any(r.get(c[0]) is not None for r in rows)]


def _size_columns(rows: Sequence[dict[str, Any]], kind: str) -> list[tuple[str, str, str]]:
    """One column per extra test size any row has (``test@448``, ``ema_test@448``), raw before EMA,
    sizes in order."""
    sizes: list[str] = []
    for row in rows:
        for key in row:
            if (key.startswith("test@") or key.startswith("ema_test@")) and key not in sizes:
                sizes.append(key)
    sizes.sort(key=lambda k: (k.startswith("ema_"), size_order(k.split("@", 1)[1])))
    return [(k, ("EMA test @" if k.startswith("ema_") else "test @") + k.split("@", 1)[1], kind) for k in sizes]


def list_table(runs: Sequence[Any]) -> tuple[list[tuple[str, str, str]], list[dict[str, Any]]]:
    rows = [_with_epochs(run_row(r)) for r in runs]
    optional = ("ema_val_top1", "ema_test_top1_best", "ema_test_top1_last", "damaged", "data_wait_frac", "gpu_util")
    return _drop_empty(LIST_COLUMNS, rows, optional), rows


def compare_table(
    runs: Sequence[Any],
    labels: Sequence[str] | None = None,
    *,
    fields: Sequence[str] | None = None,
    label_header: str = "run",
) -> tuple[list[tuple[str, str, str]], list[dict[str, Any]]]:
    """The ablation table: one row per run, the differing recipe fields (or ``fields``), then the
    headline numbers. EMA and extra-test-size columns appear when some run has them."""
    recipe_fields = list(fields) if fields is not None else differing_fields([r.recipe for r in runs])
    rows: list[dict[str, Any]] = []
    for i, run in enumerate(runs):
        row = _with_epochs(run_row(run))
        row[label_header] = labels[i] if labels is not None else run.run_id
        for f in recipe_fields:
            row[f"recipe:{f}"] = get_path(run.recipe, f, MISSING)
        rows.append(row)
    columns: list[tuple[str, str, str]] = [(label_header, label_header, "text")]
    columns += [(f"recipe:{f}", f, "recipe") for f in recipe_fields]
    metric_cols = list(METRIC_COLUMNS)
    metric_cols += _size_columns(rows, "acc")
    metric_cols += [("epochs", "epochs", "text"), ("duration_s", "time", "duration"), *TELEMETRY_COLUMNS]
    optional = [c[0] for c in metric_cols if c[0] not in ("epochs", "duration_s", "test_top1_best", "test_top1_last")]
    # (data wait and GPU are left out when no run has them: runs from before telemetry, CPU runs)
    columns += _drop_empty(metric_cols, rows, optional)
    # A status column only when it tells something (a sweep with a failed or running row).
    if any(r["status"] != "completed" for r in rows):
        columns.insert(1, ("status", "status", "text"))
    return columns, rows


# ------------------------------------------------------------------------- seeds' references

RULE_TEXT = {
    "max_over_test_epochs": "the best test accuracy over the epochs",
    "last_epoch": "the test accuracy after the last epoch",
    "best_val_epoch": "the test accuracy at the epoch with the best validation accuracy",
}
#: the ``eval.select_on`` under which a run's final-size numbers follow a reference rule
RULE_SELECT_ON = {"max_over_test_epochs": "test", "last_epoch": "last", "best_val_epoch": "val"}

_RULE_CACHE: dict[str, tuple[tuple[int, int], list[dict[str, Any]]]] = {}


def _epoch_events(run: Any) -> list[dict[str, Any]]:
    """The run's epoch events (read once per change of its metrics file)."""
    path = run.path / METRICS_FILE
    try:
        st = path.stat()
    except OSError:
        return []
    key = (st.st_mtime_ns, st.st_size)
    hit = _RULE_CACHE.get(str(path))
    if hit is None or hit[0] != key:
        epochs = [ev for ev in read_events(path) if ev.get("event") == "epoch"]
        _RULE_CACHE[str(path)] = hit = (key, epochs)
    return hit[1]


def _at_best(epochs: Sequence[dict[str, Any]], select: str, value: str) -> float | None:
    best: tuple[float, float] | None = None
    for ev in epochs:
        sel, val = _num(ev.get(select)), _num(ev.get(value))
        if sel is not None and val is not None and (best is None or sel > best[0]):  # the first best, as selection
            best = (sel, val)
    return None if best is None else best[1]


def numbers_under_rule(rule: str, run: Any) -> dict[str, float | None]:
    """A run's numbers measured the way a seed measured its reference: ``raw``, ``ema``, ``val`` and
    ``raw@SIZE``/``ema@SIZE`` for the extra test sizes (those only when the run selected its model
    under the same rule, else None: the run never measured them so)."""
    summary: Summary = run.summary or Summary()
    out: dict[str, float | None] = {}
    if rule == "last_epoch":
        last = summary.last or LastEpoch()
        raw, ema = last.raw or SplitNumbers(), last.ema or SplitNumbers()
        out["raw"], out["ema"], out["val"] = _num(raw.test_top1), _num(ema.test_top1), _num(raw.val_top1)
    else:
        epochs = _epoch_events(run)
        if rule == "max_over_test_epochs":
            raws = [v for ev in epochs if (v := _num(ev.get("test_top1"))) is not None]
            emas = [v for ev in epochs if (v := _num(ev.get("ema_test_top1"))) is not None]
            out["raw"] = max(raws) if raws else None
            out["ema"] = max(emas) if emas else None
            out["val"] = None
        else:  # best_val_epoch
            out["raw"] = _at_best(epochs, "val_top1", "test_top1")
            out["ema"] = _at_best(epochs, "ema_val_top1", "ema_test_top1")
            vals = [v for ev in epochs if (v := _num(ev.get("val_top1"))) is not None]
            out["val"] = max(vals) if vals else None
    same = summary.select_on == RULE_SELECT_ON.get(rule)
    for size, by_model in summary.final_test_sizes.items():
        for model in ("raw", "ema"):
            out[f"{model}@{size}"] = _num(by_model.get(model)) if same else None
    return out


def reference_numbers(reference: dict[str, Any]) -> list[tuple[str, float]]:
    """A recipe's ``[reference]`` as (key, number) pairs, keys as :func:`numbers_under_rule`'s."""
    out = [(k, float(reference[k])) for k in ("raw", "ema", "val") if _num(reference.get(k)) is not None]
    for size, by_model in sorted((reference.get("test_sizes") or {}).items(), key=lambda kv: size_order(kv[0])):
        for model in ("raw", "ema"):
            if _num((by_model or {}).get(model)) is not None:
                out.append((f"{model}@{size}", float(by_model[model])))
    return out


def reference_key_text(key: str) -> str:
    model, _, size = key.partition("@")
    name = {"raw": "test", "ema": "EMA test", "val": "val"}[model]
    return f"{name} @{size}" if size else name


def headline_reference(recipe: dict[str, Any]) -> tuple[str, float] | None:
    """The one reference number a compare table shows: EMA, else raw, at the test size the run ends
    on; else the first number at an extra size."""
    ref = recipe.get("reference")
    if not isinstance(ref, dict):
        return None
    pairs = dict(reference_numbers(ref))
    stages = recipe.get("stages") or []
    size = next((st.get("test_size") for st in reversed(stages) if isinstance(st, dict) and st.get("test_size")),
                get_path(recipe, "data.test_size"))
    for key in ("ema", "raw", f"ema@{size}", f"raw@{size}"):
        if key in pairs:
            return key, pairs[key]
    others = [(k, v) for k, v in pairs.items() if k != "val"]
    return others[0] if others else None


def reference_text(recipe: dict[str, Any], runs: Sequence[Any]) -> str:
    """``runs show``'s reference section: each number the seed reported beside this run's (or these
    runs') under the same rule, with the difference."""
    ref = recipe.get("reference")
    if not isinstance(ref, dict):
        return "this run's recipe has no [reference] (the seed's numbers)\n"
    from fgbench.groups import one_per_seed, seed_of
    from fgbench.stats import describe

    rule = str(ref.get("rule"))
    lines = [f"source: {safe(ref.get('source', '-'))}", f"rule:   {safe(rule)} ({RULE_TEXT.get(rule, '?')})"]
    mine = [(seed_of(r.recipe), numbers_under_rule(rule, r)) for r in runs]
    rows = []
    for key, value in reference_numbers(ref):
        found = [(s, v) for s, m in mine if (v := m.get(key)) is not None]
        got = [v for _s, v in one_per_seed(found)]
        d = describe(got)
        if d is None:
            why = ("not measured under this rule (the run selected on "
                   f"{(runs[0].summary or Summary()).select_on or '?'})" if "@" in key else "no such number yet")
            rows.append((reference_key_text(key), f"{value:.2f}", "-", why))
        elif d.n == 1:
            rows.append((reference_key_text(key), f"{value:.2f}", f"{d.mean:.2f}", f"{d.mean - value:+.2f}"))
        else:
            inside = "inside" if d.contains(value) else "outside"
            rows.append((reference_key_text(key), f"{value:.2f}", _stat_cell(d),
                         f"{d.mean - value:+.2f} (the seed's number is {inside} the 95 % interval)"))
    head = ("number", "seed", "this run" if len(runs) == 1 else f"these {len(runs)} runs", "difference")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    for r in [head, *rows]:
        lines.append("  ".join(c.ljust(widths[i]) if i in (0, 3) else c.rjust(widths[i]) for i, c in enumerate(r)).rstrip())
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- group rows

#: the numbers a group table compares to the baseline (the headline numbers, raw and EMA)
DIFF_METRICS = ("test_top1_best", "ema_test_top1_best")
GROUP_CELL_LEGEND = ("a group of n > 1 runs (the same resolved recipe but the seed) reads: mean [95 % t interval "
                     "of the mean] sd, min-max; a single run reads as its number")


def _group_label(members: Sequence[str]) -> str:
    first = members[0]
    if all(m == first for m in members):
        return first
    common = first
    for m in members[1:]:
        while not m.startswith(common):
            common = common[:-1]
    common = re.sub(r"\s*seed=?\d*$", "", common).rstrip(" -_/@,.:")  # "B seed=0", "B seed=1" -> "B"
    return common or f"{first} (+{len(members) - 1})"


def group_compare_table(
    runs: Sequence[Any],
    labels: Sequence[str] | None = None,
    *,
    fields: Sequence[str] | None = None,
    label_header: str = "run",
    baseline: str | None = None,
) -> tuple[list[tuple[str, str, str]], list[dict[str, Any]], list[str]]:
    """The ablation table with runs that differ only in the seed as one row (a group, see
    :mod:`fgbench.groups`): n, the seeds, and for every number a :class:`fgbench.stats.Described`
    (mean, sd, t interval, min, max) of the group's completed runs, then each row's difference to
    the baseline row (the first, or the one ``baseline`` names) in :data:`DIFF_METRICS`, with a
    Holm-adjusted interval and its verdict. Returns (columns, rows, notes): the notes say how the
    intervals were made and go under a text or Markdown table.

    When every group is a single run and no ``baseline`` is asked for, this is exactly
    :func:`compare_table` (no interval exists to show) with no notes."""
    from fgbench.groups import SEED_FIELD, group_runs, one_per_seed, seed_counts, seed_of
    from fgbench.stats import METHOD_TEXT, adjustment_text, compare_to_baseline, describe

    found = group_runs(runs)
    if baseline is None and all(len(g) == 1 for g in found):
        single_columns, single_rows = compare_table(runs, labels, fields=fields, label_header=label_header)
        return single_columns, single_rows, _add_reference_columns(single_columns, single_rows, [[r] for r in runs], [])
    index = {id(r): i for i, r in enumerate(runs)}
    firsts = [g.first for g in found]
    recipe_fields = list(fields) if fields is not None else [
        f for f in differing_fields([r.recipe for r in firsts]) if f != SEED_FIELD]
    metric_keys = [c[0] for c in METRIC_COLUMNS]
    rows: list[dict[str, Any]] = []
    values: list[dict[str, list[tuple[int, float]]]] = []
    for g in found:
        member_labels = [labels[index[id(r)]] if labels is not None else (r.run_id if len(g) == 1 else r.name)
                         for r in g.runs]
        done = [r for r in g.runs if r.status == "completed"] if len(g) > 1 else list(g.runs)
        per_run = [(seed_of(r.recipe), _with_epochs(run_row(r))) for r in done]
        row: dict[str, Any] = _with_epochs(run_row(g.first)) if len(g) == 1 else {
            "status": f"{len(done)}/{len(g)} completed" if len(done) < len(g) else "completed"}
        row[label_header] = _group_label(member_labels)
        row.setdefault("path", str(g.first.path))
        row["n"] = len(one_per_seed([(s, 0.0) for s, _r in per_run]))  # seeds, not runs
        row["seeds"] = seed_counts([s for s, _r in per_run]) if per_run else "-"
        row["runs"] = [r.run_id for r in g.runs]
        for f in recipe_fields:
            row[f"recipe:{f}"] = get_path(g.first.recipe, f, MISSING)
        keys = list(metric_keys)
        for _s, r in per_run:
            keys += [k for k in r if (k.startswith("test@") or k.startswith("ema_test@")) and k not in keys]
        by_metric: dict[str, list[tuple[int, float]]] = {}
        for key in keys:
            pairs = one_per_seed([(s if s is not None else -1 - i, r[key]) for i, (s, r) in enumerate(per_run)
                                  if r.get(key) is not None])
            by_metric[key] = pairs
            if len(g) > 1:
                row[key] = describe([v for _s, v in pairs])
        if len(g) > 1:
            durations = [r["duration_s"] for _s, r in per_run if r.get("duration_s") is not None]
            row["duration_s"] = sum(durations) / len(durations) if durations else None
            for key, _h, _k in TELEMETRY_COLUMNS:  # means, like the time
                vals = [r[key] for _s, r in per_run if r.get(key) is not None]
                row[key] = sum(vals) / len(vals) if vals else None
            row["epochs"] = per_run[0][1]["epochs"] if per_run else "-"
        rows.append(row)
        values.append(by_metric)
    base_i = 0
    if baseline is not None:
        matches = [i for i, (g, row) in enumerate(zip(found, rows))
                   if row[label_header] == baseline or any(baseline in (r.run_id, r.name) for r in g.runs)]
        if not matches:
            matches = [i for i, g in enumerate(found) if any(name_matches(baseline, r.run_id, r.name) for r in g.runs)]
        if len(matches) != 1:
            from fgbench.errors import UserError

            what = "no row" if not matches else f"{len(matches)} rows"
            raise UserError(f"--baseline {baseline}: {what} of the table match; give a row label, a run or a recipe name")
        base_i = matches[0]
    notes = [GROUP_CELL_LEGEND + "."]
    if any("x" in str(r.get("seeds", "")) for r in rows):
        notes.append("seeds 0x2: seed 0 ran twice; the runs of a seed count as one value, their mean "
                     "(n counts seeds, not runs: a rerun measures the machine, not the spread over seeds).")
    diff_cols: list[tuple[str, str, str]] = []
    base_label = rows[base_i][label_header]
    for key in DIFF_METRICS:
        base_vals = values[base_i].get(key) or []
        others = [i for i in range(len(rows)) if i != base_i and values[i].get(key)]
        if not base_vals or not others:
            continue
        diffs = compare_to_baseline(base_vals, [values[i][key] for i in others])
        for i, d in zip(others, diffs):
            rows[i][f"diff:{key}"] = d
        rows[base_i][f"diff:{key}"] = "baseline"
        header = dict((k, h) for k, h, _kind in METRIC_COLUMNS)[key]
        diff_cols.append((f"diff:{key}", f"Δ {header}", "diff"))
        m = sum(1 for d in diffs if d.resolved is not None)
        methods = sorted({METHOD_TEXT[d.method] for d in diffs})
        notes.append(f"Δ {header}: row - baseline ({base_label}); {adjustment_text(m)}; {', '.join(methods)}; "
                     "resolved: the interval excludes zero, else within noise.")
    columns: list[tuple[str, str, str]] = [(label_header, label_header, "text")]
    if any(r.get("status") != "completed" for r in rows):
        columns.append(("status", "status", "text"))
    columns += [("n", "n", "text"), ("seeds", "seeds", "text")]
    columns += [(f"recipe:{f}", f, "recipe") for f in recipe_fields]
    metric_cols = [(k, h, "stat") for k, h, _kind in METRIC_COLUMNS]
    metric_cols += _size_columns(rows, "stat")
    optional = [c[0] for c in metric_cols if c[0] not in ("test_top1_best", "test_top1_last")]
    columns += _drop_empty(metric_cols, rows, optional)
    columns += diff_cols
    columns += [("epochs", "epochs", "text"), ("duration_s", "time", "duration")]
    columns += _drop_empty(TELEMETRY_COLUMNS, rows, [c[0] for c in TELEMETRY_COLUMNS])
    notes = _add_reference_columns(columns, rows, [g.runs if len(g) == 1 else
                                                   [r for r in g.runs if r.status == "completed"] for g in found], notes)
    return columns, rows, notes


REFERENCE_COLUMNS = [("reference", "seed", "acc"), ("reference_what", "seed's number", "text"),
                     ("reference_run", "same rule", "stat"), ("reference_diff", "Δ seed", "acc"),
                     ("reference_inside", "seed in 95 % CI", "text")]


def _add_reference_columns(columns: list[tuple[str, str, str]], rows: list[dict[str, Any]],
                           members: Sequence[Sequence[Any]], notes: list[str]) -> list[str]:
    """Where a row's recipe carries the seed's ``[reference]``: its headline number, the row's own
    number under the same rule (a group: described), the difference, and for a group whether the
    seed's number lies inside the interval. Columns go before the epochs; returns the notes."""
    from fgbench.groups import one_per_seed, seed_of
    from fgbench.stats import describe

    any_ref = False
    for row, runs in zip(rows, members):
        if not runs:
            continue
        head = headline_reference(runs[0].recipe)
        if head is None:
            continue
        any_ref = True
        key, value = head
        rule = str(runs[0].recipe["reference"].get("rule"))
        under_rule = [(seed_of(r.recipe), numbers_under_rule(rule, r).get(key)) for r in runs]
        got = [v for _s, v in one_per_seed([(s, v) for s, v in under_rule if v is not None])]
        d = describe(got)
        row["reference"] = value
        row["reference_what"] = f"{reference_key_text(key)}, {rule}"
        row["reference_run"] = None if d is None else (d.mean if d.n == 1 else d)
        row["reference_diff"] = None if d is None else d.mean - value
        inside = None if d is None else d.contains(value)
        row["reference_inside"] = None if inside is None else ("yes" if inside else "no")
    if not any_ref:
        return notes
    at = next((i for i, c in enumerate(columns) if c[0] == "epochs"), len(columns))
    cols = [c for c in REFERENCE_COLUMNS if c[0] != "reference_inside" or any(r.get("reference_inside") for r in rows)]
    columns[at:at] = cols
    return [*notes, "seed: the number the recipe's [reference] quotes; same rule: this row's number measured the "
            "way the seed measured it (max_over_test_epochs, last_epoch or best_val_epoch); Δ seed = same rule - seed."]


def _stat_cell(value: Any) -> str:
    from fgbench.stats import Described, Difference

    if isinstance(value, Described):
        if value.n == 1 or value.ci_low is None or value.ci_high is None or value.sd is None:
            return fmt_value(value.mean, 2)
        return (f"{value.mean:.2f} [{value.ci_low:.2f}, {value.ci_high:.2f}] sd {value.sd:.2f}, "
                f"{value.min:.2f}-{value.max:.2f}")
    if isinstance(value, Difference):
        if value.ci_low is None or value.ci_high is None:
            return f"{value.diff:+.2f} (no interval)"
        level = "" if value.adjusted == 1 else f" at {100 * (value.confidence or 0):.1f} %"
        return f"{value.diff:+.2f} [{value.ci_low:+.2f}, {value.ci_high:+.2f}]{level} {value.verdict}"
    return fmt_value(value, 2)


#: how a ``stat`` or ``diff`` cell spreads over CSV/JSON columns (key + suffix)
STAT_PARTS = ("", "_n", "_sd", "_ci_low", "_ci_high", "_min", "_max")
DIFF_PARTS = ("", "_ci_low", "_ci_high", "_confidence", "_method", "_p", "_verdict")


def _machine_parts(key: str, kind: str, value: Any) -> list[tuple[str, Any]]:
    """A ``stat``/``diff`` cell as (machine key, raw value) pairs; other kinds as one pair."""
    from fgbench.stats import Described, Difference

    name = _machine_key(key)
    if kind == "stat":
        if isinstance(value, Described):
            vals: tuple[float | int | None, ...] = (value.mean, value.n, value.sd, value.ci_low, value.ci_high,
                                                    value.min, value.max)
        else:
            num = _num(value)
            vals = (num, 1 if num is not None else None, None, None, None, num, num)
        return [(name + p, v) for p, v in zip(STAT_PARTS, vals)]
    if kind == "diff":
        name = "diff_" + name.removeprefix("diff:")
        if isinstance(value, Difference):
            vals2: tuple[Any, ...] = (value.diff, value.ci_low, value.ci_high, value.confidence, value.method,
                                      value.p_value, value.verdict)
        else:
            vals2 = (None,) * 6 + (value if isinstance(value, str) else None,)
        return [(name + p, v) for p, v in zip(DIFF_PARTS, vals2)]
    return [(name, value)]


# ---------------------------------------------------------------------------------- rendering


#: ``runs list`` on a narrow terminal: columns left out first to last, then run and recipe
#: names are cut (a run id keeps its date-time prefix, which still names the run)
LIST_DROP_ORDER = ("gpu_util", "data_wait_frac", "images_per_s", "ema_test_top1_last", "ema_val_top1",
                   "test_top1_last", "model", "ema_test_top1_best", "dataset", "duration_s")
LIST_MIN_WIDTH = {"run": 16, "recipe": 10}  # run: the YYYYMMDD-HHMMSS prefix and "…"


def fit_to_width(columns: Sequence[tuple[str, str, str]], rows: Sequence[dict[str, Any]], width: int,
                 *, drop_order: Sequence[str] = LIST_DROP_ORDER, min_width: dict[str, int] | None = None,
                 ) -> tuple[list[tuple[str, str, str]], dict[str, int]]:
    """The columns of a ``text`` table that fit in ``width`` characters, and the widths to cut
    the shrinkable columns to (``render(..., max_widths=...)``): shrinkable text columns are cut
    first down to their minimum, then columns are left out in ``drop_order``."""
    mins = LIST_MIN_WIDTH if min_width is None else min_width
    cols = list(columns)

    def natural(c: tuple[str, str, str]) -> int:
        return max([len(safe(c[1]))] + [len(safe(_cell(r.get(c[0]), c[2]))) for r in rows])  # measured as shown

    def least(c: tuple[str, str, str]) -> int:
        return min(natural(c), mins[c[0]]) if c[0] in mins else natural(c)

    def total(cs, measure) -> int:
        return sum(measure(c) for c in cs) + 2 * (len(cs) - 1)

    for key in drop_order:
        if total(cols, least) <= width:
            break
        cols = [c for c in cols if c[0] != key]
    limits = {c[0]: natural(c) for c in cols if c[0] in mins}
    over = total(cols, natural) - width
    while over > 0:
        widest = max((k for k in limits if limits[k] > least(next(c for c in cols if c[0] == k))),
                     key=lambda k: limits[k], default=None)
        if widest is None:
            break
        limits[widest] -= 1
        over -= 1
    return cols, limits


def _cut(text: str, width: int | None) -> str:
    """A run id keeps its date-time prefix (a unique prefix ``runs show`` accepts); any other
    name is cut in the middle (:func:`cut_middle`)."""
    if width is None or len(text) <= width:
        return text
    return text[: max(1, width - 1)] + "…"


def _middle(text: str, width: int | None) -> str:
    return text if width is None else cut_middle(text, width)


def cut_apart(texts: Sequence[str], width: int) -> list[str]:
    """:func:`cut_middle` for names shown together: where a cut makes two different names look the
    same (``hy_intel_en_wc_cm_r`` and ``hy_intel_rn_wc_cm_r`` both ``hy_inte…n_wc_cm_r``), it moves
    as little as it can so that the first character where they differ shows (``hy_intel_e…wc_cm_r``
    and ``hy_intel_r…wc_cm_r``), when the width allows."""
    out = [cut_middle(t, width) for t in texts]
    keep = width - 1
    if keep < 2:
        return out
    groups: dict[str, list[int]] = {}
    for i, o in enumerate(out):
        groups.setdefault(o, []).append(i)
    middle = keep // 2
    heads = sorted(range(1, keep), key=lambda h: (abs(h - middle), -h))
    for members in groups.values():
        names = {texts[i] for i in members}
        if len(names) < 2:
            continue
        for i in members:
            t = texts[i]
            others = [n for n in names if n != t]
            same_head = max(len(os.path.commonprefix([t, n])) for n in others)
            same_tail = max(len(os.path.commonprefix([t[::-1], n[::-1]])) for n in others)
            h = next((h for h in heads if h > same_head or keep - h > same_tail), None)
            if h is not None:
                out[i] = t[:h] + "…" + t[len(t) - (keep - h):]
    return out


def cut_middle(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, cut in the middle with ``…``: names differ at
    their ends (``ez_cifar100_resnet18_ms1`` / ``_ms2``, ``<recipe>-<variant>``), so the start and
    the end stay, the end getting the extra character. The one rule for names in every table
    and list, CLI and TUI."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:max(width, 0)]
    keep = width - 1
    head = keep // 2
    return text[:head] + "…" + text[len(text) - (keep - head):]


def render(columns: Sequence[tuple[str, str, str]], rows: Sequence[dict[str, Any]], fmt: str = "markdown",
           *, max_widths: dict[str, int] | None = None) -> str:
    """``markdown`` (padded pipes), ``text`` (aligned, no pipes), ``csv`` (raw values, full
    precision, stable column keys) or ``json`` (a list of objects with raw values).
    ``max_widths``: text cells of these columns cut to that width with ``…`` (see
    :func:`fit_to_width`)."""
    if fmt == "json":
        out = []
        for row in rows:
            out.append({k: _json_value(v) for key, _header, kind in columns
                        for k, v in _machine_parts(key, kind, row.get(key))})
        return json.dumps(out, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([k for key, _h, kind in columns for k, _v in _machine_parts(key, kind, None)])
        for row in rows:
            w.writerow([_csv_value(v) for key, _h, kind in columns for _k, v in _machine_parts(key, kind, row.get(key))])
        return buf.getvalue()
    limits = max_widths or {}
    # every cell and header made safe to display (names and recipe keys come from disk) before
    # widths are measured, so an escaped name is also measured as it is shown
    cells = [[(_cut if key == "run" else _middle)(safe(_cell(row.get(key), kind)), limits.get(key))
              for key, _h, kind in columns] for row in rows]
    headers = [safe(h) for _k, h, _kind in columns]
    numeric = [kind in ("acc", "duration", "rate", "stat", "diff") for _k, _h, kind in columns]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]

    def pad(text: str, i: int) -> str:
        return text.rjust(widths[i]) if numeric[i] else text.ljust(widths[i])

    if fmt == "markdown":
        lines = ["| " + " | ".join(pad(h, i) for i, h in enumerate(headers)) + " |"]
        lines.append("|" + "|".join(("-" * (w + 1) + ":") if numeric[i] else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|")
        lines += ["| " + " | ".join(pad(c, i) for i, c in enumerate(row)) + " |" for row in cells]
        return "\n".join(lines) + "\n"
    if fmt == "text":
        lines = ["  ".join(pad(h, i) for i, h in enumerate(headers)).rstrip()]
        lines += ["  ".join(pad(c, i) for i, c in enumerate(row)).rstrip() for row in cells]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown table format {fmt!r}")


def _machine_key(key: str) -> str:
    """CSV and JSON name columns by their stable keys (``val_top1``, ``optim.lr``), not by the
    display headers of the Markdown table."""
    return key.removeprefix("recipe:")


def _json_value(v: Any) -> Any:
    return None if v is MISSING else v


def _csv_value(v: Any) -> str:
    if v is None or v is MISSING:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return safe(str(v))  # a name from disk never writes an escape sequence to a terminal


# ------------------------------------------------------------------------------------- curves


def metric_series(events: Iterable[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """The run's curves by the event schema's one table of series (:data:`fgbench.rundir.events.SERIES`,
    which the TUI's run model reads too): step series against the step, keyed ``step/<name>``, the
    others (evaluations, epoch means) against the epoch, keyed ``epoch/<name>``. A resumed run may
    repeat an epoch or a step; the later value wins. A run whose trainer reported evaluations only
    inside its epoch events has those copies read instead, as the run model does."""
    by_key: dict[str, dict[float, float]] = {}
    copies: dict[str, dict[float, float]] = {}
    for ev in events:
        for series in SERIES.values():
            v = series.value(ev)
            axis = "step" if series.event == "step" else "epoch"
            x = ev.get(axis)
            if not isinstance(x, (int, float)) or isinstance(x, bool):
                continue
            if v is not None:
                by_key.setdefault(f"{axis}/{series.name}", {})[float(x)] = v
            elif series.event == "eval" and ev.get("event") == "epoch":
                copy = _num(ev.get(series.name))
                if copy is not None and math.isfinite(copy):
                    copies.setdefault(f"epoch/{series.name}", {})[float(x)] = copy
    for key, points in copies.items():
        by_key.setdefault(key, points)
    return {k: sorted(d.items()) for k, d in by_key.items()}


MARKERS = "•x+o#"
OVERLAP = "*"


def line_plot(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    width: int = 56,
    height: int = 8,
    title: str = "",
    digits: int = 2,
) -> str:
    """A small text chart: y labels at the top, middle and bottom, x range under it, one marker
    per series (legend in the title line); a cell where two series meet shows ``*``."""
    named = [(name, [(float(x), float(y)) for x, y in pts if math.isfinite(y)]) for name, pts in series.items()]
    named = [(n, p) for n, p in named if p]
    if not named:
        return f"{title}: no data\n" if title else "no data\n"
    xs = [x for _n, pts in named for x, _y in pts]
    ys = [y for _n, pts in named for _x, y in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    ncols = max(2, min(width, max(len(p) for _n, p in named)))
    grid = [[" "] * ncols for _ in range(height)]
    overlapped = False
    for s, (_name, pts) in enumerate(named):
        mark = MARKERS[s % len(MARKERS)]
        # bucket the points by column, mean y per column
        cols: dict[int, list[float]] = {}
        for x, y in pts:
            c = 0 if x1 == x0 else int(round((x - x0) / (x1 - x0) * (ncols - 1)))
            cols.setdefault(c, []).append(y)
        for c, yv in cols.items():
            y = sum(yv) / len(yv)
            r = int(round((y - y0) / (y1 - y0) * (height - 1)))
            cell = grid[height - 1 - r][c]
            if cell not in (" ", mark):
                mark_here = OVERLAP
                overlapped = True
            else:
                mark_here = mark
            grid[height - 1 - r][c] = mark_here
    labels = {0: _axis(y1, digits), height - 1: _axis(y0, digits)}
    if height >= 5:
        labels[(height - 1) // 2] = _axis((y0 + y1) / 2, digits)
    lw = max(len(v) for v in labels.values())
    legend = "  ".join(f"{MARKERS[i % len(MARKERS)]} {name}" for i, (name, _p) in enumerate(named))
    if overlapped:
        legend += f"  {OVERLAP} both"
    lines = []
    head = f"{title}  " if title else ""
    lines.append((head + (legend if len(named) > 1 else "")).rstrip())
    for r in range(height):
        lines.append(f"{labels.get(r, '').rjust(lw)} ┤{''.join(grid[r])}".rstrip())
    xl, xr = _axis(x0, 0), _axis(x1, 0)
    lines.append(" " * lw + " └" + "─" * ncols)
    gap = max(1, ncols - len(xl) - len(xr))
    lines.append(" " * (lw + 2) + xl + " " * gap + xr)
    return "\n".join(lines) + "\n"


def _axis(v: float, digits: int) -> str:
    if v != 0 and (abs(v) < 0.01 or abs(v) >= 1e6):
        return f"{v:.2e}"
    if digits == 0 and float(v).is_integer():
        return str(int(v))
    return f"{v:.{digits}f}"


def curves_text(events: Sequence[dict[str, Any]], *, width: int = 56, height: int = 7) -> str:
    """One small plot per metric of a run: step loss, then the per-epoch curves, raw and EMA of
    the same split drawn together."""
    s = metric_series(events)
    blocks: list[str] = []
    if len(s.get("step/loss", [])) >= 2:
        blocks.append(line_plot({"loss": s["step/loss"]}, width=width, height=height, title="train loss (x = step)", digits=3))
    elif s.get("epoch/train_loss"):
        blocks.append(line_plot({"loss": s["epoch/train_loss"]}, width=width, height=height, title="train loss (x = epoch)", digits=3))
    groups = [
        ("train top-1 % (x = epoch)", [("train", "epoch/train_top1")]),
        ("val top-1 % (x = epoch)", [("raw", "epoch/val_top1"), ("EMA", "epoch/ema_val_top1")]),
        ("test top-1 % (x = epoch)", [("raw", "epoch/test_top1"), ("EMA", "epoch/ema_test_top1")]),
    ]
    for title, members in groups:
        ser = {name: s[key] for name, key in members if s.get(key)}
        if ser:
            blocks.append(line_plot(ser, width=width, height=height, title=title))
    lr = s.get("step/lr")
    if lr:
        blocks.append(line_plot({"lr": lr}, width=width, height=max(4, height - 2), title="learning rate", digits=4))
    for series in SERIES.values():
        axis = "step" if series.event == "step" else "epoch"
        points = s.get(f"{axis}/{series.name}")
        if series.shown and points:
            blocks.append(line_plot({series.label: points}, width=width, height=height,
                                    title=f"{series.label} (x = {axis})", digits=3))
    return "\n".join(blocks)


# -------------------------------------------------------------------------------- confusion


def per_class_accuracy(confusion: dict[str, Any]) -> list[tuple[str, int, int, float | None]]:
    """(class name, correct, total, accuracy %) per class, in index order; from a dense ``matrix``
    or the non-zero ``cells`` of a large confusion (``fgbench.rundir.confusion``), in one pass."""
    names = list(confusion.get("class_names") or [])
    n = class_count(confusion)
    correct, total = [0] * n, [0] * n
    for i, j, v in iter_cells(confusion):
        if 0 <= i < n:
            total[i] += v
            if i == j:
                correct[i] += v
    return [(names[i] if i < len(names) else str(i), correct[i], total[i],
             (100.0 * correct[i] / total[i]) if total[i] else None) for i in range(n)]


def confused_pairs(confusion: dict[str, Any], top: int = 10) -> list[tuple[str, str, int, float]]:
    """The most frequent mistakes: (true class, predicted class, count, % of the true class's
    images), largest count first; ties by share, then by name for a stable order."""
    names = list(confusion.get("class_names") or [])
    totals: dict[int, int] = {}
    off = []
    for i, j, v in iter_cells(confusion):
        totals[i] = totals.get(i, 0) + v
        if i != j:
            off.append((i, j, v))
    pairs = []
    for i, j, v in off:
        ti = names[i] if 0 <= i < len(names) else str(i)
        pj = names[j] if 0 <= j < len(names) else str(j)
        pairs.append((ti, pj, v, 100.0 * v / totals[i] if totals[i] else 0.0))
    pairs.sort(key=lambda p: (-p[2], -p[3], p[0], p[1]))
    return pairs[:top]


BAR_CELLS = 20
_EIGHTHS = " ▏▎▍▌▋▊▉"


def accuracy_bar(pct: float, cells: int = BAR_CELLS) -> str:
    """A bar of ``cells`` characters drawn in eighths of a cell: 0.625 % a step at 20 cells, so
    95, 96, 97, 98 and 99 % are five different bars (whole cells of 10 % could not tell them apart)."""
    eighths = int(round(max(0.0, min(100.0, pct)) / 100 * cells * 8))
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


def misclassified(predictions: dict[str, Any], true_class: str, predicted_class: str) -> list[dict[str, Any]]:
    """The test images of one confused pair, from ``predictions.json``: ``[{"index", "file"}]``
    (``file`` None for a dataset kept in arrays), in test-split order."""
    names = list(predictions.get("class_names") or [])
    try:
        t, p = names.index(true_class), names.index(predicted_class)
    except ValueError:
        return []
    index = predictions.get("index") or []
    files = predictions.get("file") or []
    out = []
    for k, (y, q) in enumerate(zip(predictions.get("label") or [], predictions.get("predicted") or [])):
        if y == t and q == p:
            out.append({"index": index[k] if k < len(index) else k, "file": files[k] if k < len(files) else None})
    return out


def confusion_text(confusion: dict[str, Any], *, worst: int = 10, best: int = 5, pairs: int = 10, all_classes: bool = False) -> str:
    acc = per_class_accuracy(confusion)
    model = confusion.get("model", "?")
    split = confusion.get("split", "test")
    lines = [f"per-class accuracy ({split} split, {model} model, {len(acc)} classes):"]
    ranked = sorted((a for a in acc if a[3] is not None), key=lambda a: (a[3], a[0]))
    if all_classes or len(ranked) <= worst + best:
        shown = [("", ranked)]
    else:
        shown = [(f"worst {worst}:", ranked[:worst]), (f"best {best}:", ranked[-best:])]
    name_w = max([len(a[0]) for a in ranked] + [5])
    for head, items in shown:
        if head:
            lines.append(f"  {head}")
        for name, correct, total, pct in items:
            lines.append(f"  {name.ljust(name_w)}  {pct:6.2f}%  {correct:>5}/{total:<5} {accuracy_bar(pct or 0.0)}")
    top = confused_pairs(confusion, pairs)
    if top:
        lines.append("most confused pairs (true -> predicted):")
        tw = max(len(p[0]) for p in top)
        for t, p, n, share in top:
            lines.append(f"  {t.ljust(tw)} -> {p}: {n} ({share:.1f}% of {t})")
    else:
        lines.append("no confusions: every test image was classified correctly")
    return "\n".join(lines) + "\n"


def summary_text(summary: Summary | None) -> str:
    """summary.json in a few readable lines."""
    if summary is None:
        return f"no {SUMMARY_FILE} yet (the run has not finished an epoch)\n"
    n = summary.headline()
    lines = []
    rate = "-" if n["images_per_s"] is None else f"{n['images_per_s']:.0f}"
    head = (f"epochs {fmt_value(n['epochs_done'])}/{fmt_value(n['total_epochs'])}  step {fmt_value(n['step'])}  "
            f"time {fmt_duration(n['duration_s'])}  {rate} img/s")
    if n["peak_mem_mb"] is not None:
        head += f"  peak mem {n['peak_mem_mb']:.0f} MB"
    if n["data_wait_frac"] is not None:
        head += f"  data wait {_cell(n['data_wait_frac'], 'share')}"
    if n["gpu_util"] is not None:
        head += f"  GPU {_cell(n['gpu_util'], 'percent')}"
    lines.append(head)
    lines.append(
        f"images: train {fmt_value(summary.train_images)}, val {fmt_value(summary.val_images)}, "
        f"test {fmt_value(summary.test_images)}; selected epoch: "
        f"{SELECT_ON_TEXT.get(n['select_on'], fmt_value(n['select_on']))}"
        + (f"; {summary.skipped_images} undecodable images skipped" if summary.skipped_images else "")
    )
    last = summary.last or LastEpoch()
    k_label = f"top-{summary.top_k}" if summary.top_k else "top-k"
    for model in ("raw", "ema"):
        b = summary.best.get(model)
        if not b:
            continue
        lm = last.of(model) or SplitNumbers()
        lines.append(
            f"{model:>3}: {selected_epoch_text(b.epoch, n['select_on'])}: val {fmt_value(_num(b.val_top1))}  "
            f"test {fmt_value(_num(b.test_top1))} ({k_label} {fmt_value(_num(b.test_topk))})  |  "
            f"last epoch {fmt_value(last.epoch)}: val {fmt_value(_num(lm.val_top1))}  "
            f"test {fmt_value(_num(lm.test_top1))} ({k_label} {fmt_value(_num(lm.test_topk))})"
        )
    if summary.final_test_sizes:
        parts = []
        for size, by in sorted(summary.final_test_sizes.items(), key=lambda kv: size_order(kv[0])):
            txt = f"{size}px raw {fmt_value(_num(by.get('raw')))}"
            if by.get("ema") is not None:
                txt += f" / EMA {fmt_value(_num(by.get('ema')))}"
            parts.append(txt)
        lines.append("final test sizes: " + "; ".join(parts))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- export


EXPORT_CSV_COLUMNS = ("run", "name", "sweep", "group", "seed", "event", "epoch", "step", "metric", "value", "time")


def _group_and_seed(run: Any) -> dict[str, Any]:
    """``group``: the run's group key (:func:`fgbench.groups.identity`: runs with the same key differ
    only in the seed), ``seed``: its ``runtime.seed``; both None for a recipe that cannot be read."""
    from fgbench.groups import identity, seed_of

    recipe = run.recipe if isinstance(run.recipe, dict) else {}
    return {"group": identity(recipe) if recipe else None, "seed": seed_of(recipe)}


def export_csv(run_infos: Sequence[Any]) -> tuple[str, int]:
    """All runs' scalars in one tidy CSV (one row per value), each with its group key and seed, so a
    group's mean curve is one pivot away. Returns (text, rows)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(EXPORT_CSV_COLUMNS)
    n = 0
    for run in run_infos:
        events = read_events(run.path / METRICS_FILE)
        ident = _group_and_seed(run)
        for row in event_scalars(events):
            row.update(run=run.run_id, name=run.name, sweep=run.info.get("sweep_tag"), **ident)
            w.writerow([_csv_value(row.get(c)) for c in EXPORT_CSV_COLUMNS])
            n += 1
    return buf.getvalue(), n


def export_jsonl(run_infos: Sequence[Any]) -> tuple[str, int]:
    """Every event of every run, one JSON object per line, with ``run``, ``name``, ``group`` and
    ``seed`` first."""
    lines = []
    for run in run_infos:
        ident = _group_and_seed(run)
        for ev in read_events(run.path / METRICS_FILE):
            lines.append(json.dumps({"run": run.run_id, "name": run.name, **ident, **ev}, separators=(",", ":")))
    return ("\n".join(lines) + "\n") if lines else "", len(lines)

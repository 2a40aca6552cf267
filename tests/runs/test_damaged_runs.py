"""One damaged run never breaks the others: every reader shows it as damaged, and the rest as usual."""

from __future__ import annotations

import json

from fakes.run_factory import make_run

from fgbench.rundir import layout
from fgbench.runmodel import RunStore


def _three_runs(root):
    good = make_run(root, "good", stamp=1_700_000_000)
    bad_summary = make_run(root, "badsum", stamp=1_700_000_100)
    summary = json.loads((bad_summary / layout.SUMMARY_FILE).read_text())
    summary["best"]["raw"]["test_top1"] = "97.5"  # a string where a number belongs
    (bad_summary / layout.SUMMARY_FILE).write_text(json.dumps(summary))
    bad_recipe = make_run(root, "badrecipe", stamp=1_700_000_200)
    (bad_recipe / layout.RECIPE_FILE).write_bytes(b'name = "caf\xe9"\n')  # latin-1, not UTF-8
    return good, bad_summary, bad_recipe


def test_runs_list_show_and_compare_survive_damaged_runs(runs_root, cli) -> None:
    good, bad_summary, bad_recipe = _three_runs(runs_root)
    code, out, err = cli("runs", "list", "--runs-root", runs_root, "--format", "json")
    assert code == 0 and "Traceback" not in err
    rows = {r["run"]: r for r in json.loads(out)}
    assert rows[good.name]["status"] == "completed" and rows[good.name]["test_top1_best"] == 68.0
    assert rows[bad_summary.name]["status"] == "damaged"
    assert "best.raw.test_top1" in rows[bad_summary.name]["damaged"]
    assert rows[bad_summary.name]["test_top1_best"] is None  # never a number read from a wrong field
    assert rows[bad_recipe.name]["status"] == "damaged" and "not UTF-8" in rows[bad_recipe.name]["damaged"]
    code, out, err = cli("runs", "list", "--runs-root", runs_root, "--status", "damaged")
    assert code == 0 and bad_summary.name in out and good.name not in out
    for run in (bad_summary, bad_recipe):
        code, out, err = cli("runs", "show", run.name, "--runs-root", runs_root)
        assert code == 0 and "Traceback" not in err and "damaged" in out
    code, out, err = cli("runs", "compare", good.name, bad_summary.name, bad_recipe.name, "--runs-root", runs_root)
    assert code == 0 and "Traceback" not in err and good.name in out and "68.00" in out


def test_the_tui_store_shows_damaged_runs_and_the_rest_as_usual(runs_root) -> None:
    good, bad_summary, bad_recipe = _three_runs(runs_root)
    store = RunStore(runs_root)
    store.refresh()
    rows = {r.run_id: r for r in store.rows()}
    assert rows[good.name].status == "completed" and rows[good.name].best_test == 68.0
    assert rows[bad_summary.name].status == "damaged" and "best.raw.test_top1" in rows[bad_summary.name].error
    assert rows[bad_recipe.name].status == "damaged" and rows[bad_summary.name].best_test is None

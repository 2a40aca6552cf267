"""The Compare workspace: the runs sidebar, the chart grid, the cursor, the table and its export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from fgbench import report, rundir
from fgbench.tomlread import tomllib
from fgbench.tui.widgets.compare_pane import CompareChart, run_matches, series_matches, sort_rows, value_at
from fgbench.runmodel import RunRow
from fgbench.rundir.summary import Summary
from fakes.fake_trainer import fake_cmd
from fakes.run_factory import fixture_runs
from tui_helpers import REPO, tui_app, wait_for

CUB, CUB_EMA, CARS, CIFAR = ("20250301-090000-cub_r50", "20250302-100000-cub_r50_ema", "20250303-110000-cars_r18",
                             "20250304-120000-cifar_r18")


def _fixture_loss(step: int, seed: float) -> float:
    """The loss make_fixture_run writes at ``step`` (its formula, restated)."""
    return 3.0 / (1 + (0.04 + seed) * step) + 0.15 * ((step * 7919) % 13) / 13


@pytest.fixture
def cmp_dirs(dirs):
    fixture_runs(dirs.runs)
    # a sweep of two runs, and one run with another learning rate
    for run_id in (CUB, CUB_EMA):
        info = rundir.read_json(dirs.runs / run_id / rundir.RUN_INFO_FILE)
        rundir.write_json(dirs.runs / run_id / rundir.RUN_INFO_FILE, {**info, "sweep_tag": "abl"})
    recipe_path = dirs.runs / CUB_EMA / rundir.RECIPE_FILE
    recipe = tomllib.loads(recipe_path.read_text())
    recipe["optim"]["lr"] = 0.005
    recipe_path.write_text(tomli_w.dumps(recipe))
    return dirs


def _app(dirs):
    return tui_app(dirs, fgbench_cmd=fake_cmd(), initial_pane="compare", watch_interval=0.2)


async def _ready(pilot):
    app = pilot.app
    await wait_for(pilot, lambda: app.pane("compare") is not None and len(app.store.rows()) == 4,
                   what="runs loaded")
    pane = app.pane("compare")
    await wait_for(pilot, lambda: pane.query_one("#compare-list").option_count >= 4, what="sidebar filled")
    return pane


def _ids(pane) -> list[str | None]:
    lst = pane.query_one("#compare-list")
    return [None if o.id is None else Path(o.id).name for o in (lst.get_option_at_index(i) for i in range(lst.option_count))]


def _prompt(pane, run_id: str) -> str:
    lst = pane.query_one("#compare-list")
    for i in range(lst.option_count):
        o = lst.get_option_at_index(i)
        if o.id and Path(o.id).name == run_id:
            return str(o.prompt)
    raise AssertionError(f"{run_id} not listed")


def _charts(pane) -> list[str]:
    return [c.series for c in pane.query(CompareChart)]


# ------------------------------------------------------------------------------ pure


def _row(**kw) -> RunRow:
    base = dict(path=Path("/r/x"), run_id="20250101-000000-a", name="a", status="completed", dataset="cub200",
                arch="resnet50", best_val=None, best_test=None, ema_val=None, ema_test=None, duration_s=None,
                epoch=1, total_epochs=1, error=None)
    return RunRow(**{**base, **kw})


def test_the_run_filter_matches_words_and_recipe_values():
    recipe = {"optim": {"name": "sgd", "lr": 0.005}, "data": {"dataset": "cub200"}}
    row = _row(status="failed")
    assert run_matches("", row, recipe, None)
    assert run_matches("optim.lr=0.005", row, recipe, None)
    assert run_matches("optim.lr=5e-3", row, recipe, None)  # numbers compare as numbers
    assert not run_matches("optim.lr=0.05", row, recipe, None)
    assert run_matches("optim.lr!=0.05", row, recipe, None)
    assert run_matches("optim.name=sgd failed", row, recipe, None)
    assert not run_matches("optim.name=sgd completed", row, recipe, None)  # every word must hold
    assert run_matches("abl", row, recipe, "abl-2") and not run_matches("abl", row, recipe, None)
    assert not run_matches("model.arch=resnet50", row, recipe, None)  # not in this recipe


def test_the_series_filter_and_the_cursor_reading():
    assert series_matches("topk", "ema_test_topk") and not series_matches("topk", "test_top1")
    assert series_matches("grad lr", "lr") and series_matches("grad lr", "grad_norm")
    assert series_matches("EMA", "ema_val_top1") and series_matches("*", "images_per_s")
    xs, ys = [1.0, 2.0, 4.0], [10.0, 20.0, 40.0]
    assert [value_at(xs, ys, x) for x in (0.5, 1.0, 3.9, 4.0, 4.5)] == [None, 10.0, 20.0, 40.0, None]


def test_sorting_puts_empty_cells_last_both_ways():
    rows = [{"v": 2.0}, {"v": None}, {"v": 5.0}, {"v": 1.0}]
    assert [r["v"] for r in sort_rows(rows, "v", True)] == [5.0, 2.0, 1.0, None]
    assert [r["v"] for r in sort_rows(rows, "v", False)] == [1.0, 2.0, 5.0, None]


# ------------------------------------------------------------------------------ sidebar


async def test_sidebar_groups_by_sweep_selects_with_space_pins_and_filters(cmp_dirs):
    app = _app(cmp_dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await _ready(pilot)
        # grouped: the sweep's runs under their header, then the others (newest first in each)
        assert _ids(pane) == [None, CUB_EMA, CUB, None, CIFAR, CARS]
        assert "sweep abl" in str(pane.query_one("#compare-list").get_option_at_index(0).prompt)
        pane.query_one("#compare-list").focus()
        await pilot.press("space")  # on the header: the run under it is meant
        await pilot.pause()
        assert [p.name for p in app.compare_selection] == [CUB_EMA]
        await pilot.press("down", "space")
        await pilot.pause()
        assert [p.name for p in app.compare_selection] == [CUB_EMA, CUB]
        # on/off is written, not only coloured; each selected run has its own marker
        a, b, c = _prompt(pane, CUB_EMA), _prompt(pane, CUB), _prompt(pane, CARS)
        assert a.startswith("[x]") and b.startswith("[x]") and c.startswith("[ ]")
        book = app.colours
        assert book.marker(CUB_EMA) != book.marker(CUB) and book.marker(CUB_EMA) in a and book.marker(CUB) in b
        await pilot.press("space")  # again: deselect
        await pilot.pause()
        assert [p.name for p in app.compare_selection] == [CUB_EMA]
        # the selection is the Runs pane's too
        assert app.pane("runs") is None or app.pane("runs").visible_rows() is not None

        # pin the cifar run; filter by a recipe value, by status
        lst = pane.query_one("#compare-list")
        lst.highlighted = _ids(pane).index(CIFAR)
        await pilot.press("p")
        await pilot.pause()
        assert _ids(pane)[:2] == [None, CIFAR] and "^" in _prompt(pane, CIFAR)
        await pilot.press("w")
        assert app.focused is pane.query_one("#compare-filter")
        await pilot.press(*"optim.lr=0.005")
        await pilot.pause()
        assert [i for i in _ids(pane) if i] == [CIFAR, CUB_EMA]  # pinned, and the one run with lr 0.005
        pane.query_one("#compare-filter").value = "failed"
        await pilot.pause()
        assert [i for i in _ids(pane) if i] == [CIFAR, CARS]
        await pilot.press("escape")  # leaves the filter for the list
        assert app.focused is pane.query_one("#compare-list")


# ------------------------------------------------------------------------------ charts


async def test_charts_series_filter_axes_log_zoom_and_cursor(cmp_dirs):
    app = _app(cmp_dirs)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await _ready(pilot)
        app.set_compare([cmp_dirs.runs / CUB, cmp_dirs.runs / CUB_EMA])
        await wait_for(pilot, lambda: _charts(pane) == ["loss", "val_top1", "test_top1", "ema_test_top1", "lr",
                                                         "images_per_s"], what=lambda: f"default charts {_charts(pane)}")
        loss = pane.query_one("#chart-loss", CompareChart)
        await wait_for(pilot, lambda: len(loss.lines) == 4, what="raw + smoothed line per run")
        # smoothed: a dimmed raw line under each run's smoothed line
        assert [ln.marker for ln in loss.lines][1::2] == [app.colours.marker(CUB), app.colours.marker(CUB_EMA)]

        # / chooses the series
        await pilot.press("slash")
        await pilot.press(*"topk")
        await wait_for(pilot, lambda: _charts(pane) == ["test_topk"], what=lambda: f"topk chart {_charts(pane)}")
        pane.query_one("#compare-series").value = "loss lr"
        await wait_for(pilot, lambda: _charts(pane) == ["loss", "lr", "train_loss"], what=lambda: _charts(pane))
        pane.query_one("#compare-series").value = ""
        await wait_for(pilot, lambda: len(_charts(pane)) == 6, what="default charts again")
        await pilot.press("enter")  # leaves the series filter for the first chart
        await pilot.pause()
        loss = pane.query_one("#chart-loss", CompareChart)
        assert app.focused is loss

        # smoothing off (50 -> 200 -> 1000 -> off): one line per run, the logged values themselves
        await pilot.press("s", "s", "s")
        await wait_for(pilot, lambda: len(loss.lines) == 2, what="raw lines only")
        snap = app.store.model(cmp_dirs.runs / CUB).snapshot()
        assert loss.lines[0].ys == snap.series["loss"][2]

        # x axis: step -> epoch -> wall time (minutes since the run's first event)
        await pilot.press("x")
        await wait_for(pilot, lambda: loss.lines and loss.lines[0].xs == snap.series["loss"][1], what="epoch x")
        assert loss.lines[0].xs[-1] == pytest.approx(4.0)
        await pilot.press("x")
        await wait_for(pilot, lambda: loss.lines[0].xs[-1] == pytest.approx(100 * 0.5 / 60), what="time x")
        await pilot.press("x")  # back to steps
        await wait_for(pilot, lambda: loss.lines[0].xs == snap.series["loss"][0], what="step x")

        # log scale
        await pilot.press("l")
        await pilot.pause()
        assert "log" in loss.plot.plt._active.monitor.yscale
        await pilot.press("l")
        await pilot.pause()
        assert "log" not in loss.plot.plt._active.monitor.yscale

        # the cursor reads every run at one x: from the left end, 20 steps of (100-1)/50 steps
        await pilot.press("right_square_bracket")
        for _ in range(20):
            await pilot.press("right_square_bracket")
        await pilot.pause()
        x = pane.cursor_x
        assert x == pytest.approx(1 + 20 * 99 / 50)
        readout = str(pane.query_one("#compare-cursor").render())
        last = int(x)  # the last logged step at or before x (the fixture logs every step)
        for seed, run in ((0.0, CUB), (0.03, CUB_EMA)):  # at 120 columns: marker, name and value
            name = app.store.model(cmp_dirs.runs / run).snapshot().name
            assert f"{app.colours.marker(run)} {name} {_fixture_loss(last, seed):.4g}" in readout, readout
        assert f"step {x:,.0f}" in readout

        # full screen: the focused chart alone
        await pilot.press("z")
        await pilot.pause()
        assert pane.has_class("-zoom")
        shown = [c.series for c in pane.query(CompareChart) if c.display and not c.has_class("-hidden")]
        assert shown == ["loss"]
        assert pane.query_one("#compare-side").styles.display == "none"
        await pilot.press("escape")
        await pilot.pause()
        assert not pane.has_class("-zoom") and not any(c.has_class("-hidden") for c in pane.query(CompareChart))


# ------------------------------------------------------------------------------ table


def _cli(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "fgbench", "runs", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


async def test_the_table_is_runs_compare_sorts_and_exports_as_the_cli_writes(cmp_dirs, tmp_path):
    app = _app(cmp_dirs)
    chosen = [CUB, CUB_EMA, CARS]
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await _ready(pilot)
        app.set_compare([cmp_dirs.runs / r for r in chosen])
        table = pane.query_one("#compare-table")
        await wait_for(pilot, lambda: table.row_count == 3, what="table")
        cli_cols, _ = report.compare_table([rundir.read_run(cmp_dirs.runs / r) for r in chosen])
        headers = [str(c.label) for c in table.columns.values()]
        assert headers == [h for _k, h, _kind in cli_cols]
        # the columns that differ: the dataset, the model and the learning rate (not the name)
        assert {"data.dataset", "model.arch", "optim.lr"} <= set(headers) and "name" not in headers

        # export: Markdown, then CSV, byte for byte what `fgbench runs compare` prints
        for suffix, fmt in ((".md", "markdown"), (".csv", "csv")):
            target = tmp_path / f"table{suffix}"
            await pilot.press("e")
            await wait_for(pilot, lambda: app.screen.query("#prompt-input"), what="export prompt")
            app.screen.query_one("#prompt-input").value = str(target)
            await pilot.press("enter")
            await wait_for(pilot, lambda: target.is_file(), what="exported")  # noqa: B023 (awaited here)
            assert target.read_text() == _cli("compare", *chosen, "--runs-root", str(cmp_dirs.runs), "--format", fmt)
        # a name that is neither: nothing written
        await pilot.press("e")
        await wait_for(pilot, lambda: app.screen.query("#prompt-input"), what="export prompt")
        app.screen.query_one("#prompt-input").value = str(tmp_path / "table.txt")
        await pilot.press("enter")
        await pilot.pause()
        assert not (tmp_path / "table.txt").exists()

        # sortable: by a column's values, empty cells last either way
        def order():
            return [Path(str(k.value)).name for k in table.rows]
        pane.sort_by("val_top1")
        await pilot.pause()
        vals = {r: (rundir.read_run(cmp_dirs.runs / r).summary or Summary()).headline()["val_top1"] for r in chosen}
        assert vals[CARS] is None
        by_val = sorted([CUB, CUB_EMA], key=lambda r: vals[r], reverse=True)
        assert order() == by_val + [CARS]
        assert "▼" in str(table.columns["val_top1"].label)
        pane.sort_by("val_top1")
        await pilot.pause()
        assert order() == by_val[::-1] + [CARS]
        table.focus()
        await pilot.press("o")  # the next column after val top-1
        await pilot.pause()
        keys = [c[0] for c in pane._columns]
        assert pane.sort_key == keys[keys.index("val_top1") + 1]


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_charts_are_laid_out_for_the_room_the_table_leaves_them(cmp_dirs, size):
    """The table grows with the runs selected and takes rows from the charts above it, the
    pane's own size unchanged: the charts are laid out and drawn again for what is left (they
    were drawn once for the empty table's room and kept, ticks and all, until something else
    redrew them)."""
    app = _app(cmp_dirs)
    async with app.run_test(size=size) as pilot:
        pane = await _ready(pilot)
        app.set_compare([cmp_dirs.runs / r for r in (CUB, CUB_EMA, CIFAR)])
        await wait_for(pilot, lambda: pane.query_one("#compare-table").row_count == 3, what="table")
        for _ in range(3):
            await pilot.pause()
        for resize in (None, (size[0] + 40, size[1] + 16)):  # then the terminal resized
            if resize is not None:
                await pilot.resize_terminal(*resize)
                for _ in range(3):
                    await pilot.pause()
            shown = app.export_screenshot()  # the screen, as the snapshot tests see it
            pane.redraw()  # the pane drawn again for the room its charts have now
            for _ in range(3):
                await pilot.pause()
            assert app.export_screenshot() == shown


def test_the_compare_modules_import_no_torch():
    code = ("import sys, json; import fgbench.tui.widgets.compare_pane, fgbench.tui.screens.analysis, "
            "fgbench.tui.images; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'torchvision'))))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


async def test_pane_keys_leave_compare_from_any_of_its_widgets(cmp_dirs):
    # a focused widget that the pane's hiding blurs hands focus to a sibling: one in the hidden
    # pane would switch straight back to Compare
    app = _app(cmp_dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await _ready(pilot)
        app.set_compare([cmp_dirs.runs / CUB])
        await wait_for(pilot, lambda: pane.query(CompareChart), what="charts")
        tabs = app.main_screen.query_one("#panes")
        for target in ("#compare-list", "#compare-table", "CompareChart"):
            pane.query(target).first().focus()
            await pilot.pause()
            await pilot.press("3")
            await wait_for(pilot, lambda: tabs.active == "runs" and app.focused is app.pane("runs").table,
                           what=lambda: f"Runs from {target}: {tabs.active}, {app.focused}")  # noqa: B023
            await pilot.press("4")
            await wait_for(pilot, lambda: tabs.active == "compare", what="back to Compare")


async def test_runs_and_compare_show_raw_and_ema_side_by_side_never_the_better_one(cmp_dirs):
    # the EMA model beats the raw one: the Runs pane once showed the EMA's numbers as "the run's"
    path = cmp_dirs.runs / CUB / rundir.SUMMARY_FILE
    summary = json.loads(path.read_text())
    raw = summary["best"]["raw"]
    summary["best"]["ema"] = {"epoch": 4, "val_top1": raw["val_top1"] + 5, "test_top1": raw["test_top1"] + 4.25,
                              "test_topk": 99.0}
    path.write_text(json.dumps(summary))
    app = _app(cmp_dirs)
    async with app.run_test(size=(80, 24)) as pilot:
        await _ready(pilot)
        await pilot.press("3")
        table = app.pane("runs").table
        await wait_for(pilot, lambda: table.row_count == 4, what="runs")
        cells = {col: str(table.get_cell(str(cmp_dirs.runs / CUB), col)) for col in ("val", "test", "ema test")}
        assert cells == {"val": f"{raw['val_top1']:.2f}", "test": f"{raw['test_top1']:.2f}",
                         "ema test": f"{raw['test_top1'] + 4.25:.2f}"}
        # at 80 columns the three numbers are on screen, before dataset and model
        keys = [str(k.value) for k in table.columns]
        assert keys[keys.index("val"):keys.index("val") + 3] == ["val", "test", "ema test"]
        assert keys.index("ema test") < keys.index("dataset")
        app.set_compare([cmp_dirs.runs / CUB, cmp_dirs.runs / CUB_EMA])
        await pilot.press("4")
        ctable = app.pane("compare").query_one("#compare-table")
        await wait_for(pilot, lambda: ctable.row_count == 2, what="compare table")
        row = {str(c.key.value): str(v) for c, v in zip(ctable.columns.values(),
                                                         ctable.get_row(str(cmp_dirs.runs / CUB)))}
        assert row["test_top1_best"] == f"{raw['test_top1']:.2f}"
        assert row["ema_test_top1_best"] == f"{raw['test_top1'] + 4.25:.2f}"


# ------------------------------------------------------------------------------ groups of seeds


SEEDS = [(f"2025040{s + 1}-090000-cub_seeds", s, 0.02 * s) for s in range(3)]


def _fixture_val(epoch: int, shift: float) -> float:
    """The validation top-1 make_fixture_run writes at ``epoch`` (its formula, restated)."""
    return 30.0 + 40 * (1 - 1 / (1 + (0.5 + shift) * epoch))


async def test_a_group_of_seeds_is_one_row_and_one_band_with_its_runs_one_key_away(dirs):
    from fakes.run_factory import make_fixture_run

    for run_id, run_seed, shift in SEEDS:
        make_fixture_run(dirs.runs, run_id, name="cub_seeds", dataset="cub200", arch="resnet50",
                         seed=shift, run_seed=run_seed)
    make_fixture_run(dirs.runs, "20250405-090000-cub_ema", name="cub_ema", dataset="cub200", arch="resnet50",
                     ema=True)
    app = _app(dirs)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await _ready(pilot)
        app.set_compare([dirs.runs / r for r, _s, _x in SEEDS] + [dirs.runs / "20250405-090000-cub_ema"])
        table = pane.query_one("#compare-table")
        await wait_for(pilot, lambda: table.row_count == 2, what=lambda: f"two rows, not {table.row_count}")
        headers = [str(c.label) for c in table.columns.values()]
        assert "n" in headers and "seeds" in headers and "ema.enabled" in headers
        group = next(r for r in pane._rows if r.get("n") == 3)
        assert group["seeds"] == "0,1,2"
        finals = [_fixture_val(4, shift) for _r, _s, shift in SEEDS]
        assert group["val_top1"].mean == pytest.approx(sum(finals) / 3, abs=0.01)  # summary rounds to 2 places
        assert "Δ" in " ".join(headers)

        val = pane.query_one("#chart-val_top1", CompareChart)
        await wait_for(pilot, lambda: len(val.lines) == 4, what=lambda: f"band of 3 lines + 1, not {len(val.lines)}")
        lo, hi, mean, single = val.lines
        for e in range(4):
            vals = [_fixture_val(e + 1, shift) for _r, _s, shift in SEEDS]
            assert mean.ys[e] == pytest.approx(sum(vals) / 3)
            assert (lo.ys[e], hi.ys[e]) == (pytest.approx(min(vals)), pytest.approx(max(vals)))
        assert mean.marker == app.colours.marker(SEEDS[0][0]) and lo.colour != mean.colour
        assert "g: groups as mean+band" in str(pane.query_one("#compare-hint").render())

        await pilot.press("g")  # the group's runs, one line each
        await wait_for(pilot, lambda: len(val.lines) == 4 and val.lines[0].label == "cub_seeds"
                       and val.lines[0].ys[-1] == pytest.approx(finals[0]), what="one line per run")
        assert [ln.ys[-1] for ln in val.lines[:3]] == [pytest.approx(v) for v in finals]
        assert "g: groups as runs" in str(pane.query_one("#compare-hint").render())
        await pilot.press("g")
        await wait_for(pilot, lambda: val.lines[2].ys[-1] == pytest.approx(sum(finals) / 3), what="the band again")


async def test_a_seed_run_twice_weighs_once_in_the_group_chart(dirs):
    """Seeds 0, 0 and 1 (curve shifts 0 and 0.5 for seed 0, 1.5 for seed 1). The table counts seed 0
    once (n 2, seeds "0x2,1"); the chart averaged the three runs, so the rerun seed weighed twice.
    At epoch 1 the runs' val top-1 are 43.33, 50.00 and 56.67: seed 0 is their mean 46.67, seed 1 is
    56.67, so the curve reads 51.67 (over runs it read 50.00) and the band 46.67..56.67 (over runs
    43.33..56.67)."""
    from fakes.run_factory import make_fixture_run

    runs = [("20250401-090000-cub_seeds", 0, 0.0), ("20250402-090000-cub_seeds", 0, 0.5),
            ("20250403-090000-cub_seeds", 1, 1.5)]
    for run_id, run_seed, shift in runs:
        make_fixture_run(dirs.runs, run_id, name="cub_seeds", dataset="cub200", arch="resnet50",
                         seed=shift, run_seed=run_seed)
    app = tui_app(dirs, fgbench_cmd=fake_cmd(), initial_pane="compare", watch_interval=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.pane("compare") is not None and len(app.store.rows()) == 3,
                       what="runs loaded")
        pane = app.pane("compare")
        app.set_compare([dirs.runs / r for r, _s, _x in runs])
        table = pane.query_one("#compare-table")
        await wait_for(pilot, lambda: table.row_count == 1, what=lambda: f"one row, not {table.row_count}")
        assert (pane._rows[0]["n"], pane._rows[0]["seeds"]) == (2, "0x2,1")

        val = pane.query_one("#chart-val_top1", CompareChart)
        await wait_for(pilot, lambda: len(val.lines) == 3, what=lambda: f"the band's 3 lines, not {len(val.lines)}")
        lo, hi, mean = val.lines
        assert mean.ys[0] == pytest.approx(51.6667, abs=1e-4)
        assert (lo.ys[0], hi.ys[0]) == (pytest.approx(46.6667, abs=1e-4), pytest.approx(56.6667, abs=1e-4))
        for e in range(1, 5):  # every epoch, by the fixture's formula
            seed0 = (_fixture_val(e, 0.0) + _fixture_val(e, 0.5)) / 2
            seed1 = _fixture_val(e, 1.5)
            assert mean.ys[e - 1] == pytest.approx((seed0 + seed1) / 2)
            assert (lo.ys[e - 1], hi.ys[e - 1]) == (pytest.approx(min(seed0, seed1)), pytest.approx(max(seed0, seed1)))

        val.focus()
        await wait_for(pilot, lambda: val.has_focus, what="the val chart focused")
        await pilot.press("right_square_bracket")  # the cursor at the left end names what it reads
        cursor = pane.query_one("#compare-cursor")
        await wait_for(pilot, lambda: "cub_seeds mean of 2 seeds" in str(cursor.render()),
                       what=lambda: f"the group read as 2 seeds: {cursor.render()}")

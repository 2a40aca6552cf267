"""At 80x24 (the smallest terminal the README promises) nothing that matters is cut: every footer
shows all its keys (the Compare pane's was cut at 80 columns, the monitor's lost its "? Help"),
the hint under the Compare table keeps its sort, headers keep their ends, and names that were cut
at their end (so that two read the same) are cut in the middle. Found walking the README's tour
in tmux; each place is reached as a user reaches it."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Footer

from fgbench.tui.screens.monitor import MonitorScreen
from fakes.fake_trainer import fake_cmd
from fakes.run_factory import fixture_runs
from tui_helpers import ready_pane, tui_app, wait_for


def _footer_fits(app) -> tuple[bool, str]:
    footer = app.screen.query_one(Footer)
    keys = " ".join(f"{k.key_display or k.key} {k.description}" for k in footer.query("FooterKey"))
    return footer.virtual_size.width <= footer.size.width, f"{footer.virtual_size.width} > {footer.size.width}: {keys}"


async def test_every_footer_fits_80_columns(dirs):
    fixture_runs(dirs.runs)
    app = tui_app(dirs, fgbench_cmd=fake_cmd(), initial_pane="runs", watch_interval=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        runs = await ready_pane(pilot, "runs")
        await wait_for(pilot, lambda: runs.table.row_count == 4, what="runs listed")

        async def check(where: str) -> None:
            await pilot.pause()
            await wait_for(pilot, lambda: app.screen.query_one(Footer).query("FooterKey"), what=f"{where}: footer")
            fits, why = _footer_fits(app)
            assert fits, f"{where}: {why}"

        runs.table.focus()
        await check("Runs")
        await pilot.press("space", "down", "space")  # two runs for Compare
        await pilot.press("4")
        compare = await ready_pane(pilot, "compare")
        compare.query_one("#compare-list").focus()
        await check("Compare sidebar")
        table = compare.query_one("#compare-table")
        await wait_for(pilot, lambda: table.row_count == 2, what="compare table")
        table.focus()
        await check("Compare table")
        await pilot.press("o")  # sorted: the hint under the table names the sort, whole
        hint = compare.query_one("#compare-hint")
        await wait_for(pilot, lambda: "▲" in str(hint.render()) or "▼" in str(hint.render()), what="sort in the hint")
        shown = str(hint.render())
        assert "…" not in shown and len(shown) <= hint.size.width, (shown, hint.size.width)
        await wait_for(pilot, lambda: compare.current_chart() is not None or compare.query("CompareChart"),
                       what="charts")
        compare.query("CompareChart").first().focus()
        await check("Compare chart")
        await pilot.press("1")
        await ready_pane(pilot, "datasets")
        await check("Datasets")
        await pilot.press("2")
        await ready_pane(pilot, "recipes")
        await check("Recipes")
        await pilot.press("3")
        runs.table.focus()
        runs.table.move_cursor(row=2)  # 20250302-100000-cub_r50_ema, completed
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="monitor")
        await check("Monitor")


async def test_the_monitor_of_a_sweep_point_fits_80_columns(dirs):
    """A sweep point's run id is 50 characters: the header once lost the model at its end, and
    the progress line its loss. The run id is cut in the middle (its date and its variant stay),
    and under 100 columns the bar is narrower."""
    from fakes.run_factory import make_fixture_run

    run_id = "20250306-090000-sweep_hy_intel_tricks-B+A+W+mixup"
    run = make_fixture_run(dirs.runs, run_id, name="sweep_hy_intel_tricks-B+A+W+mixup", dataset="intel_scenes",
                           arch="resnet50")
    app = tui_app(dirs, fgbench_cmd=fake_cmd(), initial_pane="runs", watch_interval=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        runs = await ready_pane(pilot, "runs")
        await wait_for(pilot, lambda: runs.table.row_count == 1, what="the run listed")
        runs.table.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.path == run, what="monitor")
        view = app.screen.query_one("RunView")
        await wait_for(pilot, lambda: view.snapshot is not None and view.snapshot.status == "completed", what="drawn")
        await pilot.pause()
        header = view.query_one("#run-header")
        shown = str(header.render())
        assert shown.endswith("intel_scenes · resnet50") and len(shown) <= header.size.width, shown
        assert shown.split()[1].startswith("20250306-090000-") and shown.split()[1].endswith("+mixup"), shown
        progress = view.query_one("#progress-text")
        line = str(progress.render())
        assert "loss " in line and len(line) <= progress.size.width, (line, progress.size.width)


async def test_the_recipe_title_keeps_its_state_at_80_columns(dirs):
    """The title line says whether the recipe is saved and valid: at 80 columns it read
    "quickstart  project/quickstart.toml  ● unsaved  ✓ val…". The path (and a long name) are cut in
    the middle instead."""
    from tui_helpers import type_into

    long_name = "sc_cub_r50_fixres_two_stage_long_recipe"
    tiny = dirs.project / "tiny.toml"
    tiny.write_text(tiny.read_text().replace('name = "tiny"', f'name = "{long_name}"'))
    app = tui_app(dirs, fgbench_cmd=fake_cmd(), initial_pane="recipes", watch_interval=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        editor = await pane.form.reveal("optim.lr")
        await type_into(pilot, editor, "0.05")
        title = pane.query_one("#recipe-title")
        await wait_for(pilot, lambda: "unsaved" in str(title.render()), what="the edit marks the recipe unsaved")
        shown = str(title.render())
        assert shown.endswith("● unsaved  ✓ valid") and len(shown) <= title.content_region.width, shown
        assert shown.startswith("sc_cub") and "…" in shown, shown


async def test_two_runs_of_one_recipe_read_apart_in_the_80_column_compare_sidebar(dirs):
    """Two quickstart runs: at 120 columns the sidebar names each with its start; at 80 the start
    was cut off and both rows read "quickstart 1…". The start time now comes first there."""
    from fakes.run_factory import make_fixture_run

    make_fixture_run(dirs.runs, "20250301-093200-quickstart", name="quickstart", dataset="synthetic", arch="resnet18")
    make_fixture_run(dirs.runs, "20250301-093500-quickstart", name="quickstart", dataset="synthetic", arch="resnet18")
    app = tui_app(dirs, fgbench_cmd=fake_cmd(), initial_pane="compare", watch_interval=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await ready_pane(pilot, "compare")
        lst = pane.query_one("#compare-list")
        await wait_for(pilot, lambda: lst.option_count == 2, what="two runs listed")
        await pilot.pause()
        room = lst.scrollable_content_region.width
        shown = [lst.get_option_at_index(i).prompt.plain[:room] for i in range(2)]  # what fits on screen
        assert shown[0] != shown[1], shown
        assert "09:35" in shown[0] and "09:32" in shown[1], shown  # newest first


async def test_two_runs_of_one_recipe_read_apart_in_the_80_column_runs_pane(dirs):
    """At 80 columns the start column gives way; two quickstart runs then read the same but for
    their numbers. Their recipe cells carry the start there, and only there."""
    from fakes.run_factory import make_fixture_run

    make_fixture_run(dirs.runs, "20250301-093200-quickstart", name="quickstart", dataset="synthetic", arch="resnet18")
    make_fixture_run(dirs.runs, "20250301-093500-quickstart", name="quickstart", dataset="synthetic", arch="resnet18")
    make_fixture_run(dirs.runs, "20250302-100000-sweep_hy_intel_tricks-B+A+W+mixup",
                     name="sweep_hy_intel_tricks-B+A+W+mixup", dataset="intel_scenes", arch="resnet50")
    app = tui_app(dirs, fgbench_cmd=fake_cmd(), initial_pane="runs", watch_interval=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        table = (await ready_pane(pilot, "runs")).table
        await wait_for(pilot, lambda: table.row_count == 3, what="three runs listed")
        await pilot.pause()
        assert "started" not in [str(k.value) for k in table.columns]
        names = [str(table.get_cell_at((i, 1))) for i in (1, 2)]
        assert names[0] != names[1] and names[0].endswith("09:35") and names[1].endswith("09:32"), names
        await pilot.resize_terminal(130, 40)
        await wait_for(pilot, lambda: "started" in [str(k.value) for k in table.columns], what="the start column")
        await pilot.pause()
        assert [str(table.get_cell(str(dirs.runs / k), "recipe")) for k in
                ("20250301-093500-quickstart", "20250301-093200-quickstart")] == ["quickstart", "quickstart"]


async def test_the_image_captions_of_a_confused_pair_read_apart(dirs, monkeypatch):
    """Test images are named <class>_<number>: a caption cut at its end at 80 columns read
    "cool_two_dots_000…" under all four pictures. Cut in the middle, the numbers stay."""
    import json

    from fgbench.rundir import layout
    from test_tui_analysis import make_analysis_run, open_analysis

    monkeypatch.setenv("FGBENCH_IMAGES", "off")
    run_dir = make_analysis_run(dirs.runs)
    pred_file = run_dir / layout.PREDICTIONS_FILE
    pred = json.loads(pred_file.read_text())
    renamed = []
    for f in pred["file"]:
        p = Path(f)
        longer = p.with_name(p.stem.replace("_", "_long_image_name_00") + p.suffix)
        p.rename(longer)
        renamed.append(str(longer))
    pred["file"] = renamed
    pred_file.write_text(json.dumps(pred))
    app = tui_app(dirs, fgbench_cmd=fake_cmd(), initial_pane="runs", watch_interval=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_analysis(pilot, run_dir)
        await wait_for(pilot, lambda: len(screen.query(".caption")) >= 2, what="captions")
        captions = [str(c.render()) for c in screen.query(".caption")]
        assert len(set(captions)) == len(captions), captions
        assert all(len(c) <= 18 and "…" in c for c in captions), captions

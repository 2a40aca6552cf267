"""At 80x24 (the smallest terminal the README promises) every footer shows all its keys: the
Compare pane's footer was cut at 80 columns (and with the table focused, at 120), the monitor's
lost its "? Help"; the hint under the Compare table lost its sort. Each place is reached as a user reaches it, with the fixture runs."""

from __future__ import annotations

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

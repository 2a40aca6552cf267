"""The first hour of a new user in the TUI (issue 22): nothing typed is lost, nothing changes
behind an Escape. Driven as a user drives it (keys, through Pilot)."""

from __future__ import annotations

from textual.widgets import DataTable

from fgbench.recipe import load_recipe
from fgbench.tui.dialogs import ChoiceScreen
from tui_helpers import ready_pane, tui_app, type_into, wait_for


async def _edit_lr(pilot, pane, value: str) -> None:
    editor = await pane.form.reveal("optim.lr")
    await type_into(pilot, editor, value)
    await wait_for(pilot, lambda: pane.dirty, what="the edit marks the recipe unsaved")


async def test_quitting_with_unsaved_edits_asks_and_escape_keeps_the_app_and_the_edit(dirs):
    path = dirs.project / "tiny.toml"
    before = path.read_text()
    app = tui_app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        await _edit_lr(pilot, pane, "0.07")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the save/discard question")
        assert "unsaved changes" in app.screen.question
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ChoiceScreen), what="the question closes")
        for _ in range(3):
            await pilot.pause()
        assert not app._exit, "Escape means stay"
        assert pane.dirty and pane.form.validation.recipe.optim.lr == 0.07
        # then discard: the app quits and the file is as it was
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the question again")
        await pilot.press("d")
        await wait_for(pilot, lambda: app._exit, what="the app quits")
    assert path.read_text() == before


async def test_quitting_with_unsaved_edits_can_save_them_first(dirs):
    path = dirs.project / "tiny.toml"
    app = tui_app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        await _edit_lr(pilot, pane, "0.07")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the save/discard question")
        await pilot.press("s")
        # a project recipe: the save asks copy or overwrite, as Ctrl+S does
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen) and "overwrite" in app.screen.question,
                       what="the overwrite question")
        await pilot.press("o")
        await wait_for(pilot, lambda: app._exit, what="the app quits once saved")
    assert load_recipe(path).optim.lr == 0.07


async def test_a_save_that_does_not_happen_does_not_quit(dirs):
    path = dirs.project / "tiny.toml"
    before = path.read_text()
    app = tui_app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        await _edit_lr(pilot, pane, "0.07")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the save/discard question")
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen) and "overwrite" in app.screen.question,
                       what="the overwrite question")
        await pilot.press("escape")  # the save is cancelled
        await wait_for(pilot, lambda: not isinstance(app.screen, ChoiceScreen), what="the question closes")
        for _ in range(3):
            await pilot.pause()
        assert not app._exit and pane.dirty
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the question again")
        await pilot.press("d")
        await wait_for(pilot, lambda: app._exit, what="the app quits")
    assert path.read_text() == before


async def test_quitting_a_clean_recipe_asks_nothing(dirs):
    app = tui_app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        assert not pane.dirty
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: app._exit, what="the app quits at once")


async def test_escape_on_a_dataset_that_is_not_downloaded_leaves_the_recipe_unchanged(dirs):
    app = tui_app(dirs, initial_pane="datasets")
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        datasets = app.pane("datasets")
        table = datasets.query_one("#datasets-table", DataTable)
        await wait_for(pilot, lambda: table.row_count > 3, what="catalog")
        started = []
        datasets.start_task = lambda task, name: started.append((task, name))
        assert pane.form.doc["data"]["dataset"] == "synthetic" and not pane.dirty
        table.focus()
        table.move_cursor(row=table.get_row_index("cub200"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the download offer")
        assert "cub200 is not downloaded" in app.screen.question
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ChoiceScreen), what="the offer closes")
        for _ in range(3):
            await pilot.pause()
        assert pane.form.doc["data"]["dataset"] == "synthetic", "Escape changed nothing"
        assert not pane.dirty and started == []
        # answering the offer takes the dataset, as before
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the offer again")
        await pilot.press("d")
        await wait_for(pilot, lambda: pane.form.doc["data"]["dataset"] == "cub200", what="the recipe takes cub200")
        assert started == [("download", "cub200")]

"""The first hour of a new user in the TUI (issue 22): nothing typed is lost, nothing changes
behind an Escape. Driven as a user drives it (keys, through Pilot)."""

from __future__ import annotations

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

"""The first hour of a new user in the TUI (issue 22): nothing typed is lost, nothing changes
behind an Escape. Driven as a user drives it (keys, through Pilot)."""

from __future__ import annotations

from textual import events
from textual.widgets import DataTable, Select

from fgbench.recipe import load_recipe
from fgbench.tui import form as F
from fgbench.tui.dialogs import ChoiceScreen, PromptScreen
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


# ------------------------------------------------------------------ keys typed ahead
# A terminal hands keys to the app as they come; the app forwards each to the focused widget's
# queue and goes on. Posting them all at once, then acting, is what a fast typist on a loaded
# machine does to the app: the keys are ahead of the events they cause.


def _type_ahead(app, keys: list[str]) -> None:
    for key in keys:
        app.post_message(events.Key(key, key if len(key) == 1 else None))


async def _settle(pilot, rounds: int = 20) -> None:
    for _ in range(rounds):
        await pilot.pause(0.02)


async def test_a_value_typed_just_before_a_section_rebuild_is_kept_and_shown(dirs):
    app = tui_app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        form = pane.form
        editor = await form.reveal("optim.weight_decay")
        editor.focus()
        await wait_for(pilot, lambda: editor.has_focus, what="focus on weight_decay")
        _type_ahead(app, ["end", *["backspace"] * 8, *"0.002"])
        # the optimizer switched at once (a click on the picker, handled beside the queued keys)
        form.query_one("#v-optim", Select).value = "adamw"
        await wait_for(pilot, lambda: form.doc["optim"]["name"] == "adamw", what="the switch to adamw")
        await _settle(pilot)
        shown = form.editor("optim.weight_decay").value
        spec = form.rows["optim.weight_decay"].spec
        # What the field shows is what the document holds and what a save writes: never a typed
        # value on screen over a default in the file, nor the reverse. (Keys still queued for the
        # field the switch removed go with it; typed as a user does, the Tab to the picker comes
        # after them.)
        held = form.doc["optim"].get("weight_decay", F.MISSING)
        assert shown == F.display_value(spec, held), (shown, form.doc["optim"])
        saved = pane.current().recipe.optim.weight_decay
        assert (shown, saved) in (("0.002", 0.002), ("", spec.default)), (shown, saved)  # typed, or the default


async def test_save_as_offers_the_name_typed_just_before(dirs):
    app = tui_app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        editor = await pane.form.reveal("name")
        editor.focus()
        await wait_for(pilot, lambda: editor.has_focus, what="focus on name")
        _type_ahead(app, ["end", *["backspace"] * 10, *"longer_name", "f2"])
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), what="the save-as prompt")
        assert app.screen.value == "longer_name.toml"
        await pilot.press("escape")
        await _settle(pilot)
        # the deletions typed first were applied first: the field holds what was typed
        assert editor.value == "longer_name" and pane.form.doc["name"] == "longer_name"


async def test_ctrl_q_right_after_typing_still_asks(dirs):
    app = tui_app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        editor = await pane.form.reveal("optim.lr")
        editor.focus()
        await wait_for(pilot, lambda: editor.has_focus, what="focus on lr")
        _type_ahead(app, ["end", *["backspace"] * 6, *"0.0123", "ctrl+q"])
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen) or app._exit, what="an answer to Ctrl+Q")
        assert not app._exit, "quit with the typed value lost"
        assert pane.form.doc["optim"]["lr"] == 0.0123
        await pilot.press("escape")


# ------------------------------------------------------------------ names that fit

LONG = "sc_cub_r50_fixres_two_stage_long_recipe_name-lr3"  # 48 characters: a sweep point's name


async def test_the_runs_pane_at_80_columns_keeps_every_number_with_a_48_character_name(dirs):
    from fakes.run_factory import fixture_runs, make_fixture_run
    from fgbench.tui.widgets.runs_pane import COLUMNS

    assert len(LONG) == 48
    fixture_runs(dirs.runs)
    make_fixture_run(dirs.runs, f"20250305-130000-{LONG}", name=LONG, dataset="cub200", arch="resnet50")
    app = tui_app(dirs, initial_pane="runs", watch_interval=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await ready_pane(pilot, "runs")
        table = pane.table
        await wait_for(pilot, lambda: table.row_count == 5, what="five runs listed")
        await _settle(pilot)
        columns = list(table.columns.values())
        # at 80 columns with a 48-character name the start column gives way (the list is newest
        # first), then the dataset, before the name is cut under 16 characters
        assert [str(c.label) for c in columns] == [c for c in COLUMNS if c not in ("started", "dataset")]
        used = sum(c.width + 2 * table.cell_padding for c in columns)
        # every column, the run's numbers, dataset, model and time too, is inside the table's width
        assert used <= table.size.width - table.styles.scrollbar_size_vertical, (
            used, [(str(c.label), c.width) for c in columns])
        row = next(k for k in table.rows if LONG in str(k.value))
        name = table.get_cell(row, "recipe").plain
        assert len(name) < len(LONG) and "…" in name
        head, tail = name.split("…")
        assert LONG.startswith(head) and LONG.endswith(tail) and tail.endswith("-lr3"), name
        assert table.get_cell(row, "val").plain.strip(), "the numbers are there"
        # wider: the name is whole again
        await pilot.resize_terminal(140, 30)
        await wait_for(pilot, lambda: table.get_cell(row, "recipe").plain == LONG, what="the whole name at 140")


async def test_the_recipe_list_uses_the_width_it_has_and_cuts_in_the_middle(dirs):
    names = ["ez_cifar100_resnet18_clr1e-4", "ez_cifar100_resnet18_ms1", "ez_cifar100_resnet18_ms2",
             "hy_intel_effnet_wc_cm_r", "hy_intel_resnet_wc_cm_r"]
    for n in names:
        (dirs.project / f"{n}.toml").write_text(f'name = "{n}"\n')
    app = tui_app(dirs)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        lst = pane.query_one("#recipe-list")
        await wait_for(pilot, lambda: lst.option_count >= 5, what="the recipes listed")
        await _settle(pilot)
        shown = [str(lst.get_option_at_index(i).prompt) for i in range(lst.option_count)]
        assert lst.size.width >= 32, "the list widens with the terminal"
        for n in names:  # whole at 120 columns
            assert f"  {n}" in shown, shown
    app = tui_app(dirs)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        lst = pane.query_one("#recipe-list")
        await wait_for(pilot, lambda: lst.option_count >= 5, what="the recipes listed")
        await _settle(pilot)
        shown = [str(lst.get_option_at_index(i).prompt) for i in range(lst.option_count)]
        cut = [s for s in shown if "…" in s]
        assert cut, shown
        # cut in the middle: the endings that tell ms1 from ms2 stay
        assert any(s.endswith("ms1") for s in cut) and any(s.endswith("ms2") for s in cut), shown
        room = lst.scrollable_content_region.width
        assert all(len(s) <= room for s in shown), (room, shown)
        assert len(set(shown)) == len(shown), shown  # no two names look the same


async def test_the_compare_sidebar_tells_two_runs_of_one_recipe_apart_and_its_footer_fits(dirs):
    from textual.widgets import Footer

    from fakes.run_factory import make_fixture_run

    make_fixture_run(dirs.runs, "20250301-090000-quickstart", name="quickstart", dataset="synthetic", arch="resnet18")
    make_fixture_run(dirs.runs, "20250302-100000-quickstart", name="quickstart", dataset="synthetic", arch="resnet18")
    make_fixture_run(dirs.runs, f"20250305-130000-{LONG}", name=LONG, dataset="cub200", arch="resnet50")
    app = tui_app(dirs, initial_pane="compare", watch_interval=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await ready_pane(pilot, "compare")
        lst = pane.query_one("#compare-list")
        await wait_for(pilot, lambda: lst.option_count == 3, what="three runs listed")
        lst.focus()
        await _settle(pilot)
        shown = [lst.get_option_at_index(i).prompt.plain for i in range(lst.option_count)]
        twins = [s for s in shown if "quickstart" in s]
        assert len(twins) == 2 and twins[0] != twins[1], shown
        assert any("03-01 09:00" in s for s in twins) and any("03-02 10:00" in s for s in twins), shown
        room = lst.scrollable_content_region.width
        assert all(len(s) <= room for s in shown), (room, shown)
        long = next(s for s in shown if "…" in s)
        assert long.rstrip().endswith("-lr3"), long  # cut in the middle: the variant stays
        footer = app.screen.query_one(Footer)
        assert footer.virtual_size.width <= footer.size.width, (footer.virtual_size.width, footer.size.width)


async def test_the_compare_export_writes_under_the_runs_root_and_says_where(dirs, tmp_path, monkeypatch):
    from fakes.run_factory import make_fixture_run

    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # where fgbench was started: nothing is written here
    runs = [make_fixture_run(dirs.runs, f"2025030{i}-090000-r{i}", name=f"r{i}", dataset="synthetic",
                             arch=arch, seed=0.01 * i) for i, arch in ((1, "resnet18"), (2, "resnet50"))]
    app = tui_app(dirs, initial_pane="compare", watch_interval=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await ready_pane(pilot, "compare")
        await wait_for(pilot, lambda: app.store.loaded_once, what="runs read")
        app.set_compare(runs)
        table = pane.query_one("#compare-table")
        await wait_for(pilot, lambda: table.row_count == 2, what="the table")
        pane.query_one("#compare-list").focus()
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), what="the export prompt")
        default = app.screen.value
        assert str(dirs.runs.absolute()) in app.screen.help_text
        assert default.startswith(str(dirs.runs.absolute()) + "/") and default.endswith(".md"), default
        await pilot.press("enter")
        target = dirs.runs.absolute() / default.rsplit("/", 1)[1]
        await wait_for(pilot, lambda: target.is_file(), what="the table written under the runs root")
        await wait_for(pilot, lambda: any(str(target) in n.message for n in app._notifications),
                       what="the notification naming the file")
        # a bare name goes to the runs root as well
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), what="the export prompt again")
        app.screen.query_one("#prompt-input").value = "mine.csv"
        await pilot.press("enter")
        await wait_for(pilot, lambda: (dirs.runs / "mine.csv").is_file(), what="mine.csv under the runs root")
        await _settle(pilot)
        assert [r.path.name for r in app.store.rows()].count(target.name) == 0  # an export is not a run
    assert not any(elsewhere.iterdir())

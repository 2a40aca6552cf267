"""The recipe editor, driven as a user drives it (keys, through Pilot)."""

from __future__ import annotations

from textual.widgets import Input, Select, TextArea

from fgbench.recipe import load_recipe
from fgbench.tomlread import tomllib
from fgbench.tui.dialogs import ChoiceScreen, ConfirmScreen, PickScreen, PromptScreen
from tui_helpers import ready_pane, tui_app, type_into, wait_for


def _app(dirs, **kw):
    return tui_app(dirs, **kw)


async def test_invalid_value_is_marked_save_refused_then_fixed_and_saved(dirs):
    path = dirs.project / "tiny.toml"
    before = path.read_text()
    app = _app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        form = pane.form
        editor = await form.reveal("optim.lr")
        await type_into(pilot, editor, "-1")
        await wait_for(pilot, lambda: form.rows["optim.lr"].has_class("-error"), what="error at optim.lr")
        # the schema's message, shown under the field
        await wait_for(pilot, lambda: "greater than 0" in str(form.rows["optim.lr"].query_one(".field-error").render()),
                       what="message under the field")
        assert "✗ 1 problem" in str(pane.query_one("#recipe-title").render())
        assert "unsaved" in str(pane.query_one("#recipe-title").render())
        # the section title counts the problem even while collapsed elsewhere
        assert "✗ 1" in form.sections["optim"].title

        await pilot.press("ctrl+s")
        await pilot.pause()
        assert path.read_text() == before, "an invalid recipe must not be saved"
        assert pane.last_refusal == ["optim.lr: Input should be greater than 0"]

        await type_into(pilot, editor, "0.05")
        await wait_for(pilot, lambda: not form.rows["optim.lr"].has_class("-error"), what="error cleared")
        await pilot.press("ctrl+s")
        # a project recipe: asked first (copy into the user folder, or overwrite)
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="overwrite question")
        await pilot.press("o")
        await wait_for(pilot, lambda: not pane.dirty, what="saved")
        saved = load_recipe(path)
        assert saved.optim.lr == 0.05
        assert saved == form.validation.recipe
        assert "unsaved" not in str(pane.query_one("#recipe-title").render())


async def test_variant_picker_stages_and_save_as(dirs):
    app = _app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        form = pane.form
        await form.reveal("optim.lr")
        picker = form.query_one("#v-optim", Select)
        picker.value = "adamw"
        # rows are registered before they mount, and the title is set once the rebuild is done
        await wait_for(pilot, lambda: bool(form.query("#f-optim__betas")) and
                       form.sections["optim"].title.startswith("optim: adamw"), what="adamw fields")
        assert "optim.momentum" not in form.rows

        # a stage can be added; its required epochs is flagged until given
        section = form.sections["stages"]
        section.collapsed = False
        await wait_for(pilot, lambda: section.built, what="stages section built")
        form.query_one("#add-stages").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: "stages[0].epochs" in form.rows, what="stage fields")
        await wait_for(pilot, lambda: "Field required" in str(
            form.rows["stages[0].epochs"].query_one(".field-error").render()), what="required error")
        # adding an item continues in its first field (the stage's name); only then type elsewhere
        await wait_for(pilot, lambda: app.focused is form.editor("stages[0].name"),
                       what=lambda: f"focus on the new stage's name, not {app.focused}")
        await type_into(pilot, form.editor("stages[0].epochs"), "2")
        await wait_for(pilot, lambda: form.validation.ok, what=lambda: f"valid again {form.doc.get('stages')} {form.validation.errors}")

        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), what="save-as prompt")
        prompt = app.screen.query_one(Input)
        prompt.value = "tiny_fixres"
        await pilot.press("enter")
        # the file's stem is offered as the recipe's name
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="rename question")
        assert "'tiny_fixres'" in str(app.screen.question)
        await pilot.press("y")
        target = dirs.user / "tiny_fixres.toml"
        await wait_for(pilot, lambda: target.is_file() and not pane.dirty, what="saved as")
        saved = load_recipe(target)
        assert saved.optim.name == "adamw" and saved.optim.lr == 0.001  # sgd default not carried over
        assert [s.epochs for s in saved.stages] == [2]
        assert saved == form.validation.recipe
        assert saved.name == "tiny_fixres"
        # the minimal file still names the union variant
        assert tomllib.loads(target.read_text())["optim"]["name"] == "adamw"
        assert pane.path == target

        # remove the stage again
        form.query_one("#del-stages_0_").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: "stages[0].epochs" not in form.rows and form.doc["stages"] == [],
                       what="stage removed")


async def test_toml_view_applies_edits_and_refuses_bad_syntax(dirs):
    app = _app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        await pilot.press("ctrl+t")
        area = pane.query_one("#recipe-toml", TextArea)
        await wait_for(pilot, lambda: area.has_focus, what="TOML view")
        assert 'name = "tiny"' in area.text
        area.load_text(area.text + "\n[this is not toml\n")
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert pane._toml_visible(), "a TOML syntax error must keep the view open"
        area.load_text(area.text.replace("\n[this is not toml\n", "") + "\n[optim]\nlr = 0.3\n")
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: not pane._toml_visible(), what="back to the form")
        await wait_for(pilot, lambda: pane.form.validation.recipe is not None
                       and pane.form.validation.recipe.optim.lr == 0.3, what="applied")
        editor = await pane.form.reveal("optim.lr")
        assert editor.value == "0.3"
        assert pane.dirty


async def test_new_from_template_duplicate_and_revert(dirs):
    app = _app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, PickScreen), what="template picker")
        await pilot.press("enter")  # the first entry: the defaults
        await wait_for(pilot, lambda: pane.recipe_name() == "unnamed" and pane.path is None, what="new recipe")
        assert "not saved yet" in str(pane.query_one("#recipe-title").render())
        await pilot.press("f3")
        await wait_for(pilot, lambda: pane.recipe_name() == "unnamed-copy", what="duplicate")
        # open the project recipe again from the list, then revert an edit
        await pane.open_path(dirs.project / "tiny.toml")
        editor = await pane.form.reveal("name")
        await type_into(pilot, editor, "changed")
        await wait_for(pilot, lambda: pane.dirty, what="dirty")
        await pilot.press("f5")
        await wait_for(pilot, lambda: not pane.dirty and pane.recipe_name() == "tiny", what="reverted")


async def test_an_invalid_file_opens_with_its_problems_marked(dirs):
    bad = dirs.user / "bad.toml"
    bad.write_text('name = "bad"\n[data]\nbatch_size = 0\n[optim]\nmomentum = 2\n')
    app = _app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        assert await pane.open_path(bad)
        form = pane.form
        await form.reveal("data.batch_size")
        await form.reveal("optim.momentum")
        await wait_for(pilot, lambda: form.rows["data.batch_size"].has_class("-error")
                       and form.rows["optim.momentum"].has_class("-error"), what="both problems marked")
        await pilot.press("ctrl+r")  # running is refused too, with the list
        await pilot.pause()
        assert sorted(line.split(":")[0] for line in pane.last_refusal) == ["data.batch_size", "optim.momentum"]
        assert not any(dirs.runs.iterdir())


async def test_every_schema_field_has_a_control_in_the_form(dirs):
    """The form is generated: whatever fields the schema has today (other parts of fgbench add
    some), each one gets its control once its section is opened."""
    from fgbench.tui import form as F
    from fgbench.tui.widgets.recipe_form import editor_id

    app = _app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        form = (await ready_pane(pilot, "recipes")).form
        leaves = [F.path_str(p) for p, spec in F.walk(form.doc) if spec.kind not in ("section", "union", "models")]
        assert len(leaves) > 80
        for path in leaves:
            await form.reveal(path)
        await pilot.pause()
        missing = [p for p in leaves if not form.query(f"#{editor_id(p)}")]
        assert missing == []


async def test_a_choice_between_auto_and_booleans_shows_and_saves_toml_booleans(dirs):
    # runtime.channels_last is "auto", true or false: the picker spells the booleans as TOML does,
    # and choosing false saves a TOML boolean, not the string "False"
    path = dirs.project / "tiny.toml"
    app = _app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        form = pane.form
        picker = await form.reveal("runtime.channels_last")
        assert isinstance(picker, Select) and picker.value == "auto"
        labels = [str(prompt) for prompt, _value in picker._options if _value is not Select.NULL]
        assert labels == ["auto", "true", "false"]
        picker.value = False
        await wait_for(pilot, lambda: form.doc.get("runtime", {}).get("channels_last") is False,
                       what=lambda: f"false in the document {form.doc.get('runtime')}")
        assert form.validation.ok and form.validation.recipe.runtime.channels_last is False
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="overwrite question")
        await pilot.press("o")
        await wait_for(pilot, lambda: not pane.dirty, what="saved")
        assert tomllib.loads(path.read_text())["runtime"]["channels_last"] is False
        assert load_recipe(path).runtime.channels_last is False

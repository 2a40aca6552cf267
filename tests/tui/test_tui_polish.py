"""Rough edges found by hand (issue 12), each driven as a user meets it: saving keeps a recipe's
file as written, variant values survive a look at another variant, a dataset that is not there is
said at once, offline errors are shown whole, and the Runs pane / monitor details."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from rich.text import Text
from textual.widgets import DataTable, Input, Select

from fgbench.data import catalog
from fgbench.data.catalog import Source
from fgbench.tui.app import make_app
from fgbench.tui.screens.dialogs import ChoiceScreen, ConfirmScreen, PromptScreen
from tui_helpers import ready_pane, wait_for

COMMENTED = '''\
# tiny, commented by hand
name = "tiny"
description = """\\
wrapped \\
by hand."""

[data]
dataset = "synthetic"  # offline
train_size = 16
test_size = 16
batch_size = 8

[model]
arch = "small_cnn"

[optim]
name = "sgd"
lr = 0.1          # the default, kept on purpose
nesterov = true

[schedule]
epochs = 3
'''


def _app(dirs, **kw):
    return make_app(recipes_dirs=[dirs.project, dirs.user], runs_root=dirs.runs, data_root=dirs.data,
                    initial_recipe=dirs.project / "tiny.toml", **kw)


async def _type_into(pilot, editor: Input, text: str) -> None:
    editor.focus()
    await pilot.pause()
    await pilot.press("end", *["backspace"] * (len(editor.value) + 1), *text)


# ------------------------------------------------------------------------------ saving


async def test_ctrl_s_on_a_project_recipe_defaults_to_a_copy_that_keeps_comments(dirs):
    project = dirs.project / "tiny.toml"
    project.write_text(COMMENTED)
    app = _app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        editor = await pane.form.reveal("schedule.epochs")
        await _type_into(pilot, editor, "5")
        await wait_for(pilot, lambda: pane.dirty, what="edited")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the question")
        assert "project recipe" in app.screen.question
        await pilot.press("enter")  # the default: a copy in the user's folder
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), what="save-as prompt")
        assert app.screen.query_one(Input).value == "tiny.toml"
        await pilot.press("enter")
        copy = dirs.user / "tiny.toml"
        await wait_for(pilot, lambda: copy.is_file() and not pane.dirty, what="copy saved")
        assert project.read_text() == COMMENTED, "the project file is untouched"
        assert copy.read_text() == COMMENTED.replace("epochs = 3", "epochs = 5")
        assert pane.path == copy


async def test_overwriting_with_no_change_leaves_the_file_byte_for_byte(dirs):
    project = dirs.project / "tiny.toml"
    project.write_text(COMMENTED)
    app = _app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the question")
        await pilot.press("o")
        await wait_for(pilot, lambda: not isinstance(app.screen, ChoiceScreen), what="answered")
        await pilot.pause()
        assert project.read_text() == COMMENTED


async def test_a_recipe_of_your_own_is_saved_without_asking_and_keeps_its_layout(dirs):
    mine = dirs.user / "mine.toml"
    mine.write_text(COMMENTED.replace('name = "tiny"', 'name = "mine"'))
    app = make_app(recipes_dirs=[dirs.project, dirs.user], runs_root=dirs.runs, data_root=dirs.data,
                   initial_recipe=mine)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        editor = await pane.form.reveal("optim.lr")
        await _type_into(pilot, editor, "0.2")
        await wait_for(pilot, lambda: pane.dirty, what="edited")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not pane.dirty, what="saved")
        assert not isinstance(app.screen, ChoiceScreen)
        expected = COMMENTED.replace('name = "tiny"', 'name = "mine"').replace(
            "lr = 0.1          # the default", "lr = 0.2          # the default")
        assert mine.read_text() == expected


async def test_save_as_keeps_the_name_when_the_offer_is_declined(dirs):
    app = _app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), what="save-as prompt")
        app.screen.query_one(Input).value = "other"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="rename offer")
        await pilot.press("n")
        target = dirs.user / "other.toml"
        await wait_for(pilot, lambda: target.is_file(), what="saved")
        assert 'name = "tiny"' in target.read_text()
        assert pane.recipe_name() == "tiny"


# ------------------------------------------------------------------------ union variants


async def test_switching_a_variant_away_and_back_keeps_its_values_and_the_focus(dirs):
    (dirs.project / "tiny.toml").write_text(COMMENTED)
    app = _app(dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await ready_pane(pilot, "recipes")
        form = pane.form
        await form.reveal("optim.lr")
        editor = await form.reveal("optim.momentum")
        await _type_into(pilot, editor, "0.8")
        await wait_for(pilot, lambda: form.doc["optim"].get("momentum") == 0.8, what="momentum typed")
        picker = form.query_one("#v-optim", Select)
        picker.focus()
        picker.value = "adam"
        await wait_for(pilot, lambda: "optim.betas" in form.rows, what="adam fields")
        assert "nesterov" not in form.doc["optim"]
        assert app.focused is form.query_one("#v-optim", Select), "focus stays on the variant picker"
        form.query_one("#v-optim", Select).value = "sgd"
        await wait_for(pilot, lambda: "optim.momentum" in form.rows, what="sgd fields again")
        assert form.doc["optim"]["nesterov"] is True
        assert form.doc["optim"]["momentum"] == 0.8
        assert form.query_one("#f-optim__momentum", Input).value == "0.8"
        assert app.focused is form.query_one("#v-optim", Select)


# ------------------------------------------------------------------ datasets not there


async def test_picking_a_dataset_that_is_not_downloaded_offers_the_download(dirs):
    app = make_app(recipes_dirs=[dirs.project, dirs.user], runs_root=dirs.runs, data_root=dirs.data,
                   initial_recipe=dirs.project / "tiny.toml", initial_pane="datasets")
    async with app.run_test(size=(100, 30)) as pilot:
        await ready_pane(pilot, "recipes")
        datasets = app.pane("datasets")
        table = datasets.query_one("#datasets-table", DataTable)
        await wait_for(pilot, lambda: table.row_count > 3, what="catalog")
        started = []
        datasets.start_task = lambda task, name: started.append((task, name))
        table.focus()
        table.move_cursor(row=table.get_row_index("cifar10"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the offer")
        assert "cifar10 is not downloaded" in app.screen.question
        await pilot.press("d")
        await wait_for(pilot, lambda: started == [("download", "cifar10")], what="download started")
        assert app.pane("recipes").form.doc["data"]["dataset"] == "cifar10"


async def test_ctrl_r_on_a_recipe_whose_dataset_is_missing_warns_before_starting(dirs):
    tiny = dirs.project / "tiny.toml"
    tiny.write_text(tiny.read_text().replace('dataset = "synthetic"', 'dataset = "cub200"'))
    app = _app(dirs, fgbench_cmd=["/bin/false"])
    async with app.run_test(size=(100, 30)) as pilot:
        await ready_pane(pilot, "recipes")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the warning")
        assert app.screen.question.startswith("Not started yet: cub200 is not downloaded")
        await pilot.press("escape")
        await pilot.pause()
        assert not any(dirs.runs.iterdir()), "nothing was launched"


async def test_an_offline_download_shows_the_whole_error_and_the_dataset_stays_missing(dirs, monkeypatch):
    def getaddrinfo(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.delenv("FGBENCH_MIRROR_CUB200", raising=False)
    entry = catalog.get("cub200")
    monkeypatch.setitem(catalog._BY_NAME, "cub200", entry.__class__(**{
        **entry.__dict__, "sources": (Source("http://data.example.invalid/CUB_200_2011.tgz", "CUB_200_2011.tgz",
                                             md5="0" * 32, size=1000),)}))
    app = make_app(recipes_dirs=[dirs.project, dirs.user], runs_root=dirs.runs, data_root=dirs.data,
                   initial_recipe=dirs.project / "tiny.toml", initial_pane="datasets")
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.pane("datasets")
        table = pane.query_one("#datasets-table", DataTable)
        await wait_for(pilot, lambda: table.row_count > 3, what="catalog")
        table.focus()
        table.move_cursor(row=table.get_row_index("cub200"))
        await pilot.press("g")
        await wait_for(pilot, lambda: pane.active_task is None and pane.last_message, what="download ended")
        assert "no host could be resolved" in pane.last_message
        await pilot.pause()
        message = pane.query_one("#datasets-message")
        needed = len(Text(pane.last_message).wrap(app.console, message.content_region.width))
        assert needed > 4
        assert message.content_region.height >= needed, "the advice at the end is cut off"
        assert str(table.get_cell("cub200", "status")) == "missing"

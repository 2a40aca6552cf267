"""The Recipes pane: recipe files on the left, the generated form (or its TOML) on the right.

Decisions and trade-offs:

* Recipes come from the project's ``recipes/`` and the user's recipe directory (``make_app`` can
  pass others); "save as" and new recipes go to the last of these directories, the user's own.
* A file that does not validate still opens: the form shows what the file says and marks the
  problems at their fields, because fixing a broken recipe is one of the editor's jobs. A file that
  is not even TOML cannot be shown as a form; the error says where the syntax breaks.
* "Unsaved" compares the validated recipe with the one on disk (so typing ``0.10`` over ``0.1``
  is not a change); while the document is invalid it compares the raw documents.
* Saving edits the file in place and changes only what the user changed: comments, layout,
  a hand-wrapped description and explicit defaults stay (tomlkit, see
  :mod:`fgbench.tui.recipe_save`). A new file holds only what differs from the defaults (see
  :func:`fgbench.tui.form.recipe_toml`). Writes are atomic; saving or running an invalid recipe
  is refused with the list of problems, both in a notification and at the fields.
* Only the last recipe folder (the user's own) is written without asking. Ctrl+S on a recipe of
  another folder (the project's ``recipes/``, tracked in git) asks: save a copy in the user's
  folder (the default) or overwrite. Save as offers the new file's stem as the recipe's ``name``.
* The TOML view is editable; leaving it (Ctrl+T again) applies the text: a syntax error keeps you
  in the view with the error, a schema error is applied and marked at its field like any edit.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import tomli_w
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import ContentSwitcher, Label, OptionList, Static, TextArea
from textual.widgets.option_list import Option, OptionDoesNotExist

from fgbench.errors import UserError
from fgbench.report import cut_apart, cut_middle
from fgbench.recipe import (
    MAX_RECIPE_BYTES,
    Recipe,
    RecipeError,
    atomic_write_text,
    parse_recipe_text,
    read_recipe_data,
)
from fgbench.textfile import read_text_file
from fgbench.textsafe import safe, safe_lines
from fgbench.tui.form import MISSING, Validation, display_value, doc_from_recipe, recipe_toml, validate
from fgbench.tui.messages import RecipeStatus
from fgbench.tui.recipe_files import discover, listing
from fgbench.tui.dialogs import ChoiceScreen, ConfirmScreen, PickScreen, PromptScreen
from fgbench.tui.widgets.recipe_form import RecipeForm
from fgbench.tui.workers import ReportsWorkerFailures, work


def read_doc(path: Path) -> tuple[dict[str, Any], Recipe | None]:
    """The document of a recipe file (defaults filled in when it validates). Raises RecipeError
    for a file that cannot be read or is not TOML."""
    raw = read_recipe_data(path)  # the recipe's one reader: never blocks on a FIFO, at most 1 MB
    check = validate(raw, str(path))
    if check.recipe is not None:
        return doc_from_recipe(check.recipe), check.recipe
    return raw, None


def _read_text(path: Path) -> str | None:
    try:
        return read_text_file(path, MAX_RECIPE_BYTES, "recipe")
    except UserError:
        return None


def _viewable(toml_text: str) -> str:
    """The TOML view's text: each line made safe, tabs kept (TOML indents with them). TOML itself
    forbids raw control characters but not a bidi override in a string or a comment; shown as
    ``\\u202e`` it is the same value to TOML in a basic string, and the view applies the text
    only when the user changed it."""
    return "\t".join(safe_lines(part) for part in toml_text.split("\t"))


DEFAULT_HELP = ("Enter on a recipe opens it. Tab / Shift+Tab move between fields, Enter opens a section "
                "or a choice, Esc goes back to the list. The help of the focused field shows here.")


class RecipesPane(ReportsWorkerFailures, Vertical):
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", tooltip="Save (refused with the list of problems if invalid)"),
        Binding("f2", "save_as", "Save as", tooltip="Save under a new name in your recipe folder"),
        Binding("ctrl+n", "new", "New", tooltip="New recipe from a template"),
        Binding("f3", "duplicate", "Dup", tooltip="Duplicate the current recipe (unsaved copy)"),
        Binding("f5", "revert", "Revert", tooltip="Revert to the file on disk"),
        Binding("ctrl+t", "toggle_toml", "TOML", tooltip="Show the TOML; again applies your edits"),
        Binding("escape", "focus_list", "Recipe list", show=False, tooltip="Leave the field: to the recipe list"),
    ]

    def __init__(self, dirs: list[tuple[str, Path]], initial: Path | None = None, **kwargs):
        super().__init__(**kwargs)
        self.dirs = dirs
        self.path: Path | None = None
        self.baseline: Recipe | None = None
        self.baseline_doc: dict[str, Any] = {}
        self.last_refusal: list[str] = []
        self._toml_shown = ""
        self.disk_text: str | None = None
        """The text of the open file as last read or written (what a save edits in place)."""
        doc: dict[str, Any] | None = None
        if initial is not None:
            try:
                doc, self.baseline = read_doc(initial)
                self.path = initial
                self.disk_text = _read_text(initial)
            except RecipeError:
                doc = None
        if doc is None:
            self.baseline = Recipe()
            doc = doc_from_recipe(self.baseline)
        self.baseline_doc = copy.deepcopy(doc)
        self._initial_doc = doc

    @property
    def save_dir(self) -> Path:
        return self.dirs[-1][1]

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="recipe-side"):
                yield Label("Recipes", classes="pane-title")
                yield OptionList(id="recipe-list")
            with Vertical(id="recipe-main"):
                yield Static("", id="recipe-title")
                with ContentSwitcher(initial="recipe-form", id="recipe-switcher"):
                    yield RecipeForm(self._initial_doc, source=self._source(), id="recipe-form")
                    yield TextArea("", id="recipe-toml", show_line_numbers=False)
                yield Static(Text(DEFAULT_HELP, style="dim"), id="field-help")

    def on_mount(self) -> None:
        if not self.query("#recipe-form"):  # mounted while the app is closing: nothing to fill
            return
        self.refresh_list()
        self._update_title()

    _list_room = 0

    @on(events.Resize)
    def _resized(self) -> None:
        """Names are cut (in the middle) to the list's width: cut again when it changes."""
        lst = self.query_one("#recipe-list", OptionList)
        if lst.scrollable_content_region.width - lst.styles.scrollbar_size_vertical != self._list_room:
            self.refresh_list()
        self._update_title()

    # ------------------------------------------------------------------ state

    @property
    def form(self) -> RecipeForm:
        return self.query_one("#recipe-form", RecipeForm)

    def _source(self) -> str:
        return str(self.path) if self.path else "<new recipe>"

    @property
    def dirty(self) -> bool:
        current = self.form.validation.recipe
        if current is not None and self.baseline is not None:
            return current != self.baseline
        return self.form.doc != self.baseline_doc

    def current(self) -> Validation:
        """The recipe as the form shows it, keys typed just before included (see
        ``RecipeForm.commit_typed``)."""
        if self.form.commit_typed(""):
            self.form.post_message(RecipeForm.Changed(self.form, ""))
        return self.form.validate()

    def recipe_name(self) -> str:
        """The recipe's ``name`` as shown (titles, dialogs): made safe, since an invalid document
        can hold anything there."""
        name = self.form.doc.get("name")
        return safe(name) if name else "unnamed"

    def display_path(self) -> str:
        """``project/quickstart.toml`` for files in a recipes directory, else the full path; made
        safe (a file name can hold escape sequences)."""
        if self.path is None:
            return ""
        for origin, d in self.dirs:
            try:
                return safe(f"{origin}/{self.path.relative_to(d)}")
            except ValueError:
                continue
        return safe(self.path)

    def refresh_list(self) -> None:
        entries = listing(self.dirs, self.path)
        lst = self.query_one("#recipe-list", OptionList)
        room = lst.scrollable_content_region.width - lst.styles.scrollbar_size_vertical
        labels = cut_apart([label for label, _ in entries], room) if room > 4 else [label for label, _ in entries]
        options: list[Option | None] = [Option(Text(label, style="bold"), disabled=True) if path is None
                                        else Option(Text(label), id=str(path)) for label, (_, path) in zip(labels, entries)]
        if not entries:
            options.append(Option("(no recipes yet)", disabled=True))
        self._list_room = room
        highlighted = lst.highlighted
        lst.clear_options()
        lst.add_options(options)
        if highlighted is None and self.path is not None:  # first fill: show the open recipe, scrolled to
            try:
                highlighted = lst.get_option_index(str(self.path))
            except OptionDoesNotExist:
                pass
        if highlighted is not None and highlighted < lst.option_count:
            lst.highlighted = highlighted

    def _update_title(self) -> None:
        state = Text()
        if self.dirty:
            state.append("  ● unsaved", style="bold yellow")
        errors = self.form.validation.errors
        if errors:
            state.append(f"  ✗ {len(errors)} problem{'s' if len(errors) != 1 else ''}", style="bold red")
        else:
            state.append("  ✓ valid", style="green")
        title = self.query_one("#recipe-title", Static)
        name = self.recipe_name()
        where = self.display_path() if self.path else "not saved yet"
        # the state (unsaved, valid) is what the line is for: at 80 columns the path gives way,
        # cut in the middle, rather than "✓ val…"
        room = title.content_region.width - state.cell_len  # for the name, two spaces and the path
        if title.content_region.width and len(name) + 2 + len(where) > room:
            where = cut_middle(where, max(room - len(name) - 2, 8))
            name = cut_middle(name, max(room - len(where) - 2, 8))
        text = Text()
        text.append(name, style="bold")
        text.append(f"  {where}", style="dim")
        text.append_text(state)
        title.update(text)
        self.post_message(RecipeStatus(self.recipe_name(), not errors, self.dirty))

    @on(RecipeForm.Changed)
    def _form_changed(self, event: RecipeForm.Changed) -> None:
        event.stop()
        self._update_title()

    @on(RecipeForm.FieldFocused)
    def _field_focused(self, event: RecipeForm.FieldFocused) -> None:
        event.stop()
        spec = event.spec
        text = Text()
        text.append(event.path, style="bold")
        if spec is not None:
            help_text = event.variant_help or spec.help
            if help_text:
                text.append(f"  {help_text}")
            details = []
            if spec.hint:
                details.append(spec.hint)
            if spec.kind == "choice":
                details.append("one of " + ", ".join(str(c) for c in spec.choices))
            if spec.default is not MISSING and spec.kind not in ("section", "union", "models"):
                details.append(f"default {display_value(spec, spec.default) or 'empty'}")
            if details:
                text.append("  [" + "; ".join(details) + "]", style="dim")
        self.query_one("#field-help", Static).update(text)

    # ------------------------------------------------------------------ open

    @on(OptionList.OptionSelected, "#recipe-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id:
            self.request_open(Path(event.option.id))

    @work(exclusive=True, group="recipe-open")
    async def request_open(self, path: Path) -> None:
        if self.dirty and not await self.app.push_screen_wait(
                ConfirmScreen(f"Discard the unsaved changes to {self.recipe_name()}?")):
            return
        await self.open_path(path)

    async def open_path(self, path: Path) -> bool:
        try:
            doc, recipe = read_doc(path)
        except RecipeError as err:
            self.app.notify(str(err), title="Cannot open", severity="error", timeout=8, markup=False)
            return False
        self.path = path
        self.disk_text = _read_text(path)
        self.baseline = recipe
        self.baseline_doc = copy.deepcopy(doc)
        await self._show_doc(doc)
        self.refresh_list()
        return True

    async def _show_doc(self, doc: dict[str, Any]) -> None:
        self._leave_toml(apply=False)
        await self.form.load(doc, self._source())
        self._update_title()

    def action_focus_list(self) -> None:
        self.query_one("#recipe-list", OptionList).focus()

    @work(exclusive=True, group="recipe-open")
    async def action_new(self) -> None:
        options = [("", "(defaults)")] + [(str(rf.path), f"{rf.origin}/{rf.name}") for rf in discover(self.dirs)]
        choice = await self.app.push_screen_wait(PickScreen("New recipe from template", options))
        if choice is None:
            return
        if self.dirty and not await self.app.push_screen_wait(
                ConfirmScreen(f"Discard the unsaved changes to {self.recipe_name()}?")):
            return
        if choice == "":
            doc = doc_from_recipe(Recipe())
        else:
            try:
                doc, _ = read_doc(Path(choice))
            except RecipeError as err:
                self.app.notify(str(err), title="Cannot open", severity="error", markup=False)
                return
            doc["name"] = f"{doc.get('name', 'recipe')}-new"
        await self._start_unsaved(doc)

    async def action_duplicate(self) -> None:
        doc = copy.deepcopy(self.form.doc)
        doc["name"] = f"{doc.get('name', 'recipe')}-copy"
        await self._start_unsaved(doc)

    async def _start_unsaved(self, doc: dict[str, Any]) -> None:
        self.path = None
        self.disk_text = None
        self.baseline = None
        self.baseline_doc = {}
        await self._show_doc(doc)
        self.refresh_list()

    async def action_revert(self) -> None:
        if self.path is not None:
            await self.open_path(self.path)
        else:
            await self._show_doc(copy.deepcopy(self.baseline_doc) or doc_from_recipe(Recipe()))
        self.app.notify("Reverted to the saved recipe", timeout=3)

    # ------------------------------------------------------------------ save

    def refuse(self, what: str, validation: Validation) -> None:
        lines = [f"{e.path or '(recipe)'}: {e.message}" for e in validation.errors]
        self.last_refusal = lines
        shown = lines[:8] + ([f"... and {len(lines) - 8} more"] if len(lines) > 8 else [])
        self.app.notify("\n".join(shown), markup=False, title=f"{what}: {len(lines)} problem{'s' if len(lines) != 1 else ''}",
                        severity="error", timeout=10)

    def _validated(self, what: str) -> Recipe | None:
        if self._toml_visible() and not self._leave_toml(apply=True):
            return None
        validation = self.current()
        if validation.recipe is None:
            self.refuse(what, validation)
            return None
        self.last_refusal = []
        return validation.recipe

    def is_own(self, path: Path) -> bool:
        """Whether ``path`` is in the user's own recipe folder (written without asking)."""
        try:
            path.resolve().relative_to(self.save_dir.resolve())
            return True
        except ValueError:
            return False

    @work(exclusive=True, group="recipe-save")
    async def action_save(self) -> None:
        recipe = self._validated("Not saved")
        if recipe is None:
            return
        if self.path is None:
            await self._save_as(recipe)
            return
        if not self.is_own(self.path):
            answer = await self.app.push_screen_wait(ChoiceScreen(
                f"{self.display_path()} is a {self._origin_of(self.path)} recipe, not one of yours in "
                f"{self.save_dir}. Save your changes as a copy there, or overwrite the file?",
                [("s", "copy", "save a copy in your folder"), ("o", "overwrite", "overwrite it")]))
            if answer is None:
                return
            if answer == "copy":
                await self._save_as(recipe, suggest=self.save_dir / self.path.name)
                return
        self._write(self.path, recipe)

    def _origin_of(self, path: Path) -> str:
        for origin, d in self.dirs:
            try:
                path.relative_to(d)
                return origin
            except ValueError:
                continue
        return "other"

    def _text_for(self, recipe: Recipe) -> str:
        """What is written: the open file edited in place where there is one, else the minimal form."""
        if self.disk_text is not None:
            from fgbench.tui.recipe_save import preserving_toml

            return preserving_toml(self.disk_text, recipe, self._source())
        return recipe_toml(recipe)

    def _write(self, path: Path, recipe: Recipe) -> None:
        text = self._text_for(recipe)
        try:
            atomic_write_text(path, text)
        except OSError as err:
            self.app.notify(f"{path}: {err}", title="Not saved", severity="error", markup=False)
            return
        self.path = path
        self.disk_text = text
        self.baseline = recipe
        self.baseline_doc = copy.deepcopy(self.form.doc)
        self.form.source = str(path)
        self.refresh_list()
        self._update_title()
        self.app.notify(f"Saved {path}", timeout=3)

    @work(exclusive=True, group="recipe-save")
    async def action_save_as(self) -> None:
        recipe = self._validated("Not saved")
        if recipe is None:
            return
        await self._save_as(recipe)

    async def _save_as(self, recipe: Recipe, suggest: Path | None = None) -> None:
        default = suggest.name if suggest is not None else f"{recipe.name}.toml"
        answer = await self.app.push_screen_wait(PromptScreen(
            "Save recipe as", default,
            f"A file name in {self.save_dir}, or a path. Enter: save   Escape: cancel"))
        if not answer:
            return
        target = Path(answer).expanduser()
        if not target.is_absolute() and target.parent == Path("."):
            target = self.save_dir / target
        if target.suffix != ".toml":
            target = target.with_name(target.name + ".toml")
        if target.exists() and target != self.path and not await self.app.push_screen_wait(
                ConfirmScreen(f"{target} exists. Overwrite it?")):
            return
        if target.stem != recipe.name and await self.app.push_screen_wait(ConfirmScreen(
                f"Also name the recipe {target.stem!r} after its file (it is {recipe.name!r} now)?")):
            await self.form.set_value("name", target.stem)
            renamed = self.form.validation.recipe
            if renamed is None:  # the stem is not a valid name: keep the old one
                await self.form.set_value("name", recipe.name)
                self.app.notify(f"{target.stem!r} is not a valid recipe name; kept {recipe.name!r}",
                                severity="warning", timeout=5)
            else:
                recipe = renamed
        self._write(target, recipe)

    # ------------------------------------------------------------------ TOML view

    def _toml_visible(self) -> bool:
        return self.query_one("#recipe-switcher", ContentSwitcher).current == "recipe-toml"

    def _doc_toml(self) -> str:
        recipe = self.form.validation.recipe
        if recipe is not None:
            return self._text_for(recipe)  # as Ctrl+S would write it, comments and all
        try:
            return tomli_w.dumps(self.form.doc)
        except (TypeError, ValueError):
            return ""

    def _leave_toml(self, *, apply: bool) -> bool:
        switcher = self.query_one("#recipe-switcher", ContentSwitcher)
        if switcher.current != "recipe-toml":
            return True
        if apply:
            text = self.query_one("#recipe-toml", TextArea).text
            if text != self._toml_shown:
                try:
                    doc = parse_recipe_text(text, "TOML view")
                except RecipeError as err:
                    self.app.notify(str(err), title="Not applied", severity="error", timeout=8, markup=False)
                    return False
                check = validate(doc, self.form.source)
                if check.recipe is not None:
                    doc = doc_from_recipe(check.recipe)
                # The document is the source of truth: it (and its validation) change now; the
                # widgets follow in a moment.
                self.form.doc = doc
                self.form.validation = validate(doc, self.form.source)
                self.run_worker(self._apply_doc(doc), group="recipe-toml", exclusive=True, exit_on_error=False)
        switcher.current = "recipe-form"
        return True

    async def _apply_doc(self, doc: dict[str, Any]) -> None:
        await self.form.load(doc)
        self._update_title()

    def action_toggle_toml(self) -> None:
        switcher = self.query_one("#recipe-switcher", ContentSwitcher)
        if switcher.current == "recipe-toml":
            if self._leave_toml(apply=True):
                self.form.focus()
            return
        self._toml_shown = _viewable(self._doc_toml())
        area = self.query_one("#recipe-toml", TextArea)
        area.load_text(self._toml_shown)
        switcher.current = "recipe-toml"
        area.focus()

"""The recipe form: widgets generated from the schema by walking :mod:`fgbench.tui.form` specs.

Decisions and trade-offs:

* The document (a nested dict) is the source of truth; widgets only reflect it. A change in a
  control is written into the document, the whole document is validated, and every field's error
  line is updated. Structural changes (another union variant, a stage added or removed) rebuild
  only that section's body.
* Sections are collapsible groups whose contents are built the first time they are expanded: the
  recipe has well over a hundred fields and mounting them all up front would delay the first
  paint for nothing. Errors of fields not built yet still count in their section's title.
  Textual costs a few milliseconds per widget, so a field is 3 widgets (label, control, hint)
  and its error line exists only while there is an error; opening the largest section (data,
  about 25 fields) still takes 0.3-0.6 s on the slow 2-core development VM.
* Controls: Select for a ``Literal``, Switch for ``bool``, a compact Input for numbers, strings,
  tuples/lists (``0.08, 1.0``) and anything else (a TOML value, e.g. an inline table), a variant
  picker for discriminated unions, and add/remove buttons for lists of sub-models (``stages``).
* The form turns generic control events into one domain message, :class:`RecipeForm.Changed`,
  and stops the originals, so the pane above it never sees an ``Input.Changed``.
"""

from __future__ import annotations

import re
import weakref
from typing import Any, Literal, TypeVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.css.query import NoMatches
from textual.dom import DOMNode
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.markup import escape as escape_markup
from textual.widgets import Button, Collapsible, Input, Label, Select, Static, Switch

from fgbench.recipe import Recipe
from fgbench.textsafe import safe
from fgbench.tui import form
from fgbench.tui.text_input import TextInput


def widget_id(prefix: str, path: str) -> str:
    return prefix + "-" + re.sub(r"[^A-Za-z0-9_]", "_", path.replace(".", "__"))


def editor_id(path: str) -> str:
    """The DOM id of a field's control, e.g. ``#f-optim__lr`` (tests use it)."""
    return widget_id("f", path)


class FieldRow(Widget):
    """One field: name, control and hint on a line (a 3-column grid); the schema's error message
    on a second line, mounted only while there is one. Few widgets per field, because opening a
    section mounts a few dozen of them at once."""

    DEFAULT_CSS = """
    FieldRow { layout: grid; grid-size: 3; grid-columns: 22 1fr auto; grid-rows: auto; height: auto; }
    FieldRow > .field-error { column-span: 3; }
    """

    def __init__(self, path: form.Path, spec: form.FieldSpec, value: Any):
        self.field_path = form.path_str(path)
        super().__init__(classes="field-row", id=widget_id("row", self.field_path))
        self.spec = spec
        self.value = value
        self.messages: list[str] | None = None

    def compose(self) -> ComposeResult:
        spec = self.spec
        yield Label(spec.key, classes="field-label")
        yield make_editor(self.field_path, spec, self.value)
        yield Static(spec.hint, classes="field-hint")

    def set_error(self, messages: list[str] | None) -> None:
        if messages == self.messages:
            return
        self.messages = messages
        self.set_class(bool(messages), "-error")
        if self.is_mounted:
            self._show_error()

    def _show_error(self) -> None:
        text = Text("✗ " + "; ".join(self.messages), style="bold") if self.messages else None
        existing = self.query(".field-error")
        if text is None:
            existing.remove()
        elif existing:
            existing.first(Static).update(text)
        else:
            self.mount(Static(text, classes="field-error"))

    def on_mount(self) -> None:
        if self.messages:
            self._show_error()

    def set_value(self, value: Any) -> None:
        editor = self.query_one(f"#{editor_id(self.field_path)}")
        spec = self.spec
        if isinstance(editor, Switch):
            editor.value = bool(value) if value is not form.MISSING else bool(spec.default is True)
        elif isinstance(editor, Select):
            _select_set(editor, spec, value)
        elif isinstance(editor, Input):
            text = form.display_value(spec, value)
            if editor.value != text:
                editor.value = text


def _choice_options(spec: form.FieldSpec, value: Any) -> list[tuple[str, Any]]:
    # a choice can be a TOML boolean (runtime.channels_last: "auto", true, false): spelled as in TOML
    options = [(str(c).lower() if isinstance(c, bool) else str(c), c) for c in spec.choices]
    if value is not form.MISSING and value not in spec.choices:
        options.append((f"{value} (not allowed)", value))
    return options


def _select_set(select: Select, spec: form.FieldSpec, value: Any) -> None:
    if value is form.MISSING or value is None:
        if select.value != Select.NULL and select._allow_blank:
            select.clear()
        return
    if value not in spec.choices:
        select.set_options(_choice_options(spec, value))
    if select.value != value:
        select.value = value


PathRole = Literal["field", "section", "union", "list"]
"""What the path a form control carries names: the field it edits, the optional section it turns
on and off, the union whose variant it picks, the list it adds to (or the item it removes)."""

_W = TypeVar("_W", bound=Widget)
_PATHS: "weakref.WeakKeyDictionary[Widget, tuple[PathRole, str]]" = weakref.WeakKeyDictionary()
"""control -> (role, path): the typed record of what each of the form's controls stands for (a
weak mapping, so a control a rebuild removed takes its entry with it)."""


def tag_control(widget: _W, role: PathRole, path: str) -> _W:
    _PATHS[widget] = (role, path)
    return widget


def control_path(widget: Widget, role: PathRole) -> str | None:
    """The path ``widget`` carries in ``role`` (None: a control that is not the form's, or another role)."""
    entry = _PATHS.get(widget)
    return entry[1] if entry is not None and entry[0] == role else None


def make_editor(path: str, spec: form.FieldSpec, value: Any) -> Widget:
    wid = editor_id(path)
    if spec.kind == "bool":
        on_ = bool(value) if value is not form.MISSING else spec.default is True
        editor: Widget = Switch(value=on_, id=wid, classes="field-editor")
    elif spec.kind == "choice":
        allow_blank = spec.optional or spec.required or value is form.MISSING
        editor = Select(_choice_options(spec, value), value=value if value is not form.MISSING else Select.NULL,
                        allow_blank=allow_blank, compact=True, id=wid, classes="field-editor",
                        prompt="(unset)")
    else:
        placeholder = ""
        if spec.default is not form.MISSING:
            placeholder = f"default {form.display_value(spec, spec.default) or 'empty'}"
        elif spec.required:
            placeholder = "required"
        elif spec.optional:
            placeholder = "unset"
        editor = TextInput(value=form.display_value(spec, value), placeholder=placeholder, compact=True, id=wid,
                       classes="field-editor")
    return tag_control(editor, "field", path)


class FormSection(Collapsible):
    """A section, a union (variant picker + the variant's fields) or a list of sub-models."""

    def __init__(self, owner: "RecipeForm", path: form.Path, spec: form.FieldSpec, *, item: bool = False):
        self.form = owner
        self.fpath = path
        self.field_path = form.path_str(path)
        self.spec = spec
        self.item = item
        collapsed = self.field_path not in owner.expanded
        # An expanded section is built with its contents; a collapsed one on first expansion.
        children = owner.children_for(path, spec, item=item) if not collapsed else []
        self.built = not collapsed
        super().__init__(*children, title=self._make_title(0), collapsed=collapsed,
                         id=widget_id("s", self.field_path), classes="form-section")

    def _make_title(self, errors: int) -> str:
        spec, value = self.spec, self.form.value(self.fpath)
        if self.item:
            name = value.get("name") if isinstance(value, dict) else None
            title = f"{self.fpath[-2]}[{self.fpath[-1]}]" + (f": {name}" if name else "")
        else:
            title = spec.key
            if spec.kind == "union":
                title += f": {form.current_variant(spec, value)}"
            elif spec.kind == "models":
                title += f" ({len(value) if isinstance(value, list) else 0})"
            elif spec.kind == "section" and spec.optional and not isinstance(value, dict):
                title += " (unset)"
        if errors:
            title += f"  ✗ {errors}"
        # a stage's name or an unknown union tag comes from the file: made safe, and escaped
        # because Collapsible reads its title as markup
        return escape_markup(safe(title))

    def set_error_count(self, errors: int) -> None:
        self.title = self._make_title(errors)
        self.set_class(bool(errors), "-error")

    def on_mount(self) -> None:
        if self.built and self.form.validation.errors:
            self.call_after_refresh(self.form.apply_errors)

    @on(Collapsible.Expanded)
    def _expanded(self, event: Collapsible.Expanded) -> None:
        if event.collapsible is not self:
            return
        self.form.expanded.add(self.field_path)
        if not self.built:
            self.built = True  # before the build runs, so a second Expanded does not queue another
            self.call_later(self.build)

    @on(Collapsible.Collapsed)
    def _collapsed(self, event: Collapsible.Collapsed) -> None:
        if event.collapsible is self:
            self.form.expanded.discard(self.field_path)

    async def build(self) -> None:
        """(Re)build the contents from the document."""
        contents = self.get_child_by_type(Collapsible.Contents)
        self.form.forget(self.fpath, keep_self=True)
        await contents.remove_children()
        self.built = True
        await contents.mount_all(self.form.children_for(self.fpath, self.spec, item=self.item))
        self.form.apply_errors()

    def focus_first(self) -> None:
        for widget in self.get_child_by_type(Collapsible.Contents).query("*"):
            if widget.focusable and not isinstance(widget, Button):
                widget.focus()
                return


class SectionError(Static):
    """A section's own error (a rule across its fields)."""


class RecipeForm(VerticalScroll):
    """The generated recipe form. ``doc`` is the document being edited."""

    class Changed(Message):
        """The document changed (``path``: the field that changed, "" for a reload)."""

        def __init__(self, owner: "RecipeForm", path: str):
            super().__init__()
            self.form = owner
            self.path = path

        @property
        def control(self) -> "RecipeForm":
            return self.form

    class FieldFocused(Message):
        def __init__(self, path: str, spec: form.FieldSpec | None, variant_help: str = ""):
            super().__init__()
            self.path = path
            self.spec = spec
            self.variant_help = variant_help

    def __init__(self, doc: dict[str, Any] | None = None, *, source: str = "<recipe>", **kwargs):
        super().__init__(**kwargs)
        self.doc: dict[str, Any] = doc if doc is not None else form.doc_from_recipe(Recipe())
        self.source = source
        self.expanded: set[str] = set()
        self.rows: dict[str, FieldRow] = {}
        self.sections: dict[str, FormSection] = {}
        self.validation = form.validate(self.doc, source)
        self.errors_by_field: dict[str, list[str]] = {}
        self.variant_memory: dict[tuple[str, str], dict[str, Any]] = {}
        """(union path, variant) -> that variant's values when the user switched away from it, so
        switching back restores them (``nesterov = true`` survives a look at Adam)."""

    # -------------------------------------------------------------- building

    def value(self, path: form.Path) -> Any:
        return form.get_in(self.doc, path)

    def compose(self) -> ComposeResult:
        yield SectionError("", id="form-errors", classes="section-error")
        yield from self.children_for((), form.FieldSpec(key="", kind="section", model=Recipe))

    def on_mount(self) -> None:
        self.apply_errors()

    def widget_for(self, path: form.Path, spec: form.FieldSpec) -> Widget:
        if spec.kind in ("section", "union", "models"):
            section = FormSection(self, path, spec)
            self.sections[section.field_path] = section
            return section
        row = FieldRow(path, spec, self.value(path))
        self.rows[row.field_path] = row
        return row

    def children_for(self, path: form.Path, spec: form.FieldSpec, *, item: bool = False) -> list[Widget]:
        value = self.value(path)
        out: list[Widget] = []
        ps = form.path_str(path)
        if path:
            out.append(SectionError("", id=widget_id("err", ps), classes="section-error"))
        if spec.kind == "section" or item:
            model = spec.model
            if spec.optional and not item:
                toggle = Switch(value=isinstance(value, dict), id=widget_id("set", ps), classes="field-editor")
                tag_control(toggle, "section", ps)
                out.append(Horizontal(Label("set", classes="field-label"), toggle,
                                      Static("off: leave the whole section out", classes="field-hint"),
                                      classes="field-line"))
                if not isinstance(value, dict):
                    return out
            assert model is not None  # a section's (or a list item's) spec names its model
            for sub in form.model_specs(model):
                out.append(self.widget_for(path + (sub.key,), sub))
            if item:
                button = Button(f"Remove {ps}", id=widget_id("del", ps), compact=True, classes="list-button")
                out.append(tag_control(button, "list", ps))
        elif spec.kind == "union":
            tag = form.current_variant(spec, value)
            picker = Select([(t, t) for t in spec.variants], value=tag, allow_blank=False, compact=True,
                            id=widget_id("v", ps), classes="field-editor")
            tag_control(picker, "union", ps)
            out.append(Horizontal(Label(spec.tag, classes="field-label"), picker,
                                  Static("variant", classes="field-hint"), classes="field-line"))
            for sub in form.variant_specs(spec, tag):
                out.append(self.widget_for(path + (sub.key,), sub))
        elif spec.kind == "models":
            items = value if isinstance(value, list) else []
            for i in range(len(items)):
                section = FormSection(self, path + (i,), spec, item=True)
                self.sections[section.field_path] = section
                out.append(section)
            button = Button(f"Add {spec.key[:-1] if spec.key.endswith('s') else spec.key}",
                            id=widget_id("add", ps), compact=True, classes="list-button")
            out.append(tag_control(button, "list", ps))
        return out

    def forget(self, path: form.Path, *, keep_self: bool = False) -> None:
        """Drop the registry entries of widgets under ``path`` (they are being removed)."""
        ps = form.path_str(path)
        for table in (self.rows, self.sections):
            for key in [k for k in table if k.startswith(ps + ".") or k.startswith(ps + "[")
                        or (k == ps and not keep_self)]:
                del table[key]

    async def load(self, doc: dict[str, Any], source: str | None = None) -> None:
        """Show another document (open, revert, apply TOML)."""
        self.doc = doc
        if source is not None:
            self.source = source
        self.variant_memory.clear()
        self.rows.clear()
        self.sections.clear()
        await self.remove_children()
        await self.mount_all(list(self.compose()))
        self.validate()
        self.post_message(self.Changed(self, ""))

    # -------------------------------------------------------------- validation

    def validate(self) -> form.Validation:
        self.validation = form.validate(self.doc, self.source)
        self.apply_errors()
        return self.validation

    def apply_errors(self) -> None:
        known = {form.path_str(p) for p, _ in form.walk(self.doc)}
        by_field: dict[str, list[str]] = {}
        for err in self.validation.errors:
            owner = form.owner_path(err.path, known)
            rest = err.path[len(owner):].lstrip(".") if owner else err.path
            msg = f"{rest}: {err.message}" if rest else err.message
            by_field.setdefault(owner, []).append(msg)
        self.errors_by_field = by_field
        for path, row in self.rows.items():
            row.set_error(by_field.get(path))
        for path, section in self.sections.items():
            count = sum(len(v) for k, v in by_field.items()
                        if k == path or k.startswith(path + ".") or k.startswith(path + "["))
            section.set_error_count(count)
            try:
                err_widget = section.query_one(f"#{widget_id('err', path)}", SectionError)
            except NoMatches:
                continue
            own = by_field.get(path)
            err_widget.update(Text("✗ " + "; ".join(own), style="bold") if own else "")
            err_widget.set_class(bool(own), "-shown")
        top = by_field.get("")
        try:
            widget = self.query_one("#form-errors", SectionError)
        except NoMatches:
            return
        widget.update(Text("✗ " + "; ".join(top), style="bold") if top else "")
        widget.set_class(bool(top), "-shown")

    # -------------------------------------------------------------- edits

    def _spec_of(self, path: str) -> form.FieldSpec | None:
        row = self.rows.get(path)
        return row.spec if row is not None else None

    def _changed(self, path: str) -> None:
        self.validate()
        self.post_message(self.Changed(self, path))

    async def set_value(self, path: str, value: Any) -> None:
        """Set a field programmatically (e.g. the dataset picked in the Datasets pane)."""
        form.set_in(self.doc, form.parse_path(path), value)
        row = self.rows.get(path)
        if row is not None:
            row.set_value(value)
        self._changed(path)

    def commit_typed(self, under: str) -> bool:
        """Write into the document what was typed in the text fields under ``under`` and has not
        reached it yet. An ``Input.Changed`` climbs the DOM one queue at a time, so a structural
        change (another variant, a stage removed, a section unset) can be handled before the
        keys typed just ahead of it: rebuilt from the document, the field showed its default while
        the late event then wrote the typed value into the document (or the other way round).
        Called first by every handler that rebuilds a section, and (``under=""``: every field) before
        the document is read to save, run or quit; stale events are dropped. Returns whether the
        document changed (the caller validates)."""
        committed = False
        for path, row in list(self.rows.items()):
            if under and not (path == under or path.startswith(under + ".") or path.startswith(under + "[")):
                continue
            editor = next((c for c in row.children if isinstance(c, Input)), None)
            if editor is None:
                continue
            fpath = form.parse_path(path)
            if form.display_value(row.spec, self.value(fpath)) != editor.value:
                form.set_in(self.doc, fpath, form.parse_text(row.spec, editor.value))
                committed = True
        return committed

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        path = control_path(event.input, "field")
        if path is None:
            return
        event.stop()
        row = self.rows.get(path)
        if row is None or event.input.parent is not row:
            return  # from a field a rebuild replaced: what it held was committed before the rebuild
        spec = row.spec
        fpath = form.parse_path(path)
        if form.display_value(spec, self.value(fpath)) == event.value:
            return
        form.set_in(self.doc, fpath, form.parse_text(spec, event.value))
        self._changed(path)

    @on(Switch.Changed)
    async def _switch_changed(self, event: Switch.Changed) -> None:
        event.stop()
        section_path = control_path(event.switch, "section")
        if section_path is not None:
            fpath = form.parse_path(section_path)
            present = isinstance(self.value(fpath), dict)
            if present == event.value:
                return
            self.commit_typed(section_path)  # validated below
            form.set_in(self.doc, fpath, {} if event.value else form.MISSING)
            section = self.sections.get(section_path)
            self._changed(section_path)
            if section is not None:
                await section.build()
                self._refocus(widget_id("set", section_path))
            return
        path = control_path(event.switch, "field")
        if not path:
            return
        spec = self._spec_of(path)
        if spec is None:
            return
        fpath = form.parse_path(path)
        current = self.value(fpath)
        current_bool = bool(current) if current is not form.MISSING else spec.default is True
        if current is not form.MISSING and current_bool == event.value:
            return
        if current is form.MISSING and current_bool == event.value:
            return
        form.set_in(self.doc, fpath, event.value)
        self._changed(path)

    @on(Select.Changed)
    async def _select_changed(self, event: Select.Changed) -> None:
        event.stop()
        union_path = control_path(event.select, "union")
        if union_path is not None:
            section = self.sections.get(union_path)
            if section is None:
                return
            committed = self.commit_typed(union_path)
            fpath = form.parse_path(union_path)
            old = self.value(fpath)
            new_tag = str(event.value)
            if form.current_variant(section.spec, old) == new_tag and isinstance(old, dict) and old.get(section.spec.tag):
                if committed:
                    self._changed(union_path)
                return
            if isinstance(old, dict):
                self.variant_memory[(union_path, form.current_variant(section.spec, old))] = dict(old)
            new = form.switch_variant(section.spec, old, new_tag)
            remembered = self.variant_memory.get((union_path, new_tag))
            if remembered is not None:  # back to a variant seen before: its values, then the carried ones
                new = {**remembered, **new}
            form.set_in(self.doc, fpath, new)
            self._changed(union_path)
            await section.build()
            section.title = section._make_title(0)
            self.apply_errors()
            self._refocus(widget_id("v", union_path))
            return
        path = control_path(event.select, "field")
        if not path:
            return
        spec = self._spec_of(path)
        if spec is None:
            return
        fpath = form.parse_path(path)
        value = form.MISSING if event.value == Select.NULL else event.value
        if self.value(fpath) == value:
            return
        form.set_in(self.doc, fpath, value)
        self._changed(path)
        if spec.key == "name":
            # item titles show the name
            for section in self.sections.values():
                if section.item:
                    section.title = section._make_title(0)

    @on(Button.Pressed, ".list-button")
    async def _list_button(self, event: Button.Pressed) -> None:
        event.stop()
        list_path = control_path(event.button, "list")
        if list_path is None:
            return
        fpath = form.parse_path(list_path)
        self.commit_typed(form.path_str(fpath[:-1]) if isinstance(fpath[-1], int) else list_path)
        if isinstance(fpath[-1], int):  # remove this item
            parent, index = fpath[:-1], fpath[-1]
            items = self.value(parent)
            if isinstance(items, list) and index < len(items):
                del items[index]
            parent_path = form.path_str(parent)
        else:  # add an item
            items = self.value(fpath)
            if not isinstance(items, list):
                items = []
                form.set_in(self.doc, fpath, items)
            items.append({})
            parent_path = list_path
            self.expanded.add(f"{list_path}[{len(items) - 1}]")
        self._changed(parent_path)
        section = self.sections.get(parent_path)
        if section is not None:
            await section.build()
            section.title = section._make_title(0)
            self.apply_errors()
            if not isinstance(fpath[-1], int):  # added: continue in the new item's first field
                item = self.sections.get(f"{list_path}[{len(items) - 1}]")
                if item is not None:
                    self.call_after_refresh(item.focus_first)
            else:
                section.focus_first()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        node: DOMNode | None = event.widget
        while node is not None and node is not self:
            if isinstance(node, FieldRow):
                self.post_message(self.FieldFocused(node.field_path, node.spec))
                return
            if isinstance(node, FormSection):
                variant = ""
                if node.spec.kind == "union":
                    variant = form.variant_help(node.spec, form.current_variant(node.spec, self.value(node.fpath)))
                self.post_message(self.FieldFocused(node.field_path, node.spec, variant))
                return
            node = node.parent

    def _refocus(self, dom_id: str) -> None:
        """Focus the rebuilt control the user just used (a rebuild removed the old one, and focus
        would fall back to the section header)."""
        try:
            self.query_one(f"#{dom_id}").focus()
        except NoMatches:
            pass

    # -------------------------------------------------------------- queries

    def editor(self, path: str) -> Widget:
        return self.query_one(f"#{editor_id(path)}")

    async def reveal(self, path: str) -> Widget | None:
        """Expand the sections down to a field and return its control (for tests and jumps)."""
        parts = form.parse_path(path)
        for i in range(1, len(parts)):
            ps = form.path_str(parts[:i])
            section = self.sections.get(ps)
            if section is None:
                continue
            if section.collapsed:
                section.collapsed = False
            if not section.built:
                await section.build()
        try:
            return self.editor(path)
        except Exception:
            return None

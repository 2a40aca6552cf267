"""The help screen (``?``): every key of every pane, generated from the bindings themselves so it
cannot drift from what the keys do."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

INTRO = (
    "fgbench workbench: prepare datasets, edit recipes, launch and watch runs.\n"
    "Runs are separate processes: quitting this screen or losing the SSH connection does not stop "
    "them, and the next `fgbench` re-attaches. The mouse works too; every action has a key."
)


def _key_text(key: str) -> str:
    names = {"question_mark": "?", "slash": "/", "space": "space", "escape": "esc", "enter": "enter"}
    return ", ".join(names.get(k, k) for k in key.split(","))


def bindings_table(sections: list[tuple[str, list]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for title, bindings in sections:
        table.add_row(Text(title, style="bold underline"), "")
        for b in bindings:
            if not isinstance(b, Binding) or not b.description:
                continue
            table.add_row(_key_text(b.key), b.tooltip or b.description)
        table.add_row("", "")
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, sections: list[tuple[str, list]]):
        super().__init__(classes="dialog-screen")
        self.sections = sections

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog help-dialog"):
            yield Static(Text("Keys", style="bold"), classes="dialog-title")
            with VerticalScroll():
                yield Static(Text(INTRO), classes="help-intro")
                yield Static(bindings_table(self.sections), id="help-keys")
            yield Static("esc or ?: close", classes="dialog-help")

    def action_close(self) -> None:
        self.dismiss(None)

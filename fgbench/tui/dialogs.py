"""Small modal dialogs: ask for a line of text, confirm, pick one of a list.

Their questions name paths, recipe names and run directories: every text a dialog shows goes
through :func:`_shown` (made safe, and a Rich ``Text``, so a name like ``[bold]x`` is not markup).
A prompt's suggested value (a file name built from a recipe's) is made safe too: accepting it
gives the name as shown, never one with invisible characters; what the user types stays theirs."""

from __future__ import annotations

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from fgbench.textsafe import safe, safe_lines
from fgbench.tui.text_input import TextInput


def _shown(text: str) -> Text:
    return Text(safe_lines(text))


class PromptScreen(ModalScreen[str | None]):
    """One line of text; Enter accepts, Escape cancels (None)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str = "", help_text: str = ""):
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.value = value
        self.help_text = help_text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(_shown(self.title_text), classes="dialog-title")
            yield TextInput(safe(self.value), id="prompt-input")
            yield Static(_shown(self.help_text or "Enter: OK   Escape: cancel"), classes="dialog-help")

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; y or Enter is yes, n or Escape is no."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str):
        super().__init__(classes="dialog-screen")
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(_shown(self.question), classes="dialog-title")
            yield Static("y: yes   n: no", classes="dialog-help")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PickScreen(ModalScreen[str | None]):
    """Pick one entry of a list (Enter), or cancel (Escape)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, options: list[tuple[str, str]]):
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.options = options

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(_shown(self.title_text), classes="dialog-title")
            yield OptionList(*[Option(_shown(label), id=key) for key, label in self.options], id="pick-list")
            yield Static("Enter: pick   Escape: cancel", classes="dialog-help")

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ChoiceScreen(ModalScreen[str | None]):
    """A question with a few answers, each on its own key; Enter gives the first (the default),
    Escape cancels (None). ``choices``: (key, answer id, label)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, choices: list[tuple[str, str, str]]):
        super().__init__(classes="dialog-screen")
        self.question = question
        self.choices = choices
        self.keys = {key: answer for key, answer, _label in choices}
        self.keys["enter"] = choices[0][1]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(_shown(self.question), classes="dialog-title")  # plain text: paths, [sections]
            first = self.choices[0]
            lines = [f"{first[0]} or Enter: {first[2]}"] + [f"{k}: {label}" for k, _a, label in self.choices[1:]]
            yield Static("   ".join(lines + ["Escape: cancel"]), classes="dialog-help")

    def on_key(self, event: events.Key) -> None:
        answer = self.keys.get(event.key)
        if answer is not None:
            event.stop()
            self.dismiss(answer)

    def action_cancel(self) -> None:
        self.dismiss(None)

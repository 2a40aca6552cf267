"""An ``Input`` that handles its own keys in the order they were typed.

Textual forwards a key to the focused widget and goes on to the next key at once. A printable key
is handled in the widget's own queue, but a key bound to one of the widget's actions (Backspace,
Delete, the arrows, Home, End, Enter) only runs once the event has climbed the DOM back to the
App, one message queue per level. Typed ahead on a loaded machine, "Backspace Backspace a b"
became "a b" then two deletions: a save-as name lost its last two characters. :class:`TextInput`
runs its own (non-priority) bindings where the key arrives, in the widget's queue, so the order
typed is the order applied. Priority bindings are the App's, checked before a key is forwarded.
"""

from __future__ import annotations

from textual import events
from textual.widgets import Input


class TextInput(Input):
    async def _on_key(self, event: events.Key) -> None:
        # Input._on_key (next in the MRO) still handles printable keys; Textual calls each class's
        # handler in turn unless the event's default is prevented.
        if event.is_printable:
            return
        for binding in self._bindings.key_to_bindings.get(event.key, ()):
            if not binding.priority and await self.app.run_action(binding.action, self):
                event.stop()
                event.prevent_default()
                return

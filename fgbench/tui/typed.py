"""The workbench app, typed, for the widgets that call it.

Textual types ``Widget.app`` as a plain ``App``; the workbench's panes call the app's own methods
(the run store, the compare selection, starting and stopping runs). ``workbench(self)`` says once,
here, which app that is, so the type checker checks those calls instead of each being silenced
with ``type: ignore``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.dom import DOMNode

if TYPE_CHECKING:
    from fgbench.tui.app import FgbenchApp


def workbench(node: DOMNode) -> FgbenchApp:
    """The running :class:`FgbenchApp` that ``node`` belongs to."""
    return cast("FgbenchApp", node.app)

"""Pictures in the terminal (the test images of a confusion), through textual-image.

Decisions and trade-offs:

* textual-image finds out what the terminal can draw (Sixel, the Kitty graphics protocol, or
  neither) by asking it, once, when its renderable module is imported; once Textual runs, the
  terminal's answers would be read by Textual instead. So :func:`prepare` imports it before the
  app starts (``fgbench.tui.app.main``); without that, or when the terminal answers nothing (plain
  SSH, tmux without Sixel), pictures are drawn with coloured half blocks, which work everywhere.
* Asking cost 0.85 s before the first paint in tmux on the 2-core development machine
  (textual-image's imports, 0.4 s, and a 0.1 s wait for
  each answer a terminal may never give), too much to pay on every start in terminals that cannot
  draw pictures anyway. So ``auto`` asks only when the environment names a terminal known for
  pictures (kitty, WezTerm, iTerm2, Konsole, foot, mlterm, mintty, VS Code) outside tmux and
  screen (which pass pictures through only when configured to).
* ``FGBENCH_IMAGES`` chooses: ``auto`` (the default, as above), ``probe`` (always ask),
  ``halfcell`` (always half blocks: tests, screenshots) or ``off`` (file names only).
* textual-image is optional: without it the analysis view lists the files instead.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_prepared: type | None = None


MODES = ("auto", "probe", "halfcell", "off")
GRAPHICS_ENV = ("KITTY_WINDOW_ID", "WEZTERM_PANE", "ITERM_SESSION_ID", "KONSOLE_VERSION")
GRAPHICS_TERMS = ("xterm-kitty", "foot", "foot-extra", "mlterm", "wezterm")
GRAPHICS_PROGRAMS = ("WezTerm", "iTerm.app", "vscode", "mintty")


def mode() -> str:
    value = os.environ.get("FGBENCH_IMAGES", "auto").strip().lower()
    return value if value in MODES else "auto"


def terminal_may_draw(env: dict[str, str] | None = None) -> bool:
    """Whether the environment names a terminal that can draw pictures (see the module docstring)."""
    env = dict(os.environ) if env is None else env
    if env.get("TMUX") or env.get("STY"):
        return False
    return (any(env.get(k) for k in GRAPHICS_ENV) or env.get("TERM", "") in GRAPHICS_TERMS
            or env.get("TERM_PROGRAM", "") in GRAPHICS_PROGRAMS)


def prepare() -> None:
    """Let textual-image query the terminal; call before the app runs (a no-op when it is missing,
    and in ``auto`` mode in a terminal that names no picture support)."""
    global _prepared
    m = mode()
    if m not in ("auto", "probe") or (m == "auto" and not terminal_may_draw()):
        return
    try:
        from textual_image.widget import Image
    except Exception:  # not installed, or no terminal to ask (stdout closed)
        return
    _prepared = Image


def widget_class() -> type | None:
    """The image widget class to use, or None (no textual-image, or FGBENCH_IMAGES=off)."""
    if mode() == "off":
        return None
    if mode() in ("auto", "probe") and _prepared is not None:
        return _prepared
    try:
        return _halfcell_quietly()
    except Exception:
        return None


class _NotATerminal:
    """``sys.__stdout__`` as textual-image's import-time probe sees it: not a terminal."""

    def __init__(self, stream: Any):
        self._stream = stream

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _halfcell_quietly() -> type:
    """textual-image's half-block widget, imported without its import-time terminal probes.

    Importing any of textual-image's widgets asks the terminal for Sixel and Kitty support
    (``ESC [ c``) and for its cell size (``ESC [ 16 t``). Once Textual runs, the terminal's answers
    are read by Textual as key presses: in tmux, opening the Classes view popped up the help screen
    (the ``?`` of ``ESC [ ? 1 ; 2 c``) and garbled the title. Half blocks need no answer, so the
    probes are skipped: the cell size is taken from the kernel (``TIOCGWINSZ``, silent) or
    textual-image's own default, and the renderable module is imported while ``sys.__stdout__``
    says it is not a terminal (so it asks nothing)."""
    if "textual_image.widget" not in sys.modules:
        from textual_image import _terminal

        if not hasattr(_terminal.get_cell_size, "_result"):
            size = _terminal.CellSize(10, 20)  # textual-image's default (VT340)
            try:
                rows, columns, width, height = _terminal.get_tiocgwinsz()
                if rows and columns and width and height:
                    size = _terminal.CellSize(width // columns, height // rows)
            except Exception:  # noqa: BLE001 - no terminal: the default
                pass
            _terminal.get_cell_size._result = size  # type: ignore[attr-defined]  # its cache
        saved = sys.__stdout__
        sys.__stdout__ = _NotATerminal(saved)  # type: ignore[misc,assignment]
        try:
            import textual_image.widget  # noqa: F401
        finally:
            sys.__stdout__ = saved  # type: ignore[misc]
    from textual_image.widget import HalfcellImage

    return HalfcellImage

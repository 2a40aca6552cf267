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
        from textual_image.widget import HalfcellImage
    except Exception:
        return None
    return HalfcellImage

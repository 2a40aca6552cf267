"""Pictures in the terminal (the test images of a confusion), through textual-image.

Decisions and trade-offs:

* textual-image finds out what the terminal can draw (Sixel, the Kitty graphics protocol, or
  neither) by asking it, once, when its renderable module is imported; once Textual runs, the
  terminal's answers would be read by Textual instead. So :func:`prepare` imports it before the
  app starts (``fgbench.tui.app.main``); without that, or when the terminal answers nothing (plain
  SSH, tmux without Sixel), pictures are drawn with coloured half blocks, which work everywhere.
* ``FGBENCH_IMAGES`` chooses: ``auto`` (the default, as above), ``halfcell`` (always half
  blocks: tests, screenshots) or ``off`` (file names only).
* textual-image is optional: without it the analysis view lists the files instead.
"""

from __future__ import annotations

import os

_prepared: type | None = None


def mode() -> str:
    value = os.environ.get("FGBENCH_IMAGES", "auto").strip().lower()
    return value if value in ("auto", "halfcell", "off") else "auto"


def prepare() -> None:
    """Let textual-image query the terminal; call before the app runs (a no-op when it is missing)."""
    global _prepared
    if mode() != "auto":
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
    if mode() == "auto" and _prepared is not None:
        return _prepared
    try:
        from textual_image.widget import HalfcellImage
    except Exception:
        return None
    return HalfcellImage

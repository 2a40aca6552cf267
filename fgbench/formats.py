"""How numbers and durations are written for people: the one home of fgbench's value formatters.

Each variant below exists on purpose, for one kind of place, and is named for it; a new place picks
one of them rather than writing another:

* :func:`fmt_value` -- a table cell (``runs list``, ``runs compare``, the TUI's tables): floats with
  ``digits`` decimals, tiny or huge ones in short scientific form (an lr of ``0.0001`` must not read
  ``0.00``), ``-`` for nothing.
* :func:`fmt_fixed` -- a sentence of run numbers (the monitor's summary, its log lines): always
  ``digits`` decimals, ``-`` for anything that is not a number.
* :func:`fmt_compact` -- a chart's readout (the compare pane's cursor values): four significant
  digits under 10, two decimals above, short scientific form for tiny or huge values.
* :func:`fmt_rate` -- a throughput (the monitor's header and its result panel, which show one
  figure): ``1,140``, thousands separated, no decimals.
* :func:`fmt_duration` -- a run's length in a table: ``42s``, ``3m05s``, ``1h02m``.
* :func:`fmt_clock` -- a training progress line's ETA, as a clock: ``01:05``, ``1:02:05``, rounded
  to the second.
* :func:`fmt_clock_floor` -- a download's ETA: ``1:05``, ``1:02:05``, whole seconds (a count-down
  never shows a second that has not begun), ``--:--`` while unknown or infinite.
* :func:`toml_value` -- a value as the TOML a user types (the generated recipe reference:
  ``{a = 1}``; a value TOML cannot hold is an error there), and :func:`toml_inline` -- the same in
  the recipe form's inputs (``{ a = 1 }``; anything else is shown as a quoted string, never an error).

Pure zone: the standard library only.
"""

from __future__ import annotations

import json
import re
from typing import Any

MISSING: Any = object()
"""A value that is absent (a recipe field one run does not have), as opposed to ``None``; shown as ``-``."""


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def fmt_value(value: Any, digits: int = 2) -> str:
    """One table cell: floats with ``digits`` decimals (small ones in short scientific form),
    None as ``-``, lists compactly."""
    if value is None or value is MISSING:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e7):
            return f"{value:.3g}"
        text = f"{value:.{digits}f}"
        return text
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt_value(v, digits) for v in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def fmt_fixed(value: Any, digits: int = 2) -> str:
    """``digits`` decimals always (``81.50``); ``-`` for None and for anything that is not a number
    (a bool included)."""
    n = _number(value)
    return "-" if n is None else f"{n:.{digits}f}"


def fmt_compact(value: float | None) -> str:
    """A chart value in a few characters: ``0.1235``, ``81.50``, ``0.00123``, ``1.23e+05``."""
    if value is None:
        return "-"
    if value != 0 and (abs(value) < 0.01 or abs(value) >= 1e5):
        return f"{value:.3g}"
    return f"{value:.4g}" if abs(value) < 10 else f"{value:.2f}"


def fmt_rate(per_s: float) -> str:
    """Images (or any items) per second: ``1,140``."""
    return f"{per_s:,.0f}"


def fmt_duration(seconds: Any) -> str:
    """``42s``, ``3m05s``, ``1h02m`` (rounded to the second); ``-`` for anything not a number."""
    if not isinstance(seconds, (int, float)) or seconds != seconds:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def fmt_clock(seconds: float | None) -> str:
    """``01:05``, ``1:02:05`` (rounded to the second); ``--:--`` for None, NaN or a negative time."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "--:--"
    s = int(seconds + 0.5)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def fmt_clock_floor(seconds: float | None) -> str:
    """``1:05``, ``1:02:05`` (whole seconds, minutes unpadded under an hour); ``--:--`` for None,
    NaN or infinity."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "--:--"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
"""A TOML key that needs no quotes."""


def _toml(value: Any, spaced: bool, lenient: bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v, spaced, lenient) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = ", ".join(f"{k if BARE_KEY.fullmatch(k) else json.dumps(k)} = {_toml(v, spaced, lenient)}"
                          for k, v in ((str(k), v) for k, v in value.items()))
        return "{ " + items + " }" if spaced else "{" + items + "}"
    if lenient:
        return json.dumps(str(value))
    raise TypeError(f"no TOML literal for {type(value).__name__}")


def toml_value(value: Any) -> str:
    """A value as the TOML literal a user would write: ``true``, ``0.0001``, ``[0.08, 1.0]``,
    ``{"optim.lr" = [0.1, 0.01]}``. TypeError for a value TOML cannot hold."""
    return _toml(value, spaced=False, lenient=False)


def toml_inline(value: Any) -> str:
    """:func:`toml_value` with spaces inside tables (``{ a = 1 }``), as an input shows a value; a
    value TOML cannot hold is shown as a quoted string."""
    return _toml(value, spaced=True, lenient=True)

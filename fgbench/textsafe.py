"""Making a string from disk or from a user safe to display (pure zone: stdlib only).

Names reach the terminal from places an attacker (or an unlucky download) controls: class folder
names, image file names, a recipe's ``name``, a failed run's error, anything in a run directory.
Printed raw, ``ESC ] 52 ; c ; ... BEL`` (OSC 52) writes the user's clipboard, ``ESC ] 0 ; ...``
sets the terminal's title, ``ESC [ 2 J`` or a carriage return blanks what was printed before (a
``runs rm`` confirmation list that hides what it deletes), and a right-to-left override (U+202E)
makes ``gpj.exe`` read as ``exe.jpg``.

:func:`safe` is the one function the CLI and the TUI use before showing such a string: every
character that is not printable is written as its Python escape, visibly (``\\x1b``, ``\\x9b``,
``\\u202e``, ``\\n``). Unicode's own notion of printable decides: the C0 and C1 control characters
(Cc), the format characters (Cf: bidi overrides and isolates, zero-width joiners), the line and
paragraph separators (Zl, Zp) and unassigned or surrogate code points are escaped; letters of
every script, accents and emoji are shown as they are. Escaping, not deleting: what the user sees
tells them the name is strange, and two different names never look the same.
"""

from __future__ import annotations


def safe(text: object) -> str:
    """``text`` (``str()`` of it) with every non-printable character written as a visible escape,
    on one line."""
    s = text if isinstance(text, str) else str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in s)


def safe_lines(text: str) -> str:
    """Like :func:`safe` for a multi-line text (a recipe, a traceback): each line made safe, line
    breaks (``\\n``) kept; a carriage return, like every other control character, is escaped."""
    return "\n".join(safe(line) for line in text.split("\n"))

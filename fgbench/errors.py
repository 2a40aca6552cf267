"""User-facing errors. Anything raised as a UserError is the user's to fix: the CLI prints its
message (one line per problem, naming the file and the field or path) and exits 2, no traceback."""


class UserError(Exception):
    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)


class RecipeError(UserError):
    """A user's recipe is wrong. ``str()`` is one line per problem: ``FILE: field.path: message``
    (or ``--set KEY=VALUE: message`` when an override is the cause)."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("\n".join(lines))


def escape(text: str) -> str:
    """``text`` with every character that is not printable (control characters, terminal escape
    sequences, line and paragraph separators) written as a Python escape, so that a name taken
    from a user's file always prints as itself, on one line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)

"""User-facing errors. Anything raised as a UserError is the user's to fix: the CLI prints its
message (one line per problem, naming the file and the field or path) and exits 2, no traceback."""


class UserError(Exception):
    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)


class RecipeError(UserError):
    """A user's recipe is wrong. ``str()`` is one line per problem: ``FILE: field.path: message``."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("\n".join(lines))

"""User-facing errors and the exit codes, declared here once.

Anything raised as a UserError is the user's to fix: the CLI prints its message (one line per
problem, naming the file and the field or path) and exits 2, no traceback.

Exit codes of every command (the README's "Exit codes"): 0 done, 1 the work failed (the run
directory says why), 2 bad input (nothing written), 130 interrupted (SIGINT/SIGTERM, resumable).
"""

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class UserError(Exception):
    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str):
        super().__init__(message)


class BadImage(UserError):
    """An image the run cannot read while it trains: ``path``, and whether the file is ``missing``
    (deleted or moved) rather than there but undecodable. An undecodable one may be skipped from a
    resume on with every loader (the splits are drawn from the dataset's index, which keeps it). A
    run that already has results is kept; the runner words how to go on from these facts."""

    def __init__(self, message: str, path: str, missing: bool):
        super().__init__(message)
        self.path = path
        self.missing = missing


class RecipeError(UserError):
    """A user's recipe is wrong. ``str()`` is one line per problem: ``FILE: field.path: message``
    (or ``--set KEY=VALUE: message`` when an override is the cause)."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("\n".join(lines))

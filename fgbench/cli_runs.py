"""Sub-commands of this area are being written; register() adds them to the CLI."""


def register(sub) -> None:
    return None

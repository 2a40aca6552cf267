"""The TOML reader for every module (pure zone: stdlib, or tomli on Python 3.10).

``tomllib`` joined the standard library in Python 3.11; fgbench supports 3.10, where the same
parser is the ``tomli`` package (``tomllib`` *is* tomli, vendored). Modules write
``from fgbench.tomlread import tomllib`` and use ``tomllib.loads`` and
``tomllib.TOMLDecodeError`` as usual, so the day 3.10 is dropped this module goes and only the
imports change.
"""

from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (tests/test_tomlread.py blocks tomllib to take this path)
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["tomllib"]

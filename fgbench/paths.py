"""Where fgbench keeps its files.

Everything lives under one home directory so that a user (or a test) can move all of it with one
variable: ``FGBENCH_HOME`` if set, else the platformdirs user data directory. Datasets can be put
elsewhere with ``FGBENCH_DATA`` (big disks are often mounted apart from home), runs with
``FGBENCH_RUNS``.
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_config_dir, user_data_dir

APP = "fgbench"


def home() -> Path:
    env = os.environ.get("FGBENCH_HOME")
    return Path(env).expanduser() if env else Path(user_data_dir(APP, appauthor=False))


def datasets_dir() -> Path:
    env = os.environ.get("FGBENCH_DATA")
    return Path(env).expanduser() if env else home() / "datasets"


def runs_dir() -> Path:
    env = os.environ.get("FGBENCH_RUNS")
    return Path(env).expanduser() if env else home() / "runs"


def user_recipes_dir() -> Path:
    return home() / "recipes"


SETTINGS = "settings.toml"
_told_old_settings = False


def settings_file() -> Path:
    """User settings (TOML), e.g. per-dataset mirrors: ``[mirrors] cub200 = "https://..."``.

    With ``FGBENCH_HOME`` set, ``<home>/settings.toml`` (one variable moves everything). Otherwise
    the platformdirs user config directory (``~/.config/fgbench/settings.toml`` on Linux), where
    configuration belongs; a file only in the old place (the data directory) is still
    read, and said once per process on stderr with the command that moves it."""
    if os.environ.get("FGBENCH_HOME"):
        return home() / SETTINGS
    new = Path(user_config_dir(APP, appauthor=False)) / SETTINGS
    old = home() / SETTINGS
    if not os.path.lexists(new) and os.path.lexists(old):
        global _told_old_settings
        if not _told_old_settings:
            _told_old_settings = True
            import sys

            from fgbench.textsafe import safe

            print(f"fgbench: reading settings from {safe(old)}, their old place; settings now live in "
                  f"{safe(new)} (mv {safe(old)} {safe(new)})", file=sys.stderr)
        return old
    return new


def project_recipes_dir() -> Path | None:
    """The ``recipes/`` folder of a source checkout, when fgbench runs from one."""
    here = Path(__file__).resolve().parent.parent / "recipes"
    return here if here.is_dir() else None

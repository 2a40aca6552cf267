"""Where fgbench keeps its files.

Everything lives under one home directory so that a user (or a test) can move all of it with one
variable: ``FGBENCH_HOME`` if set, else the platformdirs user data directory. Datasets can be put
elsewhere with ``FGBENCH_DATA`` (big disks are often mounted apart from home), runs with
``FGBENCH_RUNS``.
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_data_dir

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


def settings_file() -> Path:
    """User settings (TOML), e.g. per-dataset mirrors: ``[mirrors] cub200 = "https://..."``."""
    return home() / "settings.toml"


def project_recipes_dir() -> Path | None:
    """The ``recipes/`` folder of a source checkout, when fgbench runs from one."""
    here = Path(__file__).resolve().parent.parent / "recipes"
    return here if here.is_dir() else None

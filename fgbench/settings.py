"""User settings: a small TOML file at ``paths.settings_file()`` (pure zone).

Only what cannot live in a recipe goes here, because it describes the machine, not the
experiment. Today that is the per-dataset download mirror::

    [mirrors]
    cub200 = "https://my-mirror.example/CUB_200_2011.tgz"
    oxford_pets = "https://my-mirror.example/pets/"     # a base URL: the file names are appended

The environment variable ``FGBENCH_MIRROR_<NAME>`` (upper case, e.g. ``FGBENCH_MIRROR_CUB200``)
wins over the file, so a one-off shell or a test can point one dataset at another server
without touching the user's settings.

Decisions:

* The file is read on every call, not cached: it is tiny, and a long-lived TUI then sees an edit
  without a restart.
* A missing file is an empty one. A file that does not parse, or a mirror that is not an
  ``http(s)://`` or ``file://`` URL, is a ``UserError`` naming the file and the key: a typo in a
  mirror should fail before a 2 GB download goes to the wrong place.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from fgbench import paths
from fgbench.errors import UserError

MIRROR_ENV_PREFIX = "FGBENCH_MIRROR_"
_URL_SCHEMES = ("http://", "https://", "file://")


def load_settings(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The settings file as a dict ({} when it does not exist)."""
    p = Path(path) if path is not None else paths.settings_file()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise UserError(f"{p}: cannot read settings: {err.strerror or err}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{p}: not valid TOML: {err}") from None
    return data


def mirror_env_var(name: str) -> str:
    return MIRROR_ENV_PREFIX + name.upper()


def mirror_for(name: str) -> tuple[str, str] | None:
    """The mirror URL configured for dataset ``name`` and where it came from, or None.

    Returns ``(url, origin)`` where origin is the environment variable or ``<file>: mirrors.<name>``,
    so that error messages can say which setting to fix.
    """
    var = mirror_env_var(name)
    env = os.environ.get(var, "").strip()
    if env:
        _check_url(env, var)
        return env, var
    data = load_settings()
    mirrors = data.get("mirrors", {})
    origin_file = paths.settings_file()
    if not isinstance(mirrors, dict):
        raise UserError(f"{origin_file}: mirrors: expected a table of dataset = \"URL\"")
    value = mirrors.get(name)
    if value is None:
        return None
    origin = f"{origin_file}: mirrors.{name}"
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{origin}: expected a URL string")
    _check_url(value.strip(), origin)
    return value.strip(), origin


def _check_url(url: str, origin: str) -> None:
    if not url.lower().startswith(_URL_SCHEMES):
        raise UserError(f"{origin}: {url!r} is not an http(s):// or file:// URL")

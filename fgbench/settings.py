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
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fgbench import paths
from fgbench.errors import UserError
from fgbench.textsafe import safe
from fgbench.textfile import read_text_file
from fgbench.tomlread import tomllib

MIRROR_ENV_PREFIX = "FGBENCH_MIRROR_"
_URL_SCHEMES = ("http", "https", "file")
MAX_SETTINGS_BYTES = 1 << 20


def load_settings(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The settings file as a dict ({} when it does not exist). A FIFO, a device, a directory or a
    file over 1 MB in its place is an error, never a hang (see ``fgbench.textfile``)."""
    p = Path(path) if path is not None else paths.settings_file()
    if not os.path.lexists(p):
        return {}
    text = read_text_file(p, MAX_SETTINGS_BYTES, "settings")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{safe(str(p))}: not valid TOML: {err}") from None
    except RecursionError:
        raise UserError(f"{safe(str(p))}: not valid TOML: nested too deeply") from None
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
    origin_file = safe(str(paths.settings_file()))
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
    """An ``http(s)://host/...`` or ``file:///path`` URL, or a UserError naming ``origin``."""
    shown = repr(url) if len(url) <= 200 else repr(url[:200] + "...")
    if not url.lower().startswith(tuple(f"{s}://" for s in _URL_SCHEMES)):
        raise UserError(f"{origin}: {shown} is not an http(s):// or file:// URL")
    if not url.isprintable() or any(ch.isspace() for ch in url):
        raise UserError(f"{origin}: {shown}: a URL may not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as err:
        raise UserError(f"{origin}: {shown} is not a valid URL ({err})") from None
    if parts.scheme.lower() in ("http", "https") and not parts.hostname:
        raise UserError(f"{origin}: {shown} has no host name")
    if parts.scheme.lower() == "file" and not parts.path:
        raise UserError(f"{origin}: {shown} has no path")

"""Moved to :mod:`fgbench.rundir.events` (kept as an alias while the other branches merge in)."""

from fgbench.rundir.events import *  # noqa: F401,F403
from fgbench.rundir.events import EVENT_FIELDS, METRICS_FILE, SCHEMA_VERSION, STATUSES, _finite, encode  # noqa: F401

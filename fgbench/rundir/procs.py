"""Is the process that wrote this still the same process? (pid, start time and host)

A pid alone is not an identity: after a run is killed, the kernel hands its pid to some later
process, and "pid 4242 is alive" then says nothing about the run. Every pid fgbench records is
recorded with the process's start time and the host, and :func:`alive` checks all three.

The rule for signals and for ``running``: a process fgbench did not start must never be
signalled, so a recorded pid counts as the run's process only when its recorded start time and
host match the live process. A record without a start time (forged, or written by something that
is not fgbench) or from another host cannot be checked from here: the run's process is *unknown*,
nothing is signalled, and the record does not keep the run ``running`` (the run's lock, which works
across hosts on a shared file system, is the check that decides there; see
:mod:`fgbench.rundir.lock`).

Start times come from psutil (``Process.create_time()``, seconds since the epoch; portable to
macOS and Windows), not from parsing ``/proc``. Records written before this (``"<boot id>:<clock
ticks since boot>"`` from ``/proc/<pid>/stat``) are still understood: ticks / ``SC_CLK_TCK`` plus
the boot time is exactly how psutil computes ``create_time`` on Linux.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import psutil

SAME_START_S = 0.005
"""Two start times closer than this are the same process start (both are derived from the same
clock-tick count, 10 ms apart at the usual 100 Hz; a float round-trip is the only difference)."""


def start_time(pid: int) -> float | None:
    """The process's start time (seconds since the epoch), or None when there is no such process."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, ValueError, OverflowError, TypeError):
        return None


def identity(pid: int | None = None) -> dict[str, Any]:
    """What a run directory records of a process: pid, start time, host."""
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "pid_start": start_time(pid), "host": socket.gethostname()}


def _valid_pid(pid: Any) -> bool:
    return isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 1 << 31


def pid_alive(pid: Any) -> bool:
    """The pid names a live process (a zombie, exited but not reaped, is not alive)."""
    if not _valid_pid(pid):
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.AccessDenied:
        return True  # it exists; we may not look at it
    except (psutil.Error, ValueError, OverflowError):
        return False


def _legacy_start(record: str) -> float | None:
    """A start time recorded as ``"<boot id>:<ticks>"`` (fgbench before psutil), in seconds."""
    _boot, sep, ticks = record.rpartition(":")
    if not sep or not ticks.isdigit():
        return None
    try:
        hz = os.sysconf("SC_CLK_TCK")
        return psutil.boot_time() + int(ticks) / hz
    except (ValueError, OSError, AttributeError, ZeroDivisionError):
        return None


def _recorded_start(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return _legacy_start(value)
    return None


def alive(pid: Any, pid_start: Any = None, host: Any = None) -> bool:
    """The recorded process is still running and is provably the one recorded: same pid, same
    start time, on this host. Anything that cannot be checked (no start time, another host, a
    malformed record) is not alive: see the module docstring for why."""
    if not isinstance(host, str) or host != socket.gethostname():
        return False
    recorded = _recorded_start(pid_start)
    if recorded is None or not pid_alive(pid):
        return False
    now = start_time(pid)
    return now is not None and abs(now - recorded) < SAME_START_S


def unverifiable(pid: Any, pid_start: Any = None, host: Any = None) -> bool:
    """A live pid on this host is recorded, but without a start time that proves it is the
    recorded process (or with one that does not match): the process is unknown."""
    if host is not None and host != socket.gethostname():
        return False
    return pid_alive(pid) and not alive(pid, pid_start, socket.gethostname() if host is None else host)

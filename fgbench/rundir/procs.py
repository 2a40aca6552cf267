"""Is the process that wrote this still the same process? (pid plus start time)

A pid alone is not an identity: after a run is killed, the kernel hands its pid to some later
process, and "pid 4242 is alive" then says nothing about the run. Every pid fgbench records is
recorded with the process's start time (``/proc/<pid>/stat`` field 22, clock ticks since boot,
plus the boot id so a reboot never matches), and :func:`alive` checks both. Where /proc is not
there (macOS), the start time is None and only the pid is checked.
"""

from __future__ import annotations

import os
import socket
from typing import Any


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            data = f.read()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may itself hold spaces or parentheses
    return data.rsplit(")", 1)[1].split()


def start_time(pid: int) -> str | None:
    """An identity for the process's start: "<boot id>:<start ticks>", or None when unknown."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    return f"{_boot_id() or '?'}:{fields[19]}"


def identity(pid: int | None = None) -> dict[str, Any]:
    """What a run directory records of a process: pid, start time, host."""
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "pid_start": start_time(pid), "host": socket.gethostname()}


def pid_alive(pid: Any) -> bool:
    """The pid names a live process (a zombie, exited but not reaped, is not alive)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OverflowError:
        return False
    fields = _stat_fields(pid)
    return fields is None or fields[0] != "Z"


def alive(pid: Any, pid_start: Any = None, host: Any = None) -> bool:
    """The recorded process is still running: same pid, same start time, on this host. A record
    from another host cannot be checked from here and counts as not alive (the run's lock, which
    works across hosts on a shared file system, is the check that decides; see fgbench.rundir.lock)."""
    if host is not None and host != socket.gethostname():
        return False
    if not pid_alive(pid):
        return False
    if pid_start is None:
        return True  # recorded where start times are unknown (or by an older fgbench)
    now = start_time(pid)
    return now is None or now == pid_start

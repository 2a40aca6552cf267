"""Can this test process mount a small tmpfs (a real full disk)? Root on Linux, once per session."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path


@functools.lru_cache(maxsize=1)
def tmpfs_works() -> bool:
    """A 1 MB tmpfs mounts and unmounts here; False also when ``FGBENCH_TEST_DISK=simulated`` asks
    for the fallback (writes that fail with ENOSPC) instead."""
    if sys.platform != "linux" or os.geteuid() != 0 or os.environ.get("FGBENCH_TEST_DISK") == "simulated":
        return False
    probe = Path("/tmp") / f"fgbench-tmpfs-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
                            capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", str(probe)], check=True)
        return ok
    except (OSError, subprocess.CalledProcessError):
        return False
    finally:
        probe.rmdir()

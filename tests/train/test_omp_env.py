"""fgbench's OpenMP spin count reaches libgomp (fgbench/__init__.py, BENCHMARKS.md "Under a
low-priority neighbour"): a waiting intra-op thread that spins libgomp's default 300000 times took the
training step to a tenth of its idle rate beside a niced neighbour in another session.

libgomp reads its environment once, when torch loads, and ``OMP_DISPLAY_ENV=VERBOSE`` makes it print
the values it took; each case runs a fresh interpreter the way a trainer process starts (fgbench's
modules, then torch through them) and reads libgomp's own report, not fgbench's environment.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fgbench

REPO = Path(__file__).resolve().parents[2]
LIBGOMP_DEFAULT = "300000"  # libgomp's documented default spin count (GCC manual, GOMP_SPINCOUNT)


def libgomp_view(code: str, **env_vars: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(env_vars, OMP_DISPLAY_ENV="VERBOSE", PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180,
                       cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    found = dict(re.findall(r"^\s+(\w+) = '([^']*)'", r.stdout + r.stderr, re.M))
    if "GOMP_SPINCOUNT" not in found:
        pytest.skip("torch's OpenMP runtime is not libgomp here (no GOMP_SPINCOUNT in OMP_DISPLAY_ENV)")
    return found


# What `fgbench run` (the trainer process) and `fgbench bench` import: the CLI, then the engine.
TRAINER = "from fgbench.cli import main\nimport fgbench.train.runner, fgbench.train.bench, torch\n"


def test_the_trainer_process_starts_libgomp_with_fgbench_spin_count() -> None:
    assert fgbench.OMP_SPIN_COUNT == "10000"
    assert libgomp_view(TRAINER)["GOMP_SPINCOUNT"] == "10000"


def test_torch_imported_alone_keeps_libgomp_default() -> None:
    # the control: without fgbench first, libgomp spins its default (so the case above measures fgbench)
    assert libgomp_view("import torch")["GOMP_SPINCOUNT"] == LIBGOMP_DEFAULT


def test_a_user_spin_count_wins() -> None:
    assert libgomp_view(TRAINER, GOMP_SPINCOUNT="1234")["GOMP_SPINCOUNT"] == "1234"


def test_a_user_wait_policy_is_left_to_libgomp() -> None:
    # OMP_WAIT_POLICY=ACTIVE means spin (libgomp: 30 billion times); fgbench must not shorten it
    view = libgomp_view(TRAINER, OMP_WAIT_POLICY="ACTIVE")
    assert view["OMP_WAIT_POLICY"] == "ACTIVE"
    assert view["GOMP_SPINCOUNT"] == "30000000000"  # libgomp's documented default for ACTIVE

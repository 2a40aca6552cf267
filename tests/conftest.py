"""Shared fixtures. Every test gets its own fgbench home, so nothing touches the user's files."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

FENCE = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """Behind each test's own FGBENCH_HOME (below), a second fence for the whole session: the
    user's data, config and cache directories (platformdirs reads XDG_*) point into a temporary
    folder, set outside monkeypatch, so a test that undoes its monkeypatch (and with it its
    FGBENCH_HOME) still cannot write into the real ones (one did: a cached resume built its cache
    in ~/.local/share/fgbench)."""
    base = Path(tempfile.mkdtemp(prefix="fgbench-tests-"))
    config.stash[FENCE] = base
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        os.environ[var] = str(base / var.lower())


def pytest_unconfigure(config: pytest.Config) -> None:
    if FENCE in config.stash:
        shutil.rmtree(config.stash[FENCE], ignore_errors=True)


@pytest.fixture(autouse=True)
def fgbench_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("fgbench-home")
    monkeypatch.setenv("FGBENCH_HOME", str(home))
    monkeypatch.delenv("FGBENCH_DATA", raising=False)
    monkeypatch.delenv("FGBENCH_RUNS", raising=False)
    # Keep the 2-core CI machine responsive: one intra-op thread per test process.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return home


@pytest.fixture(scope="session")
def shared_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A datasets directory shared by the whole session, for data that is costly to generate."""
    return tmp_path_factory.mktemp("shared-datasets")

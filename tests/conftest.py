"""Shared fixtures. Every test gets its own fgbench home, so nothing touches the user's files."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


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

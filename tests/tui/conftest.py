"""Fixtures of the TUI tests (helpers in tui_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui_helpers import make_dirs


@pytest.fixture
def dirs(tmp_path: Path):
    """project/ and user/ recipe folders (project has tiny.toml), runs/ and data/."""
    return make_dirs(tmp_path)

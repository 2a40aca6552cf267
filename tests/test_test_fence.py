"""The suite never writes into the user's own fgbench folders, even from a test that undoes its
monkeypatch (which drops the FGBENCH_HOME the autouse fixture gave it): conftest.py points the XDG
directories, which platformdirs reads, into a temporary folder for the whole session."""

from __future__ import annotations

from pathlib import Path

from fgbench import paths


def test_an_undone_monkeypatch_still_cannot_reach_the_users_folders(monkeypatch) -> None:
    monkeypatch.undo()  # as a careless test does: FGBENCH_HOME is gone
    real = Path.home()
    for where in (paths.home(), paths.datasets_dir(), paths.runs_dir()):
        assert not where.is_relative_to(real), where

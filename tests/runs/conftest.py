"""Fixtures of the runs tests; the run-directory factory is tests/fakes/run_factory.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest



@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    return root


@pytest.fixture
def cli(capsys):
    """Run ``fgbench ...`` in-process; returns (exit code, stdout, stderr)."""
    from fgbench.cli import main

    def call(*argv: str, stdin: str | None = None):
        if stdin is not None:
            import io

            old = sys.stdin
            sys.stdin = io.StringIO(stdin)
        try:
            code = main([str(a) for a in argv])
        finally:
            if stdin is not None:
                sys.stdin = old
        out = capsys.readouterr()
        return code, out.out, out.err

    return call

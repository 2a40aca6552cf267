"""Python 3.10 support: every TOML read goes through ``fgbench.tomlread``, which falls back to tomli
where the standard library has no ``tomllib`` (3.10). The fallback is taken in a fresh interpreter
whose ``tomllib`` import is blocked, as it would be on 3.10."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FGBENCH_HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)


def test_without_tomllib_the_reader_is_tomli_and_settings_and_recipes_still_load(tmp_path):
    (tmp_path / "settings.toml").write_text('[mirrors]\ncub200 = "https://mirror.example/c.tgz"\n')
    r = _run(f"""
        import sys
        sys.modules["tomllib"] = None  # what Python 3.10 has: importing it fails
        from fgbench.tomlread import tomllib
        print("reader", tomllib.__name__)
        from fgbench import settings
        print("mirror", settings.load_settings({str(tmp_path / "settings.toml")!r})["mirrors"]["cub200"])
        from fgbench.recipe import load_recipe
        print("recipe", load_recipe({str(REPO / "recipes" / "quickstart.toml")!r}).data.dataset)
        try:
            tomllib.loads("a = ")
        except tomllib.TOMLDecodeError as err:
            print("error", type(err).__module__)
        print("tomllib" in sys.modules and sys.modules["tomllib"] is None)
        """, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines[0] == "reader tomli"
    assert lines[1] == "mirror https://mirror.example/c.tgz"
    assert lines[2].startswith("recipe ") and lines[2] != "recipe None"
    assert lines[3] == "error tomli._parser"
    assert lines[4] == "True"  # the blocked stdlib module was never loaded behind our back


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is in the standard library from 3.11")
def test_with_tomllib_the_reader_is_the_standard_library(tmp_path):
    r = _run("from fgbench.tomlread import tomllib; print(tomllib.__name__)", tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "tomllib"


def test_no_module_imports_tomllib_except_through_the_helper():
    """An ``import tomllib`` anywhere else would break every command on Python 3.10."""
    offenders = []
    for path in sorted([*REPO.glob("fgbench/**/*.py"), *REPO.glob("tests/**/*.py"), *REPO.glob("tools/*.py"),
                        *REPO.glob("benchmarks/**/*.py")]):
        if path == REPO / "fgbench" / "tomlread.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "tomllib" for n in names):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []

"""No module outside fgbench/rundir/ spells a run file's name: they all go through the layout."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from fgbench.rundir import layout

PACKAGE = Path(__file__).resolve().parents[2] / "fgbench"
NAMES = [layout.RECIPE_FILE, layout.RUN_INFO_FILE, layout.METRICS_FILE, layout.LOG_FILE, layout.SUMMARY_FILE,
         layout.CLASSES_FILE, layout.CONFUSION_FILE, layout.LAST_CKPT, layout.BEST_CKPT, layout.LAUNCH_FILE,
         layout.CONSOLE_FILE, layout.LAUNCH_RECIPE, layout.EXIT_FILE, "last", "best"]
# "last"/"best" only as checkpoint file stems, e.g. f"{kind}.pt"
PATTERN = re.compile("|".join(rf"(?<![\w.-]){re.escape(n)}(?![\w-])" for n in NAMES[:-2]) + r"|\.pt\b")


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
        # attribute docstrings: a string statement right after an assignment
        for field in ("body", "orelse"):
            stmts = getattr(node, field, None)
            if isinstance(stmts, list):
                for a, b in zip(stmts, stmts[1:]):
                    if isinstance(a, (ast.Assign, ast.AnnAssign)) and isinstance(b, ast.Expr) \
                            and isinstance(b.value, ast.Constant):
                        ids.add(id(b.value))
    return ids


def offending(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = _docstrings(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if PATTERN.search(node.value):
                out.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.value[:60]!r}")
    return out


def test_no_module_outside_the_run_directory_package_spells_a_run_file_name() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "rundir" in path.relative_to(PACKAGE).parts:
            continue
        found += offending(path)
    assert found == []


def test_the_check_catches_a_spelled_name(tmp_path: Path) -> None:
    bad = PACKAGE / "__probe_for_test__.py"
    try:
        bad.write_text('"""Docstrings may say summary.json."""\nNAME = "summary.json"\nX = f"{1}.pt"\n')
        assert len(offending(bad)) == 2
    finally:
        bad.unlink()

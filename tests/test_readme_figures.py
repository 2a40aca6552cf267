"""The README's test count is the suite's, derived by tools/suite_figures.py from a real run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import suite_figures  # noqa: E402

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1"
 skipped="2" tests="1234" time="605.4"></testsuite></testsuites>"""


def test_the_block_is_written_from_a_junit_report(tmp_path):
    junit = tmp_path / "s.xml"
    junit.write_text(JUNIT)
    readme = tmp_path / "README.md"
    readme.write_text(f"before {suite_figures.START}old{suite_figures.END} after\n")
    assert suite_figures.main([str(junit), "--machine", "a test box", "--write", str(readme)]) == 0
    text = readme.read_text()
    # 1234 tests: 1 failed, 2 skipped -> 1231 passed; 605.4 s -> 10 min 5 s
    assert "1,234 tests (1,231 passed, 2 skipped, 1 failed) in 10 min 5 s on a test box" in text
    assert text.startswith("before ") and text.endswith(" after\n")
    assert suite_figures.quoted_count(text) == 1234


def test_the_readme_quotes_the_number_of_tests_the_suite_collects():
    quoted = suite_figures.quoted_count((REPO / "README.md").read_text(encoding="utf-8"))
    assert quoted is not None, "README.md has no suite-figures block"
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    m = re.search(r"(\d+) tests? collected", r.stdout)
    if m is None:
        pytest.fail(f"could not collect the suite:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    assert int(m.group(1)) == quoted, (
        f"README quotes {quoted} tests, the suite has {m.group(1)}: run the suite with --junitxml and "
        "tools/suite_figures.py (README, Development)")

"""The README's suite figures come from a real run's report, through tools/suite_figures.py."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import suite_figures  # noqa: E402

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1"
 skipped="2" tests="1234" time="605.4"></testsuite></testsuites>"""
LOG = "....F..s\n=== short test summary info ===\nFAILED tests/x.py::t\n1 failed, 1231 passed, 2 skipped, 19 warnings in 605.40s (0:10:05)\n"


def _write(tmp_path, report_name, report_text):
    report = tmp_path / report_name
    report.write_text(report_text)
    readme = tmp_path / "README.md"
    readme.write_text(f"before {suite_figures.START}old{suite_figures.END} after\n")
    assert suite_figures.main([str(report), "--machine", "a test box", "--commit", "abc1234",
                               "--write", str(readme)]) == 0
    return readme.read_text()


def test_the_block_is_written_from_a_junit_report_or_a_pytest_log(tmp_path):
    # 1234 tests: 1 failed, 2 skipped -> 1231 passed; 605.4 s -> 10 min 5 s
    want = "1,234 tests (1,231 passed, 2 skipped, 1 failed) in 10 min 5 s at commit abc1234, on a test box"
    for name, text in (("s.xml", JUNIT), ("s.log", LOG)):
        out = _write(tmp_path, name, text)
        assert want in out and out.startswith("before ") and out.endswith(" after\n")
        assert suite_figures.quoted_count(out) == 1234


def test_the_readme_quotes_a_derived_figure():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert suite_figures.quoted_count(text) is not None, "README.md's suite-figures block was not derived"

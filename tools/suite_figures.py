"""The README's figures for the test suite, derived from a run rather than typed.

    .venv/bin/python -m pytest -q --junitxml=/tmp/suite.xml      # the whole suite, as .ci/run runs it
    python tools/suite_figures.py /tmp/suite.xml --commit abc1234 --machine "2-core VM, idle" --write README.md
    .venv/bin/python -m pytest -q | tee /tmp/suite.log                # or from pytest's own last line
    python tools/suite_figures.py /tmp/suite.log --commit abc1234 --machine "..." --write README.md

rewrites the block between ``<!-- suite-figures -->`` and ``<!-- /suite-figures -->`` with the number
of tests, how many passed, skipped and failed, the wall time of that run, the commit it ran at and
the machine: a figure of one named run, never typed by hand.
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

START, END = "<!-- suite-figures -->", "<!-- /suite-figures -->"
BLOCK = re.compile(re.escape(START) + r"(.*?)" + re.escape(END), re.S)


SUMMARY = re.compile(r"^=*\s*(?P<parts>(?:\d+ \w+(?:, )?)+) in (?P<time>[\d.]+)s", re.M)


def figures(report: Path) -> dict[str, float]:
    """From a JUnit XML report, or from a pytest log's closing line ("1631 passed, 2 skipped in 1157.14s")."""
    text = report.read_text(encoding="utf-8", errors="replace")
    if not text.lstrip().startswith("<"):
        found = list(SUMMARY.finditer(text))
        if not found:
            raise SystemExit(f"{report}: no pytest summary line")
        m = found[-1]
        counts = {w: int(n) for n, w in re.findall(r"(\d+) (\w+)", m.group("parts"))}
        out = {"failures": counts.get("failed", 0), "errors": counts.get("error", 0) + counts.get("errors", 0),
               "skipped": counts.get("skipped", 0), "time": float(m.group("time"))}
        out["tests"] = counts.get("passed", 0) + out["failures"] + out["errors"] + out["skipped"]
        return out
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    total["time"] = sum(float(s.get("time", 0.0)) for s in suites)
    return total


def sentence(f: dict[str, float], machine: str, commit: str) -> str:
    passed = f["tests"] - f["failures"] - f["errors"] - f["skipped"]
    minutes, seconds = divmod(round(f["time"]), 60)
    return (f"{START}{int(f['tests']):,} tests ({int(passed):,} passed, {int(f['skipped'])} skipped, "
            f"{int(f['failures'] + f['errors'])} failed) in {minutes} min {seconds} s at commit {commit}, "
            f"on {machine}{END}")


def quoted_count(readme_text: str) -> int | None:
    m = BLOCK.search(readme_text)
    if not m:
        return None
    n = re.match(r"\s*([\d,]+) tests", m.group(1))
    return int(n.group(1).replace(",", "")) if n else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("report", type=Path, help="a JUnit XML report or a pytest log")
    ap.add_argument("--machine", required=True, help="the machine and its load, in words")
    ap.add_argument("--commit", required=True, help="the commit the suite ran at")
    ap.add_argument("--write", type=Path, help="README to update (else print the block)")
    args = ap.parse_args(argv)
    text = sentence(figures(args.report), args.machine, args.commit)
    if not args.write:
        print(text)
        return 0
    readme = args.write.read_text(encoding="utf-8")
    if not BLOCK.search(readme):
        print(f"{args.write}: no {START} ... {END} block", file=sys.stderr)
        return 2
    args.write.write_text(BLOCK.sub(lambda _: text, readme, count=1), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The README's figures for the test suite, derived from a run rather than typed.

    .venv/bin/python -m pytest -q --junitxml=/tmp/suite.xml      # the whole suite, as .ci/run runs it
    python tools/suite_figures.py /tmp/suite.xml --machine "2-core AMD EPYC VM, idle" --write README.md

rewrites the block between ``<!-- suite-figures -->`` and ``<!-- /suite-figures -->`` with the number
of tests, how many passed and skipped, and the wall time of that run. ``tests/test_readme_figures.py``
checks that the number quoted there is the number of tests the suite collects now, so adding tests
without re-deriving the figures fails the suite.
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

START, END = "<!-- suite-figures -->", "<!-- /suite-figures -->"
BLOCK = re.compile(re.escape(START) + r"(.*?)" + re.escape(END), re.S)


def figures(junit: Path) -> dict[str, float]:
    root = ET.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    total["time"] = sum(float(s.get("time", 0.0)) for s in suites)
    return total


def sentence(f: dict[str, float], machine: str) -> str:
    passed = f["tests"] - f["failures"] - f["errors"] - f["skipped"]
    minutes, seconds = divmod(round(f["time"]), 60)
    return (f"{START}{int(f['tests']):,} tests ({int(passed):,} passed, {int(f['skipped'])} skipped, "
            f"{int(f['failures'] + f['errors'])} failed) in {minutes} min {seconds} s on {machine}{END}")


def quoted_count(readme_text: str) -> int | None:
    m = BLOCK.search(readme_text)
    if not m:
        return None
    n = re.match(r"\s*([\d,]+) tests", m.group(1))
    return int(n.group(1).replace(",", "")) if n else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("junit", type=Path)
    ap.add_argument("--machine", required=True, help="the machine and its load, in words")
    ap.add_argument("--write", type=Path, help="README to update (else print the block)")
    args = ap.parse_args(argv)
    text = sentence(figures(args.junit), args.machine)
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

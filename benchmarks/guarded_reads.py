"""The cost of the guards on the hot path of reading a run: ``fgbench.rundir.events.parse_line``
(a line length check and a bracket count before ``json.loads``) against a bare ``json.loads`` of
the same step event, in CPU time, alternated, 7 rounds of 50,000 lines each.

    python benchmarks/guarded_reads.py
"""

from __future__ import annotations

import json
import statistics
import time

from fgbench.rundir import events

LINE = json.dumps({"v": 2, "event": "step", "time": 1.7e9, "epoch": 3, "step": 12345, "loss": 1.2345678,
                   "lr": 0.01, "images_per_s": 1234.5, "top1": 55.5}).encode()


def bare(line: bytes):
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) and isinstance(obj.get("event"), str) else None


def main(rounds: int = 7, n: int = 50_000) -> None:
    cost: dict[str, list[float]] = {"json.loads": [], "parse_line": []}
    for _ in range(rounds):
        for name, f in (("json.loads", bare), ("parse_line", events.parse_line)):
            t = time.process_time()
            for _ in range(n):
                f(LINE)
            cost[name].append((time.process_time() - t) / n * 1e6)
    for name, v in cost.items():
        print(f"{name:11s} median {statistics.median(v):.2f} us, min {min(v):.2f} us CPU per line")


if __name__ == "__main__":
    main()

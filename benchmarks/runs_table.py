"""The Runs pane's per-second tick with thousands of runs listed: whole table against live cells only.

    python benchmarks/runs_table.py [--rows 200 2000 5000] [--live 2] [--rounds 7]

While a run is live the Runs pane moves its time column every second. The baseline is what the
pane did before: give every row to :meth:`FittedTable.set_rows`, which measures every cell and
compares it with what is shown (the time cells of the live runs changed, nothing else). The new
path is :meth:`FittedTable.patch_cells` with the live runs' time cells only. Both run in one
headless Textual app on the same table, alternating round by round; each round is one tick.
Printed per table size: the median milliseconds of each and the ratio (baseline / new).

``--store N`` also times :meth:`fgbench.runmodel.RunStore.rows` on N copies of a finished
fixture run (tests/fakes/run_factory.py): the run list's rows, with every run's status read from
its directory (lock, launch and exit files), which the pane asks for on every change of any run.
No torch is imported.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.text import Text  # noqa: E402
from textual.app import App  # noqa: E402

from fgbench.formats import fmt_duration  # noqa: E402
from fgbench.tui.widgets.fitted_table import FittedTable  # noqa: E402
from fgbench.tui.widgets.runs_pane import COLUMNS  # noqa: E402


def row_cells(i: int, live: int, now: int) -> list[str | Text]:
    """A row as the pane builds it: a styled status, the started time, names, numbers, the time."""
    running = i < live
    status = Text("  running 3/12" if running else "  completed", style="bold green" if running else "")
    seconds = 3600 + now if running else 1800 + i % 3000
    return [status, f"12-01 {i % 24:02d}:{i % 60:02d}", f"recipe_{i:05d}", "98.40", "97.50", "97.60",
            "synthetic", "resnet8_cifar", fmt_duration(seconds)]


class Bench(App):
    def compose(self):
        yield FittedTable(id="t")


async def measure(rows: int, live: int, rounds: int) -> tuple[float, float]:
    columns = [(label, label) for label in COLUMNS]
    full_times: list[float] = []
    patch_times: list[float] = []
    app = Bench()
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.query_one(FittedTable)
        table.set_rows(columns, [(f"/runs/r{i}", row_cells(i, live, 0)) for i in range(rows)])
        await pilot.pause()
        now = 0
        for _ in range(rounds):
            now += 1
            t0 = time.perf_counter()
            table.set_rows(columns, [(f"/runs/r{i}", row_cells(i, live, now)) for i in range(rows)])
            full_times.append(time.perf_counter() - t0)
            await pilot.pause()
            now += 1
            t0 = time.perf_counter()
            ok = table.patch_cells([(f"/runs/r{i}", "time", row_cells(i, live, now)[-1]) for i in range(live)])
            patch_times.append(time.perf_counter() - t0)
            assert ok, "a live time cell did not fit its column"
            await pilot.pause()
    return statistics.median(full_times) * 1000, statistics.median(patch_times) * 1000


def store_rows(n: int, rounds: int) -> tuple[float, float]:
    """(seconds to load N runs, median ms of one rows() call)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from fakes.run_factory import fixture_runs

    from fgbench.runmodel import RunStore

    root = Path(tempfile.mkdtemp(prefix="fgbench-runs-"))
    try:
        src = fixture_runs(root / "src")[0]
        runs = root / "runs"
        runs.mkdir()
        for i in range(n):
            shutil.copytree(src, runs / f"20250101-{i:06d}-r")
        store = RunStore(runs)
        t0 = time.perf_counter()
        store.refresh()
        load = time.perf_counter() - t0
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            rows = store.rows()
            times.append(time.perf_counter() - t0)
        assert len(rows) == n
        return load, statistics.median(times) * 1000
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[200, 2000, 5000])
    p.add_argument("--live", type=int, default=2, help="live runs among them")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--store", type=int, nargs="*", default=[], metavar="N", help="also time RunStore.rows() on N runs")
    args = p.parse_args(argv)
    for rows in args.rows:
        full, patch = asyncio.run(measure(rows, args.live, args.rounds))
        print(f"{rows:6d} rows, {args.live} live: whole table {full:8.2f} ms   live cells {patch:6.3f} ms   "
              f"x{full / patch:,.0f}", flush=True)
    for n in args.store:
        load, rows_ms = store_rows(n, args.rounds)
        print(f"{n:6d} runs on disk: RunStore load {load:.2f} s, rows() {rows_ms:.1f} ms", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""TUI start-up: time from launching ``fgbench`` in a terminal to its first screen, against bare Textual.

    python benchmarks/tui_start.py [--rounds 5] [--size 100x30]

Each round starts a fresh interpreter on a pseudo-terminal (TERM=xterm-256color, like an SSH
session or a tmux pane) and reads what it writes until a marker of the first screen appears:

* **baseline**: a bare Textual app (one Static and a Footer): Python plus Textual's own start-up,
  the floor no Textual app can go under on this machine;
* **fgbench**: ``python -m fgbench`` (the workbench, first pane Recipes): its first paint (tabs,
  footer, the recipe list and "loading the recipe schema..."), then the moment the recipe form is
  on screen (its title line says "✓ valid").

All run against an empty temporary FGBENCH_HOME, alternating, and print best and median seconds
and the ratio fgbench / baseline. The process is then killed; nothing is left behind. The issue's
target is first paint "well under a second".
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import shutil
import signal
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BASELINE = textwrap.dedent("""
    from textual.app import App
    from textual.widgets import Footer, Static

    class Bare(App):
        def compose(self):
            yield Static("baseline-ready")
            yield Footer()

    Bare().run()
""")


def first_paint(argv: list[str], markers: list[bytes], env: dict[str, str], size: tuple[int, int],
                timeout: float = 30.0) -> list[float]:
    """Seconds from fork to the first time each of ``markers`` shows in the child's terminal output."""
    import fcntl
    import struct
    import termios

    t0 = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execvpe(argv[0], argv, env)
    cols, rows = size
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    seen = b""
    found: dict[bytes, float] = {}
    try:
        while True:
            left = timeout - (time.perf_counter() - t0)
            if left <= 0:
                raise TimeoutError(f"{markers} did not all show in {timeout} s; last output: {seen[-400:]!r}")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                raise RuntimeError(f"the process ended before showing {markers}: {seen[-400:]!r}") from None
            seen += chunk
            now = time.perf_counter() - t0
            for marker in markers:
                if marker not in found and marker in seen:
                    found[marker] = now
            if len(found) == len(markers):
                return [found[m] for m in markers]
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", default="100x30")
    args = ap.parse_args(argv)
    cols, rows = (int(v) for v in args.size.split("x"))

    home = Path(tempfile.mkdtemp(prefix="fgbench-tui-start-"))
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "", "FGBENCH_HOME": str(home),
           "PYTHONPATH": str(ROOT)}
    env.pop("TEXTUAL", None)
    base_script = home / "bare.py"
    base_script.write_text(BASELINE)
    cases = {
        "baseline": ([sys.executable, str(base_script)], [b"baseline-ready"]),
        "fgbench": ([sys.executable, "-m", "fgbench"], [b"loading the recipe schema", "✓ valid".encode()]),
    }
    labels = {"baseline": ["bare Textual, first paint"], "fgbench": ["fgbench, first paint", "fgbench, form ready"]}
    times: dict[str, list[list[float]]] = {k: [] for k in cases}
    try:
        for cmd, markers in cases.values():  # warm the file cache once, not timed
            first_paint(cmd, markers, env, (cols, rows))
        for _ in range(args.rounds):
            for name, (cmd, markers) in cases.items():
                times[name].append(first_paint(cmd, markers, env, (cols, rows)))
    finally:
        shutil.rmtree(home, ignore_errors=True)

    print(f"on a {cols}x{rows} pty, {args.rounds} rounds (seconds from fork)")
    medians = {}
    for name, rounds in times.items():
        for i, label in enumerate(labels[name]):
            ts = [r[i] for r in rounds]
            medians[label] = statistics.median(ts)
            print(f"  {label:27s} best {min(ts):.3f}  median {medians[label]:.3f}  all "
                  + " ".join(f"{t:.3f}" for t in ts))
    base = medians["bare Textual, first paint"]
    print(f"ratio fgbench first paint / bare Textual (medians): {medians['fgbench, first paint'] / base:.2f}")
    print(f"ratio fgbench form ready / bare Textual (medians): {medians['fgbench, form ready'] / base:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

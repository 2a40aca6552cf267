"""What ``fgbench run`` prints while it trains: a one-line bar on a terminal, plain lines otherwise.

Plain stdlib (no tqdm). The bar is redrawn in place with ``\\r`` at most ten times a second from
numbers the loop already has (step counters every step; loss and accuracy from the last logging
step), so it never forces a GPU sync. It writes to the real terminal and not to ``log.txt``; the
lines mode (and every epoch summary) goes through ``print`` and so into the log as well.

The bar shows only the current epoch's numbers: at an epoch's first step the previous epoch's
loss and accuracy are dropped until the first logging step of the new one. A stop request
(:meth:`Progress.notice`) erases the bar instead of leaving its last state above the message.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from fgbench.formats import fmt_clock
from fgbench.textsafe import safe_lines


class Progress:
    def __init__(self, mode: str, *, stream: TextIO | None = None, total_steps: int = 0, width: int = 24):
        stream = stream or sys.stdout
        if mode == "auto":
            mode = "bar" if getattr(stream, "isatty", lambda: False)() else "lines"
        self.mode, self.stream, self.total_steps, self.width = mode, stream, total_steps, width
        self._last_draw = 0.0
        self._drawn = False
        self._t0: float | None = None
        self._step0 = 0
        self.loss: float | None = None
        self.top1: float | None = None
        self.images_per_s: float | None = None
        self._epoch: int | None = None
        self.stopping = False
        """A stop was requested: the bar is not drawn again (the notice replaced it)."""

    def start(self, step: int) -> None:
        self._t0, self._step0 = time.monotonic(), step

    def eta(self, step: int) -> float | None:
        if self._t0 is None or step <= self._step0 or not self.total_steps:
            return None
        rate = (time.monotonic() - self._t0) / (step - self._step0)
        return rate * max(0, self.total_steps - step)

    def tick(self, *, epoch: int, total_epochs: int, batch: int, batches: int, step: int, force: bool = False) -> None:
        """Every step: redraw the bar (rate-limited)."""
        if self.mode != "bar" or self.stopping:
            return
        if epoch != self._epoch:
            # a new epoch: the last logged loss and accuracy were the previous epoch's
            self._epoch = epoch
            self.loss = self.top1 = self.images_per_s = None
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        frac = batch / batches if batches else 0.0
        filled = int(frac * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        parts = [f"epoch {epoch}/{total_epochs}", f"[{bar}] {batch}/{batches}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.top1 is not None:
            parts.append(f"acc {self.top1:.1f}%")
        if self.images_per_s:
            parts.append(f"{self.images_per_s:.0f} img/s")
        parts.append(f"ETA {fmt_clock(self.eta(step))}")
        self.stream.write("\r\x1b[2K" + "  ".join(parts))
        self.stream.flush()
        self._drawn = True

    def logged(self, *, epoch: int, total_epochs: int, batch: int, batches: int, step: int, loss: float,
               top1: float | None, lr: float, images_per_s: float | None) -> None:
        """On logging steps (values already synced)."""
        self.loss, self.top1, self.images_per_s = loss, top1, images_per_s
        self._epoch = epoch
        if self.mode == "lines":
            acc = f"  acc {top1:.1f}%" if top1 is not None else ""
            ips = f"  {images_per_s:.0f} img/s" if images_per_s else ""
            print(f"epoch {epoch}/{total_epochs}  batch {batch}/{batches}  step {step}  loss {loss:.4f}{acc}"
                  f"  lr {lr:.3g}{ips}  ETA {fmt_clock(self.eta(step))}", flush=True)

    def line(self, text: str) -> None:
        """A full line (epoch summaries, notices), printed above the bar."""
        if self.mode == "none":
            return
        if self._drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._drawn = False
        print(safe_lines(text), flush=True)  # a line may name a file of the data set

    def notice(self, text: str) -> None:
        """A message at a stop request (from the signal handler): the bar line, with the ``^C`` the
        terminal echoed into it, is erased rather than left above the message as a stale line,
        and is not drawn again. The text goes to stderr (and so into the log)."""
        self.stopping = True
        if self._drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._drawn = False
        elif self.mode == "bar":
            self.stream.write("\r\x1b[2K")  # the ^C alone on its line
            self.stream.flush()
        print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

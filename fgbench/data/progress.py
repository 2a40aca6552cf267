"""Progress reports and cancellation shared by the download engine and the image code (pure: stdlib).

Both ``fgbench.data.download`` (pure zone) and ``fgbench.data.fast`` (engine zone) report long
steps the same way, so the CLI and the TUI draw one kind of progress bar. Living here, below both,
keeps the two modules from importing each other.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Literal

#: seconds between two progress callbacks (the last one is always sent)
PROGRESS_INTERVAL_S = 0.1

Stage = Literal["download", "verify", "extract", "prepare"]


class Cancelled(Exception):
    """The caller's cancel event was set; partial files are kept so a re-run resumes."""


@dataclass
class Progress:
    stage: Stage
    done_bytes: int
    total_bytes: int | None
    #: units per second over the last few seconds
    speed: float
    eta_s: float | None
    message: str
    #: "B" for bytes; verification of images counts "images"; "" for a step without amounts
    unit: str = "B"

    @property
    def fraction(self) -> float | None:
        if not self.total_bytes:
            return None
        return min(1.0, self.done_bytes / self.total_bytes)


ProgressFn = Callable[[Progress], None]


class ProgressMeter:
    """Turns a stream of ``done`` counts into throttled Progress callbacks with speed and ETA."""

    def __init__(self, progress: ProgressFn | None, stage: Stage, message: str, total: int | None, unit: str = "B"):
        self.progress, self.stage, self.message, self.total, self.unit = progress, stage, message, total, unit
        self.samples: deque[tuple[float, int]] = deque()
        self.last_emit = 0.0

    def update(self, done: int, *, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > 5.0:
            self.samples.popleft()
        if not force and now - self.last_emit < PROGRESS_INTERVAL_S:
            return
        self.last_emit = now
        t0, d0 = self.samples[0]
        speed = (done - d0) / (now - t0) if now > t0 else 0.0
        eta = (self.total - done) / speed if self.total is not None and speed > 0 else None
        self.progress(Progress(self.stage, done, self.total, speed, eta, self.message, self.unit))

    def notice(self, text: str) -> None:
        """Say something about the step now (a retry and when it happens), unthrottled."""
        if self.progress is None:
            return
        done = self.samples[-1][1] if self.samples else 0
        self.progress(Progress(self.stage, done, self.total, 0.0, None, f"{self.message}: {text}", self.unit))


def check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled()

"""What the monitor knows about a run, built from its directory alone (no textual here).

One :class:`RunModel` per run directory turns the event stream of ``metrics.jsonl`` into plot
series, progress, a rolling log and the final result. The run list, the monitor and the compare
view all read these models; :class:`RunStore` keeps one per run directory and refreshes them
incrementally, so re-attaching after a TUI restart is just reading the same files again.

Decisions and trade-offs:

* Cost must not grow with run length. Each series is a :class:`Decimator`: it keeps between
  ``limit`` and ``2 * limit`` points by averaging neighbours into equal-size buckets and doubling
  the bucket size when full. Adding a point is O(1) amortised and a redraw reads at most a few
  hundred points however long the run. Averaging (not striding) keeps a noisy loss readable.
* Reading is incremental: a :class:`fgbench.rundir.events.Tailer` returns only the bytes appended since
  the last poll, so refreshing a finished run costs one ``stat``.
* Opening a long run must be fast (target: one million step events in under a second). A file
  larger than ``BULK_BYTES`` is not parsed line by line: the non-step events (evaluations, epochs,
  logs, start and finish) are found with one regular-expression scan in C and all parsed; step
  events are *sampled* at ``SAMPLE_STEPS`` evenly spaced byte offsets. The history of the loss,
  LR and throughput curves of such a run is therefore a sample (every k-th step event, k about
  the number of step events / 8000), which at a few hundred plotted points is not visible; every
  evaluation is exact. New events after opening are read in full. Measured in ``BENCHMARKS.md``.
* Status, recipe, summary and damage come from :class:`fgbench.rundir.reader.RunReader`, the one
  reader the CLI and sweeps use too, so a run has the same status here, in ``fgbench runs list``
  and in a TUI restarted tomorrow (the rule is in :mod:`fgbench.rundir.status`). A trainer that
  dies before it can write ``run_finished`` (an import error, the OOM killer) is failed because
  the launcher's supervisor wrote its exit in the run directory, not because this TUI saw it.
* Smoothing is not stored: :func:`smooth` (a debiased EMA with its time constant in steps) is
  applied when drawing, to the decimated raw series, so it can be changed or turned off at once
  and the raw series is always there to draw beside it. For a run longer than the decimator's
  buckets it averages bucket means, which is what the plot shows anyway.
* Thread safety: a worker thread calls :meth:`RunModel.update`; the UI thread calls
  :meth:`RunModel.snapshot`. Both hold the model's lock, and a snapshot is plain data.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fgbench import rundir
from fgbench.formats import fmt_duration, fmt_fixed, fmt_rate
from fgbench.rundir import events
from fgbench.rundir.events import Series, parse_line
from fgbench.rundir import files
from fgbench.rundir.events import TIMING_FIELDS
from fgbench.rundir.reader import RunReader
from fgbench.rundir.summary import Summary, SummaryError
from fgbench.textsafe import safe, safe_lines

BULK_BYTES = 2_000_000
SAMPLE_STEPS = 8000
SMOOTH_STEPS = 50
"""The default time constant (in steps) of the smoothed step curves in the monitor and Compare."""

_NON_STEP = re.compile(rb'"event":\s?"(?!step")')


class Decimator:
    """A stream of (step, epoch, time, value) points kept to at most ``2 * limit`` bucket means."""

    __slots__ = ("limit", "cap", "done", "acc", "count", "last")

    def __init__(self, limit: int = 200):
        self.limit = limit
        self.cap = 1
        self.done: list[list[float]] = []
        self.acc: list[float] | None = None
        self.count = 0
        self.last: float | None = None

    def add(self, step: float, epoch: float, value: float, time_s: float = 0.0) -> None:
        self.count += 1
        self.last = value
        acc = self.acc
        if acc is None:
            acc = self.acc = [step, epoch, value, 1, time_s]
        else:
            acc[0] += step
            acc[1] += epoch
            acc[2] += value
            acc[3] += 1
            acc[4] += time_s
        if acc[3] >= self.cap:
            self.done.append(acc)
            self.acc = None
            if len(self.done) >= 2 * self.limit:
                d = self.done
                self.done = [[a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3], a[4] + b[4]]
                             for a, b in zip(d[0::2], d[1::2])]
                self.cap *= 2

    def _buckets(self) -> list[list[float]]:
        return self.done + ([self.acc] if self.acc is not None else [])

    def points(self) -> tuple[list[float], list[float], list[float]]:
        buckets = self._buckets()
        steps = [b[0] / b[3] for b in buckets]
        epochs = [b[1] / b[3] for b in buckets]
        values = [b[2] / b[3] for b in buckets]
        return steps, epochs, values

    def times(self) -> list[float]:
        """Seconds since the run's first event, per point (bucket means, like :meth:`points`)."""
        return [b[4] / b[3] for b in self._buckets()]

    def __len__(self) -> int:
        return len(self.done) + (self.acc is not None)


def smooth(steps: list[float], values: list[float], span_steps: float | None) -> list[float]:
    """The debiased exponential moving average of a step series, with its time constant measured
    in optimizer steps (a point's weight falls by 1/e every ``span_steps`` steps).

    Each point stands for the steps since the previous one (a logged loss is the mean over the
    steps since the last step event), so it gets the weight ``1 - exp(-gap / span)``; dividing
    by the sum of the weights so far removes the pull towards zero of a plain EMA started at 0
    (TensorBoard's debiasing), without giving the first value the extra weight of an EMA started
    at it. The result does not depend on ``runtime.log_every_steps``. ``span_steps`` None or 0:
    no smoothing (the values themselves)."""
    if not span_steps or span_steps <= 0 or not values:
        return list(values)
    out = []
    num = den = 0.0
    prev = 0.0
    for i, (s, v) in enumerate(zip(steps, values)):
        gap = s - prev if i or s > 0 else 1.0
        if gap <= 0:  # a repeated or out-of-order step (a resumed run): one step's worth
            gap = 1.0
        prev = s
        d = math.exp(-gap / span_steps)
        num = d * num + (1.0 - d) * v
        den = d * den + (1.0 - d)
        out.append(num / den)
    return out


#: the plot series of a run (names as in the events: ``ema_val_top1`` is an EMA evaluation).
#: The names are the event schema's one table (:data:`fgbench.rundir.events.SERIES`): step series
#: (loss, lr, images_per_s, grad_norm; x = the step of each step event), epoch series
#: (train_loss, train_top1, epoch_time) and evaluations (``[ema_]{val,test}_{top1,topk,loss}``).
SERIES = tuple(events.SERIES)
SERIES_OF_EVENT: dict[Any, list[Series]] = {}
for _s in events.SERIES.values():
    SERIES_OF_EVENT.setdefault(_s.event, []).append(_s)
#: series that a moving average may smooth (noisy per-step values; never an evaluation or the LR)
SMOOTHABLE = ("loss", "images_per_s", "grad_norm")


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class Snapshot:
    """Plain data for drawing one run: safe to hand from the worker to the UI."""

    path: Path
    run_id: str
    name: str
    status: str
    dataset: str
    arch: str
    series: dict[str, tuple[list[float], list[float], list[float]]]
    """name -> (steps, epochs, values); see SERIES"""
    times: dict[str, list[float]]
    """name -> seconds since the run's first event, per point of ``series[name]``"""
    epoch: int
    total_epochs: int | None
    step: int
    total_steps: int | None
    stage: str
    eta_s: float | None
    images_per_s: float | None
    loss: float | None
    lr: float | None
    logs: list[str]
    error: str | None
    traceback: str | None
    console_tail: list[str]
    summary: Summary | None
    """summary.json, or the one ``run_finished`` carried (None before the first epoch ends)"""
    best: dict[str, float]
    duration_s: float | None
    events: int
    skipped: int
    exit_code: int | None
    sampled: bool
    last_checkpoint: dict[str, Any] | None = None
    system: dict[str, float] | None = None
    """the latest health sample (a ``system`` event's numbers), None before the first"""
    timing: dict[str, float] = field(default_factory=dict)
    """the latest step event's ``data_wait_frac`` and ``<phase>_ms``"""

    @property
    def throughput(self) -> tuple[float | None, bool]:
        """Images/s as the monitor shows it, and whether it is the live figure. One source for the
        header and the result panel: the summary's (training images over training time of the
        epochs done: the figure of ``summary.json`` and ``fgbench runs list``). Before the first
        epoch ends there is no summary figure: a running run's is the latest step window's rate
        (live: shown as "now"), an ended run has none."""
        if self.summary is not None and self.summary.images_per_s is not None:
            return self.summary.images_per_s, False
        if self.status != "running":
            return None, False
        return self.images_per_s, self.images_per_s is not None

    @property
    def fraction(self) -> float | None:
        if self.total_steps:
            return min(1.0, self.step / self.total_steps)
        if self.total_epochs:
            return min(1.0, self.epoch / self.total_epochs)
        return None


class RunModel:
    """Everything the TUI shows about one run, kept up to date by :meth:`update`."""

    def __init__(self, path: str | os.PathLike[str], limit: int = 200):
        self.path = Path(path)
        self.lock = threading.RLock()
        self.limit = limit
        self.reader = RunReader(self.path)
        self.tailer = self.reader.tailer
        self.series = {name: Decimator(limit) for name in SERIES}
        self.loaded = False
        self.changes = 0
        """How many reads found something new (by whoever read: the monitor's polls or the run
        store's refresh), so that the store can tell its listeners about changes others read."""
        self.sampled = False
        self.events = 0
        self.run_id = self.path.name
        self.finished: dict[str, Any] | None = None
        self.epoch = 0
        self.total_epochs: int | None = None
        self.step = 0
        self.total_steps: int | None = None
        self.steps_per_epoch: int | None = None
        self.stage = ""
        self.first_time: float | None = None
        self.last_time: float | None = None
        self.images_per_s: float | None = None
        self.loss: float | None = None
        self.lr: float | None = None
        self.logs: deque[str] = deque(maxlen=200)
        self.best: dict[str, float] = {}
        self._epoch_end: dict[int, int] = {}
        self._eval_seen: set[str] = set()
        self._rate: deque[tuple[float, int]] = deque(maxlen=30)
        self.last_checkpoint: dict[str, Any] | None = None
        """Epoch and step of the latest ``last.pt`` (what a resume continues from)."""
        self.system: dict[str, float] | None = None
        self.timing: dict[str, float] = {}

    # the run directory's files, as the one reader reads them
    recipe = property(lambda self: self.reader.recipe)
    info = property(lambda self: self.reader.info)
    summary = property(lambda self: self.reader.summary)
    pid = property(lambda self: self.reader.pid)

    # ------------------------------------------------------------------ reading

    def update(self) -> bool:
        """Read what is new in the run directory. Returns whether anything changed."""
        with self.lock:
            if not self.loaded:
                self.loaded = True
                changed, events = self.reader.update(self._initial_events())
            else:
                changed, events = self.reader.update()
            for ev in events:
                self._feed(ev)
            if changed:
                self.changes += 1
            return changed

    def _initial_events(self) -> list[dict[str, Any]]:
        path = self.tailer.path
        try:
            size = path.stat().st_size
        except OSError:
            return []
        if size <= BULK_BYTES:
            return self.tailer.poll()
        try:
            events, end = scan_metrics(path, SAMPLE_STEPS)
        except files.RunFileError:
            return self.tailer.poll()  # the tailer refuses it the same way and says why
        self.sampled = True
        self.tailer.offset = end
        return events

    # ------------------------------------------------------------------ events

    def feed(self, events: list[dict[str, Any]]) -> None:
        with self.lock:
            self.loaded = True
            self.changes += 1
            for ev in events:
                self.reader.note(ev)
                self._feed(ev)

    def _log(self, text: str) -> None:
        self.logs.append(text)

    def _feed(self, ev: dict[str, Any]) -> None:
        self.events += 1
        kind = ev.get("event")
        t = _num(ev.get("time"))
        if t is not None:
            self.first_time = t if self.first_time is None else self.first_time
            self.last_time = t
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            try:
                handler(ev, t)
            except (TypeError, ValueError, KeyError, AttributeError):
                # A well-formed line with odd field types: skip it like a malformed one.
                self.tailer.skipped += 1

    def _reach(self, step: Any, epoch: Any = None) -> None:
        """The run got to optimizer ``step`` (in ``epoch``, 1-based, the one in progress). Every
        event that carries a step moves the position the header shows: a step event, and also an
        evaluation (a long one comes after the epoch's last step event and before its epoch
        event) and a checkpoint (a stop's comes between step events), so the header never keeps
        the last step event's step. A resumed run starts again from its checkpoint
        (:meth:`_on_run_started`); within one session steps only grow."""
        if isinstance(step, int) and not isinstance(step, bool):
            self.step = max(self.step, step)
        if isinstance(epoch, int) and not isinstance(epoch, bool):
            self.epoch = max(self.epoch, epoch)

    def _on_run_started(self, ev: dict[str, Any], t: float | None) -> None:
        self.finished = None
        resumed = ev.get("resumed")
        if isinstance(resumed, dict) and _int(resumed.get("step")) is not None:
            # the events a killed run wrote after its checkpoint are trained again: the position
            # goes back to the checkpoint's
            self.epoch, self.step = self._checkpoint_position(_int(resumed.get("epoch")) or 0, int(resumed["step"]))
        for key in ("total_epochs", "total_steps", "steps_per_epoch"):
            if isinstance(ev.get(key), int):
                setattr(self, key, ev[key])
        parts = [f"{'resumed' if ev.get('resumed') else 'started'} on {ev.get('device', '?')}"]
        if ev.get("train_images") is not None:
            parts.append(f"{ev['train_images']} train / {ev.get('val_images', 0)} val / "
                         f"{ev.get('test_images', '?')} test images")
        self._log(", ".join(parts))

    def _on_stage_started(self, ev: dict[str, Any], t: float | None) -> None:
        self.stage = str(ev.get("name", ""))
        if isinstance(ev.get("steps_per_epoch"), int):
            self.steps_per_epoch = ev["steps_per_epoch"]
        extra = f" at {ev['train_size']}px" if ev.get("train_size") else ""
        n = ev.get("epochs")
        self._log(f"stage {ev.get('stage')}: {self.stage}, {n} epoch{'' if n == 1 else 's'}{extra}")

    def _epoch_x(self, epoch: int, step: int) -> float:
        start = self._epoch_end.get(epoch - 1, 0 if epoch == 1 else None)
        spe = self.steps_per_epoch
        if start is None or not spe:
            return float(epoch) - 0.5
        return (epoch - 1) + min(1.0, max(0.0, (step - start) / spe))

    def _on_step(self, ev: dict[str, Any], t: float | None) -> None:
        step = int(ev["step"])
        epoch = int(ev["epoch"])
        self._reach(step, epoch)
        x = self._epoch_x(epoch, step)
        w = self._wall(t)
        self._add_points(ev, step, x, w)
        for latest in ("loss", "lr", "images_per_s"):  # the latest values, shown beside the plots
            v = _num(ev.get(latest))
            if v is not None:
                setattr(self, latest, v)
        timing = {k: n for k in TIMING_FIELDS if (n := _num(ev.get(k))) is not None}
        if timing:
            self.timing = timing
        if t is not None:
            self._rate.append((t, step))

    def _wall(self, t: float | None) -> float:
        """Seconds since the run's first event (the wall-time x of the plots)."""
        if t is None:
            t = self.last_time
        return 0.0 if t is None or self.first_time is None else t - self.first_time

    def _on_eval(self, ev: dict[str, Any], t: float | None) -> None:
        split, model = ev.get("split"), ev.get("model")
        top1 = _num(ev.get("top1"))
        if top1 is None or split not in ("val", "test", "train"):
            return
        prefix = f"{'ema_' if model == 'ema' else ''}{split}"
        name = f"{prefix}_top1"
        self._eval_seen.add(name)
        step, epoch, w = int(ev["step"]), float(ev["epoch"]), self._wall(t)
        self._reach(step, _int(ev["epoch"]))
        self._add_points(ev, step, epoch, w)
        self.best[name] = max(self.best.get(name, -1.0), top1)

    def _on_epoch(self, ev: dict[str, Any], t: float | None) -> None:
        epoch, step = int(ev["epoch"]), int(ev["step"])
        if epoch > 1 and (epoch - 1) in self._epoch_end and not self.steps_per_epoch:
            self.steps_per_epoch = max(1, step - self._epoch_end[epoch - 1])
        self._epoch_end[epoch] = step
        self._reach(step, epoch)
        w = self._wall(t)
        self._add_points(ev, step, float(epoch), w)
        top1 = _num(ev.get("train_top1"))
        parts = [f"epoch {epoch}"]
        loss = _num(ev.get("train_loss"))
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if top1 is not None:
            parts.append(f"train {top1:.2f}%")
        for key, label in (("val_top1", "val"), ("test_top1", "test"), ("ema_val_top1", "ema val"),
                           ("ema_test_top1", "ema test")):
            v = _num(ev.get(key))
            if v is not None:
                parts.append(f"{label} {v:.2f}%")
                if key not in self._eval_seen:
                    # a trainer that reports evaluations only inside epoch events
                    self.series[key].add(step, float(epoch), v, w)
                    self.best[key] = max(self.best.get(key, -1.0), v)
        et = _num(ev.get("epoch_time"))
        if et is not None:
            parts.append(f"{et:.1f}s")
        self._log(", ".join(parts))

    def _on_system(self, ev: dict[str, Any], t: float | None) -> None:
        sample = {k: n for k, v in ev.items() if k not in ("v", "event", "time", "epoch", "step")
                  and (n := _num(v)) is not None}
        self.system = sample
        step = _int(ev.get("step"))
        if step is None:
            return
        self._reach(step, _int(ev.get("epoch")))  # a health sample's epoch is the one in progress
        epoch = _int(ev.get("epoch")) or max(1, self.epoch)
        self._add_points(ev, step, self._epoch_x(epoch, step), self._wall(t))

    def _add_points(self, ev: dict[str, Any], step: int, x: float, w: float) -> None:
        """The points ``ev`` gives the series of the event schema's one table
        (:data:`fgbench.rundir.events.SERIES`): a series added there is plotted here."""
        for series in SERIES_OF_EVENT.get(ev.get("event"), ()):
            v = series.value(ev)
            if v is not None:
                self.series[series.name].add(step, x, v, w)

    def _on_checkpoint(self, ev: dict[str, Any], t: float | None) -> None:
        # a checkpoint's epoch counts the epochs done, not the one in progress: only its step moves
        self._reach(ev.get("step"))
        if ev.get("kind") == "last":
            self.last_checkpoint = {"epoch": ev.get("epoch"), "step": ev.get("step")}
        if ev.get("kind") == "last":
            # written at a stop too, in the middle of an epoch: its "epoch" counts the epochs done
            # (0 while the header shows epoch 1/4), so the step leads
            done = ev.get("epoch")
            self._log(f"checkpoint last at step {ev.get('step')} ({done} epoch{'' if done == 1 else 's'} done)")
            return
        which = f" ({'EMA' if ev.get('model') == 'ema' else 'raw'} model)" if ev.get("kind") == "best" else ""
        self._log(f"checkpoint {ev.get('kind')}{which} at epoch {ev.get('epoch')}, step {ev.get('step')}")

    def _on_log(self, ev: dict[str, Any], t: float | None) -> None:
        level = str(ev.get("level", "info"))
        msg = str(ev.get("message", ""))
        self._log(msg if level.lower() == "info" else f"{level.upper()}: {msg}")

    def _on_final_eval(self, ev: dict[str, Any], t: float | None) -> None:
        self._log(f"final {ev.get('model')} test at {ev.get('test_size')}px: {fmt_fixed(ev.get('top1'))}%")

    def _on_run_finished(self, ev: dict[str, Any], t: float | None) -> None:
        self.finished = ev
        status = ev.get("status", "failed")
        line = f"run {status}"
        if ev.get("error"):
            line += f": {ev['error']}"
        self._log(line)

    # ------------------------------------------------------------------ derived

    @property
    def status(self) -> str:
        return self.reader.status().status

    @property
    def error(self) -> str | None:
        return self.reader.status().error

    @property
    def exit_code(self) -> int | None:
        return self.reader.status().exit_code

    @property
    def damaged(self) -> str | None:
        return self.reader.damaged

    def eta_s(self) -> float | None:
        total = self.total_steps
        if not total and self.total_epochs and self.steps_per_epoch:
            total = self.total_epochs * self.steps_per_epoch
        if not total or len(self._rate) < 2:
            return None
        (t0, s0), (t1, s1) = self._rate[0], self._rate[-1]
        if t1 <= t0 or s1 <= s0:
            return None
        return max(0.0, (total - self.step) * (t1 - t0) / (s1 - s0))

    def _position(self, status: str) -> tuple[int, int]:
        """The epoch (1-based, the one in progress) and step the header shows: where the run got
        to, or for a stopped run where its last checkpoint holds it (what ``c`` resumes from, and
        the step the stopped line names), so that the epoch beside it is that checkpoint's. A
        checkpoint counts the epochs done: one written at a stop in epoch 1 holds 0 epochs done
        and is in epoch 1; one written as epoch 2 ended is epoch 2."""
        ck = self.last_checkpoint
        if status != "interrupted" or not ck or _int(ck.get("step")) is None:
            return self.epoch, self.step
        return self._checkpoint_position(_int(ck.get("epoch")) or 0, int(ck["step"]))

    def _checkpoint_position(self, done: int, step: int) -> tuple[int, int]:
        """The (epoch in progress, step) of a checkpoint that holds ``done`` epochs at ``step``."""
        return (done if done and self._epoch_end.get(done) == step else done + 1), step

    def console_tail(self, lines: int = 12) -> list[str]:
        """The last lines of what the trainer printed: console.txt (ours) or log.txt (its own)."""
        for path in (self.path / rundir.CONSOLE_FILE, self.path / rundir.LOG_FILE):
            tail = tail_lines(path, lines)
            if tail:
                return tail
        return []

    def snapshot(self, *, console_if_failed: bool = False) -> Snapshot:
        """The run as one consistent picture. The status is read once, here: it is worked out
        from files and processes that change under us, and a caller that read it apart from the
        snapshot once drew a run as failed without the output it died with (a full suite caught
        the trainer's exit between the two reads; nothing redrew the finished run after)."""
        with self.lock:
            ended = self.reader.status()
            status = ended.status
            summary = self.summary or _finished_summary(self.finished)
            known = summary or Summary()
            duration = known.duration_s
            if duration is None and self.first_time is not None and self.last_time is not None:
                duration = self.last_time - self.first_time
            epoch, step = self._position(status)
            return Snapshot(
                path=self.path,
                run_id=safe(self.run_id),
                name=_shown_name(self),
                status=status,
                dataset=_recipe_field(self, "data", "dataset"),
                arch=_recipe_field(self, "model", "arch"),
                series={name: dec.points() for name, dec in self.series.items()},
                times={name: dec.times() for name, dec in self.series.items()},
                epoch=epoch,
                total_epochs=self.total_epochs or known.total_epochs,
                step=step,
                total_steps=self.total_steps,
                stage=safe(self.stage),
                eta_s=self.eta_s() if status == "running" else None,
                images_per_s=self.images_per_s,
                loss=self.loss,
                lr=self.lr,
                # what the trainer (or a forged file) wrote, made safe to display
                logs=[safe(line) for line in list(self.logs)[-50:]],
                error=safe(ended.error) if ended.error else None,
                traceback=_safe_traceback((self.finished or {}).get("traceback")),
                console_tail=[safe(line) for line in self.console_tail()] if console_if_failed and status == "failed"
                else [],
                summary=summary,
                best=dict(self.best),
                duration_s=duration,
                events=self.events,
                skipped=self.tailer.skipped,
                exit_code=ended.exit_code,
                sampled=self.sampled,
                last_checkpoint=dict(self.last_checkpoint) if self.last_checkpoint else None,
                system=dict(self.system) if self.system is not None else None,
                timing=dict(self.timing),
            )


def _safe_traceback(tb: Any) -> str | None:
    return safe_lines(str(tb)) if tb else None


def _shown_name(m: "RunModel") -> str:
    """The run's recipe name, made safe to display (it comes from the run's files)."""
    return safe(m.recipe.get("name") or (m.summary.name if m.summary else None) or m.run_id)


def _recipe_field(m: "RunModel", section: str, key: str) -> str:
    """``recipe[section][key]`` (else the summary's ``key``), made safe to display; a section of
    the wrong type (a forged recipe.toml) reads as missing."""
    table = m.recipe.get(section)
    value = table.get(key) if isinstance(table, dict) else None
    if value is None and m.summary is not None:
        value = getattr(m.summary, key, None)
    return safe(value if value is not None else "?")


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def tail_lines(path: Path, n: int, max_bytes: int = 64_000) -> list[str]:
    data = files.tail_bytes(path, max_bytes)  # never blocks on a FIFO, never reads a device
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    # progress bars redraw with \r: keep what a terminal would show last
    lines = [ln.rsplit("\r", 1)[-1] for ln in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines[-n:]


def scan_metrics(path: Path, samples: int = SAMPLE_STEPS) -> tuple[list[dict[str, Any]], int]:
    """Events of a large metrics file: every non-step event, and step events sampled at evenly
    spaced byte offsets. Returns the events in file order and the offset after the last complete
    line (where a Tailer continues)."""
    data = files.read_bytes(path) or b""  # RunFileError: the caller's reader reports the damage
    end = data.rfind(b"\n") + 1
    data = data[:end]
    found: dict[int, bytes] = {}
    for m in _NON_STEP.finditer(data):
        a = data.rfind(b"\n", 0, m.start()) + 1
        if a in found:
            continue
        b = data.find(b"\n", m.end())
        found[a] = data[a:b if b >= 0 else end]
    n = len(data)
    for i in range(samples):
        a = data.find(b"\n", n * i // samples) + 1 if i else 0
        if a <= 0 or a >= n or a in found:
            continue
        b = data.find(b"\n", a)
        found[a] = data[a:b if b >= 0 else end]
    events = []
    for off in sorted(found):
        ev = parse_line(found[off])
        if ev is not None:
            events.append(ev)
    return events, end


# ------------------------------------------------------------------------------ store


@dataclass
class RunRow:
    """One line of the run list."""

    path: Path
    run_id: str
    name: str
    status: str
    dataset: str
    arch: str
    best_val: float | None
    """raw model, at its best epoch (see :meth:`fgbench.rundir.summary.Summary.headline`)"""
    best_test: float | None
    ema_val: float | None
    """EMA model, at its own best epoch; None without EMA"""
    ema_test: float | None
    duration_s: float | None
    epoch: int
    total_epochs: int | None
    error: str | None
    last_event_time: float | None = None
    """Time of the run's latest event: a live run's clock keeps moving from there."""
    scheduler: str | None = None
    """The SLURM state of the run's job, for a point of a SLURM sweep (``fgbench.sweeps.slurm``)."""

    def live_duration_s(self, now: float) -> float | None:
        """The time column: for a running run, the duration so far extended to ``now``."""
        if self.status != "running" or self.last_event_time is None:
            return self.duration_s
        return (self.duration_s or 0.0) + max(0.0, now - self.last_event_time)

    def matches(self, text: str) -> bool:
        text = text.strip().lower()
        if not text:
            return True
        hay = " ".join([self.run_id, self.name, self.status, self.dataset, self.arch]).lower()
        return all(word in hay for word in text.split())


def _finished_summary(finished: dict[str, Any] | None) -> Summary | None:
    """The summary a ``run_finished`` event carried (the file may not be there yet), checked."""
    data = (finished or {}).get("summary")
    if not data:
        return None
    try:
        return Summary.from_json(data)
    except SummaryError:
        return None


SCHEDULER_EVERY_S = 10.0
"""How often the Runs pane asks SLURM about the jobs of SLURM sweeps."""


class RunStore:
    """The run models of a runs directory, refreshed incrementally (call :meth:`refresh` from a
    worker thread)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.models: dict[Path, RunModel] = {}
        self.lock = threading.Lock()
        self.loaded_once = False
        """True after the first full refresh: until then the list would be partial (and its order
        and cursor would depend on which run happened to load first)."""
        self.scheduler: dict[str, str] = {}
        self._scheduler_at = 0.0
        self.root_error: str | None = None
        """Why the runs directory could not be listed at the last refresh, or None."""
        self._reported: dict[Path, tuple[int, str]] = {}
        """Per run, (its model's ``changes``, its status) when :meth:`refresh` last reported it."""

    def model(self, path: str | os.PathLike[str]) -> RunModel:
        p = Path(path)
        with self.lock:
            m = self.models.get(p)
            if m is None:
                m = self.models[p] = RunModel(p)
            return m

    def refresh(self, *, deadline_s: float | None = None) -> set[Path]:
        """Read new events of every run; returns the runs that changed."""
        changed: set[Path] = set()
        if not self.root.is_dir():
            self.loaded_once = True
            return changed
        seen = set()
        start = time.monotonic()
        try:
            entries = sorted(self.root.iterdir())
        except OSError as err:  # unreadable now (permissions, a loop): the list says so, the app lives on
            self.root_error = f"{safe(str(self.root))}: cannot read the runs directory: {safe(err.strerror or str(err))}"
            self.loaded_once = True
            return changed
        self.root_error = None
        for p in entries:
            if p.name.startswith(".") or not p.is_dir():
                continue
            if not rundir.is_run_dir(p):
                continue
            seen.add(p)
            m = self.model(p)
            m.update()
            # A run is reported when it is new to the list, when its status moved, or when it
            # has news, whoever read them: the monitor polls the run it shows through the same
            # model, and a quiet run it had read first was once never listed.
            now = (m.changes, m.status)
            if self._reported.get(p) != now:
                self._reported[p] = now
                changed.add(p)
            if deadline_s is not None and time.monotonic() - start > deadline_s:
                break
        with self.lock:
            for gone in [p for p in self.models if p not in seen and not p.exists()]:
                del self.models[gone]
                self._reported.pop(gone, None)
                changed.add(gone)
            if deadline_s is None or time.monotonic() - start <= deadline_s:
                self.loaded_once = True
        if time.monotonic() - self._scheduler_at > SCHEDULER_EVERY_S:
            self._scheduler_at = time.monotonic()
            try:
                from fgbench.sweeps.backend import scheduler_states

                states = scheduler_states(self.root)
            except Exception:  # noqa: BLE001 - the scheduler is extra information, never an error here
                states = {}
            if states != self.scheduler:
                changed |= {Path(p) for p in set(states) | set(self.scheduler) if states.get(p) != self.scheduler.get(p)}
                self.scheduler = states
        return changed

    def rows(self) -> list[RunRow]:
        with self.lock:
            if not self.loaded_once:
                return []
            # the order of `fgbench runs list` (one function orders both)
            models = [self.models[p] for p in rundir.newest_first(self.models)]
        out = []
        for m in models:
            with m.lock:
                if not m.loaded:
                    continue
                known = m.summary or Summary()
                nums = known.headline()
                duration = known.duration_s
                if duration is None and m.first_time is not None and m.last_time is not None:
                    duration = m.last_time - m.first_time
                error = m.damaged or m.error
                out.append(RunRow(
                    path=m.path, run_id=safe(m.run_id),
                    name=_shown_name(m), status="damaged" if m.damaged else m.status,
                    dataset=_recipe_field(m, "data", "dataset"), arch=_recipe_field(m, "model", "arch"),
                    best_val=nums["val_top1"], best_test=nums["test_top1_best"], ema_val=nums["ema_val_top1"],
                    ema_test=nums["ema_test_top1_best"], duration_s=duration,
                    epoch=m.epoch, total_epochs=m.total_epochs, error=safe(error) if error else None,
                    last_event_time=m.last_time,
                    scheduler=self.scheduler.get(str(m.path.resolve())),
                ))
        return out


def summary_numbers(snap: Snapshot) -> list[tuple[str, str]]:
    """Label/value pairs of a finished (or running) run's result, for the monitor and compare."""
    s = snap.summary
    out: list[tuple[str, str]] = []
    if s is None:
        return out
    k_label = f"top-{s.top_k}" if s.top_k is not None else "top-k"
    for model in ("raw", "ema"):
        b = s.best.get(model)
        if b is not None:
            out.append((f"best {model}", f"epoch {b.epoch if b.epoch is not None else '-'}: val {fmt_fixed(b.val_top1)} "
                        f"test {fmt_fixed(b.test_top1)} ({k_label} {fmt_fixed(b.test_topk)})"))
    if s.last is not None:
        for model in ("raw", "ema"):
            v = s.last.of(model)
            if v is not None:
                out.append((f"last {model}", f"epoch {s.last.epoch if s.last.epoch is not None else '-'}: "
                            f"val {fmt_fixed(v.val_top1)} test {fmt_fixed(v.test_top1)}"))
    for size, by_model in s.final_test_sizes.items():
        out.append((f"test @{size}", f"raw {fmt_fixed(by_model.get('raw'))} ema {fmt_fixed(by_model.get('ema'))}"))
    rate, live = snap.throughput  # the header's figure too
    if rate is not None and not live:
        out.append(("throughput", f"{fmt_rate(rate)} images/s"))
    if s.peak_mem_mb is not None:
        out.append(("peak memory", f"{fmt_fixed(s.peak_mem_mb, 0)} MB"))
    if s.duration_s is not None:
        out.append(("duration", fmt_duration(s.duration_s)))
    if s.skipped_images:
        out.append(("skipped images", str(s.skipped_images)))
    return out


# ------------------------------------------------------------------------------ the system panel

INPUT_BOUND = 0.25
"""a step that waits for data this share of its time or more is input-bound (the monitor says so)"""
GPU_IDLE = 50.0
"""a GPU busy less than this percent of the time sits idle (the monitor says so)"""


def system_rows(snap: Snapshot) -> list[tuple[str, str]]:
    """The system panel's rows: the step's data wait and parts, then the latest health sample."""
    rows: list[tuple[str, str]] = []
    t, s = snap.timing, snap.system or {}
    if "data_wait_frac" in t:
        rows.append(("data wait", f"{100 * t['data_wait_frac']:.0f} %"))
    for label, first, second in (("fwd/bwd", "forward", "backward"), ("opt/ema", "optimizer", "ema")):
        a, b = t.get(f"{first}_ms"), t.get(f"{second}_ms")
        if a is not None or b is not None:
            rows.append((label, f"{_ms(a)} / {_ms(b)} ms"))
    if "cpu_percent" in s:
        rows.append(("trainer", f"{s['cpu_percent']:.0f} % CPU {_mb(s.get('rss_mb'))}".rstrip()))
    if "workers" in s:
        rows.append((f"{s['workers']:.0f} workers", f"{s.get('workers_cpu_percent', 0):.0f} % CPU "
                                                   f"{_mb(s.get('workers_rss_mb'))}".rstrip()))
    if "machine_cpu_percent" in s:
        rows.append(("machine", f"{s['machine_cpu_percent']:.0f} % CPU {s.get('machine_mem_percent', 0):.0f} % mem"))
    if "gpu_util" in s:
        rows.append(("GPU", f"{s['gpu_util']:.0f} %  {_mb(s.get('gpu_mem_mb'))}"))
        extra = [f"{s['gpu_power_w']:.0f} W" if "gpu_power_w" in s else "",
                 f"{s['gpu_temp_c']:.0f} °C" if "gpu_temp_c" in s else ""]
        if any(extra):
            rows.append(("", "  ".join(e for e in extra if e)))
    return rows


def health_sentence(snap: Snapshot) -> str | None:
    """One plain sentence when the run is input-bound or its GPU sits idle; None when neither."""
    wait = snap.timing.get("data_wait_frac")
    if wait is not None and wait >= INPUT_BOUND:
        return (f"waiting for data {100 * wait:.0f} % of the step: more workers, `loader = cached`, or a smaller "
                "test-time resize")
    gpu = (snap.system or {}).get("gpu_util")
    if gpu is not None and gpu < GPU_IDLE and snap.status == "running":
        return (f"the GPU is busy only {gpu:.0f} % of the time: a larger batch, or look at the CPU side "
                "(data wait, evaluation, checkpoints)")
    return None


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def _mb(v: float | None) -> str:
    if v is None:
        return ""
    return f"{v / 1024:.1f} GB" if v >= 1024 else f"{v:.0f} MB"

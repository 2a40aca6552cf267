"""The metrics stream (``metrics.jsonl``): the only interface between the trainer and what watches it.

The trainer appends one complete JSON object per line to ``run_dir/metrics.jsonl`` and flushes
after each event. The CLI, the TUI monitor, ``fgbench runs`` and the tests all read the same file
with :class:`Tailer`, which returns only complete lines, so a reader racing the writer never sees
half an event. Malformed lines (a crash mid-write, a disk filling up) are counted and skipped.

Every event has ``v`` (schema version), ``event`` (its kind) and ``time`` (Unix seconds). The
fields of each kind are listed in ``EVENT_FIELDS``: required fields first, then optional ones.
Readers must ignore fields they do not know, so that adding a field is not a version bump.
Accuracies are percentages (0..100); ``epoch`` is 1-based and counts across stages; ``step`` is the
global optimizer step, also across stages.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

SCHEMA_VERSION = 3
"""3: ``system`` events (the machine's health) and the data wait and step phases in ``step`` and
``epoch`` events (``data_wait_frac``, ``<phase>_ms``); v2 lines are v3 lines without them.
2: top-k fields are named ``topk`` (v1: ``top5``, whatever k was) and epoch events list the
``improved`` models (v1: a bool called ``best``). :func:`parse_line` reads v1 lines as v2."""

#: the step-timing fields of ``step`` and ``epoch`` events (fgbench.train.telemetry): the fraction
#: of the wall time spent waiting for the next batch, and milliseconds per step of each part
TIMING_FIELDS = ("data_wait_frac", "data_ms", "forward_ms", "backward_ms", "optimizer_ms", "ema_ms")

from fgbench.rundir import files  # noqa: E402
from fgbench.rundir.layout import METRICS_FILE  # noqa: F401, E402 (part of this module's API)

#: kind -> (required fields, optional fields)
EVENT_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # recipe: the resolved recipe as a dict; class_names in index order; versions: python/torch/...
    "run_started": (
        ("run_id", "recipe", "class_names", "device", "host", "pid"),
        ("pid_start", "versions", "resumed", "train_images", "val_images", "test_images", "steps_per_epoch",
         "total_epochs", "total_steps", "world_size", "top_k", "loader", "memory_format", "precision"),
    ),
    "stage_started": (
        ("stage", "name", "epochs", "first_epoch"),
        ("train_size", "test_size", "lr", "init_from", "trainable", "steps_per_epoch", "total_steps"),
    ),
    # loss: mean over the steps since the last step event; images_per_s over the same window
    "step": (("epoch", "step", "loss", "lr"), ("images_per_s", "top1", "grad_norm", "stage", *TIMING_FIELDS)),
    # one evaluation: split val/test/train, model raw/ema
    "eval": (("epoch", "step", "split", "model", "top1"), ("topk", "loss", "test_size", "images")),
    "epoch": (
        ("epoch", "step", "train_loss", "train_top1", "lr"),
        ("stage", "images_per_s", "epoch_time", "peak_mem_mb", "val_top1", "val_topk", "test_top1",
         "test_topk", "ema_val_top1", "ema_test_top1", "ema_test_topk", "ema_val_topk",
         "skipped_images", "improved", "taus", *TIMING_FIELDS),
    ),
    # the trainer's health, every few seconds: CPU in percent of one core (as top shows it), memory in MB
    "system": (
        ("cpu_percent", "rss_mb"),
        ("epoch", "step", "workers", "workers_cpu_percent", "workers_rss_mb", "machine_cpu_percent",
         "machine_mem_percent", "gpu_util", "gpu_mem_mb", "gpu_power_w", "gpu_temp_c"),
    ),
    "checkpoint": (("epoch", "step", "kind", "path"), ("model",)),
    "log": (("level", "message"), ()),
    # final evaluation of the selected model at extra test sizes
    "final_eval": (("model", "test_size", "top1"), ("topk", "epoch")),
    # status: completed / failed / interrupted / pruned (a search stopped it); summary as in summary.json
    "run_finished": (("status",), ("error", "traceback", "summary", "exit_code")),
}

#: kind -> when the trainer writes it (the README's event table is generated from this and EVENT_FIELDS)
EVENT_DOCS: dict[str, str] = {
    "run_started": "the trainer starts or resumes the run; `recipe` is the resolved recipe, `pid_start` the "
                   "process's start time (so a reused pid is recognised), `top_k` the k of every `topk` field, "
                   "`memory_format` and `precision` what the run trains in and why (`runtime.precision = "
                   "\"auto\"` resolved)",
    "stage_started": "a stage begins (every run has at least one)",
    "step": "every `runtime.log_every_steps` optimizer steps; `loss` and `images_per_s` are means since the "
            "previous step event, `data_wait_frac` the share of that time spent waiting for the next batch and "
            "`forward_ms`/`backward_ms`/`optimizer_ms`/`ema_ms` the mean time per step of each part",
    "eval": "one evaluation of one model (`raw`/`ema`) on one split (`val`/`test`); `topk` is the top-k "
            "accuracy for the run's `top_k`",
    "epoch": "an epoch ends: its training numbers and the evaluations' top-1/top-k; `improved` lists the "
             "models (`raw`, `ema`) whose best epoch this now is",
    "system": "every few seconds while the trainer runs, and once as it stops: CPU use and resident memory of "
              "the trainer and its loader `workers`, the machine's CPU and memory use, and on CUDA the GPU's "
              "utilisation, memory, power and temperature (with the `gpu` extra installed)",
    "checkpoint": "a checkpoint was written (`kind` `last` or `best`; `model` names the improved models)",
    "log": "a line for the log (warnings, skipped images)",
    "final_eval": "the best weights of a model evaluated at an extra `eval.final_test_sizes` size",
    "run_finished": "the run ends: `status` (`completed`, `failed`, `interrupted`, `pruned`), the exit code, and the "
                    "summary as in `summary.json`",
}

STATUSES = ("running", "completed", "failed", "interrupted", "pruned")
"""Every status a run can have; :func:`fgbench.rundir.status.run_status` is the one rule."""
FINISHED_STATUSES = ("completed", "failed", "interrupted", "pruned")
"""The statuses a ``run_finished`` event may carry."""


@dataclass(frozen=True)
class Series:
    """One plottable series of the event stream: ``value(event)`` is its point, or None."""

    name: str
    label: str
    event: str
    field: str
    split: str | None = None
    model: str | None = None
    shown: bool = False
    """Also plotted by ``fgbench runs show``, after its own plots of the loss, top-1 and learning rate."""

    def value(self, ev: dict[str, Any]) -> float | None:
        if ev.get("event") != self.event:
            return None
        if self.split is not None and (ev.get("split") != self.split or ev.get("model") != self.model):
            return None
        v = ev.get(self.field)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
            return None
        return float(v)


def _eval_series() -> list[Series]:
    out = []
    for model in ("raw", "ema"):
        for split in ("val", "test"):
            for metric in ("top1", "topk", "loss"):
                prefix = "ema_" if model == "ema" else ""
                label = f"{'EMA ' if model == 'ema' else ''}{split} {metric.replace('top', 'top-')}"
                out.append(Series(f"{prefix}{split}_{metric}", label, "eval", metric, split, model))
    return out


SERIES: dict[str, Series] = {s.name: s for s in [
    Series("loss", "train loss", "step", "loss"),
    Series("lr", "learning rate", "step", "lr"),
    Series("images_per_s", "images/s", "step", "images_per_s"),
    Series("grad_norm", "gradient norm", "step", "grad_norm"),
    Series("train_loss", "train loss (epoch)", "epoch", "train_loss"),
    Series("train_top1", "train top-1", "epoch", "train_top1"),
    Series("epoch_time", "epoch time (s)", "epoch", "epoch_time"),
    Series("data_wait_frac", "data wait (fraction of step)", "step", "data_wait_frac"),
    Series("cpu_percent", "trainer CPU %", "system", "cpu_percent"),
    Series("workers_cpu_percent", "loader workers CPU %", "system", "workers_cpu_percent"),
    Series("rss_mb", "trainer memory (MB)", "system", "rss_mb"),
    Series("gpu_util", "GPU utilisation %", "system", "gpu_util"),
    Series("gpu_mem_mb", "GPU memory (MB)", "system", "gpu_mem_mb"),
    *_eval_series(),
]}
"""The one table of series names: the monitor, ``runs show`` and exports all name series by it.
``val_topk`` is the top-k accuracy for the run's ``top_k`` (``run_started``)."""


class EventError(ValueError):
    pass


def make_event(kind: str, /, **fields: Any) -> dict[str, Any]:
    """Build an event, checking that the required fields are there and no unknown ones are.
    ``kind`` is positional-only: the checkpoint event has a field named ``kind`` of its own."""
    try:
        required, optional = EVENT_FIELDS[kind]
    except KeyError:
        raise EventError(f"unknown event kind {kind!r}") from None
    missing = [f for f in required if f not in fields]
    if missing:
        raise EventError(f"{kind}: missing fields {missing}")
    unknown = [f for f in fields if f not in required and f not in optional and f != "time"]
    if unknown:
        raise EventError(f"{kind}: unknown fields {unknown}")
    event = {"v": SCHEMA_VERSION, "event": kind, "time": fields.pop("time", None) or time.time()}
    event.update(fields)
    return event


def encode(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), allow_nan=False, default=_default) + "\n"


def _default(obj: Any) -> Any:
    # numpy / torch scalars reach here from the trainer
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _finite(event: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN; a diverged loss is still worth recording, so write it as null.
    return {k: (None if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))) else v)
            for k, v in event.items()}


class MetricsWriter:
    """Appends events to ``metrics.jsonl``; one ``write`` per event, flushed, so a reader or a
    crash sees whole lines. Opened in append mode so that a resumed run continues the same file."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8", buffering=1)
        # A crash can leave a partial last line; start on a fresh line so ours stays parseable.
        if self._f.tell() > 0:
            with open(self.path, "rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    self._f.write("\n")

    def emit(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        event = make_event(kind, **fields)
        self._f.write(encode(_finite(event)))
        self._f.flush()
        return event

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_line(line: str | bytes) -> dict[str, Any] | None:
    """One event, or None for a line that is not a well-formed event (skipped, never fatal): not
    JSON, not an object, longer than :data:`fgbench.rundir.files.MAX_LINE_BYTES` or nested deeper
    than :data:`fgbench.rundir.files.MAX_JSON_DEPTH`."""
    if len(line) > files.MAX_LINE_BYTES:
        return None
    # the hot path of reading a long run: two C-level counts; the scan only for a bracket-heavy line
    brackets = line.count(b"[") + line.count(b"{") if isinstance(line, bytes) else line.count("[") + line.count("{")
    if brackets > files.MAX_JSON_DEPTH and files.too_deep(line):
        return None
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), str):
        return None
    if obj.get("v") == 1:
        obj = _from_v1(obj)
    return obj


def _from_v1(obj: dict[str, Any]) -> dict[str, Any]:
    """A version-1 event under version-2 names (runs written before the rename stay readable)."""
    out = {(k[:-4] + "topk" if k.endswith("top5") else k): v for k, v in obj.items()}
    if out.get("event") == "epoch" and "best" in out:
        out.pop("best")  # v1 said only whether some model improved, not which: nothing to carry over
    return out


@dataclass
class Tailer:
    """Reads new complete events from a growing metrics file, from where it stopped last time.

    ``poll()`` returns the events appended since the previous call. A trailing line without its
    newline is left for the next poll (the writer may be in the middle of it). If the file shrinks
    or is replaced by another file (a new inode), reading starts over.

    The file is read through :mod:`fgbench.rundir.files`: a FIFO, a device or a file over its cap
    is never read (``damage`` says why, and nothing is returned), and a line longer than
    :data:`fgbench.rundir.files.MAX_LINE_BYTES` is skipped without being held in memory.
    """

    path: Path
    offset: int = 0
    skipped: int = 0
    damage: str | None = None
    """Why the file cannot be read (not a regular file, over its cap), or None."""
    _partial: bytes = field(default=b"", repr=False)
    _inode: int | None = field(default=None, repr=False)
    _discarding: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def poll(self, max_bytes: int | None = None) -> list[dict[str, Any]]:
        try:
            fd = files.open_regular(self.path)
        except files.RunFileError as err:
            self.damage = str(err)
            return []
        if fd is None:
            self.damage = None
            return []
        try:
            st = os.fstat(fd)
            size = st.st_size
            cap = files.cap_for(self.path.name)
            if size > cap:
                self.damage = f"{self.path.name}: {size} bytes, larger than {cap >> 20} MB, the most accepted for it"
                return []
            self.damage = None
            if size < self.offset or (self._inode is not None and st.st_ino != self._inode):
                self.offset, self._partial, self._discarding = 0, b"", False
            self._inode = st.st_ino
            if size == self.offset:
                return []
            want = size - self.offset
            chunk = files.read_fd(fd, min(want, max_bytes) if max_bytes else want, self.path.name,
                                  offset=self.offset, more_ok=True)  # the file may grow while we read
        except (OSError, files.RunFileError) as err:
            self.damage = str(err) if isinstance(err, files.RunFileError) else f"{self.path.name}: {err}"
            return []
        finally:
            os.close(fd)
        self.offset += len(chunk)
        return self._lines(chunk)

    def _lines(self, chunk: bytes) -> list[dict[str, Any]]:
        data = self._partial + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            self._partial = data
            if len(data) > files.MAX_LINE_BYTES:  # one endless line: drop it as it comes
                self._partial, self._discarding = b"", True
            return []
        self._partial = data[cut + 1:]
        lines = data[:cut].split(b"\n")
        if self._discarding:  # the rest of a line too long to keep
            lines, self._discarding = lines[1:], False
            self.skipped += 1
        if len(self._partial) > files.MAX_LINE_BYTES:
            self._partial, self._discarding = b"", True
        events = []
        for raw in lines:
            if not raw.strip():
                continue
            ev = parse_line(raw)
            if ev is None:
                self.skipped += 1
            else:
                events.append(ev)
        return events

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self.poll()


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All complete events of a metrics file (the partial last line, if any, is left out)."""
    return Tailer(Path(path)).poll()


def last_of(events: Iterable[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    found = None
    for ev in events:
        if ev.get("event") == kind:
            found = ev
    return found


REPLAYED_KINDS = frozenset({"step", "epoch", "eval", "checkpoint"})
"""Events of training progress, which a resume from an earlier checkpoint writes again."""


def drop_replayed(path: str | os.PathLike[str], *, step: int, final_done: bool = True) -> int:
    """Before a resume from a checkpoint taken at ``step``: remove the progress events a killed
    session wrote past it (steps, epochs, evaluations, checkpoints; and ``final_eval`` events
    when the final evaluation is to be redone, ``final_done`` False), which the resumed run
    writes again, so that every epoch appears once in ``metrics.jsonl``. Everything else stays
    (the killed session's ``run_started``, logs, system samples). The writer de-duplicates, so
    that every reader of the file (``runs show``, the TUI, exports, trackers) sees one epoch once.
    The file is rewritten atomically; returns how many events were dropped."""
    from fgbench.atomic import atomic_write

    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        return 0
    keep: list[bytes] = []
    dropped = 0
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" after a final newline; else a partial line the kill cut short
    for raw in lines:
        ev = parse_line(raw) if raw.strip() else None
        if ev is not None:
            kind = ev.get("event")
            s = ev.get("step")
            if ((kind in REPLAYED_KINDS and isinstance(s, int) and s > step)
                    or (kind == "final_eval" and not final_done)):
                dropped += 1
                continue
        keep.append(raw)
    if not dropped and not tail:
        return 0
    atomic_write(p, lambda f: f.write(b"".join(line + b"\n" for line in keep)))
    return dropped


# --------------------------------------------------------------------------- scalars, by name


_INDEX_FIELDS = {"v", "event", "time", "epoch", "step", "stage", "split", "model", "test_size"}


def _is_scalar(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def event_scalars(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every scalar of a run's metrics as tidy rows {event, epoch, step, metric, value, time}.

    Names: ``step/<field>`` (loss, lr, images_per_s, ...), ``epoch/<field>`` (train_loss,
    val_top1, ema_test_top1, data_wait_frac, ...), ``system/<field>`` (cpu_percent, rss_mb,
    gpu_util, ...; the health samples), ``eval/<split>/<model>/<field>``, and
    ``final/<model>/<field>@<test size>`` for the end-of-run evaluation at extra sizes (its step
    is the run's last step)."""
    rows: list[dict[str, Any]] = []
    last_step: Any = None
    for ev in events:
        kind = ev.get("event")
        if _is_scalar(ev.get("step")):
            last_step = ev["step"]
        base = {"event": kind, "epoch": ev.get("epoch"), "step": ev.get("step"), "time": ev.get("time")}
        if kind in ("step", "epoch", "system"):
            for k, v in ev.items():
                if k not in _INDEX_FIELDS and _is_scalar(v):
                    rows.append({**base, "metric": f"{kind}/{k}", "value": v})
        elif kind == "eval":
            prefix = f"eval/{ev.get('split', '?')}/{ev.get('model', '?')}"
            for k in ("top1", "topk", "loss"):
                if _is_scalar(ev.get(k)):
                    rows.append({**base, "metric": f"{prefix}/{k}", "value": ev[k]})
        elif kind == "final_eval":
            base["step"] = last_step
            for k in ("top1", "topk"):
                if _is_scalar(ev.get(k)):
                    rows.append({**base, "metric": f"final/{ev.get('model', '?')}/{k}@{ev.get('test_size')}", "value": ev[k]})
    return rows

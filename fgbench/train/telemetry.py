"""Where a run's time goes: the step's data wait and phases, and the machine's health.

Two parts, both written as events of the metrics file (``fgbench.rundir.events``):

* :class:`StepClock` splits each training step into the wait for the next batch and the step's
  phases (``forward`` with the host-to-device copy and mixing, ``backward``, ``optimizer`` with
  gradient clipping and the LR scheduler, ``ema``). It never adds a CPU-GPU sync:

  - the **data wait** is measured on the host, on every device: the time the loop spends inside
    the loader's ``next()``. On CUDA the host runs ahead of the GPU, so a GPU-bound run blocks in
    the kernel launches, not in ``next()``, and its wait stays near 0; an input-bound run blocks
    in ``next()`` while the GPU idles. ``data_wait_frac`` is that wait over the window's wall time
    (which includes logging and the read-back at logging steps).
  - the **phases** are host times (``time.perf_counter``) on the CPU, where the host does the
    work. On CUDA they are GPU times from CUDA events recorded at the phase boundaries (recording
    an event does not sync) and read only at logging steps and at the end of the epoch, right
    after the loop's own read-back has synchronised the stream, so reading them waits for nothing.

  Cost: five ``perf_counter`` calls per step on the CPU (about 0.5 microseconds in all), five
  event records on CUDA (``benchmarks/telemetry_overhead.py`` measures it).

* :class:`Sampler` is a daemon thread that wakes every :data:`SAMPLE_EVERY_S` seconds and writes a
  ``system`` event: CPU use (percent of one core, as ``top`` shows it) and resident memory of the
  trainer and, summed, of its loader workers (its child processes), the machine's CPU and memory
  use (psutil), and on CUDA the GPU's utilisation, memory in use, power and temperature through
  NVIDIA's management library (``pip install fgbench[gpu]``, i.e. ``nvidia-ml-py``, read through
  ``torch.cuda.utilization`` and friends so that ``CUDA_VISIBLE_DEVICES`` maps to the right
  board). Without the library, or on a machine without CUDA, the GPU fields are left out and
  nothing is said. A last sample is written when the sampler stops, so even a short run has one.
  Under DDP only rank 0 samples (its own process and workers; the other ranks' are not counted).

The sampler writes from its own thread, so the trainer's writer is wrapped in a
:class:`SerialWriter`: one lock around each event, so lines never interleave and the trackers
(``fgbench.tracking``) are never called from two threads at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import psutil
import torch

SAMPLE_EVERY_S = 5.0
"""Seconds between two ``system`` events (the first comes one interval after the start)."""

PHASES = ("forward", "backward", "optimizer", "ema")
"""The parts of a step, in order; the step and epoch events carry each as ``<phase>_ms``."""


class SerialWriter:
    """A metrics writer safe to call from the trainer and the sampler thread: one event at a time."""

    def __init__(self, writer: Any):
        self.writer = writer
        self._lock = threading.Lock()

    def emit(self, kind: str, /, **fields: Any) -> Any:
        with self._lock:
            return self.writer.emit(kind, **fields)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.writer, name)


@dataclass
class _Sums:
    """Seconds summed over some steps: wait, each phase, and the wall time they span."""

    steps: int = 0
    wait: float = 0.0
    phases: list[float] = field(default_factory=lambda: [0.0] * len(PHASES))
    wall: float = 0.0

    def add(self, other: "_Sums") -> None:
        self.steps += other.steps
        self.wait += other.wait
        self.wall += other.wall
        self.phases = [a + b for a, b in zip(self.phases, other.phases)]

    def fields(self) -> dict[str, float]:
        """The event fields: the wait as a fraction of the wall time, and ms per step of each part."""
        if self.steps == 0:
            return {}
        out = {"data_wait_frac": min(1.0, self.wait / self.wall) if self.wall > 0 else 0.0,
               "data_ms": 1000.0 * self.wait / self.steps}
        for name, s in zip(PHASES, self.phases):
            out[f"{name}_ms"] = 1000.0 * s / self.steps
        return out


class StepClock:
    """Times the steps of one ``train_one_epoch`` call (see the module docstring for how).

    The loop calls :meth:`begin` before its first ``next()``, :meth:`batch` when a batch has
    arrived, :meth:`mark` after each phase, :meth:`end_step` after the step's bookkeeping, and
    :meth:`window` at a logging step (after its read-back) and :meth:`epoch` at the end.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self._clock = time.perf_counter
        self._win = _Sums()
        self._total = _Sums()
        self._t_idle = self._t_win = self._t_last = 0.0
        self._phase = 0
        self._events: list[list[Any]] = []  # CUDA: per step, the events at the phase boundaries

    def begin(self) -> None:
        self._t_idle = self._t_win = self._clock()

    def batch(self) -> None:
        now = self._clock()
        self._win.wait += now - self._t_idle
        self._win.steps += 1
        self._t_last = now
        self._phase = 0
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self._events.append([ev])

    def mark(self) -> None:
        """The end of the next phase of :data:`PHASES`."""
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self._events[-1].append(ev)
        else:
            now = self._clock()
            self._win.phases[self._phase] += now - self._t_last
            self._t_last = now
        self._phase += 1

    def end_step(self) -> None:
        self._t_idle = self._clock()

    def _close_window(self) -> _Sums:
        now = self._clock()
        win, self._win = self._win, _Sums()
        win.wall = now - self._t_win
        self._t_win = now
        if self._events:
            # The loop's read-back just synchronised the stream: these events are complete.
            for evs in self._events:
                for i in range(len(evs) - 1):
                    win.phases[i] += evs[i].elapsed_time(evs[i + 1]) / 1000.0
            self._events = []
        self._total.add(win)
        return win

    def window(self) -> dict[str, float]:
        """The fields of a step event: the steps since the previous logging step."""
        return self._close_window().fields()

    def epoch(self) -> dict[str, Any]:
        """The fields of the epoch event (this call's steps), plus ``data_wait_s`` and ``wall_s``
        (seconds, for the run's totals)."""
        self._close_window()
        t = self._total
        return {**t.fields(), "data_wait_s": t.wait, "wall_s": t.wall} if t.steps else {}


# --------------------------------------------------------------------------------- the sampler


def _gpu_reader(device: torch.device) -> Callable[[], dict[str, float]] | None:
    """A function returning the GPU's numbers, or None when they cannot be read (no CUDA, or no
    ``nvidia-ml-py``): then the ``system`` events simply have no GPU fields."""
    if device.type != "cuda":
        return None

    def read() -> dict[str, float]:
        return {
            "gpu_util": float(torch.cuda.utilization(device)),
            "gpu_mem_mb": torch.cuda.device_memory_used(device) / 2**20,
            "gpu_power_w": torch.cuda.power_draw(device) / 1000.0,  # milliwatts
            "gpu_temp_c": float(torch.cuda.temperature(device)),
        }

    try:
        read()
    except Exception:  # noqa: BLE001 - ModuleNotFoundError (no pynvml), NVML errors: no GPU numbers
        return None
    return read


class Sampler:
    """The health-sampling thread (see the module docstring). ``position()`` gives the
    (epoch, step) the trainer is at, stamped on each event so the monitor can place it."""

    def __init__(self, emit: Callable[..., Any], device: torch.device, position: Callable[[], tuple[int, int]],
                 every_s: float | None = None):
        self.emit = emit
        self.every_s = SAMPLE_EVERY_S if every_s is None else every_s
        self.position = position
        self.proc = psutil.Process()
        self._workers: dict[int, psutil.Process] = {}
        self._gpu = _gpu_reader(device)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples = 0
        self.gpu_util_sum = 0.0
        self.gpu_samples = 0

    def start(self) -> "Sampler":
        # cpu_percent(None) compares with the previous call: prime the counters now
        self.proc.cpu_percent(None)
        psutil.cpu_percent(None)
        self._thread = threading.Thread(target=self._loop, name="fgbench-telemetry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._sample()

    def __enter__(self) -> "Sampler":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def _worker_numbers(self) -> tuple[int, float, float]:
        """(count, CPU %, RSS MB) of the trainer's child processes (its loader workers)."""
        try:
            children = self.proc.children(recursive=True)
        except psutil.Error:
            return 0, 0.0, 0.0
        known = {}
        cpu = rss = 0.0
        for child in children:
            p = self._workers.get(child.pid, child)
            try:
                c = p.cpu_percent(None)  # 0.0 the first time a worker is seen
                rss += p.memory_info().rss
            except psutil.Error:  # the worker ended between the listing and the reading
                continue
            cpu += c
            known[child.pid] = p
        self._workers = known
        return len(known), cpu, rss / 2**20

    def sample(self) -> dict[str, Any]:
        """One sample's fields (without writing them)."""
        out: dict[str, Any] = {
            "cpu_percent": self.proc.cpu_percent(None),
            "rss_mb": self.proc.memory_info().rss / 2**20,
        }
        n, wcpu, wrss = self._worker_numbers()
        if n:
            out.update(workers=n, workers_cpu_percent=wcpu, workers_rss_mb=wrss)
        out["machine_cpu_percent"] = psutil.cpu_percent(None)
        out["machine_mem_percent"] = psutil.virtual_memory().percent
        if self._gpu is not None:
            try:
                out.update(self._gpu())
            except Exception:  # noqa: BLE001 - the GPU went away or NVML failed: keep sampling the rest
                self._gpu = None
        return out

    def _sample(self) -> None:
        try:
            fields = self.sample()
            epoch, step = self.position()
            self.emit("system", epoch=epoch, step=step, **fields)
        except Exception:  # noqa: BLE001 - health sampling must never stop a run
            return
        self.samples += 1
        if "gpu_util" in fields:
            self.gpu_util_sum += fields["gpu_util"]
            self.gpu_samples += 1

    @property
    def mean_gpu_util(self) -> float | None:
        return self.gpu_util_sum / self.gpu_samples if self.gpu_samples else None


# ------------------------------------------------------------------------- the run's totals

TOTALS = {"data_wait_s": 0.0, "step_wall_s": 0.0, "gpu_util_sum": 0.0, "gpu_samples": 0}
"""What the trainer adds to its checkpointed totals so a resumed run's summary covers every session:
seconds waited for data and spent in training steps, and the sum and count of GPU utilisation
samples of the sessions before this one."""


def gpu_totals(totals: dict[str, Any], sampler: Sampler | None) -> dict[str, float]:
    """The GPU sums of the earlier sessions plus this one's (for the checkpoint)."""
    extra_sum, extra_n = (sampler.gpu_util_sum, sampler.gpu_samples) if sampler is not None else (0.0, 0)
    return {"gpu_util_sum": totals["gpu_util_sum"] + extra_sum, "gpu_samples": totals["gpu_samples"] + extra_n}


def summary_numbers(totals: dict[str, Any], sampler: Sampler | None) -> dict[str, float | None]:
    """``summary.json``'s ``data_wait_frac`` (of all training steps' wall time) and ``gpu_util``
    (mean percent over every sample; None without GPU numbers)."""
    g = gpu_totals(totals, sampler)
    wall = totals["step_wall_s"]
    return {
        "data_wait_frac": min(1.0, totals["data_wait_s"] / wall) if wall > 0 else None,
        "gpu_util": g["gpu_util_sum"] / g["gpu_samples"] if g["gpu_samples"] else None,
    }

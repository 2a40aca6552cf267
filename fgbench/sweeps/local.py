"""The local backend: a sweep's points run on this machine, one after another or one per GPU.

Each run is an ordinary ``fgbench run`` in its own process, started through
:mod:`fgbench.rundir.launcher` (a supervisor in its own session records the trainer's exit and
console output in the run directory, the same way the TUI launches runs).

Decisions:

* Runs start in their own session: Ctrl-C reaches only the sweep, which forwards exactly one
  SIGINT to each running trainer (each then checkpoints and exits 130), records them as
  interrupted and exits 130 itself. A second SIGINT to a trainer would be taken as "stop now".
* Parallel runs: one slot per GPU id (``--gpus 0,1`` or ``--gpus auto``, which reads
  ``CUDA_VISIBLE_DEVICES`` or ``nvidia-smi -L``); each run sees only its GPU through
  ``CUDA_VISIBLE_DEVICES``. Without ``--gpus`` the runs go one after another, their output copied
  to the terminal; every run's console output is in its ``console.txt``.
* ``--nproc N`` trains each run with N processes (``fgbench run --nproc N``, DDP through
  torchrun). With ``--gpus``, the ids are grouped N at a time into slots (``--gpus 0,1,2,3
  --nproc 2``: two runs at a time, each on two GPUs).
* The sweep process holds the sweep's writer lock while it runs (:func:`fgbench.sweeps.state.writer`)
  and records its pid and host in the state, so that ``fgbench sweep --cancel`` can reach it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, TextIO

from fgbench.errors import UserError
from fgbench.rundir import procs
from fgbench.sweeps.backend import SchedulerState, SubmitOptions, Submitted
from fgbench.sweeps.launch import ensure_trial, finish_point, point_command
from fgbench.sweeps.plan import COMPLETED, FAILED, INTERRUPTED, PENDING, RUNNING, Point
from fgbench.sweeps.state import SweepState, reconcile, settle, writer
from fgbench.textsafe import safe_lines


class LocalBackend:
    name = "local"
    scheduler = ""
    runs_here = True

    def configure(self, spec: Any, cli: dict[str, Any], source: str) -> dict[str, Any] | None:
        return None

    def unavailable(self) -> str | None:
        return None

    def submit(self, state: SweepState, options: SubmitOptions) -> Submitted:
        code = run_sweep(state, slots=options.slots, retry_failed=options.retry_failed,
                         extra_args=options.extra_args)
        return Submitted(finished=True, code=code)

    def poll(self, state: SweepState) -> dict[int, SchedulerState]:
        return {}

    def cancel(self, state: SweepState) -> str:
        """SIGINT to the sweep process, as from Ctrl-C: its runs write a checkpoint first."""
        c = state.controller or {}
        # the rule for signals: only the process the sweep recorded (pid, start time, host) is signalled
        if procs.alive(c.get("pid"), c.get("pid_start"), c.get("host")):
            os.kill(int(c["pid"]), signal.SIGINT)
            return f"asked the sweep process {c['pid']} to stop (its runs write a checkpoint first)"
        if procs.unverifiable(c.get("pid"), c.get("pid_start"), c.get("host")):
            return (f"the sweep's process is unknown (pid {c.get('pid')} is recorded without a start time that "
                    "matches it): nothing was signalled")
        if c.get("host") and c.get("host") != socket.gethostname():
            raise UserError(f"sweep {state.tag}: runs on {c['host']}; cancel it there")
        return "the sweep is not running"

    def scheduler_states(self, runs_root: str | Path) -> dict[str, str]:
        return {}


def detect_gpus(spec: str | None) -> list[str | None]:
    """Slots to run in: ``None`` -> one slot that inherits the environment; ``auto`` ->
    ``CUDA_VISIBLE_DEVICES`` or the GPUs ``nvidia-smi -L`` lists (one slot if none); a list of
    ids (``0,1``; repeat an id to run two runs on one GPU)."""
    if spec is None:
        return [None]
    if spec == "auto":
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
        if env is not None and env.strip():
            ids: list[str | None] = [x.strip() for x in env.split(",") if x.strip()]
            return ids or [None]
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return [None]
        found: list[str | None] = [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]
        return found or [None]
    given: list[str | None] = [x.strip() for x in spec.split(",")]
    if not given or any(not x for x in given):
        raise UserError(f"--gpus {spec}: expected auto or a list of GPU ids such as 0,1")
    return given


def group_slots(slots: Sequence[str | None], nproc: int) -> list[str | None]:
    """Slots for runs of ``nproc`` processes each: consecutive GPU ids grouped ``nproc`` at a time
    (``["0", "1", "2", "3"]``, 2 -> ``["0,1", "2,3"]``); one inherited slot stays as it is."""
    if nproc < 1:
        raise UserError(f"--nproc: must be at least 1, not {nproc}")
    if nproc == 1 or list(slots) == [None]:
        return list(slots)
    ids = [str(s) for s in slots]
    if len(ids) % nproc:
        raise UserError(f"--gpus: {len(ids)} GPU id(s) do not split into runs of --nproc {nproc} processes")
    return [",".join(ids[i:i + nproc]) for i in range(0, len(ids), nproc)]



@dataclass
class _Active:
    point: Point
    launched: Any
    """:class:`fgbench.rundir.launcher.Launched`"""


def run_sweep(
    state: SweepState,
    *,
    slots: Sequence[str | None] = (None,),
    retry_failed: bool = False,
    base_cmd: Sequence[str] | None = None,
    extra_args: Sequence[str] = (),
    out: TextIO | None = None,
    poll_s: float = 0.2,
) -> int:
    """Run every point that is not done; returns 0 (all completed), 1 (some failed) or 130
    (interrupted: continue later with the same state). Refused (exit 2) while another process
    runs the same sweep."""
    with writer(state):
        run = _LocalRun(state, slots=list(slots), base_cmd=list(base_cmd) if base_cmd else None,
                        out=out or sys.stdout)
        return run.run(retry_failed=retry_failed, extra_args=extra_args, poll_s=poll_s)


class _LocalRun:
    """One invocation of a local sweep: a queue of points, a slot per concurrent run."""

    def __init__(self, state: SweepState, *, slots: list[str | None], base_cmd: list[str] | None, out: TextIO):
        from fgbench.rundir.launcher import Launcher

        self.state = state
        self.slots = slots
        self.base_cmd = base_cmd or [sys.executable, "-m", "fgbench"]
        self.out = out
        self.launcher = Launcher(state.runs_root, fgbench_cmd=self.base_cmd)
        self.active: dict[int, _Active] = {}
        self.stopping = False

    def say(self, text: str, point: Point | None = None) -> None:
        where = f" [{point.index + 1}/{len(self.state.points)}]" if point is not None else ""
        print(f"sweep {self.state.tag}:{where} {safe_lines(text)}", file=self.out, flush=True)  # labels, paths, errors

    def run(self, *, retry_failed: bool, extra_args: Sequence[str], poll_s: float) -> int:
        state = self.state
        reconcile(state)
        extra = [*state.run_args, *extra_args]
        todo = {PENDING, INTERRUPTED} | ({FAILED} if retry_failed else set())
        queue = [p for p in state.points if p.status in todo]
        done_before = sum(p.status == COMPLETED for p in state.points)
        if done_before:
            self.say(f"{done_before} of {len(state.points)} run(s) already completed")
        old_handlers = {}
        in_main = _is_main_thread()
        if in_main:
            for sig in (signal.SIGINT, signal.SIGTERM):
                old_handlers[sig] = signal.signal(sig, self._forward)
        state.controller = procs.identity()  # for `fgbench sweep --cancel`: pid, start time and host
        try:
            while queue or self.active:
                free = [s for s in range(len(self.slots)) if s not in self.active]
                while free and queue and not self.stopping:
                    if self._start(queue.pop(0), free[0], extra):
                        free.pop(0)
                if not self.active:
                    break
                time.sleep(poll_s)
                self._reap()
        finally:
            for a in self.active.values():  # only reached on an unexpected error in this loop
                if a.launched.poll() is None:
                    a.launched.process.send_signal(signal.SIGINT)
                    a.launched.wait()
                finish_point(state, a.point, a.launched.poll())
            state.controller = None
            state.save()
            if in_main:
                for sig, h in old_handlers.items():
                    signal.signal(sig, h)
        if self.stopping or any(p.status in (PENDING, INTERRUPTED) for p in state.points):
            return 130
        return 1 if any(p.status == FAILED for p in state.points) else 0

    def _forward(self, signum: int, _frame: Any) -> None:
        if not self.stopping:
            print(f"\nsweep {self.state.tag}: stopping; the running run(s) write a checkpoint first",
                  file=self.out, flush=True)
        self.stopping = True
        for a in self.active.values():
            if a.launched.process.poll() is None:
                try:
                    a.launched.process.send_signal(signal.SIGINT)
                except ProcessLookupError:
                    pass

    def _start(self, point: Point, slot: int, extra: Sequence[str]) -> bool:
        """Start the point's run in ``slot``; False when the point failed before its run began."""
        from fgbench.rundir.launcher import LaunchError

        state = self.state
        try:
            ensure_trial(state, point)
        except UserError as err:
            point.status = FAILED
            point.notes.append(str(err))
            self.say(str(err), point)
            state.save()
            return False
        cmd = point_command(point, state, self.base_cmd, extra)
        gpu = self.slots[slot]
        where = f" on GPU {gpu}" if gpu is not None else ""
        verb = "resuming" if "--resume" in cmd else "starting"
        self.say(f"{verb} {point.label}{where} -> {point.run_dir}", point)
        point.status = RUNNING
        point.exit_code = None
        state.save()
        try:
            launched = self.launcher.spawn(Path(str(point.run_dir)), cmd[len(self.base_cmd):],
                                           env={"CUDA_VISIBLE_DEVICES": str(gpu)} if gpu is not None else {},
                                           tee=len(self.slots) == 1)
        except LaunchError as err:
            settle(point)
            point.status = FAILED
            point.notes.append(str(err))
            state.save()
            raise UserError(f"sweep {state.tag}: {err}") from None
        self.active[slot] = _Active(point, launched)
        return True

    def _reap(self) -> None:
        for slot, a in list(self.active.items()):
            code = a.launched.poll()
            if code is None:
                continue
            if a.launched.rejection:
                print(safe_lines(a.launched.rejection), file=self.out, flush=True)  # the trainer refused its input
            finish_point(self.state, a.point, code)
            self.state.save()
            self.say(f"{a.point.label}: {a.point.status}", a.point)
            del self.active[slot]


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()

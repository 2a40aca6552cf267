"""A run's status: one rule, from the run directory's files alone.

Every reader (``fgbench runs``, ``--resume``, sweeps, the TUI, a TUI restarted tomorrow) calls
:func:`run_status`, so they cannot disagree. The rule, in order:

1. **running** while a process holds the run's lock (``.lock``, see :mod:`fgbench.rundir.lock`),
   or while a launcher's supervisor for the latest launch is alive (same pid *and* start time)
   and has not recorded an exit: the trainer is starting up.
2. Otherwise, when the last ``run_finished`` event comes after the last ``run_started``: the status
   it names (``completed``, ``failed``, ``interrupted``). A trainer that exits with code 2 (bad
   input or data) always writes ``failed``.
3. Otherwise, when the launcher recorded the trainer's end (``exit.json``) after the last
   ``run_started``, or with no ``run_started`` at all: exit code 130 or death by SIGINT/SIGTERM
   is **interrupted**; any other code or signal is **failed**, with what ended it (``killed by
   SIGKILL``: usually the out-of-memory killer).
4. Otherwise **interrupted**: the trainer was killed without warning and nothing recorded how
   (``kill -9`` of the whole session, a node lost). ``fgbench run --resume`` continues it from its
   last checkpoint, if it wrote one.

Runs from before the lock existed (no ``.lock``) count as running while the pid recorded in
``run_started`` lives with its recorded start time.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any

from fgbench.rundir import procs

INTERRUPT_CODES = (130, 128 + signal.SIGTERM)
INTERRUPT_SIGNALS = ("SIGINT", "SIGTERM")


@dataclass(frozen=True)
class Status:
    status: str
    error: str | None = None
    exit_code: int | None = None
    """the exit code the trainer's end recorded (run_finished or exit.json), when one did"""


def exit_text(record: dict[str, Any]) -> str:
    sig = record.get("signal")
    if isinstance(sig, str) and sig:
        what = f"the trainer was killed by {sig}"
        if sig == "SIGKILL":
            what += " (often the out-of-memory killer)"
        return what
    return f"the trainer exited with code {record.get('code')}"


def process_end(returncode: int) -> dict[str, Any]:
    """The exit record (``code`` and ``signal``, as ``exit.json`` holds them) of a process that
    ended with ``returncode`` (``subprocess``'s: negative for the signal that killed it)."""
    if returncode < 0:
        try:
            name: str | None = signal.Signals(-returncode).name
        except ValueError:
            name = None
        return {"code": 128 - returncode, "signal": name}
    return {"code": returncode, "signal": None}


def exit_status(record: dict[str, Any]) -> Status:
    """Rule 3: what a recorded end of the trainer (``exit.json``, or :func:`process_end` of a
    trainer whose end no launcher recorded) says of the run."""
    code = record.get("code") if isinstance(record.get("code"), int) else None
    sig = record.get("signal") if isinstance(record.get("signal"), str) else None
    if code in INTERRUPT_CODES or sig in INTERRUPT_SIGNALS:
        return Status("interrupted", None, code)
    if code == 0 and not sig:
        # it exited cleanly without saying how the run ended: it never started one
        return Status("failed", "the trainer exited without starting the run", code)
    return Status("failed", exit_text(record), code)


def run_status(
    *,
    started: dict[str, Any] | None,
    finished: dict[str, Any] | None,
    finished_after_start: bool,
    lock_holder: dict[str, Any] | None,
    lock_exists: bool,
    launch: dict[str, Any] | None,
    exit_record: dict[str, Any] | None,
) -> Status:
    """The status of one run; see the module docstring for the rule.

    ``started``/``finished``: the last ``run_started`` / ``run_finished`` events (or None), and
    whether that ``run_finished`` comes after that ``run_started`` in the file. ``lock_holder``:
    :func:`fgbench.rundir.lock.holder`. ``launch``/``exit_record``: ``launch.json`` and
    ``exit.json`` (or None)."""
    if lock_holder is not None:
        return Status("running")
    launch_id = launch.get("launch") if isinstance(launch, dict) else None
    exit_ok = isinstance(exit_record, dict) and (launch_id is None or exit_record.get("launch") == launch_id)
    if isinstance(launch, dict) and not exit_ok:
        sup = launch.get("supervisor")
        if not isinstance(sup, dict):
            sup = {}
        if procs.alive(sup.get("pid"), sup.get("pid_start"), sup.get("host")):
            return Status("running")
    if finished is not None and (started is None or finished_after_start):
        status = str(finished.get("status") or "failed")
        code = finished.get("exit_code") if isinstance(finished.get("exit_code"), int) else None
        error = finished.get("error") if isinstance(finished.get("error"), str) else None
        if code == 2:
            status = "failed"
        return Status(status, error if status == "failed" else None, code)
    if exit_ok:
        assert isinstance(exit_record, dict)
        t_exit = exit_record.get("time")
        t_start = started.get("time") if started is not None else None
        if started is None or not isinstance(t_start, (int, float)) or not isinstance(t_exit, (int, float)) \
                or t_exit >= t_start:
            return exit_status(exit_record)
    if started is not None and not lock_exists:
        # a run from before run locks: its recorded pid (and start time) decides
        if procs.alive(started.get("pid"), started.get("pid_start"), started.get("host")):
            return Status("running")
    return Status("interrupted")

"""The one status rule (fgbench.rundir.status), fed scripted files: no processes, no torch."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from fgbench.rundir import procs
from fgbench.rundir.events import make_event
from fgbench.rundir.status import run_status


def _started(pid: int, **extra) -> dict:
    fields = {"run_id": "r", "recipe": {}, "class_names": ["a"], "device": "cpu", "host": "h", "pid": pid}
    return make_event("run_started", **(fields | extra))


def _status(**kw):
    base = dict(started=None, finished=None, finished_after_start=False, lock_holder=None, lock_exists=True,
                launch=None, exit_record=None)
    base.update(kw)
    return run_status(**base)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_held_lock_is_running_whatever_the_events_say() -> None:
    fin = make_event("run_finished", status="completed")
    assert _status(lock_holder={"pid": 1}).status == "running"
    assert _status(started=_started(1), finished=fin, finished_after_start=True, lock_holder={}).status == "running"


@pytest.mark.parametrize("status", ["completed", "failed", "interrupted"])
def test_the_finished_event_after_the_start_decides(status: str) -> None:
    fin = make_event("run_finished", status=status, error="boom", exit_code={"completed": 0, "failed": 1,
                                                                             "interrupted": 130}[status])
    st = _status(started=_started(1), finished=fin, finished_after_start=True)
    assert st.status == status
    assert st.error == ("boom" if status == "failed" else None)


def test_exit_code_2_is_always_failed() -> None:
    fin = make_event("run_finished", status="interrupted", exit_code=2)
    assert _status(started=_started(1), finished=fin, finished_after_start=True).status == "failed"


def test_a_finish_before_the_last_start_is_a_resume_that_is_not_over() -> None:
    fin = make_event("run_finished", status="interrupted", exit_code=130)
    st = _status(started=_started(_dead_pid()), finished=fin, finished_after_start=False)
    assert st.status == "interrupted" and st.error is None


def test_the_supervisors_record_of_a_kill_makes_it_failed() -> None:
    started = _started(_dead_pid(), time=time.time() - 10)
    launch = {"launch": "L1", "supervisor": {"pid": _dead_pid(), "pid_start": "x", "host": "h"}}
    oom = {"launch": "L1", "code": 137, "signal": "SIGKILL", "time": time.time()}
    st = _status(started=started, launch=launch, exit_record=oom)
    assert st.status == "failed" and "SIGKILL" in st.error and st.exit_code == 137
    crash = {"launch": "L1", "code": 3, "signal": None, "time": time.time()}
    st = _status(started=None, launch=launch, exit_record=crash)
    assert st.status == "failed" and "code 3" in st.error
    sigint = {"launch": "L1", "code": 130, "signal": None, "time": time.time()}
    assert _status(started=started, launch=launch, exit_record=sigint).status == "interrupted"


def test_an_exit_record_of_an_older_launch_or_before_the_start_does_not_count() -> None:
    now = time.time()
    launch = {"launch": "L2", "supervisor": {"pid": _dead_pid(), "pid_start": "x"}}
    old = {"launch": "L1", "code": 137, "signal": "SIGKILL", "time": now}
    assert _status(started=_started(1, time=now - 5), launch=launch, exit_record=old).status == "interrupted"
    before = {"launch": "L2", "code": 137, "signal": "SIGKILL", "time": now - 60}
    assert _status(started=_started(1, time=now), launch=launch, exit_record=before).status == "interrupted"


def test_a_live_supervisor_means_the_trainer_is_starting() -> None:
    me = procs.identity()
    launch = {"launch": "L1", "supervisor": me}
    assert _status(launch=launch).status == "running"
    # the same pid with another start time is another process (a reused pid): not running
    reused = {"launch": "L1", "supervisor": {**me, "pid_start": "other-boot:1"}}
    assert _status(launch=reused).status == "interrupted"


def test_runs_from_before_locks_fall_back_to_pid_and_start_time() -> None:
    me = procs.identity()
    live = _started(os.getpid(), pid_start=me["pid_start"], host=me["host"])
    assert _status(started=live, lock_exists=False).status == "running"
    reused = _started(os.getpid(), pid_start="other-boot:1", host=me["host"])
    assert _status(started=reused, lock_exists=False).status == "interrupted"
    # with a lock file, only the lock says running: a live pid in the events is not enough
    assert _status(started=live, lock_exists=True).status == "interrupted"


def test_pid_identity_recognises_a_reused_pid() -> None:
    me = procs.identity()
    assert procs.alive(me["pid"], me["pid_start"], me["host"])
    assert not procs.alive(me["pid"], "0:0", me["host"])
    assert not procs.alive(me["pid"], me["pid_start"], "some-other-host")
    assert not procs.alive(_dead_pid())

"""Checkpoints written in the background (``fgbench.train.checkpoint.BackgroundSaver``): what is written
is the state at the save, not later; one write at a time, in order; a failed write is raised in the
training thread; and a SIGKILL at any moment leaves a complete checkpoint, the old one or the new one."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch

from fgbench.atomic import DiskFullError
from fgbench.train import checkpoint as C

REPO = Path(__file__).resolve().parents[2]


class _Gate:
    """Replaces ``save_checkpoint``: each write waits until the test opens the gate; logs start/end."""

    def __init__(self, monkeypatch) -> None:
        self.open = threading.Event()
        self.log: list[str] = []
        real = C.save_checkpoint

        def save(path, payload):
            self.log.append(f"start {Path(path).name}")
            assert self.open.wait(30)
            real(path, payload)
            self.log.append(f"end {Path(path).name}")

        monkeypatch.setattr(C, "save_checkpoint", save)


def test_the_checkpoint_holds_the_state_at_the_save_not_what_training_did_next(tmp_path, monkeypatch) -> None:
    gate = _Gate(monkeypatch)
    weights = torch.zeros(4)
    history = [1, 2]
    opt_state = {"state": {0: {"momentum_buffer": torch.ones(3)}}, "param_groups": [{"lr": 0.1}]}
    saver = C.BackgroundSaver()
    done: list[bool] = []
    saver.save(tmp_path / "last.pt", {"format": C.FORMAT, "model": {"w": weights}, "history": history,
                                      "optimizer": opt_state}, done=lambda: done.append(True))
    # training goes on while the file is being written: in-place updates, appends, a new lr
    weights.add_(5.0)
    opt_state["state"][0]["momentum_buffer"].mul_(7.0)
    opt_state["param_groups"][0]["lr"] = 0.5
    history.append(3)
    assert saver.busy and done == []  # the event waits for the file
    gate.open.set()
    saver.wait()
    assert done == [True] and not saver.busy
    ck = C.load_checkpoint(tmp_path / "last.pt")
    assert torch.equal(ck["model"]["w"], torch.zeros(4)) and ck["history"] == [1, 2]
    assert torch.equal(ck["optimizer"]["state"][0]["momentum_buffer"], torch.ones(3))
    assert ck["optimizer"]["param_groups"][0]["lr"] == 0.1


def test_one_write_at_a_time_in_order(tmp_path, monkeypatch) -> None:
    gate = _Gate(monkeypatch)
    saver = C.BackgroundSaver()
    saver.save(tmp_path / "best.pt", {"format": C.FORMAT, "v": 1})
    second = threading.Thread(target=saver.save, args=(tmp_path / "last.pt", {"format": C.FORMAT, "v": 2}))
    second.start()
    second.join(0.2)
    assert second.is_alive() and gate.log == ["start best.pt"]  # the second save waits for the first
    gate.open.set()
    second.join(30)
    saver.wait()
    assert gate.log == ["start best.pt", "end best.pt", "start last.pt", "end last.pt"]


def test_a_failed_write_is_raised_in_the_training_thread_and_keeps_the_old_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "last.pt"
    C.save_checkpoint(path, {"format": C.FORMAT, "v": 1})
    saver = C.BackgroundSaver()

    def full(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(C, "save_checkpoint", lambda p, payload: C.atomic_write(p, full))
    done: list[bool] = []
    saver.save(path, {"format": C.FORMAT, "v": 2}, done=lambda: done.append(True))
    with pytest.raises(DiskFullError):
        saver.wait()
    saver.wait()  # raised once
    assert done == [] and C.load_checkpoint(path)["v"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left


def test_the_old_path_writes_in_the_calling_thread(tmp_path) -> None:
    saver = C.BackgroundSaver(background=False)
    t = torch.arange(3.0)
    saver.save(tmp_path / "x.pt", {"format": C.FORMAT, "t": t})
    assert not saver.busy and torch.equal(C.load_checkpoint(tmp_path / "x.pt")["t"], torch.arange(3.0))


WRITER = textwrap.dedent("""
    import sys, torch
    from fgbench.train import checkpoint as C
    path = sys.argv[1]
    saver = C.BackgroundSaver()
    x = torch.zeros(1_000_000)  # 4 MB: each write takes a while
    for v in range(1, 10_000):
        x.fill_(v)
        saver.save(path, {"format": C.FORMAT, "v": v, "x": x}, done=lambda v=v: print(v, flush=True))
""")


@pytest.mark.parametrize("writes_before_kill", [1, 4])
def test_a_sigkill_at_any_moment_leaves_a_complete_checkpoint(tmp_path, writes_before_kill) -> None:
    path = tmp_path / "last.pt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(writes_before_kill):
            assert proc.stdout.readline().strip()  # a write completed; the next one is under way
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    ck = C.load_checkpoint(path)  # complete: the last one that finished, or the one after it
    v = ck["v"]
    assert v >= writes_before_kill and torch.equal(ck["x"], torch.full((1_000_000,), float(v)))


def test_a_frozen_part_is_written_as_it_is_not_copied_again() -> None:
    kept = {"w": torch.ones(2)}
    live = {"w": torch.zeros(2)}
    snap = C.snapshot({"model": C.Frozen(kept), "optimizer": live})
    assert snap["model"] is kept  # the best weights' copy, taken at this step, is reused
    assert snap["optimizer"] is not live and snap["optimizer"]["w"] is not live["w"]
    assert torch.equal(snap["optimizer"]["w"], live["w"])

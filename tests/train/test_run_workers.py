"""A run's DataLoader worker processes end with the run, whether it completes, fails or is
interrupted: the trainer shuts them down itself. Left to the garbage collector (the trainer sits
in reference cycles), persistent workers outlived an in-process run and once left pytest hanging
at exit."""

from __future__ import annotations

import gc

import psutil
import pytest

from fgbench.cli import main

from .conftest import write_recipe


def _children() -> dict[int, psutil.Process]:
    return {p.pid: p for p in psutil.Process().children(recursive=True)}


def _alive(procs) -> list[str]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{p.pid} {' '.join(p.cmdline())[:80]}")
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.parametrize("outcome,code", [("completed", 0), ("failed", 1), ("interrupted", 130)])
def test_a_run_leaves_no_loader_worker_behind(tmp_path, tiny_folder, monkeypatch, outcome, code):
    from fgbench.train import progress as pg
    from fgbench.train import trainer as tr

    seen_workers: list[int] = []
    orig_tick = pg.Progress.tick

    def tick(self, **kw):
        orig_tick(self, **kw)
        seen_workers.extend(pid for pid in _children() if pid not in before)
        if outcome == "failed" and kw["epoch"] == 2:
            raise RuntimeError("a crash in the middle of epoch 2 (test)")

    orig_end = tr.Trainer._end_epoch

    def end_epoch(self, st, epoch, res, **kw):
        orig_end(self, st, epoch, res, **kw)
        if outcome == "interrupted":
            self.ctx.stop.requested, self.ctx.stop.signal = True, "SIGINT"

    monkeypatch.setattr(pg.Progress, "tick", tick)
    monkeypatch.setattr(tr.Trainer, "_end_epoch", end_epoch)
    recipe = write_recipe(tmp_path, tiny_folder, data={"workers": 2},
                          schedule={"name": "cosine", "epochs": 3, "warmup_epochs": 0},
                          eval={"final_test_sizes": [16]})
    before = _children()
    # the collector would reap an abandoned trainer (and its workers) at a time of its choosing:
    # held off here, only what the trainer does itself counts
    gc.disable()
    try:
        assert main(["run", str(recipe), "--run-dir", str(tmp_path / "run"), "--progress", "none"]) == code
        assert seen_workers, "the run had worker processes (the test checks something)"
        left = _alive(p for pid, p in _children().items() if pid not in before)
    finally:
        gc.enable()
    assert left == [], f"{outcome} run left its loader workers alive: {left}"

"""Telemetry (fgbench.train.telemetry): the step clock's arithmetic on a scripted clock, the health
sampler on this process and a child, and both in the events and summary of a real tiny run."""

from __future__ import annotations

import multiprocessing
import time

import pytest
import torch

from fgbench.rundir import events as metrics
from fgbench.rundir.summary import Summary
from fgbench.train import telemetry

from .conftest import events_of, summary_of, write_recipe
from .test_run import run_cli, validate_event


class ScriptedClock:
    def __init__(self, *times: float):
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0)


def test_step_clock_splits_each_step_into_wait_and_phases() -> None:
    clock = telemetry.StepClock(torch.device("cpu"))
    # in the loop's order: begin at 0; step 1: batch at 2 (waited 2), phases end at 3, 5, 6, 6.5, step
    # ends at 7; step 2 (a logging step): batch at 8 (waited 1), phases end at 9, 11, 12, 12.5, the
    # window is read at 13, the step ends at 13.5
    clock._clock = ScriptedClock(0, 2, 3, 5, 6, 6.5, 7, 8, 9, 11, 12, 12.5, 13, 13.5)
    clock.begin()
    for i in range(2):
        clock.batch()
        for _ in telemetry.PHASES:
            clock.mark()
        win = clock.window() if i == 1 else None
        clock.end_step()
    assert win is not None
    assert win["data_wait_frac"] == pytest.approx(3 / 13)  # 2 + 1 s waited over 13 s
    assert win["data_ms"] == pytest.approx(1500)
    assert (win["forward_ms"], win["backward_ms"], win["optimizer_ms"], win["ema_ms"]) == pytest.approx(
        (1000, 2000, 1000, 500))
    # a third step after the window (waited 4 s, phases of 1 s each); the epoch ends at 24 and
    # covers all three steps, the window only its own
    clock._clock = ScriptedClock(17.5, 18.5, 19.5, 20.5, 21.5, 22, 24)
    clock.batch()
    for _ in telemetry.PHASES:
        clock.mark()
    clock.end_step()
    ep = clock.epoch()
    assert ep["data_wait_s"] == pytest.approx(7) and ep["wall_s"] == pytest.approx(24)
    assert ep["data_wait_frac"] == pytest.approx(7 / 24)
    assert ep["forward_ms"] == pytest.approx(1000 * (1 + 1 + 1) / 3)
    assert ep["ema_ms"] == pytest.approx(1000 * (0.5 + 0.5 + 1) / 3)


def test_step_clock_without_steps_reports_nothing() -> None:
    clock = telemetry.StepClock(torch.device("cpu"))
    clock.begin()
    assert clock.window() == {} and clock.epoch() == {}


def _busy_child(stop) -> None:
    while not stop.is_set():
        sum(range(1000))


def test_sampler_counts_the_trainer_and_its_workers_and_stays_quiet_without_a_gpu(capfd) -> None:
    events: list[tuple[str, dict]] = []
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    child = ctx.Process(target=_busy_child, args=(stop,))
    child.start()
    try:
        sampler = telemetry.Sampler(lambda kind, **f: events.append((kind, f)), torch.device("cpu"),
                                    lambda: (3, 42), every_s=0.05)
        with sampler:
            deadline = time.monotonic() + 60
            while sampler.samples < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        stop.set()
        child.join()
    assert len(events) >= 4  # three from the thread, one as it stops
    for kind, fields in events:
        validate_event(metrics.make_event(kind, **fields))
        assert kind == "system" and (fields["epoch"], fields["step"]) == (3, 42)
        assert fields["rss_mb"] > 1 and fields["cpu_percent"] >= 0
        assert not any(k.startswith("gpu_") for k in fields)
    # the child (and, with spawn, multiprocessing's resource tracker) counted as workers
    assert any(f.get("workers", 0) >= 1 and f["workers_rss_mb"] > 1 and f["workers_cpu_percent"] > 0 for _, f in events)
    assert sampler.mean_gpu_util is None
    out, err = capfd.readouterr()
    assert out == err == ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_no_gpu_numbers_and_no_error_where_nvml_cannot_answer() -> None:
    assert telemetry._gpu_reader(torch.device("cuda")) is None
    assert telemetry._gpu_reader(torch.device("cpu")) is None


class _FakeSampler:
    gpu_util_sum, gpu_samples = 150.0, 2


def test_summary_numbers_cover_earlier_sessions() -> None:
    totals = {"data_wait_s": 3.0, "step_wall_s": 12.0, "gpu_util_sum": 90.0, "gpu_samples": 1}
    out = telemetry.summary_numbers(totals, _FakeSampler())  # type: ignore[arg-type]
    assert out == {"data_wait_frac": 0.25, "gpu_util": pytest.approx(80.0)}  # (90 + 150) / 3
    assert telemetry.summary_numbers(dict(telemetry.TOTALS), None) == {"data_wait_frac": None, "gpu_util": None}


def test_older_runs_still_read() -> None:
    s = Summary.from_json({"run_id": "x", "status": "completed"})  # a summary from before telemetry
    assert s.data_wait_frac is None and s.gpu_util is None
    ev = metrics.parse_line('{"v":2,"event":"step","time":1,"epoch":1,"step":2,"loss":1.0,"lr":0.1}')
    assert ev is not None and ev["loss"] == 1.0


def test_a_run_records_its_data_wait_phases_and_health(tmp_path, tiny_folder, monkeypatch) -> None:
    monkeypatch.setattr(telemetry, "SAMPLE_EVERY_S", 0.2)
    recipe = write_recipe(tmp_path, tiny_folder, schedule={"name": "cosine", "epochs": 2, "warmup_epochs": 0},
                          ema={"enabled": True, "decay": 0.9})
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 0
    evs = events_of(run)
    for ev in evs:
        validate_event(ev)
    steps = [e for e in evs if e["event"] == "step"]
    epochs = [e for e in evs if e["event"] == "epoch"]
    system = [e for e in evs if e["event"] == "system"]
    assert steps and len(epochs) == 2 and system
    for ev in steps + epochs:
        assert 0 <= ev["data_wait_frac"] <= 1
        assert all(ev[f"{p}_ms"] >= 0 for p in telemetry.PHASES) and ev["forward_ms"] > 0 and ev["ema_ms"] > 0
    # the system events sit between run_started and run_finished, stamped with where the run was
    kinds = [e["event"] for e in evs]
    assert kinds.index("run_started") < kinds.index("system") and kinds[-1] == "run_finished"
    assert all(s["rss_mb"] > 1 and "gpu_util" not in s for s in system)
    assert all(1 <= s["epoch"] <= 2 for s in system)  # the epoch in progress, never one past the last
    summary = summary_of(run)
    assert 0 <= summary["data_wait_frac"] <= 1 and summary["gpu_util"] is None
    finished = evs[-1]["summary"]
    assert finished["data_wait_frac"] == summary["data_wait_frac"]

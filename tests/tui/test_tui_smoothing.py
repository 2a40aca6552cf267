"""Smoothed curves that do not lie (issue 10 item 8) and one rule for the run's number (item 7):
the pure parts, without an app."""

from __future__ import annotations

import math

import pytest

from fgbench.runmodel import RunModel, smooth
from fgbench.tui.widgets.run_view import _lines, next_smoothing


def test_a_constant_series_stays_constant():
    # an EMA started at 0 without bias correction starts near 0; one started at the first value is
    # fine here, which is why the next tests matter too
    out = smooth([10, 20, 30, 40], [2.0, 2.0, 2.0, 2.0], 100)
    assert out == pytest.approx([2.0] * 4)


def test_the_weights_are_the_debiased_exponential_ones():
    # evenly spaced steps (gap 1), time constant tau: the smoothed value at n is the weighted mean
    # of the values with weights d^(n-i), d = exp(-1/tau) (TensorBoard's debiased EMA)
    tau = 3.0
    values = [5.0, 1.0, 4.0, 0.0, 3.0, 2.0]
    steps = list(range(1, len(values) + 1))
    d = math.exp(-1 / tau)
    expected = []
    for n in range(len(values)):
        w = [d ** (n - i) for i in range(n + 1)]
        expected.append(sum(wi * v for wi, v in zip(w, values)) / sum(w))
    assert smooth(steps, values, tau) == pytest.approx(expected)


def test_the_first_value_gets_no_extra_weight():
    # an EMA started *at* the first value keeps weight d^n on it forever (the quickstart's 0.65
    # when the loss was 0.12); the debiased one gives it only its share
    steps = list(range(1, 101))
    values = [10.0] + [1.0] * 99
    out = smooth(steps, values, 10)
    assert out[-1] == pytest.approx(1.0, abs=1e-3)
    naive = values[0]
    for v in values[1:]:
        naive = 0.9 * naive + 0.1 * v
    assert naive > out[-1] + 1e-4  # what the old per-event smoothing showed


def test_smoothing_does_not_depend_on_how_often_the_loss_is_logged():
    # the same training curve logged every step and every 25 steps (each logged value the mean of
    # the steps since the last one, as the trainer logs it): the smoothed curves agree where both
    # have a point, and the smoothed end is close to the real end of a curve that has flattened
    def loss(s: int) -> float:
        return 0.12 + 2.2 * math.exp(-s / 300)

    total = 3000
    every1 = (list(range(1, total + 1)), [loss(s) for s in range(1, total + 1)])
    steps25 = list(range(25, total + 1, 25))
    every25 = (steps25, [sum(loss(s) for s in range(k - 24, k + 1)) / 25 for k in steps25])
    a = dict(zip(every1[0], smooth(*every1, 100)))
    b = dict(zip(every25[0], smooth(*every25, 100)))
    for s in steps25[4:]:
        assert b[s] == pytest.approx(a[s], rel=0.03), s
    assert b[total] == pytest.approx(loss(total), abs=0.01)
    # a factor per logged event (the old 0.9) smooths the sparse log over 250 steps, the dense one
    # over 10: the two disagree far more than the step-span EMA does
    def per_event(values):
        out, acc = [], values[0]
        for v in values:
            acc = 0.9 * acc + 0.1 * v
            out.append(acc)
        return out
    old_dense = dict(zip(every1[0], per_event(every1[1])))
    old_sparse = dict(zip(steps25, per_event(every25[1])))
    assert abs(old_sparse[500] - old_dense[500]) > 5 * abs(b[500] - a[500])


def test_smoothing_off_returns_the_values():
    assert smooth([1, 2, 3], [3.0, 1.0, 2.0], None) == [3.0, 1.0, 2.0]
    assert smooth([1, 2, 3], [3.0, 1.0, 2.0], 0) == [3.0, 1.0, 2.0]


def test_a_resumed_run_repeating_steps_does_not_break_the_average():
    out = smooth([10, 20, 15, 20, 30], [1.0, 1.0, 1.0, 1.0, 1.0], 50)
    assert all(math.isfinite(v) for v in out) and out == pytest.approx([1.0] * 5)


def test_the_monitor_draws_the_raw_loss_under_the_smoothed_one_and_can_turn_smoothing_off(tmp_path):
    model = RunModel(tmp_path)
    model.feed([{"event": "step", "epoch": 1, "step": s, "loss": 1.0 + (s % 2), "lr": 0.1, "time": float(s)}
                for s in range(1, 41)])
    snap = model.snapshot()
    raw, sm = _lines(snap, ("loss",), "step", 10)
    assert raw.label == "raw" and raw.ys == snap.series["loss"][2]
    assert sm.label == "EMA 10 steps" and sm.ys == pytest.approx(smooth(snap.series["loss"][0], raw.ys, 10))
    assert max(sm.ys[10:]) - min(sm.ys[10:]) < 0.5 < max(raw.ys) - min(raw.ys)
    only = _lines(snap, ("loss",), "step", None)
    assert len(only) == 1 and only[0].ys == raw.ys
    # the LR is never smoothed
    assert len(_lines(snap, ("lr",), "step", 10)) == 1
    # s cycles: 50 -> 200 -> 1000 -> off -> 10 -> 50
    levels = [50]
    for _ in range(5):
        levels.append(next_smoothing(levels[-1]))
    assert levels == [50, 200, 1000, None, 10, 50]


def test_every_series_of_the_metrics_stream_is_kept_with_its_wall_time(tmp_path):
    model = RunModel(tmp_path)
    t0 = 1000.0
    model.feed([
        {"event": "step", "epoch": 1, "step": 5, "loss": 2.0, "lr": 0.1, "images_per_s": 900.0, "grad_norm": 3.5,
         "time": t0},
        {"event": "eval", "epoch": 1, "step": 5, "split": "val", "model": "raw", "top1": 30.0, "topk": 60.0,
         "loss": 1.9, "time": t0 + 60},
        {"event": "eval", "epoch": 1, "step": 5, "split": "test", "model": "ema", "top1": 31.0, "topk": 61.0,
         "time": t0 + 90},
        {"event": "epoch", "epoch": 1, "step": 5, "train_loss": 2.1, "train_top1": 25.0, "lr": 0.1,
         "epoch_time": 118.0, "time": t0 + 120},
    ])
    snap = model.snapshot()
    expect = {"loss": 2.0, "lr": 0.1, "images_per_s": 900.0, "grad_norm": 3.5, "epoch_time": 118.0,
              "val_top1": 30.0, "val_topk": 60.0, "val_loss": 1.9, "ema_test_top1": 31.0, "ema_test_topk": 61.0,
              "train_loss": 2.1, "train_top1": 25.0}
    for name, value in expect.items():
        assert snap.series[name][2] == [value], name
    assert snap.series["ema_test_loss"][2] == []  # not in the event: no point
    assert snap.times["loss"] == [0.0] and snap.times["val_top1"] == [60.0] and snap.times["train_loss"] == [120.0]


def test_a_legend_keeps_every_series_in_a_narrow_plot():
    from fgbench.tui.plots import Line, legend_rows

    lines = [Line([1], [1], (1, 2, 3), label, marker=m) for label, m in
             (("train", "·"), ("val", "•"), ("test", "x"), ("EMA val", "o"), ("EMA test", "+"))]
    [wide] = legend_rows("top-1", lines, note="x: step", width=100)
    assert str(wide) == "top-1  · train  • val  x test  o EMA val  + EMA test  x: step"
    [narrow] = legend_rows("top-1", lines, note="x: step", width=42)
    assert str(narrow) == "top-1 ·train •val xtest oEMA val +EMA test"  # compact, the axis note left out

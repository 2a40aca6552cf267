"""`fgbench runs show`'s curves read the event schema's one table of series (as the TUI monitor does)."""

from __future__ import annotations

from fgbench import report
from fgbench.rundir import events


def test_curves_come_from_the_one_series_table():
    evs = [
        {"event": "step", "epoch": 1, "step": 2, "loss": 2.5, "lr": 0.1},
        {"event": "step", "epoch": 1, "step": 4, "loss": 2.0, "lr": 0.2},
        {"event": "eval", "epoch": 1, "step": 4, "split": "val", "model": "raw", "top1": 30.0},
        {"event": "eval", "epoch": 1, "step": 4, "split": "test", "model": "ema", "top1": 33.0},
        # an epoch event's copy of an evaluation is not a second source of the val curve
        {"event": "epoch", "epoch": 1, "step": 4, "train_loss": 2.2, "val_top1": 99.0},
        {"event": "eval", "epoch": 2, "step": 8, "split": "val", "model": "raw", "top1": 40.0},
        {"event": "eval", "epoch": 2, "step": 8, "split": "val", "model": "raw", "top1": 41.0},  # resumed: later wins
    ]
    s = report.metric_series(evs)
    assert s["step/loss"] == [(2.0, 2.5), (4.0, 2.0)] and s["step/lr"] == [(2.0, 0.1), (4.0, 0.2)]
    assert s["epoch/val_top1"] == [(1.0, 30.0), (2.0, 41.0)]
    assert s["epoch/ema_test_top1"] == [(1.0, 33.0)] and s["epoch/train_loss"] == [(1.0, 2.2)]
    assert {k.split("/", 1)[1] for k in s} <= set(events.SERIES)


def test_a_run_that_reported_evaluations_only_in_epoch_events_still_has_its_curves():
    evs = [{"event": "epoch", "epoch": e, "step": 4 * e, "val_top1": v, "ema_test_top1": t}
           for e, v, t in ((1, 10.0, 11.0), (2, 20.0, 21.0))]
    evs.append({"event": "eval", "epoch": 2, "step": 8, "split": "test", "model": "ema", "top1": 25.0})
    s = report.metric_series(evs)
    assert s["epoch/val_top1"] == [(1.0, 10.0), (2.0, 20.0)]  # no eval event for it: the epoch copies
    assert s["epoch/ema_test_top1"] == [(2.0, 25.0)]  # eval events exist for it: they are the source


def test_a_series_marked_shown_is_plotted_by_runs_show(monkeypatch):
    # A new monitor metric reaches `runs show` by its one line in SERIES (shown=True), with no edit
    # to the report; today's series are not marked, so `runs show` draws what it always drew.
    evs = [{"event": "step", "epoch": 1, "step": s, "loss": 2.0, "lr": 0.1, "grad_norm": g}
           for s, g in ((2, 1.5), (4, 3.5))]
    assert "gradient norm" not in report.curves_text(evs)
    assert not [s.name for s in events.SERIES.values() if s.shown]
    shown = dict(events.SERIES, grad_norm=events.Series("grad_norm", "gradient norm", "step", "grad_norm", shown=True))
    monkeypatch.setattr(report, "SERIES", shown)
    text = report.curves_text(evs)
    block = text[text.index("gradient norm (x = step)"):]
    assert "3.500 ┤" in block and "1.500 ┤" in block  # its top and bottom values label the y axis

"""The best-epoch tracker on its own, fed a scripted series of evaluations (fast; the end-to-end
version is tests/train/test_selection.py). Expected values are read off the script by hand."""

from __future__ import annotations

import json

import pytest
import torch

from fgbench.train.selection import BestTracker

# epoch -> (val top-1, test top-1); the best val, best test and last epochs all differ
RAW = {1: (10.0, 5.0), 2: (50.0, 20.0), 3: (40.0, 80.0), 4: (30.0, 70.0)}
EMA = {1: (10.0, 95.0), 2: (20.0, 30.0), 3: (55.0, 25.0), 4: (25.0, 60.0)}


def _res(val, test, epoch, *, with_val=True):
    conf = torch.full((2, 2), epoch, dtype=torch.long)  # marks the epoch it comes from
    return {"val": {"top1": val, "topk": val + 1} if with_val else None,
            "test": {"top1": test, "topk": test + 1, "confusion": conf}}


def _feed(select_on, *, ema=True, with_val=True, tracker=None, epochs=(1, 2, 3, 4)):
    t = tracker or BestTracker(select_on, ema)
    improved = {}
    for e in epochs:
        results = {"raw": _res(*RAW[e], e, with_val=with_val), "ema": _res(*EMA[e], e, with_val=with_val) if ema else None}
        improved[e] = t.update(e, results)
    return t, improved


@pytest.mark.parametrize(("select_on", "raw_e", "ema_e", "selected", "improved"), [
    # val: raw improves at 1, 2; EMA at 1, 2, 3
    ("val", 2, 3, "ema", {1: ["raw", "ema"], 2: ["raw", "ema"], 3: ["ema"], 4: []}),
    # test: raw improves at 1, 2, 3; EMA only at 1 (95 is its peak); 95 >= 80 selects the EMA
    ("test", 3, 1, "ema", {1: ["raw", "ema"], 2: ["raw"], 3: ["raw"], 4: []}),
    # last: every epoch replaces the record; EMA's val 25 < raw's 30 at the last epoch
    ("last", 4, 4, "raw", {e: ["raw", "ema"] for e in (1, 2, 3, 4)}),
])
def test_the_tracker_keeps_each_models_numbers_at_its_own_selected_epoch(select_on, raw_e, ema_e, selected, improved):
    t, got = _feed(select_on)
    assert got == improved
    for model, table, e in (("raw", RAW, raw_e), ("ema", EMA, ema_e)):
        val, test = table[e]
        assert t.public(model) == {"epoch": e, "val_top1": val, "test_top1": test, "test_topk": test + 1}
        assert t.confusion[model] == [[e, e], [e, e]]
    assert t.selected() == selected


def test_ties_keep_the_earlier_epoch_and_the_ema_wins_a_tie_between_models():
    t = BestTracker("val", True)
    t.update(1, {"raw": _res(50.0, 1.0, 1), "ema": _res(50.0, 2.0, 1)})
    assert t.update(2, {"raw": _res(50.0, 9.0, 2), "ema": _res(49.0, 9.0, 2)}) == []
    assert t.public("raw")["epoch"] == 1 and t.public("raw")["test_top1"] == 1.0
    assert t.selected() == "ema"  # 50 >= 50
    t.update(3, {"raw": _res(51.0, 3.0, 3), "ema": None})  # no EMA evaluation this time
    assert t.selected() == "raw" and t.public("ema")["epoch"] == 1


def test_without_ema_or_without_a_validation_split():
    t, _ = _feed("val", ema=False)
    assert t.selected() == "raw" and t.public("ema") is None and t.public("raw")["epoch"] == 2
    # select_on = "val" with no validation numbers: nothing is selected (the recipe refuses this case)
    t2, got = _feed("val", with_val=False)
    assert got == {e: [] for e in (1, 2, 3, 4)} and t2.public("raw") is None
    # "last" with no validation numbers: the EMA is selected, numbers at the last epoch
    t3, _ = _feed("last", with_val=False)
    assert t3.selected() == "ema" and t3.public("raw") == {"epoch": 4, "val_top1": None, "test_top1": 70.0,
                                                          "test_topk": 71.0}
    t4 = BestTracker("val", True)
    t4.update(1, {"raw": _res(5.0, 5.0, 1), "ema": None})
    assert t4.selected() == "raw"
    t5 = BestTracker("val", True)
    t5.update(1, {"raw": None, "ema": _res(5.0, 5.0, 1)})
    assert t5.selected() == "ema"


@pytest.mark.parametrize("select_on", ["val", "test", "last"])
def test_state_round_trip_continues_exactly(select_on):
    """A tracker restored from its state (JSON-able, as in last.pt) after epoch 2 ends like one that ran on."""
    full, _ = _feed(select_on)
    half, _ = _feed(select_on, epochs=(1, 2))
    state = json.loads(json.dumps(half.state_dict(), allow_nan=False))  # plain data: no inf, no tensors
    assert state["select_on"] == select_on and state["has_ema"] is True and state["stage"] == 0
    resumed = BestTracker(select_on, True)
    resumed.load_state_dict(state)
    _feed(select_on, tracker=resumed, epochs=(3, 4))
    for model in ("raw", "ema"):
        assert resumed.public(model) == full.public(model)
        assert resumed.confusion[model] == full.confusion[model]
    assert resumed.selected() == full.selected()
    staged = BestTracker(select_on, True, stage=3)
    again = BestTracker(select_on, True)
    again.load_state_dict(staged.state_dict())
    assert again.stage == 3


def test_last_selects_the_ema_when_its_last_validation_is_as_good():
    for ema_val, expected in ((31.0, "ema"), (30.0, "ema"), (29.0, "raw")):  # raw's last val is 30
        t = BestTracker("last", True)
        t.update(4, {"raw": _res(30.0, 70.0, 4), "ema": _res(ema_val, 60.0, 4)})
        assert t.selected() == expected, ema_val


def test_unknown_rule_is_an_error():
    with pytest.raises(AssertionError, match="best"):
        BestTracker("best", True).update(1, {"raw": _res(1.0, 1.0, 1), "ema": None})


def test_last_keeps_no_score_and_the_state_holds_no_sentinel():
    t, _ = _feed("last", epochs=(1, 2))
    state = t.state_dict()
    assert "score_inf" not in state
    assert [b["score"] for b in state["best"].values()] == [None, None]  # no stand-in for "always replace"


def test_a_checkpoint_from_before_the_selection_module_resumes_the_same():
    """last.pt files written before fgbench.train.selection carried ``score_inf`` for "last" (with the
    scores written as null) and real scores otherwise; both continue exactly."""
    for select_on in ("last", "val"):
        full, _ = _feed(select_on)
        half, _ = _feed(select_on, epochs=(1, 2))
        old = json.loads(json.dumps(half.state_dict()))
        old["score_inf"] = select_on == "last"
        resumed = BestTracker(select_on, True)
        resumed.load_state_dict(old)
        _feed(select_on, tracker=resumed, epochs=(3, 4))
        assert [resumed.public(m) for m in ("raw", "ema")] == [full.public(m) for m in ("raw", "ema")]
        assert resumed.selected() == full.selected()

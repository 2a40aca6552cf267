"""Epoch events name the models whose best epoch an epoch became (``improved``), read off the
scripted evaluations of test_selection by hand."""

from __future__ import annotations

from .conftest import events_of
from .test_selection import _run, scripted  # noqa: F401 (the fixture)


def test_epoch_events_name_the_models_that_improved(tmp_path, tiny_folder, capsys, scripted) -> None:  # noqa: F811
    run, _summary, _out = _run(tmp_path, tiny_folder, capsys, select_on="val", stages=False)
    improved = {e["epoch"]: e["improved"] for e in events_of(run) if e["event"] == "epoch"}
    # raw val 10, 50, 40, 30 (new bests at 1 and 2); EMA val 10, 20, 55, 25 (at 1, 2 and 3)
    assert improved == {1: ["raw", "ema"], 2: ["raw", "ema"], 3: ["ema"], 4: []}
    assert not any("best" in e for e in events_of(run) if e["event"] == "epoch")

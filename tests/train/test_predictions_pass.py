"""predictions.json without an extra test pass when the selected model's best epoch is the last one:
the last epoch's own test evaluation keeps its per-image predictions, which are those of the best
weights; otherwise the best weights are evaluated once more, as before."""

from __future__ import annotations

import json

import pytest

from fgbench.rundir import layout

from .conftest import summary_of, write_recipe
from .test_run import run_cli


def _count_passes(monkeypatch) -> list[bool]:
    from fgbench.train import trainer as tr

    calls: list[bool] = []
    real = tr.evaluate

    def counting(*args, **kw):
        calls.append(bool(kw.get("predictions")))
        return real(*args, **kw)

    monkeypatch.setattr(tr, "evaluate", counting)
    return calls


def _confusion_of(pred: dict) -> list[list[int]]:
    n = len(pred["class_names"])
    matrix = [[0] * n for _ in range(n)]
    for y, p in zip(pred["label"], pred["predicted"]):
        matrix[y][p] += 1
    return matrix


@pytest.mark.parametrize("ema", [False, True])
def test_a_best_last_epoch_gives_its_own_predictions_without_another_pass(tmp_path, tiny_folder, monkeypatch, ema):
    calls = _count_passes(monkeypatch)
    recipe = write_recipe(tmp_path, tiny_folder, schedule={"name": "cosine", "epochs": 2, "warmup_epochs": 0},
                          eval={"select_on": "last"}, ema={"enabled": ema, "decay": 0.9, "ramp_steps": 0})
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 0
    models = 2 if ema else 1
    # 2 epochs x (validation + test) x models, and no pass after the last epoch
    assert len(calls) == 2 * 2 * models
    assert calls[-2 * models:] == [False, True] * models  # the last epoch's test passes kept predictions
    pred = json.loads((run / layout.PREDICTIONS_FILE).read_text())
    conf = json.loads((run / layout.CONFUSION_FILE).read_text())
    assert pred["epoch"] == conf["epoch"] == 2 and pred["model"] == conf["model"]
    assert len(pred["label"]) == 60 and _confusion_of(pred) == conf["matrix"]
    # the same numbers as a fresh pass of the saved best weights
    top1 = summary_of(run)["best"][pred["model"]]["test_top1"]
    assert 100.0 * sum(y == p for y, p in zip(pred["label"], pred["predicted"])) / 60 == pytest.approx(top1)


def test_an_earlier_best_epoch_is_evaluated_once_more(tmp_path, tiny_folder, monkeypatch):
    from fgbench.train import selection

    # the tracker sees only the first epoch as an improvement: the best weights are epoch 1's
    real = selection.BestTracker.update

    def first_only(self, epoch, results):
        return real(self, epoch, results) if epoch == 1 else []

    monkeypatch.setattr(selection.BestTracker, "update", first_only)
    calls = _count_passes(monkeypatch)
    recipe = write_recipe(tmp_path, tiny_folder, schedule={"name": "cosine", "epochs": 2, "warmup_epochs": 0})
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 0
    assert len(calls) == 2 * 2 + 1 and calls[-1] is True  # one more pass, of epoch 1's weights
    pred = json.loads((run / layout.PREDICTIONS_FILE).read_text())
    conf = json.loads((run / layout.CONFUSION_FILE).read_text())
    assert pred["epoch"] == conf["epoch"] == 1 and _confusion_of(pred) == conf["matrix"]

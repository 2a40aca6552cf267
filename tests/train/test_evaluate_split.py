"""``fgbench evaluate --split val`` evaluates the run's validation images (a wiring check found by the
mutation run over ``loaders.eval_loader``, issue 18): two mutants that served the test split's images
(or indices) for ``split = "val"`` survived every test, since the trainer only asks it for the test
split. The best checkpoint re-evaluated on each split must score what the run recorded for it there,
on as many images. The run has no EMA: its summary must select the raw model."""

from __future__ import annotations

import pytest

from fgbench.train.predict import evaluate_run

from .conftest import events_of, summary_of, write_recipe
from .test_run import run_cli


def test_evaluate_on_the_val_split_scores_the_runs_validation_images(tmp_path, tiny_folder):
    recipe = write_recipe(tmp_path, tiny_folder, schedule={"name": "cosine", "epochs": 1})  # val_fraction 0.2
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 0
    s = summary_of(run)
    best = s["best"]["raw"]
    # a run without EMA selects its raw model (four Trainer.summary mutants left it None: the
    # oracle's run has EMA, whose best alone made the condition true)
    assert s["best"]["ema"] is None and s["selected"] == "raw"
    assert s["val_images"] == 30 and s["test_images"] == 60  # 10 classes: round(16 * 0.2) held out each; 6 test
    # the best epoch's own evaluation of each split, as metrics.jsonl has it
    recorded = {ev["split"]: ev for ev in events_of(run)
                if ev["event"] == "eval" and ev["model"] == "raw" and ev["epoch"] == best["epoch"]}
    assert recorded["val"]["top1"] == best["val_top1"] and recorded["test"]["top1"] == best["test_top1"]
    # each eval event says at which step and size it was taken, and its loss (five _evaluate_all
    # mutants emptied or dropped these): the step of the epoch's end, the recipe's test size
    (epoch_end,) = [ev for ev in events_of(run) if ev["event"] == "epoch"]
    for ev in recorded.values():
        assert ev["step"] == epoch_end["step"] == s["step"] and ev["test_size"] == 16 and ev["loss"] > 0
    for split, images in (("val", s["val_images"]), ("test", s["test_images"])):
        (res,) = evaluate_run(run, split=split, device="cpu")
        assert res["split"] == split and res["images"] == images == recorded[split]["images"], split
        assert (res["top1"], res["topk"]) == pytest.approx((recorded[split]["top1"], recorded[split]["topk"])), split
    # the splits score differently here, so serving one for the other would show
    assert (recorded["val"]["top1"], recorded["val"]["topk"]) != (recorded["test"]["top1"], recorded["test"]["topk"])

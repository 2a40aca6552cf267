"""Images skipped while evaluating (``data.skip_corrupt``) are left out of the counts a run reports
(a wiring check found by the mutation run over ``Trainer.summary``, issue 18): ``summary.json``'s
``val_images`` and ``test_images`` are the images each split was evaluated on, not the split's size.
Six mutants that read the split's size instead survived every test: no test had an undecodable
validation or test image. The final evaluation at ``eval.final_test_sizes`` skips it too."""

from __future__ import annotations

import shutil
from pathlib import Path

from fgbench.data.index import resolve_index
from fgbench.data.loaders import load_splits
from fgbench.recipe import load_recipe

from .conftest import events_of, summary_of, write_recipe
from .test_run import run_cli

BROKEN = b"\x89PNG\r\n\x1a\n broken"  # a PNG signature and nothing decodable after it


def test_undecodable_val_and_test_images_are_skipped_and_left_out_of_the_counts(tmp_path, tiny_folder):
    data = tmp_path / "data"
    shutil.copytree(tiny_folder, data)
    recipe = write_recipe(tmp_path, data, schedule={"name": "cosine", "epochs": 1}, data={"skip_corrupt": True},
                          eval={"final_test_sizes": [16]})
    # one image the validation split holds out of train, and one test image, made undecodable (the
    # files stay, so the split is the same one)
    cfg = load_recipe(recipe).data
    splits = load_splits(resolve_index(cfg), cfg)
    for path in (splits.train_source.describe(splits.val[0]), splits.test_source.describe(splits.test[0])):
        assert Path(path).is_relative_to(data)
        Path(path).write_bytes(BROKEN)
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 0
    s = summary_of(run)
    # 10 classes of 16 training images, round(16 * 0.2) = 3 held out of each; 6 test images each
    assert (s["val_images"], s["test_images"], s["skipped_images"]) == (30 - 1, 60 - 1, 2)
    evals = [ev for ev in events_of(run) if ev["event"] == "eval"]
    assert {(ev["split"], ev["images"]) for ev in evals} == {("val", 29), ("test", 59)}
    # the final evaluation at the test size skips the same image (counted once) and so scores what the
    # best epoch's test pass scored
    assert s["final_test_sizes"]["16"]["raw"] == s["best"]["raw"]["test_top1"]

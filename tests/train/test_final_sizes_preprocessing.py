"""The preprocessing of the final evaluations at ``eval.final_test_sizes`` (a wiring check found by
the mutation run over ``Trainer._final``, issue 18): each extra size keeps the recipe's
``data.test_crop`` (``ratio`` crops at that size, as the README's table says), and only a recipe
whose images are used as they are (``test_crop = "none"``) has them resized to a size other than its
test size. The oracle's run uses ``none``, so it could not tell a final size of a ``ratio`` recipe
being resized instead of cropped. The ``final_eval`` events (which model, size, best epoch, top-1
and top-k) must agree with ``summary.json`` and, at the test size, with the best epoch's test pass,
and so must the lines the run prints."""

from __future__ import annotations

import pytest

import fgbench.train.trainer as tr
from fgbench.cli import main
from fgbench.data import loaders

from .conftest import events_of, summary_of, write_recipe


def _final_crops(tmp_path, tiny_folder, monkeypatch, capsys, test_crop: str) -> list[tuple[int, str]]:
    """(size, test_crop) of each loader the run's final evaluations asked for."""
    seen: list[tuple[int, str]] = []
    in_final = []
    real_loader, real_final = loaders.eval_loader, tr.Trainer._final

    def eval_loader(splits, data, **kw):
        if in_final:
            seen.append((kw["test_size"], data.test_crop))
        return real_loader(splits, data, **kw)

    def final(self):
        in_final.append(True)
        try:
            return real_final(self)
        finally:
            in_final.clear()

    monkeypatch.setattr(loaders, "eval_loader", eval_loader)
    monkeypatch.setattr(tr.Trainer, "_final", final)
    recipe = write_recipe(tmp_path, tiny_folder, name=f"{test_crop}.toml",
                          data={"test_crop": test_crop, "val_fraction": 0.0},
                          schedule={"name": "cosine", "epochs": 1},
                          eval={"select_on": "test", "final_test_sizes": [16, 24]})
    run = tmp_path / f"run-{test_crop}"
    assert main(["run", str(recipe), "--run-dir", str(run), "--progress", "lines"]) == 0
    printed = capsys.readouterr().out.splitlines()
    # the final_eval events say what summary.json holds; at the test size (16) the best weights on
    # the same images under the same preprocessing score what the best epoch's own test pass scored
    s = summary_of(run)
    best = s["best"]["raw"]
    finals = [e for e in events_of(run) if e["event"] == "final_eval"]
    assert [(e["model"], e["test_size"]) for e in finals] == [("raw", 16), ("raw", 24)]
    for e in finals:
        assert e["epoch"] == best["epoch"] and e["top1"] == s["final_test_sizes"][str(e["test_size"])]["raw"]
    assert (finals[0]["top1"], finals[0]["topk"]) == pytest.approx((best["test_top1"], best["test_topk"]))
    assert 0 <= finals[1]["top1"] <= finals[1]["topk"] <= 100
    for e in finals:  # and the lines printed say the same (eval.top_k is 5 by default, of 10 classes)
        line = f"final test at {e['test_size']}px (raw, epoch {best['epoch']}): top-1 {e['top1']:.2f}%  top-5 {e['topk']:.2f}%"
        assert line in printed, (line, printed)
    return seen


@pytest.mark.parametrize("test_crop, want", [
    ("ratio", [(16, "ratio"), (24, "ratio")]),  # cropped at every size, never squashed
    ("none", [(16, "none"), (24, "resize")]),  # as they are at the test size (16), resized to 24
])
def test_final_sizes_keep_the_test_crop_and_resize_only_images_used_as_they_are(
        tmp_path, tiny_folder, monkeypatch, capsys, test_crop, want):
    assert _final_crops(tmp_path, tiny_folder, monkeypatch, capsys, test_crop) == want

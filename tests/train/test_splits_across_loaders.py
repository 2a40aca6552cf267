"""A run's splits are a function of the dataset index, ``data.val_fraction`` and ``data.val_seed``
only, whichever loader decodes the images: with ``data.skip_corrupt`` an undecodable image keeps its
place in the index (the cached loader used to leave it out of its list and draw the validation split
from the images it could decode, so the same recipe got another validation split with it, and with
``loader = "auto"`` the split depended on the machine). Every loader skips the image when it meets
it, counts it once, and leaves it out of the counts of what was evaluated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fgbench.data.index import resolve_index
from fgbench.data.loaders import load_splits, stratified_split
from fgbench.data.synthetic import CLASS_NAMES
from fgbench.recipe import load_recipe

from .conftest import events_of, summary_of, write_recipe
from .test_run import run_cli

LOADERS = ("standard", "device", "cached")
BROKEN = b"\x89PNG\r\n\x1a\n not an image"  # a PNG signature and nothing decodable after it


def _by_path(splits) -> dict[str, list[str]]:
    """Each split's images, by path relative to the dataset."""
    root = Path(splits.index.root)

    def names(src, idx):
        return [str(Path(src.describe(i)).relative_to(root)) for i in idx]

    return {"train": names(splits.train_source, splits.train), "val": names(splits.train_source, splits.val),
            "test": names(splits.test_source, splits.test)}


@pytest.mark.parametrize("where", ["train", "val", "test"])
def test_every_loader_draws_the_same_splits_and_skips_the_bad_image_once(tmp_path, tiny_folder, monkeypatch, where):
    monkeypatch.setenv("FGBENCH_HOME", str(tmp_path / "home"))  # the cached loader's cache
    data = tmp_path / "data"
    shutil.copytree(tiny_folder, data)
    # Worked out from the index alone (stratified_split's rule over the index's labels): what every
    # loader must hold, the bad image included (it keeps its place).
    index_cfg = load_recipe(write_recipe(tmp_path, data, name="index.toml")).data
    index = resolve_index(index_cfg)
    train_idx, val_idx = stratified_split([y for _, y in index.train], 0.2, index_cfg.val_seed)
    expected = {"train": [str(Path(index.train[i][0]).relative_to(data)) for i in train_idx],
                "val": [str(Path(index.train[i][0]).relative_to(data)) for i in val_idx],
                "test": [str(Path(p).relative_to(data)) for p, _ in index.test]}
    assert (len(expected["train"]), len(expected["val"]), len(expected["test"])) == (130, 30, 60)
    # the first image of class 2 that the index's split puts in ``where``; made undecodable (the file stays)
    rel = next(r for r in expected[where] if Path(r).parent.name == CLASS_NAMES[2])
    (data / rel).write_bytes(BROKEN)

    summaries = {}
    for loader in LOADERS:
        recipe = write_recipe(tmp_path, data, name=f"{loader}.toml", schedule={"name": "cosine", "epochs": 1},
                              data={"loader": loader, "skip_corrupt": True}, eval={"final_test_sizes": [16]})
        cfg = load_recipe(recipe).data
        splits = load_splits(resolve_index(cfg), cfg)
        assert splits.loader == loader
        assert _by_path(splits) == expected, loader
        assert splits.image_counts() == {"train": 130, "val": 30, "test": 60}, loader
        run = tmp_path / f"run-{loader}"
        assert run_cli(str(recipe), "--run-dir", str(run)) == 0, loader
        s = summary_of(run)
        evals = {(ev["split"], ev["images"]) for ev in events_of(run) if ev["event"] == "eval"}
        summaries[loader] = s
        # the bad image is counted once, and left out of the images its split was evaluated on
        val_n, test_n = 30 - (where == "val"), 60 - (where == "test")
        assert s["skipped_images"] == 1, (loader, s["skipped_images"])
        assert (s["train_images"], s["val_images"], s["test_images"]) == (130, val_n, test_n), loader
        assert evals == {("val", val_n), ("test", test_n)}, (loader, evals)
        # the final evaluation meets the same image (still counted once above) and scores what the epoch's
        # test pass scored; the test predictions name every test image but a skipped one, by path
        assert s["final_test_sizes"]["16"]["raw"] == s["best"]["raw"]["test_top1"], loader
        predictions = json.loads((run / "predictions.json").read_text())
        assert [str(Path(f).relative_to(data)) for f in predictions["file"]] == [
            r for r in expected["test"] if r != rel], loader
    # the cached loader hands the transforms the very pixels the standard one decodes: same run, same numbers
    assert summaries["cached"]["best"] == summaries["standard"]["best"]

"""The quickstart recipe, exactly as a user runs it (slow: a real minute of CPU training)."""

from __future__ import annotations

import json

import pytest

from fgbench.cli import main


def test_synthetic_normalization_constants_match_the_generated_data(full_synthetic):
    import numpy as np
    from PIL import Image

    from fgbench.data.transforms import DATASET_STATS

    files = sorted(full_synthetic.glob("train/*/*.png"))
    assert len(files) == 2500
    x = np.stack([np.asarray(Image.open(f)) for f in files]).astype(np.float64) / 255
    mean, std = DATASET_STATS["synthetic"]
    assert x.mean((0, 1, 2)) == pytest.approx(mean, abs=6e-4)
    assert x.std((0, 1, 2)) == pytest.approx(std, abs=6e-4)


@pytest.mark.slow
def test_quickstart_reaches_90_percent(full_synthetic, tmp_path, capsys):
    import torch

    torch.set_num_threads(2)  # the recipe's promise is for 2 cores
    run = tmp_path / "run"
    code = main(["run", "recipes/quickstart.toml", "--set", f"data.root={full_synthetic}", "--run-dir", str(run),
                 "--progress", "none"])
    assert code == 0
    s = json.loads((run / "summary.json").read_text())
    print(f"quickstart: best raw test {s['best']['raw']['test_top1']:.2f}%, "
          f"ema {s['best']['ema']['test_top1']:.2f}%, last {s['last']['raw']['test_top1']:.2f}%")
    assert s["best"]["raw"]["test_top1"] >= 90 and s["best"]["ema"]["test_top1"] >= 90
    assert s["last"]["raw"]["test_top1"] >= 90

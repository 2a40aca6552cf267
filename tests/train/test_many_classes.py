"""10,000 classes (iNaturalist's size; issue 21, item 5): the confusion of a large label set is kept
as its non-zero cells, in memory, in checkpoints and on disk (``confusion.npy``), never as a
10^8-cell matrix or its Python lists. A synthetic 10,000-class evaluation stands in for training:
the model's prediction for each image is scripted, so the expected counts are worked out from the
script alone.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fgbench import report
from fgbench.rundir import confusion as RC
from fgbench.train.loop import Engine, evaluate
from fgbench.train.trainer import BestTracker

C = 10_000
N = 300


class Scripted(nn.Module):
    """Predicts the class written in its input (one float per image)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return F.one_hot(x[:, 0].long(), C).float() * 5.0


class Split:
    def __init__(self, labels, preds, batch=64):
        self.labels, self.preds, self.batch = labels, preds, batch

    def batches(self):
        for i in range(0, len(self.labels), self.batch):
            yield (torch.tensor(self.preds[i:i + self.batch], dtype=torch.float32)[:, None],
                   torch.tensor(self.labels[i:i + self.batch]), ())


@pytest.fixture(scope="module")
def script():
    rng = random.Random(7)
    labels = [rng.randrange(40) for _ in range(N)]  # 40 classes hold the test images; 9,960 have none
    preds = [y if rng.random() < 0.6 else rng.randrange(40) for y in labels]
    return labels, preds


@pytest.fixture(scope="module")
def ev(script):
    labels, preds = script
    model = Scripted()
    engine = Engine(model=model, forward=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), scheduler=None,
                    criterion=None, device=torch.device("cpu"), amp_dtype=None)
    return evaluate(model, Split(labels, preds), engine, num_classes=C, top_k=5)


def test_a_10k_class_evaluation_counts_only_the_cells_that_occur(ev, script):
    labels, preds = script
    want = Counter(zip(labels, preds))
    assert ev["confusion"] is None  # no dense 10,000 x 10,000 matrix
    cells = ev["confusion_cells"]
    assert cells.dtype == torch.long and cells.shape == (len(want), 3)
    assert {(i, j): v for i, j, v in cells.tolist()} == dict(want)
    assert ev["top1"] == pytest.approx(100.0 * sum(y == p for y, p in zip(labels, preds)) / N)


def test_the_tracker_checkpoint_and_confusion_files_stay_small_and_readers_agree(ev, script, tmp_path):
    labels, preds = script
    t = BestTracker("test", False)
    assert t.update(1, {"raw": {"val": None, "test": ev}, "ema": None}) == ["raw"]
    # the checkpoint's copy: the cells, loadable the safe way
    torch.save(t.state_dict(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["confusion"]["raw"].numel() == 3 * len(Counter(zip(labels, preds)))
    assert (tmp_path / "state.pt").stat().st_size < 100_000

    names = [f"species_{i:05d}" for i in range(C)]
    run = tmp_path / "run"
    run.mkdir()
    RC.write_confusion(run, model="raw", class_names=names, epoch=1, cells=t.confusion["raw"].numpy())
    assert (run / "confusion.npy").stat().st_size < 16_000
    assert (run / "confusion.json").stat().st_size < 400_000  # the 10,000 names, no matrix

    conf = RC.read_confusion(run)
    assert RC.has_confusion(conf) and "matrix" not in conf
    acc = report.per_class_accuracy(conf)
    assert len(acc) == C
    total, right = Counter(labels), Counter(y for y, p in zip(labels, preds) if y == p)
    for name, correct, n, pct in (acc[0], acc[17], acc[39], acc[40], acc[C - 1]):
        i = int(name.split("_")[1])
        assert (correct, n) == (right[i], total[i])
        assert pct == (pytest.approx(100.0 * right[i] / total[i]) if total[i] else None)
    wrong = Counter((y, p) for y, p in zip(labels, preds) if y != p)
    top = sorted(wrong.items(), key=lambda kv: (-kv[1], -kv[1] / total[kv[0][0]], names[kv[0][0]], names[kv[0][1]]))
    assert [(t_, p_, n) for t_, p_, n, _ in report.confused_pairs(conf, 5)] == [
        (names[i], names[j], n) for (i, j), n in top[:5]]
    assert "10000 classes" in report.confusion_text(conf)


def test_a_small_confusion_is_still_a_matrix_in_json(tmp_path):
    RC.write_confusion(tmp_path, model="ema", class_names=["a", "b"], epoch=3, matrix=[[3, 1], [0, 4]])
    conf = RC.read_confusion(tmp_path)
    assert conf["matrix"] == [[3, 1], [0, 4]] and not (tmp_path / "confusion.npy").exists()
    assert report.per_class_accuracy(conf) == [("a", 3, 4, 75.0), ("b", 4, 4, 100.0)]


def test_a_cells_file_outside_the_run_or_with_pickles_is_not_read(tmp_path):
    import json

    import numpy as np

    RC.write_confusion(tmp_path, model="raw", class_names=["a"] * 2000, epoch=1, cells=np.array([[0, 1, 2]]))
    doc = json.loads((tmp_path / "confusion.json").read_text())
    (tmp_path / "confusion.json").write_text(json.dumps({**doc, "cells_file": "../elsewhere.npy"}))
    assert RC.read_confusion(tmp_path) is None
    np.save(tmp_path / "confusion.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "confusion.json").write_text(json.dumps(doc))
    assert RC.read_confusion(tmp_path) is None


def test_a_run_past_the_dense_limit_keeps_cells_through_the_trainers_own_end_of_epoch(tmp_path):
    """The tests above drive ``evaluate`` and ``BestTracker`` directly; this one trains: a real
    run of 1,100 classes (past ``DENSE_MAX_CLASSES``) through the trainer's end of epoch, the last
    epoch's kept predictions and the final confusion. Its two outputs are checked against each
    other: the cells of ``confusion.npy`` are the (label, predicted) pairs ``predictions.json``
    lists, and the last checkpoint keeps the same cells, not a matrix."""
    import io
    import json

    from PIL import Image

    from fgbench.cli import main

    from .conftest import write_recipe

    n = RC.DENSE_MAX_CLASSES + 100
    blobs = []
    for k in range(8):
        b = io.BytesIO()
        Image.new("RGB", (8, 8), (30 * k, 255 - 30 * k, 90)).save(b, "PNG")
        blobs.append(b.getvalue())
    data = tmp_path / "data"
    for split in ("train", "test"):
        for c in range(n):
            d = data / split / f"c{c:04d}"
            d.mkdir(parents=True)
            (d / "0.png").write_bytes(blobs[c % 8])
    recipe = write_recipe(tmp_path, data, data={"train_size": 8, "test_size": 8, "train_crop": "resize",
                                                "val_fraction": 0.0, "batch_size": 128},
                          schedule={"name": "cosine", "epochs": 2}, eval={"select_on": "last"})
    run = tmp_path / "run"
    assert main(["run", str(recipe), "--run-dir", str(run), "--progress", "none"]) == 0

    conf = json.loads((run / "confusion.json").read_text())
    assert "matrix" not in conf and conf["cells_file"] == "confusion.npy" and conf["num_classes"] == n
    pred = json.loads((run / "predictions.json").read_text())
    assert len(pred["label"]) == n and sorted(pred["label"]) == list(range(n))
    pairs = Counter(zip(pred["label"], pred["predicted"]))
    cells = {(i, j): v for i, j, v in RC.read_confusion(run)["cells"]}
    assert cells == dict(pairs)
    summary = json.loads((run / "summary.json").read_text())
    right = sum(v for (i, j), v in pairs.items() if i == j)
    assert summary["best"]["raw"]["test_top1"] == pytest.approx(100.0 * right / n)
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["best_tracker"]["confusion"]["raw"]
    assert isinstance(state, torch.Tensor) and state.shape == (len(pairs), 3)
    assert {(i, j): v for i, j, v in state.tolist()} == dict(pairs)

"""The oracle (issue 18): every number a real run reports, recomputed by code that shares nothing
with fgbench's data and evaluation code, must come out equal.

Two small real runs (a generated 10-class folder of 16 x 16 images; a validation split; MixUp and
CutMix; label smoothing in the ``torch`` style in one run and the ``cyizhuo`` style in the other;
EMA; two stages, the second starting from the first stage's best EMA weights; two extra test
sizes) are trained through ``fgbench run``. The test harness only watches: it copies ``last.pt``
after every epoch, keeps the initial weights, and records the batches the loaders hand out and
the batches the mixer receives. It changes nothing the trainer computes.

The checker then works from the files and the recorded batches alone, with plain torchvision
(``ImageFolder``, ``ToTensor``, ``Normalize`` with the ImageNet constants written out below,
``Resize``), its own counting loop and its own smoothed cross-entropy; only the network
definition (``build_model``) comes from fgbench. It requires:

* the splits: every validation image is a training-folder image (none from the test folder), none
  of them is ever trained on, each class gives ``round(n * val_fraction)`` of them (the README's
  rule), every trained image is a training-folder image under the training transform (pad 2,
  crop, flip) with its own label, and the test loader serves the test folder;
* every per-epoch evaluation in ``metrics.jsonl`` (raw and EMA, validation and test, top-1 and
  top-k) equals the checker's evaluation of that epoch's weights;
* ``best.pt``: the epoch of each model is the first epoch of the last stage with the highest
  validation top-1, and its weights are that epoch's;
* ``summary.json``: best, last, selected, final test sizes (the best weights of each model at 12
  and 24 px, the images resized as the README says), image counts, epochs and steps;
* the ``runs list`` and ``runs compare`` columns (CSV, full precision) equal the checker's values,
  the ``epochs`` column too (epochs ended, of the stages' planned epochs), and so does the headline
  row every table and text is built from (``Summary.headline``: each model's best epoch, top-k at
  the raw best epoch, the final sizes); the time column lies within the harness's clock around the
  run, and img/s is the images the mixer received over the epoch events' training time;
* the logged losses of the run's first step, of the first step of epoch 2 and of the second
  stage's first step equal the checker's smoothed cross-entropy, on the recorded mixed batch, of
  the initial weights, of the weights ``last.pt`` held after epoch 1, and of the first stage's best
  EMA weights (the stage's ``init_from``).

Runs in about 30 s of one CPU core.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import shutil
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision import datasets, transforms

import fgbench.train.trainer as tr
from fgbench import report, rundir
from fgbench.cli import main
from fgbench.data import synthetic
from fgbench.recipe import load_recipe
from fgbench.train.models import build_model

from .conftest import events_of

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # data.normalize = "imagenet"
PAD = 2  # data.crop_padding
VAL_FRACTION = 0.25
TOP_K = 3
FINAL_SIZES = (12, 24)
CLASSES = 10
EPOCHS = (2, 2)  # the first stage's epochs (schedule.epochs), the second stage's


def recipe_text(root: Path, style: str) -> str:
    return f"""
name = "oracle-{style}"
[data]
dataset = "folder"
root = "{root}"
train_size = 16
test_size = 16
train_crop = "pad_crop"
crop_padding = {PAD}
test_crop = "none"
normalize = "imagenet"
val_fraction = {VAL_FRACTION}
val_seed = 3
batch_size = 16
workers = 0
loader = "standard"
[model]
arch = "small_cnn"
[optim]
name = "sgd"
lr = 0.1
momentum = 0.9
[schedule]
name = "cosine"
epochs = {EPOCHS[0]}
[augment]
hflip = true
mixup_alpha = 0.4
cutmix_alpha = 0.4
[loss]
label_smoothing = 0.2
smoothing_style = "{style}"
[ema]
enabled = true
decay = 0.8
ramp_steps = 0
[eval]
final_test_sizes = [{FINAL_SIZES[0]}, {FINAL_SIZES[1]}]
top_k = {TOP_K}
select_on = "val"
[runtime]
device = "cpu"
channels_last = false  # the checker's memory layout: both compute with the same kernels
seed = 1
log_every_steps = 1
[[stages]]
name = "second"
epochs = {EPOCHS[1]}
lr = 0.01
init_from = "best_ema"
"""


# ------------------------------------------------------------------------------ the watched run


def _watched_run(root: Path, runs_root: Path, style: str) -> dict:
    """Train one recipe through ``fgbench run``; return what the harness saw."""
    seen: dict = {"snapshots": {}, "mixer_in": [], "mixer_out": [], "evals": [], "initial": None, "style": style}
    run_dir = runs_root / f"oracle-{style}"
    snaps = runs_root.parent / f"snapshots-{style}"
    snaps.mkdir()
    recipe = runs_root.parent / f"oracle-{style}.toml"
    recipe.write_text(recipe_text(root, style), encoding="utf-8")
    state: dict = {}
    orig_begin, orig_save_last, orig_evaluate = tr.Trainer._begin_stage, tr.Trainer._save_last, tr.evaluate
    orig_mixer = tr.BatchMixer

    def begin_stage(self, st):
        state["trainer"] = self
        if st.index == 0:
            seen["initial"] = copy.deepcopy(self.model.state_dict())
        return orig_begin(self, st)

    def save_last(self, *, stage, epoch, batch=0, stats=None, **more):
        orig_save_last(self, stage=stage, epoch=epoch, batch=batch, stats=stats, **more)
        if not batch:  # the end of an epoch: the weights that epoch was evaluated with
            self.saver.wait()  # checkpoints are written in the background
            dst = snaps / f"epoch{epoch}.pt"
            shutil.copyfile(self.ckpt_dir / "last.pt", dst)
            seen["snapshots"][epoch] = dst

    class Recording:
        def __init__(self, inner, split):
            self.inner, self.split = inner, split

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def batches(self, *a, **kw):
            got = []
            for x, y, bad in self.inner.batches(*a, **kw):
                got.append((x.detach().clone(), y.detach().clone()))
                yield x, y, bad
            seen["evals"].append((self.split, got))

    def evaluate(model, loader, engine, **kw):
        t = state["trainer"]
        split = "val" if loader is t.loaders.val else "test" if loader is t.loaders.test else "other"
        return orig_evaluate(model, Recording(loader, split), engine, **kw)

    class RecordingMixer(orig_mixer):
        def __call__(self, x, y):
            seen["mixer_in"].append((x.detach().clone(), y.detach().clone()))
            out = super().__call__(x, y)
            seen["mixer_out"].append((out[0].detach().clone(), out[1].detach().clone()))
            return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tr.Trainer, "_begin_stage", begin_stage)
        mp.setattr(tr.Trainer, "_save_last", save_last)
        mp.setattr(tr, "evaluate", evaluate)
        mp.setattr(tr, "BatchMixer", RecordingMixer)
        started = time.monotonic()
        assert main(["run", str(recipe), "--run-dir", str(run_dir), "--progress", "none"]) == 0
        seen["wall_s"] = time.monotonic() - started  # the whole run, as the harness's clock saw it
    seen["run_dir"] = run_dir
    seen["recipe"] = load_recipe(recipe)
    return seen


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("oracle-data") / "data"
    synthetic.generate(root, train_per_class=12, test_per_class=4, size=16)
    return root


@pytest.fixture(scope="module", params=["torch", "cyizhuo"])
def oracle(request, data_root, tmp_path_factory):
    """One style's run, watched, with its ``runs list``/``runs compare`` rows and the checker's view.
    A fixture per style (not one for both) so that a mutation tool that runs only the tests which
    reached the mutated code runs the test of each style that did."""
    style = request.param
    base = tmp_path_factory.mktemp(f"oracle-{style}")
    runs_root = base / "runs"
    runs_root.mkdir()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("FGBENCH_HOME", str(base / "home"))
            seen = _watched_run(data_root, runs_root, style)
            listed = _cli(["runs", "list", "--runs-root", str(runs_root), "--format", "csv"])
            compared = _cli(["runs", "compare", "--runs-root", str(runs_root), "--format", "csv", str(seen["run_dir"])])
            checker = Checker(data_root, seen)
    finally:
        torch.set_num_threads(threads)
    return {"style": style, "seen": seen, "list": listed, "compare": compared, "checker": checker}


def _cli(argv: list[str]) -> list[dict[str, str]]:
    import contextlib

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(argv) == 0
    return list(csv.DictReader(io.StringIO(buf.getvalue())))


# ------------------------------------------------------------------------------- the checker


def _folder(root: Path, split: str, size: int | None = None):
    """(files, labels, normalised tensors) of a split, read with plain torchvision; ``size``: the
    images resized to size x size (bilinear, antialiased: a final test size with test_crop none)."""
    steps = [transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BILINEAR, antialias=True)] \
        if size else []
    tf = transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    ds = datasets.ImageFolder(str(root / split), transform=tf)
    assert len(ds.classes) == CLASSES
    xs = torch.stack([ds[i][0] for i in range(len(ds))])
    return [p for p, _ in ds.samples], [y for _, y in ds.samples], xs


def _train_variants(root: Path) -> tuple[torch.Tensor, list[int]]:
    """Every training-folder image under every outcome of the training transform (zero padding of
    PAD, a 16 x 16 crop at each offset, flipped or not), normalised; and the image each row is of."""
    ds = datasets.ImageFolder(str(root / "train"), transform=transforms.ToTensor())
    norm = transforms.Normalize(MEAN, STD)
    rows, owner = [], []
    for i in range(len(ds)):
        padded = F.pad(ds[i][0], (PAD, PAD, PAD, PAD))  # RandomCrop's padding fills 0 before normalising
        for dy in range(2 * PAD + 1):
            for dx in range(2 * PAD + 1):
                crop = padded[:, dy:dy + 16, dx:dx + 16]
                for img in (crop, crop.flip(-1)):
                    rows.append(norm(img))
                    owner.append(i)
    return torch.stack(rows), owner


def _match(x: torch.Tensor, candidates: torch.Tensor) -> list[int | None]:
    """For each image of ``x``, the index of the candidate it equals (up to float rounding), or None."""
    d = torch.cdist(x.flatten(1).double(), candidates.flatten(1).double(), p=float("inf"))
    best = d.min(dim=1)
    return [int(j) if v < 1e-5 else None for v, j in zip(best.values.tolist(), best.indices.tolist())]


def _net(recipe, weights: dict) -> torch.nn.Module:
    net = build_model(recipe.model, CLASSES, data_cfg=recipe.data).model
    net.load_state_dict(weights)
    return net.eval()


@torch.no_grad()
def _accuracy(net: torch.nn.Module, xs: torch.Tensor, ys: list[int]) -> tuple[float, float]:
    """(top-1, top-k) in percent, counted one image at a time."""
    logits = torch.cat([net(xs[i:i + 32]) for i in range(0, len(xs), 32)])  # the run's evaluation batch
    top1 = topk = 0
    for row, y in zip(logits, ys):
        order = sorted(range(CLASSES), key=lambda c: -float(row[c]))
        top1 += order[0] == y
        topk += y in order[:TOP_K]
    return 100.0 * top1 / len(ys), 100.0 * topk / len(ys)


def _smoothed_ce(logits: torch.Tensor, target: torch.Tensor, s: float, style: str) -> float:
    """Cross-entropy against the smoothed target, both styles written out: torch gives the true
    class 1 - s + s/C and the others s/C; cyizhuo 1 - s and s/(C-1). ``target`` is a probability
    vector (a MixUp/CutMix mixture of one-hots); both maps are affine, so smoothing it is exact."""
    c = logits.shape[1]
    if style == "torch":
        q = target * (1 - s) + s / c
    else:
        q = target * (1 - s) + (1 - target) * s / (c - 1)
    return float((-(q * torch.log_softmax(logits.double(), dim=1)).sum(dim=1)).mean())


class Checker:
    """The checker's own view of one run."""

    def __init__(self, root: Path, seen: dict):
        self.seen, self.recipe = seen, seen["recipe"]
        self.train_files, self.train_labels, self.train_x = _folder(root, "train")
        self.test_files, self.test_labels, self.test_x = _folder(root, "test")
        self.variants, self.owner = _train_variants(root)
        self.val_idx = self._validation_images()
        self.val_x = self.train_x[self.val_idx]
        self.val_y = [self.train_labels[i] for i in self.val_idx]
        self.results: dict[int, dict] = {}
        for epoch, path in sorted(seen["snapshots"].items()):
            ck = torch.load(path, map_location="cpu", weights_only=True)
            self.results[epoch] = {"stage": ck["stage"], "weights": {"raw": ck["model"], "ema": ck["ema"]}}
            for model in ("raw", "ema"):
                net = _net(self.recipe, ck["model" if model == "raw" else "ema"])
                self.results[epoch][model] = {"val": _accuracy(net, self.val_x, self.val_y),
                                              "test": _accuracy(net, self.test_x, self.test_labels)}

    def _validation_images(self) -> list[int]:
        """The training-folder images the validation loader served (each exactly once), checked."""
        val_calls = [got for split, got in self.seen["evals"] if split == "val"]
        assert val_calls, "the validation split was never evaluated"
        first = None
        for got in val_calls:
            x = torch.cat([b[0] for b in got])
            y = torch.cat([b[1] for b in got]).tolist()
            assert _match(x, self.test_x) == [None] * len(x), "a validation image comes from the test folder"
            idx = _match(x, self.train_x)
            assert None not in idx, "a validation image is not a training-folder image under the test transform"
            assert [self.train_labels[i] for i in idx] == y, "validation labels"
            assert len(set(idx)) == len(idx)
            first = first if first is not None else sorted(idx)
            assert sorted(idx) == first, "the validation split changed between evaluations"
        return first

    def epochs_of_last_stage(self) -> list[int]:
        last_stage = max(r["stage"] for r in self.results.values())
        return [e for e, r in sorted(self.results.items()) if r["stage"] == last_stage]

    def best_epoch(self, model: str) -> int:
        """The first epoch of the last stage with the highest validation top-1."""
        epochs = self.epochs_of_last_stage()
        top = max(self.results[e][model]["val"][0] for e in epochs)
        return next(e for e in epochs if self.results[e][model]["val"][0] == top)

    def final(self, model: str, size: int) -> float:
        best = self.results[self.best_epoch(model)]["weights"][model]
        _, ys, xs = _folder(Path(self.train_files[0]).parents[2], "test", size)
        return _accuracy(_net(self.recipe, best), xs, ys)[0]




# ----------------------------------------------------------------------------------- the tests


def check_splits(o: dict) -> None:
    """The split checks (see the module docstring)."""
    c, seen = o["checker"], o["seen"]
    # validation: round(12 * 0.25) = 3 images of each class, all from the training folder (checked above)
    per_class = [sum(1 for i in c.val_idx if c.train_labels[i] == k) for k in range(CLASSES)]
    assert per_class == [round(12 * VAL_FRACTION)] * CLASSES
    # every trained image is a training-folder image under the training transform, with its label,
    # and never a validation image
    trained = set()
    for x, y in seen["mixer_in"]:
        rows = _match(x, c.variants)
        assert None not in rows, "a training image is not a padded crop (or its flip) of a training-folder image"
        files = [c.owner[r] for r in rows]
        assert [c.train_labels[i] for i in files] == y.tolist()
        trained.update(files)
    assert not trained & set(c.val_idx), "a validation image was trained on"
    assert len(trained) > 60  # 90 training images, 80 drawn an epoch, 4 epochs
    # the test loader serves the test folder, in full, with its labels
    for split, got in seen["evals"]:
        if split == "test":
            x = torch.cat([b[0] for b in got])
            assert sorted(_match(x, c.test_x)) == list(range(len(c.test_x)))


def check_evaluation_events(o: dict) -> None:
    c, run = o["checker"], o["seen"]["run_dir"]
    evs = events_of(run)
    got = {}
    for ev in evs:
        if ev["event"] == "eval":
            got[(ev["epoch"], ev["model"], ev["split"])] = (ev["top1"], ev["topk"], ev["images"])
    assert sorted(c.results) == [1, 2, 3, 4]
    for epoch, r in c.results.items():
        for model in ("raw", "ema"):
            for split, n in (("val", 30), ("test", 40)):
                assert got[(epoch, model, split)] == (*r[model][split], n), (epoch, model, split)
    epochs = {ev["epoch"]: ev for ev in evs if ev["event"] == "epoch"}
    for epoch, r in c.results.items():
        for key, (model, split) in {"val_top1": ("raw", "val"), "test_top1": ("raw", "test"),
                                    "ema_val_top1": ("ema", "val"), "ema_test_top1": ("ema", "test")}.items():
            assert epochs[epoch][key] == r[model][split][0], (epoch, key)


def check_best_checkpoint(o: dict) -> None:
    c, run = o["checker"], o["seen"]["run_dir"]
    best = torch.load(run / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    want = {m: c.best_epoch(m) for m in ("raw", "ema")}
    assert best["epochs"] == want
    for model, key in (("raw", "model"), ("ema", "ema")):
        ref = c.results[want[model]]["weights"][model]
        assert best[key].keys() == ref.keys()
        assert all(torch.equal(best[key][k], ref[k]) for k in ref), model


def _expected_summary(c: Checker) -> dict:
    def view(model: str, epoch: int) -> dict:
        r = c.results[epoch][model]
        return {"val_top1": r["val"][0], "test_top1": r["test"][0], "test_topk": r["test"][1]}

    best = {m: {"epoch": c.best_epoch(m), **view(m, c.best_epoch(m))} for m in ("raw", "ema")}
    last = max(c.results)
    return {
        "best": best,
        "last": {"epoch": last, "raw": view("raw", last), "ema": view("ema", last)},
        "selected": "ema" if best["ema"]["val_top1"] >= best["raw"]["val_top1"] else "raw",
        "final_test_sizes": {str(s): {m: c.final(m, s) for m in ("raw", "ema")} for s in FINAL_SIZES},
        "train_images": 90, "val_images": 30, "test_images": 40, "epochs_done": 4, "total_epochs": 4,
        "step": 4 * (90 // 16), "top_k": TOP_K, "select_on": "val", "status": "completed",
        "run_id": c.seen["run_dir"].name, "name": f"oracle-{c.seen['style']}", "dataset": "folder", "arch": "small_cnn",
        "skipped_images": 0, "peak_mem_mb": None, "gpu_util": None,  # a CPU run of readable images
    }


def check_summary(o: dict) -> None:
    c, run = o["checker"], o["seen"]["run_dir"]
    summary = json.loads((run / "summary.json").read_text())
    want = _expected_summary(c)
    for key, value in want.items():
        assert summary[key] == value, key
    # the fixture can tell the models apart: a wiring that swapped raw and EMA weights would show
    finals = want["final_test_sizes"]
    assert any(finals[s]["raw"] != finals[s]["ema"] for s in finals) or \
        want["last"]["raw"] != want["last"]["ema"]


def check_columns(o: dict) -> None:
    want = _expected_summary(o["checker"])
    b, last = want["best"], want["last"]
    cols = {"val_top1": b["raw"]["val_top1"], "test_top1_best": b["raw"]["test_top1"],
            "test_top1_last": last["raw"]["test_top1"], "ema_val_top1": b["ema"]["val_top1"],
            "ema_test_top1_best": b["ema"]["test_top1"], "ema_test_top1_last": last["ema"]["test_top1"]}
    # the fixture tells a column "at best" from "at last": some model's best epoch is not the last and
    # its test top-1 there differs
    assert any(b[m]["epoch"] != last["epoch"] and b[m]["test_top1"] != last[m]["test_top1"] for m in ("raw", "ema"))
    run_id = o["seen"]["run_dir"].name
    (row,) = [r for r in o["list"] if r["run"] == run_id]
    for key, value in cols.items():
        assert float(row[key]) == value, ("runs list", key)
    (crow,) = [r for r in o["compare"] if r["run"] == run_id]
    for key, value in cols.items():
        assert float(crow[key]) == value, ("runs compare", key)
    for size in FINAL_SIZES:
        assert float(crow[f"test@{size}"]) == want["final_test_sizes"][str(size)]["raw"]
        assert float(crow[f"ema_test@{size}"]) == want["final_test_sizes"][str(size)]["ema"]
    # the text columns: the run's recipe, data and model as the recipe names them, completed, not damaged
    assert {k: row.get(k) for k in ("status", "recipe", "dataset", "model", "damaged")} == \
        {"status": "completed", "recipe": f"oracle-{o['style']}", "dataset": "folder", "model": "small_cnn", "damaged": None}
    assert "status" not in crow  # compare shows a status column only when some run did not complete
    assert "gpu_util" not in row and "gpu_util" not in crow  # nor a GPU column without GPU numbers (a CPU run)
    # the epochs column: the epochs the checker saw end (a last.pt each), of the two stages' planned ones
    epochs = f"{len(o['checker'].results)}/{sum(EPOCHS)}"
    assert (row["epochs"], crow["epochs"]) == (epochs, epochs)
    # the time and img/s columns are the run's: its duration, within the harness's clock around the
    # whole run; its training rate, every image the mixer received over the epochs' training time
    seen, evs = o["seen"], events_of(o["seen"]["run_dir"])
    duration = float(row["duration_s"])
    assert 0 < duration <= seen["wall_s"] and float(crow["duration_s"]) == duration
    trained = sum(len(y) for _x, y in seen["mixer_in"])
    assert trained == sum(EPOCHS) * (90 // 16) * 16  # 90 training images, batches of 16, the last one dropped
    rate = trained / sum(ev["epoch_time"] for ev in evs if ev["event"] == "epoch")
    assert float(row["images_per_s"]) == pytest.approx(rate, rel=1e-9)
    # the headline row every table and text is built from: each model's best epoch, its numbers
    # there (top-k too), the last epoch's, the final sizes, the run's size and rule
    head = report.run_row(rundir.read_run(o["seen"]["run_dir"]))
    expect = {
        "epochs_done": len(o["checker"].results), "total_epochs": sum(EPOCHS), "step": want["step"],
        "select_on": "val", "best_epoch": b["raw"]["epoch"], "test_topk_best": b["raw"]["test_topk"],
        "ema_best_epoch": b["ema"]["epoch"], **cols,
        **{f"{pre}test@{s}": want["final_test_sizes"][str(s)][m] for s in FINAL_SIZES
           for pre, m in (("", "raw"), ("ema_", "ema"))},
    }
    expect.update(run=run_id, status="completed", damaged=None, recipe=f"oracle-{o['style']}", dataset="folder",
                  model="small_cnn", sweep=None, path=str(o["seen"]["run_dir"]))
    for key, value in expect.items():
        assert head[key] == value, ("run row", key)
    assert head["images_per_s"] == pytest.approx(rate, rel=1e-9) and head["duration_s"] == duration
    assert head["peak_mem_mb"] is None and head["gpu_util"] is None  # a CPU run
    wait = head["data_wait_frac"]  # the share of the steps' time spent waiting for data (single-process loading)
    assert wait is not None and 0 <= wait <= 1 and float(row["data_wait_frac"]) == wait
    # the fixture tells the raw best epoch from the EMA's, and top-k from top-1
    assert b["raw"]["epoch"] != b["ema"]["epoch"] and b["raw"]["test_topk"] != b["raw"]["test_top1"]


def _step_loss(seen: dict, weights: dict, call: int, style: str, smoothing: float = 0.2) -> float:
    """The checker's loss of optimizer step ``call`` (0-based): ``weights`` in training mode (BatchNorm
    on the batch's statistics, as the step's own forward) on the batch the mixer handed out."""
    x, target = seen["mixer_out"][call]
    assert target.is_floating_point() and target.shape == (16, CLASSES)  # MixUp or CutMix, always (mix_prob 1)
    net = build_model(seen["recipe"].model, CLASSES, data_cfg=seen["recipe"].data).model
    net.load_state_dict(weights)
    net.train()
    with torch.no_grad():
        logits = net(x.contiguous())
    return _smoothed_ce(logits, target, smoothing, style)


def check_losses(o: dict) -> None:
    seen, style, c = o["seen"], o["style"], o["checker"]
    steps = {ev["step"]: ev for ev in events_of(seen["run_dir"]) if ev["event"] == "step"}
    # the run's first step, from the initial weights
    assert steps[1]["loss"] == pytest.approx(_step_loss(seen, seen["initial"], 0, style), rel=1e-5)
    # the first step of epoch 2 (step 6 of 5-step epochs), from the weights last.pt held after epoch 1
    after1 = c.results[1]["weights"]["raw"]
    want = _step_loss(seen, after1, 5, style)
    assert steps[6]["epoch"] == 2 and steps[6]["loss"] == pytest.approx(want, rel=1e-5)
    # the second stage's first step (step 11), from the first stage's best EMA weights (init_from = best_ema):
    # the first stage's epoch with the highest EMA validation top-1, the first of equals
    first_stage = [e for e in sorted(c.results) if c.results[e]["stage"] == 0]
    top = max(c.results[e]["ema"]["val"][0] for e in first_stage)
    chosen = next(e for e in first_stage if c.results[e]["ema"]["val"][0] == top)
    handed = c.results[chosen]["weights"]["ema"]
    want11 = _step_loss(seen, handed, 10, style)
    assert steps[11]["epoch"] == 3 and steps[11]["loss"] == pytest.approx(want11, rel=1e-5)
    top_raw = max(c.results[e]["raw"]["val"][0] for e in first_stage)
    raw_best = c.results[next(e for e in first_stage if c.results[e]["raw"]["val"][0] == top_raw)]["weights"]["raw"]
    assert abs(_step_loss(seen, raw_best, 10, style) - want11) > 1e-4 * want11  # the raw weights would show
    # the check tells the smoothing styles, and no smoothing, apart on this batch
    other = "cyizhuo" if style == "torch" else "torch"
    for wrong in (_step_loss(seen, after1, 5, other), _step_loss(seen, after1, 5, style, smoothing=0.0)):
        assert abs(wrong - want) > 1e-4 * want, (wrong, want)


def test_the_oracle_recomputes_every_reported_number(oracle):
    """One test per style, so that each check runs against every mutant that reached the run."""
    check_splits(oracle)
    check_evaluation_events(oracle)
    check_best_checkpoint(oracle)
    check_summary(oracle)
    check_columns(oracle)
    check_losses(oracle)

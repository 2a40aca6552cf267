"""`eval.precision`: evaluation is fp32 by default even when training runs under autocast (the
SimpleClassification and cyizhuo seeds evaluate in fp32); `train` evaluates under the training
autocast. Checked by what the model sees during evaluation and by the run's reported losses."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fgbench.cli import main
from fgbench.train.loop import Engine, evaluate

from .conftest import events_of, write_recipe


class Recorder(nn.Module):
    """A linear classifier that records whether autocast was on and the dtype of its logits."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 3)
        self.seen: list[tuple[bool, torch.dtype, bool]] = []  # autocast on, logits dtype, grad mode

    def forward(self, x):
        out = self.fc(x.flatten(1))
        self.seen.append((torch.is_autocast_enabled("cpu"), out.dtype, torch.is_grad_enabled()))
        return out


class Batches:
    def batches(self):
        g = torch.Generator().manual_seed(0)
        yield torch.rand(4, 3, 2, 2, generator=g), torch.tensor([0, 1, 2, 0]), ()


def _engine(model, eval_amp):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return Engine(model=model, forward=model, optimizer=opt, scheduler=None, criterion=None,
                  device=torch.device("cpu"), amp_dtype=torch.bfloat16, eval_amp_dtype=eval_amp)


@pytest.mark.parametrize(("eval_amp", "expected"), [(None, (False, torch.float32, False)),
                                                    (torch.bfloat16, (True, torch.bfloat16, False))])
def test_evaluate_uses_the_evaluation_precision_not_the_training_one(eval_amp, expected):
    model = Recorder()
    engine = _engine(model, eval_amp)
    with engine.autocast():  # the training step's context is bf16 either way
        assert torch.is_autocast_enabled("cpu")
    evaluate(model, Batches(), engine, num_classes=3)
    assert model.seen == [expected]


def _bf16_run(tmp_path, tiny_folder, precision):
    recipe = write_recipe(tmp_path, tiny_folder, name=f"{precision}.toml", schedule={"name": "constant", "epochs": 1},
                          runtime={"device": "cpu", "precision": "bf16", "seed": 1, "log_every_steps": 4},
                          eval={"precision": precision})
    run = tmp_path / precision
    assert main(["run", str(recipe), "--run-dir", str(run), "--progress", "none"]) == 0
    ev = [e for e in events_of(run) if e["event"] == "eval" and e["split"] == "test" and e["model"] == "raw"]
    return run, ev[-1]


def test_a_bf16_run_reports_fp32_evaluations_unless_asked(tmp_path, tiny_folder):
    from fgbench.train.predict import evaluate_run

    run, ev = _bf16_run(tmp_path, tiny_folder, "fp32")
    # fgbench evaluate follows the run's eval.precision; here fp32: the same loss to float precision
    again = evaluate_run(run, device="cpu")[0]
    assert again["loss"] == pytest.approx(ev["loss"], rel=1e-6) and again["top1"] == ev["top1"]

    run_t, ev_t = _bf16_run(tmp_path, tiny_folder, "train")
    # the same training (bf16 either way), evaluated under bf16 autocast: a different loss (bf16
    # logits are off by about 1e-3; the mean loss moves by 1e-5 here, ten times the tolerance below) ...
    assert ev_t["loss"] != pytest.approx(ev["loss"], rel=1e-6)
    # ... which `fgbench evaluate` reproduces, being told the run evaluated under autocast
    again_t = evaluate_run(run_t, device="cpu")[0]
    assert again_t["loss"] == pytest.approx(ev_t["loss"], rel=1e-6)


class Fixed(nn.Module):
    """Returns the logits it was built with, batch by batch (the input only says how many)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits, self.at = logits, 0
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = self.logits[self.at:self.at + x.shape[0]]
        self.at += x.shape[0]
        return out


class Split:
    def __init__(self, labels, batch):
        self.labels, self.batch = labels, batch

    def batches(self):
        for i in range(0, len(self.labels), self.batch):
            y = torch.tensor(self.labels[i:i + self.batch])
            yield torch.zeros(len(y), 1), y, ()


def test_evaluate_counts_top1_topk_loss_and_confusion_by_hand():
    # 5 images, 4 classes; rows are logits. Ranks worked out by hand below.
    logits = torch.tensor([
        [4.0, 3.0, 2.0, 1.0],  # label 0: top-1 hit
        [4.0, 3.0, 2.0, 1.0],  # label 1: second -> top-2 hit only
        [1.0, 2.0, 3.0, 4.0],  # label 0: last -> miss
        [0.0, 0.0, 5.0, 1.0],  # label 3: second -> top-2 hit only
        [0.0, 9.0, 0.0, 0.0],  # label 1: top-1 hit
    ])
    labels = [0, 1, 0, 3, 1]
    model = Fixed(logits)
    ev = evaluate(model, Split(labels, batch=2), _engine(model, None), num_classes=4, top_k=2)
    assert ev["top1"] == pytest.approx(100 * 2 / 5) and ev["topk"] == pytest.approx(100 * 4 / 5)
    assert ev["images"] == 5
    lsm = [math.log(sum(math.exp(v) for v in row)) - row[y] for row, y in zip(logits.tolist(), labels)]
    assert ev["loss"] == pytest.approx(sum(lsm) / 5, rel=1e-6)
    # confusion[true][predicted]: predictions are 0, 0, 3, 2, 1
    expected = torch.zeros(4, 4, dtype=torch.long)
    for t, p in zip(labels, [0, 0, 3, 2, 1]):
        expected[t, p] += 1
    assert torch.equal(ev["confusion"], expected)
    # k larger than the classes is capped: every image is a top-k hit
    model.at = 0
    assert evaluate(model, Split(labels, batch=3), _engine(model, None), num_classes=4, top_k=10)["topk"] == 100.0


class Batches3:
    """Two batches and an empty one (every image of it undecodable), as the loaders yield them."""

    def __init__(self, labels):
        self.labels = labels

    def batches(self):
        yield torch.zeros(2, 1), torch.tensor(self.labels[:2]), ()
        yield torch.zeros(0, 1), torch.zeros(0, dtype=torch.long), ("bad.jpg",)
        yield torch.zeros(3, 1), torch.tensor(self.labels[2:]), ("worse.jpg",)


class Pair(Fixed):
    """A model whose output is (logits, aux): evaluation uses the first."""

    def forward(self, x):
        return super().forward(x), torch.zeros(x.shape[0], 4)


def test_evaluate_predictions_corrupt_batches_tuples_and_train_mode_restored():
    logits = torch.tensor([[4.0, 3, 2, 1], [4.0, 3, 2, 1], [1.0, 2, 3, 4], [0.0, 0, 5, 1], [0.0, 9, 0, 0]])
    labels = [0, 1, 0, 3, 1]
    model = Pair(logits).train()
    seen = []
    ev = evaluate(model, Batches3(labels), _engine(model, None), num_classes=4, top_k=2, on_corrupt=seen.append,
                  predictions=True)
    assert seen == [("bad.jpg",), ("worse.jpg",)]
    assert ev["images"] == 5 and ev["top1"] == pytest.approx(40.0) and ev["topk"] == pytest.approx(80.0)
    assert ev["predicted"] == [0, 0, 3, 2, 1] and ev["labels"] == labels
    assert model.training  # put back as it was
    assert "predicted" not in evaluate(Fixed(logits), Split(labels, 5), _engine(model, None), num_classes=4)
    empty = evaluate(Fixed(logits), Split([], 5), _engine(model, None), num_classes=4, predictions=True)
    assert (empty["images"], empty["top1"], empty["predicted"], empty["labels"]) == (0, 0.0, [], [])


def test_evaluate_sums_over_processes_when_the_engine_reduces():
    """Under DDP every count is all-reduced; a fake all-reduce over two identical shards doubles them."""
    logits = torch.tensor([[4.0, 3, 2, 1], [1.0, 2, 3, 4], [0.0, 9, 0, 0]])
    labels = [0, 0, 1]
    model = Fixed(logits)
    engine = _engine(model, None)
    engine.reduce = lambda t: t.mul_(2)
    ev = evaluate(model, Split(labels, 3), engine, num_classes=4, top_k=1)
    assert ev["images"] == 6 and ev["top1"] == pytest.approx(100 * 2 / 3)
    expected = torch.zeros(4, 4, dtype=torch.long)
    for t, p in zip(labels, [0, 3, 1]):
        expected[t, p] += 2
    assert torch.equal(ev["confusion"], expected)
    single = evaluate(Fixed(logits), Split(labels, 3), _engine(model, None), num_classes=4, top_k=1)
    assert ev["loss"] == pytest.approx(single["loss"], rel=1e-9)


class SeesLayout(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 10, 1)
        self.layouts: list[bool] = []

    def forward(self, x):
        self.layouts.append(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
        return self.conv(x).mean(dim=(2, 3))


class Images:
    def __init__(self, n):
        self.n = n

    def batches(self):
        g = torch.Generator().manual_seed(0)
        yield torch.rand(self.n, 3, 4, 4, generator=g), torch.arange(self.n) % 10, ()


def test_evaluate_channels_last_default_top_k_one_image_and_integer_confusion():
    torch.manual_seed(0)
    model = SeesLayout()
    engine = _engine(model, None)
    engine.channels_last = True
    ev = evaluate(model, Images(7), engine, num_classes=10)
    assert model.layouts == [True]  # the batch is moved to channels_last as the engine asks
    assert ev["confusion"].dtype == torch.long and ev["confusion"].sum() == 7
    # default k is 5 (of 10 classes): count the hits by hand from the logits
    with torch.no_grad():
        logits = model(next(Images(7).batches())[0])
    ranks = (logits > logits.gather(1, (torch.arange(7) % 10)[:, None])).sum(1)
    assert ev["topk"] == pytest.approx(100 * float((ranks < 5).sum()) / 7)
    assert (ranks < 5).sum() != (ranks < 6).sum()  # k matters here
    one = evaluate(Fixed(torch.tensor([[0.0, 2.0, 1.0]])), Split([1], 1), _engine(model, None), num_classes=3)
    assert (one["images"], one["top1"]) == (1, 100.0)


def test_evaluate_sums_the_loss_in_float64_so_small_batches_after_a_large_one_still_count():
    # One image whose loss is 2**24 (float32's spacing there is 2), then 64 batches of one image
    # with a loss of about 0.69 each: summed in float32 every small loss rounds away.
    big = float(2 ** 24)
    logits = torch.tensor([[big, 0.0]] + [[0.0, 0.0]] * 64)
    labels = [1] + [0] * 64
    model = Fixed(logits)
    ev = evaluate(model, Split(labels, batch=1), _engine(model, None), num_classes=2, top_k=1)
    per_image = [torch.nn.functional.cross_entropy(logits[i:i + 1], torch.tensor([y]), reduction="sum").item()
                 for i, y in enumerate(labels)]
    assert ev["loss"] == pytest.approx(math.fsum(per_image) / 65, rel=1e-12)
    assert ev["top1"] == pytest.approx(100 * 64 / 65)


def test_evaluate_needs_only_what_an_evaluation_engine_has():
    # `fgbench evaluate` passes an engine with a device, a memory format, an autocast context and
    # no all-reduce (fgbench.train.loop.EvalEngine; no optimizer, no step): evaluate must not ask
    # it for more
    import contextlib

    class EvalOnly:
        device = torch.device("cpu")
        channels_last = False
        reduce = None

        def eval_autocast(self):
            return contextlib.nullcontext()

    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    ev = evaluate(Fixed(logits), Split([0, 1, 1], batch=2), EvalOnly(), num_classes=2, top_k=1)
    assert ev["top1"] == pytest.approx(100 * 2 / 3) and ev["images"] == 3

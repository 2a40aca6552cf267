"""Honest model selection, proven on a real run fed scripted evaluations.

The trainer runs for real (tiny data, real weights, real EMA, real stages), but every evaluation
it asks for returns accuracies from the tables below, chosen so that the best validation epoch,
the best test epoch and the last epoch all differ, for the raw model and for the EMA, in each
stage. The reported numbers must then be the test accuracy *at* the best validation epoch and at
the last epoch, never a maximum over test epochs; ``best.pt`` must hold the weights of each
model's own best epoch and say which epoch that was. The expectations are read off the tables by
hand (the comments say where), not computed by the code under test.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import fgbench.train.trainer as tr
from fgbench.cli import main
from fgbench.train import checkpoint as C
from fgbench.train.loop import evaluate as real_evaluate

from .conftest import summary_of, write_recipe

# epoch -> top-1 per (model, split). Stage 0 is epochs 1-4; with a second stage, epochs 5-6.
SCRIPT = {
    ("raw", "val"): {1: 10.0, 2: 50.0, 3: 40.0, 4: 30.0, 5: 45.0, 6: 35.0},
    ("raw", "test"): {1: 5.0, 2: 20.0, 3: 80.0, 4: 70.0, 5: 10.0, 6: 90.0},
    ("ema", "val"): {1: 10.0, 2: 20.0, 3: 55.0, 4: 25.0, 5: 30.0, 6: 44.0},
    ("ema", "test"): {1: 95.0, 2: 30.0, 3: 25.0, 4: 60.0, 5: 99.0, 6: 11.0},
}
STAGE = {"name": "second", "epochs": 2, "lr": 0.01, "init_from": "best_ema"}


@pytest.fixture
def scripted(monkeypatch):
    """Replace the trainer's ``evaluate`` with the script; remember the weights each model had
    when it was evaluated at each epoch."""
    seen: dict = {"weights": {}, "calls": []}
    current: dict = {}
    orig_all = tr.Trainer._evaluate_all

    def evaluate_all(self, epoch, test_size, **_kw):
        current["trainer"], current["epoch"] = self, epoch
        try:  # scripted numbers keep no predictions: predictions.json comes from a real pass at the end
            return orig_all(self, epoch, test_size)
        finally:
            current["epoch"] = None

    def fake_evaluate(model, loader, engine, *, num_classes, top_k=5, on_corrupt=None, **kw):
        if current.get("epoch") is None:  # not a per-epoch evaluation (predictions.json at the end): real
            return real_evaluate(model, loader, engine, num_classes=num_classes, top_k=top_k, on_corrupt=on_corrupt, **kw)
        t = current["trainer"]
        name = "ema" if t.ema is not None and model is t.ema.module else "raw"
        split = "val" if loader is t.loaders.val else "test"
        assert split == "val" or loader is t.loaders.test
        epoch = current["epoch"]
        seen["calls"].append((epoch, name, split))
        seen["weights"][(epoch, name)] = C.cpu_state_dict(model)
        top1 = SCRIPT[(name, split)][epoch]
        return {"top1": top1, "topk": top1 / 2 + 50, "loss": 1.0, "images": 10,
                "confusion": torch.zeros(num_classes, num_classes, dtype=torch.long)}

    monkeypatch.setattr(tr.Trainer, "_evaluate_all", evaluate_all)
    monkeypatch.setattr(tr, "evaluate", fake_evaluate)
    return seen


def _run(tmp_path, tiny_folder, capsys, *, select_on: str, stages: bool):
    extra = {"stages": [STAGE]} if stages else {}
    recipe = write_recipe(tmp_path, tiny_folder, schedule={"name": "cosine", "epochs": 4},
                          ema={"enabled": True, "decay": 0.9, "ramp_steps": 0},
                          eval={"select_on": select_on, "top_k": 3 if stages else 5}, **extra)
    run = tmp_path / "run"
    assert main(["run", str(recipe), "--run-dir", str(run), "--progress", "none"]) == 0
    return run, summary_of(run), capsys.readouterr().out


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# (select_on, stages) -> raw (best epoch, val there, test there), ema (...), last epoch, selected model
CASES = {
    # stage 0 only: raw val peaks at 2 (50; test 20 there, test peaks at 3), EMA val at 3 (55; test 25,
    # test peaks at 1); the last epoch is 4; EMA 55 >= raw 50 is selected.
    ("val", False): ((2, 50.0, 20.0), (3, 55.0, 25.0), 4, "ema"),
    # with stage 2 (epochs 5-6, its own bests): raw val 45 at 5 (test 10; test peaks at 6), EMA val
    # 44 at 6 (test 11; test peaks at 5); last epoch 6; raw 45 > EMA 44 is selected.
    ("val", True): ((5, 45.0, 10.0), (6, 44.0, 11.0), 6, "raw"),
    # the seeds' test-set selection, kept for reproduction: now the test peaks are the best epochs
    ("test", False): ((3, 40.0, 80.0), (1, 10.0, 95.0), 4, "ema"),
    ("test", True): ((6, 35.0, 90.0), (5, 30.0, 99.0), 6, "ema"),
    ("last", False): ((4, 30.0, 70.0), (4, 25.0, 60.0), 4, "raw"),
}


@pytest.mark.parametrize(("select_on", "stages"), list(CASES), ids=[f"{s}-{'stages' if t else 'one'}" for s, t in CASES])
def test_selection_reports_test_at_the_selected_epoch_never_a_maximum_over_test(
        tmp_path, tiny_folder, capsys, scripted, select_on, stages):
    (raw_e, raw_val, raw_test), (ema_e, ema_val, ema_test), last_e, selected = CASES[(select_on, stages)]
    run, s, out = _run(tmp_path, tiny_folder, capsys, select_on=select_on, stages=stages)
    # every epoch evaluated both models on both splits
    assert len(scripted["calls"]) == 4 * last_e

    assert s["best"]["raw"] == {"epoch": raw_e, "val_top1": raw_val, "test_top1": raw_test,
                                "test_topk": raw_test / 2 + 50}
    assert s["best"]["ema"] == {"epoch": ema_e, "val_top1": ema_val, "test_top1": ema_test,
                                "test_topk": ema_test / 2 + 50}
    assert s["last"]["epoch"] == last_e
    for model in ("raw", "ema"):
        val, test = SCRIPT[(model, "val")][last_e], SCRIPT[(model, "test")][last_e]
        assert s["last"][model] == {"val_top1": val, "test_top1": test, "test_topk": test / 2 + 50}
    assert s["selected"] == selected and s["select_on"] == select_on

    # what the run prints at the end says the same
    chosen = {"val": "best epoch {} (chosen on validation)", "test": "best epoch {} (chosen on test)",
              "last": "epoch {} (the last epoch)"}[select_on]
    k = 3 if stages else 5
    assert (f"raw: {chosen.format(raw_e)}: val {raw_val:.2f}%, test {raw_test:.2f}% "
            f"(top-{k} {raw_test / 2 + 50:.2f}%)") in out
    assert f"ema: {chosen.format(ema_e)}: val {ema_val:.2f}%, test {ema_test:.2f}%" in out
    assert f"raw: last epoch {last_e}: test {SCRIPT[('raw', 'test')][last_e]:.2f}%" in out

    # best.pt holds each model's weights of its own best epoch, and says which epoch each is from
    best = C.load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["epochs"] == {"raw": raw_e, "ema": ema_e}
    assert _same(best["model"], scripted["weights"][(raw_e, "raw")])
    assert _same(best["ema"], scripted["weights"][(ema_e, "ema")])
    if raw_e != ema_e:
        assert not _same(best["model"], scripted["weights"][(ema_e, "raw")])

    conf = json.loads((run / "confusion.json").read_text())
    assert conf["model"] == selected and conf["epoch"] == (raw_e if selected == "raw" else ema_e)


def test_evaluate_and_predict_print_the_epoch_of_the_weights_they_load(tmp_path, tiny_folder, capsys, scripted):
    run, s, _ = _run(tmp_path, tiny_folder, capsys, select_on="val", stages=False)
    assert (s["best"]["raw"]["epoch"], s["best"]["ema"]["epoch"]) == (2, 3)
    image = next(tiny_folder.glob("test/*/*.png"))
    for flags, epoch in (([], 2), (["--ema"], 3), (["--checkpoint", "last"], 4), (["--checkpoint", "last", "--ema"], 4)):
        weights = "EMA" if "--ema" in flags else "raw"
        ckpt = "last" if "last" in flags else "best"
        assert main(["evaluate", str(run), *flags]) == 0
        out = capsys.readouterr().out
        assert f"{ckpt} checkpoint, {weights} weights from epoch {epoch}" in out, out
        assert main(["predict", str(run), str(image), *flags]) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0].endswith(f"{ckpt} checkpoint, {weights} weights from epoch {epoch}"), out
        assert main(["predict", str(run), str(image), "--format", "json", *flags]) == 0
        res = json.loads(capsys.readouterr().out)
        assert res[0]["epoch"] == epoch and res[0]["model"] == weights.lower() and res[0]["checkpoint"] == ckpt


@pytest.mark.parametrize("stages", [False, True], ids=["one-stage", "two-stages"])
def test_a_resumed_run_reports_and_stores_what_the_uninterrupted_run_does(tmp_path, tiny_folder, capsys, scripted,
                                                                         monkeypatch, stages):
    # One stage: raw's best validation epoch is 2, the EMA's 3, and epoch 4 improves neither; the
    # run is stopped after epoch 3, resumed and stopped again after one step of epoch 4, then
    # resumed to the end. Each model's best weights, the final evaluation of those weights and
    # everything the summary reports must be what the run without interruptions gives: the best
    # weights of epochs 2 and 3 exist only in the best.pt the resumes start from.
    # Two stages: stopped at the end of stage 0 (epoch 4), so the resume starts stage 1, then one
    # step into stage 1's first epoch (5), where the epoch within the stage is not the run's.
    sections = dict(schedule={"name": "cosine", "epochs": 4}, ema={"enabled": True, "decay": 0.9, "ramp_steps": 0},
                    eval={"select_on": "val", "final_test_sizes": [16]}, **({"stages": [STAGE]} if stages else {}))
    stop_after, best_epochs = (4, {"raw": 5, "ema": 6}) if stages else (3, {"raw": 2, "ema": 3})
    # one undecodable training image, skipped: the count of skipped images is part of the report
    folder = tmp_path / "data"
    shutil.copytree(tiny_folder, folder)
    cls = sorted(p.name for p in (folder / "train").iterdir())[0]
    (folder / "train" / cls / "broken.png").write_bytes(b"not a png")
    sections["data"] = {"skip_corrupt": True}
    ref_dir, run = tmp_path / "ref", tmp_path / "run"
    ref_dir.mkdir()
    recipe = write_recipe(ref_dir, folder, **sections)
    assert main(["run", str(recipe), "--run-dir", str(ref_dir / "run"), "--progress", "none"]) == 0
    ref = summary_of(ref_dir / "run")
    steps_per_epoch = ref["step"] // (6 if stages else 4)

    original = tr.StopFlag

    def stop_at(call: int):
        class Stop(original):
            calls = 0

            def __call__(self) -> bool:
                Stop.calls += 1
                if Stop.calls == call:
                    self.requested, self.signal = True, "SIGINT"
                return self.requested
        return Stop

    monkeypatch.setattr(tr, "StopFlag", stop_at(stop_after * steps_per_epoch))  # the epoch's last step
    assert main(["run", str(recipe), "--run-dir", str(run), "--progress", "none"]) == 130
    first = summary_of(run)
    assert (first["status"], first["epochs_done"], first["skipped_images"]) == ("interrupted", stop_after, 1)
    # a session that spent long after its last checkpoint (its stop, its final summary): the resumed
    # run's time counts on from what the summary already reported, not from the checkpoint's figure
    first["duration_s"] += 1000.0
    (run / "summary.json").write_text(json.dumps(first))
    monkeypatch.setattr(tr, "StopFlag", stop_at(1))  # one step into the next epoch
    assert main(["run", "--resume", str(run), "--progress", "none"]) == 130
    second = summary_of(run)
    last = C.load_checkpoint(run / "checkpoints/last.pt")
    assert (last["batch"], last["stage"], last["step"]) == (1, int(stages), stop_after * steps_per_epoch + 1)
    # nothing evaluated since: the same report (a new stage starts its own best, none yet)
    for key in ("status", "epochs_done", "last", "final_test_sizes", "skipped_images",
                *(() if stages else ("best", "selected"))):
        assert second[key] == first[key], key
    assert second["duration_s"] >= first["duration_s"]  # the run's time so far, not this process's
    monkeypatch.setattr(tr, "StopFlag", original)
    assert main(["run", "--resume", str(run), "--progress", "none"]) == 0
    out = summary_of(run)
    assert out["duration_s"] >= second["duration_s"]
    assert out["final_test_sizes"]["16"]["raw"] is not None and out["final_test_sizes"]["16"]["ema"] is not None
    for key in ("status", "epochs_done", "step", "best", "last", "selected", "final_test_sizes", "skipped_images",
                "train_images", "test_images"):
        assert out[key] == ref[key], key
    a, b = C.load_checkpoint(ref_dir / "run/checkpoints/best.pt"), C.load_checkpoint(run / "checkpoints/best.pt")
    assert a["epochs"] == b["epochs"] == best_epochs
    assert _same(a["model"], b["model"]) and _same(a["ema"], b["ema"])
    assert (json.loads((ref_dir / "run/predictions.json").read_text())
            == json.loads((run / "predictions.json").read_text()))

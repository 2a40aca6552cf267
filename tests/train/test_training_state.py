"""Training state that a number depends on: the EMA is really updated during training, and a resumed
run gets the gradient scaler back (its scale decides which fp16 steps are skipped)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

import fgbench.train.trainer as tr
from fgbench.cli import main
from fgbench.train import checkpoint as C
from fgbench.train.ema import ModelEMA

from .conftest import write_recipe


def test_the_ema_follows_the_weights_of_every_nth_step_during_training(tmp_path, tiny_folder, monkeypatch):
    """The EMA in last.pt equals the recurrence ema <- d(u) ema + (1 - d(u)) w, computed here by hand
    from the weights after each optimizer step, with d(u) = decay (1 - exp(-u / ramp)) and u the
    number of updates so far, one update every ``ema.every`` steps."""
    decay, ramp, every = 0.8, 3.0, 2
    seen: dict = {"snapshots": []}
    orig_init = ModelEMA.__init__

    def init(self, model, *a, **kw):
        orig_init(self, model, *a, **kw)
        seen["model"] = model
        seen["start"] = {k: v.detach().clone() for k, v in model.named_parameters()}

    def after_step(opt, args, kwargs):
        seen["snapshots"].append({k: v.detach().clone() for k, v in seen["model"].named_parameters()})

    monkeypatch.setattr(ModelEMA, "__init__", init)
    handle = register_optimizer_step_post_hook(after_step)
    try:
        recipe = write_recipe(tmp_path, tiny_folder, schedule={"name": "constant", "epochs": 2},
                              ema={"enabled": True, "decay": decay, "ramp_steps": ramp, "every": every})
        run = tmp_path / "run"
        assert main(["run", str(recipe), "--run-dir", str(run), "--progress", "none"]) == 0
    finally:
        handle.remove()
    steps = len(seen["snapshots"])
    assert steps == 16  # 128 training images / batch 16, 2 epochs
    ckpt = C.load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["ema_updates"] == steps // every

    expected = dict(seen["start"])
    u = 0
    for k, w in enumerate(seen["snapshots"], start=1):
        if k % every:
            continue
        u += 1
        d = decay * (1 - math.exp(-u / ramp))
        expected = {n: d * expected[n] + (1 - d) * w[n] for n in expected}
    final_raw = seen["snapshots"][-1]
    for name, value in expected.items():
        assert torch.allclose(ckpt["ema"][name], value, rtol=1e-5, atol=1e-7), name
        assert torch.equal(ckpt["model"][name], final_raw[name])
    # and the EMA is neither the start nor the last weights
    assert any(not torch.allclose(ckpt["ema"][n], seen["start"][n]) for n in expected)
    assert any(not torch.allclose(ckpt["ema"][n], final_raw[n]) for n in expected)


def test_resume_restores_the_gradient_scaler_state(tmp_path, tiny_folder, monkeypatch):
    original = tr.StopFlag

    class StopAtStep5(original):
        calls = 0

        def __call__(self) -> bool:
            StopAtStep5.calls += 1
            if StopAtStep5.calls == 5:
                self.requested, self.signal = True, "SIGINT"
            return self.requested

    monkeypatch.setattr(tr, "StopFlag", StopAtStep5)
    recipe = write_recipe(tmp_path, tiny_folder, schedule={"name": "constant", "epochs": 2},
                          runtime={"device": "cpu", "precision": "fp16", "seed": 1, "log_every_steps": 2})
    run = tmp_path / "run"
    assert main(["run", str(recipe), "--run-dir", str(run), "--progress", "none"]) == 130
    path = run / "checkpoints" / "last.pt"
    ckpt = C.load_checkpoint(path)
    assert ckpt["step"] == 5 and ckpt["scaler"]["scale"] > 0
    # a scaler that has backed off and counted growth steps: nothing a fresh GradScaler would have
    fresh = torch.amp.GradScaler("cpu").state_dict()
    ckpt["scaler"] = {**ckpt["scaler"], "scale": 1024.0, "_growth_tracker": 7}
    assert ckpt["scaler"] != fresh
    C.save_checkpoint(path, ckpt)

    restored: dict = {}
    orig_restore = tr.Trainer._restore

    def restore(self, ck, best):
        orig_restore(self, ck, best)
        restored.update(self.engine.scaler.state_dict())

    monkeypatch.setattr(tr, "StopFlag", original)
    monkeypatch.setattr(tr.Trainer, "_restore", restore)
    assert main(["run", "--resume", str(run), "--progress", "none"]) == 0
    assert restored["scale"] == pytest.approx(1024.0) and restored["_growth_tracker"] == 7
    assert restored == {**fresh, "scale": restored["scale"], "_growth_tracker": 7}

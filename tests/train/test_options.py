"""Recipe options that the main end-to-end tests do not cover, and the terminal progress display."""

from __future__ import annotations

import io
import os
import signal
import time

import pytest
import torch

from fgbench.cli import main
from fgbench.data.index import DatasetIndex
from fgbench.data.loaders import cifar_sources
from fgbench.errors import UserError
from fgbench.train import checkpoint as C
from fgbench.formats import fmt_clock
from fgbench.train.progress import Progress

from .conftest import events_of, last_per_epoch, summary_of, write_recipe
from .test_run import run_subprocess, wait_for_event


def run_cli(*argv: str) -> int:
    return main(["run", *argv, "--progress", "none"])


def test_cached_loader_learned_normalizer_bf16_channels_last(tmp_path, tiny_folder, fgbench_home):
    recipe = write_recipe(
        tmp_path, tiny_folder,
        data={"loader": "cached", "normalize": "learned", "train_crop": "random_resized", "test_crop": "resize",
              "crop_scale": [0.5, 1.0]},
        augment={"hflip": True, "randaugment_ops": 2, "randaugment_magnitude": 9},
        optim={"name": "adamw", "lr": 0.003, "weight_decay": 0.05, "no_decay_norm_bias": True, "grad_clip": 5.0},
        schedule={"name": "linear", "epochs": 2, "warmup_steps": 3, "warmup_start_lr": 1e-5},
        runtime={"device": "cpu", "seed": 0, "log_every_steps": 2, "precision": "bf16", "channels_last": True},
    )
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 0
    assert list((fgbench_home / "datasets" / ".cache").rglob("*.json"))  # the memmap cache was built
    ev = events_of(run)
    steps = [e for e in ev if e["event"] == "step"]
    assert all("grad_norm" in e for e in steps)  # clipping reports the norm
    assert any("learned input normalizer" in e.get("message", "") for e in ev if e["event"] == "log")
    ckpt = C.load_checkpoint(run / "checkpoints/last.pt")
    groups = ckpt["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]  # norm and bias parameters exempt
    assert ckpt["recipe"]["runtime"]["precision"] == "bf16"


def test_fp16_uses_a_grad_scaler_and_device_override(tmp_path, tiny_folder):
    recipe = write_recipe(tmp_path, tiny_folder, schedule={"name": "constant", "epochs": 1},
                          data={"val_fraction": 0.0, "batch_size": 32}, eval={"select_on": "last"},
                          runtime={"device": "auto", "precision": "fp16", "log_every_steps": 1})
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run), "--device", "cpu") == 0
    ckpt = C.load_checkpoint(run / "checkpoints/last.pt")
    assert ckpt["scaler"] and "scale" in ckpt["scaler"]
    assert ckpt["recipe"]["runtime"]["device"] == "cpu"  # --device is part of the resolved recipe
    assert "cpu" in events_of(run)[0]["device"]


def test_test_set_selection_and_no_ema_for_reproductions(tmp_path, tiny_folder):
    recipe = write_recipe(tmp_path, tiny_folder, data={"val_fraction": 0.0}, eval={"select_on": "test"},
                          schedule={"name": "cosine", "epochs": 3})
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 0
    s = summary_of(run)
    epochs = last_per_epoch(events_of(run))
    best_epoch = max(epochs, key=lambda e: (epochs[e]["test_top1"], -e))
    assert s["best"]["raw"]["epoch"] == best_epoch and s["best"]["ema"] is None
    assert s["last"]["raw"]["test_top1"] == epochs[3]["test_top1"] and s["last"]["ema"] is None


def test_sigterm_checkpoints_and_exits_130(tmp_path, tiny_folder):
    recipe = write_recipe(tmp_path, tiny_folder, schedule={"name": "cosine", "epochs": 2})
    run = tmp_path / "run"
    proc = run_subprocess(str(recipe), "--run-dir", str(run), wait=False, env_extra={"FGBENCH_TEST_SLOW_FROM_STEP": "3"})
    wait_for_event(run, lambda ev: ev["event"] == "step" and ev["step"] >= 4, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    last = events_of(run)[-1]
    assert last["status"] == "interrupted" and "SIGTERM" in last["error"]
    assert C.load_checkpoint(run / "checkpoints/last.pt")["step"] >= 4


def test_refusals_with_one_line(tmp_path, tiny_folder, capsys):
    recipe = write_recipe(tmp_path, tiny_folder)
    assert main(["run", str(recipe), "--nproc", "0"]) == 2  # --nproc 2 itself: tests/train/test_distributed.py
    assert "--nproc" in capsys.readouterr().err
    assert main(["run"]) == 2
    assert main(["run", str(recipe), "--resume", str(tmp_path)]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["run", "--resume", str(tmp_path / "nope")]) == 2
    dev = write_recipe(tmp_path, tiny_folder, name="dev.toml", data={"loader": "device", "train_crop": "random_resized"})
    assert run_cli(str(dev), "--runs-root", str(tmp_path / "runs")) == 2
    assert "data.train_crop" in capsys.readouterr().err
    # a device loader the recipe allows but the augmentation cannot use: refused once, by the plan
    dev_ra = write_recipe(tmp_path, tiny_folder, name="dev_ra.toml", data={"loader": "device", "train_crop": "pad_crop"},
                          augment={"randaugment_ops": 2})
    assert run_cli(str(dev_ra), "--runs-root", str(tmp_path / "runs")) == 2
    assert capsys.readouterr().err == (f'{dev_ra}: augment.randaugment_ops: not available with data.loader = '
                                       '"device"; use data.loader = "standard"\n')
    ema = write_recipe(tmp_path, tiny_folder, name="ema.toml", stages=[{"epochs": 1, "init_from": "best_ema"}])
    assert run_cli(str(ema), "--runs-root", str(tmp_path / "runs")) == 2
    assert "stages[0].init_from" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    if not torch.cuda.is_available():
        assert run_cli(str(recipe), "--device", "cuda", "--runs-root", str(tmp_path / "runs")) == 2
        assert "cuda" in capsys.readouterr().err


def test_missing_cifar_tells_how_to_download(tmp_path):
    with pytest.raises(UserError, match="fgbench data download cifar10"):
        cifar_sources(DatasetIndex(name="cifar10", class_names=[str(i) for i in range(10)], kind="cifar",
                                   root=str(tmp_path)))


def test_progress_bar_on_a_terminal_and_lines_otherwise(capsys):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    p = Progress("auto", stream=tty, total_steps=100)
    assert p.mode == "bar"
    p.start(0)
    time.sleep(0.01)
    p.logged(epoch=1, total_epochs=5, batch=10, batches=20, step=10, loss=1.2345, top1=55.5, lr=0.1, images_per_s=321)
    p.tick(epoch=1, total_epochs=5, batch=10, batches=20, step=10, force=True)
    out = tty.getvalue()
    assert out.startswith("\r") and "epoch 1/5" in out and "10/20" in out and "loss 1.2345" in out
    assert "acc 55.5%" in out and "ETA " in out and "#" * 12 in out
    p.line("epoch summary")
    assert "epoch summary" in capsys.readouterr().out
    p.close()
    assert tty.getvalue().endswith("\n") or tty.getvalue().endswith("\x1b[2K")

    lines = Progress("auto", stream=io.StringIO(), total_steps=10)
    assert lines.mode == "lines"
    lines.logged(epoch=2, total_epochs=3, batch=1, batches=4, step=5, loss=0.5, top1=None, lr=0.01, images_per_s=None)
    assert "epoch 2/3  batch 1/4  step 5  loss 0.5000" in capsys.readouterr().out
    assert fmt_clock(3725) == "1:02:05" and fmt_clock(65) == "01:05" and fmt_clock(None) == "--:--"


def test_every_recipe_file_of_mine_loads():
    from fgbench.recipe import load_recipe

    r = load_recipe(os.path.join(os.path.dirname(__file__), "..", "..", "recipes", "quickstart.toml"))
    assert r.data.dataset == "synthetic" and r.data.loader == "device" and r.ema.enabled


def test_ctrl_c_to_the_process_group_with_loader_workers(tmp_path, tiny_folder):
    """A terminal's Ctrl-C reaches the trainer and its DataLoader workers; only the trainer reacts."""
    import subprocess
    import sys

    from .test_run import DRIVER, REPO

    recipe = write_recipe(tmp_path, tiny_folder, data={"workers": 1}, schedule={"name": "cosine", "epochs": 2})
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "FGBENCH_TEST_SLOW_FROM_STEP": "3"}
    proc = subprocess.Popen([sys.executable, str(DRIVER), "run", str(recipe), "--run-dir", str(run), "--progress",
                             "none"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    wait_for_event(run, lambda ev: ev["event"] == "step" and ev["step"] >= 4, proc)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "DataLoader worker" not in err
    assert events_of(run)[-1]["status"] == "interrupted"


def test_compile_wraps_the_model_and_the_run_trains(tmp_path, tiny_folder, monkeypatch):
    # Inductor's C++ compile takes about a minute on 2 cores; the eager backend still goes through
    # dynamo's graph capture, which is what the trainer's wiring depends on.
    calls = []
    real_compile = torch.compile

    def eager_compile(model, **kwargs):
        calls.append(type(model).__name__)
        return real_compile(model, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    recipe = write_recipe(tmp_path, tiny_folder, schedule={"name": "cosine", "epochs": 1},
                          runtime={"device": "cpu", "seed": 0, "log_every_steps": 2, "compile": True})
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 0
    assert calls, "runtime.compile did not call torch.compile"
    assert summary_of(run)["epochs_done"] == 1


def test_first_ctrl_c_asks_for_a_checkpoint_and_the_second_leaves_at_once(capsys):
    from fgbench.rundir.session import install_signals, restore_signals
    from fgbench.train.runner import stop_on_signal
    from fgbench.train.trainer import StopFlag

    stop = StopFlag()
    before = signal.getsignal(signal.SIGINT)
    old = install_signals(stop_on_signal(stop))
    try:
        handler = signal.getsignal(signal.SIGINT)
        handler(signal.SIGINT, None)
        assert stop.requested and stop.signal == "SIGINT"
        assert "finishing the current step" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, None)
    finally:
        restore_signals(old)
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize(("setting", "arch", "device", "expected"), [
    ("auto", "resnet8_cifar", "cpu", True), ("auto", "resnet20_cifar", "cpu", True), ("auto", "small_cnn", "cpu", True),
    ("auto", "toy_dilated", "cpu", False), ("auto", "resnet18", "cpu", False), ("auto", "resnet8_cifar", "cuda", False),
    (True, "resnet18", "cpu", True), (False, "small_cnn", "cpu", False), (True, "small_cnn", "cuda", True),
])
def test_channels_last_auto_is_on_only_where_it_was_measured_faster(setting, arch, device, expected):
    from fgbench.train.models import channels_last_for

    on, why = channels_last_for(setting, arch, device)
    assert on is expected
    assert why.startswith("auto: " if setting == "auto" else "runtime.channels_last = ")


def test_channels_last_auto_trains_and_evaluates_in_channels_last_and_says_so(tmp_path, tiny_folder, capsys):
    # small_cnn on the CPU: auto chooses channels_last; the run says so, its weights are stored in
    # that format, and `fgbench evaluate` of best.pt gives the test accuracy the run reported.
    recipe = write_recipe(tmp_path, tiny_folder, schedule={"name": "cosine", "epochs": 2})
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 0
    ev = events_of(run)
    started = next(e for e in ev if e["event"] == "run_started")
    assert started["recipe"]["runtime"]["channels_last"] == "auto"
    assert started["memory_format"] == {"channels_last": True,
                                        "reason": "auto: small_cnn trains faster in channels_last on the CPU"}
    assert any(e["message"].startswith("memory format: channels_last (auto: ") for e in ev if e["event"] == "log")
    best = C.load_checkpoint(run / "checkpoints" / "best.pt")
    convs = [v for v in best["model"].values() if v.dim() == 4]
    assert convs and all(v.is_contiguous(memory_format=torch.channels_last) for v in convs)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--format", "json"]) == 0
    out = capsys.readouterr().out
    import json

    got = json.loads(out)[0]["top1"]
    assert got == summary_of(run)["best"]["raw"]["test_top1"]
    # and false is NCHW
    run2 = tmp_path / "run2"
    assert run_cli(str(recipe), "--run-dir", str(run2), "--set", "runtime.channels_last=false") == 0
    started = next(e for e in events_of(run2) if e["event"] == "run_started")
    assert started["memory_format"]["channels_last"] is False
    best = C.load_checkpoint(run2 / "checkpoints" / "best.pt")
    assert all(v.is_contiguous() for v in best["model"].values() if v.dim() == 4)

"""`fgbench run` end to end on tiny generated data: outputs, events, exit codes, stages, resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fgbench.rundir import events as metrics
from fgbench.cli import main
from fgbench.train import checkpoint as C

from .conftest import events_of, last_per_epoch, summary_of, write_recipe

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("driver.py")

# Everything that draws random numbers during training: mixing, dropout, augmentation, EMA, smoothing,
# and a second stage that starts from the first stage's best EMA weights with only BN + fc trainable.
RESUME_SECTIONS = dict(
    model={"arch": "small_cnn", "dropout": 0.1},
    augment={"hflip": True, "mixup_alpha": 0.2, "cutmix_alpha": 1.0, "mix_prob": 0.8, "random_erasing": 0.25},
    loss={"label_smoothing": 0.1, "smoothing_style": "cyizhuo"},
    ema={"enabled": True, "decay": 0.99, "ramp_steps": 10},
    schedule={"name": "cosine", "epochs": 3, "warmup_epochs": 1, "warmup": "quadratic", "min_lr": 0.001},
    stages=[{"name": "bn-fc", "epochs": 1, "lr": 0.01, "init_from": "best_ema", "trainable": "bn_fc"}],
)
STEPS_PER_EPOCH = 8  # 160 images, 3 per class held out -> 130 // 16


def run_cli(*argv: str) -> int:
    return main(["run", *argv, "--progress", "none"])


def run_subprocess(*argv: str, env_extra: dict | None = None, wait: bool = True):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    cmd = [sys.executable, str(DRIVER), "run", *argv, "--progress", "none"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        out, err = proc.communicate(timeout=180)
        return proc.returncode, out, err
    return proc


def wait_for_event(run_dir: Path, pred, proc, timeout: float = 90.0) -> dict:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for ev in events_of(run_dir) if (run_dir / "metrics.jsonl").exists() else []:
            if pred(ev):
                return ev
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early ({proc.returncode}): {proc.stderr.read()}")
        time.sleep(0.02)
    raise AssertionError("timed out waiting for an event")


def assert_same_training(a: Path, b: Path) -> None:
    """Same final weights (raw and EMA, exactly) and the same per-epoch metrics."""
    ca, cb = C.load_checkpoint(a / "checkpoints/last.pt"), C.load_checkpoint(b / "checkpoints/last.pt")
    assert ca["step"] == cb["step"] and ca["epoch"] == cb["epoch"]
    for key in ("model", "ema"):
        assert ca[key].keys() == cb[key].keys()
        for k in ca[key]:
            assert torch.equal(ca[key][k], cb[key][k]), f"{key}.{k} differs"
    ea, eb = last_per_epoch(events_of(a)), last_per_epoch(events_of(b))
    assert ea.keys() == eb.keys()
    for epoch in ea:
        for field in ("train_loss", "train_top1", "val_top1", "test_top1", "ema_val_top1", "ema_test_top1", "lr", "step"):
            assert ea[epoch].get(field) == pytest.approx(eb[epoch].get(field), rel=1e-9, abs=1e-12), (epoch, field)
    sa, sb = summary_of(a), summary_of(b)
    assert sa["best"] == sb["best"] and sa["last"] == sb["last"] and sb["status"] == "completed"
    assert json.loads((a / "confusion.json").read_text()) == json.loads((b / "confusion.json").read_text())


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny_folder) -> Path:
    """The uninterrupted run the resume tests compare against."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("ref")
    recipe = write_recipe(tmp, tiny_folder, **RESUME_SECTIONS)
    run_dir = tmp / "run"
    assert run_cli(str(recipe), "--run-dir", str(run_dir)) == 0
    return run_dir


# ------------------------------------------------------------------------------ outputs


def validate_event(ev: dict) -> None:
    required, optional = metrics.EVENT_FIELDS[ev["event"]]
    keys = set(ev) - {"v", "event", "time"}
    assert set(required) <= keys, (ev["event"], set(required) - keys)
    assert keys <= set(required) | set(optional), (ev["event"], keys - set(required) - set(optional))
    assert ev["v"] == metrics.SCHEMA_VERSION


def test_predictions_are_the_images_behind_the_confusion_matrix(reference_run, tiny_folder):
    """predictions.json: one entry per test image, its file and true class as the dataset has
    them, and predictions that add up to confusion.json's matrix (same model, same epoch)."""
    from fgbench import rundir as R

    pred = json.loads((reference_run / R.PREDICTIONS_FILE).read_text())
    conf = json.loads((reference_run / R.CONFUSION_FILE).read_text())
    assert (pred["model"], pred["epoch"], pred["split"]) == (conf["model"], conf["epoch"], "test")
    classes = sorted(p.name for p in (tiny_folder / "test").iterdir())
    assert pred["class_names"] == conf["class_names"] == classes
    assert len(pred["file"]) == len(pred["label"]) == len(pred["predicted"]) == 6 * len(classes)
    for f, y in zip(pred["file"], pred["label"]):
        assert Path(f).parent.name == classes[y] and Path(f).is_file()
    n = len(classes)
    matrix = [[0] * n for _ in range(n)]
    for y, p in zip(pred["label"], pred["predicted"]):
        matrix[y][p] += 1
    assert matrix == conf["matrix"]
    assert any(y != p for y, p in zip(pred["label"], pred["predicted"])), "a tiny run makes some mistakes"


def test_completed_run_writes_every_file_of_the_contract(reference_run):
    run = reference_run
    for name in ("recipe.toml", "run.json", "metrics.jsonl", "log.txt", "summary.json", "classes.json",
                 "confusion.json", "predictions.json", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    events = events_of(run)
    for ev in events:
        validate_event(ev)
    kinds = [ev["event"] for ev in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished" and events[-1]["status"] == "completed"
    assert events[0]["loader"] == {"kind": "standard", "reason": "set in the recipe"}
    assert any(ev["event"] == "log" and ev["message"] == "data loader: standard (set in the recipe)" for ev in events)
    assert kinds.count("stage_started") == 2 and kinds.count("epoch") == 4
    steps = [ev for ev in events if ev["event"] == "step"]
    assert [ev["step"] for ev in steps] == list(range(2, 33, 2))  # log_every_steps = 2, 4 epochs x 8 steps
    epochs = [ev for ev in events if ev["event"] == "epoch"]
    assert [ev["epoch"] for ev in epochs] == [1, 2, 3, 4] and epochs[-1]["step"] == 32
    assert all({"val_top1", "test_top1", "ema_val_top1", "ema_test_topk"} <= set(ev) for ev in epochs)
    evals = {(ev["split"], ev["model"]) for ev in events if ev["event"] == "eval"}
    assert evals == {("val", "raw"), ("test", "raw"), ("val", "ema"), ("test", "ema")}

    s = summary_of(run)
    contract = {"run_id", "name", "status", "dataset", "arch", "epochs_done", "total_epochs", "step", "duration_s",
                "images_per_s", "peak_mem_mb", "train_images", "val_images", "test_images", "select_on", "best",
                "last", "final_test_sizes", "skipped_images"}
    assert contract <= set(s)
    assert (s["status"], s["epochs_done"], s["total_epochs"], s["step"]) == ("completed", 4, 4, 32)
    assert (s["train_images"], s["val_images"], s["test_images"]) == (130, 30, 60)
    # the run's best is the last stage's (epoch 4); test numbers are reported at that epoch
    assert s["best"]["raw"]["epoch"] == 4 and s["best"]["ema"]["epoch"] == 4
    ep4 = last_per_epoch(events)[4]
    assert s["best"]["raw"]["test_top1"] == ep4["test_top1"] and s["last"]["ema"]["test_top1"] == ep4["ema_test_top1"]

    classes = json.loads((run / "classes.json").read_text())
    assert classes == sorted(classes) and len(classes) == 10
    conf = json.loads((run / "confusion.json").read_text())
    assert conf["split"] == "test" and conf["model"] in ("raw", "ema") and conf["class_names"] == classes
    assert sum(map(sum, conf["matrix"])) == 60 and len(conf["matrix"]) == 10
    top1 = s["best"][conf["model"]]["test_top1"]
    assert 100 * sum(conf["matrix"][i][i] for i in range(10)) / 60 == pytest.approx(top1)

    ckpt = torch.load(run / "checkpoints/last.pt", weights_only=True)
    for key in ("format", "kind", "epoch", "step", "stage", "recipe", "class_names", "model", "ema", "optimizer",
                "scheduler", "scaler", "rng", "best_tracker"):
        assert key in ckpt, key
    assert ckpt["kind"] == "last" and ckpt["recipe"]["name"] == "tiny" and ckpt["class_names"] == classes
    best = torch.load(run / "checkpoints/best.pt", weights_only=True)
    assert best["kind"] == "best" and best["ema"] is not None and best["model"] is not None

    info = json.loads((run / "run.json").read_text())
    assert info["argv"] and info["source_recipe"].endswith("r.toml") and info["pid"] > 0
    assert "stage bn-fc" in (run / "log.txt").read_text() or "bn-fc" in (run / "metrics.jsonl").read_text()


def test_training_lowers_the_loss(tmp_path, tiny_folder):
    recipe = write_recipe(tmp_path, tiny_folder, schedule={"name": "cosine", "epochs": 6, "warmup_epochs": 0.5},
                          optim={"name": "adamw", "lr": 0.01, "weight_decay": 0.01}, eval={"select_on": "last"},
                          runtime={"device": "cpu", "seed": 2, "log_every_steps": 4, "eval_every_epochs": 3})
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 0
    ev = events_of(run)
    epochs = last_per_epoch(ev)
    assert epochs[6]["train_loss"] < 0.75 * epochs[1]["train_loss"]
    assert epochs[6]["train_top1"] > epochs[1]["train_top1"] + 15
    assert "test_top1" not in epochs[1] and "test_top1" in epochs[3]  # eval_every_epochs = 3
    assert summary_of(run)["best"]["raw"]["epoch"] == 6  # select_on = last


# ------------------------------------------------------------------------------ stages


def test_stage_handover_takes_the_chosen_weights_and_bn_fc_freezes_the_rest(tmp_path, tiny_folder, reference_run):
    # The same recipe without its second stage trains the first stage identically.
    sections = {k: v for k, v in RESUME_SECTIONS.items() if k != "stages"}
    recipe = write_recipe(tmp_path, tiny_folder, **sections)
    one = tmp_path / "one"
    assert run_cli(str(recipe), "--run-dir", str(one)) == 0
    stage1_best_ema = C.load_checkpoint(one / "checkpoints/best.pt")["ema"]
    final = C.load_checkpoint(reference_run / "checkpoints/last.pt")["model"]
    frozen = [k for k in final if k.endswith("weight") and final[k].ndim == 4]  # conv kernels
    assert frozen
    for k in frozen:
        assert torch.equal(final[k], stage1_best_ema[k]), k  # started from best EMA, never trained after
    bn_or_fc = [k for k in final if k.endswith(("bias", "weight")) and final[k].ndim < 4]
    assert any(not torch.equal(final[k], stage1_best_ema[k]) for k in bn_or_fc)  # BN and classifier trained
    started = [ev for ev in events_of(reference_run) if ev["event"] == "stage_started"]
    assert started[1]["init_from"] == "best_ema" and started[1]["trainable"] == "bn_fc"
    assert started[1]["first_epoch"] == 4 and started[1]["lr"] == 0.01


# ------------------------------------------------------------------------------ resume


def test_resume_after_a_stop_in_the_middle_of_an_epoch_is_exact(tmp_path, tiny_folder, reference_run, monkeypatch,
                                                                 capsys):
    import fgbench.train.trainer as tr

    original = tr.StopFlag

    class StopAtStep12(original):
        calls = 0

        def __call__(self) -> bool:
            StopAtStep12.calls += 1
            if StopAtStep12.calls == 12:
                self.requested, self.signal = True, "SIGINT"
            return self.requested

    monkeypatch.setattr(tr, "StopFlag", StopAtStep12)
    recipe = write_recipe(tmp_path, tiny_folder, **RESUME_SECTIONS)
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 130
    ckpt = C.load_checkpoint(run / "checkpoints/last.pt")
    assert (ckpt["step"], ckpt["epoch"], ckpt["batch"]) == (12, 1, 4)  # 4 batches into epoch 2
    events = events_of(run)
    assert events[-1]["event"] == "run_finished" and events[-1]["status"] == "interrupted"
    assert summary_of(run)["status"] == "interrupted"
    monkeypatch.setattr(tr, "StopFlag", original)
    capsys.readouterr()
    assert main(["run", "--resume", str(run), "--progress", "lines"]) == 0
    # the console says where it continues from (worked out from the checkpoint asserted above:
    # 1 epoch done, 4 batches into the next, step 12) and which loader feeds it
    out = capsys.readouterr().out
    total = events_of(run)[0]["total_epochs"]
    assert (f"resumed from checkpoints/last.pt: epoch 2/{total} after batch 4, step 12; "
            "continuing with batch 5\ndata loader: ") in out, out
    assert_same_training(reference_run, run)
    started = [ev for ev in events_of(run) if ev["event"] == "run_started"]
    assert started[1]["resumed"] == {"epoch": 1, "step": 12, "batch": 4}
    assert run_cli("--resume", str(run)) == 2  # completed runs are not resumed


def test_sigint_stops_with_a_checkpoint_and_resume_matches(tmp_path, tiny_folder, reference_run):
    recipe = write_recipe(tmp_path, tiny_folder, **RESUME_SECTIONS)
    run = tmp_path / "run"
    proc = run_subprocess(str(recipe), "--run-dir", str(run), wait=False,
                          env_extra={"FGBENCH_TEST_SLOW_FROM_STEP": "10"})
    wait_for_event(run, lambda ev: ev["event"] == "step" and ev["step"] >= 10, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    ckpt = C.load_checkpoint(run / "checkpoints/last.pt")
    assert 10 <= ckpt["step"] < 16 and ckpt["batch"] > 0  # mid-epoch 2
    assert events_of(run)[-1]["status"] == "interrupted"
    assert "--resume" in out
    assert f"checkpoint written at step {ckpt['step']}." in out  # the step it can continue from
    code, out, err = run_subprocess("--resume", str(run))
    assert code == 0, err
    assert_same_training(reference_run, run)


def test_sigkill_after_a_checkpoint_then_resume_matches(tmp_path, tiny_folder, reference_run):
    recipe = write_recipe(tmp_path, tiny_folder, **RESUME_SECTIONS)
    run = tmp_path / "run"
    # pause right after the checkpoint that ends stage 1 (epoch 3): the resume must start stage 2
    # from the best EMA weights it finds in best.pt.
    proc = run_subprocess(str(recipe), "--run-dir", str(run), wait=False,
                          env_extra={"FGBENCH_TEST_PAUSE_AFTER_CHECKPOINT_EPOCH": "3"})
    wait_for_event(run, lambda ev: ev["event"] == "checkpoint" and ev["kind"] == "last" and ev["epoch"] == 3, proc)
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    from fgbench.rundir import read_run

    assert read_run(run).status == "interrupted"  # no run_finished, pid gone
    code, out, err = run_subprocess("--resume", str(run))
    assert code == 0, err
    assert_same_training(reference_run, run)


# ------------------------------------------------------------------------------ exit codes


def test_bad_recipe_is_one_line_exit_2_and_no_run_dir(tmp_path, tiny_folder, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[optim]\nname = "sgd"\nmomentun = 0.9\n')
    runs_root = tmp_path / "runs"
    assert run_cli(str(bad), "--runs-root", str(runs_root)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.toml" in err and "optim.momentun" in err
    assert not runs_root.exists()
    good = write_recipe(tmp_path, tiny_folder)
    assert run_cli(str(good), "--set", "optim.lr=-1", "--runs-root", str(runs_root)) == 2
    assert "optim.lr" in capsys.readouterr().err
    assert run_cli(str(good), "--set", "data.root=/nonexistent/x", "--runs-root", str(runs_root)) == 2
    assert "/nonexistent/x" in capsys.readouterr().err
    assert not runs_root.exists()


def test_non_empty_run_dir_is_refused(tmp_path, tiny_folder, capsys):
    recipe = write_recipe(tmp_path, tiny_folder)
    target = tmp_path / "taken"
    target.mkdir()
    (target / "something").write_text("x")
    assert run_cli(str(recipe), "--run-dir", str(target)) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in target.iterdir()) == ["something"]


def test_crash_is_recorded_with_traceback_and_exit_1(tmp_path, tiny_folder):
    # alexnet cannot shrink a 16 px image through its pooling layers: a genuine runtime error.
    recipe = write_recipe(tmp_path, tiny_folder, model={"arch": "alexnet"})
    run = tmp_path / "run"
    code, out, err = run_subprocess(str(recipe), "--run-dir", str(run))
    assert code == 1
    assert "Traceback" in err
    last = events_of(run)[-1]
    assert last["event"] == "run_finished" and last["status"] == "failed" and last["exit_code"] == 1
    assert "RuntimeError" in last["error"] and "Traceback" in last["traceback"]
    assert summary_of(run)["status"] == "failed"
    assert "Traceback" in (run / "log.txt").read_text()


def test_corrupt_image_stops_naming_the_file_or_is_skipped_and_counted(tmp_path, tiny_folder, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_folder, data)
    bad = data / "train" / synthetic_class() / "zz_broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    recipe = write_recipe(tmp_path, data, schedule={"name": "cosine", "epochs": 1}, data={"val_fraction": 0.0},
                          eval={"select_on": "last"})
    run = tmp_path / "run1"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "skip_corrupt" in err[0]
    assert not run.exists()  # exit 2 is bad input: no run directory, also when found mid-run
    run2 = tmp_path / "run2"
    assert run_cli(str(recipe), "--set", "data.skip_corrupt=true", "--run-dir", str(run2)) == 0
    assert summary_of(run2)["skipped_images"] == 1
    assert any(ev["event"] == "log" and str(bad) in ev["message"] for ev in events_of(run2))


def synthetic_class() -> str:
    from fgbench.data.synthetic import CLASS_NAMES

    return CLASS_NAMES[0]


# ------------------------------------------------------------------------------ options


def test_device_loader_max_steps_final_sizes_and_epoch_stepping(tmp_path, tiny_folder):
    recipe = write_recipe(
        tmp_path, tiny_folder,
        data={"loader": "device", "val_fraction": 0.0, "batch_size": 32},
        schedule={"name": "multistep", "epochs": 9, "max_steps": 11, "milestones": [2], "gamma": 0.5,
                  "stepping": "epoch"},
        eval={"select_on": "test", "final_test_sizes": [16, 24]},
        runtime={"device": "cpu", "seed": 0, "log_every_steps": 1},
    )
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 0
    ev = events_of(run)
    steps = [e for e in ev if e["event"] == "step"]
    assert steps[-1]["step"] == 11 and len(last_per_epoch(ev)) == 3  # 5 steps/epoch: 5 + 5 + 1
    lrs = {e["step"]: e["lr"] for e in steps}
    assert lrs[1] == lrs[5] == pytest.approx(0.05) and lrs[11] == pytest.approx(0.025)  # milestone at epoch 2
    finals = [e for e in ev if e["event"] == "final_eval"]
    assert {(e["model"], e["test_size"]) for e in finals} == {("raw", 16), ("raw", 24)}
    s = summary_of(run)
    assert set(s["final_test_sizes"]) == {"16", "24"} and s["final_test_sizes"]["16"]["ema"] is None
    assert s["final_test_sizes"]["16"]["raw"] == pytest.approx(s["best"]["raw"]["test_top1"])
    assert s["val_images"] == 0 and s["best"]["raw"]["val_top1"] is None


def test_the_trainer_follows_a_cosine_hold_and_period(tmp_path, tiny_folder):
    recipe = write_recipe(
        tmp_path, tiny_folder,
        data={"loader": "device", "val_fraction": 0.0, "batch_size": 32},  # 160 images: 5 steps an epoch
        schedule={"name": "cosine", "epochs": 3, "hold_epochs": 1, "period_epochs": 4},
        eval={"select_on": "test"},
        runtime={"device": "cpu", "seed": 0, "log_every_steps": 1},
    )
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 0
    lrs = {e["step"]: e["lr"] for e in events_of(run) if e["event"] == "step"}
    assert lrs[1] == lrs[5] == lrs[6] == pytest.approx(0.05)  # the first epoch held at the peak
    # then a cosine of 4 epochs (20 steps) of which 2 remain: step 15 is the 10th step of it
    assert lrs[15] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 9 / 20)))
    assert lrs[15] > 0.02  # cut off halfway, far from min_lr

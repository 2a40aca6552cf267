"""`fgbench sweep`, `runs compare|export|show`, `predict` and `evaluate` on runs made by the real
trainer: a sweep of four tiny runs (quickstart's model on a generated 3-class folder data set),
interrupted with SIGINT in its second run and continued, then every command on its runs."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fgbench import rundir
from fgbench.sweeps import state as S

from fgbench.rundir import events as metrics
from fakes.tiny_data import COLORS, make_images

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

TINY = ["--set", "data.dataset=folder", "--set", "data.train_size=16", "--set", "data.test_size=16",
        "--set", "data.test_crop=resize",
        "--set", "data.batch_size=8", "--set", "data.normalize=imagenet", "--set", "eval.final_test_sizes=[16,24]",
        "--set", "data.val_fraction=0.25"]


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("real")
    data = base / "data"
    make_images(data, {"train": 12, "test": 8})
    root = base / "runs"
    env = dict(os.environ, FGBENCH_HOME=str(base / "home"), OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "fgbench", "sweep", str(REPO / "recipes" / "quickstart.toml"), *TINY,
           "--set", f"data.root={data}", "--grid", "ema.enabled=true,false", "--grid", "schedule.epochs=2,12",
           "--tag", "real", "--runs-root", str(root)]
    proc = subprocess.Popen(cmd, env=env, cwd=base, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state_file = root / "sweeps" / "real" / "sweep.json"
    deadline = time.monotonic() + 240
    interrupted_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            p = json.loads(state_file.read_text())["points"][1]
        except (FileNotFoundError, ValueError, KeyError):
            p = None
        if p and p["status"] == "running" and p["run_dir"]:
            events = metrics.read_events(Path(p["run_dir"]) / metrics.METRICS_FILE)
            if any(e["event"] == "epoch" for e in events):
                interrupted_at = max(e["epoch"] for e in events if e["event"] == "epoch")
                proc.send_signal(signal.SIGINT)
                break
        time.sleep(0.1)
    first_out, _ = proc.communicate(timeout=240)
    first_state = json.loads(state_file.read_text())
    cont = subprocess.run([sys.executable, "-m", "fgbench", "sweep", "--continue", "real", "--runs-root", str(root)],
                          env=env, cwd=base, capture_output=True, text=True, timeout=300)
    return {"root": root, "data": data, "env": env, "first_code": proc.returncode, "first_out": first_out,
            "first_state": first_state, "interrupted_at": interrupted_at, "cont": cont}


def _point_dirs(real: dict) -> list[Path]:
    return [Path(p.run_dir) for p in S.SweepState.load("real", real["root"]).points]


def test_sweep_interrupted_then_continued(real: dict) -> None:
    assert real["interrupted_at"] is not None, real["first_out"]
    assert real["first_code"] == 130, real["first_out"]
    assert "continue with: fgbench sweep --continue real" in real["first_out"]
    assert [p["status"] for p in real["first_state"]["points"]] == ["completed", "interrupted", "pending", "pending"]
    cont = real["cont"]
    assert cont.returncode == 0, cont.stdout + cont.stderr
    assert "1 of 4 run(s) already completed" in cont.stdout
    state = S.SweepState.load("real", real["root"])
    assert [p.status for p in state.points] == ["completed"] * 4
    assert [p.label for p in state.points] == [
        "enabled=true epochs=2", "enabled=true epochs=12", "enabled=false epochs=2", "enabled=false epochs=12"]
    # the interrupted run was resumed in place from its checkpoint, and no epoch ran twice
    second = Path(state.points[1].run_dir)
    assert second == Path(real["first_state"]["points"][1]["run_dir"])
    events = metrics.read_events(second / metrics.METRICS_FILE)
    assert sum(e["event"] == "run_started" for e in events) == 2
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == list(range(1, 13))
    # resumed exactly: the raw model's curve equals that of the uninterrupted run without EMA
    # (the EMA never feeds back into training)
    uninterrupted = metrics.read_events(Path(state.points[3].run_dir) / metrics.METRICS_FILE)
    curve = [(e["epoch"], e["train_loss"], e["test_top1"]) for e in events if e["event"] == "epoch"]
    assert curve == [(e["epoch"], e["train_loss"], e["test_top1"]) for e in uninterrupted if e["event"] == "epoch"]
    infos = [rundir.read_run(d) for d in _point_dirs(real)]
    assert [i.status for i in infos] == ["completed"] * 4
    assert [i.info.get("sweep_tag") for i in infos] == ["real"] * 4
    # the final ablation table: one row per point, labelled by its grid values
    table = cont.stdout[cont.stdout.index("| variant"):].splitlines()
    assert [line.split("|")[1].strip() for line in table[2:6]] == [p.label for p in state.points]


def test_list_and_compare_the_sweep(real: dict, cli) -> None:
    root = real["root"]
    code, out, err = cli("runs", "list", "--runs-root", root, "--sweep", "real", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["status"] for r in rows] == ["completed"] * 4
    code, out, err = cli("runs", "list", "--runs-root", root, "--where", "ema.enabled=false", "--format", "json")
    assert len(json.loads(out)) == 2
    code, out, err = cli("runs", "compare", "--runs-root", root, "*quickstart*", "--format", "json")
    assert code == 0, err
    table = json.loads(out)
    assert len(table) == 4
    assert {k for k in table[0] if "." in k} == {"ema.enabled", "schedule.epochs"}  # what the sweep varied
    for row, d in zip(table, _point_dirs(real)):
        s = rundir.read_json(d / rundir.SUMMARY_FILE)
        assert row["test_top1_best"] == s["best"]["raw"]["test_top1"]
        assert row["test_top1_last"] == s["last"]["raw"]["test_top1"]
        assert row["test@24"] == s["final_test_sizes"]["24"]["raw"]
        assert (row["ema_test_top1_best"] is None) == (not row["ema.enabled"])


def test_export_real_runs(real: dict, cli, tmp_path: Path) -> None:
    out = tmp_path / "all.csv"
    code, text, err = cli("runs", "export", "--runs-root", real["root"], "--sweep", "real", "--format", "csv", "-o", out)
    assert code == 0, err
    rows = list(csv.DictReader(out.open()))
    for d in _point_dirs(real):
        s = rundir.read_json(d / rundir.SUMMARY_FILE)
        last = [r for r in rows if r["run"] == d.name and r["metric"] == "epoch/test_top1"][-1]
        assert float(last["value"]) == s["last"]["raw"]["test_top1"]
        assert int(last["epoch"]) == s["epochs_done"]
    jl = tmp_path / "all.jsonl"
    assert cli("runs", "export", "--runs-root", real["root"], "--sweep", "real", "--format", "jsonl", "-o", jl)[0] == 0
    n = sum(len(metrics.read_events(d / metrics.METRICS_FILE)) for d in _point_dirs(real))
    assert len(jl.read_text().splitlines()) == n


def test_show_real_run(real: dict, cli) -> None:
    d = _point_dirs(real)[1]
    code, out, err = cli("runs", "show", "--runs-root", real["root"], d.name)
    assert code == 0, err
    assert "per-class accuracy (test split" in out and "sweep real" in out
    for name in COLORS:
        assert f"  {name}" in out
    assert "val top-1 % (x = epoch)" in out


def test_evaluate_reproduces_the_runs_numbers(real: dict, cli) -> None:
    from fgbench.train.predict import evaluate_run

    d = _point_dirs(real)[1]
    s = rundir.read_json(d / rundir.SUMMARY_FILE)
    res = evaluate_run(d, device="cpu")
    assert res[0]["top1"] == pytest.approx(s["best"]["raw"]["test_top1"], abs=1e-6)
    assert res[0]["images"] == s["test_images"]
    confusion = json.loads((d / "confusion.json").read_text())
    sel = confusion["model"]
    res = evaluate_run(d, ema=sel == "ema", device="cpu")
    assert res[0]["confusion"] == confusion["matrix"] and res[0]["class_names"] == confusion["class_names"]
    res = evaluate_run(d, test_sizes=[16, 24], ema=sel == "ema", device="cpu")
    assert [r["top1"] for r in res] == pytest.approx(
        [s["final_test_sizes"][k][sel] for k in ("16", "24")], abs=1e-6)
    code, out, err = cli("evaluate", "--runs-root", real["root"], d.name, "--test-size", "24", "--checkpoint", "last",
                         "--device", "cpu")
    assert code == 0, err
    assert "last checkpoint, raw weights from epoch 12, test split" in out
    assert out.splitlines()[2].split()[0] == "24"
    code, _, err = cli("evaluate", "--runs-root", real["root"], _point_dirs(real)[3].name, "--ema", "--device", "cpu")
    assert code == 2 and "no EMA weights" in err and len(err.strip().splitlines()) == 1


def test_predict_generated_images(real: dict, cli, tmp_path: Path) -> None:
    make_images(tmp_path / "new", {"x": 1}, seed=99)
    images = [tmp_path / "new" / "x" / c / "0.png" for c in ("red", "blue")]
    d = _point_dirs(real)[1]
    code, out, err = cli("predict", "--runs-root", real["root"], d.name, *images, "--top-k", "5", "--format", "json",
                         "--device", "cpu")
    assert code == 0, err
    res = json.loads(out)
    assert [r["image"] for r in res] == [str(p) for p in images]
    for r in res:
        probs = [t["probability"] for t in r["top"]]
        assert len(probs) == 3  # k is capped at the number of classes
        assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert {t["class"] for t in r["top"]} == set(COLORS)
    code, out, err = cli("predict", "--runs-root", real["root"], d.name, images[0], "--ema", "--device", "cpu")
    assert code == 0, err
    assert out.splitlines()[0].startswith(f"{d.name}: best checkpoint, EMA weights from epoch ")
    assert out.splitlines()[1] == str(images[0])
    assert out.splitlines()[2].split()[0] == "1." and out.splitlines()[2].endswith("%")
    # errors: one line, exit 2
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    for argv, msg in ((["predict", d.name, str(bad)], "cannot decode image"),
                      (["predict", d.name, str(tmp_path / "missing.png")], "no such image file"),
                      (["predict", _point_dirs(real)[2].name, str(images[0]), "--ema"], "no EMA weights")):
        code, _, err = cli(*argv, "--runs-root", real["root"], "--device", "cpu")
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err


def test_predict_agrees_with_the_runs_test_accuracy(real: dict) -> None:
    """predict() over the run's whole test split with the best raw weights gives the run's own
    test top-1 at its best epoch: same weights, same transform, same class order."""
    from fgbench.train.predict import predict_images

    d = _point_dirs(real)[3]  # no EMA, 12 epochs
    s = rundir.read_json(d / rundir.SUMMARY_FILE)
    items = [(p, p.parent.name) for p in sorted((real["data"] / "test").glob("*/*.png"))]
    res = predict_images(d, [str(p) for p, _ in items], top_k=1, device="cpu")
    correct = sum(r["top"][0]["class"] == label for r, (_, label) in zip(res, items))
    assert 100.0 * correct / len(items) == pytest.approx(s["best"]["raw"]["test_top1"], abs=1e-6)

"""Trackers (`[tracking]`): one tiny real run logs to TensorBoard, MLflow (SQLite store) and W&B
(offline), each read back with its own reader; a failing tracker is reported once and the run
completes; the tracker packages stay unimported unless configured."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fgbench import rundir, tracking
from fgbench.rundir import events as metrics
from fakes.tiny_data import folder_recipe_head, make_images

REPO = Path(__file__).resolve().parents[2]


def _tiny_recipe(tmp_path: Path, tracking_toml: str) -> Path:
    data = tmp_path / "data"
    if not data.exists():
        make_images(data, {"train": 8, "test": 4})
    f = tmp_path / "r.toml"
    f.write_text(folder_recipe_head(data, "tr", workers=0) + textwrap.dedent("""
        [optim]
        name = "sgd"
        lr = 0.1
        [schedule]
        name = "cosine"
        epochs = 2
        [runtime]
        device = "cpu"
        log_every_steps = 1
        """) + textwrap.dedent(tracking_toml), encoding="utf-8")
    return f


def _run(tmp_path: Path, recipe: Path, *, extra_code: str = "") -> tuple[Path, str]:
    """``fgbench run`` in a fresh interpreter; returns the run directory and the printed output."""
    root = tmp_path / "runs"
    code = textwrap.dedent(f"""
        import sys
        from fgbench.cli import main
        code = main(["run", {str(recipe)!r}, "--runs-root", {str(root)!r}, "--progress", "lines"])
        {extra_code}
        sys.exit(code)
        """)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", WANDB_SILENT="true")
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    (run_dir,) = [p for p in root.iterdir() if rundir.is_run_dir(p)]
    return run_dir, res.stdout + res.stderr


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """What fgbench's own metrics file says, per scalar name: (step, value) pairs."""
    out: dict[str, list[tuple[int, float]]] = {}
    last = 0
    for ev in metrics.read_events(run_dir / metrics.METRICS_FILE):
        if isinstance(ev.get("step"), int):
            last = ev["step"]
        for row in metrics.event_scalars([ev]):
            out.setdefault(row["metric"], []).append((last, float(row["value"])))
    return out


def _read_wandb(path: Path) -> list:
    """The records of a W&B offline ``.wandb`` file (a LevelDB-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, off, records, pending = 32768, 7, [], b""
    while off + 7 <= len(data):
        left = block - off % block
        if left < 7:
            off += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[off:off + 7])
        chunk = data[off + 7:off + 7 + length]
        off += 7 + length
        if kind in (1, 2):
            pending = chunk
        else:
            pending += chunk
        if kind in (1, 4):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(pending)
            records.append(rec)
            pending = b""
    return records


@pytest.mark.slow
def test_three_trackers_read_back_with_their_own_readers(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    store = tmp_path / "ml.db"
    recipe = _tiny_recipe(tmp_path, f"""
        [tracking.tensorboard]
        [tracking.mlflow]
        tracking_uri = "sqlite:///{store}"
        experiment = "exp"
        [tracking.wandb]
        mode = "offline"
        """)
    run_dir, out = _run(tmp_path, recipe)
    assert "tracking:" not in out  # nothing failed
    ours = _scalars(run_dir)
    assert ours["epoch/val_top1"] and ours["step/loss"]

    # TensorBoard: tensorboard's own reader, every scalar at fgbench's step
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    ea.Reload()
    for name in ("epoch/val_top1", "step/loss", "eval/test/raw/top1"):
        got = [(s.step, s.value) for s in ea.Scalars(name)]
        assert [st for st, _ in got] == [st for st, _ in ours[name]]
        assert [v for _, v in got] == pytest.approx([v for _, v in ours[name]], rel=1e-6)  # stored as float32
    assert set(ea.Tags()["scalars"]) == set(ours)

    # MLflow: its client on the SQLite store
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    (mrun,) = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert mrun.info.status == "FINISHED" and mrun.data.tags["fgbench.run_id"] == run_dir.name
    assert mrun.data.params["optim.lr"] == "0.1" and mrun.data.params["schedule.epochs"] == "2"
    hist = sorted((m.step, m.value) for m in client.get_metric_history(mrun.info.run_id, "epoch/val_top1"))
    assert hist == ours["epoch/val_top1"]
    summary = rundir.read_run(run_dir).summary
    assert not (tmp_path / "mlruns").exists()  # artifacts go beside the store, not into the cwd
    art = Path(client.download_artifacts(mrun.info.run_id, "summary.json", str(tmp_path)))
    assert json.loads(art.read_text()) == summary.to_json()
    assert mrun.data.metrics["summary/best_raw_val_top1"] == pytest.approx(summary.best["raw"].val_top1)

    # W&B offline: the run file, record by record
    (wfile,) = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    records = _read_wandb(wfile)
    rows = []
    for rec in records:
        if rec.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in rec.history.item})
    val = [(int(r["trainer/step"]), r["epoch/val_top1"]) for r in rows if "epoch/val_top1" in r]
    assert val == ours["epoch/val_top1"]
    configs = [rec.run.config for rec in records if rec.WhichOneof("record_type") == "run"]
    configs += [rec.config for rec in records if rec.WhichOneof("record_type") == "config"]
    conf = {u.key or "/".join(u.nested_key): json.loads(u.value_json) for c in configs for u in c.update}
    assert conf["optim"]["lr"] == 0.1
    summaries = {u.key or "/".join(u.nested_key): json.loads(u.value_json)
                 for rec in records if rec.WhichOneof("record_type") == "summary" for u in rec.summary.update}
    assert summaries["summary/best_raw_val_top1"] == pytest.approx(summary.best["raw"].val_top1)
    assert summaries["status"] == "completed"


@pytest.mark.slow
def test_a_failing_tracker_is_reported_once_and_never_stops_training(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the event directory should go\n")
    recipe = _tiny_recipe(tmp_path, f"""
        [tracking.tensorboard]
        log_dir = "{blocker}/tb"
        """)
    # the run imports neither mlflow nor wandb: they are not configured
    run_dir, out = _run(tmp_path, recipe, extra_code="print('imported:', sorted(m for m in ('mlflow', 'wandb', "
                                                     "'optuna', 'submitit') if m in sys.modules))")
    assert "imported: []" in out
    assert rundir.read_run(run_dir).status == "completed"
    assert out.count("tracking: tensorboard failed") == 1
    log = (run_dir / rundir.LOG_FILE).read_text()
    assert log.count("tracking: tensorboard failed") == 1
    logs = [e for e in metrics.read_events(run_dir / metrics.METRICS_FILE) if e["event"] == "log"
            and "tracking: tensorboard failed" in e["message"]]
    assert len(logs) == 1 and logs[0]["level"] == "warning"


# ------------------------------------------------------------------------- without training


class Boom(tracking._Tracker):
    name = "boom"
    calls = 0

    def _log(self, event):
        Boom.calls += 1
        raise ConnectionError("unreachable")


def test_fanout_writes_first_then_listeners_and_a_failure_turns_the_tracker_off(tmp_path: Path, capsys) -> None:
    reported: list[str] = []
    w = metrics.MetricsWriter(tmp_path / "m.jsonl")
    boom = Boom(None, {"report": reported.append})
    seen: list[str] = []
    fan = tracking.EventFanout(w, [boom, lambda ev: seen.append(ev["event"])])
    fan.emit("run_started", run_id="r", recipe={}, class_names=[], device="cpu", host="h", pid=1)
    for i in range(3):
        fan.emit("step", epoch=1, step=i, loss=1.0, lr=0.1)
    fan.close()
    assert Boom.calls == 1 and boom.failed
    assert len(reported) == 1 and "boom failed" in reported[0] and "unreachable" in reported[0]
    assert capsys.readouterr().err.count("tracking: boom failed") == 1
    assert seen == ["run_started", "step", "step", "step"]  # the other listener still gets everything
    assert [e["event"] for e in metrics.read_events(tmp_path / "m.jsonl")] == seen


def test_settings_give_defaults_and_the_recipe_wins_per_tracker(tmp_path: Path) -> None:
    from fgbench.errors import UserError
    from fgbench.recipe import validate_recipe

    settings = {"tracking": {"mlflow": {"tracking_uri": "http://127.0.0.1:5000"}, "wandb": {"project": "lab"}}}
    r = validate_recipe({"tracking": {"wandb": {"project": "mine", "enabled": True}, "tensorboard": {"enabled": False}}})
    got = tracking.resolve_tracking(r.tracking, settings)
    assert set(got) == {"mlflow", "wandb"}
    assert got["mlflow"].tracking_uri == "http://127.0.0.1:5000" and got["wandb"].project == "mine"
    assert tracking.resolve_tracking(None, {}) == {}
    with pytest.raises(UserError, match=r"s.toml: tracking.wandb.mode"):
        tracking.resolve_tracking(None, {"tracking": {"wandb": {"mode": "sometimes"}}}, "s.toml")


def test_pure_modules_import_no_tracker_scheduler_or_optuna() -> None:
    code = ("import sys, fgbench.tracking, fgbench.sweeps.search, fgbench.sweeps.slurm, fgbench.sweeps.plan, fgbench.sweeps.local, fgbench.cli.runs, fgbench.cli.sweep; "
            "print(sorted(m for m in ('torch', 'mlflow', 'wandb', 'tensorboard', 'optuna', 'submitit', 'sqlalchemy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)),
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_mlflow_keeps_its_info_lines_out_of_the_console(tmp_path: Path) -> None:
    """MLflow (and alembic, creating its SQLite tables) log INFO lines to stderr by default:
    "Creating initial MLflow database tables...". The trainer's console is fgbench's: only its
    warnings and errors get through."""
    pytest.importorskip("mlflow")
    recipe = _tiny_recipe(tmp_path, f"""
        [tracking.mlflow]
        tracking_uri = "sqlite:///{tmp_path / 'ml.db'}"
        """)
    _run_dir, out = _run(tmp_path, recipe)
    assert "MLflow" not in out and "alembic" not in out and " INFO " not in out, out
    assert "tracking:" not in out  # and nothing failed

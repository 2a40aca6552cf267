"""`runs list/compare/export` show the telemetry of summary.json and the metrics file: the share of
the step spent waiting for data, the GPU's mean utilisation and the health samples."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from fgbench import rundir
from fgbench.rundir import events as metrics

from fakes.run_factory import make_run


def _with_telemetry(run: Path, data_wait: float | None, gpu: float | None) -> None:
    summary = json.loads((run / rundir.SUMMARY_FILE).read_text())
    summary.update(data_wait_frac=data_wait, gpu_util=gpu)
    rundir.write_json(run / rundir.SUMMARY_FILE, summary)


def test_list_and_compare_show_data_wait_and_gpu(cli, runs_root: Path) -> None:
    a = make_run(runs_root, "cpu-run")
    b = make_run(runs_root, "gpu-run", sets=["optim.lr=0.2"], stamp=1_700_000_100)
    _with_telemetry(a, 0.414, None)
    _with_telemetry(b, 0.02, 87.25)
    code, out, err = cli("runs", "list", "--runs-root", runs_root)
    assert code == 0, err
    header, row_b, row_a = out.splitlines()  # newest first
    assert header.split()[-3:] == ["data", "wait", "GPU"]
    assert row_a.split()[-2:] == ["41%", "-"] and row_b.split()[-2:] == ["2%", "87%"]
    code, out, err = cli("runs", "compare", "--runs-root", runs_root, a.name, b.name, "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["data_wait_frac"], r["gpu_util"]) for r in rows] == [(0.414, None), (0.02, 87.25)]


def test_a_group_of_seeds_shows_the_mean_data_wait(cli, runs_root: Path) -> None:
    for seed, wait in ((1, 0.30), (2, 0.50)):
        _with_telemetry(make_run(runs_root, "seeded", sets=[f"runtime.seed={seed}"], stamp=1_700_000_000 + seed),
                        wait, None)
    code, out, err = cli("runs", "compare", "--runs-root", runs_root, "*", "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["n"] == 2 and row["data_wait_frac"] == pytest.approx(0.40) and "gpu_util" not in row


def test_show_names_the_data_wait_and_gpu(cli, runs_root: Path) -> None:
    run = make_run(runs_root, "shown")
    _with_telemetry(run, 0.125, 64.4)
    code, out, err = cli("runs", "show", "--runs-root", runs_root, run.name)
    assert code == 0, err
    assert "123 img/s  data wait 12%  GPU 64%" in out


def test_runs_without_telemetry_have_no_such_columns(cli, runs_root: Path) -> None:
    make_run(runs_root, "old-run")
    code, out, _ = cli("runs", "list", "--runs-root", runs_root)
    assert code == 0 and "data wait" not in out and "GPU" not in out
    code, out, _ = cli("runs", "compare", "--runs-root", runs_root, "*")
    assert code == 0 and "data wait" not in out


def test_export_carries_the_health_samples(cli, runs_root: Path, tmp_path: Path) -> None:
    run = make_run(runs_root, "sampled", status="running")
    with metrics.MetricsWriter(run / metrics.METRICS_FILE) as w:
        w.emit("system", epoch=3, step=12, cpu_percent=150.0, rss_mb=800.0, gpu_util=90.0, time=1_700_000_050)
    code, out, err = cli("runs", "export", "--runs-root", runs_root, run.name, "-o", "-", "--format", "csv")
    assert code == 0, err
    rows = {r["metric"]: r for r in csv.DictReader(io.StringIO(out)) if r["event"] == "system"}
    assert set(rows) == {"system/cpu_percent", "system/rss_mb", "system/gpu_util"}
    assert (rows["system/gpu_util"]["value"], rows["system/gpu_util"]["step"]) == ("90.0", "12")

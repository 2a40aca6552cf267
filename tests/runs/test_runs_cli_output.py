"""CLI conventions of `fgbench runs`: `-o -`, exporting every run, `runs list` at the
terminal's width, English wording and per-class bars that tell 95 from 99 %."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from fgbench import report

from fakes.run_factory import make_run


@pytest.fixture
def several(runs_root: Path) -> list[Path]:
    out = []
    for i, name in enumerate(("sc_cub_r50_fixres_two_stage_long_name", "hy_intel_bawcs_ra", "quickstart")):
        out.append(make_run(runs_root, name, sets=["ema.enabled=true"], ema_val=[55, 65, 75], ema_test=[52, 63, 74],
                            stamp=1_700_000_000 + 100 * i))
    return out


def test_runs_list_fits_80_columns_and_cuts_names_sensibly(cli, runs_root, several, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    _, wide, _ = cli("runs", "list", "--runs-root", runs_root)
    assert max(len(line) for line in wide.splitlines()) > 80, "the full table is wider than 80 columns"
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = cli("runs", "list", "--runs-root", runs_root)
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    head = lines[0].split()
    # what a list is for stays: which run, its status, recipe and headline numbers
    for column in ("run", "status", "recipe", "epochs", "val@best", "test@best"):
        assert column in head
    assert "img/s" not in head  # left out first
    long_run = several[0].name
    row = next(line for line in lines[1:] if "sc_cub" in line)
    cut_run = row.split()[0]
    # a cut run id keeps its date-time prefix, which still names the run (a unique prefix)
    assert cut_run.endswith("…") and long_run.startswith(cut_run[:-1]) and len(cut_run[:-1]) >= 15
    code, shown, _ = cli("runs", "show", "--runs-root", runs_root, cut_run[:-1], "--no-plots", "--no-recipe")
    assert code == 0 and long_run in shown


def test_runs_list_to_a_pipe_without_columns_is_never_cut(cli, runs_root, several, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    _, out, _ = cli("runs", "list", "--runs-root", runs_root)
    assert "…" not in out and several[0].name in out


def test_export_dash_writes_to_standard_output(cli, runs_root, several, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a file named "-" would appear
    code, out, err = cli("runs", "export", "--runs-root", runs_root, several[1].name, "--format", "csv", "-o", "-")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and {r["run"] for r in rows} == {several[1].name}
    assert not Path("-").exists()
    assert "1 run," in err  # the count goes to stderr, not into the data
    code, out, err = cli("runs", "export", "--runs-root", runs_root, several[1].name, "--format", "jsonl", "-o", "-")
    assert code == 0 and all(json.loads(line)["run"] == several[1].name for line in out.splitlines())
    code, _, err = cli("runs", "export", "--runs-root", runs_root, "--format", "tensorboard", "-o", "-")
    assert code == 2 and "tensorboard writes a directory" in err


def test_export_without_runs_exports_every_run_as_list_lists_them(cli, runs_root, several):
    _, listed, _ = cli("runs", "list", "--runs-root", runs_root, "--format", "json")
    code, out, err = cli("runs", "export", "--runs-root", runs_root, "--format", "jsonl", "-o", "-")
    assert code == 0, err
    order = list(dict.fromkeys(json.loads(line)["run"] for line in out.splitlines()))
    assert order == [r["run"] for r in json.loads(listed)]
    assert "3 runs," in err


def test_export_without_runs_in_an_empty_root_is_bad_input(cli, runs_root):
    code, out, err = cli("runs", "export", "--runs-root", runs_root, "--format", "csv", "-o", "-")
    assert code == 2 and out == "" and "no runs" in err


@pytest.mark.parametrize("lo,hi", [(95.0, 96.0), (96.0, 97.0), (97.0, 98.0), (98.0, 99.0)])
def test_per_class_bars_tell_one_percent_apart_near_the_top(lo, hi):
    assert report.accuracy_bar(lo) != report.accuracy_bar(hi)
    assert len(report.accuracy_bar(hi)) <= report.BAR_CELLS


def test_per_class_bars_are_proportional():
    assert report.accuracy_bar(100.0) == "█" * report.BAR_CELLS
    assert report.accuracy_bar(50.0) == "█" * (report.BAR_CELLS // 2)
    assert report.accuracy_bar(0.0) == ""


def test_confusion_text_uses_the_fine_bars():
    confusion = {"class_names": ["a", "b"], "matrix": [[95, 5], [1, 99]], "model": "raw", "split": "test"}
    text = report.confusion_text(confusion)
    a = next(line for line in text.splitlines() if line.strip().startswith("a "))
    b = next(line for line in text.splitlines() if line.strip().startswith("b "))
    assert a.split()[-1] == report.accuracy_bar(95.0) and b.split()[-1] == report.accuracy_bar(99.0)
    assert a.split()[-1] != b.split()[-1]


def test_selected_epoch_reads_as_english():
    assert report.selected_epoch_text(3, "val") == "best epoch 3 (chosen on validation)"
    assert report.selected_epoch_text(1, "last") == "epoch 1 (the last epoch)"
    assert report.plural(1, "run") == "1 run" and report.plural(2, "run") == "2 runs"


def test_a_run_dir_holding_only_the_launchers_files_is_accepted(tmp_path):
    """The TUI's launcher writes launch.toml / launch.json into the new run directory before the
    trainer starts: that directory is still a fresh one, not a used one."""

    from fgbench.cli.train import check_output_dirs
    from fgbench.rundir.request import RunRequest
    from fgbench.errors import UserError

    run_dir = tmp_path / "20250101-000000-x"
    run_dir.mkdir()
    (run_dir / "launch.toml").write_text('name = "x"\n')
    (run_dir / "launch.json").write_text("{}")
    check_output_dirs(RunRequest(run_dir=str(run_dir)))
    (run_dir / "metrics.jsonl").write_text("")
    with pytest.raises(UserError, match="--run-dir is not empty"):
        check_output_dirs(RunRequest(run_dir=str(run_dir)))


def test_runs_show_gives_each_models_last_epoch_numbers(cli, runs_root):
    # the raw and EMA numbers of the last epoch (3) are the last of each curve: raw val 72 test 71,
    # EMA val 75 test 74; the best epochs are the same epoch here, so only the last-epoch half of
    # each line is checked
    run = make_run(runs_root, "toy", sets=["ema.enabled=true"], val=[60, 70, 72], test=[58, 69, 71],
                   ema_val=[55, 65, 75], ema_test=[52, 63, 74])
    code, out, err = cli("runs", "show", "--runs-root", runs_root, run.name, "--no-plots", "--no-recipe")
    assert code == 0, err
    raw = next(ln for ln in out.splitlines() if ln.startswith("raw: "))
    ema = next(ln for ln in out.splitlines() if ln.startswith("ema: "))
    assert raw.split("|  ")[1].startswith("last epoch 3: val 72.00  test 71.00"), raw
    assert ema.split("|  ")[1].startswith("last epoch 3: val 75.00  test 74.00"), ema

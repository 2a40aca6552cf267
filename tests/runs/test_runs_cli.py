"""`fgbench runs list|show|compare|export|rm` on hand-made run directories with known numbers."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from fgbench import report, rundir
from fgbench.rundir.events import METRICS_FILE

from fakes.run_factory import make_run


@pytest.fixture
def three(runs_root: Path) -> list[Path]:
    a = make_run(runs_root, "hy-B", sets=["optim.name=sgd", "optim.lr=0.1"], val=[60, 70, 65], test=[58, 69, 66],
                 confusion=[[8, 1, 1], [0, 9, 1], [3, 0, 7]],
                 final_sizes={"224": {"raw": 61.0, "ema": None}, "448": {"raw": 70.5, "ema": None}})
    b = make_run(runs_root, "hy-B+A", sets=["optim.name=adam", "optim.lr=1e-4"], ema_val=[55, 65, 75],
                 ema_test=[52, 63, 74], stamp=1_700_000_100, sweep_tag="tricks")
    c = make_run(runs_root, "hy-B+A+W", sets=["optim.name=adam", "optim.lr=1e-4", "schedule.name=cosine",
                                              "schedule.warmup_epochs=5"],
                 status="failed", stamp=1_700_000_200, epochs=2)
    return [a, b, c]


def test_list_shows_headline_numbers(cli, runs_root: Path, three) -> None:
    code, out, err = cli("runs", "list", "--runs-root", runs_root)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["run", "status", "recipe", "dataset", "model", "epochs"]
    assert "ema" in lines[0]  # one run has EMA numbers
    # newest first (the TUI's order: fgbench.rundir.newest_first)
    assert [ln.split()[0] for ln in lines[1:4]] == [three[2].name, three[1].name, three[0].name]
    row = lines[3].split()
    # val@best is epoch 2 (70), test at that epoch 69, test at the last epoch 66
    assert row[:10] == [three[0].name, "completed", "hy-B", "synthetic", "resnet18", "3/3", "70.00", "69.00",
                        "66.00", "-"]
    assert row[-2:] == ["3m45s", "123"]
    assert lines[2].split()[9:12] == ["75.00", "74.00", "74.00"]
    assert lines[1].split()[1] == "failed"


def test_list_leaves_out_the_ema_columns_when_no_run_has_ema_numbers(cli, runs_root: Path) -> None:
    make_run(runs_root, "plain")
    code, out, err = cli("runs", "list", "--runs-root", runs_root, "--format", "csv")
    assert code == 0, err
    header = out.splitlines()[0].split(",")
    assert "test_top1_last" in header and [h for h in header if h.startswith("ema_")] == []


@pytest.mark.parametrize("args,names", [
    (["--status", "failed"], ["hy-B+A+W"]),
    (["--status", "completed,failed"], ["hy-B+A+W", "hy-B+A", "hy-B"]),
    (["--name", "hy-B+A*"], ["hy-B+A+W", "hy-B+A"]),
    (["--name", "A+W"], ["hy-B+A+W"]),
    (["--where", "optim.lr=0.0001"], ["hy-B+A+W", "hy-B+A"]),
    (["--where", "optim.lr=1e-4", "--where", "schedule.warmup_epochs=5"], ["hy-B+A+W"]),
    (["--where", "optim.name!=adam"], ["hy-B"]),
    (["--where", "optim.momentum=0.9"], ["hy-B"]),
    (["--where", "ema.enabled=false"], ["hy-B+A+W", "hy-B+A", "hy-B"]),
    (["--sweep", "tricks_absent_tag_is_not_a_filter_here"], None),
])
def test_list_filters(cli, runs_root: Path, three, args, names) -> None:
    """``names``: the runs kept, newest first."""
    code, out, err = cli("runs", "list", "--runs-root", runs_root, "--format", "json", *args)
    if names is None:
        assert code == 2 and "no such sweep" in err
        return
    assert code == 0, err
    assert [r["recipe"] for r in json.loads(out)] == names


def test_list_empty_and_bad_input(cli, runs_root: Path) -> None:
    code, out, err = cli("runs", "list", "--runs-root", runs_root)
    assert (code, out) == (0, "") and "no runs" in err
    code, out, err = cli("runs", "list", "--runs-root", runs_root, "--status", "done")
    assert code == 2 and err.strip() == "--status done: choose from running, completed, failed, interrupted, pruned, damaged"
    code, out, err = cli("runs", "list", "--runs-root", runs_root, "--where", "optim.lr")
    assert code == 2 and "--where optim.lr: expected KEY=VALUE" in err and "Traceback" not in err


def test_compare_markdown_only_differing_fields(cli, runs_root: Path, three) -> None:
    code, out, err = cli("runs", "compare", "--runs-root", runs_root, "*hy-B*")
    assert code == 0, err
    lines = out.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    # momentum/betas follow from optim.name: not columns of their own
    assert header[:5] == ["run", "status", "optim.lr", "optim.name", "schedule.warmup_epochs"]
    assert "optim.momentum" not in header and "optim.betas" not in header and "name" not in header
    assert "schedule.name" not in header  # cosine is the default: the same in all three
    assert "EMA test @best" in header and "test @448" in header
    assert set(lines[1]) <= set("|-: ")
    assert lines[1].count(":") == header.count("val top-1 @best") + sum(
        h.startswith(("val", "test", "EMA", "time")) for h in header) - 1
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:5] == [three[0].name, "completed", "0.1", "sgd", "0"]
    assert len({len(line) for line in lines}) == 1  # padded: columns line up


def test_compare_csv_and_json_keep_raw_values(cli, runs_root: Path, three) -> None:
    code, out, _ = cli("runs", "compare", "--runs-root", runs_root, three[0].name, three[1].name, "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["optim.lr"] for r in rows] == ["0.1", "0.0001"]
    assert rows[0]["test_top1_best"] == "69.0" and rows[0]["test@448"] == "70.5" and rows[1]["test@448"] == ""
    code, out, _ = cli("runs", "compare", "--runs-root", runs_root, three[0].name, three[1].name, "--format", "json")
    data = json.loads(out)
    assert data[1]["ema_test_top1_last"] == 74.0 and data[0]["ema_test_top1_last"] is None
    assert data[0]["duration_s"] == 225.0


def test_compare_fields_option_and_errors(cli, runs_root: Path, three) -> None:
    code, out, _ = cli("runs", "compare", "--runs-root", runs_root, "*", "--fields", "model.arch,optim.lr")
    assert code == 0
    assert [c.strip() for c in out.splitlines()[0].strip("|").split("|")][2:4] == ["model.arch", "optim.lr"]
    code, _, err = cli("runs", "compare", "--runs-root", runs_root, "nomatch*")
    assert code == 2 and err.strip() == f"nomatch*: no run matches (looked in {runs_root})"
    code, _, err = cli("runs", "compare", "--runs-root", runs_root)
    assert code == 2 and "name at least one RUN" in err


def test_show_prints_recipe_summary_curves_and_confusions(cli, runs_root: Path, three) -> None:
    code, out, err = cli("runs", "show", "--runs-root", runs_root, three[0].name[:20])  # a unique prefix
    assert code == 0, err
    assert f"run     {three[0].name}" in out
    assert 'name = "hy-B"' in out and "[optim]" in out  # resolved recipe
    assert "raw: best epoch 2 (chosen on validation): val 70.00  test 69.00" in out
    assert "final test sizes: 224px raw 61.00; 448px raw 70.50" in out
    for title in ("train loss (x = step)", "val top-1 % (x = epoch)", "test top-1 % (x = epoch)", "learning rate"):
        assert title in out
    assert "gamma   70.00%      7/10" in out
    assert "gamma -> alpha: 3 (30.0% of gamma)" in out
    # show on an EMA run overlays raw and EMA
    code, out, _ = cli("runs", "show", "--runs-root", runs_root, three[1].name, "--no-recipe")
    assert "• raw  x EMA" in out and "[optim]" not in out
    assert "no confusion.json yet" in out


def test_show_errors(cli, runs_root: Path, three) -> None:
    code, _, err = cli("runs", "show", "--runs-root", runs_root, "zzz")
    assert code == 2 and err.startswith("zzz: no such run")
    code, _, err = cli("runs", "show", "--runs-root", runs_root, "2023")
    assert code == 2 and "ambiguous" in err


def test_export_csv_and_jsonl_one_file_for_all_runs(cli, runs_root: Path, three, tmp_path: Path) -> None:
    out_csv = tmp_path / "all.csv"
    code, out, err = cli("runs", "export", "--runs-root", runs_root, "*", "--format", "csv", "-o", out_csv)
    assert code == 0, err
    rows = list(csv.DictReader(out_csv.open()))
    assert {r["run"] for r in rows} == {p.name for p in three}
    val = [(r["epoch"], r["value"]) for r in rows if r["run"] == three[0].name and r["metric"] == "epoch/val_top1"]
    assert val == [("1", "60"), ("2", "70"), ("3", "65")]
    fe = [r for r in rows if r["metric"] == "final/raw/top1@448"]
    assert len(fe) == 1 and fe[0]["value"] == "70.5" and fe[0]["step"] == "12"
    assert any(r["metric"] == "step/loss" for r in rows) and any(r["metric"] == "eval/test/raw/top1" for r in rows)
    assert [r["sweep"] for r in rows if r["run"] == three[1].name][0] == "tricks"

    out_jsonl = tmp_path / "all.jsonl"
    code, out, err = cli("runs", "export", "--runs-root", runs_root, *[p.name for p in three], "--format", "jsonl",
                         "-o", out_jsonl)
    assert code == 0, err
    events = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    n = sum(len((p / METRICS_FILE).read_text().splitlines()) for p in three)
    assert len(events) == n and f"{n} events" in out
    assert list(events[0])[:5] == ["run", "name", "group", "seed", "v"] and events[0]["event"] == "run_started"

    # an existing output is not overwritten without --force
    code, _, err = cli("runs", "export", "--runs-root", runs_root, "*", "--format", "csv", "-o", out_csv)
    assert code == 2 and "already exists" in err
    code, _, _ = cli("runs", "export", "--runs-root", runs_root, three[0].name, "--format", "csv", "-o", out_csv,
                     "--force")
    assert code == 0 and {r["run"] for r in csv.DictReader(out_csv.open())} == {three[0].name}


def test_export_tensorboard(cli, runs_root: Path, three, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    code, text, err = cli("runs", "export", "--runs-root", runs_root, "*", "--format", "tensorboard", "-o", out)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in three)
    acc = EventAccumulator(str(out / three[0].name))
    acc.Reload()
    vals = [(e.step, e.value) for e in acc.Scalars("epoch/val_top1")]
    assert vals == [(4, 60.0), (8, 70.0), (12, 65.0)]
    assert "final/raw/top1@224" in acc.Tags()["scalars"]
    # --force replaces an earlier export, but never a directory that is not one
    code, _, _ = cli("runs", "export", "--runs-root", runs_root, three[1].name, "--format", "tensorboard", "-o", out,
                     "--force")
    assert code == 0 and [p.name for p in out.iterdir()] == [three[1].name]
    code, _, err = cli("runs", "export", "--runs-root", runs_root, "*", "--format", "tensorboard", "-o", runs_root,
                       "--force")
    assert code == 2 and "refusing to replace it" in err
    assert all(p.is_dir() for p in three)


def test_export_tensorboard_without_the_extra(cli, runs_root: Path, three, tmp_path: Path, monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("tensorboard"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    code, _, err = cli("runs", "export", "--runs-root", runs_root, "*", "--format", "tensorboard", "-o",
                       tmp_path / "tb")
    assert code == 2
    assert err.strip() == "--format tensorboard needs the tensorboard package: pip install 'fgbench[tensorboard]'"
    assert not (tmp_path / "tb").exists()


def test_rm_asks_and_only_deletes_on_yes(cli, runs_root: Path, three) -> None:
    code, out, _ = cli("runs", "rm", "--runs-root", runs_root, three[0].name, stdin="n\n")
    assert code == 1 and "nothing deleted" in out and three[0].is_dir()
    code, out, _ = cli("runs", "rm", "--runs-root", runs_root, three[0].name, stdin="")  # EOF is a no
    assert code == 1 and three[0].is_dir()
    code, out, _ = cli("runs", "rm", "--runs-root", runs_root, three[0].name, three[1].name, stdin="y\n")
    assert code == 0 and "deleted 2 run(s)" in out
    assert not three[0].exists() and not three[1].exists() and three[2].is_dir()
    code, out, _ = cli("runs", "rm", "--runs-root", runs_root, three[2].name, "--yes")
    assert code == 0 and not three[2].exists()


def test_rm_refuses_a_running_run(cli, runs_root: Path) -> None:
    from fgbench.rundir.lock import RunLock

    live = make_run(runs_root, "live", status=None)
    with RunLock(live).acquire():  # what a trainer holds while it trains
        assert rundir.read_run(live).status == "running"
        code, _, err = cli("runs", "rm", "--runs-root", runs_root, live.name, "--yes")
    assert code == 2 and "still running" in err and live.is_dir()


def test_report_helpers() -> None:
    assert report.differing_fields([{"a": {"b": 1, "c": 2}, "name": "x"}, {"a": {"b": 1, "c": 3}, "name": "y"}]) == ["a.c"]
    assert report.differing_fields([{"a": 1}, {"a": 1.0}]) == []
    assert report.differing_fields([{"a": True}, {"a": 1}]) == ["a"]
    assert report.differing_fields([{"a": 1}, {}]) == ["a"]
    assert report.matches_where({"optim": {"lr": 0.005}}, "optim.lr", 5e-3)
    assert not report.matches_where({"optim": {"lr": 0.005}}, "optim.momentum", 0.9)
    assert report.fmt_duration(3725) == "1h02m" and report.fmt_duration(65) == "1m05s"
    plot = report.line_plot({"a": [(0, 0.0), (1, 1.0)]}, width=10, height=3)
    assert plot.splitlines()[1].endswith("┤ •") and plot.splitlines()[3].endswith("┤•")
    conf = {"class_names": ["a", "b"], "matrix": [[3, 1], [0, 0]]}
    assert report.per_class_accuracy(conf) == [("a", 3, 4, 75.0), ("b", 0, 0, None)]
    assert report.confused_pairs(conf) == [("a", "b", 1, 25.0)]

"""Every read of a run-directory file is guarded (fgbench.rundir.files): a FIFO, a link to a device,
a file over its cap or JSON nested too deeply makes that one run damaged, with the file named,
while every other run lists as usual; nothing hangs, nothing prints a traceback.

The readers run in a subprocess with a generous bound: a FIFO hangs a reader forever, so without
the bound a regression would hang the suite instead of failing it. The bound is a last resort
(measured: about a second of CPU for all of it), not a timing assertion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fakes.run_factory import make_run

from fgbench.rundir import files, layout, lock
from fgbench.rundir.events import METRICS_FILE, Tailer

REPO = Path(__file__).resolve().parents[2]
BOUND_S = 600  # a hang would be forever; the slowest run seen under load took well under a minute

DEEP = b"[" * 10_000 + b"]" * 10_000  # 20 kB: under every cap, past the parser's recursion limit


def _fifo(p: Path) -> None:
    p.unlink(missing_ok=True)
    os.mkfifo(p)


def _to_dev_zero(p: Path) -> None:
    p.unlink(missing_ok=True)
    p.symlink_to("/dev/zero")


def _deep(p: Path) -> None:
    p.write_bytes(DEEP)


def _huge(p: Path) -> None:
    with open(p, "wb") as f:  # sparse: 5 MB on paper, nothing on disk
        f.truncate(5 * 1024 * 1024)


def _deep_line(p: Path) -> None:
    with open(p, "ab") as f:
        f.write(b'{"event": "log", "v": 2, "x": ' + DEEP + b"}\n")


DAMAGES = {
    # run name: (file, damage, what the damage text must say, or None when the run is not damaged)
    "fifosum": (layout.SUMMARY_FILE, _fifo, "summary.json: is a FIFO"),
    "fiforecipe": (layout.RECIPE_FILE, _fifo, "recipe.toml: is a FIFO"),
    "fiforunjson": (layout.RUN_INFO_FILE, _fifo, "run.json: is a FIFO"),
    "fifolock": (layout.LOCK_FILE, _fifo, ".lock: is a FIFO"),
    "fifolaunch": (layout.LAUNCH_FILE, _fifo, "launch.json: is a FIFO"),
    "fifoexit": (layout.EXIT_FILE, _fifo, "exit.json: is a FIFO"),
    "fifometrics": (METRICS_FILE, _fifo, "metrics.jsonl: is a FIFO"),
    "zerosum": (layout.SUMMARY_FILE, _to_dev_zero, "summary.json: is a character device"),
    "zerometrics": (METRICS_FILE, _to_dev_zero, "metrics.jsonl: is a character device"),
    "deepsum": (layout.SUMMARY_FILE, _deep, "summary.json: JSON nested deeper than"),
    "deeprunjson": (layout.RUN_INFO_FILE, _deep, "run.json: JSON nested deeper than"),
    "deepexit": (layout.EXIT_FILE, _deep, "exit.json: JSON nested deeper than"),
    "hugesum": (layout.SUMMARY_FILE, _huge, "summary.json: 5242880 bytes, larger than 4 MB"),
    "deepline": (METRICS_FILE, _deep_line, None),  # one bad line is skipped; the run reads as usual
}

READERS = r"""
import contextlib, io, json, sys
from fgbench.cli import main
from fgbench.rundir import layout
from fgbench.runmodel import RunStore

root = sys.argv[1]
out = {}
def call(*argv):
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        code = main([*argv, "--runs-root", root])
    return [code, o.getvalue(), e.getvalue()]
out["list"] = call("runs", "list", "--format", "json")
names = [p.name for p in layout.run_dirs(root)]
out["show"] = {n: call("runs", "show", n) for n in names}
out["compare"] = call("runs", "compare", *names, "--format", "json")
out["export"] = call("runs", "export", "--format", "jsonl", "-o", "-")
store = RunStore(root)
store.refresh()
out["store"] = {r.run_id: [r.status, r.error, r.best_test] for r in store.rows()}
out["resume"] = {n: call("run", "--resume", n) for n in names if n.endswith(("fifosum", "fifometrics", "zerosum"))}
print(json.dumps(out))
"""


def _readers(root: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-c", READERS, str(root)], capture_output=True, text=True,
                          timeout=BOUND_S, env=env)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture
def damaged_root(runs_root: Path) -> tuple[Path, dict[str, Path]]:
    runs = {"good": make_run(runs_root, "good", stamp=1_700_000_000)}
    for i, (name, (file, damage, _)) in enumerate(DAMAGES.items(), 1):
        runs[name] = make_run(runs_root, name, stamp=1_700_000_000 + 100 * i)
        damage(runs[name] / file)
    return runs_root, runs


def test_every_reader_lists_the_damaged_runs_and_the_rest_as_usual(damaged_root) -> None:
    root, runs = damaged_root
    out = _readers(root)
    code, stdout, stderr = out["list"]
    assert code == 0 and "Traceback" not in stderr
    rows = {r["run"]: r for r in json.loads(stdout)}
    assert rows[runs["good"].name]["status"] == "completed" and rows[runs["good"].name]["test_top1_best"] == 68.0
    for name, (_file, _damage, why) in DAMAGES.items():
        row = rows[runs[name].name]
        if why is None:
            assert row["status"] == "completed" and row["test_top1_best"] == 68.0, name
        else:
            assert row["status"] == "damaged" and why in row["damaged"], (name, row)
    for name, (code, _stdout, stderr) in out["show"].items():
        assert code == 0 and "Traceback" not in stderr, (name, stderr)
    assert "68.00" in out["show"][runs["good"].name][1]
    code, stdout, stderr = out["compare"]
    assert code == 0 and "Traceback" not in stderr and json.loads(stdout)  # runs of one recipe may group
    code, stdout, stderr = out["export"]
    exported = {json.loads(line)["run"] for line in stdout.splitlines()}
    assert code == 0 and runs["good"].name in exported and runs["deepline"].name in exported
    store = out["store"]
    assert store[runs["good"].name] == ["completed", None, 68.0]
    for name, (file, _damage, why) in DAMAGES.items():
        if why is not None:
            status, error, best = store[runs[name].name]
            # never a number read from a damaged summary; the other files' damage leaves it shown
            assert status == "damaged" and why in error, (name, store[runs[name].name])
            assert best == (None if file == layout.SUMMARY_FILE else 68.0), (name, best)
    for code, _stdout, stderr in out["resume"].values():
        assert code == 2 and "cannot resume a damaged run" in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_the_guarded_reader_refuses_before_reading(tmp_path: Path) -> None:
    fifo = tmp_path / "summary.json"
    os.mkfifo(fifo)
    with pytest.raises(files.RunFileError, match=r"^summary.json: is a FIFO \(named pipe\), not a regular file$"):
        files.read_json(fifo)
    zero = tmp_path / "classes.json"
    zero.symlink_to("/dev/zero")
    with pytest.raises(files.RunFileError, match="is a character device"):
        files.read_bytes(zero)
    assert files.read_json(tmp_path / "missing.json") is None
    assert layout.read_json(fifo) is None  # the never-raising wrapper
    capped = tmp_path / "exit.json"
    capped.write_bytes(b" " * (64 * 1024) + b"{}")  # 2 bytes over exit.json's 64 kB
    with pytest.raises(files.RunFileError, match="larger than 64 kB"):
        files.read_json(capped)
    # depth: 64 levels are JSON like any other, 65 are refused, brackets inside strings do not count
    ok = tmp_path / "run.json"
    ok.write_text("[" * 64 + "]" * 64)
    assert files.read_json(ok) is not None
    ok.write_text(json.dumps({"s": "[" * 500}))
    assert files.read_json(ok) == {"s": "[" * 500}
    ok.write_text("[" * 65 + "]" * 65)
    with pytest.raises(files.RunFileError, match="nested deeper than 64"):
        files.read_json(ok)


def test_a_fifo_lock_is_nobody_holding_it(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / layout.LOCK_FILE)
    assert lock.holder(tmp_path) is None  # without O_NONBLOCK this open() waits for a writer forever
    assert lock.check(tmp_path / layout.LOCK_FILE) == ".lock: is a FIFO (named pipe), not a regular file"
    with pytest.raises(OSError):
        lock.RunLock(tmp_path).acquire(patience_s=0)


def test_an_endless_metrics_line_is_skipped_without_being_kept(tmp_path: Path) -> None:
    path = tmp_path / METRICS_FILE
    good = b'{"event": "log", "v": 2, "level": "info", "message": "hi"}\n'
    path.write_bytes(good)
    tailer = Tailer(path)
    assert len(tailer.poll()) == 1
    with open(path, "ab") as f:
        f.write(b'{"event": "log", "x": "' + b"a" * (files.MAX_LINE_BYTES + 10))
    assert tailer.poll() == [] and len(tailer._partial) <= files.MAX_LINE_BYTES
    with open(path, "ab") as f:
        f.write(b'"}\n' + good)
    assert [e["message"] for e in tailer.poll()] == ["hi"] and tailer.skipped == 1


def test_a_runs_root_that_is_a_symlink_loop_is_one_line(tmp_path: Path, cli) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    for argv in (("runs", "list"), ("runs", "export", "--format", "csv", "-o", "-")):
        code, out, err = cli(*argv, "--runs-root", loop)
        assert code == 2 and "Traceback" not in err
        assert err.strip().splitlines() == [f"{loop}: cannot read the runs directory: Too many levels of symbolic links"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_export_into_a_read_only_directory_is_one_line(runs_root: Path, tmp_path: Path, cli) -> None:
    make_run(runs_root, "good")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, out, err = cli("runs", "export", "--format", "csv", "-o", ro / "new" / "m.csv", "--runs-root", runs_root)
    finally:
        ro.chmod(0o700)
    assert code == 2 and err.strip().splitlines() == [f"{ro / 'new' / 'm.csv'}: cannot write the export: Permission denied"]
    assert list(ro.iterdir()) == []


def test_export_under_proc_is_one_line_and_leaves_nothing(runs_root: Path, cli) -> None:
    make_run(runs_root, "good")
    for target in ("/proc/fgbench-export.csv", "/proc/self/fgbench/m.csv"):
        code, out, err = cli("runs", "export", "--format", "csv", "-o", target, "--runs-root", runs_root)
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"{target}: cannot write the export: ")
        assert not os.path.lexists(target)


def test_the_tui_store_survives_a_runs_root_it_cannot_list(runs_root: Path, monkeypatch) -> None:
    from fgbench.runmodel import RunStore

    make_run(runs_root, "good")
    store = RunStore(runs_root)
    real_iterdir = Path.iterdir

    def denied(self):
        if self == runs_root:
            raise PermissionError(13, "Permission denied")
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", denied)  # as root, chmod cannot make it unreadable
    assert store.refresh() == set() and store.loaded_once
    assert store.root_error == f"{runs_root}: cannot read the runs directory: Permission denied"
    monkeypatch.setattr(Path, "iterdir", real_iterdir)
    store.refresh()
    assert store.root_error is None and [r.name for r in store.rows()] == ["good"]


def test_rm_of_a_run_linked_into_the_root_removes_only_the_link(runs_root: Path, tmp_path: Path, cli) -> None:
    elsewhere = make_run(tmp_path / "elsewhere", "kept")
    link = runs_root / "20240101-000000-link"
    link.symlink_to(elsewhere)
    code, out, err = cli("runs", "rm", link.name, "--yes", "--runs-root", runs_root)
    assert code == 0 and "Traceback" not in err, err
    assert f"a link to {elsewhere}: only the link is removed" in out
    assert not os.path.lexists(link) and (elsewhere / layout.SUMMARY_FILE).is_file()

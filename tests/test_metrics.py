"""The metrics stream (fgbench.rundir.events) and run directories (fgbench.rundir), without torch.
The status rule has its own tests in tests/rundir/."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fgbench.rundir import events as metrics
from fgbench.rundir import layout as runs
from fgbench.rundir import reader
from fgbench.rundir.events import EVENT_FIELDS, EventError, MetricsWriter, Tailer, make_event, parse_line, read_events


def _required(kind: str) -> dict[str, object]:
    return {f: 1 for f in EVENT_FIELDS[kind][0]}


# ---------------------------------------------------------------------------- make_event


def test_make_event_envelope() -> None:
    ev = make_event("step", epoch=1, step=10, loss=2.3, lr=0.1, images_per_s=512.0)
    assert ev["v"] == metrics.SCHEMA_VERSION and ev["event"] == "step"
    assert abs(ev["time"] - time.time()) < 5
    assert {k: ev[k] for k in ("epoch", "step", "loss", "lr", "images_per_s")} == {
        "epoch": 1, "step": 10, "loss": 2.3, "lr": 0.1, "images_per_s": 512.0}
    assert make_event("log", level="info", message="hi", time=123.0)["time"] == 123.0


@pytest.mark.parametrize("kind", sorted(EVENT_FIELDS))
def test_every_kind_needs_its_required_fields(kind: str) -> None:
    fields = _required(kind)
    assert make_event(kind, **fields)["event"] == kind
    for missing in fields:
        partial = {k: v for k, v in fields.items() if k != missing}
        with pytest.raises(EventError, match=missing):
            make_event(kind, **partial)


def test_unknown_kinds_and_fields_are_rejected() -> None:
    with pytest.raises(EventError, match="unknown event kind"):
        make_event("epoch_end", epoch=1)
    with pytest.raises(EventError, match="tpo1"):
        make_event("eval", epoch=1, step=2, split="test", model="raw", top1=50.0, tpo1=3)


def test_optional_fields_are_accepted() -> None:
    for kind, (required, optional) in EVENT_FIELDS.items():
        make_event(kind, **{f: 0 for f in (*required, *optional)})


# ------------------------------------------------------------------------------- writer


def test_writer_writes_one_flushed_line_per_event(tmp_path: Path) -> None:
    path = tmp_path / "run" / "metrics.jsonl"
    w = MetricsWriter(path)  # creates the directory
    w.emit("log", level="info", message="a\nb")  # a newline inside a field stays inside one line
    # visible to another reader before close: flushed per event
    assert path.read_text().count("\n") == 1
    w.emit("step", epoch=1, step=1, loss=float("nan"), lr=float("inf"))
    w.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(x) for x in lines)
    assert first["message"] == "a\nb"
    assert second["loss"] is None and second["lr"] is None  # JSON has no NaN/inf


def test_writer_serialises_scalars_and_paths(tmp_path: Path) -> None:
    class Scalar:  # what numpy / torch scalars look like to json
        def item(self) -> float:
            return 0.25

    with MetricsWriter(tmp_path / "m.jsonl") as w:
        w.emit("checkpoint", epoch=1, step=3, kind="last", path=tmp_path / "ckpt.pt", model=Scalar())
    (ev,) = read_events(tmp_path / "m.jsonl")
    assert ev["path"] == str(tmp_path / "ckpt.pt") and ev["model"] == 0.25


def test_writer_appends_and_repairs_a_partial_last_line(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    with MetricsWriter(path) as w:
        w.emit("log", level="info", message="first")
    with open(path, "a") as f:
        f.write('{"v": 1, "event": "log", "lev')  # a crash in the middle of a write
    with MetricsWriter(path) as w:  # a resumed run reopens the same file
        w.emit("log", level="info", message="after resume")
    t = Tailer(path)
    events = t.poll()
    assert [e["message"] for e in events] == ["first", "after resume"]
    assert t.skipped == 1


# ------------------------------------------------------------------------------- tailer


def test_tailer_never_returns_a_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    t = Tailer(path)
    assert t.poll() == []  # no file yet
    line = metrics.encode(make_event("log", level="info", message="x" * 50))
    with open(path, "w") as f:
        f.write(line[:20])
        f.flush()
        assert t.poll() == []
        f.write(line[20:-1])  # everything but the newline
        f.flush()
        assert t.poll() == []
        f.write("\n")
        f.flush()
        (ev,) = t.poll()
        assert ev["message"] == "x" * 50
        assert t.poll() == []  # nothing new
        f.write(line + line)
        f.flush()
        assert len(t.poll()) == 2


def test_tailer_small_reads_reassemble_lines(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    with MetricsWriter(path) as w:
        for i in range(20):
            w.emit("step", epoch=1, step=i, loss=1.0 / (i + 1), lr=0.1)
    t = Tailer(path)
    got = []
    for _ in range(1000):
        got += t.poll(max_bytes=7)
        if len(got) == 20:
            break
    assert [e["step"] for e in got] == list(range(20))


def test_tailer_skips_and_counts_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    good = metrics.encode(make_event("log", level="info", message="ok"))
    path.write_text(good + "not json\n" + "[1, 2]\n" + '{"no_event": 1}\n' + "\n" + good + '{"event": 5}\n')
    t = Tailer(path)
    assert [e["message"] for e in t.poll()] == ["ok", "ok"]
    assert t.skipped == 4  # blank lines are not counted as malformed


def test_tailer_restarts_when_the_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    with MetricsWriter(path) as w:
        for i in range(5):
            w.emit("log", level="info", message=f"old {i}")
    t = Tailer(path)
    assert len(t.poll()) == 5
    tmp = tmp_path / "new.jsonl"
    with MetricsWriter(tmp) as w:
        w.emit("log", level="info", message="new 0")
    os.replace(tmp, path)  # a new, shorter file in its place
    assert [e["message"] for e in t.poll()] == ["new 0"]


def test_tailer_follows_a_concurrent_writer(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    n = 300

    def write() -> None:
        with MetricsWriter(path) as w:
            for i in range(n):
                w.emit("step", epoch=1, step=i, loss=0.5, lr=0.1, images_per_s=float(i))

    thread = threading.Thread(target=write)
    t = Tailer(path)
    got: list[dict] = []
    thread.start()
    while thread.is_alive():
        got += t.poll(max_bytes=333)
    thread.join()
    for _ in range(10000):
        new = t.poll(max_bytes=333)
        if not new and len(got) == n:
            break
        got += new
    assert [e["step"] for e in got] == list(range(n)) and t.skipped == 0


def test_parse_line() -> None:
    assert parse_line(b'{"event": "log", "level": "info"}') == {"event": "log", "level": "info"}
    for bad in ("", "{", "3", '"s"', '{"event": null}', b"\xff\xfe"):
        assert parse_line(bad) is None


def test_last_of_and_read_events(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    with MetricsWriter(path) as w:
        w.emit("epoch", epoch=1, step=5, train_loss=2.0, train_top1=10.0, lr=0.1)
        w.emit("epoch", epoch=2, step=10, train_loss=1.0, train_top1=40.0, lr=0.05)
    with open(path, "a") as f:
        f.write('{"event": "epo')
    events = read_events(path)
    assert [e["epoch"] for e in events] == [1, 2]
    assert metrics.last_of(events, "epoch")["train_top1"] == 40.0
    assert metrics.last_of(events, "run_finished") is None
    assert not math.isnan(events[0]["time"])


# ------------------------------------------------------------------------- run status


def _events(*kinds_and_fields: tuple[str, dict]) -> list[dict]:
    return [make_event(kind, **fields) for kind, fields in kinds_and_fields]


def _started(pid: int) -> tuple[str, dict]:
    return ("run_started", {"run_id": "r", "recipe": {}, "class_names": ["a", "b"], "device": "cpu",
                            "host": "h", "pid": pid})


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_read_run_and_list_runs(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    a = runs.create_run_dir("alpha", root, now=1_700_000_000)
    (a / runs.RECIPE_FILE).write_text('name = "alpha"\n[data]\ndataset = "cifar10"\n[model]\narch = "resnet18"\n')
    runs.write_run_info(a, pid=_dead_pid(), argv=["fgbench", "run", "x.toml"])
    with MetricsWriter(a / metrics.METRICS_FILE) as w:
        kind, fields = _started(os.getpid())
        w.emit(kind, **fields)
        w.emit("run_finished", status="failed", error="boom")
    runs.write_json(a / runs.SUMMARY_FILE, {"epochs_done": 3})
    b = runs.create_run_dir("beta", root, now=1_700_000_001)
    (b / runs.RECIPE_FILE).write_text('name = "beta"\n')
    runs.write_run_info(b, pid=_dead_pid())
    (root / "not-a-run").mkdir()

    info = reader.read_run(a)
    assert (info.status, info.error, info.name, info.dataset, info.arch) == ("failed", "boom", "alpha", "cifar10", "resnet18")
    assert info.summary.epochs_done == 3 and info.info["argv"] == ["fgbench", "run", "x.toml"]
    assert info.run_id == a.name
    listed = reader.list_runs(root)
    assert [r.name for r in listed] == ["beta", "alpha"]  # newest first
    assert listed[0].status == "interrupted"  # no events, dead pid
    assert reader.list_runs(tmp_path / "absent") == []


def test_write_run_info_merges(tmp_path: Path) -> None:
    runs.write_run_info(tmp_path, pid=1, argv=["a"])
    created = runs.read_json(tmp_path / runs.RUN_INFO_FILE)["created"]
    runs.write_run_info(tmp_path, pid=2)
    info = runs.read_json(tmp_path / runs.RUN_INFO_FILE)
    assert info["pid"] == 2 and info["argv"] == ["a"] and info["created"] == created and "host" in info
    assert runs.read_json(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{")
    assert runs.read_json(tmp_path / "bad.json") is None


def test_resolve_run(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    a = runs.create_run_dir("cub-r50", root, now=1_700_000_000)
    b = runs.create_run_dir("cars-r50", root, now=1_700_000_100)
    for d in (a, b):
        (d / runs.RECIPE_FILE).write_text("")
    assert runs.resolve_run(str(a), root) == a
    assert runs.resolve_run(a.name, root) == a
    assert runs.resolve_run(b.name[:17], root) == b  # a unique prefix
    with pytest.raises(FileNotFoundError, match="ambiguous"):
        runs.resolve_run("2023", root)
    with pytest.raises(FileNotFoundError, match="no such run"):
        runs.resolve_run("nothing", root)


# --------------------------------------------------------------------- run directories


def test_run_dirs_are_never_shared(tmp_path: Path) -> None:
    now = 1_700_000_000
    first = runs.create_run_dir("same", tmp_path, now=now)
    second = runs.create_run_dir("same", tmp_path, now=now)
    assert first != second and second.name == first.name + "-2"
    assert first.is_dir() and second.is_dir() and not any(first.iterdir())


def test_run_dirs_are_unique_under_concurrency(tmp_path: Path) -> None:
    made: list[Path] = []
    lock = threading.Lock()

    def make() -> None:
        d = runs.create_run_dir("race", tmp_path, now=1_700_000_000)
        with lock:
            made.append(d)

    threads = [threading.Thread(target=make) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 16 and len(set(made)) == 16


def test_run_dirs_in_separate_processes_do_not_collide(tmp_path: Path) -> None:
    code = ("import sys; from fgbench.rundir.layout import create_run_dir; "
            "print(create_run_dir('proc', sys.argv[1], now=1_700_000_000))")
    repo = Path(__file__).resolve().parent.parent
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=repo) for _ in range(4)]
    outs = [p.communicate()[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outs)) == 4


def test_run_dir_names_are_safe(tmp_path: Path) -> None:
    d = runs.create_run_dir("my recipe/../x", tmp_path, now=1_700_000_000)
    assert d.parent == tmp_path and "/" not in d.name and " " not in d.name
    assert runs.create_run_dir("///", tmp_path, now=1_700_000_000).name.endswith("-run")


def test_default_run_root_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FGBENCH_RUNS", str(tmp_path / "elsewhere"))
    d = runs.create_run_dir("env")
    assert d.parent == tmp_path / "elsewhere"


def test_tailer_restarts_when_the_file_is_replaced_by_a_longer_one(tmp_path):
    from fgbench.rundir.events import Tailer, encode, make_event

    path = tmp_path / "metrics.jsonl"
    path.write_text(encode(make_event("log", level="info", message="old")))
    tail = Tailer(path)
    assert [e["message"] for e in tail.poll()] == ["old"]
    replacement = tmp_path / "new.jsonl"
    replacement.write_text("".join(encode(make_event("log", level="info", message=f"new{i}")) for i in range(3)))
    replacement.replace(path)
    assert [e["message"] for e in tail.poll()] == ["new0", "new1", "new2"]


def test_resolve_run_by_recipe_name_takes_the_newest_and_refuses_ambiguity(tmp_path):
    import pytest

    from fgbench.rundir.layout import create_run_dir, resolve_run

    older = create_run_dir("quickstart", tmp_path, now=1_700_000_000)
    newer = create_run_dir("quickstart", tmp_path, now=1_700_000_100)
    other = create_run_dir("quickstart-long", tmp_path, now=1_700_000_200)
    for d in (older, newer, other):
        (d / "recipe.toml").write_text("name = 'x'\n")
    assert resolve_run("quickstart", tmp_path) == newer
    assert resolve_run("quickstart-long", tmp_path) == other
    assert resolve_run(older.name, tmp_path) == older
    with pytest.raises(FileNotFoundError, match="no such run"):
        resolve_run("nothing-like-it", tmp_path)
    with pytest.raises(FileNotFoundError, match="ambiguous"):
        resolve_run(older.name[:8], tmp_path)

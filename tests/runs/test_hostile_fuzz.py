"""Fuzz: run directories built from a grammar of damages, read by every reader of a runs root.

Each example is a runs root with one good run and a few damaged ones. A damaged run is a normal run
(tests/fakes/run_factory.py) with some of its files replaced by: a value of the wrong type, a file
over its cap, JSON nested past the parser's limit, a truncated copy, random bytes, a FIFO, a link
to ``/dev/zero``, a link out of the root, a directory; its directory name and recipe name may
carry terminal escapes. Then ``runs list/show/compare/export``, the TUI's run store and ``run
--resume`` read the root in a subprocess, and must:

* end (a generous bound on the subprocess: a hang is forever, so the bound only turns it into a
  failure; it is not a timing assertion);
* print no traceback and no raw control or format character (everything from disk is shown
  through ``fgbench.textsafe.safe``);
* list the good run as completed with its numbers, and leave every file of it as it was.

The default is a handful of examples, enough for CI on two cores; run more with
``FGBENCH_FUZZ_EXAMPLES=200 pytest tests/runs/test_hostile_fuzz.py`` (the README's "Reliability").
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fakes.run_factory import make_run

from fgbench.rundir import files, layout
from fgbench.rundir.events import METRICS_FILE

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("FGBENCH_FUZZ_EXAMPLES", "4"))
BOUND_S = 900  # the slowest example measured under load (8 engineers on 2 cores) took well under a minute

FILES = [layout.SUMMARY_FILE, layout.RECIPE_FILE, layout.RUN_INFO_FILE, layout.LOCK_FILE, layout.LAUNCH_FILE,
         layout.EXIT_FILE, METRICS_FILE, layout.CLASSES_FILE, layout.CONFUSION_FILE, layout.PREDICTIONS_FILE,
         layout.CONSOLE_FILE, layout.LAUNCH_RECIPE]

ESCAPES = ["\x1b]52;c;SGVsbG8=\x07", "\x1b]0;pwned\x07", "\x1b[2J", "\x9b31m", "\u202e", "\r", "\x08", "\x00"]

WRONG_JSON = [b"[]", b'"text"', b"42", b"null", b"true", b'{"best": {"raw": [1, 2]}}',
              b'{"matrix": "x", "class_names": 3}', b'{"supervisor": {"pid": "1", "pid_start": []}}',
              b'{"code": "9", "signal": 15, "launch": {}}', b'{"label": [1], "file": 7}', b'{"pid": true}',
              b'[{"a": 1}]', b'{"matrix": [[1, 2], [3]], "class_names": ["a"]}',
              b'{"cells_file": "../../../../etc/passwd"}', b'{"cells_file": 5}']
WRONG_TOML = [b"name = 3\n", b'data = "x"\nmodel = 1\n', b"[data]\ndataset = []\n[model]\narch = {a = 1}\n",
              b'name = "\\u001b]0;pwned\\u0007"\n[model]\narch = "\\u202egpj"\n', b"[[data]]\n[[data]]\n"]


def _damage(strategy_draw, path: Path, outside: Path) -> None:
    """Replace ``path`` (which may not exist yet) with one damage of the grammar."""
    kind = strategy_draw(st.sampled_from(["wrong_type", "huge", "nested", "truncated", "binary", "fifo",
                                          "dev_zero", "link_out", "directory", "escapes"]))
    original = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
    if path.is_symlink() or path.exists():
        path.unlink() if not path.is_dir() or path.is_symlink() else path.rmdir()
    if kind == "wrong_type":
        pool = WRONG_TOML if path.suffix == ".toml" else WRONG_JSON
        data = strategy_draw(st.sampled_from(pool))
        if path.name == METRICS_FILE:
            data = b"\n".join([b'{"event": "run_started", "v": 2, "recipe": 5, "class_names": "x", "pid": []}',
                               b'{"event": "epoch", "epoch": "1", "step": null, "val_top1": "high"}',
                               b'{"event": "run_finished", "status": 7, "error": ["x"], "summary": 3}', data, b""])
        path.write_bytes(data)
    elif kind == "huge":
        with open(path, "wb") as f:  # sparse: nothing on disk
            f.truncate(files.cap_for(path.name) + 1 if path.name != METRICS_FILE else 8 << 20)
            if path.name == METRICS_FILE:  # one line as long as the file
                f.seek(0)
                f.write(b'{"event": "log", "message": "')
    elif kind == "nested":
        depth = strategy_draw(st.sampled_from([65, 1000, 20_000]))
        body = (b"[" * depth + b"]" * depth) if path.suffix != ".toml" else b"a = " + b"[" * depth + b"]" * depth
        if path.name == METRICS_FILE:
            body = original + b'{"event": "log", "x": ' + b"[" * depth + b"]" * depth + b"}\n"
        path.write_bytes(body)
    elif kind == "truncated":
        # a fixed range (a file's length varies between replays: run.json holds the time it was made)
        cut = strategy_draw(st.integers(min_value=0, max_value=1 << 20)) % max(1, len(original))
        path.write_bytes(original[:cut])
    elif kind == "binary":
        path.write_bytes(strategy_draw(st.binary(min_size=1, max_size=300)))
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "link_out":
        path.symlink_to(outside)
    elif kind == "directory":
        path.mkdir()
    else:  # escapes inside otherwise valid content
        esc = strategy_draw(st.sampled_from(ESCAPES))
        if path.suffix == ".toml":
            path.write_bytes(original.replace(b'name = "', b'name = ' + json.dumps(esc).encode()[:-1], 1))
        elif path.name == METRICS_FILE:
            path.write_bytes(original + json.dumps({"event": "run_finished", "status": "failed", "error": esc + "err",
                                                    "traceback": esc}).encode() + b"\n")
        elif path.suffix == ".json":
            path.write_bytes(json.dumps({"class_names": [esc, "b"], "matrix": [[1, 0], [0, 1]], "error": esc,
                                         "name": esc}).encode())
        else:
            path.write_bytes(esc.encode("utf-8", "surrogatepass") * 3 + b"\n")


READERS = r"""
import contextlib, io, json, sys
from fgbench.cli import main
from fgbench.rundir import layout
from fgbench.runmodel import RunStore

root, good = sys.argv[1], sys.argv[2]
calls = []
def call(*argv):
    o, e = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
            code = main([*argv, "--runs-root", root])
    except SystemExit as exc:
        code = exc.code
    calls.append([list(argv), code, o.getvalue(), e.getvalue()])
    return code, o.getvalue()
code, listed = call("runs", "list", "--format", "json")
names = sorted(p.name for p in layout.run_dirs(root))
for n in names:
    call("runs", "show", n)
call("runs", "list")
call("runs", "compare", *names)
call("runs", "export", "--format", "csv", "-o", "-")
call("runs", "export", "--format", "jsonl", "-o", "-")
store = RunStore(root)
store.refresh()
rows = {r.run_id: [r.status, r.best_test, r.name, r.arch, r.error] for r in store.rows()}
for n in names:
    if n != good:
        call("run", "--resume", n)
print(json.dumps({"calls": calls, "store": rows, "listed": listed}))
"""


def _digest(run_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run_dir.iterdir()) if p.is_file()}


def _raw_controls(text: str) -> list[str]:
    return sorted({repr(ch) for ch in text if not ch.isprintable() and ch != "\n"})


@settings(max_examples=EXAMPLES, deadline=None, print_blob=True,
          phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: an example costs seconds
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_damaged_run_directories_never_hang_crash_or_inject(data) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / "runs"
        root.mkdir()
        outside = tmp / "outside.json"
        outside.write_bytes(json.dumps({"secret": "\x1b]52;c;c2VjcmV0\x07"}).encode())
        good = make_run(root, "good", stamp=1_700_000_000)
        n_bad = data.draw(st.integers(min_value=1, max_value=3), label="damaged runs")
        for i in range(n_bad):
            run = make_run(root, f"bad{i}", stamp=1_700_000_100 + 100 * i)
            if data.draw(st.booleans(), label="hostile directory name"):
                esc = data.draw(st.sampled_from([e for e in ESCAPES if e != "\x00"]))
                run = run.rename(run.with_name(f"{run.name}-{esc}x"))
            for name in data.draw(st.lists(st.sampled_from(FILES), min_size=1, max_size=4, unique=True),
                                  label="damaged files"):
                _damage(data.draw, run / name, outside)
        before = _digest(good)
        env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120"}
        proc = subprocess.run([sys.executable, "-c", READERS, str(root), good.name], capture_output=True,
                              timeout=BOUND_S, env=env)
        stderr = proc.stderr.decode("utf-8", "replace")
        assert proc.returncode == 0 and "Traceback" not in stderr, stderr[-4000:]
        out = json.loads(proc.stdout)
        for argv, code, stdout, err in out["calls"]:
            assert "Traceback" not in stdout + err, (argv, err[-2000:])
            assert not _raw_controls(stdout + err), (argv, _raw_controls(stdout + err), (stdout + err)[-500:])
            if argv[0] == "run":  # refused: damaged, completed, or no checkpoint; one line per problem
                assert code == 2 and err.strip(), (argv, code, err)
            else:
                assert code == 0, (argv, code, err)
        rows = {r["run"]: r for r in json.loads(out["listed"])}
        assert rows[good.name]["status"] == "completed" and rows[good.name]["test_top1_best"] == 68.0
        assert len(rows) == 1 + n_bad
        assert out["store"][good.name][:2] == ["completed", 68.0]
        for _status, _best, name, arch, error in out["store"].values():
            assert not _raw_controls(f"{name}{arch}{error or ''}")
        assert _digest(good) == before  # the good run is intact

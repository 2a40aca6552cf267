"""Faults around a run: a full disk (at the start, mid-run, during a checkpoint), damaged or refused
checkpoints for predict, evaluate and --resume, temporary checkpoint files left by a kill, dataset
files that are not regular files, empty class folders, skip_corrupt with the device loader and in
the summary, and loader workers that end with a script that forgot ``close()``.

The full disk is a real tmpfs of a few MB where this process may mount one (root on Linux),
otherwise a simulated disk: the run's writers (atomic writes, the metrics writer, the disk reserve)
are wrapped so that a write that does not fit raises ``ENOSPC``, as the kernel would. Both kinds
run the same three tests; neither is skipped.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import torch

from fakes.disk import tmpfs_works
from fgbench.rundir import events
from fgbench.cli import main
from fgbench.data.synthetic import CLASS_NAMES

from .conftest import events_of, summary_of, write_recipe

REPO = Path(__file__).resolve().parents[2]


def run_cli(*argv: str) -> int:
    return main(["run", *argv, "--progress", "none"])


def err_lines(capsys) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and "Warning" not in ln]


# ------------------------------------------------------------------------------------ the disk


class TmpfsDisk:
    kind = "tmpfs"

    def __init__(self, path: Path, monkeypatch):
        self.path = path
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(path)], check=True)
        self.filler = path / ".filler"

    def free(self) -> int:
        return shutil.disk_usage(self.path).free

    def fill(self, leave: int = 0) -> None:
        """Take all the free space but ``leave`` bytes."""
        with open(self.filler, "ab") as f:
            need = self.free() - leave
            while need > 0:
                try:
                    f.write(bytes(min(need, 1 << 20)))
                    f.flush()
                except OSError as err:
                    assert err.errno == errno.ENOSPC
                    break
                need = self.free() - leave

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


class SimulatedDisk:
    """``free`` bytes for everything written under ``path`` by fgbench's writers."""

    kind = "simulated"

    def __init__(self, path: Path, monkeypatch):
        import fgbench.recipe  # noqa: F401 - imported before patching, so they get the metered writers
        import fgbench.rundir.layout  # noqa: F401
        import fgbench.train.checkpoint  # noqa: F401
        import fgbench.train.trainer  # noqa: F401
        from fgbench import atomic
        from fgbench.rundir import session

        self.path = path
        path.mkdir()
        self.available = 8 << 20
        disk = self

        def consume(target, n: int) -> None:
            if Path(target).resolve().is_relative_to(disk.path.resolve()):
                if n > disk.available:
                    disk.available = 0
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                disk.available -= n

        class Metered:
            def __init__(self, f, target):
                self.f, self.target, self.n = f, target, 0

            def write(self, b):
                consume(self.target, len(b))
                self.n += len(b)
                return self.f.write(b)

            def __getattr__(self, name):
                return getattr(self.f, name)

        orig_atomic = atomic.atomic_write

        def atomic_write(path, write):
            meter: list[Metered] = []

            def metered(f):
                meter.append(Metered(f, path))
                return write(meter[0])

            try:
                orig_atomic(path, metered)
            except BaseException:
                if meter:  # the temporary file is gone: its bytes are free again
                    disk.available += meter[0].n
                raise

        def atomic_write_text(path, text):
            atomic_write(path, lambda f: f.write(text.encode("utf-8")))

        # every module that imported the atomic writers by name writes through the meter
        originals = {"atomic_write": (orig_atomic, atomic_write),
                     "atomic_write_text": (atomic.atomic_write_text, atomic_write_text)}
        for mod in [m for name, m in sys.modules.items() if name.startswith("fgbench") and m is not None]:
            for attr, (old, new) in originals.items():
                if getattr(mod, attr, None) is old:
                    monkeypatch.setattr(mod, attr, new)
        orig_emit = events.MetricsWriter.emit

        def emit(self, kind, /, **fields):
            consume(self.path, len(events.encode(events._finite(events.make_event(kind, **fields)))))
            return orig_emit(self, kind, **fields)

        monkeypatch.setattr(events.MetricsWriter, "emit", emit)
        orig_make, orig_release = session.make_reserve, session.release_reserve

        def make_reserve(run_dir):
            consume(run_dir, session.RESERVE_BYTES)
            orig_make(run_dir)

        def release_reserve(run_dir):
            if (Path(run_dir) / session.RESERVE_FILE).exists():
                disk.available += session.RESERVE_BYTES
            orig_release(run_dir)

        monkeypatch.setattr(session, "make_reserve", make_reserve)
        monkeypatch.setattr(session, "release_reserve", release_reserve)

    def free(self) -> int:
        return self.available

    def fill(self, leave: int = 0) -> None:
        self.available = min(self.available, leave)

    def close(self) -> None:
        pass


@pytest.fixture
def disk(tmp_path, monkeypatch):
    # FGBENCH_TEST_DISK=simulated runs the fallback where a tmpfs could be mounted
    kind = TmpfsDisk if tmpfs_works() else SimulatedDisk
    d = kind(tmp_path / "disk", monkeypatch)
    yield d
    d.close()


def _assert_one_disk_full_line(capsys, disk) -> str:
    lines = err_lines(capsys)
    full = [ln for ln in lines if "disk full" in ln]
    assert len(full) == 1, lines
    assert not any("Traceback" in ln for ln in lines)
    assert str(disk.path) in full[0] and " free)" in full[0]
    return full[0]


def test_disk_full_at_the_start_is_one_line_exit_1_and_leaves_no_run(tmp_path, tiny_folder, disk, capsys):
    recipe = write_recipe(tmp_path, tiny_folder, schedule={"name": "cosine", "epochs": 1})
    disk.fill(0)
    run = disk.path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 1
    _assert_one_disk_full_line(capsys, disk)
    assert not run.exists()


def _three_epochs(tmp_path, tiny_folder):
    return write_recipe(tmp_path, tiny_folder, schedule={"name": "cosine", "epochs": 3},
                        runtime={"device": "cpu", "seed": 1, "log_every_steps": 1})


def _assert_failed_with_first_epoch_loadable(run: Path) -> None:
    from fgbench.train.checkpoint import load_checkpoint

    assert summary_of(run)["status"] == "failed"
    last = events_of(run)[-1]
    assert last["event"] == "run_finished" and last["status"] == "failed" and last["exit_code"] == 1
    assert "disk full" in last["error"]
    first = min(ev["epoch"] for ev in events_of(run) if ev["event"] == "epoch")
    assert int(load_checkpoint(run / "checkpoints" / "last.pt")["epoch"]) == first  # the previous one
    load_checkpoint(run / "checkpoints" / "best.pt")
    assert list((run / "checkpoints").glob("*.tmp")) == []


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(tmp_path, tiny_folder, disk, capsys, monkeypatch):
    from fgbench.train import trainer as tr

    orig = tr.Trainer._save_last
    calls: list[int] = []

    def save_last(self, **kw):
        calls.append(kw["epoch"])
        if len(calls) == 2:
            disk.fill(0)  # the disk fills up just as the second checkpoint is written
        return orig(self, **kw)

    monkeypatch.setattr(tr.Trainer, "_save_last", save_last)
    run = disk.path / "run"
    assert run_cli(str(_three_epochs(tmp_path, tiny_folder)), "--run-dir", str(run)) == 1
    line = _assert_one_disk_full_line(capsys, disk)
    assert "checkpoints" in line and len(calls) == 2
    _assert_failed_with_first_epoch_loadable(run)


def test_disk_full_mid_run_is_recorded_as_failed(tmp_path, tiny_folder, disk, capsys, monkeypatch):
    import fgbench.train.progress as pg

    orig = pg.Progress.tick

    def tick(self, **kw):
        orig(self, **kw)
        if kw["step"] == 11:  # 8 steps per epoch: in the middle of the second epoch
            disk.fill(0)

    monkeypatch.setattr(pg.Progress, "tick", tick)
    run = disk.path / "run"
    assert run_cli(str(_three_epochs(tmp_path, tiny_folder)), "--run-dir", str(run)) == 1
    _assert_one_disk_full_line(capsys, disk)
    _assert_failed_with_first_epoch_loadable(run)


# ------------------------------------------------------------------------ damaged checkpoints


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_folder) -> Path:
    base = tmp_path_factory.mktemp("finished")
    recipe = write_recipe(base, tiny_folder, schedule={"name": "cosine", "epochs": 1})
    run = base / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 0
    return run


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _damage(path: Path, how: str, marker: Path) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(os.urandom(256))
    elif how == "pickled-code":
        torch.save({"format": 1, "model": _Evil(str(marker))}, path)


DAMAGE = ["truncated", "empty", "garbage", "pickled-code"]


def _assert_one_checkpoint_line(capsys, path: Path, how: str, marker: Path) -> None:
    lines = err_lines(capsys)
    assert len(lines) == 1, lines
    assert str(path) in lines[0]
    assert ("refused" if how == "pickled-code" else "damaged or not a checkpoint") in lines[0]
    assert "weights_only" not in lines[0] and "Weights only" not in lines[0]
    assert not marker.exists()  # the pickled code never ran


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_damaged_or_refused_checkpoint_is_one_line_for_predict_and_evaluate(tmp_path, finished_run, capsys,
                                                                                how, command):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    best = run / "checkpoints" / "best.pt"
    marker = tmp_path / "pwned"
    _damage(best, how, marker)
    image = next((Path(finished_run).parent).glob("*.toml"))  # any path: loading fails first
    argv = ["predict", str(run), str(image)] if command == "predict" else ["evaluate", str(run)]
    assert main(argv) == 2
    _assert_one_checkpoint_line(capsys, best, how, marker)


def _interrupted_run(tmp_path, tiny_folder, monkeypatch, stale: bool = False) -> Path:
    """A 3-epoch run stopped (as by SIGINT) after its first epoch."""
    from fgbench.train import trainer as tr

    orig = tr.Trainer._end_epoch

    def end_epoch(self, st, epoch, res, **kw):
        orig(self, st, epoch, res, **kw)
        if stale and epoch == 0:
            for name in ("last.pt", "best.pt"):  # what a kill during a checkpoint write leaves
                (self.ckpt_dir / f".{name}.{uuid.uuid4().hex[:8]}.tmp").write_bytes(b"partial")
        self.ctx.stop.requested, self.ctx.stop.signal = True, "SIGINT"

    monkeypatch.setattr(tr.Trainer, "_end_epoch", end_epoch)
    run = tmp_path / "run"
    assert run_cli(str(_three_epochs(tmp_path, tiny_folder)), "--run-dir", str(run)) == 130
    monkeypatch.setattr(tr.Trainer, "_end_epoch", orig)
    return run


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("which", ["last.pt", "best.pt"])
def test_a_damaged_checkpoint_stops_a_resume_with_one_line(tmp_path, tiny_folder, monkeypatch, capsys, how, which):
    run = _interrupted_run(tmp_path, tiny_folder, monkeypatch)
    capsys.readouterr()
    path = run / "checkpoints" / which
    marker = tmp_path / "pwned"
    _damage(path, how, marker)
    assert run_cli("--resume", str(run)) == 2
    _assert_one_checkpoint_line(capsys, path, how, marker)


def test_stale_temporary_checkpoints_are_removed_on_resume_and_at_the_end(tmp_path, tiny_folder, monkeypatch,
                                                                           capsys):
    from fgbench.train import trainer as tr

    run = _interrupted_run(tmp_path, tiny_folder, monkeypatch, stale=True)
    ckpts = run / "checkpoints"
    assert list(ckpts.glob("*.tmp")) == []  # removed when the interrupted run ended
    stale = [ckpts / ".last.pt.dead0001.tmp", ckpts / ".best.pt.dead0002.tmp"]
    for p in stale:
        p.write_bytes(b"partial")  # left by a SIGKILL, which runs no clean-up
    seen: list[list[Path]] = []
    orig_emit_started = tr.Trainer._emit_started

    def emit_started(self):
        seen.append(sorted(ckpts.glob("*.tmp")))
        return orig_emit_started(self)

    monkeypatch.setattr(tr.Trainer, "_emit_started", emit_started)
    assert run_cli("--resume", str(run)) == 0
    assert seen == [[]]  # gone before the resumed run started training
    assert list(ckpts.glob("*.tmp")) == []
    assert summary_of(run)["status"] == "completed"


# -------------------------------------------------------------------- dataset files and folders


def _copy(tiny_folder: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(tiny_folder, data)
    return data


def test_a_fifo_named_like_an_image_is_skipped_and_named_never_read(tmp_path, tiny_folder, capsys):
    from fgbench.data.fast import CorruptImageError, load_rgb
    from fgbench.data.index import folder_index

    data = _copy(tiny_folder, tmp_path)
    fifo = data / "train" / CLASS_NAMES[2] / "zz_pipe.jpg"
    os.mkfifo(fifo)
    index = folder_index(data)
    assert index.not_files == [str(fifo)]
    assert str(fifo) not in [p for p, _ in index.train]

    result: list[BaseException | None] = []
    t = threading.Thread(target=lambda: result.append(_try(load_rgb, str(fifo))), daemon=True)
    t.start()
    t.join(timeout=60)  # a hang guard, not a speed target: opening a FIFO blocks forever
    if t.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # release the reader
        pytest.fail("load_rgb opened the FIFO")
    assert isinstance(result[0], CorruptImageError) and "not a regular file" in str(result[0])

    recipe = write_recipe(tmp_path, data, schedule={"name": "cosine", "epochs": 1})
    assert run_cli(str(recipe), "--run-dir", str(tmp_path / "run")) == 0
    named = [ln for ln in err_lines(capsys) if str(fifo) in ln]
    assert len(named) == 1 and "not a regular file" in named[0] and "skipped" in named[0]


def _try(fn, *args):
    try:
        fn(*args)
    except BaseException as err:  # noqa: BLE001
        return err
    return None


def test_an_empty_class_folder_is_an_error_naming_it(tmp_path, tiny_folder, capsys):
    data = _copy(tiny_folder, tmp_path)
    empty = data / "train" / "zz_empty_class"
    empty.mkdir()
    recipe = write_recipe(tmp_path, data, schedule={"name": "cosine", "epochs": 1})
    runs_root = tmp_path / "runs"
    assert run_cli(str(recipe), "--runs-root", str(runs_root)) == 2
    lines = err_lines(capsys)
    assert len(lines) == 1 and str(empty) in lines[0] and "without images" in lines[0]
    assert not runs_root.exists() or not any(runs_root.iterdir())


def _broken(data: Path) -> tuple[Path, Path]:
    bad_train = data / "train" / CLASS_NAMES[1] / "zz_broken.png"
    bad_test = data / "test" / CLASS_NAMES[4] / "zz_broken.png"
    for p in (bad_train, bad_test):
        p.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return bad_train, bad_test


@pytest.mark.parametrize("loader", ["standard", "device"])
def test_skip_corrupt_is_honoured_and_the_summary_counts_evaluated_images(tmp_path, tiny_folder, capsys, loader):
    data = _copy(tiny_folder, tmp_path)
    bad_train, bad_test = _broken(data)
    recipe = write_recipe(tmp_path, data, schedule={"name": "cosine", "epochs": 1}, data={"loader": loader})
    run = tmp_path / "skip"
    assert run_cli(str(recipe), "--set", "data.skip_corrupt=true", "--run-dir", str(run)) == 0
    s = summary_of(run)
    assert s["skipped_images"] == 2
    assert s["test_images"] == len(CLASS_NAMES) * 6  # 6 per class, the broken one not counted
    evals = [ev for ev in events_of(run) if ev["event"] == "eval" and ev["split"] == "test"]
    assert evals and all(ev["images"] == s["test_images"] for ev in evals)
    logged = " ".join(ev.get("message", "") for ev in events_of(run) if ev["event"] == "log")
    assert str(bad_train) in logged and str(bad_test) in logged
    capsys.readouterr()
    stopped = tmp_path / "stopped"
    assert run_cli(str(recipe), "--run-dir", str(stopped)) == 2
    lines = err_lines(capsys)
    assert len(lines) == 1 and "zz_broken.png" in lines[0] and "skip_corrupt" in lines[0]
    assert not stopped.exists()


# -------------------------------------------------------------------------- loader workers exit

WORKER_SCRIPT = """
import sys, torch
from fgbench.data.index import folder_index
from fgbench.data import loaders as L
from fgbench.recipe import validate_recipe
r = validate_recipe({"name": "t", "data": {"dataset": "folder", "root": sys.argv[1], "train_size": 16,
    "test_size": 16, "train_crop": "pad_crop", "test_crop": "none", "batch_size": 8, "workers": 2,
    "val_fraction": 0.0}, "eval": {"select_on": "last"}, "model": {"arch": "small_cnn"},
    "optim": {"name": "sgd", "lr": 0.1}, "schedule": {"name": "cosine", "epochs": 1}, "runtime": {"device": "cpu"}})
splits = L.load_splits(folder_index(sys.argv[1]), r.data)
ld = L.build_loaders(splits, r.data, r.augment, train_size=16, test_size=16, batch_size=8, seed=0,
                     device=torch.device("cpu"))
next(iter(ld.train.batches(0)))
next(iter(ld.test.batches()))
print("batches", flush=True)
# no close(): the script just ends
"""


def test_loader_workers_end_with_a_script_that_forgets_close(tmp_path, tiny_folder):
    script = tmp_path / "script.py"
    script.write_text(WORKER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, str(script), str(tiny_folder)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=300)  # a hang guard: without the fix it never returns
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail("the script hung at exit waiting for its loader workers")
    assert p.returncode == 0, err
    assert "batches" in out

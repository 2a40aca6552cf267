"""A training image that goes bad while a run trains (issue 21, item 1): a run that has results is
never discarded. The image is damaged (or deleted) after epoch 2 of 3, through the trainer's own
end-of-epoch step, so the fault is found mid-run exactly as a user would meet it.

Without ``data.skip_corrupt`` the run ends ``failed`` (exit 2), keeps its directory, checkpoints and
metrics, names the file in one line, and ``--resume`` finishes it once the file is back. With it, the
image is skipped and counted. A file that vanished is called missing, not undecodable.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

from fgbench.cli import main
from fgbench.data.synthetic import CLASS_NAMES
from fgbench.train import trainer as T

from .conftest import events_of, summary_of, write_recipe


def run_cli(*argv: str) -> int:
    return main(["run", *argv, "--progress", "none"])


def err_lines(capsys) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and "Warning" not in ln]


@pytest.fixture
def data(tmp_path, tiny_folder) -> Path:
    root = tmp_path / "data"
    shutil.copytree(tiny_folder, root)
    return root


def _victim(data: Path) -> Path:
    return sorted((data / "train" / CLASS_NAMES[2]).iterdir())[0]


def _damage_after_epoch(monkeypatch, path: Path, how: str, epoch: int = 2) -> dict:
    """Damage ``path`` once epoch ``epoch`` has ended (its checkpoint written). Returns the kept bytes."""
    kept = {"bytes": path.read_bytes()}
    orig = T.Trainer._end_epoch

    def end_epoch(self, st, ep, res, *, last_in_stage):
        orig(self, st, ep, res, last_in_stage=last_in_stage)
        if ep == epoch:
            if how == "garbage":
                path.write_bytes(b"\x89PNG\r\n\x1a\n not an image any more")
            else:
                path.unlink()

    monkeypatch.setattr(T.Trainer, "_end_epoch", end_epoch)
    return kept


@pytest.mark.parametrize("how", ["garbage", "deleted"])
def test_a_bad_image_after_epoch_2_keeps_the_run_as_failed_and_resume_finishes_it(tmp_path, data, capsys,
                                                                                 monkeypatch, how):
    recipe = write_recipe(tmp_path, data, schedule={"name": "cosine", "epochs": 3}, data={"val_fraction": 0.0},
                          eval={"select_on": "last"})
    victim = _victim(data)
    kept = _damage_after_epoch(monkeypatch, victim, how)
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 2
    lines = err_lines(capsys)
    assert len(lines) == 1, lines
    line = lines[0]
    assert str(victim) in line and "--resume" in line and str(run) in line
    if how == "deleted":  # it must come back: a resume trains on the images the run began with
        assert "missing" in line and "decode" not in line and "put it back" in line and "skip_corrupt" not in line
    else:
        assert "cannot decode" in line and "missing" not in line
    # the run is still there, recorded as failed, with the checkpoint of epoch 2 and both epochs' metrics
    assert (run / "checkpoints" / "last.pt").is_file()
    assert summary_of(run)["status"] == "failed"
    evs = events_of(run)
    assert [e["epoch"] for e in evs if e["event"] == "epoch"] == [1, 2]
    end = [e for e in evs if e["event"] == "run_finished"]
    assert len(end) == 1 and end[0]["status"] == "failed" and end[0]["exit_code"] == 2
    assert str(victim) in end[0]["error"]

    monkeypatch.undo()  # the file is fixed: put it back and continue
    victim.write_bytes(kept["bytes"])
    assert run_cli("--resume", str(run)) == 0
    s = summary_of(run)
    assert s["status"] == "completed" and s["epochs_done"] == 3
    assert [e["epoch"] for e in events_of(run) if e["event"] == "epoch"] == [1, 2, 3]


def test_an_undecodable_image_mid_run_can_be_skipped_from_the_resume_on(tmp_path, data, capsys, monkeypatch):
    """The line of a kept run offers two ways on for an image that does not decode: fix it, or go on
    without such images. The second is a command the user can run as printed: ``--resume`` takes
    ``--set data.skip_corrupt=true`` (and no other field), writes it into the run's recipe and its
    resume record, and the resumed run skips and counts the image."""
    recipe = write_recipe(tmp_path, data, schedule={"name": "cosine", "epochs": 3}, data={"val_fraction": 0.0},
                          eval={"select_on": "last"})
    victim = _victim(data)
    _damage_after_epoch(monkeypatch, victim, "garbage")
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 2
    (line,) = err_lines(capsys)
    assert line.startswith(f"{victim}: cannot decode image; the run is kept (failed): fix it, then continue with: "
                           f"fgbench run --resume {run}; "), line
    offered = line.split("or continue without such images: ", 1)[1]
    argv = shlex.split(offered)
    assert argv == ["fgbench", "run", "--resume", str(run), "--set", "data.skip_corrupt=true"], line
    monkeypatch.undo()
    before = (run / "recipe.toml").read_text()
    assert run_cli(*argv[2:]) == 0  # the file is still garbage
    s = summary_of(run)
    assert s["status"] == "completed" and s["epochs_done"] == 3 and s["skipped_images"] == 1
    changed = [(a, b) for a, b in zip(before.splitlines(), (run / "recipe.toml").read_text().splitlines()) if a != b]
    assert changed == [("skip_corrupt = false", "skip_corrupt = true")], changed
    info = json.loads((run / "run.json").read_text())
    assert info["resumes"][-1]["overrides"] == ["data.skip_corrupt=true"]


def test_a_resume_refuses_every_other_override_before_anything_is_read(tmp_path, capsys):
    """Only data.skip_corrupt may change on a resume: a different learning rate would make the
    run's numbers those of no recipe. One line naming the override, exit 2."""
    assert run_cli("--resume", str(tmp_path / "nowhere"), "--set", "optim.lr=0.5") == 2
    (line,) = err_lines(capsys)
    assert line.startswith("--set optim.lr=0.5: not allowed with --resume"), line


def test_a_bad_image_in_epoch_1_still_leaves_nothing_behind(tmp_path, data, capsys):
    """Before any epoch ended the run holds nothing worth keeping: bad input leaves no directory."""
    _victim(data).write_bytes(b"garbage")
    recipe = write_recipe(tmp_path, data, schedule={"name": "cosine", "epochs": 2})
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 2
    lines = err_lines(capsys)
    assert len(lines) == 1 and str(_victim(data)) in lines[0] and "--resume" not in lines[0]
    assert not run.exists()


def test_skip_corrupt_skips_a_file_deleted_mid_run_and_counts_it_as_missing(tmp_path, data, capsys, monkeypatch):
    recipe = write_recipe(tmp_path, data, schedule={"name": "cosine", "epochs": 3}, data={"val_fraction": 0.0},
                          eval={"select_on": "last"})
    victim = _victim(data)
    _damage_after_epoch(monkeypatch, victim, "deleted")
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--set", "data.skip_corrupt=true", "--run-dir", str(run)) == 0
    s = summary_of(run)
    assert s["status"] == "completed" and s["skipped_images"] == 1
    epochs = [e for e in events_of(run) if e["event"] == "epoch"]
    assert [e["skipped_images"] for e in epochs] == [0, 0, 1]
    logged = [e["message"] for e in events_of(run) if e["event"] == "log" and str(victim) in e.get("message", "")]
    assert len(logged) == 1 and "missing" in logged[0]
    assert json.loads((run / "summary.json").read_text())["skipped_images"] == 1


def _header_bomb(path: Path, side: int = 60000) -> None:
    """A 60-byte PNG whose header claims side x side pixels (no pixel data)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("loader", ["standard", "device", "cached"])
def test_a_header_bomb_in_the_training_set_is_one_line(tmp_path, data, capsys, loader, monkeypatch):
    """Issue 21 item 10: a decompression bomb (Pillow refuses it with an error that is not an
    OSError) gave a 37-line traceback with the device loader."""
    monkeypatch.setenv("FGBENCH_HOME", str(tmp_path / "home"))  # the cached loader's cache
    bomb = data / "train" / CLASS_NAMES[1] / "zz_bomb.png"
    _header_bomb(bomb)
    recipe = write_recipe(tmp_path, data, schedule={"name": "cosine", "epochs": 1}, data={"loader": loader})
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 2
    out = capsys.readouterr()
    lines = [ln for ln in out.err.splitlines() if ln.strip() and "Warning" not in ln]
    assert len(lines) == 1, lines
    assert "Traceback" not in out.err + out.out
    assert lines[0].count(str(bomb)) == 1 and "cannot decode image" in lines[0]
    assert not run.exists()


@pytest.mark.parametrize("loader", ["standard", "device", "cached"])
def test_an_undecodable_image_is_named_once_with_every_loader(tmp_path, data, capsys, loader, monkeypatch):
    """Pillow's message quotes the file again ("cannot identify image file '/.../x.png'"): the
    device and cached lines named it twice."""
    monkeypatch.setenv("FGBENCH_HOME", str(tmp_path / "home"))
    bad = data / "train" / CLASS_NAMES[1] / "zz_garbage.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    recipe = write_recipe(tmp_path, data, schedule={"name": "cosine", "epochs": 1}, data={"loader": loader})
    assert run_cli(str(recipe), "--run-dir", str(tmp_path / "run")) == 2
    lines = err_lines(capsys)
    assert len(lines) == 1 and lines[0].count(str(bad)) == 1 and "cannot decode image" in lines[0], lines


# ----------------------------------------- issue 21 item 10: kills around checkpoints, resumed


class Killed(BaseException):
    """Stands for SIGKILL: nothing of fgbench's handling runs (no run_finished, no summary)."""


def _kill_in(monkeypatch, method: str, *, epoch: int | None = None) -> None:
    orig = getattr(T.Trainer, method)

    def killed(self, *a, **kw):
        if epoch is None or kw.get("epoch") == epoch:
            raise Killed()
        return orig(self, *a, **kw)

    monkeypatch.setattr(T.Trainer, method, killed)


def _epochs(run: Path) -> list[int]:
    return [e["epoch"] for e in events_of(run) if e["event"] == "epoch"]


def test_a_replayed_epoch_appears_once_in_metrics(tmp_path, data, monkeypatch, capsys):
    """Killed after epoch 2's event but before its checkpoint: the resume trains epoch 2 again
    from epoch 1's checkpoint, and the file holds each epoch (and step, and evaluation) once."""
    recipe = write_recipe(tmp_path, data, schedule={"name": "cosine", "epochs": 3})
    run = tmp_path / "run"
    _kill_in(monkeypatch, "_save_last", epoch=2)
    with pytest.raises(Killed):
        run_cli(str(recipe), "--run-dir", str(run))
    assert _epochs(run) == [1, 2]  # epoch 2 was recorded, its checkpoint never written
    monkeypatch.undo()
    assert run_cli("--resume", str(run)) == 0
    evs = events_of(run)
    assert _epochs(run) == [1, 2, 3]
    steps = [e["step"] for e in evs if e["event"] == "step"]
    assert steps == sorted(set(steps))
    evals = [(e["epoch"], e["split"], e["model"]) for e in evs if e["event"] == "eval"]
    assert len(evals) == len(set(evals))
    assert [e["event"] for e in evs].count("run_started") == 2  # the killed session's start stays


def _killed_before_checkpoint(tmp_path, data, monkeypatch, *, epoch: int = 2, epochs: int = 3, **data_keys) -> Path:
    """A run of ``epochs`` killed after epoch ``epoch``'s event, before that epoch's checkpoint (the
    one before it is kept); ``data_keys``: fields of the recipe's [data]."""
    recipe_file = write_recipe(tmp_path, data, schedule={"name": "cosine", "epochs": epochs}, data=data_keys)
    run = tmp_path / "run"
    # only the kill is undone: monkeypatch.undo() would also drop the test's own FGBENCH_HOME, and the
    # resume would write its cache into the real one
    with monkeypatch.context() as mp:
        _kill_in(mp, "_save_last", epoch=epoch)
        with pytest.raises(Killed):
            run_cli(str(recipe_file), "--run-dir", str(run))
    return run


def _stopped_run_with_a_bad_image(tmp_path, data, monkeypatch, capsys, loader) -> tuple[Path, Path, bytes, str]:
    """A run killed after epoch 2's event (its checkpoint of epoch 1 kept), then one training image
    overwritten with garbage; the resume's one line."""
    run = _killed_before_checkpoint(tmp_path, data, monkeypatch, loader=loader)
    victim = _victim(data)
    kept = victim.read_bytes()
    victim.write_bytes(b"\x89PNG\r\n\x1a\n not an image any more")
    capsys.readouterr()
    assert run_cli("--resume", str(run)) == 2
    (line,) = err_lines(capsys)
    return run, victim, kept, line


def test_an_image_that_went_bad_while_a_cached_run_was_stopped_can_be_skipped(tmp_path, data, monkeypatch, capsys):
    """The cached loader decodes every image when a session starts, so the resume finds the image
    before anything is recorded (the run kept as it was). The image keeps its place in the list the
    splits are drawn from (they used to be drawn from the images the cache could decode, so skipping
    one would have redrawn them and the line offered only the fix): the line offers the command that
    goes on without the image, and it works as printed."""
    run, victim, _, line = _stopped_run_with_a_bad_image(tmp_path, data, monkeypatch, capsys, "cached")
    assert line.startswith(f"{victim}: cannot decode image; the run is kept as it was: fix it, then continue with: "
                           f"fgbench run --resume {run}; or continue without such images: "), line
    assert not [e for e in events_of(run) if e["event"] == "run_finished"]  # nothing recorded: kept as it was
    argv = shlex.split(line.split("or continue without such images: ", 1)[1])
    assert argv == ["fgbench", "run", "--resume", str(run), "--set", "data.skip_corrupt=true"], line
    assert run_cli(*argv[2:]) == 0
    s = summary_of(run)
    assert s["status"] == "completed" and s["epochs_done"] == 3 and s["skipped_images"] == 1, s
    # the splits the run began with (130 train, 30 val): the victim is one of the validation images
    # (val_seed 0's draw), left out of the 30 it was evaluated on
    assert (s["train_images"], s["val_images"], s["test_images"]) == (130, 29, 60), s


def test_an_image_that_went_bad_while_a_device_run_was_stopped_can_be_skipped(tmp_path, data, monkeypatch, capsys):
    """The device loader decodes every image when a session starts but keeps the splits' indices:
    the resume finds the image before training, the run ends failed, kept, and the line offers the
    command that goes on without the image; it works as printed."""
    run, victim, _, line = _stopped_run_with_a_bad_image(tmp_path, data, monkeypatch, capsys, "device")
    assert line.startswith(f"{victim}: cannot decode image; the run is kept (failed): fix it, then continue with: "
                           f"fgbench run --resume {run}; or continue without such images: "), line
    argv = shlex.split(line.split("or continue without such images: ", 1)[1])
    assert argv == ["fgbench", "run", "--resume", str(run), "--set", "data.skip_corrupt=true"], line
    assert run_cli(*argv[2:]) == 0
    s = summary_of(run)
    assert s["status"] == "completed" and s["epochs_done"] == 3 and s["skipped_images"] == 1, s


def test_a_kill_after_the_final_checkpoint_is_completed_by_resume(tmp_path, data, monkeypatch, capsys):
    recipe = write_recipe(tmp_path, data, schedule={"name": "cosine", "epochs": 2})
    ref = tmp_path / "ref"
    assert run_cli(str(recipe), "--run-dir", str(ref)) == 0
    run = tmp_path / "run"
    _kill_in(monkeypatch, "_final")
    with pytest.raises(Killed):
        run_cli(str(recipe), "--run-dir", str(run))
    assert (run / "checkpoints" / "last.pt").is_file() and not (run / "predictions.json").exists()
    monkeypatch.undo()
    assert run_cli("--resume", str(run)) == 0
    assert summary_of(run)["status"] == "completed"
    for name in ("predictions.json", "confusion.json"):
        assert json.loads((run / name).read_text()) == json.loads((ref / name).read_text())
    assert _epochs(run) == [1, 2]


def test_an_image_swapped_for_another_while_the_run_was_stopped_is_refused_by_resume(tmp_path, data, monkeypatch,
                                                                                  capsys):
    """One image renamed: the counts stay, but the sorted file list shifts (the renamed file sorts
    last in its class), so index-drawn splits would mix. The checkpoint's digest of the file list
    tells; renamed back, the resume finishes."""
    run = _killed_before_checkpoint(tmp_path, data, monkeypatch)
    victim = _victim(data)
    renamed = victim.with_name("zz_" + victim.name)
    victim.rename(renamed)
    capsys.readouterr()
    assert run_cli("--resume", str(run)) == 2
    (line,) = err_lines(capsys)
    assert line == (f"{run}: the dataset changed since the run's last checkpoint (the train images are not the "
                    "files it had: one renamed, moved, or swapped for another); put the dataset back as it was, or "
                    "start a new run"), line
    renamed.rename(victim)
    assert run_cli("--resume", str(run)) == 0
    assert summary_of(run)["status"] == "completed"


def test_a_kill_before_the_first_checkpoint_landed_says_how_to_start_again(tmp_path, data, monkeypatch, capsys):
    """Epoch 1 ended (its event is in the file) but its checkpoint, written in the background,
    never landed: nothing can be resumed. --resume says so in one line, keeps the directory, and
    names the recipe to start again from; following it trains a new run."""
    run = _killed_before_checkpoint(tmp_path, data, monkeypatch, epoch=1, epochs=2)
    assert _epochs(run) == [1] and not (run / "checkpoints" / "last.pt").exists()
    capsys.readouterr()
    assert run_cli("--resume", str(run)) == 2
    lines = err_lines(capsys)
    assert len(lines) == 1 and "no checkpoint to resume from" in lines[0], lines
    again = str(run / "recipe.toml")
    assert lines[0].endswith(f"start it again as a new run: fgbench run {again}")
    assert _epochs(run) == [1]  # the directory is kept as it was
    assert run_cli(again, "--run-dir", str(tmp_path / "again")) == 0
    assert summary_of(tmp_path / "again")["status"] == "completed"


@pytest.mark.parametrize("how", ["deleted", "added"])
def test_a_dataset_changed_while_the_run_was_stopped_is_refused_by_resume(tmp_path, data, monkeypatch, capsys, how):
    """An image deleted (or added) between a kill and --resume is not in the new scan: the resumed
    run trained on one image fewer without a word, and every later image shifted, so the
    validation split (drawn by index) mixed with the training one. Refused in one line, the run
    kept; with the dataset as it was, the resume finishes."""
    run = _killed_before_checkpoint(tmp_path, data, monkeypatch)  # val_fraction 0.2
    victim = _victim(data)
    kept = victim.read_bytes()
    extra = victim.with_name("zz_new.png")
    if how == "deleted":
        victim.unlink()
    else:
        extra.write_bytes(kept)
    metrics = (run / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    assert run_cli("--resume", str(run)) == 2
    lines = err_lines(capsys)
    assert len(lines) == 1, lines
    val = 10 * 3  # the tiny folder: 10 classes of 16 training images, 3 of each (a fifth, rounded down) held out
    train = 10 * 16 - val
    now = train - 1 if how == "deleted" else train + 1
    assert lines[0] == (f"{run}: the dataset changed since the run's last checkpoint (train {now} images, {train} at the "
                        "checkpoint): an image was deleted, moved or added; put the dataset back as it was, or start "
                        "a new run"), lines
    assert (run / "metrics.jsonl").read_bytes() == metrics  # nothing written
    if how == "deleted":
        victim.write_bytes(kept)
    else:
        extra.unlink()
    assert run_cli("--resume", str(run)) == 0
    assert summary_of(run)["status"] == "completed" and summary_of(run)["val_images"] == val


KILLED_IN_WRITE = """
import json, os, signal, sys, time
from pathlib import Path
from fgbench.train import checkpoint
metrics = Path(sys.argv[2]) / "metrics.jsonl"
writes = []
real = checkpoint.save_checkpoint

def epoch_ended(n):
    for line in metrics.read_text().splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue  # a line being written
        if ev.get("event") == "epoch" and ev.get("epoch") == n:
            return True
    return False

def save(path, data):
    if Path(path).name == "last.pt":
        writes.append(path)
        if len(writes) == 2:  # epoch 2's checkpoint, in the background: hold it until epoch 3 has ended
            deadline = time.monotonic() + 300
            while not epoch_ended(3):
                if time.monotonic() > deadline:
                    sys.exit(99)
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGKILL)  # the write never lands
    return real(path, data)

checkpoint.save_checkpoint = save
from fgbench.cli import main
sys.exit(main(["run", sys.argv[1], "--run-dir", sys.argv[2], "--progress", "none"]))
"""


def test_a_sigkill_while_a_checkpoint_is_written_in_the_background_resumes_at_once(tmp_path, data):
    """The checkpoint of epoch 2 is still being written (in the background) when epoch 3 ends, and
    the process is killed: epochs 2 and 3 are in the file, the last checkpoint is epoch 1's. The
    run is free at once (its loader workers hold no lock), --resume trains epochs 2 and 3 again,
    each epoch is in the file once, and the run ends with its predictions."""
    import os
    import subprocess
    import sys

    from fgbench.rundir import lock

    recipe = write_recipe(tmp_path, data, schedule={"name": "cosine", "epochs": 4},
                          data={"val_fraction": 0.0, "workers": 1}, eval={"select_on": "last"})
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    log = tmp_path / "killed.log"
    with open(log, "wb") as out:  # a file, not a pipe: waiting on a pipe would wait for the workers too
        proc = subprocess.run([sys.executable, "-c", KILLED_IN_WRITE, str(recipe), str(run)], env=env,
                              stdout=out, stderr=subprocess.STDOUT, timeout=600)
    assert proc.returncode == -9, log.read_text()[-2000:]
    assert _epochs(run) == [1, 2, 3]
    assert [(e["kind"], e["epoch"]) for e in events_of(run) if e["event"] == "checkpoint" and e["kind"] == "last"] \
        == [("last", 1)]
    assert lock.holder(run) is None  # free now, not once the killed trainer's workers noticed
    assert run_cli("--resume", str(run)) == 0
    assert _epochs(run) == [1, 2, 3, 4]
    s = summary_of(run)
    assert s["status"] == "completed" and s["epochs_done"] == 4
    assert json.loads((run / "predictions.json").read_text())["epoch"] == 4


@pytest.mark.parametrize("how, why", [("fifo", "is a FIFO (named pipe), not a checkpoint file"),
                                      ("dev_zero", "is a character device, not a checkpoint file"),
                                      ("directory", "is a directory, not a checkpoint file"),
                                      ("loop", "cannot be read (Too many levels of symbolic links)")])
def test_a_last_checkpoint_that_is_not_a_file_is_named_as_such(tmp_path, data, monkeypatch, capsys, how, why):
    """Not "the run was stopped before its first checkpoint": the file is there, and is not one."""
    import os

    run = _killed_before_checkpoint(tmp_path, data, monkeypatch, epoch=2, epochs=2)
    last = run / "checkpoints" / "last.pt"
    last.unlink()
    if how == "fifo":
        os.mkfifo(last)
    elif how == "dev_zero":
        last.symlink_to("/dev/zero")
    elif how == "directory":
        last.mkdir()
    else:
        last.symlink_to(last.name)
    capsys.readouterr()
    assert run_cli("--resume", str(run)) == 2
    assert err_lines(capsys) == [f"{run}: cannot resume: {last} {why}"]

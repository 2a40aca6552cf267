"""A training image that goes bad while a run trains (issue 21, item 1): a run that has results is
never discarded. The image is damaged (or deleted) after epoch 2 of 3, through the trainer's own
end-of-epoch step, so the fault is found mid-run exactly as a user would meet it.

Without ``data.skip_corrupt`` the run ends ``failed`` (exit 2), keeps its directory, checkpoints and
metrics, names the file in one line, and ``--resume`` finishes it once the file is back. With it, the
image is skipped and counted. A file that vanished is called missing, not undecodable.
"""

from __future__ import annotations

import json
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
    if how == "deleted":
        assert "missing" in line and "decode" not in line
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

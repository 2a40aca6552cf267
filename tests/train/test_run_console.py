"""What `fgbench run` says: which folder it tests on, English result lines, and a progress bar
that never shows stale numbers."""

from __future__ import annotations

import io
import shutil

from fgbench.cli import main
from fgbench.train.progress import Progress
from .conftest import events_of, write_recipe


def test_a_folder_with_test_and_val_says_it_tests_on_test_and_how_many(tmp_path, tiny_folder, capsys):
    root = tmp_path / "both"
    shutil.copytree(tiny_folder, root)
    shutil.copytree(root / "test", root / "val")
    recipe = write_recipe(tmp_path, root, schedule={"name": "constant", "epochs": 1})
    run_dir = tmp_path / "run"
    assert main(["run", str(recipe), "--run-dir", str(run_dir), "--progress", "none"]) == 0
    out = capsys.readouterr().out
    n_train, n_test = 160, 60
    said = f"data: {root}: training on train/ ({n_train} images, 30 of them held out for validation), " \
           f"testing on test/ ({n_test} images)"
    assert said in out
    assert f"data: {root} has both test/ and val/: testing on test/, val/ is not used" in out
    assert said in [ev.get("message") for ev in events_of(run_dir) if ev["event"] == "log"]
    # the result reads as English: one epoch, and how the epoch was chosen
    assert "1 epoch," in out and "1 epochs" not in out
    assert "raw: best epoch 1 (chosen on validation): val" in out


def test_a_folder_with_only_val_says_it_tests_on_val(tmp_path, tiny_folder, capsys):
    root = tmp_path / "valonly"
    shutil.copytree(tiny_folder, root)
    (root / "test").rename(root / "val")
    recipe = write_recipe(tmp_path, root, schedule={"name": "constant", "epochs": 1},
                          data={"val_fraction": 0.0}, eval={"select_on": "last"})
    assert main(["run", str(recipe), "--run-dir", str(tmp_path / "run"), "--progress", "none"]) == 0
    out = capsys.readouterr().out
    assert f"data: {root}: training on train/ (160 images), testing on val/ (60 images)" in out
    assert "both test/ and val/" not in out
    assert "raw: epoch 1 (the last epoch): val" in out and "(on last)" not in out


def _bar() -> tuple[Progress, io.StringIO]:
    stream = io.StringIO()
    return Progress("bar", stream=stream, total_steps=20), stream


def test_the_bar_shows_only_the_current_epochs_numbers():
    p, stream = _bar()
    p.logged(epoch=1, total_epochs=2, batch=10, batches=10, step=10, loss=2.3456, top1=41.0, lr=0.1, images_per_s=500)
    p.tick(epoch=1, total_epochs=2, batch=10, batches=10, step=10, force=True)
    assert "loss 2.3456" in stream.getvalue()
    stream.seek(0)
    stream.truncate()
    p.tick(epoch=2, total_epochs=2, batch=1, batches=10, step=11, force=True)
    line = stream.getvalue()
    assert "epoch 2/2" in line and "loss 2.3456" not in line and "acc 41.0%" not in line


def test_a_stop_request_erases_the_bar_and_it_is_not_drawn_again(capsys):
    p, stream = _bar()
    p.tick(epoch=1, total_epochs=2, batch=3, batches=10, step=3, force=True)
    p.notice("SIGINT: finishing the current step")
    assert stream.getvalue().endswith("\r\x1b[2K"), "the bar line (and the echoed ^C) is erased"
    assert capsys.readouterr().err == "SIGINT: finishing the current step\n"
    drawn = stream.getvalue()
    p.tick(epoch=1, total_epochs=2, batch=4, batches=10, step=4, force=True)
    p.close()
    assert stream.getvalue() == drawn, "no stale bar line after the stop message"


def test_the_first_ctrl_c_goes_through_the_bar(capsys):
    import signal

    from fgbench.rundir.session import install_signals, restore_signals
    from fgbench.train.runner import stop_on_signal
    from fgbench.train.trainer import StopFlag

    p, stream = _bar()
    p.tick(epoch=1, total_epochs=2, batch=3, batches=10, step=3, force=True)
    stop = StopFlag()
    old = install_signals(stop_on_signal(stop, progress=p))
    try:
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
    finally:
        restore_signals(old)
    assert stop.requested and p.stopping
    assert stream.getvalue().endswith("\r\x1b[2K")
    assert capsys.readouterr().err.startswith("SIGINT: finishing the current step")


def test_the_epoch_lines_star_is_explained_where_it_first_appears(tmp_path, tiny_folder, capsys):
    recipe = write_recipe(tmp_path, tiny_folder, schedule={"name": "constant", "epochs": 3},
                          eval={"select_on": "last"})  # every epoch is a new best: a star on each
    assert main(["run", str(recipe), "--run-dir", str(tmp_path / "run"), "--progress", "lines"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ") and "/3 " in line
             and "batch" not in line]
    assert len(lines) == 3, lines
    assert lines[0].endswith('*  (* = a new best epoch of the raw model (eval.select_on = "last": the latest '
                             'epoch), saved in checkpoints/best.pt)'), lines[0]
    assert [line.endswith("  *") for line in lines[1:]] == [True, True], lines

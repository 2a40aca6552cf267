"""RunSession: where a run goes (one rule), its lock, discard on bad input, signals via a callback."""

from __future__ import annotations

import os
import signal

import pytest

from fgbench.errors import UserError
from fgbench.rundir import layout
from fgbench.rundir.lock import LOCKED_ENV, RunLock, holder
from fgbench.rundir.request import RunRequest
from fgbench.rundir.session import RESERVE_FILE, RunSession, install_signals, restore_signals


@pytest.fixture(autouse=True)
def _no_parent_lock(monkeypatch):
    monkeypatch.delenv(LOCKED_ENV, raising=False)


# ------------------------------------------------------------------------------ where the run goes


def test_a_missing_run_dir_is_created_and_an_empty_one_adopted_as_emptied(tmp_path):
    new = RunSession.place(run_dir=tmp_path / "a" / "b", runs_root=None, name="x")
    assert new.origin == "created" and (tmp_path / "a" / "b").is_dir()
    (tmp_path / "empty").mkdir()
    assert RunSession.place(run_dir=tmp_path / "empty", runs_root=None, name="x").origin == "emptied"
    checked = RunSession.place(run_dir=tmp_path / "later", runs_root=None, name="x", create=False)
    assert checked.origin == "created" and not (tmp_path / "later").exists()
    checked.create()
    assert (tmp_path / "later").is_dir()


def test_without_run_dir_a_new_directory_named_after_the_recipe_goes_under_the_root(tmp_path):
    s = RunSession.place(run_dir=None, runs_root=str(tmp_path / "runs"), name="my recipe")
    assert s.origin == "created" and s.run_dir.parent == tmp_path / "runs"
    assert s.run_dir.name.endswith("-my-recipe") and s.run_dir.is_dir()


def test_a_used_run_dir_or_a_file_is_refused(tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / layout.RECIPE_FILE).write_text("")
    with pytest.raises(UserError, match="--run-dir is not empty"):
        RunSession.place(run_dir=used, runs_root=None, name="x")
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match="exists and is not a directory"):
        RunSession.place(run_dir=tmp_path / "f", runs_root=None, name="x")


def test_a_directory_holding_only_a_launchers_files_is_still_new(tmp_path):
    d = tmp_path / "launched"
    d.mkdir()
    (d / layout.LAUNCH_FILE).write_text("{}")
    assert RunSession.place(run_dir=d, runs_root=None, name="x").origin == "emptied"


# ------------------------------------------------------------------------------------------- lock


def test_the_lock_is_held_by_the_session_and_let_go_when_it_ends(tmp_path):
    with RunSession.place(run_dir=tmp_path / "r", runs_root=None, name="x") as s:
        s.lock()
        assert holder(s.run_dir) is not None
        # what the torchrun workers it starts read: they take nothing
        assert os.environ[LOCKED_ENV] == str(s.run_dir.absolute())
        assert RunSession(s.run_dir, "resumed").lock().owned
        del os.environ[LOCKED_ENV]  # a process that was not started by this one
        with pytest.raises(UserError, match="in use by pid"):
            RunSession(s.run_dir, "resumed").lock()
    assert holder(tmp_path / "r") is None and LOCKED_ENV not in os.environ


def test_a_directory_written_into_before_the_lock_is_taken_is_refused_and_a_made_one_removed(tmp_path):
    s = RunSession.place(run_dir=tmp_path / "r", runs_root=None, name="x")
    (s.run_dir / layout.METRICS_FILE).write_text("")  # another process got there first
    with pytest.raises(UserError, match="not empty"):
        s.lock()
    assert not s.run_dir.exists(), "the directory this session made for nothing is not left behind"
    assert holder(tmp_path / "r") is None


def test_a_lock_held_elsewhere_leaves_a_given_directory_alone(tmp_path):
    d = tmp_path / "given"
    d.mkdir()
    other = RunLock(d).acquire()
    try:
        s = RunSession.place(run_dir=d, runs_root=None, name="x")
        with pytest.raises(UserError, match="in use by pid"):
            with s:
                s.lock()
        assert (d / layout.LOCK_FILE).exists(), "the other process's lock file is not removed"
    finally:
        other.release()


# ------------------------------------------------------------------------------ discard on bad input


def test_bad_input_inside_a_fresh_session_removes_what_it_made(tmp_path):
    with pytest.raises(UserError):
        with RunSession.place(run_dir=tmp_path / "r", runs_root=None, name="x") as s:
            s.lock()
            (s.run_dir / layout.RECIPE_FILE).write_text("")
            raise UserError("bad image")
    assert not (tmp_path / "r").exists()


def test_bad_input_empties_a_given_directory_again_and_keeps_the_launchers_files(tmp_path):
    d = tmp_path / "given"
    d.mkdir()
    (d / layout.LAUNCH_FILE).write_text("{}")
    with pytest.raises(UserError):
        with RunSession.place(run_dir=d, runs_root=None, name="x") as s:
            s.lock()
            (d / layout.RECIPE_FILE).write_text("")
            (d / layout.CHECKPOINT_DIR).mkdir()
            raise UserError("bad image")
    assert sorted(p.name for p in d.iterdir()) == [layout.LAUNCH_FILE]


def test_a_resumed_run_is_never_discarded_and_a_crash_is_not_bad_input(tmp_path):
    d = tmp_path / "old"
    d.mkdir()
    (d / layout.RECIPE_FILE).write_text("")
    with pytest.raises(UserError):
        with RunSession(d, "resumed") as s:
            s.lock()
            raise UserError("bad image")
    assert (d / layout.RECIPE_FILE).exists()
    with pytest.raises(RuntimeError):
        with RunSession.place(run_dir=tmp_path / "new", runs_root=None, name="x") as s:
            s.lock()
            raise RuntimeError("a bug")
    assert (tmp_path / "new").is_dir(), "a crash is recorded in the run, not discarded"


def _ended_run(d, status: str, exit_code: int):
    """A run directory whose last event says it ended with ``status``."""
    from fgbench.rundir import events

    d.mkdir()
    (d / layout.RECIPE_FILE).write_text("")
    w = events.MetricsWriter(d / events.METRICS_FILE)
    w.emit("run_finished", status=status, exit_code=exit_code)
    w.close()
    return d


def test_adopting_a_completed_run_is_refused(tmp_path):
    d = _ended_run(tmp_path / "done", "completed", 0)
    with pytest.raises(UserError, match="already completed"):
        RunSession.adopt(d)
    assert holder(d) is None


# ------------------------------------------------------------------------- log, reserve, signals


def test_the_log_tees_the_streams_and_everything_is_put_back(tmp_path, capsys):
    import sys

    before = (sys.stdout, sys.stderr)
    with RunSession.place(run_dir=tmp_path / "r", runs_root=None, name="x") as s:
        s.lock()
        s.open_log()
        assert (s.run_dir / RESERVE_FILE).stat().st_size > 0
        print("hello")
        print("oops", file=sys.stderr)
    assert (sys.stdout, sys.stderr) == before
    assert not (s.run_dir / RESERVE_FILE).exists()
    assert (s.run_dir / layout.LOG_FILE).read_text() == "hello\noops\n"
    assert capsys.readouterr().out == "hello\n"


def test_signals_reach_the_callback_and_the_old_handlers_come_back(tmp_path):
    seen = []
    before = signal.getsignal(signal.SIGTERM)
    with RunSession.place(run_dir=tmp_path / "r", runs_root=None, name="x") as s:
        s.watch_signals(seen.append)
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
    assert seen == ["SIGTERM", "SIGINT"]
    assert signal.getsignal(signal.SIGTERM) is before
    old = install_signals(seen.append)
    restore_signals(old)
    assert signal.getsignal(signal.SIGTERM) is before


# ---------------------------------------------------------------------------------------- request


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "give a RECIPE file or --resume"),
    ({"recipe": "r.toml", "nproc": 0}, "--nproc: must be at least 1, not 0"),
    ({"recipe": "r.toml", "resume": "x"}, "not both"),
    ({"resume": "x", "overrides": ("optim.lr=1",)}, r"--set optim.lr=1: not allowed with --resume .*data.skip_corrupt"),
    ({"resume": "x", "overrides": ("data.skip_corrupt=true", "data.root=/elsewhere")}, "--set data.root=/elsewhere"),
])
def test_a_request_the_arguments_alone_show_wrong_is_refused(kwargs, message):
    with pytest.raises(UserError, match=message):
        RunRequest(**kwargs).check()
    RunRequest(recipe="r.toml").check()
    RunRequest(resume="x").check()
    RunRequest(resume="x", overrides=("data.skip_corrupt=true",)).check()  # what a run with a bad image needs


def test_a_request_is_frozen_and_built_from_the_parsed_arguments():
    import argparse
    import dataclasses

    from fgbench.cli import train

    parser = argparse.ArgumentParser()
    train.register(parser.add_subparsers())
    args = parser.parse_args(["run", "r.toml", "--set", "a=1", "--set", "b=2", "--nproc", "2"])
    req = RunRequest.from_args(args)
    assert (req.recipe, req.overrides, req.nproc, req.nnodes, req.progress) == ("r.toml", ("a=1", "b=2"), 2, "1", "auto")
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.recipe = "other"  # type: ignore[misc]


def test_adopting_a_stopped_run_locks_it_before_anything_is_written(tmp_path):
    d = _ended_run(tmp_path / "stopped", "interrupted", 130)
    with RunSession.adopt(d) as s:
        assert s.origin == "resumed" and not s.fresh
        assert holder(d) is not None
    assert holder(d) is None

"""Names from disk or from the user reach the terminal only through fgbench.textsafe.safe: one test
per CLI output place (runs list/show/compare/rm, predict, data verify, run). A raw escape sequence
in any of them could write the clipboard (OSC 52), set the title, or blank the confirmation list of
`runs rm` so that it hides what it deletes."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

from fakes.run_factory import make_run

from fgbench import textsafe
from fgbench.rundir import layout

OSC52 = "\x1b]52;c;SGVsbG8=\x07"
CLEAR = "\r\x1b[2K"      # carriage return + erase line: hides what was printed before it
RLO = "\u202e"
C1 = "\x9b2J"


def _raw(text: str) -> list[str]:
    return sorted({repr(ch) for ch in text if not ch.isprintable() and ch != "\n"})


def _hostile_run(root: Path, *, dir_suffix: str = "") -> Path:
    run = make_run(root, "evil", stamp=1_700_000_000)
    recipe = run / layout.RECIPE_FILE
    text = recipe.read_text()
    text = re.sub(r'(?m)^name = ".*"$', lambda _m: f"name = {json.dumps('n' + OSC52)}", text, count=1)
    text = re.sub(r'(?m)^arch = ".*"$', lambda _m: f"arch = {json.dumps('m' + RLO)}", text, count=1)
    recipe.write_text(text)
    layout.write_json(run / layout.CLASSES_FILE, ["a" + C1, "b", "c"])
    layout.write_json(run / "confusion.json", {"split": "test", "model": "raw", "class_names": ["a" + C1, "b", "c"],
                                               "matrix": [[1, 1, 0], [0, 2, 0], [0, 0, 2]], "epoch": 3})
    if dir_suffix:
        run = run.rename(run.with_name(run.name + dir_suffix))
    return run


def test_safe_shows_every_control_escape_and_bidi_override_visibly() -> None:
    # worked out by hand: each non-printable character becomes its Python escape
    assert textsafe.safe("a\x1b]52;c;SGVsbG8=\x07b") == r"a\x1b]52;c;SGVsbG8=\x07b"
    assert textsafe.safe("x\x9b2J\u202egpj.exe\u2066\u200b") == r"x\x9b2J\u202egpj.exe\u2066\u200b"
    assert textsafe.safe("line\nnext\r\t\x00\x7f") == r"line\nnext\r\t\x00\x7f"
    assert textsafe.safe("Épervier 鳥 🦉 café") == "Épervier 鳥 🦉 café"  # every script stays as it is
    assert textsafe.safe(3.5) == "3.5"
    assert textsafe.safe_lines("one\x1b[2J\ntwo\r") == "one\\x1b[2J\ntwo\\r"


def test_runs_list_show_and_compare_show_hostile_names_visibly(runs_root: Path, cli) -> None:
    run = _hostile_run(runs_root)
    other = make_run(runs_root, "plain", stamp=1_700_000_500)
    for argv in (("runs", "list"), ("runs", "list", "--format", "markdown"), ("runs", "list", "--format", "csv"),
                 ("runs", "show", run.name)):
        code, out, err = cli(*argv, "--runs-root", runs_root)
        assert code == 0 and not _raw(out + err), (argv, _raw(out + err))
        assert r"n\x1b]52" in out, (argv, out)
    for fmt in ("text", "markdown", "csv"):  # compare: the model differs, so it is a column
        code, out, err = cli("runs", "compare", run.name, other.name, "--format", fmt, "--runs-root", runs_root)
        assert code == 0 and not _raw(out + err) and r"m\u202e" in out, (fmt, _raw(out + err), out)
    code, out, _err = cli("runs", "show", run.name, "--runs-root", runs_root)
    assert r"m\u202e" in out and r"a\x9b2J" in out  # the model and a class name
    code, out, _err = cli("runs", "list", "--format", "json", "--runs-root", runs_root)
    rows = json.loads(out)
    assert not _raw(out) and "n" + OSC52 in [v for r in rows for v in r.values()]  # JSON escapes, keeps the value


def test_the_rm_confirmation_list_cannot_be_blanked(runs_root: Path, cli) -> None:
    run = _hostile_run(runs_root, dir_suffix=CLEAR + "innocent")
    code, out, err = cli("runs", "rm", run.name, "--runs-root", runs_root, stdin="n\n")
    assert code == 1 and run.exists()
    assert not _raw(out + err), _raw(out + err)
    assert r"\r\x1b[2Kinnocent" in out and r"n\x1b]52" in out


def test_predict_shows_hostile_image_and_class_names_visibly(runs_root: Path, cli, tmp_path: Path, monkeypatch) -> None:
    run = make_run(runs_root, "good")
    image = tmp_path / f"owl{OSC52}.png"
    image.write_bytes(b"not decoded: predict_images is replaced below")

    def predict_images(run_dir, images, **_kw):
        return [{"image": str(images[0]), "checkpoint": "best", "model": "raw", "epoch": 3,
                 "top": [{"class": "a" + C1, "index": 0, "probability": 0.9},
                         {"class": "b" + RLO, "index": 1, "probability": 0.1}]}]

    fake = types.ModuleType("fgbench.train.predict")  # the engine (torch) is not what this tests
    fake.predict_images = predict_images
    monkeypatch.setitem(sys.modules, "fgbench.train.predict", fake)
    code, out, err = cli("predict", run.name, image, "--runs-root", runs_root)
    assert code == 0 and not _raw(out + err), _raw(out + err)
    assert r"owl\x1b]52;c;SGVsbG8=\x07.png" in out and r"a\x9b2J" in out and r"b\u202e" in out
    code, out, err = cli("predict", run.name, tmp_path / f"gone{CLEAR}.png", "--runs-root", runs_root)
    assert code == 2 and not _raw(out + err) and r"gone\r\x1b[2K.png: no such image file" in err


def test_data_verify_shows_hostile_file_names_visibly(cli, tmp_path: Path, monkeypatch) -> None:
    from fgbench.data import download

    def verify_dataset(name, **_kw):
        return types.SimpleNamespace(counts={"classes": 2, "train": 4, "test": 2}, test_split="test",
                                     location=tmp_path / f"data{RLO}", ok=False, decoded=0,
                                     problems=[f"train/owl/{OSC52}.jpg: cannot decode"], corrupt=["x"])

    monkeypatch.setattr(download, "verify_dataset", verify_dataset)
    code, out, err = cli("data", "verify", "synthetic")
    assert code == 1 and not _raw(out + err), _raw(out + err)
    assert r"train/owl/\x1b]52;c;SGVsbG8=\x07.jpg: cannot decode" in err and r"data\u202e" in out


def test_run_names_a_hostile_recipe_path_visibly(cli, tmp_path: Path) -> None:
    code, out, err = cli("run", tmp_path / f"recipe{OSC52}.toml")
    assert code == 2 and not _raw(out + err), _raw(out + err)
    assert r"recipe\x1b]52;c;SGVsbG8=\x07.toml: file not found" in err



HOSTILE = f"{OSC52}{RLO}\r"
SHOWN = r"\x1b]52;c;SGVsbG8=\x07\u202e\r"


def test_recipe_show_and_a_bad_override_show_hostile_text_visibly(cli, tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "r"\ndescription = "d\\u202e"\n')  # TOML escapes the RLO; the value holds it raw
    code, out, err = cli("recipe", "show", recipe)
    assert code == 0 and not _raw(out + err), _raw(out + err)
    assert 'description = "d\\u202e"' in out  # the same value to TOML, read back below
    from fgbench.tomlread import tomllib

    assert tomllib.loads(out)["description"] == "d" + RLO
    code, out, err = cli("recipe", "validate", "--set", f"name{HOSTILE}", recipe)
    assert code == 2 and not _raw(out + err), _raw(out + err)
    assert f"--set name{SHOWN}: " in err


def test_sweep_dry_run_shows_a_sweep_files_names_visibly(cli, tmp_path: Path) -> None:
    sweep = tmp_path / "sw.toml"
    sweep.write_text('name = "sw"\n[data]\ndataset = "synthetic"\n'
                     '[[sweep.variants]]\nname = "A"\ndescription = "v\\u001b]0;pwned\\u0007"\n'
                     '[sweep.grid]\n"description" = ["g\\u001b[2J\\r", "h"]\n')
    code, out, err = cli("sweep", sweep, "--dry-run")
    assert code == 0 and not _raw(out + err), _raw(out + err)
    assert r"v\x1b]0;pwned\x07" in out and r"description=g\x1b[2J\r" in out


def test_data_list_shows_a_hostile_datasets_folder_visibly(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FGBENCH_DATA", str(tmp_path / f"data{HOSTILE}"))
    code, out, err = cli("data", "list")
    assert code == 0 and not _raw(out + err), _raw(out + err)
    assert f"data{SHOWN}/cub200" in out or f"PATH is under {tmp_path}/data{SHOWN}" in out


def test_a_usage_error_quotes_a_hostile_argument_visibly(capsys) -> None:
    import pytest

    from fgbench.cli import main

    with pytest.raises(SystemExit) as exc:  # argparse's error exits
        main(["data", "list", f"--x{HOSTILE}"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and not _raw(err), _raw(err)
    assert f"unrecognized arguments: --x{SHOWN}" in err


def test_sweep_status_shows_a_sweep_files_path_and_labels_visibly(cli, tmp_path: Path, runs_root: Path) -> None:
    from fgbench.sweeps import plan, state

    sweep = tmp_path / f"sw{HOSTILE}.toml"
    sweep.write_text('name = "sw"\n[data]\ndataset = "synthetic"\n'
                     '[sweep.grid]\n"description" = ["g\\u001b]0;pwned\\u0007", "h"]\n')
    state.create_state(plan.load_plan(sweep), "t1", runs_root)
    code, out, err = cli("sweep", "--status", "t1", "--runs-root", runs_root)
    assert code == 0 and not _raw(out + err), _raw(out + err)
    assert f"from {tmp_path}/sw{SHOWN}.toml" in out and r"g\x1b]0;pwned\x07" in out


def test_runs_list_and_data_remove_name_a_hostile_folder_visibly(cli, tmp_path: Path) -> None:
    root = tmp_path / f"runs{HOSTILE}"
    root.mkdir()
    code, out, err = cli("runs", "list", "--runs-root", root)
    assert code == 0 and not _raw(out + err), _raw(out + err)
    assert f"no runs in {tmp_path}/runs{SHOWN}" in err
    code, out, err = cli("data", "remove", "cub200", "--root", tmp_path / f"gone{HOSTILE}")
    assert code == 0 and not _raw(out + err), _raw(out + err)
    assert f"({tmp_path}/gone{SHOWN} does not exist)" in out


def test_a_running_sweep_names_its_points_visibly(tmp_path: Path, runs_root: Path) -> None:
    import io

    from fakes.fake_trainer import FAKE_TRAINER
    from fgbench.sweeps import local, plan, state

    sweep = tmp_path / "sw.toml"
    sweep.write_text('name = "sw"\n[data]\ndataset = "synthetic"\n[schedule]\nepochs = 1\n'
                     '[sweep.grid]\n"description" = ["g\\u001b]0;pwned\\u0007"]\n')
    out = io.StringIO()
    code = local.run_sweep(state.create_state(plan.load_plan(sweep), "t1", runs_root),
                           base_cmd=[sys.executable, str(FAKE_TRAINER)], poll_s=0.02, out=out)
    assert code == 0 and not _raw(out.getvalue()), _raw(out.getvalue())
    assert r"description=g\x1b]0;pwned\x07: completed" in out.getvalue(), out.getvalue()


def test_settings_in_their_old_place_are_named_visibly(tmp_path: Path, monkeypatch, capsys) -> None:
    from fgbench import paths

    monkeypatch.delenv("FGBENCH_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / f"data{HOSTILE}"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(paths, "_told_old_settings", False)
    old = tmp_path / f"data{HOSTILE}" / "fgbench" / "settings.toml"
    old.parent.mkdir(parents=True)
    old.write_text("")
    assert paths.settings_file() == old
    err = capsys.readouterr().err
    assert not _raw(err) and f"reading settings from {tmp_path}/data{SHOWN}/fgbench/settings.toml" in err, err


def test_a_failing_trackers_error_is_shown_visibly(capsys) -> None:
    from fgbench import tracking

    class Broken(tracking._Tracker):
        name = "mlflow"

        def _start(self, event):
            raise RuntimeError(f"server said {OSC52}")  # a tracking server's error text

    Broken(None, {})({"event": "run_started"})
    err = capsys.readouterr().err
    assert not _raw(err) and r"server said \x1b]52;c;SGVsbG8=\x07" in err, err


def test_a_finished_runs_last_lines_name_its_directory_visibly(capsys) -> None:
    from fgbench.rundir.summary import Summary
    from fgbench.train.runner import _print_result

    _print_result(Summary(run_id=f"20250101-000000-x{OSC52}", epochs_done=1, step=3))
    out = capsys.readouterr().out
    assert not _raw(out) and r"finished 20250101-000000-x\x1b]52;c;SGVsbG8=\x07: 1 epoch" in out, out


def test_a_full_disk_names_the_run_directory_visibly(tmp_path: Path) -> None:
    import errno

    from fgbench.train.runner import _disk_full_line

    run_dir = tmp_path / f"20250101-000000-x{OSC52}"
    line = _disk_full_line(OSError(errno.ENOSPC, "No space left on device"), run_dir)
    assert not _raw(line) and line.startswith(rf"{tmp_path}/20250101-000000-x\x1b]52;c;SGVsbG8=\x07: disk full ("), line


def test_evaluate_names_a_hostile_run_directory_visibly(runs_root: Path, cli, monkeypatch) -> None:
    run = make_run(runs_root, "good")
    run = run.rename(run.with_name(run.name + OSC52))

    def evaluate_run(run_dir, **_kw):
        return [{"checkpoint": "best", "model": "raw", "epoch": 3, "split": "test", "k": 5, "test_size": 224,
                 "top1": 50.0, "topk": 90.0, "loss": 1.0, "images": 10}]

    fake = types.ModuleType("fgbench.train.predict")  # the engine (torch) is not what this tests
    fake.evaluate_run = evaluate_run
    monkeypatch.setitem(sys.modules, "fgbench.train.predict", fake)
    code, out, err = cli("evaluate", run.name, "--runs-root", runs_root)
    assert code == 0 and not _raw(out + err), _raw(out + err)
    assert r"good\x1b]52;c;SGVsbG8=\x07: best checkpoint" in out, out


def test_runs_export_shows_hostile_names_and_paths_visibly(runs_root: Path, cli, tmp_path: Path) -> None:
    run = _hostile_run(runs_root)
    for fmt in ("csv", "jsonl"):
        code, out, err = cli("runs", "export", run.name, "--format", fmt, "-o", "-", "--runs-root", runs_root)
        assert code == 0 and not _raw(out + err), (fmt, _raw(out + err))
    taken = tmp_path / f"out{HOSTILE}.csv"
    taken.write_text("")
    code, out, err = cli("runs", "export", run.name, "--format", "csv", "-o", taken, "--runs-root", runs_root)
    assert code == 2 and not _raw(out + err) and f"out{SHOWN}.csv: already exists" in err, (out, err)


def test_sweep_dry_run_on_slurm_shows_hostile_job_settings_visibly(cli, tmp_path: Path) -> None:
    sweep = tmp_path / "sw.toml"
    sweep.write_text('name = "sw"\n[data]\ndataset = "synthetic"\n[sweep]\nlauncher = "slurm"\nseeds = [0]\n'
                     '[sweep.slurm]\npartition = "gpu\\u001b]0;pwned\\u0007"\nsetup = ["module load x\\r"]\n')
    code, out, err = cli("sweep", sweep, "--dry-run")
    assert code == 0 and not _raw(out + err), (_raw(out + err), err)
    assert r"partition=gpu\x1b]0;pwned\x07" in out and r"module load x\r" in out, out

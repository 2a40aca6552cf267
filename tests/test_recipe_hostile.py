"""Hostile recipes, values and paths (issue 11): each is one line naming where it came from, exit 2,
no traceback, nothing written. The fuzz test (test_recipe_hostile_fuzz.py) covers the same ground at
random; these are the named cases, one per rule."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fgbench import cli, settings
from fgbench.errors import UserError
from fgbench.recipe import Recipe, RecipeError, dumps_recipe, load_recipe, recipe_to_dict, validate_recipe
from fgbench.tomlread import tomllib

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "r.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def one_error(tmp_path: Path, text: str, overrides: list[str] | None = None) -> str:
    p = write(tmp_path, text)
    with pytest.raises(RecipeError) as info:
        load_recipe(p, overrides)
    assert len(info.value.lines) == 1, info.value.lines
    return info.value.lines[0].replace(f"{p}: ", "FILE: ", 1)


def cli_err(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------------------ non-finite


@pytest.mark.parametrize("text, field", [
    ("[schedule]\nmin_lr = inf\n", "schedule.min_lr"),
    ("[optim]\nlr = nan\n", "optim.lr"),
    ("[data]\nnormalize = 'explicit'\nmean = [0.5, -inf, 0.5]\nstd = [0.2, 0.2, 0.2]\n", "data.mean[1]"),
    ("[data]\nnormalize = 'explicit'\nmean = [0.5, 0.5, 0.5]\nstd = [nan, 0.2, 0.2]\n", "data.std[0]"),
    ("[optim]\nname = 'adam'\nbetas = [0.9, inf]\n", "optim.betas[1]"),
    ("[data]\ncrop_scale = [0.1, nan]\n", "data.crop_scale[1]"),
    ("[ema]\nramp_steps = inf\n", "ema.ramp_steps"),
])
def test_non_finite_numbers_are_rejected_in_scalars_and_lists(tmp_path: Path, text: str, field: str) -> None:
    assert one_error(tmp_path, text) == f"FILE: {field}: Input should be a finite number"


def test_set_min_lr_inf_is_exit_2_and_no_run_directory(tmp_path: Path, capsys) -> None:
    # the issue's own example: it used to validate, then die in the metrics writer after the run existed
    recipe = REPO / "recipes" / "quickstart.toml"
    runs = tmp_path / "runs"
    rc, _, err = cli_err(["run", str(recipe), "--runs-root", str(runs), "--set", "schedule.min_lr=inf"], capsys)
    assert (rc, err) == (2, "--set schedule.min_lr=inf: Input should be a finite number\n")
    assert not runs.exists()


# ------------------------------------------------------------------------------ strict types


@pytest.mark.parametrize("text, line", [
    ("[data]\nbatch_size = true\n", "FILE: data.batch_size: Input should be a valid integer"),
    ("[optim]\nlr = \"0.05\"\n", "FILE: optim.lr: Input should be a valid number"),
    ("[augment]\nhflip = \"off\"\n", "FILE: augment.hflip: Input should be a valid boolean"),
    ("[augment]\nhflip = 1\n", "FILE: augment.hflip: Input should be a valid boolean"),
    ("[data]\ntrain_size = 224.0\n", "FILE: data.train_size: Input should be a valid integer"),
    ("name = 5\n", "FILE: name: Input should be a valid string"),
    ("[data]\ncrop_scale = \"0.1, 1\"\n", "FILE: data.crop_scale: Input should be a valid tuple"),
    ("[optim]\nlr = true\n", "FILE: optim.lr: Input should be a valid number"),
])
def test_types_are_strict(tmp_path: Path, text: str, line: str) -> None:
    assert one_error(tmp_path, text) == line


def test_an_int_is_still_a_float_and_arrays_are_tuples(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, "[optim]\nname = 'sgd'\nlr = 1\n[data]\ncrop_scale = [0.5, 1]\n"))
    assert r.optim.lr == 1.0
    assert r.data.crop_scale == (0.5, 1.0)
    # the adapter hands the array over as a tuple and changes nothing else: the file round-trips
    assert recipe_to_dict(r, full=False) == {"optim": {"name": "sgd", "lr": 1.0}, "data": {"crop_scale": [0.5, 1.0]}}


@pytest.mark.parametrize("override, line", [
    ("data.batch_size=true", "--set data.batch_size=true: Input should be a valid integer"),
    ('optim.lr="0.05"', '--set optim.lr="0.05": Input should be a valid number'),
    ("augment.hflip=off", "--set augment.hflip=off: Input should be a valid boolean"),
])
def test_set_values_are_toml_literals_under_the_same_rule(tmp_path: Path, override: str, line: str) -> None:
    assert one_error(tmp_path, "name = 'a'\n", [override]) == line
    assert load_recipe(write(tmp_path, "name = 'a'\n"), ["optim.lr=1"]).optim.lr == 1.0


# ------------------------------------------------------------------------------ cross-field


@pytest.mark.parametrize("text, line", [
    ("[optim]\nname = 'sgd'\nlr = 0.01\n[schedule]\nmin_lr = 0.1\n",
     "FILE: schedule.min_lr: min_lr 0.1 is above the peak optim.lr 0.01"),
    ("[optim]\nname = 'sgd'\nlr = 0.1\n[schedule]\nname = 'linear'\nmin_lr = 0.2\n",
     "FILE: schedule.min_lr: min_lr 0.2 is above the peak optim.lr 0.1"),
    ("[[stages]]\nepochs = 2\nlr = 0.001\n[schedule]\nmin_lr = 0.01\n",
     "FILE: stages[0].lr: this stage's min_lr 0.01 is above its lr 0.001"),
    ("[[stages]]\nepochs = 2\nlr = 0.01\nmin_lr = 0.05\n",
     "FILE: stages[0].min_lr: this stage's min_lr 0.05 is above its lr 0.01"),
    ("[schedule]\nname = 'multistep'\nepochs = 100\nmilestones = [30, 30]\n",
     "FILE: schedule.milestones[1]: milestones must be strictly increasing"),
    ("[schedule]\nname = 'multistep'\nepochs = 100\nmilestones = [0, 30]\n",
     "FILE: schedule.milestones[0]: milestones must be positive"),
    ("[schedule]\nname = 'multistep'\nepochs = 20\nmilestones = [10, 30]\n",
     "FILE: schedule.milestones[1]: milestone 30 lies beyond the run (epochs = 20)"),
    ("[schedule]\nepochs = 5\nwarmup_epochs = 5\n",
     "FILE: schedule.warmup_epochs: the warm-up (5 epochs) must be shorter than the run (epochs = 5)"),
    ("[schedule]\nmax_steps = 100\nwarmup_steps = 100\n",
     "FILE: schedule.warmup_steps: the warm-up (100 steps) must be shorter than the run (max_steps = 100)"),
    ("[[stages]]\nepochs = 2\nwarmup_epochs = 3\n",
     "FILE: stages[0].warmup_epochs: the warm-up (3 epochs) must be shorter than the stage (epochs = 2)"),
    ("[optim]\nname = 'adamw'\nbetas = [1.0, 0.999]\n", "FILE: optim.betas[0]: Adam's betas must lie in [0, 1)"),
    ("[optim]\nname = 'radam'\nbetas = [0.9, -0.1]\n", "FILE: optim.betas[1]: Adam's betas must lie in [0, 1)"),
    ("[model]\narch = 'vit_cifar'\n[data]\ntrain_size = 36\ntest_size = 32\n",
     "FILE: data.train_size: 36 px is not a multiple of model.vit.patch_size 8"),
    ("[model]\narch = 'vitn_cifar'\n[data]\ntrain_size = 32\ntest_size = 32\n[eval]\nfinal_test_sizes = [40, 44]\n",
     "FILE: eval.final_test_sizes[1]: 44 px is not a multiple of model.vit.patch_size 8"),
    ("[model]\narch = 'vit_cifar'\n[data]\ntrain_size = 32\ntest_size = 32\n[[stages]]\nepochs = 1\ntrain_size = 60\n",
     "FILE: stages[0].train_size: 60 px is not a multiple of model.vit.patch_size 8"),
    ("[eval]\nfinal_test_sizes = [100000]\n", "FILE: eval.final_test_sizes[0]: a test size must be between 8 and 2048 pixels"),
    ("[eval]\nfinal_test_sizes = [224, 0]\n", "FILE: eval.final_test_sizes[1]: a test size must be between 8 and 2048 pixels"),
    ("[data]\ntest_crop = 'fixed'\ntest_resize = [512, 0]\n",
     "FILE: data.test_resize[1]: a resize side must be between 8 and 8192 pixels"),
    ("[data]\ntrain_crop = 'resize_crop'\ntrain_resize = [-1, 512]\n",
     "FILE: data.train_resize[0]: a resize side must be between 8 and 8192 pixels"),
    ("[data]\nval_fraction = 0\n",
     "FILE: eval.select_on: eval.select_on is 'val' but data.val_fraction is 0: hold out a validation split or "
     "select on 'last'"),
    ("[model]\nnum_classes = 10000000\n", "FILE: model.num_classes: Input should be less than or equal to 1000000"),
    ("[runtime]\nseed = 4294967296\n", "FILE: runtime.seed: Input should be less than or equal to 4294967295"),
    ("[runtime]\nseed = -1\n", "FILE: runtime.seed: Input should be greater than or equal to 0"),
    ("[schedule]\nmax_steps = 10000000000\n", "FILE: schedule.max_steps: Input should be less than or equal to 1000000000"),
    ("[ema]\nevery = 10000000\n", "FILE: ema.every: Input should be less than or equal to 1000000"),
    ("[augment]\nmixup_alpha = 1000.0\n", "FILE: augment.mixup_alpha: Input should be less than or equal to 100"),
    ("[augment]\nmixup_alpha = -0.2\n", "FILE: augment.mixup_alpha: Input should be greater than or equal to 0"),
    ("[model.vit]\nwidth = 250\nheads = 4\n", "FILE: model.vit.width: width 250 is not a multiple of heads 4"),
])
def test_what_the_recipe_alone_can_tell_is_checked_at_validation(tmp_path: Path, text: str, line: str) -> None:
    assert one_error(tmp_path, text) == line


def test_the_seeds_shapes_on_the_edges_stay_valid(tmp_path: Path) -> None:
    # min_lr == lr, a milestone on the last epoch, warm-up one step shorter than the run, betas at 0
    load_recipe(write(tmp_path, "[optim]\nname = 'adam'\nlr = 0.01\nbetas = [0.0, 0.999]\n[schedule]\nmin_lr = 0.01\n"
                                "epochs = 3\nwarmup_epochs = 2.9\n"))
    load_recipe(write(tmp_path, "[schedule]\nname = 'multistep'\nepochs = 90\nmilestones = [30, 60, 90]\n"))
    load_recipe(write(tmp_path, "[model]\narch = 'vit_cifar'\n[data]\ntrain_size = 32\ntest_size = 32\ntest_crop = 'none'\n"))


def test_validators_only_check(tmp_path: Path) -> None:
    # what the user wrote comes back as written, plus nothing: no validator fills in a value
    text = ("[optim]\nname = 'adam'\nlr = 0.01\nbetas = [0.8, 0.99]\n[schedule]\nname = 'multistep'\nepochs = 40\n"
            "milestones = [10, 20]\n[[stages]]\nepochs = 2\n")
    r = load_recipe(write(tmp_path, text))
    assert recipe_to_dict(r, full=False) == tomllib.loads(text)


# ------------------------------------------------------------------------------ sweeps


def test_recipe_validate_checks_sweep_keys_and_values_as_fgbench_sweep_does(tmp_path: Path, capsys) -> None:
    p = write(tmp_path, "name = 's'\n[sweep]\ngrid = { \"optim.lrr\" = [0.1] }\n")
    rc, out, err = cli_err(["recipe", "validate", str(p)], capsys)
    assert rc == 2 and "ok" not in out
    lines = err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{p}: sweep.grid (") and "optim.lrr: Extra inputs are not permitted" in lines[0]
    rc2, _, err2 = cli_err(["sweep", str(p), "--dry-run", "--runs-root", str(tmp_path / "runs")], capsys)
    assert (rc2, err2) == (2, err)  # the same check, the same words
    p.write_text("name = 's'\n[sweep]\ngrid = { \"data.batch_size\" = [\"big\"] }\n")
    rc, _, err = cli_err(["recipe", "validate", str(p)], capsys)
    assert rc == 2 and "data.batch_size: Input should be a valid integer" in err
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------ where from


def test_an_override_is_blamed_not_the_file(tmp_path: Path) -> None:
    text = "[optim]\nname = 'sgd'\nlr = 0.1\n[schedule]\nmin_lr = 0.001\n"
    assert one_error(tmp_path, text, ["optim.lr=50"]) == "--set optim.lr=50: Input should be less than or equal to 10"
    # a cross-field error comes from the --set that made it, and still names its field
    assert one_error(tmp_path, text, ["optim.lr=0.0001"]) == (
        "--set optim.lr=0.0001: schedule.min_lr: min_lr 0.001 is above the peak optim.lr 0.0001")
    # a problem of the file stays the file's, even with an unrelated --set
    assert one_error(tmp_path, text + "[data]\nworkers = -1\n", ["optim.lr=0.05"]) == (
        'FILE: data.workers: should be a number of worker processes from 0 to 128, or "auto"')
    # switching a union's variant with --set is what makes the file's SGD key unknown
    assert one_error(tmp_path, "[optim]\nname = 'sgd'\nmomentum = 0.8\n", ["optim.name=adam"]) == (
        "--set optim.name=adam: optim.momentum: Extra inputs are not permitted")
    assert one_error(tmp_path, "name = 'a'\n", ["data.mean=[0.1, nan, 0.1]"]) == (
        "--set data.mean=[0.1, nan, 0.1]: data.mean[1]: Input should be a finite number")


@pytest.mark.parametrize("text, shown", [
    ("[data]\n\"\\u001b[31mred\" = 1\n", 'data."\\x1b[31mred"'),
    ("[data]\n\"a\\nb\" = 1\n", 'data."a\\nb"'),
    ("[data]\n\"x\\u2028y\" = 1\n", 'data."x\\u2028y"'),
    ("[data]\n\"q\\\"\" = 1\n", 'data."q\\""'),
])
def test_keys_with_control_characters_are_shown_escaped_on_one_line(tmp_path: Path, text: str, shown: str) -> None:
    line = one_error(tmp_path, text)
    assert line == f"FILE: {shown}: Extra inputs are not permitted"
    assert line.isprintable() and len(str(line).splitlines()) == 1


def test_an_override_key_with_an_escape_sequence_is_shown_escaped(tmp_path: Path) -> None:
    line = one_error(tmp_path, "name = 'a'\n", ["data.\x1b[2Jx=1"])
    assert line == "--set data.\\x1b[2Jx=1: Extra inputs are not permitted"


def test_a_file_name_with_control_characters_is_shown_escaped(tmp_path: Path) -> None:
    p = tmp_path / "bad\x1b[0mname.toml"
    p.write_text("[data]\nworkers = -1\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(p)
    assert str(info.value).isprintable() and "bad\\x1b[0mname.toml: data.workers:" in str(info.value)


@pytest.mark.parametrize("override, line", [
    ("optim.lr", "--set optim.lr: expected KEY=VALUE, e.g. optim.lr=0.01"),
    ("data.mean=[0.5, 0.5", "--set data.mean=[0.5, 0.5: not a TOML value:"),
    ("optim.lr=0.1\nx = 2", "--set optim.lr=0.1\\nx = 2: not one TOML value"),
    ("data.batch_size=" + "[" * 5000, "--set data.batch_size=" + "[" * 5000),
])
def test_broken_overrides_name_the_override(tmp_path: Path, override: str, line: str) -> None:
    got = one_error(tmp_path, "name = 'a'\n", [override])
    assert got.startswith(line) and "FILE" not in got and got.isprintable()


# ------------------------------------------------------------------------------ bad paths


def test_a_fifo_as_the_recipe_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "r.toml"
    os.mkfifo(fifo)
    # a real process: if opening the FIFO blocked, this would hang instead of answering
    proc = subprocess.run([sys.executable, "-m", "fgbench", "recipe", "validate", str(fifo)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert (proc.returncode, proc.stderr) == (2, f"{fifo}: is a FIFO (named pipe), not a recipe file\n")


@pytest.mark.parametrize("make, message", [
    (lambda d: d, "is a directory, not a recipe file"),
    (lambda d: Path("/dev/zero"), "is a character device, not a recipe file"),
    (lambda d: Path("/dev/null"), "is a character device, not a recipe file"),
    (lambda d: _big(d), "2000000 bytes is too large for a recipe (at most 1 MB)"),
    (lambda d: _file(d, b"name = '\xff'\n"), "not UTF-8 text (byte 8): a recipe is a UTF-8 TOML file"),
    (lambda d: _file(d, b"a = " + b"[" * 100000 + b"]" * 100000 + b"\n"),
     "TOML syntax: nested more than 20 tables or arrays deep"),
    (lambda d: _file(d, b"a = " + b"{ b = " * 3000 + b"1" + b" }" * 3000 + b"\n"),
     "TOML syntax: nested more than 20 tables or arrays deep"),
    (lambda d: _file(d, b"a" + b".a" * 30 + b" = 1\n"), "nested more than 20 tables or arrays deep"),
    (lambda d: d / "missing.toml", "file not found"),
    (lambda d: _file(d, b"") / "x.toml", "file not found (a part of the path is not a directory)"),
])
def test_bad_recipe_paths_are_one_line(tmp_path: Path, capsys, make, message: str) -> None:
    path = make(tmp_path)
    rc, out, err = cli_err(["recipe", "validate", str(path)], capsys)
    assert (rc, err) == (2, f"{path}: {message}\n")
    rc, _, err = cli_err(["run", str(path), "--runs-root", str(tmp_path / "runs")], capsys)
    assert (rc, err) == (2, f"{path}: {message}\n")
    assert not (tmp_path / "runs").exists()


def _file(d: Path, data: bytes) -> Path:
    p = d / "f.toml"
    p.write_bytes(data)
    return p


def _big(d: Path) -> Path:
    p = d / "big.toml"
    p.write_bytes(b"#" * 2_000_000)
    return p


def test_run_dir_under_a_regular_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "afile").write_text("x")
    rc, _, err = cli_err(["run", str(REPO / "recipes" / "quickstart.toml"), "--run-dir", str(tmp_path / "afile" / "r")],
                         capsys)
    assert (rc, err) == (2, f"{tmp_path / 'afile' / 'r'}: --run-dir cannot be created: {tmp_path / 'afile'} is not a "
                            "directory\n")
    rc, _, err = cli_err(["run", str(REPO / "recipes" / "quickstart.toml"), "--run-dir", str(tmp_path / "afile")], capsys)
    assert (rc, err) == (2, f"{tmp_path / 'afile'}: --run-dir exists and is not a directory\n")
    assert sorted(os.listdir(tmp_path)) == ["afile"]


def test_runs_root_that_is_a_file(tmp_path: Path, capsys, monkeypatch) -> None:
    f = tmp_path / "rootfile"
    f.write_text("x")
    rc, _, err = cli_err(["run", str(REPO / "recipes" / "quickstart.toml"), "--runs-root", str(f)], capsys)
    assert (rc, err) == (2, f"{f}: --runs-root exists and is not a directory\n")
    monkeypatch.setenv("FGBENCH_RUNS", str(f))  # the default runs directory is checked as well
    rc, _, err = cli_err(["run", str(REPO / "recipes" / "quickstart.toml")], capsys)
    assert rc == 2 and err.startswith(f"{f}: the runs directory") and err.count("\n") == 1
    assert f.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a 0555 directory")
def test_unwritable_runs_root(tmp_path: Path, capsys) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        rc, _, err = cli_err(["run", str(REPO / "recipes" / "quickstart.toml"), "--runs-root", str(ro)], capsys)
        assert (rc, err) == (2, f"{ro}: --runs-root: permission denied (cannot write in this directory)\n")
        rc, _, err = cli_err(["run", str(REPO / "recipes" / "quickstart.toml"), "--runs-root", str(ro / "sub")], capsys)
        assert (rc, err) == (2, f"{ro / 'sub'}: --runs-root: permission denied (cannot write in this directory)\n")
    finally:
        ro.chmod(stat.S_IRWXU)
    assert os.listdir(ro) == []


def test_recipe_new_refuses_a_path_as_a_name(tmp_path: Path, capsys) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    for name in ("../../x", "../x", "sub/x", ".hidden", "x\x1b"):
        rc, _, err = cli_err(["recipe", "new", name, "--dir", str(work)], capsys)
        assert rc == 2 and "not a recipe name" in err and err.count("\n") == 1 and err[:-1].isprintable()
    (tmp_path / "adir.toml").mkdir()
    rc, _, err = cli_err(["recipe", "new", str(tmp_path / "adir.toml"), "--force"], capsys)
    assert (rc, err) == (2, f"{tmp_path / 'adir.toml'}: is a directory\n")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["a", "a/b", "adir.toml"]


# ------------------------------------------------------------------------------ settings


@pytest.mark.parametrize("url, why", [
    ("http://", "has no host name"),
    ("https:///CUB.tgz", "has no host name"),
    ("https://exa mple.org/x.tgz", "a URL may not contain spaces or control characters"),
    ("https://m.example:99999/x.tgz", "is not a valid URL (Port out of range 0-65535)"),
    ("file://", "has no path"),
    ("ftp://x", "is not an http(s):// or file:// URL"),
])
def test_bad_mirror_urls_are_user_errors(fgbench_home: Path, url: str, why: str) -> None:
    (fgbench_home / "settings.toml").write_text(f'[mirrors]\ncub200 = "{url}"\n')
    with pytest.raises(UserError) as info:
        settings.mirror_for("cub200")
    assert str(info.value) == f"{fgbench_home / 'settings.toml'}: mirrors.cub200: {url!r} {why}".replace(
        f"{url!r} a URL", f"{url!r}: a URL")


def test_bad_settings_files_are_one_line_and_never_hang(fgbench_home: Path, capsys) -> None:
    f = fgbench_home / "settings.toml"
    os.mkfifo(f)
    with pytest.raises(UserError, match=r"settings.toml: is a FIFO \(named pipe\), not a settings file$"):
        settings.load_settings()
    f.unlink()
    f.mkdir()
    with pytest.raises(UserError, match=r"settings.toml: is a directory, not a settings file$"):
        settings.load_settings()
    f.rmdir()
    f.write_text("[mirrors]\ncub200 = " + "[" * 3000 + "\n")
    with pytest.raises(UserError, match="not valid TOML"):
        settings.load_settings()
    f.write_text("[mirrors]\ncub200 = 'ftp://x'\n")
    rc, _, err = cli_err(["data", "download", "cub200"], capsys)
    assert rc == 2 and "mirrors.cub200: 'ftp://x' is not an http(s):// or file:// URL" in err and err.count("\n") == 1


# ------------------------------------------------------------------------------ one writer


def test_the_tui_and_the_cli_write_recipes_with_one_writer() -> None:
    from fgbench.tui import form

    r = validate_recipe({"name": "w", "description": "line one\nline two", "optim": {"name": "adam"},
                         "model": {"pretrained": {"source": "torchvision"}}})
    assert form.full_toml(r) == dumps_recipe(r, full=True)
    assert form.recipe_toml(r) == dumps_recipe(r, full=False)
    text = form.recipe_toml(r)
    assert 'description = """line one\nline two"""' in text  # a multi-line description stays readable
    back = tomllib.loads(text)
    # the tag of every union that differs from the default is written, first in its table
    assert list(back["optim"]) == ["name"] and back["model"]["pretrained"] == {"source": "torchvision"}
    assert validate_recipe(back) == r


def test_union_sections_come_from_the_schema() -> None:
    from fgbench import recipe as R

    # the three unions the recipe declares today, found by walking the models (not a list)
    assert R.UNION_SECTIONS == ("model.pretrained", "optim", "schedule")
    assert R.union_tag_field("model.pretrained") == "source" and R.union_tag_field("optim") == "name"
    assert set(R.union_variants("schedule")) == {"cosine", "multistep", "linear", "constant"}
    assert Recipe.model_fields["optim"].annotation is not None


def test_run_rejects_a_bad_recipe_before_importing_torch(tmp_path: Path) -> None:
    bad = write(tmp_path, "[optim]\nlr = \"0.05\"\n")
    code = ("import sys\nfrom fgbench.cli import main\n"
            f"rc = main(['run', {str(bad)!r}, '--runs-root', {str(tmp_path / 'runs')!r}])\n"
            "print(rc, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.stdout.split() == ["2", "False"], proc.stderr
    assert proc.stderr == f"{bad}: optim.lr: Input should be a valid number\n"
    assert not (tmp_path / "runs").exists()


def test_fgbench_sweep_blames_a_bad_set_on_the_override(tmp_path: Path, capsys) -> None:
    rc, _, err = cli_err(["sweep", str(REPO / "recipes" / "sweep_sc_ema.toml"), "--dry-run", "--set", "optim.lr=50",
                          "--runs-root", str(tmp_path / "runs")], capsys)
    assert (rc, err) == (2, "--set optim.lr=50: Input should be less than or equal to 10\n")
    assert not (tmp_path / "runs").exists()


def test_a_broken_grid_value_is_one_line(tmp_path: Path, capsys) -> None:
    # parse_override_value refuses text that starts like TOML but is not; --grid says so, no traceback
    rc, _, err = cli_err(["sweep", str(REPO / "recipes" / "sweep_sc_ema.toml"), "--dry-run", "--grid", "data.mean=[0.1,",
                          "--runs-root", str(tmp_path / "runs")], capsys)
    assert rc == 2 and err.startswith("--grid data.mean=[0.1,: not a TOML value") and err.count("\n") == 1


def test_a_broken_where_value_is_one_line(tmp_path: Path, capsys) -> None:
    rc, _, err = cli_err(["runs", "list", "--runs-root", str(tmp_path), "--where", "data.mean=[0.1,"], capsys)
    assert rc == 2 and err.startswith("--where data.mean=[0.1,: not a TOML value") and err.count("\n") == 1

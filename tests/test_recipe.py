"""The recipe schema as a user meets it: errors, bounds, overrides, save/load and `fgbench recipe`."""

from __future__ import annotations

from pathlib import Path

import pytest

from fgbench import cli
from fgbench.recipe import (
    AdamConfig,
    AdamWConfig,
    CosineSchedule,
    FileWeights,
    ModelConfig,
    MultiStepSchedule,
    Recipe,
    RecipeError,
    SGDConfig,
    StageConfig,
    TorchvisionWeights,
    apply_overrides,
    load_recipe,
    parse_override_value,
    recipe_to_dict,
    save_recipe,
    validate_recipe,
)
from fgbench.tomlread import tomllib

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "r.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def errors_of(tmp_path: Path, text: str, overrides: list[str] | None = None) -> list[str]:
    p = write(tmp_path, text)
    with pytest.raises(RecipeError) as info:
        load_recipe(p, overrides)
    lines = str(info.value).splitlines()
    assert lines == info.value.lines
    for line in lines:
        assert line.startswith(f"{p}: "), line
    return [line.removeprefix(f"{p}: ") for line in lines]


def override_errors_of(tmp_path: Path, text: str, overrides: list[str]) -> list[str]:
    """The lines of a recipe whose problems all come from its ``--set`` overrides: they name the
    override, not the file."""
    p = write(tmp_path, text)
    with pytest.raises(RecipeError) as info:
        load_recipe(p, overrides)
    for line in info.value.lines:
        assert line.startswith("--set ") and str(p) not in line, line
    return info.value.lines


# ------------------------------------------------------------------------------ unknown keys


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[optim]\nname = 'sgd'\nmomentom = 0.9\n", "optim.momentom: Extra inputs are not permitted"),
        ("[optimizer]\nlr = 0.1\n", "optimizer: Extra inputs are not permitted"),
        ("[data]\nbatchsize = 32\n", "data.batchsize: Extra inputs are not permitted"),
        ("[model.pretrained]\nsource = 'torchvision'\nweight = 'V1'\n",
         "model.pretrained.weight: Extra inputs are not permitted"),
        ("[[stages]]\nepochs = 3\nlr_max = 0.1\n", "stages[0].lr_max: Extra inputs are not permitted"),
        ("learning_rate = 0.1\n", "learning_rate: Extra inputs are not permitted"),
    ],
)
def test_unknown_keys_are_errors_naming_the_path(tmp_path: Path, text: str, expected: str) -> None:
    assert errors_of(tmp_path, text) == [expected]


def test_a_key_of_another_variant_is_an_unknown_key(tmp_path: Path) -> None:
    # momentum belongs to SGD; the location is the user's path, without pydantic's union tag
    assert errors_of(tmp_path, "[optim]\nname = 'adam'\nmomentum = 0.9\n") == [
        "optim.momentum: Extra inputs are not permitted"
    ]


def test_every_problem_is_reported_one_line_each(tmp_path: Path) -> None:
    lines = errors_of(tmp_path, "[data]\ntrain_size = 4\nworkers = -1\n[optim]\nname = 'sgd'\nlr = 0\n")
    assert sorted(lines) == sorted([
        "data.train_size: Input should be greater than or equal to 8",
        'data.workers: should be a number of worker processes from 0 to 128, or "auto"',
        "optim.lr: Input should be greater than 0",
    ])


# ------------------------------------------------------------------------------------ unions


def test_unknown_union_tag_lists_the_choices(tmp_path: Path) -> None:
    (line,) = errors_of(tmp_path, "[optim]\nname = 'lamb'\n")
    assert line.startswith("optim.name: ")  # the field that holds the tag, not the section
    assert "'lamb'" in line and all(f"'{t}'" in line for t in ("sgd", "adam", "adamw", "radam"))


def test_union_section_without_its_tag_takes_the_first_variant(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, "[schedule]\nepochs = 3\n"))
    assert r.schedule.name == "cosine" and r.schedule.epochs == 3


def test_union_variant_missing_a_required_key(tmp_path: Path) -> None:
    assert errors_of(tmp_path, "[model.pretrained]\nsource = 'moco'\n") == ["model.pretrained.path: Field required"]


def test_union_variants_parse_to_their_classes(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, "[optim]\nname = 'adamw'\nlr = 3e-4\nbetas = [0.9, 0.95]\n"
                                    "[schedule]\nname = 'multistep'\nepochs = 9\nmilestones = [3, 6]\n"
                                    "[model.pretrained]\nsource = 'file'\npath = 'w.pt'\nkey = 'model'\n"))
    assert isinstance(r.optim, AdamWConfig) and r.optim.betas == (0.9, 0.95)
    assert isinstance(r.schedule, MultiStepSchedule) and r.schedule.milestones == [3, 6]
    assert isinstance(r.model.pretrained, FileWeights) and r.model.pretrained.key == "model"
    # defaults: SGD, cosine, no pretrained weights
    d = Recipe()
    assert isinstance(d.optim, SGDConfig) and isinstance(d.schedule, CosineSchedule)
    assert d.model.pretrained.source == "none"


# ----------------------------------------------------------------------------------- bounds


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[data]\ntrain_size = 4096\n", "data.train_size: Input should be less than or equal to 2048"),
        ("[data]\nval_fraction = 1.0\n", "data.val_fraction: Input should be less than 1"),
        ("[optim]\nname = 'sgd'\nmomentum = 1.0\n", "optim.momentum: Input should be less than 1"),
        ("[optim]\nname = 'sgd'\nlr = -0.1\n", "optim.lr: Input should be greater than 0"),
        ("[ema]\ndecay = 1.0\n", "ema.decay: Input should be less than 1"),
        ("[loss]\nlabel_smoothing = 1.0\n", "loss.label_smoothing: Input should be less than 1"),
        ("[augment]\nmix_prob = 1.5\n", "augment.mix_prob: Input should be less than or equal to 1"),
        ("[[stages]]\nepochs = 0\n", "stages[0].epochs: Input should be greater than or equal to 1"),
        ("[[stages]]\nname = 'x'\n", "stages[0].epochs: Field required"),
        ("name = 'has space'\n", "name: String should match pattern '^[A-Za-z0-9_.+-]+$'"),
        ("[data]\ntrain_size = 'big'\n",
         "data.train_size: Input should be a valid integer"),
        ("[data]\ndataset = 'imagenet'\n", None),
    ],
)
def test_bounds(tmp_path: Path, text: str, expected: str | None) -> None:
    lines = errors_of(tmp_path, text)
    assert len(lines) == 1
    if expected is None:  # a Literal: the message lists the allowed values
        assert lines[0].startswith("data.dataset: Input should be ") and "'cub200'" in lines[0]
    else:
        assert lines == [expected]


def test_values_on_the_bounds_are_accepted(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, "[data]\ntrain_size = 8\ntest_size = 2048\nval_fraction = 0.0\nworkers = 0\n"
                                    "[eval]\nselect_on = 'last'\n[optim]\nname = 'sgd'\nlr = 10\nmomentum = 0\n"))
    assert (r.data.train_size, r.data.test_size, r.optim.lr, r.optim.momentum) == (8, 2048, 10, 0)


# ------------------------------------------------------------------------------- validators


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[data]\ndataset = 'folder'\n", "data.root: dataset 'folder' needs data.root"),
        ("[data]\ncrop_scale = [0.5, 0.2]\n", "data.crop_scale: crop_scale must satisfy 0 < low <= high <= 1"),
        ("[data]\ntrain_crop = 'resize_crop'\n", "data.train_resize: train_crop 'resize_crop' needs data.train_resize"),
        ("[data]\ntest_crop = 'fixed'\n", "data.test_resize: test_crop 'fixed' needs data.test_resize"),
        ("[data]\nnormalize = 'explicit'\nmean = [0.5, 0.5, 0.5]\n", "data.std: normalize 'explicit' needs data.mean and data.std"),
        ("[data]\nnormalize = 'explicit'\nmean = [0.5, 0.5, 0.5]\nstd = [0.2, 0, 0.2]\n", "data.std[1]: std values must be positive"),
        ("[augment]\nrandaugment_ops = 2\ntrivialaugment = true\n", "augment.trivialaugment: choose RandAugment or TrivialAugment"),
        ("[augment]\nrandaugment_ops = 2\nrandaugment_magnitude = 10\nrandaugment_bins = 10\n",
         "augment.randaugment_magnitude: randaugment_magnitude must be below randaugment_bins"),
        ("[schedule]\nname = 'multistep'\nepochs = 100\nmilestones = [60, 30]\n",
         "schedule.milestones[1]: milestones must be strictly increasing"),
        ("[schedule]\nname = 'multistep'\nepochs = 50\nmilestones = [30, 60]\n",
         "schedule.milestones[1]: milestone 60 lies beyond the run (epochs = 50)"),
        ("[data]\nval_fraction = 0\n", "eval.select_on: eval.select_on is 'val' but data.val_fraction is 0"),
    ],
)
def test_cross_field_validators(tmp_path: Path, text: str, expected: str) -> None:
    (line,) = errors_of(tmp_path, text)
    assert line.startswith(expected), line


def test_validators_only_check_they_never_fill_in(tmp_path: Path) -> None:
    # What `recipe show` prints is what was written plus declared defaults: nothing derived.
    r = load_recipe(write(tmp_path, "[data]\ndataset = 'cifar10'\ntest_crop = 'none'\n"))
    assert r.data.test_resize is None and r.data.train_resize is None and r.data.eval_batch_size is None
    assert r.model.num_classes is None


# -------------------------------------------------------------------------------- overrides


@pytest.mark.parametrize(
    "raw, value",
    [("0.01", 0.01), ("3", 3), ("true", True), ("[224, 448]", [224, 448]), ('"adamw"', "adamw"),
     ("adamw", "adamw"), ("1e-4", 1e-4), ("{a = 1}", {"a": 1}), ("IMAGENET1K_V2", "IMAGENET1K_V2")],
)
def test_override_values_are_toml_or_bare_strings(raw: str, value: object) -> None:
    assert parse_override_value(raw) == value


def test_overrides_apply_and_validate_like_the_file(tmp_path: Path) -> None:
    p = write(tmp_path, "[optim]\nname = 'sgd'\nlr = 0.1\n")
    r = load_recipe(p, ["optim.lr=0.01", "eval.final_test_sizes=[224,448]", "ema.enabled=true", "data.dataset=cifar10"])
    assert r.optim.lr == 0.01 and r.eval.final_test_sizes == [224, 448] and r.ema.enabled
    assert r.data.dataset == "cifar10"
    # switching variant through --set: the new variant's own keys are checked
    r = load_recipe(p, ["optim.name=adam", "optim.lr=1e-4"])
    assert isinstance(r.optim, AdamConfig) and r.optim.lr == 1e-4
    # the file on disk is untouched
    assert load_recipe(p).optim.lr == 0.1


def test_overrides_do_not_mutate_their_input() -> None:
    data = {"optim": {"name": "sgd", "lr": 0.1}}
    out = apply_overrides(data, ["optim.lr=0.5", "data.batch_size=8"])
    assert data == {"optim": {"name": "sgd", "lr": 0.1}}
    assert out == {"optim": {"name": "sgd", "lr": 0.5}, "data": {"batch_size": 8}}


@pytest.mark.parametrize(
    "override, expected",
    [
        ("optim.lr", "--set optim.lr: expected KEY=VALUE"),
        ("optim..lr=1", "--set optim..lr=1: empty key part"),
        ("name.x=1", "--set name.x=1: name: is not a table, so it has no key 'x'"),
    ],
)
def test_override_syntax_errors(tmp_path: Path, override: str, expected: str) -> None:
    (line,) = override_errors_of(tmp_path, "name = 'a'\n", [override])
    assert line.startswith(expected), line


def test_override_values_are_validated(tmp_path: Path) -> None:
    text = "[optim]\nname = 'sgd'\n"
    assert override_errors_of(tmp_path, text, ["optim.lr=-1"]) == ["--set optim.lr=-1: Input should be greater than 0"]
    assert override_errors_of(tmp_path, text, ["optim.momentom=0.8"]) == [
        "--set optim.momentom=0.8: Extra inputs are not permitted"]


def test_override_of_a_union_key_on_a_recipe_without_that_section(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, "name = 'plain'\n"), ["optim.lr=0.01", "schedule.epochs=3"])
    assert isinstance(r.optim, SGDConfig) and r.optim.lr == 0.01 and r.schedule.epochs == 3


# ------------------------------------------------------------------------------- save / load


def _rich_recipe() -> Recipe:
    return Recipe(
        name="rich",
        description='quotes " and \\ and\nnewlines, unicode: élan',
        optim=AdamWConfig(lr=3e-4, betas=(0.9, 0.95), weight_decay=0.05, no_decay_norm_bias=True, grad_clip=1.0),
        schedule=MultiStepSchedule(epochs=12, milestones=[4, 8], gamma=0.5, warmup_epochs=0.5),
        model=ModelConfig(arch="resnet50", pretrained=TorchvisionWeights(weights="IMAGENET1K_V2"), dropout=0.2),
        stages=[StageConfig(name="s2", epochs=3, train_size=448, init_from="best_ema", trainable="bn_fc")],
    )


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize(
    "recipe",
    [Recipe(), _rich_recipe(), Recipe(optim=AdamConfig()), Recipe(optim=SGDConfig(lr=0.3)),
     Recipe(schedule=MultiStepSchedule(epochs=100)), Recipe(model=ModelConfig(pretrained=TorchvisionWeights()))],
    ids=["default", "rich", "adam-defaults", "sgd-lr", "multistep-defaults", "torchvision-defaults"],
)
def test_save_load_round_trip_is_exact(tmp_path: Path, recipe: Recipe, full: bool) -> None:
    p = tmp_path / "out.toml"
    save_recipe(recipe, p, full=full)
    back = load_recipe(p)
    assert back == recipe
    assert back.model_dump() == recipe.model_dump()
    # and stable: saving what was loaded writes the same bytes
    p2 = tmp_path / "out2.toml"
    save_recipe(back, p2, full=full)
    assert p2.read_bytes() == p.read_bytes()


def test_every_project_recipe_round_trips(tmp_path: Path) -> None:
    files = sorted((REPO / "recipes").glob("*.toml"))
    assert files
    for f in files:
        r = load_recipe(f)
        for full in (False, True):
            out = tmp_path / f"{f.stem}-{full}.toml"
            save_recipe(r, out, full=full)
            assert load_recipe(out) == r, (f.name, full)


def test_full_dump_spells_out_every_default_and_drops_none() -> None:
    d = recipe_to_dict(Recipe(), full=True)
    assert d["optim"]["name"] == "sgd" and d["optim"]["momentum"] == 0.9
    assert d["schedule"]["name"] == "cosine" and "min_lr" in d["schedule"]
    assert "root" not in d["data"] and "eval_batch_size" not in d["data"]  # None is absent: TOML has no null
    assert recipe_to_dict(Recipe(), full=False) == {}


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "r.toml"
    p.write_text("name = 'old'\n")
    import os

    def boom(*a: object, **k: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        save_recipe(Recipe(name="new"), p)
    monkeypatch.undo()
    assert p.read_text() == "name = 'old'\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r.toml"]


def test_toml_syntax_error_is_one_line_with_position(tmp_path: Path) -> None:
    (line,) = errors_of(tmp_path, "[data]\nbatch_size = = 3\n")
    assert line.startswith("TOML syntax: ") and "line 2" in line


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(tmp_path / "nope.toml")
    assert str(info.value) == f"{tmp_path / 'nope.toml'}: file not found"
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"name = '\xff\xfe'\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(bad)
    assert str(info.value).startswith(f"{bad}: not UTF-8 text") and "\n" not in str(info.value)


def test_validate_recipe_names_its_source() -> None:
    with pytest.raises(RecipeError) as info:
        validate_recipe({"data": {"batch_size": 0}}, "from-the-tui")
    assert str(info.value) == "from-the-tui: data.batch_size: Input should be greater than or equal to 1"


# --------------------------------------------------------------------------- fgbench recipe


def test_cli_validate_ok_and_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "name = 'g'\n", "good.toml")
    bad = write(tmp_path, "[optim]\nname = 'sgd'\nmomentom = 1\n", "bad.toml")
    assert cli.main(["recipe", "validate", str(good)]) == 0
    out = capsys.readouterr()
    assert out.out == f"{good}: ok\n" and out.err == ""

    assert cli.main(["recipe", "validate", str(good), str(bad)]) == 2
    out = capsys.readouterr()
    assert out.out == f"{good}: ok\n"
    assert out.err == f"{bad}: optim.momentom: Extra inputs are not permitted\n"
    assert "Traceback" not in out.err


def test_cli_validate_with_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "name = 'g'\n[optim]\nname = 'sgd'\n", "good.toml")
    assert cli.main(["recipe", "validate", str(good), "--set", "optim.lr=5"]) == 0
    assert cli.main(["recipe", "validate", str(good), "--set", "optim.lr=50"]) == 2
    assert capsys.readouterr().err.strip() == "--set optim.lr=50: Input should be less than or equal to 10"


def test_cli_validate_all_project_recipes(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(f) for f in sorted((REPO / "recipes").glob("*.toml"))]
    assert cli.main(["recipe", "validate", *files]) == 0
    assert capsys.readouterr().out.count(": ok\n") == len(files)


def test_cli_show_prints_the_resolved_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, "name = 's'\n[optim]\nname = 'adam'\n")
    assert cli.main(["recipe", "show", str(p), "--set", "optim.lr=2e-4"]) == 0
    shown = tomllib.loads(capsys.readouterr().out)
    expected = {"name": "adam", "lr": 2e-4, "weight_decay": 5e-4, "no_decay_norm_bias": False,
                "betas": [0.9, 0.999], "eps": 1e-8}
    assert {k: shown["optim"].get(k) for k in expected} == expected  # every default spelled out
    assert shown == recipe_to_dict(load_recipe(p, ["optim.lr=2e-4"]), full=True)
    assert shown["schedule"]["name"] == "cosine" and shown["data"]["batch_size"] == 64
    assert validate_recipe(shown) == load_recipe(p, ["optim.lr=2e-4"])


def test_cli_show_bad_recipe_exits_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, "[data\n")
    assert cli.main(["recipe", "show", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{p}: TOML syntax: ") and err.count("\n") == 1


def test_cli_new_writes_defaults_and_copies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["recipe", "new", "fresh", "--dir", str(tmp_path)]) == 0
    fresh = tmp_path / "fresh.toml"
    assert capsys.readouterr().out.strip() == str(fresh)
    assert load_recipe(fresh) == Recipe(name="fresh")

    src = REPO / "recipes" / "hy_intel_bwcs_r.toml"
    assert cli.main(["recipe", "new", "mine", "--from", str(src), "--dir", str(tmp_path)]) == 0
    copy = load_recipe(tmp_path / "mine.toml")
    assert copy.name == "mine"
    assert copy.model_copy(update={"name": "hy_intel_bwcs_r"}) == load_recipe(src)

    # to the user recipe directory by default (FGBENCH_HOME is a temporary dir in tests)
    assert cli.main(["recipe", "new", "home-one"]) == 0
    assert Path(capsys.readouterr().out.strip()).parent.parent.name.startswith("fgbench-home")


def test_cli_new_refuses_to_overwrite_and_bad_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "x.toml"
    target.write_text("name = 'x'\n")
    assert cli.main(["recipe", "new", str(target)]) == 2
    assert capsys.readouterr().err.strip() == f"{target}: already exists (use --force to overwrite)"
    assert target.read_text() == "name = 'x'\n"
    assert cli.main(["recipe", "new", str(target), "--force"]) == 0
    assert load_recipe(target).name == "x"
    assert cli.main(["recipe", "new", "y", "--from", str(tmp_path / "missing.toml"), "--dir", str(tmp_path)]) == 2
    assert not (tmp_path / "y.toml").exists()
    assert "file not found" in capsys.readouterr().err
    assert cli.main(["recipe", "new", "!!!", "--dir", str(tmp_path)]) == 2
    assert "not a recipe name" in capsys.readouterr().err
    assert cli.main(["recipe", "new", "!!!.toml", "--dir", str(tmp_path)]) == 2  # a path whose stem is no name
    assert "not a usable recipe name" in capsys.readouterr().err


def test_cli_recipe_without_action_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["recipe"]) == 2
    assert "validate" in capsys.readouterr().out  # the group's help says what to type


def test_saved_files_get_the_usual_permissions(tmp_path: Path) -> None:
    import os

    from fgbench.recipe import atomic_write_text

    target = tmp_path / "x.toml"
    old = os.umask(0o022)
    try:
        atomic_write_text(target, "a = 1\n")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o644

"""The first hour of a new user (issue 22): what the CLI answers before it does anything costly.

Each test starts the real entry point in a fresh interpreter, so what it proves about
``sys.modules`` (no torch before the answer) and about the disk (nothing written) is what a user
running the command would see.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _probe(argv: list[str], home: Path) -> tuple[int, bool, str]:
    """Run ``fgbench ARGV`` in a fresh interpreter: (exit code, torch imported?, stderr)."""
    code = ("import json, sys\nfrom fgbench.cli import main\n"
            f"rc = main({argv!r})\n"
            "print(json.dumps([rc, 'torch' in sys.modules]))")
    env = {**os.environ, "PYTHONPATH": str(REPO), "FGBENCH_HOME": str(home)}
    env.pop("FGBENCH_DATA", None)
    env.pop("FGBENCH_RUNS", None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    rc, torch_loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    return rc, torch_loaded, proc.stderr


def _recipe(tmp_path: Path, dataset: str, extra: str = "") -> Path:
    path = tmp_path / "r.toml"
    path.write_text(f'name = "r"\n[data]\ndataset = "{dataset}"\n{extra}', encoding="utf-8")
    return path


def test_run_answers_a_missing_dataset_before_importing_torch(tmp_path: Path) -> None:
    home = tmp_path / "home"
    recipe = _recipe(tmp_path, "cub200")
    rc, torch_loaded, err = _probe(["run", str(recipe)], home)
    assert (rc, torch_loaded) == (2, False), err
    loc = home / "datasets" / "cub200"
    assert err == (f"{recipe}: data.dataset: cub200 is not downloaded ({loc}): "
                   "run `fgbench data download cub200`\n")
    assert not home.exists() or not any(home.rglob("*")), "nothing is written"


def test_run_names_a_partly_downloaded_dataset(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "datasets" / "cifar10").mkdir(parents=True)
    (home / "datasets" / "cifar10" / "cifar-10-python.tar.gz.part").write_bytes(b"x")
    recipe = _recipe(tmp_path, "cifar10")
    rc, torch_loaded, err = _probe(["run", str(recipe)], home)
    assert (rc, torch_loaded) == (2, False), err
    assert "data.dataset: cifar10 was only partly downloaded or prepared" in err
    assert err.rstrip().endswith("run `fgbench data download cifar10`")
    assert not (home / "runs").exists()


def test_run_names_a_folder_dataset_without_its_folders(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (tmp_path / "mine" / "train").mkdir(parents=True)  # no test/ nor val/
    recipe = _recipe(tmp_path, "folder", f'root = "{tmp_path / "mine"}"\n')
    rc, torch_loaded, err = _probe(["run", str(recipe)], home)
    assert (rc, torch_loaded) == (2, False), err
    assert err.startswith(f"{recipe}: data.root: {tmp_path / 'mine'} has no train/ folder beside test/ or val/")
    assert not (home / "runs").exists()


def test_resume_answers_a_missing_dataset_before_importing_torch(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "recipe.toml").write_text('name = "r"\n[data]\ndataset = "stanford_cars"\n', encoding="utf-8")
    before = sorted(p.name for p in run_dir.iterdir())
    rc, torch_loaded, err = _probe(["run", "--resume", str(run_dir)], home)
    assert (rc, torch_loaded) == (2, False), err
    assert err.startswith(f"{run_dir / 'recipe.toml'}: data.dataset: stanford_cars is not downloaded")
    assert sorted(p.name for p in run_dir.iterdir()) == before


def _fgbench(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(REPO), "FGBENCH_HOME": str(home), **env}
    for key in ("FGBENCH_DATA", "FGBENCH_RUNS", "COLUMNS"):
        if key not in env:
            full.pop(key, None)
    return subprocess.run([sys.executable, "-m", "fgbench", *args], capture_output=True, text=True, env=full,
                          timeout=300)


def test_data_list_fits_80_columns_and_says_where_the_paths_are(tmp_path: Path) -> None:
    home = tmp_path / "a-rather-long-home-directory-name" / "fgbench"
    proc = _fgbench(["data", "list"], home, COLUMNS="80")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines[:-1]) <= 80, lines  # the table; then where it is, whole
    row = next(line for line in lines if line.startswith("cub200 "))
    assert row.split()[-1] == "cub200"
    assert lines[-1] == f"PATH is under {home / 'datasets'}"
    # to a pipe without COLUMNS nothing is cut: the full path, for scripts
    piped = _fgbench(["data", "list"], home)
    row = next(line for line in piped.stdout.splitlines() if line.startswith("cub200 "))
    assert row.split()[-1] == str(home / "datasets" / "cub200")


def test_bash_completion_completes_commands_and_options(tmp_path: Path) -> None:
    import shutil

    proc = _fgbench(["completion", "bash"], tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    script = tmp_path / "fgbench.bash"
    script.write_text(proc.stdout)
    bash = shutil.which("bash")
    assert bash is not None
    probe = (f"source {script}\n"
             "complete_words() { COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); COMP_LINE=\"$*\"; "
             "COMP_POINT=${#COMP_LINE}; COMPREPLY=(); _shtab_fgbench; echo \"${COMPREPLY[*]}\"; }\n"
             "complete_words fgbench ru\n"
             "complete_words fgbench run --prog\n"
             "complete_words fgbench completion f\n")
    out = subprocess.run([bash, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines() == ["run runs", "--progress", "fish"], out


def test_zsh_and_fish_completion_scripts_name_every_command(tmp_path: Path) -> None:
    for shell in ("zsh", "fish"):
        proc = _fgbench(["completion", shell], tmp_path / "home")
        assert proc.returncode == 0, proc.stderr
        for command in ("run", "runs", "data", "recipe", "sweep", "completion"):
            assert command in proc.stdout
    bad = _fgbench(["completion", "csh"], tmp_path / "home")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def _settings_probe(tmp_path: Path) -> tuple[str, str]:
    """(the settings file fgbench reads, what it said on stderr), without FGBENCH_HOME, with the XDG
    directories of a fresh user under ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if k not in ("FGBENCH_HOME", "FGBENCH_DATA", "FGBENCH_RUNS")}
    env.update(PYTHONPATH=str(REPO), HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_DATA_HOME=str(tmp_path / "data"))
    code = ("from fgbench import paths, settings\n"
            "for _ in range(3):\n    settings.load_settings()\n"
            "print(paths.settings_file())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip(), proc.stderr


def test_settings_live_in_the_user_config_directory(tmp_path: Path) -> None:
    new = tmp_path / "config" / "fgbench" / "settings.toml"
    where, said = _settings_probe(tmp_path)
    assert (where, said) == (str(new), "")


def test_settings_in_the_old_place_are_still_read_and_said_once(tmp_path: Path) -> None:
    old = tmp_path / "data" / "fgbench" / "settings.toml"
    new = tmp_path / "config" / "fgbench" / "settings.toml"
    old.parent.mkdir(parents=True)
    old.write_text('[mirrors]\ncub200 = "https://m.example/CUB.tgz"\n')
    where, said = _settings_probe(tmp_path)
    assert where == str(old)
    assert said.count("\n") == 1 and said.count(str(old)) == 2 and str(new) in said, said
    # once moved, the new place is read and nothing is said
    new.parent.mkdir(parents=True)
    old.rename(new)
    assert _settings_probe(tmp_path) == (str(new), "")


def test_recipe_show_writes_toml_as_a_person_does(tmp_path: Path) -> None:
    proc = _fgbench(["recipe", "show", str(REPO / "recipes" / "quickstart.toml")], tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert '(data.loader = "device")."""' in out and '\\"' not in out  # quotes as written
    assert "crop_scale = [0.08, 1.0]\n" in out  # a list on one line
    from fgbench.tomlread import tomllib

    from fgbench.recipe import load_recipe, validate_recipe

    assert validate_recipe(tomllib.loads(out)) == load_recipe(REPO / "recipes" / "quickstart.toml")


def test_every_description_survives_the_writer() -> None:
    from fgbench.tomlread import tomllib

    from hypothesis import given, settings, strategies as st

    from fgbench.recipe import dumps_recipe, validate_recipe

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet=st.sampled_from(['a', '"', "'", "\\", "\n", "\r", "\t", "é", "\x7f", "\u2028", " "]),
                   min_size=1, max_size=20))
    def roundtrip(text: str) -> None:
        recipe = validate_recipe({"name": "q", "description": text, "stages": [{"epochs": 1}]})
        for full in (True, False):
            assert validate_recipe(tomllib.loads(dumps_recipe(recipe, full=full))) == recipe

    roundtrip()


def test_the_readme_quotes_the_quickstart_as_benchmarks_recorded_it() -> None:
    """The README's quickstart figures are those of the transcript BENCHMARKS.md records (the
    numbers were measured once, there); the recipe's own description claims no other time."""
    import re
    from fgbench.tomlread import tomllib

    bench = (REPO / "BENCHMARKS.md").read_text(encoding="utf-8")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    finished = re.search(r"finished \S+-quickstart: (\d+) epochs, \d+ steps, (\d+)s\n"
                         r"\s+raw: best epoch (\d+) \(chosen on validation\): val ([\d.]+)%, test ([\d.]+)%.*\n"
                         r"\s+ema: best epoch (\d+) \(chosen on validation\): val [\d.]+%, test ([\d.]+)%.*\n"
                         r"\s+raw: last epoch \d+: test ([\d.]+)%", bench)
    assert finished, "BENCHMARKS.md records the quickstart's transcript"
    epochs, seconds, best, val, test, ema_best, ema_test, last = finished.groups()
    shell = re.search(r"Wall clock from the shell: ([\d.]+) s", bench)
    assert shell
    para = readme[readme.index("The quickstart trains a small"):]
    para = " ".join(para[:para.index("\n\n")].split())
    assert f"best on validation at epoch {best} (val {val} %)" in para, para
    assert f"test top-1 {test} % at that epoch" in para, para
    assert f"{last} % at the last epoch" in para, para
    assert f"(EMA: best at epoch {ema_best}, test {ema_test} %)" in para, para
    assert f"{seconds} s of training, {round(float(shell.group(1)))} s from the shell" in para, para
    recipe = tomllib.loads((REPO / "recipes" / "quickstart.toml").read_text(encoding="utf-8"))
    assert int(epochs) == recipe["schedule"]["epochs"]
    assert "minute" not in recipe["description"] or "under a minute" in recipe["description"]
    assert int(seconds) < 60


def test_names_cut_together_keep_what_tells_them_apart() -> None:
    from fgbench.report import cut_apart, cut_middle

    assert cut_middle("ez_cifar100_resnet18_ms1", 12) == "ez_ci…18_ms1"  # 5 + … + 6: the end gets the extra one
    names = ["hy_intel_en_wc_cm_r", "hy_intel_rn_wc_cm_r", "hy_intel_en_awc_cm", "short"]
    # cut alone in the middle, the first two read the same: the en / rn that tells them apart is cut
    assert cut_middle(names[0], 17) == cut_middle(names[1], 17) == "hy_intel…_wc_cm_r"
    shown = cut_apart(names, 17)
    assert shown[3] == "short" and shown[2] == cut_middle(names[2], 17)  # the others as before
    assert shown[0] != shown[1]
    for name, cut in zip(names, shown):
        head, _, tail = cut.partition("…")
        assert len(cut) <= 17 and name.startswith(head) and name.endswith(tail)
    # the first character where they differ (index 9: e / r) is on screen
    assert shown[0][:10] == "hy_intel_e" and shown[1][:10] == "hy_intel_r"

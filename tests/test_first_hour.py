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

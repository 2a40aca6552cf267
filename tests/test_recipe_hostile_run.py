"""What needs the dataset is checked before anything is written (issue 11): ``fgbench run`` with a
recipe that only the data can prove wrong exits 2 with one line naming the recipe file and the field,
and no run directory exists afterwards. A tiny class-folder dataset (16 px PNGs) keeps this fast."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from fgbench import cli


def _png(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), (shade, 255 - shade, 128)).save(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three classes: `a` and `b` with 4 training images each, `c` with only one."""
    root = tmp_path / "data"
    for c, n in (("a", 4), ("b", 4), ("c", 1)):
        for i in range(n):
            _png(root / "train" / c / f"{i}.png", 40 * i)
        _png(root / "test" / c / "0.png", 99)
    return root


def recipe(tmp_path: Path, folder: Path, extra: str = "", val_fraction: float = 0.0) -> Path:
    select = "val" if val_fraction else "last"
    p = tmp_path / "tiny.toml"
    p.write_text(
        f"name = 'tiny'\n"
        f"[data]\ndataset = 'folder'\nroot = '{folder}'\ntrain_size = 16\ntest_size = 16\ntrain_crop = 'resize'\n"
        f"test_crop = 'resize'\nbatch_size = 2\nworkers = 0\nval_fraction = {val_fraction}\n"
        f"[model]\narch = 'small_cnn'\n{extra}\n"
        f"[schedule]\nepochs = 1\n[runtime]\ndevice = 'cpu'\n[eval]\nselect_on = '{select}'\n",
        encoding="utf-8")
    return p


def run(argv: list[str], capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    rc = cli.main(argv)
    return rc, capsys.readouterr().err.splitlines()


def test_num_classes_below_the_datasets_classes(tmp_path: Path, folder: Path, capsys) -> None:
    r = recipe(tmp_path, folder, "num_classes = 2")
    runs = tmp_path / "runs"
    rc, err = run(["run", str(r), "--runs-root", str(runs)], capsys)
    assert rc == 2 and err == [f"{r}: model.num_classes: 2 outputs cannot hold the 3 classes of folder; unset it "
                               "to use the dataset's class count"]
    assert not runs.exists()


def test_a_class_without_a_validation_image(tmp_path: Path, folder: Path, capsys) -> None:
    r = recipe(tmp_path, folder, val_fraction=0.25)
    runs = tmp_path / "runs"
    rc, err = run(["run", str(r), "--runs-root", str(runs)], capsys)
    assert rc == 2 and len(err) == 1
    assert err[0].startswith(f"{r}: data.val_fraction: the validation split has no image of 1 of the 3 classes "
                             "(e.g. 'c', with 1 training image)")
    assert not runs.exists()


def _fifo(p: Path) -> Path:
    os.mkfifo(p)
    return p


@pytest.mark.parametrize("make, why", [
    (lambda d: d / "missing.pth", "weights file not found"),
    (lambda d: d, "is a directory, not a weights file"),
    (lambda d: _fifo(d / "w.pth"), "is not a regular file (a FIFO or device), not a weights file"),
    (lambda d: (d / "w.pth").write_text("{'fc.weight': 1}") and d / "w.pth",
     "is not a PyTorch weights file (torch.save writes a zip archive or a pickle)"),
    (lambda d: (d / "w.pth").write_bytes(b"PK\x03\x04 not really a zip") and d / "w.pth", "cannot read"),
])
def test_pretrained_files_must_exist_and_be_weight_files(tmp_path: Path, folder: Path, capsys, make, why) -> None:
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    path = make(weights_dir)
    r = recipe(tmp_path, folder, f"pretrained = {{ source = 'file', path = '{path}' }}")
    runs = tmp_path / "runs"
    rc, err = run(["run", str(r), "--runs-root", str(runs)], capsys)
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"{r}: model.pretrained.path: ") and why in err[0], err
    assert not runs.exists()


def test_a_runs_root_that_cannot_be_created(tmp_path: Path, folder: Path, capsys) -> None:
    # /sys refuses mkdir even to root, where a 0555 directory would not: the run stops on it
    # with one line after checking the data, and nothing is left anywhere
    try:
        os.mkdir("/sys/fgbench-probe")
    except OSError:
        pass
    else:  # pragma: no cover - a system whose /sys takes directories
        os.rmdir("/sys/fgbench-probe")
        pytest.skip("/sys accepts new directories here")
    r = recipe(tmp_path, folder)
    rc, err = run(["run", str(r), "--runs-root", "/sys/fgbench-runs"], capsys)
    assert rc == 2 and len(err) == 1 and "cannot create the run directory" in err[0], err
    assert not os.path.exists("/sys/fgbench-runs")

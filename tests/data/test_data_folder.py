"""Datasets you bring (`folder`): verify names the split it tests on, and `data remove folder
--root DIR` removes exactly the caches fgbench built for DIR."""

from __future__ import annotations

from pathlib import Path

from fgbench import cli
from fgbench.data import catalog


def _folder(root: Path, test_split: str = "test") -> Path:
    for split, n in (("train", 3), (test_split, 2)):
        for c in ("ant", "bee"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                (d / f"{i}.jpg").write_bytes(b"not decoded by the quick verify")
    return root


def test_verify_calls_a_val_folder_by_its_name(tmp_path, capsys):
    root = _folder(tmp_path / "mine", "val")
    assert cli.main(["data", "verify", "folder", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "2 classes, 6 train / 4 test images (from val/)" in out
    other = _folder(tmp_path / "other", "test")
    assert cli.main(["data", "verify", "folder", "--root", str(other)]) == 0
    assert "6 train / 4 test images (" in capsys.readouterr().out


def test_each_folder_has_its_own_cache_and_remove_deletes_only_that_one(tmp_path, capsys, fgbench_home):
    a, b = _folder(tmp_path / "a"), _folder(tmp_path / "b")
    cache_a, cache_b = catalog.cache_dir("folder", a), catalog.cache_dir("folder", b)
    assert cache_a != cache_b and cache_a.parent == cache_b.parent == catalog.cache_dir("folder")
    for cache in (cache_a, cache_b):
        (cache / "train").mkdir(parents=True)
        (cache / "train" / "k.u8").write_bytes(b"x" * 1000)
    assert catalog.cache_dir("folder", str(a) + "/") == cache_a  # the same folder however it is spelled
    assert cli.main(["data", "remove", "folder", "--root", str(a)]) == 0
    out = capsys.readouterr().out
    assert f"removed the caches fgbench built for {a}" in out and "untouched" in out
    assert not cache_a.exists() and cache_b.exists()
    assert (a / "train" / "ant" / "0.jpg").is_file(), "the user's folder is never touched"
    assert cli.main(["data", "remove", "folder", "--root", str(a)]) == 0
    assert "no caches" in capsys.readouterr().out


def test_remove_folder_needs_a_root(capsys):
    assert cli.main(["data", "remove", "folder"]) == 2
    assert "give --root DIR" in capsys.readouterr().err

"""The seam between "where is the data" (catalog, pure) and "load it" (trainer, engine).

Every dataset the trainer can read resolves to a :class:`DatasetIndex`: class names in the
official (index) order and, per split, the image files with their labels, or, for CIFAR, the
torchvision folder that holds the pickles. Prepared catalog datasets, user folders and the
built-in synthetic set all end up here, so the trainer has one code path for files.

This module also owns the prepared index file (``fgbench-index.json``): :func:`write_index`
and :func:`read_index` are its only writer and reader. It sits above ``catalog`` (names and
places) and below ``prepare`` (the publishers' layouts), so the three import in one direction.

Dataset files that are not regular files (a FIFO or a device named ``x.jpg``) are left out of a
folder scan and named in :attr:`DatasetIndex.not_files`: opening a FIFO would block a loader
forever. A class folder without images is an error naming it, not a class that never occurs.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fgbench import paths
from fgbench.data import catalog
from fgbench.errors import UserError

INDEX_FORMAT = 1

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


@dataclass
class DatasetIndex:
    name: str
    class_names: list[str]
    #: (absolute image path, label) for kind "files"; empty for kind "cifar"
    train: list[tuple[str, int]] = field(default_factory=list)
    test: list[tuple[str, int]] = field(default_factory=list)
    #: "files": decode image files. "cifar": torchvision CIFAR pickles under ``root``.
    kind: Literal["files", "cifar"] = "files"
    root: str | None = None
    #: files with an image name that are not regular files (FIFOs, devices), left out of the scan
    not_files: list[str] = field(default_factory=list)
    #: the folder the test split was read from (a user folder: ``<root>/test`` or ``<root>/val``)
    test_dir: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))


def _images(d: Path, not_files: list[str] | None = None) -> list[str]:
    """Image files under ``d``; names of images that are not regular files go to ``not_files``."""
    out = []
    for dirpath, dirs, files in os.walk(d):
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        for f in files:
            if not f.lower().endswith(IMAGE_EXTENSIONS) or f.startswith("."):
                continue
            path = os.path.join(dirpath, f)
            try:
                regular = stat.S_ISREG(os.stat(path).st_mode)  # never opened: a FIFO would block
            except OSError:  # a dangling link
                regular = False
            if regular:
                out.append(path)
            elif not_files is not None:
                not_files.append(path)
    return sorted(out)


def scan_class_folders(
    train_dir: Path, test_dir: Path, error: type[UserError] = UserError, not_files: list[str] | None = None
) -> tuple[list[str], list[tuple[str, int]], list[tuple[str, int]]]:
    """Class names and (image path, label) pairs of two class-folder trees. Class order is the sorted
    train folder names (ImageFolder's); a test class missing from train is an error, not a new label,
    and so is a train class folder without images. Non-regular files are listed in ``not_files``."""
    classes = _class_dirs(train_dir)
    if len(classes) < 2:
        raise error(f"{train_dir}: found {len(classes)} class folder(s), need at least 2")
    lookup = {c: i for i, c in enumerate(classes)}
    extra = sorted(set(_class_dirs(test_dir)) - set(classes))
    if extra:
        raise error(f"{test_dir}: classes not in {train_dir.name}/: {', '.join(extra[:5])}")
    train: list[tuple[str, int]] = []
    for c in classes:
        found = _images(train_dir / c, not_files)
        if not found:
            raise error(f"{train_dir / c}: class folder without images ({', '.join(IMAGE_EXTENSIONS)}); "
                        "add images or remove the folder")
        train.extend((p, lookup[c]) for p in found)
    test = [(p, lookup[c]) for c in _class_dirs(test_dir) for p in _images(test_dir / c, not_files)]
    return classes, train, test


def folder_index(root: str | os.PathLike[str], name: str = "folder") -> DatasetIndex:
    """A folder with ``train/<class>/*`` and ``test/<class>/*`` (or ``val/`` as the test split).

    Class indices follow the sorted names of the train split's class folders (ImageFolder's
    order); a test class that does not occur in train is an error, not a silent new label.
    """
    root = Path(root).expanduser()
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise UserError(f"{root}: no train/ folder (expected train/<class>/*.jpg and test/ or val/)")
    test_dir = next((root / s for s in ("test", "val") if (root / s).is_dir()), None)
    if test_dir is None:
        raise UserError(f"{root}: no test/ or val/ folder beside train/")
    not_files: list[str] = []
    classes, train, test = scan_class_folders(train_dir, test_dir, not_files=not_files)
    if not train:
        raise UserError(f"{train_dir}: no images found")
    if not test:
        raise UserError(f"{test_dir}: no images found")
    return DatasetIndex(name=name, class_names=classes, train=train, test=test, root=str(root), not_files=not_files,
                        test_dir=str(test_dir))


def folder_report(index: DatasetIndex, val_images: int | None = None) -> list[str]:
    """What a run says about a folder dataset it trains on: which folder it tests on and how many
    images each part has, and that ``val/`` is left out when ``test/`` is there too."""
    if index.name != "folder" or index.test_dir is None or index.root is None:
        return []
    root = Path(index.root)
    test_dir = Path(index.test_dir)
    held = f", {val_images} of them held out for validation" if val_images else ""
    lines = [f"data: {root}: training on train/ ({len(index.train)} images{held}), "
             f"testing on {test_dir.name}/ ({len(index.test)} images)"]
    if test_dir.name == "test" and (root / "val").is_dir():
        lines.append(f"data: {root} has both test/ and val/: testing on test/, val/ is not used "
                     "(the validation split is held out of train/, see data.val_fraction)")
    return lines


def resolve_index(data) -> DatasetIndex:
    """The DatasetIndex for a recipe's ``data`` section (a ``fgbench.recipe.DataConfig``)."""
    name = data.dataset
    if name == "folder":
        return folder_index(data.root, "folder")
    if name == "synthetic":
        from fgbench.data.synthetic import ensure_synthetic

        root = Path(data.root) if data.root else paths.datasets_dir() / "synthetic"
        return folder_index(ensure_synthetic(root), "synthetic")
    return prepared_index(name, data.root)


# ------------------------------------------------------------------------------ index file


def write_index(loc: Path, prepared: Any, name: str) -> None:
    """Write ``fgbench-index.json`` atomically. The base is stored relative to ``loc`` when it is
    inside it (so the folder can be moved), else absolute (data imported from elsewhere).
    ``prepared`` is a ``fgbench.data.prepare.Prepared`` (kind, base, class names, splits, counts)."""
    from fgbench.atomic import atomic_write_text

    base = prepared.base.resolve()
    try:
        base_text = base.relative_to(loc.resolve()).as_posix() or "."
    except ValueError:
        base_text = str(base)
    doc = {
        "format": INDEX_FORMAT,
        "name": name,
        "kind": prepared.kind,
        "base": base_text,
        "class_names": prepared.class_names,
        "counts": {"train": prepared.train_count, "test": prepared.test_count},
        "train": [[p, y] for p, y in prepared.train],
        "test": [[p, y] for p, y in prepared.test],
    }
    atomic_write_text(loc / catalog.INDEX_FILE, json.dumps(doc, separators=(",", ":")))


def index_base(loc: Path, doc: dict) -> Path:
    base = Path(doc.get("base", "."))
    return base if base.is_absolute() else (loc / base)


def read_index(loc: str | os.PathLike[str]) -> DatasetIndex:
    loc = Path(loc)
    path = loc / catalog.INDEX_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: missing; prepare the dataset again (fgbench data download/import)") from None
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: unreadable index ({err}); prepare the dataset again") from None
    if doc.get("format") != INDEX_FORMAT:
        raise UserError(f"{path}: index format {doc.get('format')!r}, expected {INDEX_FORMAT}; prepare it again")
    base = index_base(loc, doc)
    name = doc.get("name", loc.name)
    if doc.get("kind") == "cifar":
        return DatasetIndex(name=name, class_names=list(doc["class_names"]), kind="cifar", root=str(base))
    b = str(base)
    train = [(os.path.join(b, p), int(y)) for p, y in doc["train"]]
    test = [(os.path.join(b, p), int(y)) for p, y in doc["test"]]
    return DatasetIndex(name=name, class_names=list(doc["class_names"]), train=train, test=test, root=b)


def prepared_index(name: str, root: str | os.PathLike[str] | None = None) -> DatasetIndex:
    """The :class:`DatasetIndex` of a prepared dataset.

    A ``UserError`` tells the user the command that prepares it when it is not ready.
    """
    entry = catalog.get(name)
    if name == "folder":
        if root is None:
            raise UserError("dataset 'folder' needs data.root (a folder with train/ and test/ or val/)")
        return folder_index(root, "folder")
    loc = catalog.location(name, root)
    if name == "synthetic":
        from fgbench.data.synthetic import ensure_synthetic

        return folder_index(ensure_synthetic(loc), "synthetic")
    st = catalog.status(name, root)
    if st != "ready":
        what = "was only partly downloaded or prepared" if st == "partial" else "is not downloaded"
        raise UserError(f"{name}: {what} ({loc}): {catalog.how_to_get(entry)}")
    return read_index(loc)

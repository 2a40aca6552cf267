"""The seam between "where is the data" (catalog, pure) and "load it" (trainer, engine).

Every dataset the trainer can read resolves to a :class:`DatasetIndex`: class names in the
official (index) order and, per split, the image files with their labels, or, for CIFAR, the
torchvision folder that holds the pickles. Prepared catalog datasets, user folders and the
built-in synthetic set all end up here, so the trainer has one code path for files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fgbench import paths
from fgbench.errors import UserError

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
    #: the folder the test split was read from (a user folder: ``<root>/test`` or ``<root>/val``)
    test_dir: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))


def _images(d: Path) -> list[str]:
    out = []
    for dirpath, dirs, files in os.walk(d):
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        out.extend(os.path.join(dirpath, f) for f in files
                   if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
    return sorted(out)


def scan_class_folders(
    train_dir: Path, test_dir: Path, error: type[UserError] = UserError
) -> tuple[list[str], list[tuple[str, int]], list[tuple[str, int]]]:
    """Class names and (image path, label) pairs of two class-folder trees. Class order is the sorted
    train folder names (ImageFolder's); a test class missing from train is an error, not a new label."""
    classes = _class_dirs(train_dir)
    if len(classes) < 2:
        raise error(f"{train_dir}: found {len(classes)} class folder(s), need at least 2")
    lookup = {c: i for i, c in enumerate(classes)}
    extra = sorted(set(_class_dirs(test_dir)) - set(classes))
    if extra:
        raise error(f"{test_dir}: classes not in {train_dir.name}/: {', '.join(extra[:5])}")
    train = [(p, lookup[c]) for c in classes for p in _images(train_dir / c)]
    test = [(p, lookup[c]) for c in _class_dirs(test_dir) for p in _images(test_dir / c)]
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
    classes, train, test = scan_class_folders(train_dir, test_dir)
    if not train:
        raise UserError(f"{train_dir}: no images found")
    if not test:
        raise UserError(f"{test_dir}: no images found")
    return DatasetIndex(name=name, class_names=classes, train=train, test=test, root=str(root), test_dir=str(test_dir))


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
    from fgbench.data import catalog

    return catalog.prepared_index(name, data.root)

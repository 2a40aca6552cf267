"""The dataset catalog: what each dataset is, where it comes from, where it lives (pure zone).

Every name of ``fgbench.recipe.DatasetName`` has an :class:`Entry` here. The download engine
(``fgbench.data.download``) turns an entry into a prepared dataset; the trainer asks
:func:`fgbench.data.index.prepared_index` for a :class:`~fgbench.data.index.DatasetIndex`; ``fgbench data list`` and
the TUI show :func:`entries` with :func:`status`.

On-disk layout of a catalog dataset (``location(name)``, by default ``<datasets>/<name>``)::

    .downloads/<file>.part     a download in progress (resumed with an HTTP Range request)
    .downloads/<file>          a finished download whose size and md5 were checked
    .steps/<file>.done         that file was extracted (or placed) completely
    CUB_200_2011/ ...          the archives' contents, exactly as the publisher laid them out
    fgbench-index.json         the prepared index: class names in the official order and, per
                               split, image paths (relative) and labels; no image is copied
    fgbench-ready.json         written last, atomically: the only thing that makes it "ready"

These names are fgbench's alone: an archive member that carries one is refused, and the state
files and folders are never written (or trusted) through a symbolic link.

Decisions and trade-offs:

* "Ready" is one marker file written after download, verification, extraction and preparation,
  so an interrupted step can never look ready, and each finished step has its own marker so a
  re-run continues where it stopped.
* The prepared form is an index over the original images, not a re-arranged copy: no extra
  disk, and the publisher's files stay recognisable. Paths in the index are relative to a base
  directory (the dataset location itself unless the data was imported from a folder elsewhere),
  so a prepared dataset directory can be moved as a whole.
* Class names follow each publisher's own order (CUB ``classes.txt``, Aircraft ``variants.txt``,
  Pets class ids, CIFAR ``batches.meta``); only class-folder sets without a published order
  (the Stanford Cars mirror, Intel scenes, user folders) use the sorted folder names, which is
  also ImageFolder's order.
* Flowers-102 ships no class names, only label numbers, so its classes are named ``001``..``102``
  rather than with names that third parties guessed.
* Sizes in :attr:`Source.size` are only the ones known exactly; the catalog never invents one.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fgbench import paths
from fgbench.data import synthetic  # stdlib at import time; numpy/PIL only to generate
from fgbench.errors import UserError

READY_FILE = "fgbench-ready.json"
INDEX_FILE = "fgbench-index.json"
DOWNLOADS_DIR = ".downloads"
STEPS_DIR = ".steps"
LOCK_FILE = ".lock"
#: fgbench's own names in a dataset folder: an archive member with one of them (at any depth) is
#: refused, so an archive can never mark a dataset ready or stand in for its index or steps
STATE_NAMES = frozenset({READY_FILE, INDEX_FILE, DOWNLOADS_DIR, STEPS_DIR, LOCK_FILE})
#: prefix of the scratch folder an archive is extracted into before it is moved into place
EXTRACT_PREFIX = ".extract-"

Status = Literal["missing", "partial", "ready"]
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")


@dataclass(frozen=True)
class Source:
    """One file a dataset needs. ``alternates`` are other URLs of the very same file."""

    url: str
    filename: str
    md5: str | None = None
    size: int | None = None
    alternates: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.alternates)

    @property
    def is_archive(self) -> bool:
        return self.filename.lower().endswith(ARCHIVE_SUFFIXES)


@dataclass(frozen=True)
class Entry:
    name: str
    title: str
    #: None where the count is not fixed (a user folder, the generated synthetic set)
    num_classes: int | None
    train_images: int | None
    test_images: int | None
    #: total bytes to download; exact when every source has a known size, else approximate
    download_bytes: int | None
    licence: str
    homepage: str
    #: every file the dataset needs, each with its own alternates (empty: not downloadable)
    sources: tuple[Source, ...]
    #: which preparer lays out the index (see ``fgbench.data.prepare.PREPARERS``)
    prepare: str
    notes: str = ""
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    #: False: fgbench never fetches it by itself (licence or login), only ``fgbench data import``
    auto_download: bool = True
    #: checksums in ``sources`` are exact; False for mirrors verified only by their image counts
    checksummed: bool = field(default=True)

    @property
    def images(self) -> int | None:
        if self.train_images is None or self.test_images is None:
            return None
        return self.train_images + self.test_images

    @property
    def size_is_exact(self) -> bool:
        return bool(self.sources) and all(s.size is not None for s in self.sources)


_OX = "https://www.robots.ox.ac.uk/~vgg/data"
_CARS_MIRROR = "https://codeload.github.com/cyizhuo/Stanford-Cars-dataset/tar.gz/refs/heads/"

_ENTRIES: tuple[Entry, ...] = (
    Entry(
        name="synthetic",
        title="Synthetic birds (built in, generated offline)",
        num_classes=len(synthetic.CLASS_NAMES),
        train_images=synthetic.TRAIN_PER_CLASS * len(synthetic.CLASS_NAMES),
        test_images=synthetic.TEST_PER_CLASS * len(synthetic.CLASS_NAMES),
        download_bytes=None,
        licence="generated by fgbench (no restrictions)",
        homepage="",
        sources=(),
        prepare="synthetic",
        notes="Generated on first use (or by `fgbench data download synthetic`) in a few seconds; "
        "no network. Ten classes that differ only in small markings; for smoke tests and demos.",
        auto_download=False,
    ),
    Entry(
        name="folder",
        title="Your own folder of class sub-folders",
        num_classes=None,
        train_images=None,
        test_images=None,
        download_bytes=None,
        licence="yours",
        homepage="",
        sources=(),
        prepare="class_folders",
        notes="Set data.root to a folder with train/<class>/*.jpg and test/<class>/ (or val/). "
        "Class indices are the sorted train/ folder names.",
        auto_download=False,
    ),
    Entry(
        name="cifar10",
        title="CIFAR-10",
        num_classes=10,
        train_images=50000,
        test_images=10000,
        download_bytes=170498071,
        licence="free for research (see homepage)",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        sources=(
            Source(
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "cifar-10-python.tar.gz",
                md5="c58f30108f718f92721af3b95e74349a",
                size=170498071,
            ),
        ),
        prepare="cifar10",
        notes="Kept in torchvision's cifar-10-batches-py layout (no conversion). The dataset mean/std "
        "are the true ones; the kuangliu std (0.2023, 0.1994, 0.2010) used by some recipes differs.",
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
    ),
    Entry(
        name="cifar100",
        title="CIFAR-100",
        num_classes=100,
        train_images=50000,
        test_images=10000,
        download_bytes=169001437,
        licence="free for research (see homepage)",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        sources=(
            Source(
                "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                "cifar-100-python.tar.gz",
                md5="eb9058c3a382ffc7106e4002c42a8d85",
                size=169001437,
            ),
        ),
        prepare="cifar100",
        notes="Fine labels (100 classes). Kept in torchvision's cifar-100-python layout.",
        mean=(0.5071, 0.4867, 0.4408),
        std=(0.2675, 0.2565, 0.2761),
    ),
    Entry(
        name="cub200",
        title="Caltech-UCSD Birds-200-2011",
        num_classes=200,
        train_images=5994,
        test_images=5794,
        download_bytes=1150585339,
        licence="non-commercial research and education (images from Flickr; see homepage)",
        homepage="https://www.vision.caltech.edu/datasets/cub_200_2011/",
        sources=(
            Source(
                "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
                "CUB_200_2011.tgz",
                md5="97eceeb196236b17998738112f37df78",
                size=1150585339,
                alternates=("http://www.vision.caltech.edu/visipedia-data/CUB-200-2011/CUB_200_2011.tgz",),
            ),
        ),
        prepare="cub",
        notes="Official split from train_test_split.txt; classes in classes.txt order (the NNN. "
        "prefix is dropped from the names).",
    ),
    Entry(
        name="stanford_cars",
        title="Stanford Cars (196 classes, class-folder mirror)",
        num_classes=196,
        train_images=8144,
        test_images=8041,
        download_bytes=1861621760,
        licence="non-commercial research only (original terms); mirror by cyizhuo on GitHub",
        homepage="https://github.com/cyizhuo/Stanford-Cars-dataset",
        sources=(
            Source(
                _CARS_MIRROR + "main",
                "Stanford-Cars-dataset.tar.gz",
                alternates=(_CARS_MIRROR + "master",),
            ),
        ),
        prepare="class_folders",
        notes="The original host (ai.stanford.edu/~jkrause) has been gone since 2023. This is the "
        "public class-folder mirror; it has NO checksum, so it is verified by its image counts "
        "(8,144 / 8,041) and 196 classes. Class order = sorted folder names. The size is approximate. "
        "If the archive download fails: git clone --depth 1 "
        "https://github.com/cyizhuo/Stanford-Cars-dataset.git, then `fgbench data import "
        "stanford_cars <that folder>`.",
        checksummed=False,
    ),
    Entry(
        name="fgvc_aircraft",
        title="FGVC-Aircraft 2013b (variants)",
        num_classes=100,
        train_images=6667,
        test_images=3333,
        download_bytes=2753340328,
        licence="non-commercial research only (see homepage)",
        homepage=f"{_OX}/fgvc-aircraft/",
        sources=(
            Source(
                f"{_OX}/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
                "fgvc-aircraft-2013b.tar.gz",
                md5="d4acdd33327262359767eeaa97a4f732",
                size=2753340328,
            ),
        ),
        prepare="aircraft",
        notes="Variant level (100 classes, variants.txt order), trainval 6,667 / test 3,333. "
        "Every image has a 20-pixel copyright banner at the bottom: set data.crop_banner = true "
        "to crop it when loading.",
    ),
    Entry(
        name="flowers102",
        title="Oxford Flowers-102",
        num_classes=102,
        train_images=2040,
        test_images=6149,
        download_bytes=345_000_000,
        licence="research use (see homepage)",
        homepage=f"{_OX}/flowers/102/",
        sources=(
            Source(f"{_OX}/flowers/102/102flowers.tgz", "102flowers.tgz", md5="52808999861908f626f3c1f4e79d11fa"),
            Source(f"{_OX}/flowers/102/imagelabels.mat", "imagelabels.mat", md5="e0620be6f572b9609742df49c70aed4d"),
            Source(f"{_OX}/flowers/102/setid.mat", "setid.mat", md5="a5357ecc9cb78c4bef273ce3793fc85c"),
        ),
        prepare="flowers",
        notes="Train = the official train + val ids (1,020 + 1,020), test = tstid (6,149). The .mat "
        "files are read by fgbench itself (no scipy). The archive has no class names, so classes "
        "are named 001..102 by their official label number. The size is approximate.",
    ),
    Entry(
        name="oxford_pets",
        title="Oxford-IIIT Pets (37 breeds)",
        num_classes=37,
        train_images=3680,
        test_images=3669,
        download_bytes=791918971 + 19173078,
        licence="CC BY-SA 4.0 (see homepage)",
        homepage=f"{_OX}/pets/",
        sources=(
            Source(f"{_OX}/pets/data/images.tar.gz", "images.tar.gz", md5="5c4f3ee8e5d25df40f4fd59a7f44e54c", size=791918971),
            Source(
                f"{_OX}/pets/data/annotations.tar.gz",
                "annotations.tar.gz",
                md5="95a8c909bbe2e81eed6a22bccdf3f68f",
                size=19173078,
            ),
        ),
        prepare="pets",
        notes="trainval 3,680 / test 3,669 from annotations/; class order = the official class ids "
        "(breed names from the image names).",
    ),
    Entry(
        name="intel_scenes",
        title="Intel Image Classification (6 scene classes)",
        num_classes=6,
        train_images=14034,
        test_images=3000,
        download_bytes=363_000_000,
        licence="Kaggle dataset, licence 'other': not downloaded automatically",
        homepage="https://www.kaggle.com/datasets/puneet6060/intel-image-classification",
        sources=(),
        prepare="intel",
        notes="Kaggle only (needs a login): download the archive from the homepage, or run "
        "`kaggle datasets download puneet6060/intel-image-classification`, then "
        "`fgbench data import intel_scenes <archive.zip or folder>`. The nested "
        "seg_train/seg_train and seg_test/seg_test folders are found by themselves; seg_pred "
        "(unlabelled) is ignored.",
        auto_download=False,
        checksummed=False,
    ),
)

_BY_NAME = {e.name: e for e in _ENTRIES}


def is_reserved_name(name: str) -> bool:
    """Whether a path component is one of fgbench's state names (see ``STATE_NAMES``)."""
    return name in STATE_NAMES or name.startswith(EXTRACT_PREFIX)


def is_state_file(path: Path) -> bool:
    """A regular file that is not a link: state files are never read or written through links."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def entries() -> list[Entry]:
    """Every dataset fgbench knows, in display order."""
    return list(_BY_NAME.values())


def names() -> list[str]:
    return list(_BY_NAME)


def get(name: str) -> Entry:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(_BY_NAME)}") from None


def location(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Where dataset ``name`` lives: ``root`` itself when given, else ``<datasets dir>/<name>``."""
    get(name)
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    return paths.datasets_dir() / name


def cache_dir(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Where the trainer keeps ``data.loader = "cached"`` pixel caches of dataset ``name``
    (``fgbench data remove`` deletes them with the dataset). A user's ``folder`` dataset gets one
    cache folder per ``root`` (named by a hash of its resolved path), so that
    ``fgbench data remove folder --root DIR`` can delete exactly that folder's caches."""
    get(name)
    base = paths.datasets_dir() / ".cache" / name
    if name == "folder" and root is not None:
        import hashlib

        key = hashlib.sha1(str(Path(root).expanduser().resolve()).encode()).hexdigest()[:16]
        return base / key
    return base


def status(name: str, root: str | os.PathLike[str] | None = None) -> Status:
    """"ready" only once the ready marker exists; "partial" when a download or preparation
    started and did not finish; "missing" otherwise."""
    entry = get(name)
    loc = location(name, root)
    if entry.name == "folder":
        if root is None:
            return "missing"
        has_test = (loc / "test").is_dir() or (loc / "val").is_dir()
        return "ready" if (loc / "train").is_dir() and has_test else "missing"
    if entry.name == "synthetic":
        return "ready" if synthetic.is_ready(loc) else ("partial" if loc.exists() else "missing")
    if is_state_file(loc / READY_FILE):
        return "ready"
    try:
        contents = [p for p in loc.iterdir() if p.name != LOCK_FILE]
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError:  # there but unusable (a symlink loop, no permission): not ready, and not nothing
        return "partial"
    return "partial" if contents else "missing"


def status_text(name: str, root: str | os.PathLike[str] | None = None) -> str:
    """The status as ``fgbench data list`` and the TUI's Datasets pane both word it (short, to fit
    80 columns): ``ready``, ``partial``, ``missing``; ``to import`` for a missing dataset that only
    ``fgbench data import`` brings in; ``built-in`` for the synthetic set before its first use
    generates it; ``data.root`` for ``folder`` (your own folder, named per recipe)."""
    entry = get(name)
    if entry.name == "folder":
        return "data.root"
    st = status(name, root)
    if st == "missing" and entry.name == "synthetic":
        return "built-in"
    if st == "missing" and not entry.auto_download:
        return "to import"
    return st


def ready_info(name: str, root: str | os.PathLike[str] | None = None) -> dict | None:
    """The content of the ready marker (counts, when it was prepared), or None."""
    try:
        return json.loads((location(name, root) / READY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def require_ready(name: str, root: str | os.PathLike[str] | None = None, *, where: str = "") -> None:
    """Raise a ``UserError`` naming ``name`` and the command that gets it unless the dataset can be
    read now. A file check only (no torch, no index read): ``fgbench run`` and ``fgbench sweep``
    call it before anything heavy starts. ``where`` prefixes the message (``"recipe.toml: "``).
    The built-in synthetic set is always usable (its first use generates it); ``folder`` needs
    ``data.root`` with ``train/`` beside ``test/`` or ``val/``."""
    from fgbench.textsafe import safe

    entry = get(name)
    if entry.name == "synthetic":
        return
    if entry.name == "folder":
        if root is None:
            raise UserError(f"{where}data.root: dataset 'folder' needs data.root (a folder with train/ and "
                            "test/ or val/)")
        if status(name, root) != "ready":
            raise UserError(f"{where}data.root: {safe(str(location(name, root)))} has no train/ folder beside "
                            f"test/ or val/ ({how_to_get(entry)})")
        return
    st = status(name, root)
    if st != "ready":
        what = "was only partly downloaded or prepared" if st == "partial" else "is not downloaded"
        raise UserError(f"{where}data.dataset: {name} {what} ({safe(str(location(name, root)))}): "
                        f"{how_to_get(entry)}")


def how_to_get(entry: Entry) -> str:
    """The command that makes ``entry`` ready, for error messages."""
    if entry.name == "folder":
        return "set data.root to a folder with train/ and test/ (or val/)"
    if not entry.auto_download:
        return f"download it yourself ({entry.homepage}) and run `fgbench data import {entry.name} PATH`"
    return f"run `fgbench data download {entry.name}`"


def format_bytes(n: int | float | None) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def size_text(entry: Entry) -> str:
    """The download size for display: exact, approximate (~) or '-'."""
    if entry.download_bytes is None:
        return "-"
    return ("" if entry.size_is_exact else "~") + format_bytes(entry.download_bytes)

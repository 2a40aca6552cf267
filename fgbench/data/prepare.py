"""Turn a publisher's extracted files into fgbench's prepared index (pure zone: stdlib only).

A preparer finds its dataset's layout under a search directory (the dataset location after a
download, or any folder the user imports) and returns a :class:`Prepared`: class names in the
official order and, per split, image paths relative to a base directory with their labels. The
index is written next to the images (``fgbench-index.json``); no image is copied or converted.

Decisions and trade-offs:

* Layouts are found by their marker files, up to a few directories deep, so an archive that
  unpacks to ``CUB_200_2011/`` and a user folder that *is* ``CUB_200_2011`` both work, as do
  Kaggle's doubly nested ``seg_train/seg_train`` (Intel) and GitHub's ``<repo>-main/`` prefix.
* The Flowers-102 labels and splits come in MATLAB ``.mat`` files. Instead of requiring scipy
  for two small vectors, :func:`read_mat` reads the numeric arrays of MAT v5 files (plain or
  zlib-compressed elements). MAT v7.3 (HDF5) is refused with a clear message; the Flowers
  files are v5.
* CIFAR stays in torchvision's pickle layout (the trainer reads it as it is). To count labels
  and read class names, the pickles are opened with a restricted unpickler that refuses every
  global except numpy's array reconstruction, which it replaces by an inert placeholder (and
  ``_codecs.encode``, which Python 3 protocol-2 pickles use for bytes): the
  pickles are read, never executed, and numpy is not imported.
* A dataset whose counts differ from the catalog is not marked ready: for the Stanford Cars
  mirror and Intel scenes the counts are the only verification there is.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from fgbench.data import catalog
from fgbench.data.catalog import Entry
from fgbench.data import index
from fgbench.errors import UserError

class PrepareError(UserError):
    """The files are there but not in the expected layout, or their counts are wrong."""


@dataclass
class Prepared:
    kind: Literal["files", "cifar"]
    #: directory the relative paths (and, for CIFAR, the torchvision folder) are relative to
    base: Path
    class_names: list[str]
    train: list[tuple[str, int]] = field(default_factory=list)
    test: list[tuple[str, int]] = field(default_factory=list)
    #: CIFAR: counts read from the pickles (files: the lengths of train/test)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def train_count(self) -> int:
        return self.counts.get("train", len(self.train))

    @property
    def test_count(self) -> int:
        return self.counts.get("test", len(self.test))


# ------------------------------------------------------------------------------ ready marker


def write_ready(loc: Path, prepared: Prepared, name: str, how: str) -> None:
    """The ready marker, written last: nothing else makes a dataset look ready."""
    from fgbench import __version__
    from fgbench.atomic import atomic_write_text

    doc = {
        "name": name,
        "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "how": how,
        "num_classes": len(prepared.class_names),
        "train_images": prepared.train_count,
        "test_images": prepared.test_count,
        "fgbench": __version__,
    }
    atomic_write_text(loc / catalog.READY_FILE, json.dumps(doc, indent=2) + "\n")



# ----------------------------------------------------------------------------- layout search


def find_dir(search: Path, check: Callable[[Path], bool], max_depth: int = 3) -> Path | None:
    """Breadth-first: the shallowest directory under ``search`` (itself included) for which
    ``check`` holds. Hidden directories (fgbench's own ``.downloads``) are not entered."""
    queue: deque[tuple[Path, int]] = deque([(search, 0)])
    while queue:
        d, depth = queue.popleft()
        try:
            if check(d):
                return d
        except OSError:
            continue
        if depth >= max_depth:
            continue
        try:
            subdirs = sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            continue
        queue.extend((p, depth + 1) for p in subdirs)
    return None


def _need(search: Path, check: Callable[[Path], bool], what: str) -> Path:
    found = find_dir(search, check)
    if found is None:
        raise PrepareError(f"{search}: {what} not found")
    return found


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    except OSError as err:
        raise PrepareError(f"{path}: cannot read ({err.strerror or err})") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def _rel(base: Path, p: Path) -> str:
    return p.relative_to(base).as_posix()


def scan_class_folders(base: Path, train_dir: Path, test_dir: Path) -> Prepared:
    """Class sub-folders; class order = the sorted train/ folder names (ImageFolder's order)."""
    names, train, test = index.scan_class_folders(train_dir, test_dir, PrepareError)
    return Prepared("files", base, names, [(_rel(base, Path(p)), y) for p, y in train],
                    [(_rel(base, Path(p)), y) for p, y in test])


# -------------------------------------------------------------------------------- preparers


def prepare_cub(search: Path) -> Prepared:
    files = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")
    d = _need(search, lambda p: all((p / f).is_file() for f in files), "CUB_200_2011/images.txt and its lists")
    class_rows = [ln.split(maxsplit=1) for ln in _lines(d / "classes.txt")]
    class_ids = [int(i) for i, _ in class_rows]
    if class_ids != list(range(1, len(class_ids) + 1)):
        raise PrepareError(f"{d / 'classes.txt'}: class ids are not 1..{len(class_ids)} in order")
    # "001.Black_footed_Albatross" -> "Black_footed_Albatross"; the index keeps the official order
    names = [n.split(".", 1)[1] if "." in n and n.split(".", 1)[0].isdigit() else n for _, n in class_rows]
    paths_by_id = dict(ln.split(maxsplit=1) for ln in _lines(d / "images.txt"))
    labels = dict(ln.split(maxsplit=1) for ln in _lines(d / "image_class_labels.txt"))
    split = dict(ln.split(maxsplit=1) for ln in _lines(d / "train_test_split.txt"))
    train: list[tuple[str, int]] = []
    test: list[tuple[str, int]] = []
    for image_id, rel in paths_by_id.items():
        try:
            label = int(labels[image_id]) - 1
            is_train = split[image_id].strip() == "1"
        except KeyError:
            raise PrepareError(f"{d}: image id {image_id} is missing from the label or split list") from None
        if not 0 <= label < len(names):
            raise PrepareError(f"{d / 'image_class_labels.txt'}: image {image_id}: label {label + 1} out of range")
        (train if is_train else test).append((f"images/{rel.strip()}", label))
    return Prepared("files", d, names, train, test)


def prepare_aircraft(search: Path) -> Prepared:
    need = ("variants.txt", "images_variant_trainval.txt", "images_variant_test.txt")
    d = _need(search, lambda p: all((p / f).is_file() for f in need), "fgvc-aircraft-2013b/data/variants.txt")
    names = _lines(d / "variants.txt")
    lookup = {n: i for i, n in enumerate(names)}

    def split(fname: str) -> list[tuple[str, int]]:
        out = []
        for ln in _lines(d / fname):
            image_id, _, variant = ln.partition(" ")
            if variant not in lookup:
                raise PrepareError(f"{d / fname}: unknown variant {variant!r} for image {image_id}")
            out.append((f"images/{image_id}.jpg", lookup[variant]))
        return out

    return Prepared("files", d, names, split("images_variant_trainval.txt"), split("images_variant_test.txt"))


def prepare_class_folders(search: Path) -> Prepared:
    def check(p: Path) -> bool:
        return (p / "train").is_dir() and ((p / "test").is_dir() or (p / "val").is_dir())

    d = _need(search, check, "a folder with train/ and test/ (or val/) class folders")
    test_dir = d / "test" if (d / "test").is_dir() else d / "val"
    return scan_class_folders(d, d / "train", test_dir)


def prepare_intel(search: Path) -> Prepared:
    d = _need(search, lambda p: (p / "seg_train").is_dir() and (p / "seg_test").is_dir(), "seg_train/ and seg_test/")

    def inner(name: str) -> Path:  # Kaggle's archive nests seg_train/seg_train/<class>
        nested = d / name / name
        return nested if nested.is_dir() else d / name

    return scan_class_folders(d, inner("seg_train"), inner("seg_test"))


def prepare_pets(search: Path) -> Prepared:
    def check(p: Path) -> bool:
        a = p / "annotations"
        return (p / "images").is_dir() and (a / "trainval.txt").is_file() and (a / "test.txt").is_file()

    d = _need(search, check, "images/ and annotations/trainval.txt")
    id_names: dict[int, str] = {}

    def split(fname: str) -> list[tuple[str, int]]:
        out = []
        for ln in _lines(d / "annotations" / fname):
            parts = ln.split()
            if len(parts) < 2:
                raise PrepareError(f"{d / 'annotations' / fname}: bad line {ln!r}")
            image, class_id = parts[0], int(parts[1])
            breed = image.rsplit("_", 1)[0]
            if id_names.setdefault(class_id, breed) != breed:
                raise PrepareError(f"{d / 'annotations' / fname}: class {class_id} is both {id_names[class_id]!r} and {breed!r}")
            out.append((f"images/{image}.jpg", class_id - 1))
        return out

    train, test = split("trainval.txt"), split("test.txt")
    ids = sorted(id_names)
    if ids != list(range(1, len(ids) + 1)):
        raise PrepareError(f"{d / 'annotations'}: class ids are not 1..{len(ids)}")
    return Prepared("files", d, [id_names[i] for i in ids], train, test)


def prepare_flowers(search: Path) -> Prepared:
    def check(p: Path) -> bool:
        return (p / "jpg").is_dir() and (p / "imagelabels.mat").is_file() and (p / "setid.mat").is_file()

    d = _need(search, check, "jpg/, imagelabels.mat and setid.mat")
    labels_mat = read_mat(d / "imagelabels.mat")
    setid = read_mat(d / "setid.mat")
    for mat, key, fname in ((labels_mat, "labels", "imagelabels.mat"), *((setid, k, "setid.mat") for k in ("trnid", "valid", "tstid"))):
        if key not in mat:
            raise PrepareError(f"{d / fname}: no variable {key!r} (found: {', '.join(mat) or 'none'})")
    labels = [int(v) for v in labels_mat["labels"].values]
    num_classes = max(labels)
    names = [f"{i:03d}" for i in range(1, num_classes + 1)]

    def split(*keys: str) -> list[tuple[str, int]]:
        out = []
        for key in keys:
            for image_id in (int(v) for v in setid[key].values):
                if not 1 <= image_id <= len(labels):
                    raise PrepareError(f"{d / 'setid.mat'}: {key}: image id {image_id} out of range")
                out.append((f"jpg/image_{image_id:05d}.jpg", labels[image_id - 1] - 1))
        return out

    return Prepared("files", d, names, split("trnid", "valid"), split("tstid"))


def _prepare_cifar(search: Path, folder: str, train_files: tuple[str, ...], test_file: str, meta_file: str, names_key: str, labels_key: str) -> Prepared:
    need = (*train_files, test_file, meta_file)
    d = _need(search, lambda p: all((p / folder / f).is_file() for f in need), f"{folder}/ with {meta_file}")
    meta = read_cifar_pickle(d / folder / meta_file)
    names = meta.get(names_key)
    if not isinstance(names, list) or not names:
        raise PrepareError(f"{d / folder / meta_file}: no {names_key!r} list")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    counts = {"train": 0, "test": 0}
    for split, files in (("train", train_files), ("test", (test_file,))):
        for f in files:
            labels = read_cifar_pickle(d / folder / f).get(labels_key)
            if not isinstance(labels, list):
                raise PrepareError(f"{d / folder / f}: no {labels_key!r} list")
            bad = next((y for y in labels if not isinstance(y, int) or not 0 <= y < len(names)), None)
            if bad is not None:
                raise PrepareError(f"{d / folder / f}: label {bad!r} out of range")
            counts[split] += len(labels)
    return Prepared("cifar", d, names, counts=counts)


def prepare_cifar10(search: Path) -> Prepared:
    train = tuple(f"data_batch_{i}" for i in range(1, 6))
    return _prepare_cifar(search, "cifar-10-batches-py", train, "test_batch", "batches.meta", "label_names", "labels")


def prepare_cifar100(search: Path) -> Prepared:
    return _prepare_cifar(search, "cifar-100-python", ("train",), "test", "meta", "fine_label_names", "fine_labels")


PREPARERS: dict[str, Callable[[Path], Prepared]] = {
    "cub": prepare_cub,
    "aircraft": prepare_aircraft,
    "class_folders": prepare_class_folders,
    "intel": prepare_intel,
    "pets": prepare_pets,
    "flowers": prepare_flowers,
    "cifar10": prepare_cifar10,
    "cifar100": prepare_cifar100,
}


def count_problems(entry: Entry, prepared: Prepared) -> list[str]:
    """Where the prepared counts differ from the catalog's (empty: they agree)."""
    problems = []
    for what, want, got in (
        ("classes", entry.num_classes, len(prepared.class_names)),
        ("train images", entry.train_images, prepared.train_count),
        ("test images", entry.test_images, prepared.test_count),
    ):
        if want is not None and want != got:
            problems.append(f"expected {want} {what}, found {got}")
    return problems


def prepare(entry: Entry, search: Path) -> Prepared:
    """Run the entry's preparer over ``search`` and check the counts against the catalog."""
    try:
        prepared = PREPARERS[entry.prepare](search)
    except PrepareError as err:
        raise PrepareError(f"{entry.name}: {err}") from None
    problems = count_problems(entry, prepared)
    if problems:
        raise PrepareError(f"{entry.name}: {prepared.base}: {'; '.join(problems)}")
    return prepared


# ------------------------------------------------------------------------------ MAT v5 reader

_MI_FORMATS = {1: "b", 2: "B", 3: "h", 4: "H", 5: "i", 6: "I", 7: "f", 9: "d", 12: "q", 13: "Q"}
_MI_MATRIX, _MI_COMPRESSED = 14, 15
_NUMERIC_CLASSES = set(range(6, 16))  # mxDOUBLE .. mxUINT64


@dataclass
class MatArray:
    dims: tuple[int, ...]
    #: values in MATLAB's column-major order (for the 1xN vectors of Flowers, just the vector)
    values: list[float]


def read_mat(path: str | os.PathLike[str]) -> dict[str, MatArray]:
    """The real numeric matrices of a MATLAB v5 .mat file, by variable name.

    Cells, structs, strings, sparse and complex matrices are skipped: fgbench needs none.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise PrepareError(f"{path}: cannot read ({err.strerror or err})") from None
    if len(data) < 128 or 0 in data[:4]:
        raise PrepareError(f"{path}: not a MATLAB v5 .mat file")
    if data[126:128] == b"IM":
        e = "<"
    elif data[126:128] == b"MI":
        e = ">"
    else:
        raise PrepareError(f"{path}: not a MATLAB v5 .mat file (no endian mark)")
    (version,) = struct.unpack(e + "H", data[124:126])
    if version != 0x0100:
        raise PrepareError(f"{path}: MAT version {version:#06x} is not supported (v7.3/HDF5 files need h5py)")
    out: dict[str, MatArray] = {}
    pos = 128
    try:
        while pos + 8 <= len(data):
            mtype, nbytes = struct.unpack(e + "II", data[pos : pos + 8])
            body = data[pos + 8 : pos + 8 + nbytes]
            if mtype == _MI_COMPRESSED:
                inner = zlib.decompress(body)
                itype, inbytes = struct.unpack(e + "II", inner[:8])
                if itype == _MI_MATRIX:
                    _read_matrix(inner[8 : 8 + inbytes], e, out)
                pos += 8 + nbytes  # compressed elements are not padded
            else:
                if mtype == _MI_MATRIX:
                    _read_matrix(body, e, out)
                pos += 8 + nbytes + (-nbytes % 8)
    except (struct.error, zlib.error, ValueError, IndexError) as err:
        raise PrepareError(f"{path}: damaged .mat file ({err})") from None
    return out


def _element(buf: bytes, off: int, e: str) -> tuple[int, bytes, int]:
    """(type, payload, next offset) of the data element at ``off``, small format included."""
    (first,) = struct.unpack(e + "I", buf[off : off + 4])
    if first >> 16:  # small data element: type and size share the first word, data the second
        n = first >> 16
        return first & 0xFFFF, buf[off + 4 : off + 4 + n], off + 8
    mtype, n = struct.unpack(e + "II", buf[off : off + 8])
    return mtype, buf[off + 8 : off + 8 + n], off + 8 + n + (-n % 8)


def _numbers(mtype: int, raw: bytes, e: str) -> list:
    code = _MI_FORMATS.get(mtype)
    if code is None:
        raise ValueError(f"unsupported data type {mtype}")
    count = len(raw) // struct.calcsize(code)
    return list(struct.unpack(f"{e}{count}{code}", raw[: count * struct.calcsize(code)]))


def _read_matrix(buf: bytes, e: str, out: dict[str, MatArray]) -> None:
    _t, flags_raw, off = _element(buf, 0, e)
    flags = struct.unpack(e + "I", flags_raw[:4])[0]
    mx_class, is_complex = flags & 0xFF, bool(flags & 0x0800)
    dtype, dims_raw, off = _element(buf, off, e)
    dims = tuple(_numbers(dtype, dims_raw, e))
    _t, name_raw, off = _element(buf, off, e)
    name = name_raw.decode("ascii", "replace")
    if mx_class not in _NUMERIC_CLASSES or is_complex:
        return
    rtype, real, off = _element(buf, off, e)
    out[name] = MatArray(dims, _numbers(rtype, real, e))


# ------------------------------------------------------------------------- CIFAR pickles


class _Inert:
    """Stands in for numpy arrays and dtypes inside a CIFAR pickle: accepts and drops them."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module.split(".")[0] == "numpy":
            return _Inert
        if (module, name) == ("_codecs", "encode"):  # how protocol-2 pickles from Python 3 store bytes
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")


def read_cifar_pickle(path: Path) -> dict[str, object]:
    """A CIFAR batch or meta file as a dict with str keys; arrays become inert placeholders."""
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="latin1").load()
    except OSError as err:
        raise PrepareError(f"{path}: cannot read ({err.strerror or err})") from None
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise PrepareError(f"{path}: not a CIFAR pickle ({err})") from None
    if not isinstance(obj, dict):
        raise PrepareError(f"{path}: not a CIFAR pickle (a {type(obj).__name__}, expected a dict)")
    return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}

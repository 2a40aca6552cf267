"""Small archives in the real formats of each catalog dataset, for the data tests.

Every builder writes tiny JPEGs (a few pixels) into the publisher's exact layout and returns
the archive bytes; the tests serve them from a local HTTP server or import them from disk.
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
import zipfile
import zlib

import numpy as np
from PIL import Image


def jpeg_bytes(w: int = 16, h: int = 12, seed: int = 0, quality: int = 85) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def tar_bytes(files: dict[str, bytes], compression: str = "gz", pax_comment: str | None = None) -> bytes:
    buf = io.BytesIO()
    kwargs = {}
    if pax_comment is not None:
        kwargs = {"format": tarfile.PAX_FORMAT, "pax_headers": {"comment": pax_comment}}
    with tarfile.open(fileobj=buf, mode=f"w:{compression}" if compression else "w", **kwargs) as tar:
        dirs = sorted({"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return buf.getvalue()


# ------------------------------------------------------------------------------- datasets

CUB_CLASSES = ["Zebra_Finch", "Black_footed_Albatross", "Cardinal"]  # official order, not sorted


def cub_files(per_class: int = 4) -> tuple[dict[str, bytes], dict]:
    """CUB_200_2011 layout; image i of each class is train when i is even. Returns files, facts."""
    files: dict[str, bytes] = {"attributes.txt": b"1 has_bill_shape::curved\n"}
    images, labels, split, classes = [], [], [], []
    n = 0
    train = test = 0
    for c, name in enumerate(CUB_CLASSES, 1):
        folder = f"{c:03d}.{name}"
        classes.append(f"{c} {folder}")
        for i in range(per_class):
            n += 1
            rel = f"{folder}/{name}_{i:04d}_{n}.jpg"
            files[f"CUB_200_2011/images/{rel}"] = jpeg_bytes(seed=n)
            images.append(f"{n} {rel}")
            labels.append(f"{n} {c}")
            is_train = i % 2 == 0
            split.append(f"{n} {1 if is_train else 0}")
            train += is_train
            test += not is_train
    files["CUB_200_2011/images.txt"] = ("\n".join(images) + "\n").encode()
    files["CUB_200_2011/image_class_labels.txt"] = ("\n".join(labels) + "\n").encode()
    files["CUB_200_2011/train_test_split.txt"] = ("\n".join(split) + "\n").encode()
    files["CUB_200_2011/classes.txt"] = ("\n".join(classes) + "\n").encode()
    files["CUB_200_2011/README"] = b"tiny CUB-like test set\n"
    return files, {"classes": CUB_CLASSES, "train": train, "test": test}


AIRCRAFT_VARIANTS = ["Boeing 737-200", "F-16A/B", "A300B4"]


def aircraft_files(per_class: int = 3, size: tuple[int, int] = (40, 50)) -> tuple[dict[str, bytes], dict]:
    root = "fgvc-aircraft-2013b/data"
    files: dict[str, bytes] = {f"{root}/variants.txt": ("\n".join(AIRCRAFT_VARIANTS) + "\n").encode()}
    trainval, test = [], []
    n = 1000000
    for v in AIRCRAFT_VARIANTS:
        for i in range(per_class):
            n += 1
            image_id = f"{n:07d}"
            files[f"{root}/images/{image_id}.jpg"] = jpeg_bytes(*size, seed=n)
            (trainval if i < per_class - 1 else test).append(f"{image_id} {v}")
    files[f"{root}/images_variant_trainval.txt"] = ("\n".join(trainval) + "\n").encode()
    files[f"{root}/images_variant_test.txt"] = ("\n".join(test) + "\n").encode()
    files[f"{root}/images_family_trainval.txt"] = b"0000001 Boeing 737\n"
    return files, {"classes": AIRCRAFT_VARIANTS, "train": len(trainval), "test": len(test)}


CAR_CLASSES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "smart fortwo Convertible 2012"]


def class_folder_files(prefix: str = "Stanford-Cars-dataset-main", per_class: int = 3) -> tuple[dict[str, bytes], dict]:
    files: dict[str, bytes] = {f"{prefix}/README.md": b"# mirror\n"}
    n = 0
    for split, k in (("train", per_class), ("test", per_class - 1)):
        for c in CAR_CLASSES:
            for i in range(k):
                n += 1
                files[f"{prefix}/{split}/{c}/{i:05d}.jpg"] = jpeg_bytes(seed=n)
    return files, {"classes": sorted(CAR_CLASSES), "train": per_class * 3, "test": (per_class - 1) * 3}


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _cifar_batch(n: int, seed: int, labels_key: str, num_classes: int) -> bytes:
    rng = np.random.default_rng(seed)
    batch = {
        "batch_label": f"batch {seed}",
        labels_key: [int(x) for x in rng.integers(0, num_classes, size=n)],
        "data": rng.integers(0, 255, size=(n, 3072), dtype=np.uint8),
        "filenames": [f"img_{seed}_{i}.png" for i in range(n)],
    }
    return pickle.dumps(batch, protocol=2)


def cifar10_files(per_batch: int = 4) -> tuple[dict[str, bytes], dict]:
    d = "cifar-10-batches-py"
    files = {f"{d}/data_batch_{i}": _cifar_batch(per_batch, i, "labels", 10) for i in range(1, 6)}
    files[f"{d}/test_batch"] = _cifar_batch(per_batch, 99, "labels", 10)
    files[f"{d}/batches.meta"] = pickle.dumps(
        {"label_names": CIFAR10_NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}, protocol=2
    )
    files[f"{d}/readme.html"] = b"<html></html>"
    return files, {"classes": CIFAR10_NAMES, "train": 5 * per_batch, "test": per_batch}


def cifar100_files(n: int = 6) -> tuple[dict[str, bytes], dict]:
    d = "cifar-100-python"
    names = [f"fine_{i}" for i in range(100)]
    files = {
        f"{d}/train": _cifar_batch(n, 1, "fine_labels", 100),
        f"{d}/test": _cifar_batch(n // 2, 2, "fine_labels", 100),
        f"{d}/meta": pickle.dumps({"fine_label_names": names, "coarse_label_names": ["c"] * 20}, protocol=2),
    }
    return files, {"classes": names, "train": n, "test": n // 2}


PET_BREEDS = ["Abyssinian", "american_bulldog", "Bengal"]  # class ids 1..3 in this order


def pets_archives() -> tuple[bytes, bytes, dict]:
    images: dict[str, bytes] = {}
    trainval, test = [], []
    for cid, breed in enumerate(PET_BREEDS, 1):
        species = 1 if breed[0].isupper() else 2
        for i in range(1, 5):
            name = f"{breed}_{i}"
            images[f"images/{name}.jpg"] = jpeg_bytes(seed=cid * 10 + i)
            (trainval if i <= 2 else test).append(f"{name} {cid} {species} {cid}")
    images["images/Abyssinian_100.mat"] = b"not an image, as in the real archive"
    ann = {
        "annotations/trainval.txt": ("\n".join(trainval) + "\n").encode(),
        "annotations/test.txt": ("\n".join(test) + "\n").encode(),
        "annotations/list.txt": b"#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n",
    }
    return tar_bytes(images), tar_bytes(ann), {"classes": PET_BREEDS, "train": len(trainval), "test": len(test)}


def intel_zip(per_class: int = 2) -> tuple[bytes, dict]:
    classes = ["buildings", "forest", "sea"]
    files: dict[str, bytes] = {}
    n = 0
    for split, k in (("seg_train", per_class), ("seg_test", 1)):
        for c in classes:
            for _i in range(k):
                n += 1
                files[f"{split}/{split}/{c}/{n}.jpg"] = jpeg_bytes(seed=n)
    files["seg_pred/seg_pred/9999.jpg"] = jpeg_bytes(seed=7)
    return zip_bytes(files), {"classes": classes, "train": per_class * 3, "test": 3}


# ------------------------------------------------------------------------------ MAT v5 writer

_MI = {"int8": 1, "uint8": 2, "int16": 3, "uint16": 4, "int32": 5, "uint32": 6, "single": 7, "double": 9}
_FMT = {"int8": "b", "uint8": "B", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "single": "f", "double": "d"}


def _elem(e: str, mtype: int, payload: bytes, small_ok: bool = True) -> bytes:
    if small_ok and len(payload) <= 4:
        return struct.pack(e + "I", (len(payload) << 16) | mtype) + payload.ljust(4, b"\0")
    return struct.pack(e + "II", mtype, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def mat_bytes(arrays: dict[str, list[float]], *, storage: str = "double", compressed: bool = True,
              big_endian: bool = False) -> bytes:
    """A MATLAB v5 file of 1xN double-class row vectors (values stored as ``storage``)."""
    e = ">" if big_endian else "<"
    header = b"MATLAB 5.0 MAT-file, written by the fgbench tests".ljust(116, b" ")
    header += b"\0" * 8 + struct.pack(e + "H", 0x0100) + (b"MI" if big_endian else b"IM")
    out = header
    for name, values in arrays.items():
        body = _elem(e, 6, struct.pack(e + "II", 6, 0), small_ok=False)  # flags: mxDOUBLE_CLASS
        body += _elem(e, 5, struct.pack(e + "ii", 1, len(values)), small_ok=False)  # dims 1xN
        body += _elem(e, 1, name.encode())
        body += _elem(e, _MI[storage], struct.pack(f"{e}{len(values)}{_FMT[storage]}", *values))
        matrix = struct.pack(e + "II", 14, len(body)) + body
        if compressed:
            z = zlib.compress(matrix)
            out += struct.pack(e + "II", 15, len(z)) + z
        else:
            out += matrix
    return out


def flowers_files(labels: list[int], trnid: list[int], valid: list[int], tstid: list[int]) -> dict[str, bytes]:
    imgs = {f"jpg/image_{i:05d}.jpg": jpeg_bytes(seed=i) for i in range(1, len(labels) + 1)}
    return {
        "102flowers.tgz": tar_bytes(imgs),
        "imagelabels.mat": mat_bytes({"labels": labels}, storage="uint8"),
        "setid.mat": mat_bytes({"trnid": trnid, "valid": valid, "tstid": tstid}, storage="uint16", compressed=False),
    }

"""``confusion.json`` (and, for many classes, ``confusion.npy``): the test confusion of the selected
model, written at the end of a run and read by ``fgbench runs show``, the TUI's run view and its
error analysis.

Up to ``DENSE_MAX_CLASSES`` classes the matrix is kept as it always was, a JSON list of rows under
``"matrix"`` (readable by hand, and what older runs hold). Past that a dense matrix is the problem:
10,000 classes (iNaturalist's size) make a 10^8-cell matrix, 800 MB as int64 and several GB as the
Python lists JSON needs, although a test split of N images fills at most N cells. So a large
confusion is kept as its non-zero cells only: ``confusion.npy``, an int64 array of
``(true, predicted, count)`` rows (written atomically, read with ``allow_pickle=False``), named by
``"cells_file"`` in ``confusion.json`` next to ``"num_classes"``. Readers get either form through
:func:`read_confusion`, and ``fgbench.report`` computes per-class accuracy and confused pairs from
the cells, never building the matrix.

numpy is imported only where a ``.npy`` file is written or read (it is not torch: the pure zone may
use it).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

from fgbench.atomic import atomic_write
from fgbench.rundir import files, layout

DENSE_MAX_CLASSES = 1000
"""Up to this many classes a confusion is a dense matrix (in memory, checkpoints and JSON)."""

CELLS_FILE = "confusion.npy"


def write_confusion(run_dir: str | os.PathLike[str], *, model: str, class_names: Sequence[str], epoch: int | None,
                    matrix: list[list[int]] | None = None, cells: Any = None, split: str = "test") -> None:
    """Write the run's confusion: a dense ``matrix`` (list of rows), or ``cells`` (an ``(n, 3)``
    integer array of non-zero ``(true, predicted, count)``), which goes to ``confusion.npy``."""
    doc: dict[str, Any] = {"split": split, "model": model, "class_names": list(class_names),
                           "num_classes": len(class_names), "epoch": epoch}
    run_dir = Path(run_dir)
    if cells is not None:
        import numpy as np

        arr = np.ascontiguousarray(np.asarray(cells, dtype=np.int64).reshape(-1, 3))
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        atomic_write(run_dir / CELLS_FILE, lambda f: f.write(buf.getvalue()))
        doc["cells_file"] = CELLS_FILE
    else:
        doc["matrix"] = matrix
    layout.write_json(run_dir / layout.CONFUSION_FILE, doc)  # written last: it names the cells file


def read_confusion(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``confusion.json`` with, for a large confusion, ``"cells"``: the list of ``[true, predicted,
    count]`` from ``confusion.npy``. None when there is none or it cannot be read."""
    run_dir = Path(run_dir)
    doc = layout.read_json(run_dir / layout.CONFUSION_FILE)
    if not isinstance(doc, dict) or not _well_formed(doc):
        return None  # a forged or damaged file is no confusion, never a traceback in a reader
    name = doc.get("cells_file")
    if name is None:
        return doc
    if not isinstance(name, str) or Path(name).name != name:  # only a file beside confusion.json
        return None
    try:
        import numpy as np

        raw = files.read_bytes(run_dir / name)  # guarded: a FIFO or a device here never blocks
        if raw is None:
            return None
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
    except (OSError, ValueError, EOFError, files.RunFileError):
        return None
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.dtype.kind not in "iu":
        return None
    return {**doc, "cells": arr.tolist()}


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _well_formed(doc: dict[str, Any]) -> bool:
    """``confusion.json`` has the types the trainer writes: unique class names (strings), a square
    matrix of counts, a string split and model, an integer epoch and class count."""
    names = doc.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)
                                  and len(set(names)) == len(names)):
        return False
    if any(doc.get(k) is not None and not isinstance(doc[k], str) for k in ("split", "model")):
        return False
    if any(doc.get(k) is not None and not _count(doc[k]) for k in ("epoch", "num_classes")):
        return False
    matrix = doc.get("matrix")
    if matrix is not None:
        if not isinstance(matrix, list):
            return False
        n = len(matrix)
        if not all(isinstance(row, list) and len(row) == n and all(_count(v) for v in row) for row in matrix):
            return False
    return True


def has_confusion(confusion: Any) -> bool:
    return isinstance(confusion, dict) and bool(confusion.get("matrix") or confusion.get("cells"))


def iter_cells(confusion: dict[str, Any]) -> Iterator[tuple[int, int, int]]:
    """The non-zero cells ``(true, predicted, count)`` of either form."""
    cells = confusion.get("cells")
    if cells is not None:
        for i, j, v in cells:
            if v:
                yield int(i), int(j), int(v)
        return
    for i, row in enumerate(confusion.get("matrix") or []):
        for j, v in enumerate(row):
            if v:
                yield i, j, int(v)


def class_count(confusion: dict[str, Any]) -> int:
    """How many classes the confusion covers (rows of a matrix; ``num_classes`` of cells)."""
    if confusion.get("cells") is not None:
        n = confusion.get("num_classes")
        return n if isinstance(n, int) and n >= 0 else len(confusion.get("class_names") or [])
    return len(confusion.get("matrix") or [])

"""``summary.json``, declared once: the trainer writes a :class:`Summary`, everyone else reads one.

The trainer rewrites the file atomically after every epoch and at the end; ``run_finished``
carries the same object. Readers get it through :func:`read_summary`, which checks every field's
type: a file that is not JSON, not UTF-8 or has a field of the wrong type makes the run
*damaged* (shown as such, with the reason), never a traceback in ``runs list`` or the TUI, and
never a wrong number read from a misplaced field.

Numbers: accuracies are percentages (0..100). ``best.raw`` and ``best.ema`` are each model's own
best epoch by ``select_on`` with the validation and test numbers *at that epoch*; ``last`` is the
last evaluated epoch; ``selected`` is the model whose best is the run's result (``"raw"`` or
``"ema"``, by ``select_on``). ``test_topk`` is the top-k accuracy for ``k = top_k`` (the recipe's
``eval.top_k``, at most the number of classes). Files written before these names (``test_top5``)
are read as the same field.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from fgbench.rundir import files
from fgbench.rundir.layout import SUMMARY_FILE, write_json


class SummaryError(ValueError):
    """summary.json exists but is not a summary (the run is damaged)."""


def _check_num(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SummaryError(f"{where}: expected a number, got {value!r}"[:200])
    return value


def _check_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SummaryError(f"{where}: expected an integer, got {value!r}"[:200])
    return value


def _check_str(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SummaryError(f"{where}: expected a string, got {value!r}"[:200])
    return value


def _check_dict(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SummaryError(f"{where}: expected a table, got {value!r}"[:200])
    return value


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _legacy(d: dict[str, Any] | None) -> dict[str, Any] | None:
    """Summaries written before top-k was named for what it holds called it ``test_top5``."""
    if d is not None and "test_top5" in d and "test_topk" not in d:
        d = {("test_topk" if k == "test_top5" else k): v for k, v in d.items()}
    return d


def _check_keys(d: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(d) - known)
    if unknown:
        raise SummaryError(f"{where}: {', '.join(unknown)} not declared in fgbench.rundir.summary")


@dataclass
class ModelBest:
    """One model's best epoch and its numbers at that epoch."""

    epoch: int | None = None
    val_top1: float | None = None
    test_top1: float | None = None
    test_topk: float | None = None

    @classmethod
    def parse(cls, data: Any, where: str) -> "ModelBest | None":
        d = _legacy(_check_dict(data, where))
        if d is None:
            return None
        return cls(
            epoch=_check_int(d.get("epoch"), f"{where}.epoch"),
            **{k: _check_num(d.get(k), f"{where}.{k}") for k in ("val_top1", "test_top1", "test_topk")},
        )


@dataclass
class SplitNumbers:
    """One model's numbers at one (the last) epoch."""

    val_top1: float | None = None
    test_top1: float | None = None
    test_topk: float | None = None

    @classmethod
    def parse(cls, data: Any, where: str) -> "SplitNumbers | None":
        d = _legacy(_check_dict(data, where))
        if d is None:
            return None
        return cls(**{k: _check_num(d.get(k), f"{where}.{k}") for k in ("val_top1", "test_top1", "test_topk")})


@dataclass
class LastEpoch:
    epoch: int | None = None
    raw: SplitNumbers | None = None
    ema: SplitNumbers | None = None

    def of(self, model: str) -> SplitNumbers | None:
        """The numbers of ``model`` (``raw`` or ``ema``)."""
        return self.raw if model == "raw" else self.ema if model == "ema" else None


@dataclass
class Summary:
    run_id: str | None = None
    name: str | None = None
    status: str | None = None
    dataset: str | None = None
    arch: str | None = None
    epochs_done: int | None = None
    total_epochs: int | None = None
    step: int | None = None
    duration_s: float | None = None
    images_per_s: float | None = None
    peak_mem_mb: float | None = None
    train_images: int | None = None
    val_images: int | None = None
    test_images: int | None = None
    select_on: str | None = None
    top_k: int | None = None
    best: dict[str, ModelBest | None] = field(default_factory=lambda: {"raw": None, "ema": None})
    selected: str | None = None
    last: LastEpoch | None = None
    final_test_sizes: dict[str, dict[str, float | None]] = field(default_factory=dict)
    """test size (as a string) -> {"raw": top-1, "ema": top-1} of each model's best weights"""
    skipped_images: int = 0
    data_wait_frac: float | None = None
    """the share of the training steps' wall time spent waiting for the next batch (0..1)"""
    gpu_util: float | None = None
    """the GPU's mean utilisation (percent) over the run's health samples; None without a GPU"""

    # ------------------------------------------------------------------ (de)serialising

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, *, strict: bool = False) -> "Summary":
        """Check every field; raises :class:`SummaryError` naming the first wrong one. ``strict``
        (the trainer's own check before it writes): a key this type does not declare is an error
        too, so nothing the trainer computes is dropped on the way to the file."""
        d = _check_dict(data, "summary")
        if d is None:
            raise SummaryError("summary: expected a table, got null")
        if strict:
            _check_keys(d, {f.name for f in fields(cls)}, "summary")
            for m, entry in (_check_dict(d.get("best"), "best") or {}).items():
                _check_keys(entry or {}, {f.name for f in fields(ModelBest)}, f"best.{m}")
            last_keys = _check_dict(d.get("last"), "last") or {}
            _check_keys(last_keys, {f.name for f in fields(LastEpoch)}, "last")
            for m in ("raw", "ema"):
                _check_keys(last_keys.get(m) or {}, {f.name for f in fields(SplitNumbers)}, f"last.{m}")
        s = cls()
        for f in fields(cls):
            if f.name in ("best", "last", "final_test_sizes"):
                continue
            value = d.get(f.name, getattr(s, f.name))
            kind = f.type if isinstance(f.type, str) else str(f.type)
            if kind.startswith("int"):
                value = _check_int(value, f.name)
            elif kind.startswith("float"):
                value = _check_num(value, f.name)
            else:
                value = _check_str(value, f.name)
            setattr(s, f.name, value)
        if s.skipped_images is None:
            s.skipped_images = 0
        best = _check_dict(d.get("best"), "best") or {}
        s.best = {m: ModelBest.parse(best.get(m), f"best.{m}") for m in ("raw", "ema")}
        last = _check_dict(d.get("last"), "last")
        if last is not None:
            s.last = LastEpoch(
                epoch=_check_int(last.get("epoch"), "last.epoch"),
                raw=SplitNumbers.parse(last.get("raw"), "last.raw"),
                ema=SplitNumbers.parse(last.get("ema"), "last.ema"),
            )
        sizes = _check_dict(d.get("final_test_sizes"), "final_test_sizes") or {}
        for size, by_model in sizes.items():
            by_model = _check_dict(by_model, f"final_test_sizes.{size}") or {}
            s.final_test_sizes[str(size)] = {m: _check_num(by_model.get(m), f"final_test_sizes.{size}.{m}")
                                             for m in ("raw", "ema")}
        if s.selected not in (None, "raw", "ema"):
            raise SummaryError(f"selected: expected 'raw' or 'ema', got {s.selected!r}"[:200])
        return s

    def headline(self) -> dict[str, Any]:
        """The run's headline numbers, flat, None where absent: one rule for every table and text
        (``fgbench runs list / compare / show``, the end of ``fgbench run``, the TUI's Runs pane,
        Compare and monitor). Each model, raw and EMA, at *its own* best epoch by ``select_on``
        (``best_epoch``, ``val_top1``, ``test_top1_best``... and their ``ema_`` twins), never a
        maximum over test epochs and never "whichever model looks better": that choice would hide
        which model a number is from. ``test@SIZE`` / ``ema_test@SIZE`` in size order."""
        raw, ema = self.best.get("raw") or ModelBest(), self.best.get("ema") or ModelBest()
        last = self.last or LastEpoch()
        out: dict[str, Any] = {
            "epochs_done": self.epochs_done,
            "total_epochs": self.total_epochs,
            "best_epoch": raw.epoch,
            "val_top1": _float(raw.val_top1),
            "test_top1_best": _float(raw.test_top1),
            "test_topk_best": _float(raw.test_topk),
            "test_top1_last": _float((last.raw or SplitNumbers()).test_top1),
            "ema_best_epoch": ema.epoch,
            "ema_val_top1": _float(ema.val_top1),
            "ema_test_top1_best": _float(ema.test_top1),
            "ema_test_top1_last": _float((last.ema or SplitNumbers()).test_top1),
            "duration_s": _float(self.duration_s),
            "images_per_s": _float(self.images_per_s),
            "peak_mem_mb": _float(self.peak_mem_mb),
            "data_wait_frac": _float(self.data_wait_frac),
            "gpu_util": _float(self.gpu_util),
            "step": self.step,
            "select_on": self.select_on,
        }
        for size, by_model in sorted(self.final_test_sizes.items(), key=lambda kv: size_order(kv[0])):
            out[f"test@{size}"] = _float(by_model.get("raw"))
            out[f"ema_test@{size}"] = _float(by_model.get("ema"))
        return out

    @property
    def result(self) -> ModelBest | None:
        """The run's result: the selected model's best epoch (None before the first evaluation)."""
        return self.best.get(self.selected or "raw")


def size_order(size: str) -> tuple[int, str]:
    """Sort key of a ``final_test_sizes`` key: numerically, anything else after."""
    try:
        return (int(size), "")
    except ValueError:
        return (1 << 30, size)


def write_summary(run_dir: str | os.PathLike[str], summary: Summary) -> dict[str, Any]:
    data = summary.to_json()
    write_json(Path(run_dir) / SUMMARY_FILE, data)
    return data


def read_summary(run_dir: str | os.PathLike[str]) -> Summary | None:
    """The run's summary, None when there is none yet; :class:`SummaryError` when it is damaged
    (read through :mod:`fgbench.rundir.files`: a FIFO, a device, a huge or deeply nested file is
    damage, never a hang or a traceback)."""
    path = Path(run_dir) / SUMMARY_FILE
    try:
        data = files.read_json(path)
    except files.RunFileError as err:
        raise SummaryError(str(err)) from None
    if data is None:
        return None
    try:
        return Summary.from_json(data)
    except SummaryError as err:
        raise SummaryError(f"{SUMMARY_FILE}: {err}") from None

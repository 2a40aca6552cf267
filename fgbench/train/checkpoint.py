"""Checkpoints: plain data that ``torch.load(weights_only=True)`` accepts, written atomically.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only (no pickled classes), so
loading one never runs code from the file. It is written to a temporary file in the same
directory, flushed to disk, then renamed over the old one: a crash (or SIGKILL) mid-write leaves
the previous checkpoint intact. RNG states are stored as tensors/lists: torch CPU (and CUDA) generator
states and Python's ``random`` state; numpy's global generator is not used by the trainer.

A file that cannot be loaded is one :class:`CheckpointError` line naming it: damaged (truncated,
empty, not a checkpoint) or refused (it holds a Python object that a plain-data checkpoint never
contains, which the safe loader would not run). torch's own message is not shown: it suggests
loading with ``weights_only=False``, i.e. running the file's code, which fgbench never does.

Temporary files of an atomic write that a kill interrupted (``.last.pt.XXXX.tmp``) are removed by
:func:`remove_stale_temps`, which the trainer calls on resume and at the end of a run.

The trainer writes its checkpoints in the background (:class:`BackgroundSaver`): the state is copied
to CPU memory at the checkpoint (a snapshot, so the next steps cannot change what is written), then
one thread serialises it, fsyncs and renames it while training goes on. One write at a time, in
order: a new save first waits for the previous one, and its error (a full disk) is raised then, in
the training thread. A kill at any moment still leaves the previous complete file or the new one
(the write is the same atomic write), and the ``checkpoint`` event is written only once the file is
in place.
"""

from __future__ import annotations

import os
import random
import re
import threading
from pathlib import Path
from typing import Any, Callable

import torch

from fgbench.atomic import atomic_write, stale_temps
from fgbench.errors import UserError

FORMAT = 1


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": _py_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _py_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def cpu_state_dict(module_or_state: Any) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a state dict (what goes into a checkpoint or a best-model snapshot)."""
    sd = module_or_state.state_dict() if hasattr(module_or_state, "state_dict") else module_or_state
    return {k: v.detach().to("cpu", copy=True) for k, v in sd.items()}


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    atomic_write(path, lambda f: torch.save(payload, f))


class Frozen:
    """A part of a checkpoint's payload that is already a copy nothing changes (e.g. the best
    weights' CPU copy, taken at the same step): :func:`snapshot` keeps it as it is."""

    def __init__(self, value: Any):
        self.value = value


def snapshot(obj: Any) -> Any:
    """A copy of ``obj`` (dicts, lists and tuples of tensors and plain values) that nothing the
    trainer does later can change: every tensor copied to CPU memory (a CPU-GPU sync point on CUDA),
    every container rebuilt; strings and numbers are immutable and shared; a :class:`Frozen` part is
    used as it is, not copied again."""
    if isinstance(obj, Frozen):
        return obj.value
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [snapshot(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(snapshot(v) for v in obj)
    return obj


class BackgroundSaver:
    """Writes checkpoints on a background thread, one at a time and in order (see the module's
    docstring). ``background=False`` writes in the calling thread (the old path, for comparison)."""

    def __init__(self, *, background: bool = True):
        self.background = background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, path: str | os.PathLike[str], payload: dict[str, Any], *, copy: bool = True,
             done: Callable[[], object] | None = None) -> None:
        """Write ``payload`` to ``path`` atomically, after the previous write ended; ``copy``: take a
        :func:`snapshot` of it first (False when the caller built it from copies nothing changes);
        ``done`` is called once the file is in place (from the writing thread)."""
        self.wait()  # at most one snapshot in memory besides the live state; raises the previous error
        data = snapshot(payload) if copy else payload
        if not self.background:
            save_checkpoint(path, data)
            if done is not None:
                done()
            return
        self._thread = threading.Thread(target=self._write, args=(path, data, done), name="fgbench-checkpoint",
                                        daemon=True)
        self._thread.start()

    def _write(self, path: str | os.PathLike[str], data: dict[str, Any], done: Callable[[], object] | None) -> None:
        try:
            save_checkpoint(path, data)
            if done is not None:
                done()
        except BaseException as err:  # noqa: BLE001 - handed to the training thread by wait()
            self._error = err

    def wait(self) -> None:
        """Return once no write is in progress; raise the error of a write that failed."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        err, self._error = self._error, None
        if err is not None:
            raise err

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class CheckpointError(UserError):
    """A checkpoint file that cannot be used (one line, naming the file)."""


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded with ``weights_only=True``; ``CheckpointError`` if it
    is damaged, refused or not an fgbench checkpoint."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as err:  # noqa: BLE001 - torch raises RuntimeError, UnpicklingError, EOFError, ...
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found:
            raise CheckpointError(f"{path}: refused: it holds a Python object ({found.group(1)}) that a plain-data "
                                  "checkpoint never contains; fgbench does not load it") from None
        raise CheckpointError(f"{path}: damaged or not a checkpoint ({_reason(err)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an fgbench checkpoint (format {FORMAT})")
    return ckpt


def _reason(err: BaseException) -> str:
    text = str(err).splitlines()[0].split(". ")[0] if str(err).strip() else ""
    if not text or "weights_only" in text or "Weights only" in text:
        return "truncated" if isinstance(err, EOFError) else "unreadable"
    return text[:160]


def remove_stale_temps(ckpt_dir: str | os.PathLike[str], names: tuple[str, ...]) -> list[Path]:
    """Delete what interrupted atomic writes of ``names`` (e.g. ``last.pt``) left in ``ckpt_dir``."""
    removed = []
    for name in names:
        for tmp in stale_temps(Path(ckpt_dir) / name):
            try:
                tmp.unlink()
                removed.append(tmp)
            except FileNotFoundError:
                pass
    return removed

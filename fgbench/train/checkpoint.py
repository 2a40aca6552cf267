"""Checkpoints: plain data that ``torch.load(weights_only=True)`` accepts, written atomically.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only (no pickled classes), so
loading one never runs code from the file. It is written to a temporary file in the same
directory, flushed to disk, then renamed over the old one: a crash (or SIGKILL) mid-write leaves
the previous checkpoint intact. RNG states are stored as tensors/lists: torch CPU (and CUDA) generator
states and Python's ``random`` state; numpy's global generator is not used by the trainer.
"""

from __future__ import annotations

import os
import random
from typing import Any

import torch

from fgbench.atomic import atomic_write

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


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not an fgbench checkpoint (format {FORMAT})")
    return ckpt

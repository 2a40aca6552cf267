"""Fixtures for the trainer tests: tiny generated datasets and helpers to run `fgbench run`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fgbench.data import synthetic


@pytest.fixture(autouse=True)
def _one_thread():
    # 2 shared cores: one intra-op thread keeps tests fast and results bit-reproducible.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """A 10-class folder dataset of 16x16 images, 16 train / 6 test per class (the synthetic generator)."""
    root = tmp_path_factory.mktemp("tiny") / "data"
    synthetic.generate(root, train_per_class=16, test_per_class=6, size=16)
    return root


@pytest.fixture(scope="session")
def full_synthetic(shared_data_dir) -> Path:
    return synthetic.ensure_synthetic(shared_data_dir / "synthetic")


def tiny_recipe(root: Path, **sections) -> str:
    """TOML text of a small, fast recipe on ``root`` (a folder dataset); ``sections`` extend the tables
    (``optim`` and ``schedule``, being unions, are replaced whole)."""
    base = {
        "name": "tiny",
        "data": {"dataset": "folder", "root": str(root), "train_size": 16, "test_size": 16, "train_crop": "pad_crop",
                 "crop_padding": 2, "test_crop": "none", "normalize": "imagenet", "val_fraction": 0.2,
                 "batch_size": 16, "workers": 0, "loader": "standard"},
        "model": {"arch": "small_cnn"},
        "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
        "schedule": {"name": "cosine", "epochs": 3, "warmup_epochs": 0.5, "warmup": "quadratic"},
        "runtime": {"device": "cpu", "seed": 1, "log_every_steps": 2},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key not in ("optim", "schedule"):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    import tomli_w

    return tomli_w.dumps(base)


def write_recipe(tmp_path: Path, root: Path, name: str = "r.toml", **sections) -> Path:
    p = tmp_path / name
    p.write_text(tiny_recipe(root, **sections), encoding="utf-8")
    return p


def events_of(run_dir: Path) -> list[dict]:
    from fgbench.rundir import events as metrics

    return metrics.read_events(run_dir / "metrics.jsonl")


def last_per_epoch(events: list[dict]) -> dict[int, dict]:
    out = {}
    for ev in events:
        if ev["event"] == "epoch":
            out[ev["epoch"]] = ev
    return out


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())

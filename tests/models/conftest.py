from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _torch_one_thread():
    # The CI machine has 2 cores shared by everything; one intra-op thread per test process.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    # Tests never download: torchvision weights must come from a private, empty hub cache.
    monkeypatch.setenv("FGBENCH_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch-home")))

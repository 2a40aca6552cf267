"""Sizes the recipe schema allows but memory does not (issue 21, item 10): a model whose parameters
alone cannot fit is refused before anything is built (one line, exit 2, no run directory); an
allocation that fails while training is one line (exit 1), the run recorded as failed."""

from __future__ import annotations

import pytest

from fgbench.cli import main
from fgbench.train import memory

from .conftest import events_of, write_recipe


def run_cli(*argv: str) -> int:
    return main(["run", *argv, "--progress", "none"])


def err_lines(capsys) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and "Warning" not in ln]


VIT = {"arch": "vit_cifar", "vit": {"patch_size": 4, "width": 64, "depth": 2, "heads": 2}}


def test_a_model_whose_parameters_cannot_fit_is_refused_before_it_is_built(tmp_path, tiny_folder, capsys,
                                                                          monkeypatch):
    from fgbench.recipe import load_recipe
    from fgbench.train.models import build_model

    recipe = write_recipe(tmp_path, tiny_folder, model=VIT, optim={"name": "adamw", "lr": 1e-3})
    r = load_recipe(recipe)
    params = sum(p.numel() for p in build_model(r.model, 10, data_cfg=r.data).model.parameters())  # a real build
    # AdamW with the recipe's EMA: weights, gradients, two moments (+ EMA): 4 or 5 fp32 copies
    copies = 4 + (1 if r.ema.enabled else 0)
    monkeypatch.setattr(memory, "device_memory", lambda device: params * 4 * copies - 1)  # one byte short
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 2
    lines = err_lines(capsys)
    assert len(lines) == 1 and "model: vit_cifar has" in lines[0] and f"{copies} times" in lines[0]
    assert f"{params / 1e6:.1f} million parameters" in lines[0]
    assert not run.exists()
    monkeypatch.setattr(memory, "device_memory", lambda device: params * 4 * copies)  # it just fits
    assert run_cli(str(recipe), "--run-dir", str(run), "--set", "schedule.epochs=1") == 0


def test_a_vit_of_width_4096_and_depth_64_is_one_line_not_the_allocator(tmp_path, tiny_folder, capsys):
    import psutil

    if psutil.virtual_memory().total > 200 * 2**30:  # a machine that really holds 193 GB would train it
        pytest.skip("this machine has the memory for 13 billion parameters")
    vit = {"arch": "vit_cifar", "vit": {"patch_size": 4, "width": 4096, "depth": 64, "heads": 64}}
    recipe = write_recipe(tmp_path, tiny_folder, model=vit, optim={"name": "adamw", "lr": 1e-3})
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 2
    lines = err_lines(capsys)
    assert len(lines) == 1 and "13.0 billion parameters" in lines[0] and "smaller model" in lines[0]
    assert not run.exists()


def test_an_allocation_that_fails_while_training_is_one_line_and_a_failed_run(tmp_path, tiny_folder, capsys,
                                                                             monkeypatch):
    from fgbench.train import loop

    def oom(*a, **kw):  # what the CPU allocator raises for 2048 px images at batch 64
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 34359738368 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(loop, "forward_train", oom)
    recipe = write_recipe(tmp_path, tiny_folder)
    run = tmp_path / "run"
    assert run_cli(str(recipe), "--run-dir", str(run)) == 1
    lines = err_lines(capsys)
    assert len(lines) == 1, lines
    assert lines[0].startswith("out of memory on cpu (it tried to allocate 32.0 GB): 16 px images at batch 16")
    end = [e for e in events_of(run) if e["event"] == "run_finished"]
    assert end[-1]["status"] == "failed" and end[-1]["error"] == lines[0] and "Traceback" in end[-1]["traceback"]


@pytest.mark.parametrize(("optim", "ema", "copies"), [
    ({"name": "sgd", "momentum": 0.9}, False, 3),  # weights, gradients, one momentum buffer
    ({"name": "sgd", "momentum": 0.0}, False, 2),  # plain SGD keeps no state
    ({"name": "adam"}, False, 4),  # two moments
    ({"name": "radam"}, True, 5),  # two moments and the EMA copy
])
def test_training_copies_follow_the_optimizer_section(optim, ema, copies):
    # read off the recipe section (betas: the Adam family), so a new optimizer needs no list entry here
    from fgbench.recipe import Recipe

    assert memory.training_copies(Recipe(optim=optim, ema={"enabled": ema})) == copies

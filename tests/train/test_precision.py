"""`runtime.precision = "auto"`: how it resolves (with a faked capability probe; this machine has no
GPU), that a run trains in what it resolved to and records it, and that a CPU run with auto is fp32."""

from __future__ import annotations

import pytest
import torch

from fgbench.recipe import load_recipe, validate_recipe
from fgbench.train import plan

from .conftest import events_of, write_recipe
from .test_run import run_cli

CUDA = torch.device("cuda", 0)  # a device object only: nothing is allocated on it
CPU = torch.device("cpu")


def _probe(answer: bool, seen: list | None = None):
    def probe(device: torch.device) -> bool:
        if seen is not None:
            seen.append(device)
        return answer

    return probe


def test_auto_is_bf16_on_a_cuda_device_with_native_bf16_and_fp32_elsewhere() -> None:
    seen: list = []
    value, why = plan.resolve_precision("auto", CUDA, bf16_native=_probe(True, seen))
    assert value == "bf16" and why.startswith('runtime.precision = "auto": ') and seen == [CUDA]
    value, why = plan.resolve_precision("auto", CUDA, bf16_native=_probe(False))
    assert value == "fp32" and "no native bf16" in why
    seen.clear()
    value, why = plan.resolve_precision("auto", CPU, bf16_native=_probe(True, seen))
    assert value == "fp32" and "CPU" in why and seen == []  # the CPU is never asked: auto is fp32 there


@pytest.mark.parametrize("written", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("device,native", [(CUDA, True), (CUDA, False), (CPU, True)])
def test_a_written_precision_is_kept_whatever_the_device(written, device, native) -> None:
    assert plan.resolve_precision(written, device, bf16_native=_probe(native)) == (
        written, f'runtime.precision = "{written}"')


def test_with_precision_changes_that_field_only() -> None:
    r = validate_recipe({"name": "x", "runtime": {"precision": "auto", "seed": 7}})
    out = plan.with_precision(r, "bf16")
    assert out.runtime.precision == "bf16" and r.runtime.precision == "auto"
    assert out.model_dump(exclude={"runtime"}) == r.model_dump(exclude={"runtime"})
    assert out.runtime.model_dump(exclude={"precision"}) == r.runtime.model_dump(exclude={"precision"})


def _losses(run) -> list[float]:
    return [e["loss"] for e in events_of(run) if e["event"] == "step"]


def test_a_cpu_run_with_auto_trains_in_fp32_and_records_it(tmp_path, tiny_folder) -> None:
    sched = {"name": "cosine", "epochs": 1, "warmup_epochs": 0}
    auto = write_recipe(tmp_path, tiny_folder, "auto.toml", schedule=sched,
                        runtime={"device": "cpu", "seed": 1, "log_every_steps": 1, "precision": "auto"})
    fp32 = write_recipe(tmp_path, tiny_folder, "fp32.toml", schedule=sched,
                        runtime={"device": "cpu", "seed": 1, "log_every_steps": 1, "precision": "fp32"})
    assert run_cli(str(auto), "--run-dir", str(tmp_path / "auto")) == 0
    assert run_cli(str(fp32), "--run-dir", str(tmp_path / "fp32")) == 0
    ev = events_of(tmp_path / "auto")
    started = next(e for e in ev if e["event"] == "run_started")
    assert started["precision"] == {"precision": "fp32",
                                    "reason": 'runtime.precision = "auto": fp32 on the CPU (auto picks bf16 on CUDA only)'}
    assert started["recipe"]["runtime"]["precision"] == "fp32"
    assert load_recipe(tmp_path / "auto" / "recipe.toml").runtime.precision == "fp32"  # a resume keeps it
    assert any(e["message"].startswith('precision: fp32 (runtime.precision = "auto"') for e in ev if e["event"] == "log")
    # the same steps, bit for bit, as the recipe that says fp32 (one thread, same seed)
    assert _losses(tmp_path / "auto") and _losses(tmp_path / "auto") == _losses(tmp_path / "fp32")
    written = next(e for e in events_of(tmp_path / "fp32") if e["event"] == "run_started")
    assert written["precision"] == {"precision": "fp32", "reason": 'runtime.precision = "fp32"'}


def test_the_run_trains_in_what_auto_resolved_to(tmp_path, tiny_folder, monkeypatch) -> None:
    # a GPU with native bf16 cannot be faked for a whole run; the resolution can: the trainer, the
    # checkpoints and recipe.toml all follow the plan's resolved value, not the recipe's "auto"
    real = plan.resolve_precision
    monkeypatch.setattr(plan, "resolve_precision", lambda asked, device: real(asked, CUDA, bf16_native=_probe(True)))
    sched = {"name": "cosine", "epochs": 1, "warmup_epochs": 0}
    rt = {"device": "cpu", "seed": 1, "log_every_steps": 1}
    auto = write_recipe(tmp_path, tiny_folder, "auto.toml", schedule=sched, runtime={**rt, "precision": "auto"})
    bf16 = write_recipe(tmp_path, tiny_folder, "bf16.toml", schedule=sched, runtime={**rt, "precision": "bf16"})
    fp32 = write_recipe(tmp_path, tiny_folder, "fp32.toml", schedule=sched, runtime={**rt, "precision": "fp32"})
    for name, recipe in (("auto", auto), ("bf16", bf16), ("fp32", fp32)):
        assert run_cli(str(recipe), "--run-dir", str(tmp_path / name)) == 0
    started = next(e for e in events_of(tmp_path / "auto") if e["event"] == "run_started")
    assert started["precision"]["precision"] == "bf16" and "natively" in started["precision"]["reason"]
    assert load_recipe(tmp_path / "auto" / "recipe.toml").runtime.precision == "bf16"
    from fgbench.train import checkpoint as C

    assert C.load_checkpoint(tmp_path / "auto" / "checkpoints" / "last.pt")["recipe"]["runtime"]["precision"] == "bf16"
    assert _losses(tmp_path / "auto") == _losses(tmp_path / "bf16") != _losses(tmp_path / "fp32")

"""runtime.tf32: what each choice does to PyTorch's TF32 switches on CUDA (set on a CPU machine too:
the switches are process-wide flags; a CUDA device object needs no GPU)."""

from __future__ import annotations

import pytest
import torch

from fgbench.recipe import RecipeError, validate_recipe
from fgbench.train.plan import setup_runtime


@pytest.fixture(autouse=True)
def _restore_flags():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    yield
    (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
     torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) = saved


def _flags(tf32, precision, device="cuda"):
    # start from the opposite of what we expect, so that "left alone" cannot pass by accident
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = False
    runtime = {"precision": precision} if tf32 is None else {"precision": precision, "tf32": tf32}
    recipe = validate_recipe({"name": "t", "runtime": runtime})
    setup_runtime(recipe, torch.device(device))
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.mark.parametrize("tf32, precision, expected", [
    (None, "fp32", (False, False)),       # the default keeps fp32 recipes in true fp32
    ("auto", "fp32", (False, False)),
    ("auto", "bf16", (False, True)),      # autocast recipes: PyTorch 1.12+'s defaults
    ("auto", "fp16", (False, True)),
    (True, "fp32", (True, True)),
    (True, "bf16", (True, True)),
    (False, "bf16", (False, False)),
    ("pytorch", "fp32", (False, True)),
])
def test_each_choice_sets_matmul_and_convolution_tf32(tf32, precision, expected):
    assert _flags(tf32, precision) == expected


def test_the_cpu_leaves_the_switches_alone():
    assert _flags(True, "fp32", device="cpu") == (True, False)  # what _flags set before the call


@pytest.mark.parametrize("bad", [1, 0, "on", "yes"])
def test_only_the_four_values_are_accepted(bad):
    with pytest.raises(RecipeError, match="runtime.tf32"):
        validate_recipe({"name": "t", "runtime": {"tf32": bad}})

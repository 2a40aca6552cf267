"""The enhuiz and hoya-EvoNorm recipes load, carry the seed's settings, and build."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fgbench.recipe import NoPretrained, load_recipe
from fgbench.train.models import build_model, classifier, forward_train
from fgbench.train.models.norms import EvoNormS0

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
EZ = sorted(RECIPES.glob("ez_*.toml"))

# seed config -> (arch, expected model fields) from enhuiz/image-classification src/models/__init__.py
EZ_ROWS = {
    "resnet18": ("resnet18", {}),
    "resnet18_gn": ("resnet18", {"norm": "gn", "gn_groups": 16}),
    "resnet18_ms1": ("resnet18", {"mixstyle_layers": 1}),
    "resnet18_ms2": ("resnet18", {"mixstyle_layers": 2}),
    "resnet18_ms3": ("resnet18", {"mixstyle_layers": 3}),
    "resnet18_tnc": ("resnet18", {"num_classes": None}),
    "resnet18_wonorm": ("resnet18", {}),
    "resnet18_pcnorm": ("resnet18", {"normalizer_per_channel": True}),
    "resnet18_aug": ("resnet18", {}),
    "resnet18_clr1e-4": ("resnet18", {}),
    "resnet34": ("resnet34", {}),
    "vit_12x256_8x8": ("vit_cifar", {}),
    "vit_aux_3x4x256_8x8": ("vit_cifar", {}),
    "vitn_12x256_8x8": ("vitn_cifar", {}),
    "vitn_12x256_8x8_ra": ("vitn_cifar", {}),
    "vitn_12x256_8x8_dm": ("vitn_cifar", {}),
    "vitn_12x256_8x8_lt": ("vitn_cifar", {}),
    "vitn_12x256_8x8_ltv": ("vitn_cifar", {}),
    "toy_dilated": ("toy_dilated", {}),
}


def test_every_enhuiz_row_has_a_recipe() -> None:
    assert sorted(p.stem.removeprefix("ez_cifar100_") for p in EZ) == sorted(EZ_ROWS)


@pytest.mark.parametrize("path", EZ, ids=lambda p: p.stem)
def test_enhuiz_recipe_settings(path: Path) -> None:
    r = load_recipe(path)
    row = path.stem.removeprefix("ez_cifar100_")
    arch, fields = EZ_ROWS[row]
    assert r.name == path.stem and "enhuiz" in r.description and "test top-1" in r.description
    assert r.data.dataset == "cifar100" and r.data.train_size == r.data.test_size == 32
    assert r.data.batch_size == 128 and r.data.drop_last and r.data.val_fraction == 0
    assert r.data.normalize == ("none" if row == "resnet18_wonorm" else "learned")
    assert r.model.arch == arch and not r.model.cifar_stem and r.model.pretrained.source == "none"
    assert r.model.num_classes == fields.get("num_classes", 1000)
    for key, value in fields.items():
        assert getattr(r.model, key) == value, key
    assert r.optim.name == "adam" and r.optim.weight_decay == 0 and r.optim.grad_clip == 100
    assert r.optim.betas == (0.9, 0.999) and r.optim.eps == 1e-8
    assert r.schedule.max_steps == 5000 and r.schedule.stepping == "iteration"
    if row == "resnet18_clr1e-4":
        assert r.schedule.name == "constant" and r.optim.lr == 1e-4 and not r.schedule.warmup_steps
    else:
        assert r.schedule.name == "linear" and r.optim.lr == 2e-4
        assert r.schedule.min_lr == 1e-6  # DeepSpeed's WarmupDecayLR decays to warmup_min_lr, not to 0
        assert r.schedule.warmup_steps == 500 and r.schedule.warmup == "linear" and r.schedule.warmup_start_lr == 1e-6
    aug = row == "resnet18_aug"
    assert r.augment.hflip is aug and r.augment.rotation == (15 if aug else 0)
    assert r.data.train_crop == ("pad_crop" if aug else "resize")
    assert r.loss.label_smoothing == 0 and not r.ema.enabled and r.runtime.precision == "fp32"
    assert r.eval.select_on == "test"
    if arch.startswith("vit"):
        v = r.model.vit
        assert (v.patch_size, v.depth, v.width, v.heads, v.mlp_ratio, v.dropout) == (8, 12, 256, 4, 4.0, 0.1)
        assert v.aux_heads == (2 if "aux" in row else 0)
        assert v.rel_pos is row.endswith("_ra") and v.diag_mask is row.endswith("_dm")
        assert v.temperature == {"lt": "log", "ltv": "plain"}.get(row.rsplit("_", 1)[-1], "none")


@pytest.mark.parametrize("path", EZ, ids=lambda p: p.stem)
def test_enhuiz_recipe_builds_and_runs(path: Path) -> None:
    r = load_recipe(path)
    built = build_model(r.model, 100, data_cfg=r.data)
    m = built.model
    assert classifier(m).out_features == (r.model.num_classes or 100)
    assert (type(m).__name__ == "NormalizedModel") is (r.data.normalize == "learned")
    m.train()
    logits, aux = forward_train(m, torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, r.model.num_classes or 100) and len(aux) == r.model.vit.aux_heads * r.model.arch.startswith("vit")


def test_toy_dilated_is_four_dilated_convolutions_that_keep_the_resolution() -> None:
    from fgbench.train.models.cifar import ToyDilated

    torch.manual_seed(0)
    m = ToyDilated(1000).eval()
    convs = [x for x in m.modules() if isinstance(x, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.dilation, c.padding) for c in convs] == [
        (32, (3, 3), (d, d), (d, d)) for d in (1, 2, 4, 8)]
    assert m.fc.in_features == 32 and m.fc.out_features == 1000
    # an impulse at the centre of a 32x32 input reaches exactly 1 + 2 + 4 + 8 = 15 pixels each way
    x = torch.zeros(1, 3, 32, 32)
    y = x.clone()
    y[0, :, 16, 16] = 1.0
    with torch.no_grad():
        diff = (m.features(y) - m.features(x)).abs().sum(dim=(0, 1))
    assert diff.shape == (32, 32)
    rows = diff.sum(dim=1).nonzero().flatten()
    assert (int(rows.min()), int(rows.max())) == (16 - 15, 16 + 15)


def test_hoya_evonorm_recipe_builds_with_evonorm() -> None:
    r = load_recipe(RECIPES / "hy_intel_bawcs_e.toml")
    assert r.model.arch == "resnet50" and r.model.norm == "evonorm"
    assert r.model.pretrained.source == "torchvision" and r.model.pretrained.weights == "IMAGENET1K_V1"
    assert "BAWCS + E" in r.description and "93.70" in r.description
    # identical to the BAWCS row apart from the norm (and its name, description and the seed's number)
    base = load_recipe(RECIPES / "hy_intel_bawcs.toml")
    mine, theirs = r.model_dump(), base.model_dump()
    for d in (mine, theirs):
        d.pop("name"), d.pop("description"), d.pop("reference"), d["model"].pop("norm")
    assert mine == theirs
    # built without the ImageNet file (tests are offline): the same model from scratch
    built = build_model(r.model.model_copy(update={"pretrained": NoPretrained()}), 6)
    m = built.model
    assert not any(isinstance(x, torch.nn.modules.batchnorm._NormBase) for x in m.modules())
    assert sum(isinstance(x, EvoNormS0) for x in m.modules()) == 53
    logits, _ = forward_train(m.train(), torch.rand(2, 3, 64, 64))
    assert logits.shape == (2, 6)

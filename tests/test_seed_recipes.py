"""Every file in recipes/ loads, and the seed recipes carry the seeds' settings.

The expectations below are written from the seeds' README tables and the settings read from their
code (``shared/seeds/``), independently of the recipe files: a typo in a recipe, a row left out or
an extra file fails here. hoya012's rows are checked by decoding the row label itself
(B, A, W, C, S, M, CM, R, RA, EN, RN), the way the seed's README defines those letters.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from fgbench.recipe import Recipe, load_recipe, recipe_to_dict

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
ALL_FILES = sorted(RECIPES.glob("*.toml"))
# Written by another part of the project (the EvoNorm row); loaded by the first test like every file.
NOT_OURS = {"hy_intel_bawcs_e"}


def get(recipe: Recipe, path: str) -> Any:
    obj: Any = recipe
    for part in path.split("."):
        m = re.fullmatch(r"(\w+)\[(\d+)\]", part)
        obj = getattr(obj, m.group(1))[int(m.group(2))] if m else getattr(obj, part)
    return list(obj) if isinstance(obj, tuple) else obj


@pytest.mark.parametrize("path", ALL_FILES, ids=[p.stem for p in ALL_FILES])
def test_every_recipe_file_loads_and_is_named_after_its_file(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert recipe.description.strip(), f"{path.name}: a recipe says what it is for"


# ------------------------------------------------------------------------ SimpleClassification

SC_COMMON = {
    "optim.name": "sgd", "optim.momentum": 0.9, "optim.nesterov": False, "optim.weight_decay": 5e-4,
    "optim.no_decay_norm_bias": False,
    "schedule.name": "cosine", "schedule.warmup": "quadratic", "schedule.warmup_epochs": 5,
    "schedule.warmup_start_lr": 0.0, "schedule.min_lr": 1e-4, "schedule.stepping": "iteration",
    "data.batch_size": 64, "data.drop_last": True, "data.workers": 2,
    "augment.hflip": True, "augment.mixup_alpha": 0.0, "augment.cutmix_alpha": 0.0, "augment.randaugment_ops": 0,
    "loss.label_smoothing": 0.0, "runtime.precision": "fp16", "model.zero_init_residual": False,
    # the seed selects on test: reproduced, and said so in the description
    "eval.select_on": "test", "data.val_fraction": 0.0,
}
SC_EMA = {"ema.enabled": True, "ema.decay": 0.9998, "ema.ramp_steps": 2000, "ema.every": 1}
SC_FG = {  # CUB / CARS preprocessing
    "data.train_crop": "random_resized", "data.crop_scale": [0.08, 1.0], "data.test_crop": "ratio",
    "data.test_resize_ratio": 1.14, "data.normalize": "imagenet", "model.cifar_stem": False,
}
SC_CIFAR = {
    "data.train_size": 32, "data.test_size": 32, "data.train_crop": "pad_crop", "data.crop_padding": 4,
    "data.test_crop": "none", "data.normalize": "explicit", "model.cifar_stem": True, "model.arch": "resnet18",
}
CIFAR_CONSTANTS = {
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]),  # kuangliu's std, as the seed
    "cifar100": ([0.5071, 0.4867, 0.4408], [0.2675, 0.2565, 0.2761]),
}
SC_DATASETS = {"cub": "cub200", "cars": "stanford_cars", "cifar10": "cifar10", "cifar100": "cifar100"}

# Baseline table: LR 0.05, from scratch; (dataset, arch) -> (raw, EMA) as reported.
SC_BASELINE = {
    ("cub", "resnet18"): ("60.74", "64.64"), ("cars", "resnet18"): ("87.33", "87.54"),
    ("cifar10", "resnet18"): ("95.31", "95.62"), ("cifar100", "resnet18"): ("79.13", "79.11"),
    ("cub", "resnet50"): ("57.16", "63.43"), ("cars", "resnet50"): ("88.87", "89.27"),
}
# Pretraining table (EMA, LR 0.005, 500 epochs at 224): row -> (arch, pretrained, CUB, CARS).
SC_PRETRAINED = {
    "r18_in1k": ("resnet18", {"model.pretrained.source": "torchvision", "model.pretrained.weights": "IMAGENET1K_V1"},
                 "77.11", "88.42"),
    "r50_in1k": ("resnet50", {"model.pretrained.source": "torchvision", "model.pretrained.weights": "IMAGENET1K_V2"},
                 "84.47", "91.38"),
    "r50_moco": ("resnet50", {"model.pretrained.source": "moco"}, "79.01", "92.33"),
}
# FixRes table (R50 IN1k V2, EMA): row -> (stage-1 epochs, train size, stage 2?, CUB 224/448, CARS 224/448)
SC_FIXRES = {
    "train224": (500, 224, False, ("84.47", "73.86"), ("91.38", "91.58")),
    "train448": (500, 448, False, ("78.56", "85.71"), ("79.23", "91.88")),
    "two_stage": (400, 224, True, ("82.59", "86.07"), ("87.46", "92.18")),
}


def sc_expectations() -> dict[str, tuple[dict[str, Any], list[str]]]:
    out: dict[str, tuple[dict[str, Any], list[str]]] = {}
    short = {"resnet18": "r18", "resnet50": "r50"}
    for (ds, arch), (raw, ema) in SC_BASELINE.items():
        for with_ema in (False, True):
            exp = {**SC_COMMON, "data.dataset": SC_DATASETS[ds], "model.arch": arch, "optim.lr": 0.05,
                   "model.pretrained.source": "none", "model.init": "pytorch",
                   "schedule.epochs": 200 if ds.startswith("cifar") else 500}
            if ds.startswith("cifar"):
                mean, std = CIFAR_CONSTANTS[ds]
                exp |= SC_CIFAR | {"data.mean": mean, "data.std": std}
            else:
                exp |= SC_FG | {"data.train_size": 224, "data.test_size": 224}
            exp |= SC_EMA if with_ema else {"ema.enabled": False}
            name = f"sc_{ds}_{short[arch]}" + ("_ema" if with_ema else "")
            out[name] = (exp, [ema, raw] if with_ema else [raw])
    for row, (arch, pre, cub, cars) in SC_PRETRAINED.items():
        for ds, reported in (("cub", cub), ("cars", cars)):
            exp = {**SC_COMMON, **SC_FG, **SC_EMA, **pre, "data.dataset": SC_DATASETS[ds], "model.arch": arch,
                   "optim.lr": 0.005, "schedule.epochs": 500, "data.train_size": 224, "data.test_size": 224,
                   # the seed's own ResNets keep PyTorch's default init under weights that do not come from torchvision
                   "model.init": "default" if pre["model.pretrained.source"] == "torchvision" else "pytorch"}
            out[f"sc_{ds}_{row}_ema"] = (exp, [reported])
    for row, (epochs, size, two_stage, cub, cars) in SC_FIXRES.items():
        for ds, reported in (("cub", cub), ("cars", cars)):
            exp = {**SC_COMMON, **SC_FG, **SC_EMA, "data.dataset": SC_DATASETS[ds], "model.arch": "resnet50",
                   "model.pretrained.source": "torchvision", "model.pretrained.weights": "IMAGENET1K_V2",
                   "optim.lr": 0.005, "schedule.epochs": epochs, "data.train_size": size, "data.test_size": size,
                   "eval.final_test_sizes": [224, 448]}
            if two_stage:
                exp |= {"stages[0].epochs": 100, "stages[0].train_size": 448, "stages[0].test_size": 448,
                        "stages[0].lr": 0.001, "stages[0].min_lr": 1e-4, "stages[0].warmup_epochs": 5,
                        "stages[0].init_from": "best_ema", "stages[0].trainable": "all",
                        "stages[0].new_optimizer": True}
            out[f"sc_{ds}_r50_fixres_{row}"] = (exp, list(reported))
    return out


# ------------------------------------------------------------------------------------ cyizhuo

CY_COMMON = {
    "model.arch": "resnet50", "model.pretrained.source": "torchvision", "model.pretrained.weights": "IMAGENET1K_V1",
    "data.train_size": 448, "data.test_size": 448, "data.train_crop": "resize_crop", "data.train_resize": [512, 512],
    "data.crop_padding": 8, "data.test_crop": "fixed", "data.test_resize": [512, 512], "data.normalize": "imagenet",
    "data.batch_size": 64, "data.drop_last": True, "augment.hflip": True,
    "optim.name": "sgd", "optim.lr": 0.025, "optim.momentum": 0.9, "optim.nesterov": False,
    "optim.weight_decay": 5e-4, "optim.no_decay_norm_bias": False,
    "schedule.name": "cosine", "schedule.epochs": 128, "schedule.warmup_epochs": 0, "schedule.min_lr": 0.0,
    "schedule.stepping": "epoch",
    "loss.label_smoothing": 0.1, "loss.smoothing_style": "cyizhuo", "ema.enabled": False,
    "runtime.seed": 2020, "runtime.deterministic": True,
    "eval.select_on": "test", "data.val_fraction": 0.0,
}
# dataset -> (catalog name, fp32 column, apex column, torch.cuda.amp column)
CY_TABLE = {"cub": ("cub200", "86.74", "86.68", "86.59"), "aircraft": ("fgvc_aircraft", "93.25", "93.58", "92.86"),
            "cars": ("stanford_cars", "94.09", "94.30", "94.32")}


def cy_expectations() -> dict[str, tuple[dict[str, Any], list[str]]]:
    out = {}
    for ds, (dataset, fp32, apex, amp) in CY_TABLE.items():
        out[f"cy_{ds}_r50_448_fp32"] = (CY_COMMON | {"data.dataset": dataset, "runtime.precision": "fp32"}, [fp32])
        # apex O1 has no equivalent: the fp16 recipe stands for both mixed-precision columns
        out[f"cy_{ds}_r50_448_fp16"] = (CY_COMMON | {"data.dataset": dataset, "runtime.precision": "fp16"},
                                        [amp, apex, "apex"])
    return out


# ------------------------------------------------------------------------------------- hoya012

# README performance table: row label -> (validation, test). "BAWCS + E" belongs to another part.
HY_TABLE = {
    "B from scratch": ("86.68", "86.10"), "B": ("86.14", "87.93"), "B + A": ("93.34", "93.90"),
    "B + A + W": ("93.77", "94.17"), "B + A + W + C": ("93.66", "93.67"), "B + A + W + S": ("93.94", "93.77"),
    "B + A + W + C + S": ("93.80", "93.63"), "B + A + W + M": ("94.09", "94.20"),
    "B + A + W + S + M": ("93.69", "94.40"), "B + A + W + C + S + M": ("93.77", "93.77"),
    "BAWC + CM": ("94.44", "93.97"), "BWCS + R": ("93.27", "93.73"), "BAWCS + RA": ("93.94", "93.80"),
    "BWC + CM + R": ("94.23", "93.90"),
    "EN + AWCSM": ("93.48", "94.07"), "EN + AWC + CM": ("94.19", "94.17"), "EN + WCS + R": ("93.91", "94.30"),
    "EN + WC + CM + R": ("93.98", "94.27"),
    "RN + AWCSM": ("94.30", "94.63"), "RN + AWC + CM": ("93.91", "94.97"), "RN + WCS + R": ("93.91", "94.20"),
    "RN + WC + CM + R": ("94.48", "94.57"),
}
HY_COMMON = {
    "data.dataset": "intel_scenes", "data.train_size": 256, "data.test_size": 256, "data.train_crop": "resize",
    "data.test_crop": "resize", "data.normalize": "none", "data.val_fraction": 0.2, "data.val_seed": 42,
    "data.batch_size": 64, "data.drop_last": False, "augment.hflip": True, "runtime.seed": 42,
    "runtime.precision": "fp32", "optim.weight_decay": 1e-4, "optim.no_decay_norm_bias": False,
    "schedule.epochs": 120, "schedule.stepping": "epoch", "eval.select_on": "val", "ema.enabled": False,
}


def hy_tricks(label: str) -> set[str]:
    """The README's letters: B baseline, A Adam, W warm-up, C cosine, S smoothing, M mixup, CM cutmix,
    R RAdam, RA RandAugment, EN EfficientNet-B2, RN RegNetY-1.6GF."""
    tricks: set[str] = set()
    if label == "B from scratch":
        return {"B", "scratch"}
    for token in (t.strip() for t in label.split("+")):
        if token in {"CM", "R", "RA", "EN", "RN"}:
            tricks.add(token)
        else:
            assert set(token) <= set("BAWCSM"), token
            tricks |= set(token)
    return tricks


def hy_name(label: str) -> str:
    if label == "B from scratch":
        return "hy_intel_b_scratch"
    parts: list[str] = []
    letters = False  # runs of single-letter tricks are written together: "B + A + W" -> "baw"
    for token in (t.strip() for t in label.split("+")):
        is_letters = token not in {"CM", "R", "RA", "EN", "RN"}
        if is_letters and letters:
            parts[-1] += token.lower()
        else:
            parts.append(token.lower())
        letters = is_letters
    return "hy_intel_" + "_".join(parts)


def hy_expectations() -> dict[str, tuple[dict[str, Any], list[str]]]:
    out = {}
    for label, (val, test) in HY_TABLE.items():
        t = hy_tricks(label)
        exp = dict(HY_COMMON)
        exp["model.arch"] = "efficientnet_b2" if "EN" in t else "regnet_y_1_6gf" if "RN" in t else "resnet50"
        if "scratch" in t:
            exp["model.pretrained.source"] = "none"
        else:
            exp |= {"model.pretrained.source": "torchvision", "model.pretrained.weights": "IMAGENET1K_V1"}
        if "EN" in t:  # the seed's EfficientNet has no dropout before its head and no stochastic depth
            exp |= {"model.dropout": 0.0, "model.stochastic_depth": 0.0}
        if "R" in t:
            exp |= {"optim.name": "radam", "optim.lr": 1e-4, "optim.betas": [0.9, 0.999], "optim.eps": 1e-8,
                    "optim.decoupled_weight_decay": True}
        elif "A" in t:
            exp |= {"optim.name": "adam", "optim.lr": 1e-4, "optim.betas": [0.9, 0.999], "optim.eps": 1e-8}
        else:
            exp |= {"optim.name": "sgd", "optim.lr": 0.1, "optim.momentum": 0.9, "optim.nesterov": False}
        if "C" in t:  # cosine_warmup: GradualWarmup(epochs // 10), then CosineAnnealingLR(120) one epoch later
            exp |= {"schedule.name": "cosine", "schedule.warmup_epochs": 12, "schedule.warmup": "linear",
                    "schedule.warmup_start_lr": 0.0, "schedule.min_lr": 0.0, "schedule.hold_epochs": 1.0,
                    "schedule.period_epochs": 120.0}
        elif "W" in t:  # step_warmup: 5 warm-up epochs, then MultiStep counted from epoch 6
            exp |= {"schedule.name": "multistep", "schedule.warmup_epochs": 5, "schedule.warmup": "linear",
                    "schedule.warmup_start_lr": 0.0, "schedule.milestones": [36, 66, 96], "schedule.gamma": 0.1}
        else:
            exp |= {"schedule.name": "multistep", "schedule.warmup_epochs": 0, "schedule.milestones": [30, 60, 90],
                    "schedule.gamma": 0.1}
        exp |= ({"loss.label_smoothing": 0.1, "loss.smoothing_style": "torch"} if "S" in t
                else {"loss.label_smoothing": 0.0})
        exp |= {"augment.mixup_alpha": 0.2 if "M" in t else 0.0, "augment.cutmix_alpha": 1.0 if "CM" in t else 0.0}
        if "M" in t or "CM" in t:
            exp["augment.mix_prob"] = 1.0
        exp |= ({"augment.randaugment_ops": 3, "augment.randaugment_magnitude": 15, "augment.randaugment_bins": 31,
                 "augment.randaugment_policy": "ildoonet16", "augment.randaugment_before_resize": True}
                if "RA" in t else {"augment.randaugment_ops": 0, "augment.trivialaugment": False})
        out[hy_name(label)] = (exp, [val, test, f'"{label}"'])
    return out


EXPECTED = {**sc_expectations(), **cy_expectations(), **hy_expectations()}


def test_the_tables_are_covered_exactly() -> None:
    seed_files = {p.stem for p in ALL_FILES if p.stem.startswith(("sc_", "cy_", "hy_"))} - NOT_OURS
    assert sorted(seed_files - EXPECTED.keys()) == [], "recipes with no row in the seeds' tables"
    assert sorted(EXPECTED.keys() - seed_files) == [], "table rows with no recipe"
    assert len(EXPECTED) == 12 + 6 + 6 + 6 + 22


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_seed_recipe_settings(name: str) -> None:
    recipe = load_recipe(RECIPES / f"{name}.toml")
    expected, reported = EXPECTED[name]
    wrong = {}
    for path, value in expected.items():
        got = get(recipe, path)
        ok = got == pytest.approx(value) if isinstance(value, float) else got == value
        if not ok:
            wrong[path] = (got, value)
    assert wrong == {}, f"{name}: (recipe, seed) differ"
    # the description names the seed, the table's reported numbers and the row
    seed = {"sc": "SimpleClassification", "cy": "cyizhuo", "hy": "hoya012"}[name[:2]]
    assert seed in recipe.description
    for text in reported:
        assert text in recipe.description, f"{name}: description does not mention {text}"
    if recipe.eval.select_on == "test":  # reproducing the seed's test-set selection is said, with the way out
        assert "select_on" in recipe.description and "val_fraction" in recipe.description


def test_no_two_recipes_are_the_same_run() -> None:
    seen: dict[str, str] = {}
    for path in ALL_FILES:
        r = load_recipe(path)
        body = recipe_to_dict(r.model_copy(update={"name": "x", "description": ""}))
        key = repr(sorted(body.items()))
        assert key not in seen, f"{path.stem} trains exactly as {seen[key]}"
        seen[key] = path.stem


def test_sc_fixres_two_stage_hands_over_like_the_seed() -> None:
    for ds in ("cub", "cars"):
        r = load_recipe(RECIPES / f"sc_{ds}_r50_fixres_two_stage.toml")
        assert len(r.stages) == 1
        total = r.schedule.epochs + r.stages[0].epochs
        assert total == 500  # 400 + 100: the same budget as the single-stage rows


def test_hy_label_decoder() -> None:
    assert hy_tricks("BWC + CM + R") == {"B", "W", "C", "CM", "R"}
    assert hy_tricks("EN + AWCSM") == {"EN", "A", "W", "C", "S", "M"}
    assert hy_name("BAWCS + RA") == "hy_intel_bawcs_ra" and hy_name("RN + WC + CM + R") == "hy_intel_rn_wc_cm_r"

"""Every file in recipes/ loads, and the seed recipes carry the seeds' settings, one recipe per row.

The rows are read from the seeds' own result tables (their READMEs in ``shared/seeds/``: markdown
tables, and SimpleClassification's FixRes table in HTML), not from a list kept next to the recipes:
a row the seeds report with no recipe, or a seed recipe with no row, fails here. Each row's label
is decoded into settings the way the seed defines it (SimpleClassification's LR/EMA/arch columns,
cyizhuo's precision columns, hoya012's letters B, A, W, C, S, M, CM, R, RA, E, EN, RN, enhuiz's
config names such as ``resnet18-ms2`` or ``vitn-12x256-8x8-ra``); the settings that no table shows
are those read from the seeds' code (``SETTINGS-FROM-CODE.md``), written here independently of the
recipe files. A row's reported numbers must appear in its recipe's description, and its
``[reference]`` table must hold exactly the README's cells under the rule the seed measured them by
(``reference.*`` keys below, read from the tables here, never from the recipes).
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any

import pytest

from fgbench.recipe import Recipe, load_recipe, recipe_to_dict

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
ALL_FILES = sorted(RECIPES.glob("*.toml"))
SEED_PREFIXES = ("sc_", "cy_", "hy_", "ez_")


def _seeds_dir() -> Path | None:
    """``$FGBENCH_SEEDS_DIR``, else the first ``shared/seeds`` beside the repository or above it."""
    if os.environ.get("FGBENCH_SEEDS_DIR"):
        return Path(os.environ["FGBENCH_SEEDS_DIR"])
    for parent in Path(__file__).resolve().parents:
        cand = parent / "shared" / "seeds"
        if cand.is_dir():
            return cand
    return None


SEEDS = _seeds_dir()
needs_seeds = pytest.mark.skipif(SEEDS is None, reason="the seeds' READMEs (shared/seeds/) are not beside this checkout")


def seed_readme(name: str) -> str:
    assert SEEDS is not None
    return (SEEDS / name).read_text(encoding="utf-8")


def get(recipe: Recipe, path: str) -> Any:
    obj: Any = recipe
    for part in path.split("."):
        if isinstance(obj, dict):  # reference.test_sizes.448
            obj = obj.get(part)
            continue
        m = re.fullmatch(r"(\w+)\[(\d+)\]", part)
        obj = getattr(obj, m.group(1))[int(m.group(2))] if m else getattr(obj, part, None) if obj is not None else None
    return list(obj) if isinstance(obj, tuple) else obj


@pytest.mark.parametrize("path", ALL_FILES, ids=[p.stem for p in ALL_FILES])
def test_every_recipe_file_loads_and_is_named_after_its_file(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert recipe.description.strip(), f"{path.name}: a recipe says what it is for"


# ------------------------------------------------------------------------------ table parsing


def _clean(cell: str) -> str:
    cell = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", cell)  # [text](link) -> text
    return html.unescape(re.sub(r"<[^>]+>", "", cell)).replace("**", "").strip()


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every markdown table as rows of cleaned cells; separator rows (``|:---:|``) are dropped,
    also those that split one table into groups."""
    tables: list[list[list[str]]] = []
    rows: list[list[str]] = []
    for line in text.splitlines() + [""]:
        if line.strip().startswith("|"):
            cells = [_clean(c) for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                rows.append(cells)
        elif rows:
            tables.append(rows)
            rows = []
    return tables


def table_with(text: str, *columns: str, tables: int = 1) -> list[dict[str, str]]:
    """The rows (as header -> cell) of the ``tables`` tables whose header contains all ``columns``."""
    found = [t for t in markdown_tables(text) if all(any(c in h for h in t[0]) for c in columns)]
    assert len(found) == tables, (columns, len(found))
    return [dict(zip(header, r)) for header, *rows in found for r in rows]


def html_rows(text: str) -> list[list[str]]:
    body = text[text.index("<tbody>"):text.index("</tbody>")]
    return [[_clean(c) for c in re.findall(r"<td>(.*?)</td>", tr, re.S)] for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def test_table_parsing_reads_what_the_readmes_show() -> None:
    text = "|a|b|\n|:-|-:|\n| **1** | [x](http://y) |\n|:-:|:-:|\n|2|3|\n\nnot a table\n|c|\n|4|\n"
    assert markdown_tables(text) == [[["a", "b"], ["1", "x"], ["2", "3"]], [["c"], ["4"]]]
    assert table_with(text, "a", "b") == [{"a": "1", "b": "x"}, {"a": "2", "b": "3"}]
    assert html_rows("<tbody><tr><td><strong>5</strong></td><td>6</td></tr></tbody>") == [["5", "6"]]


# ------------------------------------------------------------------------ SimpleClassification

SC_COMMON = {
    "optim.name": "sgd", "optim.momentum": 0.9, "optim.nesterov": False, "optim.weight_decay": 5e-4,
    "optim.no_decay_norm_bias": False,
    "schedule.name": "cosine", "schedule.warmup": "quadratic", "schedule.warmup_epochs": 5,
    "schedule.warmup_start_lr": 0.0, "schedule.min_lr": 1e-4, "schedule.stepping": "iteration",
    "data.batch_size": 64, "data.drop_last": True, "data.workers": 2,
    "augment.hflip": True, "augment.mixup_alpha": 0.0, "augment.cutmix_alpha": 0.0, "augment.randaugment_ops": 0,
    "loss.label_smoothing": 0.0, "runtime.precision": "fp16", "model.zero_init_residual": False,
    # the seed evaluates outside its autocast
    "eval.precision": "fp32",
    # the seed selects on test: reproduced, and said so in the description
    "eval.select_on": "test", "data.val_fraction": 0.0,
}
SC_EMA = {"ema.enabled": True, "ema.decay": 0.9998, "ema.ramp_steps": 2000, "ema.every": 1}
SC_FG = {  # CUB / CARS preprocessing
    "data.train_crop": "random_resized", "data.crop_scale": [0.08, 1.0], "data.crop_ratio": [0.75, 4 / 3],
    "data.interpolation": "bilinear", "data.test_interpolation": "bilinear", "data.test_crop": "ratio",
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
SC_ARCH = {"ResNet18": ("resnet18", "r18"), "ResNet50": ("resnet50", "r50")}
# pretraining column -> (recipe suffix, [model.pretrained] by architecture); from the seed's download.sh
SC_PRETRAINED = {
    "Inet1K": ("in1k", {"resnet18": {"model.pretrained.source": "torchvision", "model.pretrained.weights": "IMAGENET1K_V1"},
                        "resnet50": {"model.pretrained.source": "torchvision", "model.pretrained.weights": "IMAGENET1K_V2"}}),
    "MocoV2": ("moco", {"resnet50": {"model.pretrained.source": "moco"}}),
}


def sc_expectations() -> dict[str, tuple[dict[str, Any], list[str]]]:
    text = seed_readme("simpleclassification-README.md")
    out: dict[str, tuple[dict[str, Any], list[str]]] = {}
    # Baseline table: from scratch, 200 epochs on CIFAR and 500 on CUB/CARS (baseline.sh)
    for row in table_with(text, "LR", "EMA", "Arch", "CIFAR10"):
        arch, short = SC_ARCH[row["Arch"]]
        with_ema = row["EMA"] == "TRUE"
        for col, ds in (("CUB", "cub"), ("CARS", "cars"), ("CIFAR10", "cifar10"), ("CIFAR100", "cifar100")):
            if row[col] == "-":
                continue
            exp = {**SC_COMMON, "data.dataset": SC_DATASETS[ds], "model.arch": arch, "optim.lr": float(row["LR"]),
                   "model.pretrained.source": "none", "model.init": "pytorch",
                   "schedule.epochs": 200 if ds.startswith("cifar") else 500}
            if ds.startswith("cifar"):
                mean, std = CIFAR_CONSTANTS[ds]
                exp |= SC_CIFAR | {"data.mean": mean, "data.std": std}
            else:
                exp |= SC_FG | {"data.train_size": 224, "data.test_size": 224}
            exp |= SC_EMA if with_ema else {"ema.enabled": False}
            # the seed keeps the best raw and the best EMA test accuracy over the epochs; the EMA recipe's
            # raw model is the "EMA -" row (one run evaluates both, see sweep_sc_ema.toml)
            raw_row = next(r for r in table_with(text, "LR", "EMA", "Arch", "CIFAR10")
                           if r["Arch"] == row["Arch"] and r["LR"] == row["LR"] and r["EMA"] == "-")
            exp |= {"reference.rule": "max_over_test_epochs", "reference.raw": float(raw_row[col]),
                    "reference.ema": float(row[col]) if with_ema else None, "reference.test_sizes": {}}
            out[f"sc_{ds}_{short}" + ("_ema" if with_ema else "")] = (exp, [row[col]])
    # Pretraining table (EMA reported, 500 epochs at 224); its "-" rows repeat the baseline's EMA rows
    for row in table_with(text, "LR", "Pretrained", "Arch", "CUB", "CARS"):
        arch, short = SC_ARCH[row["Arch"]]
        for col, ds in (("CUB", "cub"), ("CARS", "cars")):
            if row["Pretrained"] == "-":
                assert out[f"sc_{ds}_{short}_ema"][1] == [row[col]]
                continue
            suffix, weights = SC_PRETRAINED[row["Pretrained"]]
            pre = weights[arch]
            exp = {**SC_COMMON, **SC_FG, **SC_EMA, **pre, "data.dataset": SC_DATASETS[ds], "model.arch": arch,
                   "optim.lr": float(row["LR"]), "schedule.epochs": 500, "data.train_size": 224, "data.test_size": 224,
                   # the seed's own ResNets keep PyTorch's default init under weights that do not come from torchvision
                   "model.init": "default" if pre["model.pretrained.source"] == "torchvision" else "pytorch",
                   # "Report result with EMA"
                   "reference.rule": "max_over_test_epochs", "reference.ema": float(row[col]),
                   "reference.raw": None, "reference.test_sizes": {}}
            out[f"sc_{ds}_{short}_{suffix}_ema"] = (exp, [row[col]])
    # FixRes table (HTML): stage 1 LR, epochs, size; stage 2 LR, epochs, size; CUB/CARS at 224, at 448
    for lr1, ep1, size1, lr2, ep2, size2, cub224, cars224, cub448, cars448 in html_rows(text):
        s1 = int(size1.split("*")[0])
        two_stage = size2 != "-"
        row = "two_stage" if two_stage else f"train{s1}"
        for ds, reported in (("cub", (cub224, cub448)), ("cars", (cars224, cars448))):
            exp = {**SC_COMMON, **SC_FG, **SC_EMA, "data.dataset": SC_DATASETS[ds], "model.arch": "resnet50",
                   "model.pretrained.source": "torchvision", "model.pretrained.weights": "IMAGENET1K_V2",
                   "optim.lr": float(lr1), "schedule.epochs": int(ep1), "data.train_size": s1, "data.test_size": s1,
                   "eval.final_test_sizes": [224, 448],
                   "reference.rule": "max_over_test_epochs", "reference.raw": None, "reference.ema": None,
                   "reference.test_sizes.224.ema": float(reported[0]), "reference.test_sizes.448.ema": float(reported[1]),
                   "reference.test_sizes.224.raw": None, "reference.test_sizes.448.raw": None}
            if two_stage:  # fix_resolution.sh: a fresh train.py run from stage 1's best EMA checkpoint
                s2 = int(size2.split("*")[0])
                exp |= {"stages[0].epochs": int(ep2), "stages[0].train_size": s2, "stages[0].test_size": s2,
                        "stages[0].lr": float(lr2), "stages[0].min_lr": 1e-4, "stages[0].warmup_epochs": 5,
                        "stages[0].init_from": "best_ema", "stages[0].trainable": "all",
                        "stages[0].new_optimizer": True, "stages[0].train_crop": None}
            out[f"sc_{ds}_r50_fixres_{row}"] = (exp, list(reported))
    return out


# ------------------------------------------------------------------------------------ cyizhuo

CY_COMMON = {
    "model.arch": "resnet50", "model.pretrained.source": "torchvision", "model.pretrained.weights": "IMAGENET1K_V1",
    "data.train_size": 448, "data.test_size": 448, "data.train_crop": "resize_crop", "data.train_resize": [512, 512],
    "data.crop_padding": 8, "data.test_crop": "fixed", "data.test_resize": [512, 512], "data.normalize": "imagenet",
    "data.batch_size": 64, "data.drop_last": True, "augment.hflip": True, "augment.color_jitter": 0.0,
    "data.interpolation": "bilinear", "data.test_interpolation": "bilinear",
    "optim.name": "sgd", "optim.lr": 0.025, "optim.momentum": 0.9, "optim.nesterov": False,
    "optim.weight_decay": 5e-4, "optim.no_decay_norm_bias": False,
    "schedule.name": "cosine", "schedule.epochs": 128, "schedule.warmup_epochs": 0, "schedule.min_lr": 0.0,
    "schedule.stepping": "epoch", "schedule.warmup_in_period": False,
    "loss.label_smoothing": 0.1, "loss.smoothing_style": "cyizhuo", "ema.enabled": False,
    "runtime.seed": 2020, "runtime.deterministic": True, "eval.precision": "fp32",
    "eval.select_on": "test", "data.val_fraction": 0.0,
}
CY_DATASETS = {"CUB-200-2011": ("cub", "cub200"), "FGVC Aircraft": ("aircraft", "fgvc_aircraft"),
               "Stanford Cars": ("cars", "stanford_cars")}


def cy_expectations() -> dict[str, tuple[dict[str, Any], list[str]]]:
    rows = table_with(seed_readme("fine-grained-classification-README.md"), "Dataset", "w/o amp", "apex", "torch.cuda.amp")
    out = {}
    for row in rows:
        cells = dict(row)
        fp32 = next(v for k, v in cells.items() if "w/o amp" in k)
        apex = next(v for k, v in cells.items() if "apex" in k)
        amp = next(v for k, v in cells.items() if "torch.cuda.amp" in k)
        short, dataset = CY_DATASETS[cells["Dataset"]]
        ref = {"reference.rule": "max_over_test_epochs", "reference.ema": None, "reference.test_sizes": {}}
        out[f"cy_{short}_r50_448_fp32"] = (CY_COMMON | ref | {"data.dataset": dataset, "runtime.precision": "fp32",
                                                              "reference.raw": float(fp32)}, [fp32])
        # apex O1 has no equivalent: the fp16 recipe stands for both mixed-precision columns (its reference is
        # the torch.cuda.amp cell; the apex cell is named in its source and description)
        out[f"cy_{short}_r50_448_fp16"] = (CY_COMMON | ref | {"data.dataset": dataset, "runtime.precision": "fp16",
                                                              "reference.raw": float(amp)},
                                           [amp, apex, "apex", "evaluate in fp32"])
    return out


# ------------------------------------------------------------------------------------- hoya012

HY_COMMON = {
    "data.dataset": "intel_scenes", "data.train_size": 256, "data.test_size": 256, "data.train_crop": "resize",
    "data.test_crop": "resize", "data.normalize": "none", "data.val_fraction": 0.2, "data.val_seed": 42,
    "data.interpolation": "bilinear", "data.test_interpolation": "bilinear", "augment.color_jitter": 0.0,
    "data.batch_size": 64, "data.drop_last": False, "augment.hflip": True, "runtime.seed": 42,
    "runtime.precision": "fp32", "optim.weight_decay": 1e-4, "optim.no_decay_norm_bias": False,
    "schedule.epochs": 120, "schedule.stepping": "epoch", "eval.select_on": "val", "ema.enabled": False,
}
HY_MULTI = {"CM", "R", "RA", "EN", "RN", "E"}


def hy_tricks(label: str) -> set[str]:
    """The README's letters: B baseline, A Adam, W warm-up, C cosine, S smoothing, M mixup, CM cutmix,
    R RAdam, RA RandAugment, E EvoNorm, EN EfficientNet-B2, RN RegNetY-1.6GF."""
    tricks: set[str] = set()
    if label == "B from scratch":
        return {"B", "scratch"}
    for token in (t.strip() for t in label.split("+")):
        if token in HY_MULTI:
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
        is_letters = token not in HY_MULTI
        if is_letters and letters:
            parts[-1] += token.lower()
        else:
            parts.append(token.lower())
        letters = is_letters
    return "hy_intel_" + "_".join(parts)


def hy_expectations() -> dict[str, tuple[dict[str, Any], list[str]]]:
    out = {}
    for row in table_with(seed_readme("carrier-of-tricks-README.md"), "Algorithm", "Validation Accuracy", "Test Accuracy"):
        label, val, test = row["Algorithm"], row["Validation Accuracy"], row["Test Accuracy"]
        t = hy_tricks(label)
        exp = dict(HY_COMMON)
        exp["model.arch"] = "efficientnet_b2" if "EN" in t else "regnet_y_1_6gf" if "RN" in t else "resnet50"
        exp["model.norm"] = "evonorm" if "E" in t else "bn"
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
                    "schedule.period_epochs": 120.0, "schedule.warmup_in_period": False}
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
        # an earlier revision of the seed (no best-model checkpoint): the accuracies after the last epoch
        exp |= {"reference.rule": "last_epoch", "reference.raw": float(test), "reference.val": float(val),
                "reference.ema": None, "reference.test_sizes": {}}
        out[hy_name(label)] = (exp, [val, test, f'"{label}"', "last epoch"])
    return out


# -------------------------------------------------------------------------------------- enhuiz

EZ_COMMON = {
    "data.dataset": "cifar100", "data.train_size": 32, "data.test_size": 32, "data.test_crop": "none",
    "data.val_fraction": 0.0, "data.batch_size": 128, "data.eval_batch_size": 128, "data.drop_last": True,
    "model.cifar_stem": False, "model.pretrained.source": "none", "model.num_classes": 1000,
    "optim.name": "adam", "optim.betas": [0.9, 0.999], "optim.eps": 1e-8, "optim.weight_decay": 0.0,
    "optim.grad_clip": 100.0, "schedule.max_steps": 5000, "schedule.stepping": "iteration",
    "loss.label_smoothing": 0.0, "ema.enabled": False, "runtime.precision": "fp32", "eval.select_on": "test",
    "data.normalize": "learned", "model.normalizer_per_channel": False,
    # DeepSpeed WarmupDecayLR: 1e-6 -> 2e-4 over 500 steps, then linearly to warmup_min_lr = 1e-6 at 5000
    "schedule.name": "linear", "optim.lr": 2e-4, "schedule.warmup_steps": 500, "schedule.warmup": "linear",
    "schedule.warmup_start_lr": 1e-6, "schedule.min_lr": 1e-6, "schedule.deepspeed_lag": True,
    # use_augmentation false: ToTensor only
    "data.train_crop": "resize", "augment.hflip": False, "augment.rotation": 0.0,
}
_EZ_VIT = re.compile(r"(vitn?)(-aux)?-(?:(\d+)x)?(\d+)x(\d+)-(\d+)x(\d+)(?:-(ra|dm|lt|ltv))?")


def ez_settings(cfg: str) -> dict[str, Any]:
    """The seed's config name decoded (config/cifar100/<cfg>.yml, src/models/__init__.py)."""
    exp = dict(EZ_COMMON)
    if cfg == "toy-dilated":
        return exp | {"model.arch": "toy_dilated"}
    if m := _EZ_VIT.fullmatch(cfg):
        kind, aux, blocks, layers, width, patch, _, option = m.groups()
        blocks = int(blocks or 1)
        exp |= {"model.arch": "vitn_cifar" if kind == "vitn" else "vit_cifar", "model.vit.patch_size": int(patch),
                "model.vit.depth": blocks * int(layers), "model.vit.width": int(width), "model.vit.heads": 4,
                "model.vit.mlp_ratio": 4.0, "model.vit.dropout": 0.1, "model.vit.aux_heads": blocks - 1 if aux else 0,
                "model.vit.rel_pos": option == "ra", "model.vit.diag_mask": option == "dm",
                "model.vit.temperature": {"lt": "log", "ltv": "plain"}.get(option, "none")}
        return exp
    m = re.fullmatch(r"(resnet\d+)(?:-(.+))?", cfg)
    assert m, cfg
    arch, option = m.groups()
    exp |= {"model.arch": arch, "model.norm": "bn", "model.mixstyle_layers": 0}
    match option:
        case None:
            pass
        case "gn":
            exp |= {"model.norm": "gn", "model.gn_groups": 16}
        case "ms1" | "ms2" | "ms3":
            exp |= {"model.mixstyle_layers": int(option[2])}
        case "tnc":  # tailor_num_classes: the head has the dataset's 100 outputs
            exp |= {"model.num_classes": None}
        case "wonorm":  # normalizer false
            exp |= {"data.normalize": "none"}
        case "pcnorm":
            exp |= {"model.normalizer_per_channel": True}
        case "aug":  # use_augmentation: RandomCrop(32, 4), HFlip, RandomRotation(15)
            exp |= {"data.train_crop": "pad_crop", "data.crop_padding": 4, "augment.hflip": True, "augment.rotation": 15.0}
        case "clr1e-4":  # constant_lr 1e-4: WarmupLR with min = max, i.e. a constant
            exp |= {"schedule.name": "constant", "optim.lr": 1e-4, "schedule.warmup_steps": 0}
            del exp["schedule.min_lr"], exp["schedule.warmup_start_lr"]
        case _:
            raise AssertionError(f"unknown enhuiz config {cfg}")
    return exp


def ez_name(cfg: str) -> str:
    return "ez_cifar100_" + re.sub(r"(?<!\de)-", "_", cfg)  # "-" becomes "_", but not in "1e-4"


def ez_expectations() -> dict[str, tuple[dict[str, Any], list[str]]]:
    text = seed_readme("enhuiz-image-classification-README.md")
    out = {}
    # "Train Subset Results" (split train_200) and "Test Set Results" (split test)
    rows = [r for r in table_with(text, "path", "split", "step", "top1_acc", tables=2) if r["split"] == "test"]
    assert rows
    for row in rows:
        m = re.fullmatch(r"logs/cifar100/([^/]+)/\d+", row["path"])
        assert m, row["path"]
        cfg = m.group(1)
        # the summary keeps each run's best test evaluation (every 100 steps)
        ref = {"reference.rule": "max_over_test_epochs", "reference.raw": 100 * float(row["top1_acc"]),
               "reference.ema": None, "reference.test_sizes": {}}
        out[ez_name(cfg)] = (ez_settings(cfg) | ref, [f"{100 * float(row['top1_acc']):.2f}", f"config cifar100/{cfg}.yml"])
    return out


def test_label_decoders() -> None:
    assert hy_tricks("BWC + CM + R") == {"B", "W", "C", "CM", "R"}
    assert hy_tricks("EN + AWCSM") == {"EN", "A", "W", "C", "S", "M"}
    assert hy_tricks("BAWCS + E") == {"B", "A", "W", "C", "S", "E"}
    assert hy_name("BAWCS + RA") == "hy_intel_bawcs_ra" and hy_name("RN + WC + CM + R") == "hy_intel_rn_wc_cm_r"
    assert ez_name("resnet18-clr1e-4") == "ez_cifar100_resnet18_clr1e-4"
    assert ez_name("vit-aux-3x4x256-8x8") == "ez_cifar100_vit_aux_3x4x256_8x8"
    aux = ez_settings("vit-aux-3x4x256-8x8")
    assert (aux["model.vit.depth"], aux["model.vit.aux_heads"], aux["model.vit.width"]) == (12, 2, 256)
    assert ez_settings("vitn-12x256-8x8-ltv")["model.vit.temperature"] == "plain"


EXPECTED = ({**sc_expectations(), **cy_expectations(), **hy_expectations(), **ez_expectations()}
            if SEEDS is not None else {})


@needs_seeds
def test_every_row_of_every_seed_table_has_its_recipe_and_nothing_else() -> None:
    seed_files = {p.stem for p in ALL_FILES if p.stem.startswith(SEED_PREFIXES)}
    assert sorted(seed_files - EXPECTED.keys()) == [], "recipes with no row in the seeds' tables"
    assert sorted(EXPECTED.keys() - seed_files) == [], "table rows with no recipe"
    by_seed = {p: sum(n.startswith(p) for n in EXPECTED) for p in SEED_PREFIXES}
    # 6 baseline cells x raw/EMA, 3 pretrained rows x 2, 3 FixRes rows x 2; 3 datasets x 2 precisions;
    # 23 rows of hoya012's table; 19 runs of enhuiz's test table (toy-dilated included)
    assert by_seed == {"sc_": 12 + 6 + 6, "cy_": 6, "hy_": 23, "ez_": 19}


@needs_seeds
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_seed_recipe_settings(name: str) -> None:
    recipe = load_recipe(RECIPES / f"{name}.toml")
    expected, reported = EXPECTED[name]
    wrong = {}
    for path, value in expected.items():
        got = get(recipe, path)
        ok = got == pytest.approx(value, abs=1e-9) if isinstance(value, float) else got == value
        if not ok:
            wrong[path] = (got, value)
    assert wrong == {}, f"{name}: (recipe, seed) differ"
    # the description names the seed, the table's reported numbers and the row
    seed = {"sc": "SimpleClassification", "cy": "cyizhuo", "hy": "hoya012", "ez": "enhuiz"}[name[:2]]
    assert seed in recipe.description
    for text in reported:
        assert text in recipe.description, f"{name}: description does not mention {text}"
    if recipe.eval.select_on == "test":  # reproducing the seed's test-set selection is said, with the way out
        assert "select_on" in recipe.description and "val_fraction" in recipe.description
    if recipe.runtime.precision != "fp32":  # what the evaluation precision is, in words
        assert "eval.precision" in recipe.description


SEED_FILES = [p for p in ALL_FILES if p.stem.startswith(SEED_PREFIXES)]


@pytest.mark.parametrize("path", SEED_FILES, ids=[p.stem for p in SEED_FILES])
def test_a_seed_recipe_trains_in_its_seeds_precision_on_every_device(path: Path) -> None:
    # runtime.precision = "auto" would train a seed recipe in bf16 on a modern GPU: never in a seed
    # recipe, whose precision is part of what it reproduces. Resolved on a (faked) GPU with native
    # bf16, one without, and the CPU, it stays the seed's precision.
    import torch

    from fgbench.train.plan import resolve_precision

    recipe = load_recipe(path)
    want = EXPECTED[path.stem][0]["runtime.precision"] if path.stem in EXPECTED else recipe.runtime.precision
    assert recipe.runtime.precision == want != "auto"
    for device, native in ((torch.device("cuda", 0), True), (torch.device("cuda", 0), False), (torch.device("cpu"), True)):
        assert resolve_precision(recipe.runtime.precision, device, bf16_native=lambda _d, n=native: n)[0] == want


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

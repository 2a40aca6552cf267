"""Initial weights: torchvision's weights enums, a local state-dict file, a MoCo v2 checkpoint.

Decisions:

* Files are read with ``torch.load(weights_only=True)``: a checkpoint is data, and unpickling
  arbitrary objects from a downloaded file runs code. A file that needs full unpickling is refused
  with a message that says how to re-save it, never loaded unsafely behind the user's back.
* A file is loaded by key *and shape*, as SimpleClassification does: each model tensor whose key is
  in the file with the same shape is copied; everything else keeps its initialisation and is
  reported (a 1000-class ImageNet ``fc`` into a 200-class model is the usual case). Unlike the
  seed, nothing is skipped silently: the report names every skipped key and why, and a file that
  matches nothing at all is an error (it is almost always the wrong ``key`` or prefix).
* MoCo: keep only ``module.encoder_q.*`` minus the projection head ``module.encoder_q.fc.*`` and
  strip the prefix, as MoCo's own linear-classification script does (the seed's converter kept
  the key encoder and the queue and relied on the shape filter to drop them).
* torchvision weights are cached by torch.hub under ``$TORCH_HOME/hub/checkpoints``. When the file
  is not there, torchvision downloads it; offline, or with ``FGBENCH_OFFLINE=1`` (tests), the
  failure becomes a UserError naming the missing file, its URL and the folder to put it in.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from fgbench.errors import UserError

MOCO_PREFIX = "module.encoder_q."
MOCO_HEAD_PREFIX = "module.encoder_q.fc."


def _fmt_shape(shape: torch.Size | tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


# ------------------------------------------------------------------------------ torchvision


def torchvision_weights(arch: str, name: str):
    """The weights enum member ``name`` of ``arch`` ("DEFAULT" allowed), or a UserError."""
    from torchvision.models import get_model_weights

    try:
        enum = get_model_weights(arch)
    except (ValueError, KeyError):
        raise UserError(f"model.pretrained: torchvision has no pretrained weights for model.arch '{arch}'") from None
    try:
        return enum[name]
    except KeyError:
        names = ", ".join(["DEFAULT", *enum.__members__.keys() - {"DEFAULT"}])
        raise UserError(f"model.pretrained.weights: '{name}' is not a weights name of {arch}; choose one of: {names}") from None


def weights_cache_file(weights) -> Path:
    """Where torch.hub keeps (or would download) the file of a torchvision weights enum member."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def offline() -> bool:
    return os.environ.get("FGBENCH_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def missing_weights_error(weights, detail: str = "") -> UserError:
    path = weights_cache_file(weights)
    why = f" ({detail})" if detail else ""
    return UserError(
        f"model.pretrained.weights: {type(weights).__name__}.{weights.name} needs the file {path}, which is missing"
        f" and could not be downloaded{why}: download {weights.url} into {path.parent}/ (or set TORCH_HOME)"
    )


def build_torchvision_pretrained(arch: str, weights_name: str, **kwargs: Any) -> tuple[nn.Module, list[str]]:
    """``torchvision.models.get_model(arch, weights=..., **kwargs)`` with download failures turned into
    UserErrors."""
    from torchvision.models import get_model

    weights = torchvision_weights(arch, weights_name)
    path = weights_cache_file(weights)
    if not path.is_file() and offline():
        raise missing_weights_error(weights, "FGBENCH_OFFLINE is set")
    try:
        model = get_model(arch, weights=weights, **kwargs)
    except (OSError, RuntimeError) as err:  # URLError is an OSError; a truncated file is a RuntimeError
        if path.is_file() and not isinstance(err, OSError):
            raise UserError(f"model.pretrained.weights: cannot load {path}: {err}") from None
        raise missing_weights_error(weights, str(err).splitlines()[0] if str(err) else type(err).__name__) from None
    return model, [f"loaded torchvision weights {type(weights).__name__}.{weights.name} from {path}"]


# ------------------------------------------------------------------------------ files


def read_weights_file(path: str, field: str) -> Any:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{field}: weights file {p} not found")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).splitlines()[0] if str(err) else "unsupported object"
        raise UserError(
            f"{field}: {p} holds Python objects that torch.load(weights_only=True) refuses ({first}); "
            "re-save just its state dict: torch.save(torch.load(f, weights_only=False)['state_dict'], out)"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise UserError(f"{field}: cannot read {p}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None


def _tensor_dict(obj: Any) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict):
        return {}
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def extract_state_dict(obj: Any, key: str | None, strip_prefix: str | None, path: str, field: str) -> dict[str, torch.Tensor]:
    """The state dict inside a loaded file: ``obj[key]`` (a dotted key walks nested dicts), prefix stripped."""
    if key:
        node = obj
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                top = sorted(obj)[:12] if isinstance(obj, dict) else type(obj).__name__
                raise UserError(f"{field}.key: {path} has no key '{key}' (top-level keys: {top})")
            node = node[part]
        obj = node
    sd = _tensor_dict(obj)
    if not sd:
        hint = ""
        if isinstance(obj, dict):
            nested = [k for k, v in obj.items() if isinstance(v, dict) and _tensor_dict(v)]
            if nested:
                hint = f"; the tensors are under {nested}: set {field}.key"
        raise UserError(f"{field}: {path} holds no tensors at this level{hint}")
    if strip_prefix:
        sd = {(k[len(strip_prefix):] if k.startswith(strip_prefix) else k): v for k, v in sd.items()}
    return sd


def moco_state_dict(obj: Any, path: str) -> dict[str, torch.Tensor]:
    """The query encoder of a MoCo v2 checkpoint without its MLP head, prefix stripped."""
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    sd = _tensor_dict(sd)
    out = {
        k[len(MOCO_PREFIX):]: v
        for k, v in sd.items()
        if k.startswith(MOCO_PREFIX) and not k.startswith(MOCO_HEAD_PREFIX)
    }
    if not out:
        raise UserError(f"model.pretrained.path: {path} has no '{MOCO_PREFIX}*' keys: not a MoCo v2 checkpoint")
    return out


def load_matching(model: nn.Module, sd: dict[str, torch.Tensor], source: str, field: str) -> list[str]:
    """Copy every tensor of ``sd`` whose key and shape match one of ``model``; report the rest."""
    own = model.state_dict()
    report: list[str] = []
    loaded = 0
    new: dict[str, torch.Tensor] = {}
    for k, target in own.items():
        if k not in sd:
            report.append(f"kept initialisation of {k}: not in the file")
            continue
        src = sd[k]
        if src.shape != target.shape:
            report.append(f"skipped {k}: shape {_fmt_shape(src.shape)} in the file != {_fmt_shape(target.shape)} in the model")
            continue
        new[k] = src.to(dtype=target.dtype)
        loaded += 1
    if loaded == 0:
        sample = sorted(sd)[:5]
        raise UserError(
            f"{field}: no tensor of {source} matches the model by key and shape (file keys start {sample}); "
            "check model.arch, model.pretrained.key and strip_prefix"
        )
    model.load_state_dict(new, strict=False)
    unused = sorted(set(sd) - set(own))
    head = [f"loaded {loaded} of {len(own)} tensors from {source}"]
    if unused:
        shown = ", ".join(unused[:8]) + (", ..." if len(unused) > 8 else "")
        head.append(f"ignored {len(unused)} file tensors the model does not have: {shown}")
    return head + report

"""Initial weights: local files by key and shape, MoCo conversion, torchvision weights offline."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from fgbench.errors import UserError
from fgbench.recipe import ModelConfig
from fgbench.train.models import build_model, classifier
from fgbench.train.models.pretrained import weights_cache_file


def _cfg(**pretrained) -> ModelConfig:
    return ModelConfig(arch="resnet8_cifar", pretrained=pretrained)


def _source_state(num_classes: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    return build_model(ModelConfig(arch="resnet8_cifar"), num_classes).model.state_dict()


def test_file_loads_by_key_and_shape_and_reports_the_mismatched_head(tmp_path: Path) -> None:
    src = _source_state(100)
    path = tmp_path / "r8_c100.pth"
    torch.save(src, path)
    torch.manual_seed(0)
    built = build_model(_cfg(source="file", path=str(path)), 10)
    sd = built.model.state_dict()
    for k, v in sd.items():
        if k.startswith("fc."):
            assert v.shape != src[k].shape
        else:
            assert torch.equal(v, src[k]), k
    report = "\n".join(built.report)
    assert f"loaded {len(sd) - 2} of {len(sd)} tensors from {path}" in report
    assert "skipped fc.weight: shape (100, 64) in the file != (10, 64) in the model" in report
    assert "skipped fc.bias: shape (100) in the file != (10) in the model" in report


def test_file_with_same_head_restores_everything(tmp_path: Path) -> None:
    src = _source_state(10)
    torch.save(src, tmp_path / "same.pth")
    built = build_model(_cfg(source="file", path=str(tmp_path / "same.pth")), 10)
    assert all(torch.equal(v, src[k]) for k, v in built.model.state_dict().items())
    assert not any(line.startswith("skipped") for line in built.report)


def test_file_key_and_strip_prefix(tmp_path: Path) -> None:
    src = _source_state(10)
    wrapped = {"epoch": 3, "model": {f"module.{k}": v for k, v in src.items()}}
    torch.save(wrapped, tmp_path / "ddp.pt")
    built = build_model(_cfg(source="file", path=str(tmp_path / "ddp.pt"), key="model", strip_prefix="module."), 10)
    assert torch.equal(built.model.state_dict()["conv1.weight"], src["conv1.weight"])
    # without the key: a clear hint where the tensors are
    with pytest.raises(UserError, match=r"model\.pretrained: .* holds no tensors at this level; the tensors are under \['model'\]"):
        build_model(_cfg(source="file", path=str(tmp_path / "ddp.pt")), 10)
    # with the key but not the prefix: nothing matches, which is an error rather than a silent no-op
    with pytest.raises(UserError, match="no tensor of .* matches the model by key and shape"):
        build_model(_cfg(source="file", path=str(tmp_path / "ddp.pt"), key="model"), 10)
    with pytest.raises(UserError, match=r"model\.pretrained\.key: .* has no key 'state_dict'"):
        build_model(_cfg(source="file", path=str(tmp_path / "ddp.pt"), key="state_dict"), 10)


def test_missing_and_unsafe_files_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"model\.pretrained\.path: weights file .*nope\.pth not found"):
        build_model(_cfg(source="file", path=str(tmp_path / "nope.pth")), 10)

    # checkpoints that pickle their argparse options: weights_only=True refuses the Namespace
    torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": _source_state(10)}, tmp_path / "pickled.pth")
    with pytest.raises(UserError, match=r"model\.pretrained\.path: .*weights_only=True.*re-save"):
        build_model(_cfg(source="file", path=str(tmp_path / "pickled.pth")), 10)
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"model\.pretrained\.path: "):
        build_model(_cfg(source="file", path=str(tmp_path / "garbage.pth")), 10)


def test_moco_checkpoint_keeps_the_query_encoder_without_its_head(tmp_path: Path) -> None:
    enc = _source_state(10)
    other = {k: torch.full_like(v, 7) if v.is_floating_point() else v for k, v in enc.items()}
    sd = {}
    for k, v in enc.items():
        if not k.startswith("fc."):
            sd[f"module.encoder_q.{k}"] = v
            sd[f"module.encoder_k.{k}"] = other[k]
    # MoCo v2's MLP projection head: fc.0 / fc.2; fc.0.weight has the shape of our fc would-be
    sd["module.encoder_q.fc.0.weight"] = torch.randn(10, 64)
    sd["module.encoder_q.fc.0.bias"] = torch.randn(10)
    sd["module.encoder_q.fc.2.weight"] = torch.randn(128, 10)
    sd["module.queue"] = torch.randn(128, 4096)
    sd["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    torch.save({"epoch": 800, "arch": "resnet8_cifar", "state_dict": sd, "optimizer": {"state": {}}}, tmp_path / "moco.pth.tar")
    torch.manual_seed(5)
    built = build_model(ModelConfig(arch="resnet8_cifar", pretrained={"source": "moco", "path": str(tmp_path / "moco.pth.tar")}), 10)
    state = built.model.state_dict()
    for k, v in enc.items():
        if not k.startswith("fc."):
            assert torch.equal(state[k], v), k
    assert not torch.equal(state["fc.weight"], enc["fc.weight"])  # head keeps its own initialisation
    n_enc = len([k for k in enc if not k.startswith("fc.")])
    report = "\n".join(built.report)
    assert f"MoCo: kept {n_enc} query-encoder tensors" in report
    assert f"loaded {n_enc} of {len(state)} tensors" in report
    assert "kept initialisation of fc.weight: not in the file" in report
    assert "encoder_k" not in report and "queue" not in report


def test_moco_rejects_a_plain_state_dict(tmp_path: Path) -> None:
    torch.save(_source_state(10), tmp_path / "plain.pth")
    with pytest.raises(UserError, match="not a MoCo v2 checkpoint"):
        build_model(ModelConfig(arch="resnet8_cifar", pretrained={"source": "moco", "path": str(tmp_path / "plain.pth")}), 10)


def test_torchvision_weights_name_errors() -> None:
    with pytest.raises(UserError, match=r"model\.pretrained\.weights: 'IMAGENET1K_V9' is not a weights name of resnet18; choose one of: DEFAULT, IMAGENET1K_V1"):
        build_model(ModelConfig(arch="resnet18", pretrained={"source": "torchvision", "weights": "IMAGENET1K_V9"}), 10)
    with pytest.raises(UserError, match=r"model\.arch: unknown architecture"):
        build_model(ModelConfig(arch="resnet_foo", pretrained={"source": "torchvision"}), 10)


def test_torchvision_weights_missing_offline_says_which_file_and_where() -> None:
    cfg = ModelConfig(arch="resnet18", pretrained={"source": "torchvision", "weights": "IMAGENET1K_V1"})
    with pytest.raises(UserError) as err:
        build_model(cfg, 10)
    msg = str(err.value)
    assert msg.startswith("model.pretrained.weights: ResNet18_Weights.IMAGENET1K_V1 needs the file ")
    assert "resnet18-f37072fd.pth" in msg and "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg
    assert str(Path(torch.hub.get_dir()) / "checkpoints") in msg


def test_torchvision_weights_from_the_hub_cache_with_head_replaced() -> None:
    from torchvision.models import ResNet18_Weights, resnet18

    torch.manual_seed(42)
    reference = resnet18().state_dict()  # stands in for the ImageNet file, same keys and shapes
    path = weights_cache_file(ResNet18_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(reference, path)
    built = build_model(ModelConfig(arch="resnet18", pretrained={"source": "torchvision", "weights": "DEFAULT"}), 10)
    state = built.model.state_dict()
    assert torch.equal(state["layer3.0.conv1.weight"], reference["layer3.0.conv1.weight"])
    assert classifier(built.model).out_features == 10
    report = "\n".join(built.report)
    assert f"loaded torchvision weights ResNet18_Weights.IMAGENET1K_V1 from {path}" in report
    assert "replaced classifier fc: (1000, 512) -> (10, 512)" in report
    # zero-init applies to pretrained branches too (as the hoya seed); cifar_stem re-initialises conv1
    built = build_model(
        ModelConfig(arch="resnet18", cifar_stem=True, zero_init_residual=True, pretrained={"source": "torchvision", "weights": "IMAGENET1K_V1"}), 10
    )
    assert torch.count_nonzero(built.model.layer1[0].bn2.weight) == 0
    assert built.model.conv1.weight.shape == (64, 3, 3, 3)
    # the EvoNorm swap on pretrained weights keeps the BatchNorms' gammas and betas
    built = build_model(ModelConfig(arch="resnet18", norm="evonorm", pretrained={"source": "torchvision", "weights": "IMAGENET1K_V1"}), 10)
    assert torch.equal(built.model.layer2[1].bn1.weight, reference["layer2.1.bn1.weight"])
    assert torch.equal(built.model.layer2[0].downsample[1].bias, reference["layer2.0.downsample.1.bias"])

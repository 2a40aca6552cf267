"""The basic builder: architectures by name, stem, head, zero-init, dropout, helpers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fgbench.errors import UserError
from fgbench.recipe import DataConfig, ModelConfig, RecipeError, validate_recipe
from fgbench.train.models import build_model, classifier, extra_metrics, forward_train, set_trainable, unwrap
from fgbench.train.models.build import DropoutLinear


def _fwd_bwd(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.train()
    logits, aux = forward_train(model, x)
    loss = logits.logsumexp(1).mean() + sum(a.logsumexp(1).mean() for a in aux)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    return logits


@pytest.mark.parametrize(
    "arch, params",
    [
        # CIFAR ResNets: He et al.'s 0.27 M for resnet20 plus the 1x1 projection shortcuts (2,752)
        ("resnet8_cifar", 78_042),
        ("resnet20_cifar", 272_474),
        ("small_cnn", 94_762),
    ],
)
def test_own_architectures_forward_backward_and_size(arch: str, params: int) -> None:
    built = build_model(ModelConfig(arch=arch), 10)
    assert sum(p.numel() for p in built.model.parameters()) == params
    logits = _fwd_bwd(built.model, torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    assert isinstance(classifier(built.model), nn.Linear)
    assert any("built" in line for line in built.report)


def test_torchvision_arch_by_name_gets_the_dataset_head() -> None:
    built = build_model(ModelConfig(arch="resnet18"), 7)
    assert classifier(built.model).out_features == 7
    logits = _fwd_bwd(built.model, torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 7)


def test_num_classes_overrides_the_dataset_count() -> None:
    # the enhuiz seed keeps a 1000-output head on CIFAR-100
    built = build_model(ModelConfig(arch="resnet8_cifar", num_classes=1000), 100)
    assert classifier(built.model).out_features == 1000


def test_unknown_arch_is_a_user_error_naming_the_field() -> None:
    with pytest.raises(UserError, match=r"model\.arch: unknown architecture 'resnet19'.*did you mean"):
        build_model(ModelConfig(arch="resnet19"), 10)


def test_cifar_stem_keeps_full_resolution_into_layer1() -> None:
    built = build_model(ModelConfig(arch="resnet18", cifar_stem=True), 10)
    m = built.model
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert isinstance(m.maxpool, nn.Identity)
    seen: dict[str, torch.Size] = {}

    def record(key):
        def hook(mod, inputs, output) -> None:
            seen[key] = output.shape

        return hook

    m.layer1.register_forward_hook(record("shape"))
    m.eval()(torch.randn(1, 3, 32, 32))
    assert seen["shape"] == (1, 64, 32, 32)
    plain = build_model(ModelConfig(arch="resnet18"), 10).model.eval()
    plain.layer1.register_forward_hook(record("plain"))
    plain(torch.randn(1, 3, 32, 32))
    assert seen["plain"] == (1, 64, 8, 8)


def test_resnet_only_options_are_refused_elsewhere() -> None:
    for field in ({"cifar_stem": True}, {"norm": "gn"}, {"mixstyle_layers": 1}, {"freeze_stages": 1}):
        name = next(iter(field))
        with pytest.raises(RecipeError, match=f"model.{name}: {name} applies to ResNets only"):
            validate_recipe({"model": {"arch": "small_cnn", **field}}, "r.toml")


def test_zero_init_residual_zeroes_last_norm_of_each_branch() -> None:
    basic = build_model(ModelConfig(arch="resnet18", zero_init_residual=True), 10).model
    for block in [b for layer in (basic.layer1, basic.layer2, basic.layer3, basic.layer4) for b in layer]:
        assert torch.count_nonzero(block.bn2.weight) == 0
        assert torch.count_nonzero(block.bn1.weight) > 0
    bottleneck = build_model(ModelConfig(arch="resnet50", zero_init_residual=True), 10).model
    blocks = [b for layer in (bottleneck.layer1, bottleneck.layer4) for b in layer]
    assert all(torch.count_nonzero(b.bn3.weight) == 0 and torch.count_nonzero(b.bn2.weight) > 0 for b in blocks)
    # each residual block starts as identity + shortcut: the output ignores the residual branch
    torch.manual_seed(1)
    m = build_model(ModelConfig(arch="resnet8_cifar", zero_init_residual=True), 10).model.eval()
    block = m.layer1[0]
    x = torch.randn(2, 16, 8, 8)
    assert torch.allclose(block(x), torch.relu(x))


def test_dropout_keeps_state_dict_keys_and_is_off_in_eval() -> None:
    built = build_model(ModelConfig(arch="resnet8_cifar", dropout=0.5), 10)
    head = classifier(built.model)
    assert isinstance(head, DropoutLinear) and head.p == 0.5
    plain = build_model(ModelConfig(arch="resnet8_cifar"), 10).model
    assert set(built.model.state_dict()) == set(plain.state_dict())
    m = built.model
    x = torch.randn(4, 3, 16, 16)
    m.eval()
    assert torch.equal(m(x), m(x))
    m.train()
    torch.manual_seed(0)
    a = m(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, m(x))


def test_dropout_sets_an_existing_classifier_dropout() -> None:
    built = build_model(ModelConfig(arch="mobilenet_v3_small", dropout=0.05), 5)
    seq = unwrap(built.model).classifier
    assert isinstance(seq[2], nn.Dropout) and seq[2].p == 0.05
    assert isinstance(classifier(built.model), nn.Linear) and classifier(built.model).out_features == 5
    assert sum(isinstance(m, nn.Dropout) for m in seq) == 1


def test_classifier_of_a_conv_headed_model() -> None:
    built = build_model(ModelConfig(arch="squeezenet1_1"), 4)
    head = classifier(built.model)
    assert isinstance(head, nn.Conv2d) and head.out_channels == 4
    assert _fwd_bwd(built.model, torch.randn(2, 3, 64, 64)).shape == (2, 4)


def test_set_trainable_bn_fc() -> None:
    model = build_model(ModelConfig(arch="resnet8_cifar"), 10).model
    set_trainable(model, "bn_fc")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n in dict(model.named_parameters()) if "bn" in n or n.startswith("fc.") or "downsample.1" in n}
    assert "conv1.weight" not in trainable and "fc.weight" in trainable and "layer2.0.downsample.1.weight" in trainable
    _fwd_bwd(model, torch.randn(2, 3, 16, 16))
    assert model.conv1.weight.grad is None
    set_trainable(model, "all")
    assert all(p.requires_grad for p in model.parameters())


def test_learned_normalizer_wraps_and_helpers_see_through() -> None:
    built = build_model(ModelConfig(arch="resnet8_cifar", normalizer_per_channel=True), 10, data_cfg=DataConfig(normalize="learned"))
    m = built.model
    assert type(m).__name__ == "NormalizedModel"
    assert m.normalizer.per_channel and m.normalizer.running_mean.shape == (3,)
    assert classifier(m) is m.model.fc
    assert extra_metrics(m) == {}
    assert "normalizer.running_mean" in m.state_dict()
    _fwd_bwd(m, torch.rand(2, 3, 16, 16))
    assert not torch.isnan(m.normalizer.running_mean).any()


@pytest.mark.filterwarnings("ignore:The default weight initialization of GoogleNet")
def test_inception_aux_logits_come_back_from_forward_train() -> None:
    built = build_model(ModelConfig(arch="googlenet"), 3)
    m = built.model.train()
    logits, aux = forward_train(m, torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 3) and len(aux) == 2 and all(a.shape == (2, 3) for a in aux)
    m.eval()
    logits, aux = forward_train(m, torch.randn(2, 3, 64, 64))
    assert aux == []


def test_pytorch_default_init_resets_every_layer_and_keeps_file_weights_on_top(tmp_path) -> None:
    import math

    def convs(model):
        return [m for m in unwrap(model).modules() if isinstance(m, nn.Conv2d)]

    torch.manual_seed(0)
    tv = build_model(ModelConfig(arch="resnet18", cifar_stem=True), 10).model
    torch.manual_seed(0)
    sc = build_model(ModelConfig(arch="resnet18", cifar_stem=True, init="pytorch"), 10).model
    # PyTorch's default bounds each weight by 1/sqrt(fan_in); torchvision's kaiming fan-out normal does not
    for m in convs(sc):
        fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        assert m.weight.abs().max().item() <= 1 / math.sqrt(fan_in) + 1e-7
    assert any(m.weight.abs().max().item() > 1 / math.sqrt(m.in_channels * 9) for m in convs(tv) if m.kernel_size == (3, 3))
    bn = [m for m in sc.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in bn)
    # a weights file loads over the reset
    path = tmp_path / "w.pth"
    torch.save(tv.state_dict(), path)
    loaded = build_model(ModelConfig(arch="resnet18", cifar_stem=True, init="pytorch",
                                     pretrained={"source": "file", "path": str(path)}), 10).model
    assert torch.equal(loaded.conv1.weight, tv.conv1.weight)
    with pytest.raises(RecipeError, match="would reset the torchvision weights"):
        validate_recipe({"model": {"arch": "resnet18", "init": "pytorch", "pretrained": {"source": "torchvision"}}})


def test_stochastic_depth_reaches_the_torchvision_model_or_is_refused() -> None:
    from torchvision.ops import StochasticDepth

    model = build_model(ModelConfig(arch="efficientnet_b0", stochastic_depth=0.05), 5).model
    probs = [m.p for m in model.modules() if isinstance(m, StochasticDepth)]
    assert probs and max(probs) < 0.05 and max(probs) > 0.04  # linearly ramped over the blocks up to 0.05
    default = build_model(ModelConfig(arch="efficientnet_b0"), 5).model
    assert max(m.p for m in default.modules() if isinstance(m, StochasticDepth)) > 0.15  # torchvision's 0.2
    with pytest.raises(UserError, match="model.stochastic_depth: torchvision's resnet18 has no stochastic depth"):
        build_model(ModelConfig(arch="resnet18", stochastic_depth=0.1), 5)


def test_radam_decoupled_weight_decay_decays_the_weights_directly() -> None:
    from fgbench.train.optim import build_optimizer

    for decoupled in (False, True):
        r = validate_recipe({"optim": {"name": "radam", "lr": 0.1, "weight_decay": 0.5,
                                       "decoupled_weight_decay": decoupled}})
        w = nn.Linear(1, 1, bias=False)
        nn.init.constant_(w.weight, 2.0)
        opt = build_optimizer(r.optim, w, 0.1)
        assert opt.param_groups[0]["decoupled_weight_decay"] is decoupled
        for _ in range(10):  # zero gradients: only the weight decay acts
            w.weight.grad = torch.zeros_like(w.weight)
            opt.step()
        # decoupled: the weight shrinks by (1 - lr * wd) a step, nothing else (the moments stay 0);
        # coupled: wd * w is the gradient, which the adaptive steps normalise to about lr a step
        if decoupled:
            assert w.weight.item() == pytest.approx(2.0 * 0.95 ** 10)
        else:
            assert abs(w.weight.item() - 2.0 * 0.95 ** 10) > 0.1

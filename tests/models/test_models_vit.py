"""The small-image ViTs: shapes, sizes, the attention options doing what they claim, aux heads."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fgbench.recipe import ModelConfig, RecipeError, validate_recipe
from fgbench.train.models import build_model, classifier, extra_metrics, forward_train
from fgbench.train.models.vit import Attention, SmallViT


def _cfg(arch: str = "vitn_cifar", **vit) -> ModelConfig:
    base = {"depth": 2, "width": 32, "heads": 4, "patch_size": 8}
    return ModelConfig(arch=arch, vit={**base, **vit})


def _expected_params(width: int, depth: int, heads_out: int, prenorm: bool, patch: int = 8, blocks: int = 1, rel_pos: bool = False, temp: bool = False) -> int:
    w, h = width, 4 * width
    embed = 3 * patch * patch * w + w + w  # patch conv (+bias) and the cls token
    attn = w * 3 * w + (w * w + w)  # qkv (no bias) + out projection
    if not prenorm:
        attn = 3 * w * w + 3 * w + w * w + w  # nn.MultiheadAttention: in_proj with bias + out_proj
    if rel_pos:
        attn += w * w + 2 * w  # W_r + u, v
    if temp:
        attn += 1
    layer = attn + (w * h + h) + (h * w + w) + 2 * (2 * w)  # MLP + two LayerNorms
    head = (w * h + h) + (h * heads_out + heads_out)
    return embed + depth * layer + blocks * head


@pytest.mark.parametrize(
    "arch, vit, prenorm",
    [
        ("vit_cifar", {}, False),
        ("vitn_cifar", {}, True),
        ("vitn_cifar", {"rel_pos": True, "diag_mask": True, "temperature": "log"}, True),
        ("vitn_cifar", {"temperature": "plain"}, True),
    ],
)
def test_vit_forward_backward_shapes_and_parameter_counts(arch: str, vit: dict, prenorm: bool) -> None:
    built = build_model(_cfg(arch, **vit), 10)
    m = built.model
    expected = _expected_params(32, 2, 10, prenorm, rel_pos=vit.get("rel_pos", False), temp=vit.get("temperature", "none") != "none")
    assert sum(p.numel() for p in m.parameters()) == expected
    m.train()
    logits, aux = forward_train(m, torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and aux == []
    logits.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in m.parameters())
    assert classifier(m) is m.heads[0][2]


def test_seed_sized_vitn_has_the_expected_size() -> None:
    # enhuiz vitn-12x256-8x8 with its 1000-output head
    m = build_model(ModelConfig(arch="vitn_cifar", num_classes=1000), 100).model
    assert sum(p.numel() for p in m.parameters()) == _expected_params(256, 12, 1000, True)
    assert m.embed(torch.zeros(1, 3, 32, 32)).shape == (1, 17, 256)  # 16 patches + cls


def test_image_size_must_be_a_multiple_of_the_patch() -> None:
    m = build_model(_cfg(), 10).model
    with pytest.raises(ValueError, match="not a multiple of model.vit.patch_size 8"):
        m(torch.randn(1, 3, 30, 30))


def test_vit_options_need_the_prenorm_vit() -> None:
    with pytest.raises(RecipeError, match="vit.rel_pos needs arch 'vitn_cifar'"):
        validate_recipe({"model": {"arch": "vit_cifar", "vit": {"rel_pos": True}}}, "r.toml")
    with pytest.raises(RecipeError, match="model.vit.depth: depth 12 does not split into aux_heads \\+ 1 = 5"):
        validate_recipe({"model": {"arch": "vit_cifar", "vit": {"aux_heads": 4}}}, "r.toml")


def _attention(**kw) -> Attention:
    torch.manual_seed(0)
    return Attention(16, 2, **kw)


def test_diagonal_mask_gives_a_token_no_weight_on_itself() -> None:
    x = torch.randn(3, 5, 16)
    att = _attention(diag_mask=True).attention_weights(x)
    diag = att.diagonal(dim1=-2, dim2=-1)
    assert diag.abs().max() < 1e-12
    assert torch.allclose(att.sum(-1), torch.ones(3, 2, 5))
    plain = _attention().attention_weights(x)
    assert plain.diagonal(dim1=-2, dim2=-1).min() > 1e-4
    # off the diagonal, the mask just renormalises each row
    off = plain.masked_fill(torch.eye(5, dtype=torch.bool), 0)
    assert torch.allclose(att, off / off.sum(-1, keepdim=True), atol=1e-6)


@pytest.mark.parametrize("kind, set_value, factor", [("log", math.log(2.0), 2.0), ("plain", 0.25, 4.0)])
def test_temperature_scales_the_logits(kind: str, set_value: float, factor: float) -> None:
    x = torch.randn(2, 5, 16)
    base = _attention()
    att = _attention(temperature=kind)
    att.load_state_dict(base.state_dict(), strict=False)
    q, k, _ = base._qkv(x)
    # at initialisation (log(1/tau) = 0, tau = 1) the temperature changes nothing
    assert torch.allclose(att.scores(q, k), base.scores(q, k))
    with torch.no_grad():
        (att.log_inv_tau if kind == "log" else att.tau).fill_(set_value)
    assert torch.allclose(att.scores(q, k), factor * base.scores(q, k), atol=1e-6)
    assert torch.allclose(att.attention_weights(x), (factor * base.scores(q, k)).softmax(-1), atol=1e-6)
    assert math.isclose(float(att.current_tau().detach()), 1 / factor, rel_tol=1e-6)


def test_learned_temperatures_are_reported_per_layer() -> None:
    m = build_model(_cfg(temperature="log", depth=3), 10).model
    assert extra_metrics(m) == {"taus": [1.0, 1.0, 1.0]}
    with torch.no_grad():
        m.blocks[0][1].attn.log_inv_tau.fill_(math.log(2.0))
    assert extra_metrics(m)["taus"] == [1.0, 0.5, 1.0]
    assert extra_metrics(build_model(_cfg(), 10).model) == {}


@pytest.mark.parametrize("kw", [{}, {"diag_mask": True}, {"temperature": "log"}, {"diag_mask": True, "temperature": "plain"}])
def test_fused_attention_path_equals_the_explicit_formula(kw: dict) -> None:
    att = _attention(**kw)
    if "temperature" in kw:
        with torch.no_grad():
            (att.log_inv_tau if kw["temperature"] == "log" else att.tau).fill_(0.7)
    x = torch.randn(2, 6, 16)
    _, _, v = att._qkv(x)
    explicit = att.to_out((att.attention_weights(x) @ v).transpose(1, 2).reshape(2, 6, 16))
    assert torch.allclose(att(x), explicit, atol=1e-5)


def test_relative_position_terms_depend_only_on_the_distance() -> None:
    att = _attention(rel_pos=True)
    t = 7
    # with q = k = 0 only the (d) term v . W_r r(i - j) is left: it must be constant along diagonals
    q = torch.zeros(1, 2, t, 8)
    s = att.scores(q, q)[0]
    assert s.abs().max() > 0
    for offset in range(-t + 1, t):
        d = s.diagonal(offset=offset, dim1=-2, dim2=-1)
        assert torch.allclose(d, d[:, :1].expand_as(d), atol=1e-6)
    assert not torch.allclose(s.diagonal(offset=1, dim1=-2, dim2=-1)[:, 0], s.diagonal(offset=-1, dim1=-2, dim2=-1)[:, 0])
    # (b) q . W_r r(i - j): shifting the whole sequence by one position leaves the scores unchanged
    x = torch.randn(1, t + 1, 16)
    q, k, _ = att._qkv(x)
    s_all = att.scores(q, k)
    s_shift = att.scores(q[:, :, 1:], k[:, :, 1:])
    assert torch.allclose(s_all[..., 1:, 1:], s_shift, atol=1e-5)
    # without relative terms the scores are plain q . k
    plain = _attention()
    plain.load_state_dict(att.state_dict(), strict=False)
    assert torch.allclose(plain.scores(q, k), q @ k.transpose(-1, -2) / math.sqrt(8), atol=1e-6)
    assert not torch.allclose(s_all, plain.scores(q, k))


@pytest.mark.parametrize("arch", ["vit_cifar", "vitn_cifar"])
def test_aux_heads(arch: str) -> None:
    m = build_model(_cfg(arch, depth=3, aux_heads=2), 10).model
    assert isinstance(m, SmallViT) and len(m.heads) == 3 and len(m.blocks) == 3
    assert all(len(b.layers if isinstance(b, nn.TransformerEncoder) else b) == 1 for b in m.blocks)
    m.train()
    logits, aux = forward_train(m, torch.randn(2, 3, 16, 16))
    assert logits.shape == (2, 10) and len(aux) == 2 and all(a.shape == (2, 10) for a in aux)
    (logits.logsumexp(1).mean() + sum(a.logsumexp(1).mean() for a in aux)).backward()
    assert m.heads[0][0].weight.grad is not None
    assert classifier(m) is m.heads[2][2]
    m.eval()
    out = m(torch.randn(2, 3, 16, 16))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)


def test_post_norm_vit_uses_torch_transformer_layers() -> None:
    m = build_model(_cfg("vit_cifar"), 10).model
    layers = [x for x in m.modules() if isinstance(x, nn.TransformerEncoderLayer)]
    assert len(layers) == 2 and all(not layer.norm_first for layer in layers)

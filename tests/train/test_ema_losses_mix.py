"""EMA maths, both label-smoothing styles, and MixUp/CutMix targets, against hand computations."""

import math

import pytest
import torch
from torch import nn

from fgbench.recipe import AugmentConfig
from fgbench.train.ema import ModelEMA, ramp_decay
from fgbench.train.losses import ClassificationLoss, smooth_targets
from fgbench.train.mix import BatchMixer


def tiny_bn_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def test_ramp_decay_matches_simpleclassification():
    assert ramp_decay(0.9998, 2000, 1) == pytest.approx(0.9998 * (1 - math.exp(-1 / 2000)))
    assert ramp_decay(0.9998, 2000, 2000) == pytest.approx(0.9998 * (1 - math.exp(-1)))
    assert ramp_decay(0.99, 0, 5) == 0.99
    # a ramp shorter than one update still ramps: 0.9 * (1 - e^-2) after the first of them
    assert ramp_decay(0.9, 0.5, 1) == pytest.approx(0.9 * (1 - math.exp(-2)))


def test_ema_updates_parameters_and_bn_buffers_by_hand():
    model = tiny_bn_model()
    ema = ModelEMA(model, decay=0.9, ramp_steps=10.0)
    expected = {k: v.clone().double() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for u in range(1, 6):
        x = torch.randn(8, 3, 8, 8)
        model(x).sum().backward()  # train mode: BN running stats move too
        opt.step()
        opt.zero_grad()
        ema.update(model)
        d = 0.9 * (1 - math.exp(-u / 10.0))
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                expected[k] = d * expected[k] + (1 - d) * v.double()
            else:
                expected[k] = v.clone().double()
    got = ema.module.state_dict()
    assert ema.updates == 5
    for k, v in expected.items():
        assert torch.allclose(got[k].double(), v, atol=1e-6), k
    # the running statistics really were averaged (they differ from the model's own)
    assert not torch.allclose(got["1.running_mean"], model.state_dict()["1.running_mean"])
    assert int(got["1.num_batches_tracked"]) == 5
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())


def test_ema_state_round_trip():
    model = tiny_bn_model()
    ema = ModelEMA(model, 0.99, 5)
    ema.update(model)
    other = ModelEMA(model, 0.99, 5)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1


@pytest.mark.parametrize("s", [0.1, 0.3])
def test_smoothing_styles_hard_targets(s):
    C = 5
    y = torch.tensor([0, 3])
    torch_t = smooth_targets(y, C, s, "torch")
    cy_t = smooth_targets(y, C, s, "cyizhuo")
    assert torch_t[0].tolist() == pytest.approx([1 - s + s / C] + [s / C] * 4)
    assert cy_t[1].tolist() == pytest.approx([s / (C - 1)] * 3 + [1 - s] + [s / (C - 1)])
    assert torch.allclose(torch_t.sum(1), torch.ones(2)) and torch.allclose(cy_t.sum(1), torch.ones(2))
    logits = torch.randn(2, C)
    logp = torch.log_softmax(logits, 1)
    for style, q in (("torch", torch_t), ("cyizhuo", cy_t)):
        loss = ClassificationLoss(C, s, style)(logits, y)
        assert loss.item() == pytest.approx(-(q * logp).sum(1).mean().item(), rel=1e-6)
    # torch style is exactly nn.CrossEntropyLoss(label_smoothing=s)
    assert ClassificationLoss(C, s, "torch")(logits, y).item() == pytest.approx(
        nn.CrossEntropyLoss(label_smoothing=s)(logits, y).item(), rel=1e-6)


def test_defaults_and_no_smoothing_are_plain_cross_entropy():
    torch.manual_seed(1)
    logits, y = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    plain = nn.functional.cross_entropy(logits, y).item()
    assert ClassificationLoss(5)(logits, y).item() == pytest.approx(plain, rel=1e-6)  # smoothing 0 by default
    assert ClassificationLoss(5, 0.0, "cyizhuo")(logits, y).item() == pytest.approx(plain, rel=1e-6)
    # the default style is torch's
    assert ClassificationLoss(5, 0.2)(logits, y).item() == pytest.approx(
        nn.CrossEntropyLoss(label_smoothing=0.2)(logits, y).item(), rel=1e-6)
    with pytest.raises(ValueError, match="unknown smoothing style 'other'"):
        smooth_targets(y, 5, 0.1, "other")


def test_smoothing_of_mixed_targets_equals_mixing_smoothed_targets():
    C, s, lam = 4, 0.2, 0.7
    a, b = torch.tensor([1]), torch.tensor([2])
    mixed = lam * nn.functional.one_hot(a, C).float() + (1 - lam) * nn.functional.one_hot(b, C).float()
    for style in ("torch", "cyizhuo"):
        lhs = smooth_targets(mixed, C, s, style)
        rhs = lam * smooth_targets(a, C, s, style) + (1 - lam) * smooth_targets(b, C, s, style)
        assert torch.allclose(lhs, rhs) and lhs.sum().item() == pytest.approx(1.0)
        logits = torch.randn(1, C)
        loss = ClassificationLoss(C, s, style)(logits, mixed)
        assert loss.item() == pytest.approx(-(lhs * torch.log_softmax(logits, 1)).sum().item(), rel=1e-6)


def test_mixup_targets_sum_to_one_and_match_lambda():
    torch.manual_seed(3)
    C = 6
    mixer = BatchMixer(AugmentConfig(mixup_alpha=0.4), C)
    x = torch.rand(8, 3, 4, 4)
    y = torch.arange(8) % C
    xm, t = mixer(x, y)
    assert t.shape == (8, C) and torch.allclose(t.sum(1), torch.ones(8))
    # v2.MixUp pairs each sample with the previous one (roll by 1) with one lambda for the batch
    lam = t[1, y[1]].item()
    assert torch.allclose(xm, lam * x + (1 - lam) * x.roll(1, 0), atol=1e-6)
    assert torch.allclose(t, lam * nn.functional.one_hot(y, C) + (1 - lam) * nn.functional.one_hot(y.roll(1), C))


def test_cutmix_targets_match_the_pasted_area():
    torch.manual_seed(5)
    C = 4
    mixer = BatchMixer(AugmentConfig(cutmix_alpha=1.0), C)
    x = torch.zeros(4, 1, 10, 10)
    x[torch.arange(4) % 2 == 1] = 1.0  # samples alternate 0 / 1, so a pasted box is visible
    y = torch.tensor([0, 1, 2, 3])
    for _ in range(5):
        xm, t = mixer(x, y)
        assert torch.allclose(t.sum(1), torch.ones(4))
        pasted = (xm[0] != x[0]).float().mean().item()  # fraction of sample 0 replaced by sample 3
        assert t[0, 0].item() == pytest.approx(1 - pasted, abs=1e-6)
        assert t[0, 3].item() == pytest.approx(pasted, abs=1e-6)


def test_mix_prob_and_switch():
    torch.manual_seed(0)
    C = 3
    y = torch.tensor([0, 1, 2, 0])
    x = torch.rand(4, 3, 8, 8)
    off = BatchMixer(AugmentConfig(mixup_alpha=1.0, mix_prob=0.0), C)
    assert off(x, y)[1] is y  # never mixed: plain labels
    both = BatchMixer(AugmentConfig(mixup_alpha=1.0, cutmix_alpha=1.0, mix_prob=0.5, mix_switch_prob=1.0), C)
    kinds = set()
    for _ in range(40):
        xm, t = both(x, y)
        if t is y:
            kinds.add("plain")
        else:
            # switch prob 1: always CutMix, whose pixels are copies (never blends)
            assert bool(((xm == x) | (xm == x.roll(1, 0))).all())
            kinds.add("cutmix")
    assert kinds == {"plain", "cutmix"}
    assert not BatchMixer(AugmentConfig(), C).enabled


@pytest.mark.parametrize(("section", "op"), [({"mixup_alpha": 0.4}, "MixUp"), ({"cutmix_alpha": 0.3}, "CutMix")])
def test_a_mixed_batch_is_torchvisions_op_with_the_recipes_alpha(section, op):
    """mix_prob = 1: exactly v2.MixUp / v2.CutMix with the recipe's alpha, with no extra random draw."""
    from torchvision.transforms import v2

    C = 5
    x = torch.rand(6, 3, 12, 12)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    mixer = BatchMixer(AugmentConfig(**section), C)
    alpha = next(iter(section.values()))
    for seed in range(3):
        torch.manual_seed(seed)
        xm, t = mixer(x, y)
        torch.manual_seed(seed)
        xr, tr = getattr(v2, op)(alpha=alpha, num_classes=C)(x, y)
        assert torch.equal(xm, xr) and torch.equal(t, tr)


def test_switch_prob_zero_always_mixes_up():
    torch.manual_seed(2)
    C = 3
    y = torch.tensor([0, 1, 2, 0])
    x = torch.rand(4, 3, 8, 8)
    both = BatchMixer(AugmentConfig(mixup_alpha=1.0, cutmix_alpha=1.0, mix_switch_prob=0.0), C)
    for _ in range(10):
        xm, t = both(x, y)
        lam = t[1, y[1]].item()  # MixUp: every pixel is the same blend of the pair
        assert torch.allclose(xm, lam * x + (1 - lam) * x.roll(1, 0), atol=1e-6)

"""The learned input normalizer (enhuiz's Normalizer)."""

from __future__ import annotations

import copy

import torch

from fgbench.train.models.normalizer import LearnedNormalizer


def test_first_batch_initialises_then_ema_with_momentum_001() -> None:
    norm = LearnedNormalizer().train()
    a = torch.rand(8, 3, 4, 4) * 2 + 1
    y = norm(a)
    assert torch.isclose(norm.running_mean, a.mean().reshape(1)).all()
    assert torch.isclose(norm.running_var, a.var(unbiased=False).reshape(1)).all()
    assert abs(float(y.mean())) < 1e-5 and abs(float(y.var(unbiased=False)) - 1) < 1e-4
    b = torch.rand(8, 3, 4, 4) * 5
    norm(b)
    assert torch.allclose(norm.running_mean, 0.99 * a.mean() + 0.01 * b.mean())
    assert torch.allclose(norm.running_var, 0.99 * a.var(unbiased=False) + 0.01 * b.var(unbiased=False))


def test_eval_reads_but_never_updates() -> None:
    norm = LearnedNormalizer().train()
    norm(torch.rand(4, 3, 4, 4))
    state = copy.deepcopy(norm.state_dict())
    norm.eval()
    x = torch.rand(4, 3, 4, 4) * 10
    y = norm(x)
    assert all(torch.equal(v, state[k]) for k, v in norm.state_dict().items())
    assert torch.allclose(y, (x - state["running_mean"]) / (state["running_var"] + 1e-9).sqrt())


def test_per_channel_statistics() -> None:
    norm = LearnedNormalizer(per_channel=True).train()
    x = torch.randn(16, 3, 4, 4) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1) + torch.tensor([0.0, 5.0, -5.0]).view(1, 3, 1, 1)
    y = norm(x)
    assert norm.running_mean.shape == (3,)
    assert torch.allclose(norm.running_mean, x.mean((0, 2, 3)))
    assert torch.allclose(y.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.var((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)


def test_uninitialised_state_round_trips_through_a_checkpoint() -> None:
    fresh = LearnedNormalizer()
    other = LearnedNormalizer()
    other.load_state_dict(fresh.state_dict())
    other.train()(torch.ones(2, 3, 2, 2) * 3)  # NaN means "not yet initialised": the first batch sets it
    assert float(other.running_mean) == 3.0

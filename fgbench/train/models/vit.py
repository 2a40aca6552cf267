"""Vision transformers for small images, after enhuiz/image-classification's ``ViT`` and ``ViTN``.

Both cut the image into ``patch_size`` squares (8x8 on CIFAR gives 16 tokens), embed each with a
linear map (a strided convolution), add a fixed 2-D sinusoidal position encoding (a row and a
column embedding, summed), prepend a learned cls token (no position encoding) and classify the
cls token with an MLP head ``width -> mlp_ratio*width -> GELU -> classes``.

* ``vit_cifar``: post-norm ``nn.TransformerEncoderLayer`` blocks (ReLU MLP, dropout 0.1), as the
  seed's ``vit-12x256-8x8``.
* ``vitn_cifar``: pre-norm residual blocks ``x + drop(f(LN(x)))`` with our own attention, which
  has the seed's three options:
  - relative position terms (Transformer-XL, arXiv 1901.02860): the score of query i and key j is
    ``(q_i + u)·k_j + (q_i + v)·W_r r(i-j)`` with r a sinusoidal embedding of the signed distance
    over the flattened token sequence (cls included) and u, v learnable per head;
  - a diagonal mask (locality self-attention, arXiv 2112.13492): a token gets no attention weight
    on itself;
  - a learnable softmax temperature per layer: ``log`` learns s = log(1/tau) from 0 and multiplies
    the scores by exp(s); ``plain`` learns tau from 1 and divides by it.
  As in the seed there is no final LayerNorm before the head.

Decisions:

* The seed's relative-position code projects a (i, d, j)-shaped embedding with a Linear over its
  last axis, which only runs when the token count equals the width; we compute the intended
  ``W_r r(i-j)`` for every pair directly (the sequence is 17 tokens, so the (T, T, width) tensor is
  tiny) rather than with Transformer-XL's shift trick.
* Without relative positions the attention runs through ``F.scaled_dot_product_attention`` (fused
  kernels on GPU); the temperature is folded into the query scale and the diagonal mask is a
  boolean mask, which is exactly the explicit formula. ``Attention.attention_weights`` computes the
  weights explicitly; a test checks the two paths agree.
* Auxiliary heads: the layers are split into ``aux_heads + 1`` equal blocks, each followed by a
  head (the seed's ViTAux). In training mode the model returns ``ModelOutputs(logits, aux)``;
  ``forward_train`` unpacks it and the trainer adds the auxiliary cross-entropies. In eval mode
  the auxiliary heads are skipped and only the logits come back.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from fgbench.recipe import ModelConfig, ViTConfig


class ModelOutputs(NamedTuple):
    logits: Tensor
    aux: list[Tensor]


def sinusoid(pos: Tensor, dim: int) -> Tensor:
    """(..., ) positions -> (..., dim) embedding: sin of the first half of frequencies, cos of the second."""
    half = dim // 2
    omega = torch.exp(-math.log(1e4) * torch.arange(half, device=pos.device, dtype=torch.float32) / half)
    e = pos.to(torch.float32)[..., None] * omega
    return torch.cat([e.sin(), e.cos()], dim=-1)


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, width: int, in_channels: int = 3):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, width, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.randn(width))

    def forward(self, x: Tensor) -> Tensor:
        p = self.patch_size
        if x.shape[-1] % p or x.shape[-2] % p:
            raise ValueError(f"image size {tuple(x.shape[-2:])} is not a multiple of model.vit.patch_size {p}")
        x = self.proj(x)  # (B, D, h, w)
        b, d, h, w = x.shape
        pe = sinusoid(torch.arange(h, device=x.device), d)[:, None, :] + sinusoid(torch.arange(w, device=x.device), d)[None, :, :]
        x = x.flatten(2).transpose(1, 2) + pe.reshape(h * w, d).to(x.dtype)  # (B, hw, D)
        cls = self.cls_token.to(x.dtype).expand(b, 1, d)
        return torch.cat([cls, x], dim=1)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, rel_pos: bool = False, diag_mask: bool = False, temperature: str = "none"):
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        self.scale = self.head_dim**-0.5
        self.rel_pos = rel_pos
        self.diag_mask = diag_mask
        self.temperature = temperature
        self.to_qkv = nn.Linear(width, 3 * width, bias=False)
        self.to_out = nn.Linear(width, width)
        if rel_pos:
            self.to_pos = nn.Linear(width, width, bias=False)
            self.pos_u = nn.Parameter(torch.randn(heads, self.head_dim))
            self.pos_v = nn.Parameter(torch.randn(heads, self.head_dim))
        if temperature == "log":
            self.log_inv_tau = nn.Parameter(torch.zeros(1))
        elif temperature == "plain":
            self.tau = nn.Parameter(torch.ones(1))
        elif temperature != "none":
            raise ValueError(f"unknown temperature {temperature!r}")

    def current_tau(self) -> Tensor | None:
        """The learned temperature tau (None when fixed at 1)."""
        if self.temperature == "log":
            return torch.exp(-self.log_inv_tau)
        if self.temperature == "plain":
            return self.tau
        return None

    def _temp_factor(self, dtype: torch.dtype) -> Tensor | None:
        if self.temperature == "log":
            return self.log_inv_tau.exp().to(dtype)
        if self.temperature == "plain":
            return (1.0 / self.tau).to(dtype)
        return None

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, t, _ = x.shape
        q, k, v = self.to_qkv(x).reshape(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return q, k, v  # each (B, H, T, dh)

    def _rel_embeddings(self, t: int, device, dtype) -> Tensor:
        pos = torch.arange(t, device=device)
        dist = pos[:, None] - pos[None, :]  # i - j
        r = self.to_pos(sinusoid(dist, self.heads * self.head_dim).to(dtype))  # (T, T, D)
        return r.reshape(t, t, self.heads, self.head_dim)

    def scores(self, q: Tensor, k: Tensor) -> Tensor:
        """Pre-softmax attention scores (B, H, T, T), with every option applied."""
        s = q @ k.transpose(-1, -2)
        if self.rel_pos:
            t = q.shape[-2]
            r = self._rel_embeddings(t, q.device, q.dtype)
            s = s + torch.einsum("bhid,ijhd->bhij", q, r)                     # (b) query . position
            s = s + torch.einsum("hd,bhjd->bhj", self.pos_u.to(q.dtype), k)[:, :, None, :]  # (c) u . key
            s = s + torch.einsum("hd,ijhd->hij", self.pos_v.to(q.dtype), r)[None]           # (d) v . position
        s = s * self.scale
        if self.diag_mask:
            t = s.shape[-1]
            eye = torch.eye(t, dtype=torch.bool, device=s.device)
            s = s.masked_fill(eye, torch.finfo(s.dtype).min)
        factor = self._temp_factor(s.dtype)
        if factor is not None:
            s = s * factor
        return s

    def attention_weights(self, x: Tensor) -> Tensor:
        """Softmax attention weights (B, H, T, T) for input tokens ``x`` (B, T, D), computed explicitly."""
        q, k, _ = self._qkv(x)
        return self.scores(q, k).softmax(dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self._qkv(x)
        if self.rel_pos:
            out = self.scores(q, k).softmax(dim=-1) @ v
        else:
            factor = self._temp_factor(q.dtype)
            if factor is not None:
                q = q * factor
            mask = None
            if self.diag_mask:
                mask = ~torch.eye(t, dtype=torch.bool, device=x.device)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        return self.to_out(out.transpose(1, 2).reshape(b, t, d))


class PreNormLayer(nn.Module):
    def __init__(self, cfg: "ViTConfig"):
        super().__init__()
        w = cfg.width
        hidden = int(w * cfg.mlp_ratio)
        self.norm1 = nn.LayerNorm(w)
        self.attn = Attention(w, cfg.heads, cfg.rel_pos, cfg.diag_mask, cfg.temperature)
        self.drop1 = nn.Dropout(cfg.dropout)
        self.norm2 = nn.LayerNorm(w)
        self.mlp = nn.Sequential(nn.Linear(w, hidden), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(hidden, w))
        self.drop2 = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop1(self.attn(self.norm1(x)))
        return x + self.drop2(self.mlp(self.norm2(x)))


def _post_norm_block(cfg: "ViTConfig", layers: int) -> nn.Module:
    layer = nn.TransformerEncoderLayer(
        cfg.width, cfg.heads, int(cfg.width * cfg.mlp_ratio), cfg.dropout, batch_first=True, norm_first=False
    )
    return nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)


class SmallViT(nn.Module):
    def __init__(self, cfg: "ViTConfig", num_classes: int, prenorm: bool):
        super().__init__()
        n_blocks = cfg.aux_heads + 1
        per_block = cfg.depth // n_blocks
        w = cfg.width
        self.embed = PatchEmbed(cfg.patch_size, w)
        if prenorm:
            self.blocks = nn.ModuleList(nn.Sequential(*[PreNormLayer(cfg) for _ in range(per_block)]) for _ in range(n_blocks))
        else:
            self.blocks = nn.ModuleList(_post_norm_block(cfg, per_block) for _ in range(n_blocks))
        hidden = int(w * cfg.mlp_ratio)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(w, hidden), nn.GELU(), nn.Linear(hidden, num_classes)) for _ in range(n_blocks)
        )
        self.classifier_name = f"heads.{n_blocks - 1}.2"

    def forward(self, x: Tensor):
        x = self.embed(x)
        aux: list[Tensor] = []
        last = len(self.blocks) - 1
        for i, (block, head) in enumerate(zip(self.blocks, self.heads)):
            x = block(x)
            if i < last and self.training:
                aux.append(head(x[:, 0]))
        logits = self.heads[last](x[:, 0])
        if aux:
            return ModelOutputs(logits, aux)
        return logits

    def attentions(self) -> list[Attention]:
        return [m for m in self.modules() if isinstance(m, Attention)]

    def extra_metrics(self) -> dict:
        taus = [a.current_tau() for a in self.attentions()]
        if not taus or taus[0] is None:
            return {}
        return {"taus": [round(float(t.detach().float().mean()), 6) for t in taus if t is not None]}


def build_vit(cfg: "ModelConfig", num_classes: int) -> SmallViT:
    return SmallViT(cfg.vit, num_classes, prenorm=cfg.arch == "vitn_cifar")

"""Building blocks of the renderer DiT. Tokens are ``[B, N, D]``; every Linear has no bias.

Rounding follows the original bfloat16 model: norms and the rotary embedding compute in float32 and round once;
element-wise ops round after each op (plain tensor arithmetic in the model dtype).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6


def rms_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x / sqrt(mean(x²) + 1e-6) · weight over the last dim, computed in float32, rounded once to x's dtype."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + EPS) * weight.float()).to(x.dtype)


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the last dim without affine parameters (eps 1e-6, biased variance)."""
    return F.layer_norm(x, x.shape[-1:], eps=EPS)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x · (1 + scale) + shift; shift/scale ``[B or 1, 1, D]`` broadcast over tokens."""
    return x * (1 + scale) + shift


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half rotary embedding: x·cosΘ + [−x₂ | x₁]·sinΘ in float32, rounded once.

    x: ``[B, heads, N, d]``; cos, sin: float32 ``[N, d]``.
    """
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (xf * cos + rotated * sin).to(x.dtype)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, N, heads·d]`` → ``[B, heads, N, d]`` (feature index = head·d + c)."""
    batch, tokens, _ = x.shape
    return x.view(batch, tokens, heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``[B, heads, N, d]`` → ``[B, N, heads·d]``."""
    batch, heads, tokens, dim = x.shape
    return x.transpose(1, 2).reshape(batch, tokens, heads * dim)


class SelfAttention(nn.Module):
    """Full bidirectional attention over all video tokens with per-head RMSNorm on q, k and 3D RoPE.

    ``attend`` computes softmax(q·kᵀ/√d)·v for ``[B, heads, N, d]`` tensors: SDPA by default; context parallelism
    installs an attention over the whole sequence of a process group (``context_parallel.install``).
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_norm = nn.Parameter(torch.ones(dim // heads))
        self.k_norm = nn.Parameter(torch.ones(dim // heads))
        self.out = nn.Linear(dim, dim, bias=False)
        self.attend: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] = F.scaled_dot_product_attention

    def forward(self, x: torch.Tensor, rope_cos: torch.Tensor, rope_sin: torch.Tensor) -> torch.Tensor:
        """x ``[B, N, D]`` → ``[B, N, D]``; rope tables float32 ``[N, d]``."""
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        q = apply_rope(rms_norm(q, self.q_norm), rope_cos, rope_sin)
        k = apply_rope(rms_norm(k, self.k_norm), rope_cos, rope_sin)
        return self.out(merge_heads(self.attend(q, k, v)))


class CrossAttention(nn.Module):
    """Attention from video tokens to context tokens (no RoPE, no mask), per-head RMSNorm on q and k."""

    def __init__(self, dim: int, context_dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(context_dim, 2 * dim, bias=False)
        self.q_norm = nn.Parameter(torch.ones(dim // heads))
        self.k_norm = nn.Parameter(torch.ones(dim // heads))
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x ``[B, N, D]``, context ``[B, L, D_ctx]`` → ``[B, N, D]``."""
        k, v = (split_heads(t, self.heads) for t in self.kv(context).chunk(2, dim=-1))
        q = rms_norm(split_heads(self.q(x), self.heads), self.q_norm)
        k = rms_norm(k, self.k_norm)
        return self.out(merge_heads(F.scaled_dot_product_attention(q, k, v)))

    def uniform_context(self, context_row: torch.Tensor) -> torch.Tensor:
        """Output for a context whose rows are all equal to ``context_row`` ``[B, 1, D_ctx]`` → ``[B, 1, D]``.

        The softmax over identical keys is uniform, so every query gets W_o·W_v·e: exact, independent of the tokens.
        """
        value = self.kv(context_row).chunk(2, dim=-1)[1]
        return self.out(value)


class MLP(nn.Module):
    """fc2(GELU(fc1(x))), hidden width ratio·D, exact (erf) GELU."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class AdaLNModulation(nn.Module):
    """AdaLN-LoRA: chunks of up(down(SiLU(a))) + L, each ``[B or 1, 1, D]``."""

    def __init__(self, dim: int, lora_dim: int, chunks: int) -> None:
        super().__init__()
        self.chunks = chunks
        self.down = nn.Linear(dim, lora_dim, bias=False)
        self.up = nn.Linear(lora_dim, chunks * dim, bias=False)

    def forward(self, silu_emb: torch.Tensor, lora: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """silu_emb ``[Bt, D]`` = SiLU(a); lora ``[Bt, 3D]`` (its first chunks·D entries are used)."""
        modulation = self.up(self.down(silu_emb)) + lora[:, : self.up.out_features]
        return tuple(m[:, None, :] for m in modulation.chunk(self.chunks, dim=-1))


class TimestepEmbedding(nn.Module):
    """The LoRA term L = linear_2(SiLU(linear_1(s))) ``[Bt, 3D]`` from the timestep sinusoid s ``[Bt, D]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(dim, dim, bias=False)
        self.linear_2 = nn.Linear(dim, 3 * dim, bias=False)

    def forward(self, sinusoid: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(sinusoid)))


class FinalLayer(nn.Module):
    """Modulated LayerNorm then a Linear to the patch outputs ``[B, N, p·p·pt·C_out]``."""

    def __init__(self, dim: int, lora_dim: int, out_features: int) -> None:
        super().__init__()
        self.adaln = AdaLNModulation(dim, lora_dim, chunks=2)
        self.linear = nn.Linear(dim, out_features, bias=False)

    def forward(self, x: torch.Tensor, silu_emb: torch.Tensor, lora: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaln(silu_emb, lora)
        return self.linear(modulate(layer_norm(x), shift, scale))

"""Optional FP8 matrix products for the DiT's large linear layers (``--fp8``: off by default, not exact).

Weights are quantised once to float8 e4m3 with one scale per output row; activations are quantised on the fly
with one scale per token. ``torch._scaled_mm`` multiplies them (on Hopper GPUs at about twice the bf16 rate) and
returns the input's dtype. Only the layers that carry almost all FLOPs are converted: the self-attention QKV and output
projections and the two MLP layers of every block. The deviation from the bf16 network is measured in
BENCHMARKS.md; it is a numerical approximation of the released model, so it is never enabled silently.
"""

from __future__ import annotations

import torch
from torch import nn

from .dit import DiffusionRendererDiT

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[M, K]`` → (float8 ``[M, K]``, float32 scales ``[M, 1]``) with x ≈ q · scale row by row."""
    scale = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12) / FP8_MAX
    return (x.float() / scale).to(FP8), scale


class FP8Linear(nn.Module):
    """A bias-free Linear computing x·Wᵀ with float8 operands (row-wise scales), output in x's dtype."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight, scale = quantize_rows(linear.weight.detach())
        self.weight = nn.Parameter(weight, requires_grad=False)  # [out, in], float8
        self.scale = nn.Parameter(scale.T.contiguous(), requires_grad=False)  # [1, out]
        self.out_features = linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., in]`` → ``[..., out]``."""
        rows, scale = quantize_rows(x.reshape(-1, x.shape[-1]))
        y = torch._scaled_mm(rows, self.weight.T, scale_a=scale, scale_b=self.scale, out_dtype=x.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)


def use_fp8(network: DiffusionRendererDiT) -> int:
    """Replace the large Linears of every block by ``FP8Linear`` in place; returns how many were replaced."""
    replaced = 0
    for block in network.blocks:
        for owner, name in ((block.self_attn, "qkv"), (block.self_attn, "out"), (block.mlp, "fc1"), (block.mlp, "fc2")):
            setattr(owner, name, FP8Linear(getattr(owner, name)))
            replaced += 1
    return replaced

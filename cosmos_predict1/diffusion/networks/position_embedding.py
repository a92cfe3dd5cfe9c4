"""Position tables of the DiT: 3D rotary angles (self-attention) and the per-block sin-cos embedding.

Both are functions of the token grid (T' latent frames × H'/2 patch rows × W'/2 patch columns); tokens are ordered
t-major, then row, then column.

The released model runs with every buffer cast to bfloat16, including the rotary frequency ranges, so the original
computes the rotary table in bfloat16 arithmetic (even the base 10000 is rounded to 9984). ``rope_angles`` performs
the same operations in the requested ``dtype``, which reproduces that table exactly in bfloat16 and the plain
float32 table in float32.
"""

from __future__ import annotations

import math

import torch


def axis_split(width: int) -> tuple[int, int, int]:
    """(t, h, w) widths of a vector split over three axes: h = w = 2·⌊width/6⌋, t takes the rest."""
    spatial = width // 6 * 2
    return width - 2 * spatial, spatial, spatial


def _inverse_frequencies(
    dim: int, extrapolation_ratio: float, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """ω_k = 1 / θ^(2k/dim), k < dim/2, θ = 10000·ntk, computed in ``dtype`` like the original's cast buffers."""
    exponents = (torch.arange(0, dim, 2, device=device)[: dim // 2].float() / dim).to(dtype)
    theta = 10000.0 * extrapolation_ratio ** (dim / (dim - 2))
    return 1.0 / (theta**exponents)


def rope_angles(
    frames: int,
    rows: int,
    cols: int,
    head_dim: int,
    fps: torch.Tensor,
    *,
    base_fps: int = 24,
    extrapolation_ratios: tuple[float, float, float] = (1.0, 1.0, 1.0),
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Rotary angles Θ, float32 ``[N, head_dim]`` with N = frames·rows·cols.

    Per token the 64-long (for head_dim 128) half vector is [p_t·ω_t | p_h·ω_h | p_w·ω_w] with p_t = t·base_fps/fps,
    p_h = row, p_w = column, and the full vector is that half written twice (rotate-half pairing of dims k, k+d/2).
    ``fps``: tensor whose first element is the clip's frame rate (24 in the renderers).
    """
    device = torch.device(device)
    dim_t, dim_h, dim_w = axis_split(head_dim)
    ratio_t, ratio_h, ratio_w = extrapolation_ratios
    freq_t = _inverse_frequencies(dim_t, ratio_t, dtype, device)
    freq_h = _inverse_frequencies(dim_h, ratio_h, dtype, device)
    freq_w = _inverse_frequencies(dim_w, ratio_w, dtype, device)
    positions = torch.arange(max(frames, rows, cols), device=device, dtype=torch.float32).to(dtype)
    frame_rate = fps.reshape(-1)[:1].to(device=device, dtype=dtype)
    half_t = torch.outer(positions[:frames] / frame_rate * base_fps, freq_t)
    half_h = torch.outer(positions[:rows], freq_h)
    half_w = torch.outer(positions[:cols], freq_w)
    half = torch.cat(
        [
            half_t[:, None, None, :].expand(frames, rows, cols, -1),
            half_h[None, :, None, :].expand(frames, rows, cols, -1),
            half_w[None, None, :, :].expand(frames, rows, cols, -1),
        ],
        dim=-1,
    )
    return torch.cat([half, half], dim=-1).reshape(frames * rows * cols, head_dim).float()


def _sincos_1d(width: int, positions: torch.Tensor) -> torch.Tensor:
    """[sin(p·ν) | cos(p·ν)], ν_k = 10000^(−k/(width/2)), float64 ``[len(positions), width]``."""
    omega = torch.arange(width // 2, dtype=torch.float64) / (width / 2.0)
    omega = 1.0 / 10000**omega
    angles = positions.double()[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_embedding(
    frames: int,
    rows: int,
    cols: int,
    width: int,
    *,
    extrapolation_ratios: tuple[float, float, float] = (1.0, 1.0, 1.0),
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Fixed additive embedding ``[N, width]``: per token [E_t(t) | E_h(row) | E_w(col)].

    Computed in float64, rounded to float32 (the original's buffers) and then to ``dtype``.
    """
    dim_t, dim_h, dim_w = axis_split(width)
    ratio_t, ratio_h, ratio_w = extrapolation_ratios
    emb_t = _sincos_1d(dim_t, torch.arange(frames, dtype=torch.float64) / ratio_t).float()
    emb_h = _sincos_1d(dim_h, torch.arange(rows, dtype=torch.float64) / ratio_h).float()
    emb_w = _sincos_1d(dim_w, torch.arange(cols, dtype=torch.float64) / ratio_w).float()
    table = torch.cat(
        [
            emb_t[:, None, None, :].expand(frames, rows, cols, -1),
            emb_h[None, :, None, :].expand(frames, rows, cols, -1),
            emb_w[None, None, :, :].expand(frames, rows, cols, -1),
        ],
        dim=-1,
    )
    return table.reshape(frames * rows * cols, width).to(device=device, dtype=dtype)


def timestep_sinusoid(timesteps: torch.Tensor, width: int) -> torch.Tensor:
    """[cos(c·f) | sin(c·f)], f_k = exp(−ln(10000)·k/(width/2)), float32 ``[len(timesteps), width]``."""
    half = width // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    angles = timesteps.reshape(-1, 1).float() * torch.exp(exponent)[None, :]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)

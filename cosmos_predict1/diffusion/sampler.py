"""EDM Euler sampling as the renderers use it (Karras σ schedule, no churn, last σ = 0).

The network is the EDM F-predictor: it receives x·c_in and c_noise = ¼·ln σ and the denoised estimate is
c_skip·x + c_out·F. Scalars are computed in float32 like the original scheduler; the state lives in the model
dtype between steps and the Euler update runs in float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

SIGMA_MIN = 0.02
SIGMA_MAX = 80.0
SIGMA_DATA = 0.5
RHO = 7.0

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""F = denoiser(x_scaled, c_noise): x_scaled in the state dtype, c_noise a 0-dim tensor in the state dtype."""


def karras_sigmas(
    num_steps: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO
) -> torch.Tensor:
    """float32 ``[num_steps + 1]``: (σmax^(1/ρ) + k/(n−1)·(σmin^(1/ρ) − σmax^(1/ρ)))^ρ, then a final 0."""
    ramp = torch.linspace(0, 1, num_steps, dtype=torch.float32)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def init_noise_sigma(sigma_max: float = SIGMA_MAX) -> float:
    """Scale of the initial unit noise: √(σmax² + 1) (the original's choice, not √(σmax² + σ_data²))."""
    return math.sqrt(sigma_max**2 + 1)


@dataclass(frozen=True)
class StepCoefficients:
    """float32-exact scalars of one Euler step."""

    sigma: float
    c_in: float
    c_noise: float
    c_skip: float
    c_out: float
    dt: float


def step_coefficients(sigmas: torch.Tensor, sigma_data: float = SIGMA_DATA) -> list[StepCoefficients]:
    """Per step: c_in = 1/√(σ²+σd²), c_noise = ¼ ln σ, c_skip = σd²/(σ²+σd²), c_out = σσd/√(σ²+σd²), dt = σ'−σ."""
    steps = []
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        denominator = sigma**2 + sigma_data**2
        steps.append(
            StepCoefficients(
                sigma=sigma.item(),
                c_in=(1 / denominator**0.5).item(),
                c_noise=(0.25 * torch.log(sigma)).item(),
                c_skip=(sigma_data**2 / denominator).item(),
                c_out=(sigma * sigma_data / denominator**0.5).item(),
                dt=(sigma_next - sigma).item(),
            )
        )
    return steps


def euler_step(x: torch.Tensor, model_output: torch.Tensor, step: StepCoefficients) -> torch.Tensor:
    """x_{k+1} from x_k and F, in float32, returned in F's dtype (c_out·F rounds in F's dtype like the original)."""
    state = x.float()
    denoised = step.c_skip * state + model_output * step.c_out
    derivative = (state - denoised) / step.sigma
    return (state + derivative * step.dt).to(model_output.dtype)


def sample(
    denoiser: Denoiser,
    noise: torch.Tensor,
    num_steps: int,
    *,
    dtype: torch.dtype = torch.float32,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Run the EDM Euler loop from unit noise.

    Args:
        denoiser: F = denoiser(x·c_in, c_noise) (see ``Denoiser``).
        noise: standard normal draw ``[B, C, T', H', W']`` (float32, any device).
        num_steps: number of network evaluations (15 in the renderers).
        dtype: state dtype (the model dtype: bfloat16 on GPU, float32 for parity tests).
        on_step: called after each step with (step index, new state), e.g. for progress bars.

    Returns:
        The final latent ``[B, C, T', H', W']`` in ``dtype``.
    """
    steps = step_coefficients(karras_sigmas(num_steps))
    c_noises = torch.tensor([step.c_noise for step in steps], dtype=torch.float32).to(device=noise.device, dtype=dtype)
    x = (noise * init_noise_sigma()).to(dtype)
    for index, step in enumerate(steps):
        x = euler_step(x, denoiser(x * step.c_in, c_noises[index]), step)
        if on_step is not None:
            on_step(index, x)
    return x

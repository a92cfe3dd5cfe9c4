"""The EDM Euler sampler against the original's loop driven by a fixed toy network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import fixture_cases, load_pt, max_relative_error
from cosmos_predict1.diffusion import sampler


def toy_network(x_scaled: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The fixture's stand-in for the DiT."""
    return 0.9 * torch.tanh(x_scaled) + 0.1 * t * x_scaled


@pytest.mark.fixtures
@pytest.mark.parametrize("case", fixture_cases("sampler", "steps_*.pt"))
def test_sampler_reproduces_fixture(case: Path) -> None:
    ref = load_pt(case)
    num_steps = len(ref["timesteps"])
    sigmas = sampler.karras_sigmas(num_steps)
    assert torch.equal(sigmas, ref["sigmas"].float())
    steps = sampler.step_coefficients(sigmas)
    assert [s.c_noise for s in steps] == pytest.approx(ref["timesteps"].tolist(), rel=1e-6)
    assert sampler.init_noise_sigma() == pytest.approx(float(ref["init_noise_sigma"]), rel=1e-7)

    seen: dict[str, list[torch.Tensor]] = {"x_scaled": [], "t": [], "out": []}

    def recording_network(x_scaled: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = toy_network(x_scaled, t)
        for key, value in zip(seen, (x_scaled, t, out)):
            seen[key].append(value)
        return out

    states: list[torch.Tensor] = []
    final = sampler.sample(recording_network, ref["noise"], num_steps, on_step=lambda i, x: states.append(x))
    assert max_relative_error(torch.stack(seen["x_scaled"]), ref["x_scaled_per_step"]) <= 1e-4
    assert max_relative_error(torch.stack(seen["t"]), ref["t_per_step"]) <= 1e-6
    assert max_relative_error(torch.stack(states), ref["x_next_per_step"]) <= 1e-4
    error = max_relative_error(final, ref["final_sample"])
    assert error <= 1e-4, f"final sample max relative error {error:.2e}"


def test_schedule_matches_spec_table() -> None:
    sigmas = sampler.karras_sigmas(15)
    assert sigmas[0].item() == pytest.approx(79.99998474, rel=1e-8)
    assert sigmas[14].item() == pytest.approx(0.01999998651, rel=1e-8)
    assert sigmas[15].item() == 0.0
    step = sampler.step_coefficients(sigmas)[3]
    assert (step.c_in, step.c_skip, step.c_out) == pytest.approx((0.038589068, 0.00037227906, 0.49990693), rel=1e-6)
    assert torch.tensor(step.c_noise).to(torch.bfloat16).item() == 0.8125


def test_bf16_state_and_final_step() -> None:
    """The last step (σ → 0) returns the denoised estimate; the state stays in the requested dtype."""
    noise = torch.randn(1, 4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    out = sampler.sample(toy_network, noise, 3, dtype=torch.bfloat16)
    assert out.dtype == torch.bfloat16
    steps = sampler.step_coefficients(sampler.karras_sigmas(3))
    x = torch.randn(2, 3).to(torch.bfloat16)
    f = torch.randn(2, 3).to(torch.bfloat16)
    last = sampler.euler_step(x, f, steps[-1])
    expected = (steps[-1].c_skip * x.float() + (f * steps[-1].c_out).float()).to(torch.bfloat16)
    assert torch.allclose(last.float(), expected.float(), rtol=1e-2, atol=1e-6)

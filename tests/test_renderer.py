"""The renderers end to end (tokenizer + DiT + sampler + decode) against the original's runs, and batching."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from conftest import FIXTURES, fixture_cases, load_pt, max_relative_error
from cosmos_predict1.diffusion.networks import FORWARD_7B, INVERSE_7B, build_network
from cosmos_predict1.diffusion.options import SamplingOptions
from cosmos_predict1.diffusion.renderer import ForwardRenderer, InverseRenderer, normalize_normals, work_item_noise
from cosmos_predict1.diffusion.tokenizer import load_tokenizer

TOLERANCE = 1e-4


def _renderer(cls, family: str, base, tokenizer_folder: Path, config: dict, **options):
    network = build_network(FIXTURES / family, base, dtype=torch.float32)
    tokenizer = load_tokenizer(tokenizer_folder, pixel_chunk_duration=config["tokenizer_pixel_chunk_duration"])
    steps = config["pipeline"]["num_steps"]
    return cls(network, tokenizer, device="cpu", options=SamplingOptions(num_steps=steps, **options))


def _uint8(decoded: torch.Tensor) -> torch.Tensor:
    return ((1 + decoded[0]).clamp(0, 2) / 2).permute(1, 2, 3, 0).mul(255).to(torch.uint8)


def _check_run(renderer, ref: dict, condition: torch.Tensor, decoded: torch.Tensor, states: list) -> None:
    errors = {
        "latent_condition": max_relative_error(condition, ref["latent_condition"]),
        "x_per_step": max_relative_error(torch.stack(states[:-1]), ref["x_per_step"][1:]),
        "final_latent": max_relative_error(states[-1], ref["final_latent"]),
        "decoded": max_relative_error(decoded, ref["decoded"]),
    }
    assert all(e <= TOLERANCE for e in errors.values()), errors
    difference = (_uint8(decoded).int() - ref["frames_uint8"].int()).abs().max().item()
    assert difference <= 1, f"uint8 frames differ by {difference} levels"


@pytest.mark.fixtures
@pytest.mark.parametrize("case", fixture_cases("e2e_inverse", pattern=""))
def test_inverse_end_to_end_reproduces_fixture(case: Path, fixture_tokenizer_folder: Path) -> None:
    config = json.loads((case / "config.json").read_text())
    ref = load_pt(case / "outputs.pt")
    renderer = _renderer(InverseRenderer, "dit_inverse", INVERSE_7B, fixture_tokenizer_folder, config)
    index = int(ref["context_index"].reshape(-1)[0])
    name = {0: "basecolor", 1: "metallic", 2: "roughness", 3: "normal", 4: "depth"}[index]
    states: list[torch.Tensor] = []
    fps = float(config["pipeline"]["fps"])
    decoded = renderer.render(ref["video"], [name], [ref["noise"]], on_step=lambda i, x: states.append(x), fps=fps)[
        name
    ]
    _check_run(renderer, ref, renderer.encode(ref["video"]), decoded, states)


@pytest.mark.fixtures
@pytest.mark.parametrize("case", fixture_cases("e2e_forward"))
def test_forward_end_to_end_reproduces_fixture(case: Path, fixture_tokenizer_folder: Path) -> None:
    config = json.loads((case.parent / "config.json").read_text())
    inputs, ref = load_pt(case / "inputs.pt"), load_pt(case / "outputs.pt")
    renderer = _renderer(ForwardRenderer, "dit_forward", FORWARD_7B, fixture_tokenizer_folder, config)
    gbuffers = {
        name: inputs[name] for name in ("basecolor", "normal", "metallic", "roughness", "depth") if name in inputs
    }
    gbuffer_condition = renderer.encode_gbuffers(gbuffers)
    lighting = renderer.encode_lighting(
        {k: inputs[k].contiguous() for k in ("env_ldr", "env_log", "env_nrm")}, gbuffer_condition
    )
    states: list[torch.Tensor] = []
    fps = float(inputs["fps"].reshape(-1)[0])
    decoded = renderer.render(
        gbuffer_condition, [lighting], [ref["noise"]], on_step=lambda i, x: states.append(x), fps=fps
    )[0]
    _check_run(renderer, ref, torch.cat([gbuffer_condition, lighting], dim=1), decoded, states)


def test_batched_outputs_equal_one_at_a_time(tiny_checkpoints: Path) -> None:
    from cosmos_predict1.release import FORWARD_MODEL, INVERSE_MODEL, TOKENIZER

    tokenizer = load_tokenizer(tiny_checkpoints / TOKENIZER, pixel_chunk_duration=57)
    video = torch.rand(1, 3, 1, 32, 48) * 2 - 1
    noises = [work_item_noise((1, 16, 1, 4, 6), 7, "clip", i) for i in range(3)]
    inverse_net = build_network(tiny_checkpoints / INVERSE_MODEL, INVERSE_7B, dtype=torch.float32)
    passes = ["basecolor", "normal", "depth"]
    results = []
    for max_batch in (3, 1):
        renderer = InverseRenderer(
            inverse_net, tokenizer, device="cpu", options=SamplingOptions(3, max_batch=max_batch)
        )
        results.append(renderer.render(video, passes, noises))
    for name in passes:
        assert max_relative_error(results[0][name], results[1][name]) < 1e-5

    forward_net = build_network(tiny_checkpoints / FORWARD_MODEL, FORWARD_7B, dtype=torch.float32)
    outputs = []
    for max_batch in (3, 1):
        renderer = ForwardRenderer(
            forward_net, tokenizer, device="cpu", options=SamplingOptions(3, max_batch=max_batch)
        )
        gbuffers = renderer.encode_gbuffers({"basecolor": video, "depth": video})
        lights = [
            renderer.encode_lighting({k: video * s for k in ("env_ldr", "env_log", "env_nrm")}, gbuffers)
            for s in (0.1, 0.5)
        ]
        lights.append(renderer.encode_lighting(None, gbuffers))
        outputs.append(renderer.render(gbuffers, lights, noises))
    for a, b in zip(*outputs):
        assert max_relative_error(a, b) < 1e-5


def test_guidance_combines_conditional_and_unconditional(tiny_checkpoints: Path) -> None:
    from cosmos_predict1.release import INVERSE_MODEL, TOKENIZER

    tokenizer = load_tokenizer(tiny_checkpoints / TOKENIZER, pixel_chunk_duration=57)
    network = build_network(tiny_checkpoints / INVERSE_MODEL, INVERSE_7B, dtype=torch.float32)
    video, noise = torch.rand(1, 3, 1, 32, 32) * 2 - 1, work_item_noise((1, 16, 1, 4, 4), 0, "x")
    plain = InverseRenderer(network, tokenizer, device="cpu", options=SamplingOptions(2)).render(
        video, ["depth"], [noise]
    )
    guided = InverseRenderer(network, tokenizer, device="cpu", options=SamplingOptions(2, guidance=1.5))
    assert not torch.allclose(guided.render(video, ["depth"], [noise])["depth"], plain["depth"])
    # g = 0 through the guided code path equals the plain path
    guided.options = dataclasses.replace(guided.options, guidance=0.0)
    assert torch.equal(guided.render(video, ["depth"], [noise])["depth"], plain["depth"])


def test_work_item_noise_depends_only_on_the_item() -> None:
    a = work_item_noise((1, 16, 1, 4, 4), 1000, "image_1", 0, "normal")
    assert torch.equal(a, work_item_noise((1, 16, 1, 4, 4), 1000, "image_1", 0, "normal"))
    assert not torch.equal(a, work_item_noise((1, 16, 1, 4, 4), 1000, "image_1", 0, "depth"))
    assert not torch.equal(a, work_item_noise((1, 16, 1, 4, 4), 1001, "image_1", 0, "normal"))
    assert a.std().item() == pytest.approx(1.0, abs=0.2)


def test_normalize_normals_blend() -> None:
    v = torch.zeros(1, 3, 1, 1, 3)
    v[0, :, 0, 0, 0] = torch.tensor([0.1, 0.0, 0.0])  # short: unchanged
    v[0, :, 0, 0, 1] = torch.tensor([0.0, 0.3, 0.0])  # halfway: half unit, half original
    v[0, :, 0, 0, 2] = torch.tensor([0.0, 0.0, 2.0])  # long: unit
    out = normalize_normals(v)[0, :, 0, 0]
    assert out[:, 0].tolist() == pytest.approx([0.1, 0, 0])
    assert out[:, 1].tolist() == pytest.approx([0, 0.5 * 1 + 0.5 * 0.3, 0])
    assert out[:, 2].tolist() == pytest.approx([0, 0, 1])


def test_fps_reaches_the_network(tiny_checkpoints: Path) -> None:
    from cosmos_predict1.release import INVERSE_MODEL, TOKENIZER

    tokenizer = load_tokenizer(tiny_checkpoints / TOKENIZER, pixel_chunk_duration=57)
    network = build_network(tiny_checkpoints / INVERSE_MODEL, INVERSE_7B, dtype=torch.float32)
    renderer = InverseRenderer(network, tokenizer, device="cpu", options=SamplingOptions(2))
    seen: list[float] = []
    forward = network.forward
    network.forward = lambda *args, **kwargs: seen.append(kwargs["fps"]) or forward(*args, **kwargs)
    video, noise = torch.rand(1, 3, 1, 32, 32) * 2 - 1, work_item_noise((1, 16, 1, 4, 4), 0, "x")
    renderer.render(video, ["depth"], [noise])
    renderer.render(video, ["depth"], [noise], fps=30.0)
    assert seen == [24.0, 24.0, 30.0, 30.0]

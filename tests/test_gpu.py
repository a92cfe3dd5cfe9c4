"""Checks that need a CUDA GPU (skipped elsewhere): the bf16 path, and that every fast path equals the plain one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_dit import run_fixture_inputs

from conftest import FIXTURES, fixture_cases, load_pt
from cosmos_predict1.diffusion.networks import FORWARD_7B, INVERSE_7B, DiffusionRendererDiT, build_network
from cosmos_predict1.diffusion.networks.acceleration import attention_backends, compile_blocks
from cosmos_predict1.diffusion.networks.offload import BlockStreamer
from cosmos_predict1.diffusion.networks.position_embedding import rope_angles

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def relative_rms(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double().to(out.device)
    return ((out - ref).norm() / ref.norm()).item()


def test_bf16_rope_table_is_the_same_on_cuda() -> None:
    for fps in (24.0, 30.0, 12.0):
        fps_bf16 = torch.tensor([fps], dtype=torch.bfloat16)
        cpu = rope_angles(8, 44, 80, 128, fps_bf16, dtype=torch.bfloat16)
        gpu = rope_angles(8, 44, 80, 128, fps_bf16.cuda(), dtype=torch.bfloat16, device="cuda")
        assert torch.equal(cpu, gpu.cpu())


@pytest.mark.fixtures
@pytest.mark.parametrize("case", fixture_cases("dit_inverse") + fixture_cases("dit_forward"))
def test_bf16_network_on_gpu_is_close_to_fp32_reference(case: Path) -> None:
    family = case.parent.name
    network = build_network(FIXTURES / family, INVERSE_7B if family == "dit_inverse" else FORWARD_7B, device="cuda")
    inputs = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in load_pt(case / "inputs.pt").items()}
    with torch.no_grad(), attention_backends(torch.device("cuda")):
        out = run_fixture_inputs(network, inputs)
    error = relative_rms(out, load_pt(case / "output.pt")["output"])
    print(f"{case.parent.name}/{case.name}: bf16 GPU vs fp32 reference, relative RMS {error:.2e}")
    assert error < 3e-2


def _random(config) -> DiffusionRendererDiT:
    config = config.replace(model_channels=256, num_blocks=3, num_heads=2, adaln_lora_dim=32, crossattn_emb_channels=64)
    torch.manual_seed(0)
    network = DiffusionRendererDiT(config)
    with torch.no_grad():
        for param in network.parameters():
            param.normal_(0, param.shape[-1] ** -0.5 if param.ndim == 2 else 0.1).add_(0 if param.ndim == 2 else 1)
    return network.to("cuda", torch.bfloat16).eval()


@pytest.mark.parametrize("base", [INVERSE_7B, FORWARD_7B], ids=["inverse", "forward"])
def test_fast_paths_equal_plain_path_in_bf16(base) -> None:
    network = _random(base)
    x = torch.randn(2, 16, 3, 16, 24, device="cuda", dtype=torch.bfloat16)
    c = torch.randn(2, base.additional_concat_ch, 3, 16, 24, device="cuda", dtype=torch.bfloat16)
    kwargs = {"context_index": torch.tensor([0, 3], device="cuda")} if base.use_context_embedding else {}
    t = torch.tensor(0.3, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        network.cross_attention_shortcut = False
        plain = network(x, t, c, **kwargs)
        network.cross_attention_shortcut = True
        with attention_backends(torch.device("cuda")):
            fast = network(x, t, c, **kwargs)
            compile_blocks(network)
            compiled = network(x, t, c, **kwargs)
            BlockStreamer(network.cpu(), "cuda")
            streamed = [network(x, t, c, **kwargs) for _ in range(3)]
    errors = {
        "shortcut+cudnn": relative_rms(fast, plain),
        "compiled": relative_rms(compiled, plain),
        "streamed": max(relative_rms(s, compiled) for s in streamed),
    }
    print(f"{base is INVERSE_7B and 'inverse' or 'forward'}: relative RMS vs plain path {errors}")
    assert errors["shortcut+cudnn"] < 1e-2 and errors["compiled"] < 1e-2 and errors["streamed"] == 0.0


def test_compiled_tokenizer_equals_eager_in_bf16() -> None:
    from diffusers import AutoencoderKLCosmos

    from cosmos_predict1.diffusion.tokenizer import VideoTokenizer

    torch.manual_seed(0)
    c = 32
    vae = AutoencoderKLCosmos(
        encoder_block_out_channels=(c, 2 * c, 4 * c, 4 * c),
        decode_block_out_channels=(2 * c, 4 * c, 4 * c, 4 * c),
        latents_mean=None,
        latents_std=None,
    ).to("cuda", torch.bfloat16)
    tokenizer = VideoTokenizer(vae, (torch.zeros(256), torch.ones(256)), (torch.zeros(16), torch.ones(16)), 57)
    video = torch.rand(1, 3, 57, 64, 96, device="cuda", dtype=torch.bfloat16) * 2 - 1
    latent, decoded = tokenizer.encode(video), tokenizer.decode(tokenizer.encode(video))
    tokenizer.compile()
    errors = (relative_rms(tokenizer.encode(video), latent), relative_rms(tokenizer.decode(latent), decoded))
    print(f"compiled tokenizer vs eager, bf16 relative RMS: encode {errors[0]:.2e}, decode {errors[1]:.2e}")
    assert max(errors) < 2e-2


def test_staged_transfer_equals_a_plain_copy() -> None:
    from cosmos_predict1.diffusion.networks.transfer import to_device

    generator = torch.Generator().manual_seed(0)
    tensors = [(f"t{i}", [torch.randn(64 + i, 48, generator=generator) for _ in range(1 + i % 3)]) for i in range(40)]
    tensors.append(("scalar-like", [torch.randn(7, generator=generator)]))
    moved = to_device(tensors, "cuda", torch.bfloat16)
    for name, parts in tensors:
        expected = torch.cat(parts).to("cuda", torch.bfloat16)
        assert moved[name].dtype == torch.bfloat16 and torch.equal(moved[name], expected), name

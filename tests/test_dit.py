"""The renderer DiT: parity with the original's fixtures, the 7B key layout, bf16 RoPE tables, checkpoint loading."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path

import pytest
import torch

from conftest import FIXTURES, REPO_ROOT, fixture_cases, load_pt, max_relative_error
from cosmos_predict1.diffusion.networks import (
    FORWARD_7B,
    INVERSE_7B,
    DiffusionRendererDiT,
    build_network,
    to_released_state_dict,
)
from cosmos_predict1.diffusion.networks.position_embedding import rope_angles
from cosmos_predict1.errors import UserError

SPEC = REPO_ROOT.parent / "shared" / "spec"
BASE = {"dit_inverse": INVERSE_7B, "dit_forward": FORWARD_7B}


def _network(family: str) -> DiffusionRendererDiT:
    return build_network(FIXTURES / family, BASE[family], dtype=torch.float32)


def run_fixture_inputs(net: DiffusionRendererDiT, inputs: dict) -> torch.Tensor:
    """The network on a fixture case's inputs (keyword names as the original's forward)."""
    return net(
        inputs["x"],
        inputs["timesteps"],
        inputs["latent_condition"],
        fps=inputs["fps"],
        padding_mask=inputs["padding_mask"],
        crossattn_emb=inputs["crossattn_emb"].contiguous(),
        context_index=inputs.get("context_index"),
    )


@pytest.mark.fixtures
@pytest.mark.parametrize("case", fixture_cases("dit_inverse") + fixture_cases("dit_forward"))
def test_network_reproduces_fixture(case: Path) -> None:
    net = _network(case.parent.name)
    out = run_fixture_inputs(net, load_pt(case / "inputs.pt"))
    ref = load_pt(case / "output.pt")["output"]
    assert out.shape == ref.shape
    error = max_relative_error(out, ref)
    assert error <= 1e-5, f"max relative error {error:.2e}"


@pytest.mark.fixtures
@pytest.mark.parametrize("case", fixture_cases("dit_inverse") + fixture_cases("dit_forward"))
def test_rope_table_matches_fixture_intermediate(case: Path) -> None:
    if not (case / "intermediates.pt").is_file():
        pytest.skip("case has no intermediates")
    inputs = load_pt(case / "inputs.pt")
    reference = load_pt(case / "intermediates.pt")["rope_emb"]  # [N, 1, 1, head_dim]
    config = _network(case.parent.name).config
    _, _, t, h, w = inputs["x"].shape
    angles = rope_angles(t, h // 2, w // 2, config.head_dim, inputs["fps"])
    assert torch.equal(angles, reference.reshape(angles.shape))


def _tiny(base, **changes) -> DiffusionRendererDiT:
    sizes = {"model_channels": 64, "num_blocks": 2, "num_heads": 2, "adaln_lora_dim": 16, "crossattn_emb_channels": 32}
    config = base.replace(**{**sizes, **changes})
    torch.manual_seed(0)
    net = DiffusionRendererDiT(config)
    with torch.no_grad():
        for param in net.parameters():
            param.normal_(0, 0.2)
    return net.eval()


@pytest.mark.parametrize("base", [INVERSE_7B, FORWARD_7B], ids=["inverse", "forward"])
def test_cross_attention_shortcut_equals_full_attention(base) -> None:
    net = _tiny(base)
    cond = net.config.additional_concat_ch
    x, c = torch.randn(3, 16, 2, 8, 12), torch.randn(3, cond, 2, 8, 12)
    kwargs = {"context_index": torch.tensor([0, 3, 4])} if base.use_context_embedding else {}
    with torch.no_grad():
        fast = net(x, torch.tensor(0.3), c, **kwargs)
        net.cross_attention_shortcut = False
        full = net(x, torch.tensor(0.3), c, **kwargs)
    assert max_relative_error(fast, full) < 1e-6


def test_batched_passes_equal_single_passes() -> None:
    net = _tiny(INVERSE_7B)
    x, c = torch.randn(1, 16, 1, 8, 8), torch.randn(1, 16, 1, 8, 8)
    passes = torch.tensor([0, 3, 4, 2, 1])
    with torch.no_grad():
        batched = net(x.expand(5, -1, -1, -1, -1), torch.tensor(0.1), c.expand(5, -1, -1, -1, -1), context_index=passes)
        single = torch.cat([net(x, torch.tensor(0.1), c, context_index=p[None]) for p in passes])
    assert max_relative_error(batched, single) < 1e-6


def _spec_keys(model: str) -> dict[str, list[int]]:
    text = (SPEC / "dit_keys_7b.txt").read_text()
    section = text.split(f"######## MODEL {model}")[1].split("# B.")[0]
    keys = {}
    for line in section.splitlines():
        match = re.fullmatch(r"(\S+) \[([\d,]*)\]", line.strip())
        if match:
            keys[match[1]] = [int(d) for d in match[2].split(",")]
    return keys


@pytest.mark.skipif(not (SPEC / "dit_keys_7b.txt").is_file(), reason="spec key list not available")
@pytest.mark.parametrize(
    "config, model, params",
    [
        (INVERSE_7B, "Diffusion_Renderer_Inverse_Cosmos_7B", 7_234_963_456),
        (FORWARD_7B, "Diffusion_Renderer_Forward_Cosmos_7B", 7_236_913_152),
    ],
    ids=["inverse", "forward"],
)
def test_7b_layout_matches_released_keys(config, model, params) -> None:
    with torch.device("meta"):
        net = DiffusionRendererDiT(config)
    released = {key: list(t.shape) for key, t in to_released_state_dict(net.state_dict()).items()}
    assert released == _spec_keys(model)
    assert sum(p.numel() for p in net.parameters()) == params


def test_bf16_rope_frequencies_match_original_rounding() -> None:
    """In bf16 the original computes ω = 1/9984^r (base 10000 rounded to bf16) with bf16 rounding at each op."""
    omega_hw = [
        1.0,
        0.64453125,
        0.416015625,
        0.26953125,
        0.1728515625,
        0.111328125,
        0.072265625,
        0.046142578125,
        0.030029296875,
        0.01953125,
        0.012451171875,
        0.008056640625,
        0.0052490234375,
        0.0034027099609375,
        0.0021209716796875,
        0.00138092041015625,
        0.0009002685546875,
        0.000583648681640625,
        0.0003795623779296875,
        0.00023651123046875,
        0.00015354156494140625,
    ]
    omega_t = [
        1.0,
        0.66015625,
        0.431640625,
        0.28515625,
        0.1884765625,
        0.123046875,
        0.08056640625,
        0.05322265625,
        0.03515625,
        0.0233154296875,
        0.01513671875,
        0.010009765625,
        0.006500244140625,
        0.004364013671875,
        0.002838134765625,
        0.00185394287109375,
        0.00124359130859375,
        0.000804901123046875,
        0.00054168701171875,
        0.0003528594970703125,
        0.00022983551025390625,
        0.00015354156494140625,
    ]
    fps = torch.tensor([24.0], dtype=torch.bfloat16)
    angles = rope_angles(1, 2, 2, 128, fps, dtype=torch.bfloat16)
    # token (t=0, row=1, col=0): the h-part holds ω_h, token (0, 0, 1) the w-part holds ω_w
    assert angles[2, 22:43].tolist() == omega_hw
    assert angles[1, 43:64].tolist() == omega_hw
    frames = rope_angles(6, 1, 1, 128, torch.tensor([30.0], dtype=torch.bfloat16), dtype=torch.bfloat16)
    assert frames[:, 0].tolist() == [0.0, 0.8046875, 1.609375, 2.40625, 3.21875, 4.0]
    assert angles[:, 64:].equal(angles[:, :64])
    # not the float32 table rounded to bf16: that would give 0.0299072 at ω_h[8] (base 10000 instead of 9984)
    fp32 = rope_angles(1, 2, 1, 128, fps.float())
    assert fp32[1, 22 + 8].item() == pytest.approx(10000 ** (-16 / 42), rel=1e-6)
    assert fp32[1, 22 + 8].to(torch.bfloat16).item() == 0.029907226562500
    temporal = rope_angles(2, 1, 1, 128, fps, dtype=torch.bfloat16)
    assert temporal[1, :22].tolist() == omega_t


def _write_checkpoint(tmp_path: Path, payload, config_net: dict) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    torch.save(payload, folder / "model.pt")
    (folder / "config.json").write_text(json.dumps({"net": config_net}))
    return folder


TINY_NET = {"model_channels": 64, "num_blocks": 2, "num_heads": 2, "adaln_lora_dim": 16, "crossattn_emb_channels": 32}


def _te_extra_state() -> io.BytesIO:
    """transformer-engine 1.12's ``get_extra_state()``: ``io.BytesIO`` of ``torch.save`` of the FP8 metadata."""
    blob = io.BytesIO()
    metadata = {"scale_fwd": torch.ones(3), "amax_history_fwd": torch.zeros(4, 3), "extra_fp8_variables": {"n": 1}}
    torch.save(metadata, blob)
    return blob


@pytest.mark.parametrize("layout", ["flat", "model", "ema", "no_prefix", "extra_state", "te_model", "te_ema"])
def test_loader_accepts_original_layouts(tmp_path: Path, layout: str) -> None:
    net = _tiny(INVERSE_7B)
    released = to_released_state_dict(net.state_dict())
    released["net.pos_embedder.seq"] = torch.arange(128.0)
    released["logvar.1.weight"] = torch.zeros(1, 128)
    attention = "net.blocks.block0.blocks.0.block.attn"
    te = {
        **released,
        f"{attention}.attn_op._extra_state": _te_extra_state(),
        "net.blocks.block1.blocks.1.block.attn.attn_op._extra_state": None,
        f"{attention}.to_q.1._extra_state": torch.empty(0),
    }
    payload = {
        "flat": released,
        "model": {"model": released, "optimizer": {}},
        "ema": {"ema": {k.replace(".", "-"): v for k, v in released.items()}},
        "no_prefix": {k.removeprefix("net."): v for k, v in released.items() if k.startswith("net.")},
        "extra_state": {**released, f"{attention}.attn_op._extra_state": None},
        "te_model": {"model": te, "optimizer": {"param_groups": [{"lr": 1e-4}]}, "iteration": 3},
        "te_ema": {"ema": {k.replace(".", "-"): v for k, v in te.items()}},
    }[layout]
    loaded = build_network(_write_checkpoint(tmp_path, payload, TINY_NET), INVERSE_7B, dtype=torch.float32)
    x, c = torch.randn(1, 16, 1, 4, 4), torch.randn(1, 16, 1, 4, 4)
    index = torch.tensor([1])
    with torch.no_grad():
        assert torch.equal(loaded(x, 0.2, c, context_index=index), net(x, 0.2, c, context_index=index))


def test_loader_casts_to_requested_dtype(tmp_path: Path) -> None:
    released = to_released_state_dict(_tiny(FORWARD_7B).state_dict())
    loaded = build_network(_write_checkpoint(tmp_path, released, TINY_NET), FORWARD_7B, dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in loaded.parameters())


@pytest.mark.parametrize("problem", ["missing", "shape", "unexpected", "wrong_model"])
def test_loader_rejects_mismatched_checkpoints(tmp_path: Path, problem: str) -> None:
    released = to_released_state_dict(_tiny(INVERSE_7B).state_dict())
    base = INVERSE_7B
    if problem == "missing":
        del released["net.blocks.block1.blocks.2.block.layer1.weight"]
    elif problem == "shape":
        released["net.final_layer.linear.weight"] = torch.zeros(3, 64)
    elif problem == "unexpected":
        released["net.some_new_layer.weight"] = torch.zeros(3)
    else:
        base = FORWARD_7B
    with pytest.raises(UserError, match="does not match"):
        build_network(_write_checkpoint(tmp_path, released, TINY_NET), base, dtype=torch.float32)


def test_loader_reports_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="download"):
        build_network(tmp_path, INVERSE_7B)
    folder = _write_checkpoint(tmp_path, {}, TINY_NET)
    (folder / "model.pt").write_bytes((folder / "model.pt").read_bytes()[:20])
    with pytest.raises(UserError, match="corrupt or incomplete"):
        build_network(folder, INVERSE_7B)


class _Opaque:
    pass


def test_loader_refuses_pickled_objects_without_opt_in(tmp_path: Path) -> None:
    released = to_released_state_dict(_tiny(INVERSE_7B).state_dict())
    folder = _write_checkpoint(tmp_path, {"model": released, "trainer": _Opaque()}, TINY_NET)
    with pytest.raises(UserError) as caught:
        build_network(folder, INVERSE_7B, dtype=torch.float32)
    message = str(caught.value)
    assert f"would call {_Opaque.__module__}._Opaque," in message and "--allow_unsafe_checkpoint" in message
    assert "\n" not in message
    assert build_network(folder, INVERSE_7B, dtype=torch.float32, allow_pickle=True) is not None


def test_config_json_rejects_unsupported_architecture(tmp_path: Path) -> None:
    released = to_released_state_dict(_tiny(INVERSE_7B).state_dict())
    with pytest.raises(UserError, match="not supported"):
        build_network(_write_checkpoint(tmp_path, released, {**TINY_NET, "block_config": "FA-MLP"}), INVERSE_7B)


def test_block_streaming_gives_the_same_output() -> None:
    from cosmos_predict1.diffusion.networks.offload import BlockStreamer

    net = _tiny(INVERSE_7B, num_blocks=3)
    x, c, index = torch.randn(2, 16, 2, 8, 8), torch.randn(2, 16, 2, 8, 8), torch.tensor([0, 4])
    with torch.no_grad():
        resident = net(x, 0.5, c, context_index=index)
        BlockStreamer(net, "cpu")
        streamed = [net(x, 0.5, c, context_index=index) for _ in range(2)]  # slots wrap across calls
    assert all(torch.equal(out, resident) for out in streamed)


@pytest.mark.slow
def test_compiled_blocks_give_the_same_output() -> None:
    from cosmos_predict1.diffusion.networks.acceleration import compile_blocks

    net = _tiny(FORWARD_7B)
    x, c = torch.randn(1, 16, 1, 8, 8), torch.randn(1, 136, 1, 8, 8)
    with torch.no_grad():
        eager = net(x, 0.5, c)
        assert compile_blocks(net)
        compiled = net(x, 0.5, c)
    assert max_relative_error(compiled, eager) < 1e-5


def test_fp8_layers_approximate_the_network() -> None:
    from cosmos_predict1.diffusion.networks.fp8 import FP8Linear, quantize_rows, use_fp8

    x = torch.randn(5, 64)
    q, scale = quantize_rows(x)
    assert q.dtype == torch.float8_e4m3fn and (q.float() * scale - x).abs().max() <= 0.07 * x.abs().max()
    net = _tiny(INVERSE_7B)
    inputs = (torch.randn(1, 16, 2, 8, 8), torch.tensor(0.3), torch.randn(1, 16, 2, 8, 8))
    with torch.no_grad():
        exact = net(*inputs, context_index=torch.tensor([2]))
        assert use_fp8(net) == 4 * net.config.num_blocks
        approximate = net(*inputs, context_index=torch.tensor([2]))
    assert isinstance(net.blocks[0].mlp.fc1, FP8Linear)
    relative_rms = ((approximate - exact).norm() / exact.norm()).item()
    assert 0 < relative_rms < 0.1


# ----------------------------------------------------------------------------------------------- config.json checks


def test_build_network_checks_config_json_before_reading_weights(tmp_path: Path) -> None:
    folder = _write_checkpoint(tmp_path, {}, {**TINY_NET, "num_heads": 0})
    with pytest.raises(UserError) as caught:
        build_network(folder, INVERSE_7B, dtype=torch.float32)
    assert str(caught.value) == f"{folder / 'config.json'}: 'num_heads': 0: must be an integer from 1 to 1024."


@pytest.mark.parametrize(
    "frames, height, width", [(1, 64, 96), (1, 48, 48), (1, 64, 112), (1, 80, 96), (57, 64, 96), (57, 16, 16)]
)
def test_check_frame_size_agrees_with_the_network(frames: int, height: int, width: int) -> None:
    """A clip passes ``check_frame_size`` exactly when the network takes its latents (tables of 7 × 4 × 6 tokens;
    57 pixel frames are 8 latent frames, 8 pixels one latent pixel)."""
    net = _tiny(INVERSE_7B, max_frames=7, max_img_h=8, max_img_w=12)
    latent = (1 if frames == 1 else 8, height // 8, width // 8)
    try:
        with torch.no_grad():
            net(
                torch.zeros(1, 16, *latent),
                torch.tensor(0.1),
                torch.zeros(1, 16, *latent),
                context_index=torch.tensor([0]),
            )
        network_takes_it = True
    except ValueError as err:
        assert "exceeds the network's position tables" in str(err)
        network_takes_it = False
    try:
        net.config.check_frame_size(frames, height, width)
        check_passes = True
    except UserError as err:
        assert "is too small for" in str(err) and "\n" not in str(err)
        check_passes = False
    assert check_passes == network_takes_it
    assert check_passes == ((frames, height, width) in [(1, 64, 96), (1, 48, 48)])


def test_fixture_and_tiny_configs_pass_the_schema() -> None:
    from cosmos_predict1.diffusion.networks.config import SCHEMA, config_from_dict

    for family, base in BASE.items():
        path = FIXTURES / family / "config.json"
        if path.is_file():
            config_from_dict(json.loads(path.read_text())["net"], base, str(path))
    config_from_dict(TINY_NET, INVERSE_7B)
    assert set(SCHEMA) == {f.name for f in dataclasses.fields(INVERSE_7B)}
    for base in (INVERSE_7B, FORWARD_7B):  # the released defaults are inside every range
        config_from_dict({}, base).check_frame_size(57, 704, 1280)
        config_from_dict({}, base).check_frame_size(1, 1920, 1920)

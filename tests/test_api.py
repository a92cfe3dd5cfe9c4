"""The Python API (``cosmos_predict1.InversePipeline``/``ForwardPipeline``) on tiny checkpoints: the same pixels as
the command line, arrays of any size and dtype, loading once; and the structure rule that keeps ``args`` at the
border (only ``cli.py`` and the two scripts see the command line)."""

from __future__ import annotations

import re
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from test_cli_forward import run as run_forward
from test_cli_inverse import run as run_inverse

import cosmos_predict1
from conftest import REPO_ROOT
from cosmos_predict1 import ForwardPipeline, InversePipeline, Lighting
from cosmos_predict1.diffusion import assembly, writers
from cosmos_predict1.errors import UserError

SIZE = {"height": 64, "width": 96}
PASSES = ("basecolor", "normal", "depth", "roughness", "metallic")


@pytest.fixture(scope="module")
def inverse(tiny_checkpoints: Path) -> InversePipeline:
    return InversePipeline.from_pretrained(tiny_checkpoints, device="cpu", num_steps=2)


@pytest.fixture(scope="module")
def forward(tiny_checkpoints: Path) -> ForwardPipeline:
    return ForwardPipeline.from_pretrained(tiny_checkpoints, device="cpu", num_steps=2)


def rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def jpeg_bytes(frame: np.ndarray, path: Path) -> bytes:
    """The bytes the scripts' JPEG writer makes of ``frame``: equal pixels give equal files."""
    writers.write_image(path, frame)
    return path.read_bytes()


@pytest.mark.slow
def test_inverse_api_gives_the_cli_pixels(tiny_checkpoints: Path, inverse: InversePipeline, tmp_path: Path) -> None:
    image = rgb(48, 80)
    (tmp_path / "in").mkdir()
    iio.imwrite(tmp_path / "in" / "image_1.png", image)
    assert (
        run_inverse(
            tiny_checkpoints,
            "--dataset_path",
            str(tmp_path / "in"),
            "--num_video_frames",
            "1",
            "--group_mode",
            "webdataset",
            "--video_save_folder",
            str(tmp_path / "cli"),
        )
        == 0
    )
    outputs = inverse(image, **SIZE, output_size="model", name="image_1", output="uint8")
    assert sorted(outputs) == sorted(PASSES)
    for name in PASSES:
        assert outputs[name].shape == (64, 96, 3) and outputs[name].dtype == np.uint8
        cli_file = tmp_path / f"cli/gbuffer_frames/image_1/0000.0000.{name}.jpg"
        assert jpeg_bytes(outputs[name], tmp_path / f"api_{name}.jpg") == cli_file.read_bytes(), name


@pytest.mark.slow
def test_forward_api_gives_the_cli_pixels(tiny_checkpoints: Path, forward: ForwardPipeline, tmp_path: Path) -> None:
    clip = tmp_path / "gbuffer_frames" / "image_1"
    clip.mkdir(parents=True)
    gbuffers = {name: rgb(64, 96, seed) for seed, name in enumerate(PASSES)}
    for name, frame in gbuffers.items():
        iio.imwrite(clip / f"0000.0000.{name}.png", frame)
    hdri = tmp_path / "sky.hdr"
    sky = np.ones((16, 32, 3), np.float32)
    sky[2:4, 20:22] = 300.0
    import cv2

    cv2.imwrite(str(hdri), sky)
    assert (
        run_forward(
            tiny_checkpoints,
            "--dataset_path",
            str(tmp_path / "gbuffer_frames"),
            "--num_video_frames",
            "1",
            "--envlight_path",
            str(hdri),
            "--envlight_ind",
            "0",
            "--video_save_folder",
            str(tmp_path / "cli"),
        )
        == 0
    )
    assert (
        run_forward(
            tiny_checkpoints,
            "--dataset_path",
            str(tmp_path / "gbuffer_frames"),
            "--num_video_frames",
            "1",
            "--use_custom_envmap",
            "false",
            "--envlight_ind",
            "2",
            "--video_save_folder",
            str(tmp_path / "random"),
        )
        == 0
    )
    relit = forward(
        gbuffers, [Lighting(hdri, index=0)], **SIZE, output_size="model", name="image_1/0000", output="uint8"
    )
    assert len(relit) == 1 and relit[0].shape == (64, 96, 3)
    cli_file = tmp_path / "cli/image_1__0000.relit_0000.jpg"
    assert jpeg_bytes(relit[0], tmp_path / "api.jpg") == cli_file.read_bytes()
    random = forward(gbuffers, Lighting(seed=1000 + 2000, index=2), **SIZE, name="image_1/0000", output="uint8")
    assert (
        jpeg_bytes(random, tmp_path / "api_random.jpg")
        == (tmp_path / "random/image_1__0000.relit_0002.jpg").read_bytes()
    )


def test_outputs_come_back_at_the_input_size_for_any_size_and_dtype(inverse: InversePipeline) -> None:
    odd = rgb(37, 53)
    outputs = inverse(odd, ["depth"], **SIZE)
    assert outputs["depth"].shape == (37, 53, 3) and outputs["depth"].dtype == np.float32
    assert 0 <= outputs["depth"].min() and outputs["depth"].max() <= 1
    for frame in (
        odd.astype(np.uint16) * 257,
        odd.astype(np.float64) / 255,
        odd[..., 0],
        np.dstack([odd, odd[..., :1]]),
    ):
        assert inverse(frame, ["depth"], **SIZE)["depth"].shape == (37, 53, 3)
    clip = np.stack([odd] * 57)
    assert inverse(clip, ["depth"], **SIZE, fit="pad")["depth"].shape == (57, 37, 53, 3)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((8, 8, 3), np.int32), "unsupported pixel type int32"),
        (np.zeros((8, 8, 5), np.uint8), "expected [H, W, C]"),
        (np.zeros((2, 8, 8, 3), np.uint8), "2 frames: the tokenizer takes 1 or a multiple of 57"),
        (np.zeros((0, 8, 3), np.uint8), "unsupported layout"),
        ([], "no frames"),
    ],
    ids=["int32", "five-channels", "two-frames", "empty", "no-frames"],
)
def test_bad_arrays_are_one_clear_error(inverse: InversePipeline, frames, message: str) -> None:
    with pytest.raises(UserError) as caught:
        inverse(frames, ["depth"], **SIZE)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_bad_options_are_one_clear_error(inverse: InversePipeline, forward: ForwardPipeline) -> None:
    image = rgb(16, 16)
    with pytest.raises(UserError, match="unknown pass 'albedo'"):
        inverse(image, ["albedo"], **SIZE)
    with pytest.raises(UserError, match="--height 60: must be a positive multiple of 16"):
        inverse(image, ["depth"], height=60, width=96)
    with pytest.raises(UserError, match="same number of frames"):
        forward({"basecolor": image, "depth": np.stack([image] * 57)}, **SIZE)
    with pytest.raises(UserError, match="unknown pass 'rgb'"):
        forward({"rgb": image}, **SIZE)
    with pytest.raises(UserError, match=r"expected a linear float array \[h, w, 3\]"):
        forward({"basecolor": image}, Lighting(np.zeros((4, 8), np.float32)), **SIZE)


def test_load_once_call_many(tiny_checkpoints: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loads = []
    build = assembly.build_network
    monkeypatch.setattr(assembly, "build_network", lambda *a, **k: loads.append(a[0]) or build(*a, **k))
    pipeline = cosmos_predict1.InversePipeline.from_pretrained(tiny_checkpoints, device="cpu", num_steps=1)
    first = pipeline(rgb(32, 32), ["depth"], **SIZE)
    second = pipeline(rgb(32, 32), ["depth"], **SIZE)
    assert len(loads) == 1
    np.testing.assert_array_equal(first["depth"], second["depth"])


def test_array_hdri_and_linear_output(forward: ForwardPipeline) -> None:
    sky = np.full((16, 32, 3), 0.5, np.float32)
    gbuffers = {"basecolor": rgb(64, 96), "normal": rgb(64, 96, 1)}
    lights = [Lighting(sky, name="grey"), Lighting(sky * 4, name="bright")]
    relit = forward(gbuffers, lights, **SIZE)
    linear = forward(gbuffers, lights, **SIZE, linear=True)
    assert len(relit) == 2 and relit[0].shape == (64, 96, 3)
    np.testing.assert_allclose(linear[0], writers.display_to_linear(relit[0]), rtol=1e-6)


def test_command_line_arguments_stay_at_the_border() -> None:
    """Only the parser (arguments.py), cli.py and the two scripts see argparse; no library function takes the raw
    Namespace."""
    border = {"arguments.py", "cli.py", "inference_inverse_renderer.py", "inference_forward_renderer.py"}
    offenders = []
    for path in sorted((REPO_ROOT / "cosmos_predict1").rglob("*.py")):
        if path.name in border:
            continue
        text = path.read_text()
        if re.search(r"\bargparse\b|\bNamespace\b", text):
            offenders.append(str(path.relative_to(REPO_ROOT)))
    assert offenders == []

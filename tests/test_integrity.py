"""Bounded decoding and finite values (tiny checkpoints, CPU).

A file that declares more pixels than the limit (``pixel_limit``) is refused by its header, in well under a second,
whatever decoder would read it; a non-finite option, camera pose or weight is refused in one line naming it, before
anything is sampled: none of them may end in an out-of-memory kill or in a black output with exit code 0.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import OpenEXR
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from test_reliability import (
    assert_user_error,
    damaged_checkpoints,
    finished_files,
    forward_args,
    gbuffers,  # noqa: F401 (a fixture)
    images,  # noqa: F401 (a fixture)
    inverse_args,
    refuse_rendering,
    run_cli,
)
from test_scripts import extract, write_video

from conftest import REPO_ROOT
from cosmos_predict1 import ForwardPipeline
from cosmos_predict1.diffusion import pixel_limit
from cosmos_predict1.diffusion.envmap import check_camera_rotations, read_hdr
from cosmos_predict1.diffusion.frames import read_image
from cosmos_predict1.diffusion.inference import inference_forward_renderer as forward
from cosmos_predict1.diffusion.inference import inference_inverse_renderer as inverse
from cosmos_predict1.diffusion.networks.checkpoint import network_state_dict
from cosmos_predict1.diffusion.options import Lighting, SamplingOptions
from cosmos_predict1.diffusion.pixel_limit import DEFAULT_MAX_PIXELS, MAX_PIXELS_VARIABLE, TooManyPixels
from cosmos_predict1.diffusion.tokenizer import load_tokenizer
from cosmos_predict1.errors import UserError
from cosmos_predict1.evaluation.frames import Frames
from cosmos_predict1.release import INVERSE_MODEL, TOKENIZER
from cosmos_predict1.weights import first_nonfinite

HUGE_SIDE = 30000  # 30000² pixels: 900 M, over the default limit (and 5.4 GB as 16-bit RGB)

# ----------------------------------------------------------------------------------------------- crafted headers


def png_declaring(path: Path, width: int, height: int, dtype: type = np.uint16) -> Path:
    """A valid small PNG whose IHDR is rewritten to declare ``width × height`` (CRC fixed): only its header is
    large. The first chunk starts at byte 8: length, b"IHDR", width, height, ..., CRC over type + data."""
    cv2.imwrite(str(path), np.zeros((2, 2, 3), dtype))
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def jpeg_declaring(path: Path, width: int, height: int) -> Path:
    """A small JPEG whose SOF0 segment (marker FF C0, length, precision, height, width) declares ``width × height``."""
    Image.new("RGB", (2, 2)).save(path, quality=90)
    data = bytearray(path.read_bytes())
    start = data.index(b"\xff\xc0") + 5
    data[start : start + 4] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def hdr_declaring(path: Path, width: int, height: int) -> Path:
    """A Radiance header declaring ``width × height`` followed by a few bytes of pixels."""
    path.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + f"-Y {height} +X {width}\n".encode() + bytes(16))
    return path


def exr_declaring(path: Path, width: int, height: int) -> Path:
    """A small EXR whose dataWindow attribute (box2i: xMin, yMin, xMax, yMax) declares ``width × height``."""
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {"RGB": np.zeros((2, 2, 3), np.float32)}).write(str(path))
    data = bytearray(path.read_bytes())
    start = data.index(b"dataWindow\x00box2i\x00") + len(b"dataWindow\x00box2i\x00") + 4
    data[start : start + 16] = struct.pack("<4i", 0, 0, width - 1, height - 1)
    path.write_bytes(bytes(data))
    return path


CRAFTED = {
    "png16.png": png_declaring,
    "photo.jpg": jpeg_declaring,
    "sky.hdr": hdr_declaring,
    "sky.exr": exr_declaring,
}


def assert_refusal(message: str, path: Path, width: int, height: int, limit: int = DEFAULT_MAX_PIXELS) -> None:
    """One line naming the file, its declared size, the limit and the variable that raises it."""
    assert "\n" not in message
    assert message.startswith(f"{path}: declares {width}×{height} pixels ({width * height:,})"), message
    assert f"the limit of {limit:,}" in message and MAX_PIXELS_VARIABLE in message, message


# ----------------------------------------------------------------------------------------------- the pixel limit


@pytest.mark.parametrize("name", CRAFTED)
def test_a_file_declaring_too_many_pixels_is_refused_by_its_header(name: str, tmp_path: Path) -> None:
    side = 65535 if name.endswith(".jpg") else HUGE_SIDE  # JPEG sides are 16-bit
    path = CRAFTED[name](tmp_path / name, side, side)
    start = time.perf_counter()
    with pytest.raises(TooManyPixels) as caught:
        read_image(path)
    assert time.perf_counter() - start < 1.0
    assert_refusal(str(caught.value), path, side, side)


@pytest.mark.parametrize("name", ["sky.hdr", "sky.exr"])
def test_an_environment_map_declaring_too_many_pixels_is_refused_as_such(name: str, tmp_path: Path) -> None:
    path = CRAFTED[name](tmp_path / name, 2 * HUGE_SIDE, HUGE_SIDE)
    with pytest.raises(TooManyPixels) as caught:
        read_hdr(path)
    assert_refusal(str(caught.value), path, 2 * HUGE_SIDE, HUGE_SIDE)
    assert str(caught.value).count(str(path)) == 1


def test_the_limit_follows_the_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "small.png"
    cv2.imwrite(str(path), np.zeros((16, 20, 3), np.uint16))
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "319")
    with pytest.raises(TooManyPixels) as caught:
        read_image(path)
    assert_refusal(str(caught.value), path, 20, 16, limit=319)
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "320")
    assert read_image(path).shape == (16, 20, 3)


@pytest.fixture(autouse=True)
def as_in_the_scripts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow's guard replaced by the pixel limit, as the scripts do (restored after each test)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)


def test_in_a_python_process_pillows_guard_also_refuses_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478_485)  # Pillow's default
    path = png_declaring(tmp_path / "wide.png", 200_000, 1000, np.uint8)
    with pytest.raises(pixel_limit.TooManyPixels, match=r"exceeds limit of 178956970 pixels.*replace_pillow_guard"):
        read_image(path)


def test_pillow_follows_this_limit_not_its_own_in_the_scripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow alone refuses images over 2 × 89 M pixels at ``Image.open``; a 200 M-pixel file is within this limit,
    which the scripts put in the place of Pillow's."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478_485)  # Pillow's default
    path = png_declaring(tmp_path / "wide.png", 200_000, 1000, np.uint8)
    assert 200_000 * 1000 <= DEFAULT_MAX_PIXELS
    pixel_limit.replace_pillow_guard()
    pixel_limit.check_declared_size(path)
    with Image.open(path) as image:
        assert image.size == (200_000, 1000)


def test_importing_the_package_leaves_pillows_guard_alone() -> None:
    """A Python caller's process keeps Pillow's decompression-bomb guard."""
    code = (
        "from PIL import Image; before = Image.MAX_IMAGE_PIXELS; import cosmos_predict1.diffusion.frames, "
        "cosmos_predict1.evaluation; assert Image.MAX_IMAGE_PIXELS == before is not None"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


@pytest.mark.parametrize("value", ["lots", "0", "-5", "1e9", "1" * 40, "²"])
def test_a_bad_limit_value_is_one_line(value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, value)
    with pytest.raises(UserError, match=f"^{MAX_PIXELS_VARIABLE}='{value}': must be a whole number of pixels"):
        read_image(png_declaring(tmp_path / "a.png", 4, 4))


@pytest.mark.parametrize("name", ["sky.hdr", "sky.exr"])
def test_a_broken_header_is_an_unreadable_file(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(b"#?RADIANCE\nno blank line, no resolution" if name.endswith(".hdr") else b"\x76\x2f\x31\x01")
    with pytest.raises(UserError, match=f"^Cannot read image {path}"):
        read_image(path)


def test_radiance_resolution_lines_in_any_orientation(tmp_path: Path) -> None:
    for line, size in [("-Y 3 +X 5", (3, 5)), ("+Y 3 -X 5", (3, 5)), ("+X 5 -Y 3", (3, 5)), ("-X 7 +Y 2", (2, 7))]:
        path = tmp_path / "a.hdr"
        path.write_bytes(b"#?RGBE\nEXPOSURE=1\n\n" + line.encode() + b"\n")
        assert pixel_limit.declared_sizes(path) == [size], line
    cv2.imwrite(str(path), np.ones((6, 9, 3), np.float32))
    assert pixel_limit.declared_sizes(path) == [(6, 9)]


def test_the_inverse_cli_refuses_an_oversized_image_in_one_line(
    tiny_checkpoints: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    big = png_declaring(dataset / "image_z.png", HUGE_SIDE, HUGE_SIDE)
    refuse_rendering(monkeypatch)
    run = run_cli(inverse, tiny_checkpoints, *inverse_args(dataset, tmp_path / "out"))
    assert_user_error(run, f"{big}: declares {HUGE_SIDE}×{HUGE_SIDE} pixels", MAX_PIXELS_VARIABLE)
    assert finished_files(tmp_path / "out") == {}


def test_the_forward_cli_refuses_an_oversized_hdri_in_one_line(
    tiny_checkpoints: Path,
    gbuffers: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    big = hdr_declaring(tmp_path / "huge.hdr", 2 * HUGE_SIDE, HUGE_SIDE)
    refuse_rendering(monkeypatch)
    args = forward_args(gbuffers, tmp_path / "out", "--use_custom_envmap", "True", "--envlight_path", str(big))
    run = run_cli(forward, tiny_checkpoints, *args)
    assert_user_error(run, f"{big}: declares {2 * HUGE_SIDE}×{HUGE_SIDE} pixels", MAX_PIXELS_VARIABLE)
    assert finished_files(tmp_path / "out") == {}


# ----------------------------------------------------------------------------------------------- videos


@pytest.fixture(scope="module")
def small_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """videos/clip.mp4: 10 frames of 32 × 24 at 10 fps."""
    folder = tmp_path_factory.mktemp("videos")
    write_video(folder / "clip.mp4", [np.full((24, 32, 3), 10 * i, np.uint8) for i in range(10)], fps=10)
    return folder


def test_the_evaluation_reads_a_video_within_the_limits(small_video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, str(10 * 32 * 24 // pixel_limit.VIDEO_FACTOR))
    frames = Frames(video=small_video / "clip.mp4")
    assert frames.count == 10 and frames.read(9).shape == (24, 32, 3)


@pytest.mark.parametrize(
    "limit, declared",
    [(32 * 24 - 1, "frames of 32×24 pixels"), (10 * 32 * 24 // pixel_limit.VIDEO_FACTOR - 1, "10 frames of 32×24")],
    ids=["frame", "whole-video"],
)
def test_the_evaluation_refuses_a_video_over_the_limits(
    limit: int, declared: str, small_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = tmp_path / "clip.mp4"  # a path of its own: decoded videos are cached by path
    video.write_bytes((small_video / "clip.mp4").read_bytes())
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, str(limit))
    with pytest.raises(TooManyPixels, match=f"^{video}: declares {declared}"):
        Frames(video=video).read(0)


def test_the_extractor_refuses_oversized_frames_before_decoding(
    small_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, str(32 * 24 - 1))
    code = extract.main(["--input_folder", str(small_video), "--output_folder", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{small_video / 'clip.mp4'}: declares frames of 32×24 pixels" in err and MAX_PIXELS_VARIABLE in err
    assert not (tmp_path / "out" / "clip").exists()


# ----------------------------------------------------------------------------------------------- options


NON_FINITE = ["nan", "inf", "-inf"]


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("option", ["--guidance"])
def test_inverse_non_finite_options_are_refused(
    tiny_checkpoints: Path,
    images: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    option: str,
    value: str,
) -> None:
    refuse_rendering(monkeypatch)
    run = run_cli(inverse, tiny_checkpoints, *inverse_args(images, tmp_path / "out"), f"{option}={value}")
    assert_user_error(run, f"{option} {value}: must be a number")


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("option", ["--guidance", "--env_strength", "--env_rotation"])
def test_forward_non_finite_options_are_refused(
    tiny_checkpoints: Path,
    gbuffers: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    option: str,
    value: str,
) -> None:
    refuse_rendering(monkeypatch)
    run = run_cli(forward, tiny_checkpoints, *forward_args(gbuffers, tmp_path / "out"), f"{option}={value}")
    assert_user_error(run, f"{option} {value}: must be a number")
    assert finished_files(tmp_path / "out") == {}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_the_python_api_refuses_non_finite_numbers(value: float) -> None:
    for make, option in [
        (lambda: SamplingOptions(guidance=value), "--guidance"),
        (lambda: Lighting(strength=value), "--env_strength"),
        (lambda: Lighting(rotation=value), "--env_rotation"),
    ]:
        with pytest.raises(UserError, match=f"^{option} {value}: must be a number"):
            make()


# ----------------------------------------------------------------------------------------------- camera poses

SINGULAR = [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
BAD_ROTATIONS = {
    "nan": [[float("nan"), 0, 0], [0, 1, 0], [0, 0, 1]],
    "inf": [[1, 0, 0], [0, float("inf"), 0], [0, 0, 1]],
    "all-zero": [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
    "singular": SINGULAR,
}


def pose_document(rotation: list[list[float]]) -> str:
    """A one-frame pose file (JSON, NaN/Infinity written as Python's json does) with ``rotation`` as its 3×3 part."""
    matrix = [[*row, 0.0] for row in rotation] + [[0.0, 0.0, 0.0, 1.0]]
    return json.dumps({"frames": [{"transform_matrix": matrix}]})


@pytest.mark.parametrize("kind", BAD_ROTATIONS)
def test_bad_pose_files_are_refused(
    tiny_checkpoints: Path,
    gbuffers: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    path = tmp_path / "poses.json"
    path.write_text(pose_document(BAD_ROTATIONS[kind]))
    refuse_rendering(monkeypatch)
    run = run_cli(forward, tiny_checkpoints, *forward_args(gbuffers, tmp_path / "out"), "--camera_poses", str(path))
    expected = "is not a finite number" if kind in ("nan", "inf") else "its 3×3 part is not a rotation"
    assert_user_error(run, f"{path}: frames[0].transform_matrix", expected)
    assert finished_files(tmp_path / "out") == {}


@pytest.mark.parametrize("kind", BAD_ROTATIONS)
def test_bad_camera_rotations_of_the_python_api_are_refused(kind: str) -> None:
    rotations = torch.eye(3).repeat(2, 1, 1)
    rotations[1] = torch.tensor(BAD_ROTATIONS[kind])
    expected = "holds NaN or infinite values" if kind in ("nan", "inf") else "is not a rotation"
    with pytest.raises(UserError, match=rf"^camera_to_world\[1\] {expected}"):
        check_camera_rotations(rotations, 2)
    with pytest.raises(UserError, match=r"must be \[3, 3, 3\]"):
        check_camera_rotations(torch.eye(3).repeat(2, 1, 1), 3)
    check_camera_rotations(torch.eye(3).repeat(2, 1, 1), 2)


def test_the_forward_pipeline_refuses_a_bad_camera_before_sampling(
    tiny_checkpoints: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = ForwardPipeline.from_pretrained(tiny_checkpoints, device="cpu", num_steps=1)
    refuse_rendering(monkeypatch)
    basecolor = {"basecolor": np.full((64, 96, 3), 128, np.uint8)}
    with pytest.raises(UserError, match=r"^camera_to_world\[0\] is not a rotation"):
        pipeline(basecolor, Lighting(np.ones((8, 16, 3), np.float32)), height=64, width=96, camera_to_world=[SINGULAR])


# ----------------------------------------------------------------------------------------------- weights


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_first_nonfinite_finds_any_bad_value(dtype: torch.dtype, bad: float) -> None:
    tensors = {"int": torch.arange(5), "empty": torch.empty(0, dtype=dtype), "a": torch.ones(1000, 7, dtype=dtype)}
    assert first_nonfinite(tensors) is None
    for position in (0, 3500, 6999):
        tensors["b"] = torch.randn(1000, 7).to(dtype)
        tensors["b"].view(-1)[position] = bad
        assert first_nonfinite(tensors) == "b"
    tensors["a"][0, 0] = bad
    assert first_nonfinite(tensors) == "a"


def test_a_model_pt_with_a_nan_is_refused_naming_the_file(
    tiny_checkpoints: Path,
    images: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    relative = f"{INVERSE_MODEL}/model.pt"
    state = torch.load(tiny_checkpoints / relative, map_location="cpu", weights_only=True)
    name = sorted(network_state_dict(state, relative))[5]
    state[f"net.{name}"].view(-1)[3] = float("nan")
    path = tmp_path / "model.pt"
    torch.save(state, path)
    checkpoints = damaged_checkpoints(tiny_checkpoints, tmp_path / "checkpoints", relative, path.read_bytes())
    refuse_rendering(monkeypatch)
    run = run_cli(inverse, checkpoints, *inverse_args(images, tmp_path / "out"))
    assert_user_error(run, f"{checkpoints / relative}: the weight", "holds NaN or infinite values", "download")
    assert finished_files(tmp_path / "out") == {}


@pytest.mark.parametrize("file, bad", [("mean_std.pt", "nan"), ("image_mean_std.pt", "zero-std")])
def test_tokenizer_statistics_must_be_finite_with_positive_std(
    tiny_checkpoints: Path, tmp_path: Path, file: str, bad: str
) -> None:
    mean, std = torch.load(tiny_checkpoints / TOKENIZER / file, weights_only=True)
    if bad == "nan":
        mean[2] = float("nan")
    else:
        std[0] = 0.0
    path = tmp_path / file
    torch.save((mean, std), path)
    checkpoints = damaged_checkpoints(
        tiny_checkpoints, tmp_path / "checkpoints", f"{TOKENIZER}/{file}", path.read_bytes()
    )
    with pytest.raises(UserError, match=f"^{checkpoints / TOKENIZER / file}: the latent statistics hold NaN"):
        load_tokenizer(checkpoints / TOKENIZER)


def test_tokenizer_weights_with_an_inf_are_refused_naming_the_file(tiny_checkpoints: Path, tmp_path: Path) -> None:
    """A diffusers-format tokenizer folder (config.json + safetensors) made from the tiny tokenizer."""
    tokenizer = load_tokenizer(tiny_checkpoints / TOKENIZER)
    folder = tmp_path / "tokenizer"
    tokenizer.vae.save_pretrained(folder)
    weights = folder / "diffusion_pytorch_model.safetensors"
    for file in ("mean_std.pt", "image_mean_std.pt"):
        (folder / file).write_bytes((tiny_checkpoints / TOKENIZER / file).read_bytes())
    assert load_tokenizer(folder).latent_channels == tokenizer.latent_channels
    state = load_file(weights)
    name = next(key for key, tensor in state.items() if key.startswith("decoder.") and tensor.is_floating_point())
    state[name].view(-1)[0] = float("inf")
    save_file(state, weights)
    with pytest.raises(UserError, match=f"^{weights}: the weight {name} holds NaN or infinite values"):
        load_tokenizer(folder)

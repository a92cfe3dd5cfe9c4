"""The forward renderer's command line on tiny random-weight checkpoints (CPU), fed by the inverse CLI's output."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import OpenEXR
import pytest
from test_cli_inverse import SIZE, write_images

from cosmos_predict1.diffusion.inference import inference_forward_renderer as forward
from cosmos_predict1.diffusion.inference import inference_inverse_renderer as inverse

PASSES = ("basecolor", "normal", "depth", "roughness", "metallic")


def run(checkpoints: Path, *args: str) -> int:
    return forward.main(["--checkpoint_dir", str(checkpoints), "--device", "cpu", "--num_steps", "2", *SIZE, *args])


def sky(height: int = 32, width: int = 64) -> np.ndarray:
    rows = np.linspace(2.0, 0.2, height, dtype=np.float32)[:, None, None]
    image = np.broadcast_to(rows * np.array([0.6, 0.8, 1.0], np.float32), (height, width, 3)).copy()
    image[4:8, 40:44] = 500.0  # a sun
    return image


@pytest.fixture(scope="module")
def gbuffers(tiny_checkpoints: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The inverse CLI's gbuffer_frames for two images."""
    inputs, out = tmp_path_factory.mktemp("images"), tmp_path_factory.mktemp("inverse")
    write_images(inputs, ["image_1.jpg", "image_2.png"])
    args = [
        "--checkpoint_dir",
        str(tiny_checkpoints),
        "--device",
        "cpu",
        "--num_steps",
        "1",
        *SIZE,
        "--dataset_path",
        str(inputs),
        "--num_video_frames",
        "1",
        "--group_mode",
        "webdataset",
        "--video_save_folder",
        str(out),
    ]
    assert inverse.main(args) == 0
    return out / "gbuffer_frames"


@pytest.fixture(scope="module")
def hdris(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("hdri")
    cv2.imwrite(str(folder / "sky.hdr"), sky()[..., ::-1])
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {"RGB": np.ascontiguousarray(sky()[:, ::-1] * 2)}).write(str(folder / "sky.exr"))
    return [folder / "sky.hdr", folder / "sky.exr"]


def test_relights_with_hdr_and_exr_files(
    tiny_checkpoints: Path, gbuffers: Path, hdris: list[Path], tmp_path: Path
) -> None:
    code = run(
        tiny_checkpoints,
        "--dataset_path",
        str(gbuffers),
        "--num_video_frames",
        "1",
        "--envlight_path",
        *map(str, hdris),
        "--video_save_folder",
        str(tmp_path),
        "--save_image",
        "true",
    )
    assert code == 0
    for clip in ("image_1", "image_2"):
        for light in (0, 1):
            frame = iio.imread(tmp_path / f"{clip}__0000.relit_{light:04d}.jpg")
            assert frame.shape == (64, 96, 3) and frame.dtype == np.uint8
            assert iio.imread(tmp_path / f"relit_frames_{light:04d}/{clip}/0000.0000.jpg").shape == (64, 96, 3)
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 8


@pytest.mark.slow
def test_batched_lightings_equal_one_at_a_time(
    tiny_checkpoints: Path, gbuffers: Path, hdris: list[Path], tmp_path: Path
) -> None:
    outputs = []
    for max_batch in ("2", "1"):
        folder = tmp_path / max_batch
        assert (
            run(
                tiny_checkpoints,
                "--dataset_path",
                str(gbuffers),
                "--num_video_frames",
                "1",
                "--max_batch",
                max_batch,
                "--envlight_path",
                *map(str, hdris),
                "--video_save_folder",
                str(folder),
            )
            == 0
        )
        outputs.append([iio.imread(folder / f"image_1__0000.relit_{k:04d}.jpg").astype(int) for k in (0, 1)])
    for batched, single in zip(*outputs):  # equal up to float rounding (other GEMM blockings), then JPEG coding
        assert np.abs(batched - single).mean() < 0.5


def test_random_lighting_depends_on_the_index_only(tiny_checkpoints: Path, gbuffers: Path, tmp_path: Path) -> None:
    common = [
        "--dataset_path",
        str(gbuffers),
        "--num_video_frames",
        "1",
        "--use_custom_envmap",
        "False",
        "--max_batch",
        "1",
    ]
    assert run(tiny_checkpoints, *common, "--envlight_ind", "0", "1", "--video_save_folder", str(tmp_path / "a")) == 0
    assert run(tiny_checkpoints, *common, "--envlight_ind", "1", "--video_save_folder", str(tmp_path / "b")) == 0
    first = iio.imread(tmp_path / "a/image_1__0000.relit_0000.jpg")
    second = iio.imread(tmp_path / "a/image_1__0000.relit_0001.jpg")
    again = iio.imread(tmp_path / "b/image_1__0000.relit_0001.jpg")
    assert not np.array_equal(first, second)
    assert np.array_equal(second, again)


def test_bundled_hdri_list_and_missing_pass_warning(
    tiny_checkpoints: Path, gbuffers: Path, tmp_path: Path, caplog
) -> None:
    partial = tmp_path / "gbuffer_frames"
    shutil.copytree(gbuffers, partial)
    for path in partial.rglob("*.metallic.jpg"):
        path.unlink()
    with caplog.at_level(logging.WARNING):
        code = run(
            tiny_checkpoints,
            "--dataset_path",
            str(partial),
            "--num_video_frames",
            "1",
            "--envlight_ind",
            "3",
            "--video_save_folder",
            str(tmp_path / "out"),
        )
    assert code == 0 and "metallic" in caplog.text
    assert (tmp_path / "out/image_2__0000.relit_0003.jpg").is_file()


@pytest.mark.slow
def test_video_with_rotating_light_on_a_fixed_frame(tiny_checkpoints: Path, hdris: list[Path], tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    clip = tmp_path / "gbuffer_frames/clip"
    clip.mkdir(parents=True)
    for frame in range(57):
        for name in PASSES:
            iio.imwrite(clip / f"0000.{frame:04d}.{name}.jpg", rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    code = run(
        tiny_checkpoints,
        "--dataset_path",
        str(tmp_path / "gbuffer_frames"),
        "--num_video_frames",
        "57",
        "--envlight_path",
        str(hdris[0]),
        "--rotate_light",
        "True",
        "--use_fixed_frame_ind",
        "True",
        "--fixed_frame_ind",
        "3",
        "--video_save_folder",
        str(tmp_path / "out"),
    )
    assert code == 0
    video = iio.imread(tmp_path / "out/clip__0000.relit_0000.mp4")
    assert video.shape == (57, 64, 96, 3)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--envlight_ind", "7"], "--envlight_ind 7 is out of range"),
        (["--envlight_path", "nowhere.hdr"], "nowhere.hdr"),
        (["--use_fixed_frame_ind", "true", "--fixed_frame_ind", "5"], "--fixed_frame_ind 5"),
    ],
)
def test_bad_lighting_options(tiny_checkpoints: Path, gbuffers: Path, tmp_path: Path, capsys, args, message) -> None:
    code = run(
        tiny_checkpoints,
        "--dataset_path",
        str(gbuffers),
        "--num_video_frames",
        "1",
        "--video_save_folder",
        str(tmp_path),
        *args,
    )
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err

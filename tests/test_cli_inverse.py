"""The inverse renderer's command line on tiny random-weight checkpoints (CPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from conftest import REPO_ROOT
from cosmos_predict1.diffusion.inference import inference_inverse_renderer as inverse

PASSES = ["basecolor", "normal", "depth", "roughness", "metallic"]
SIZE = ["--height", "64", "--width", "96"]


def write_images(folder: Path, names: list[str], frames: int = 1, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for name in names:
        for f in range(frames):
            path = folder / (name if frames == 1 else f"{name}/frame_{f:05d}.png")
            path.parent.mkdir(parents=True, exist_ok=True)
            iio.imwrite(path, rng.integers(0, 256, (48, 80, 3), dtype=np.uint8))


def run(checkpoints: Path, *args: str) -> int:
    return inverse.main(["--checkpoint_dir", str(checkpoints), "--device", "cpu", "--num_steps", "2", *SIZE, *args])


@pytest.fixture(scope="module")
def image_run(tiny_checkpoints: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    inputs, out = tmp_path_factory.mktemp("images"), tmp_path_factory.mktemp("out")
    write_images(inputs, ["image_1.jpg", "sub/image_2.png"])
    code = run(
        tiny_checkpoints,
        "--dataset_path",
        str(inputs),
        "--num_video_frames",
        "1",
        "--group_mode",
        "webdataset",
        "--video_save_folder",
        str(out),
    )
    assert code == 0
    return inputs, out


def test_images_write_every_expected_file(image_run: tuple[Path, Path]) -> None:
    _, out = image_run
    for clip in ("image_1", "sub/image_2"):
        for name in PASSES:
            frame = iio.imread(out / "gbuffer_frames" / clip / f"0000.0000.{name}.jpg")
            assert frame.shape == (64, 96, 3) and frame.dtype == np.uint8
            video = iio.imread(out / f"{clip.replace('/', '__')}.{name}.jpg")  # 1-frame rule: .jpg, not .mp4
            assert video.shape == (64, 96, 3)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len(files) == 2 * 5 * 2 and not [f for f in files if "cosmos-tmp-" in f]


def test_subset_of_passes_reproduces_the_same_pixels(
    tiny_checkpoints: Path, image_run: tuple[Path, Path], tmp_path: Path
) -> None:
    inputs, out = image_run
    code = run(
        tiny_checkpoints,
        "--dataset_path",
        str(inputs),
        "--num_video_frames",
        "1",
        "--group_mode",
        "webdataset",
        "--video_save_folder",
        str(tmp_path),
        "--inference_passes",
        "depth",
        "normal",
        "--max_batch",
        "1",
    )
    assert code == 0
    for name in ("depth", "normal"):
        again = iio.imread(tmp_path / "gbuffer_frames/image_1" / f"0000.0000.{name}.jpg")
        assert np.array_equal(again, iio.imread(out / "gbuffer_frames/image_1" / f"0000.0000.{name}.jpg"))
    assert not (tmp_path / "image_1.basecolor.jpg").exists()


def test_rerun_skips_finished_work(tiny_checkpoints: Path, image_run: tuple[Path, Path], capsys) -> None:
    inputs, out = image_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}
    code = run(
        tiny_checkpoints,
        "--dataset_path",
        str(inputs),
        "--num_video_frames",
        "1",
        "--group_mode",
        "webdataset",
        "--video_save_folder",
        str(out),
    )
    assert code == 0 and "Nothing to do" in capsys.readouterr().err
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}


def test_video_frames_in_folder_mode(tiny_checkpoints: Path, tmp_path: Path) -> None:
    inputs, out = tmp_path / "frames", tmp_path / "out"
    write_images(inputs, ["clip_a"], frames=60)
    code = run(
        tiny_checkpoints,
        "--dataset_path",
        str(inputs),
        "--num_video_frames",
        "57",
        "--group_mode",
        "folder",
        "--video_save_folder",
        str(out),
        "--inference_passes",
        "normal",
        "depth",
        "--normalize_normal",
        "true",
    )
    assert code == 0
    for name in ("normal", "depth"):
        frames = sorted((out / "gbuffer_frames/clip_a").glob(f"0000.*.{name}.jpg"))
        assert len(frames) == 57
        video = iio.imread(out / f"clip_a.{name}.mp4")
        assert video.shape == (57, 64, 96, 3)


@pytest.mark.slow
def test_runs_as_a_file_from_the_repository_root(tiny_checkpoints: Path, tmp_path: Path) -> None:
    write_images(tmp_path / "in", ["one.png"])
    script = "cosmos_predict1/diffusion/inference/inference_inverse_renderer.py"
    result = subprocess.run(
        [
            sys.executable,
            script,
            "--checkpoint_dir",
            str(tiny_checkpoints),
            "--device",
            "cpu",
            *SIZE,
            "--num_steps",
            "1",
            "--num_video_frames",
            "1",
            "--group_mode",
            "webdataset",
            "--inference_passes",
            "depth",
            "--dataset_path",
            str(tmp_path / "in"),
            "--video_save_folder",
            str(tmp_path / "out"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out/one.depth.jpg").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--inference_passes", "albedo"], "unknown pass 'albedo'"),
        (["--height", "60"], "multiple of 16"),
        (["--save_image", "false", "--save_video", "no"], "nothing would be written"),
    ],
)
def test_bad_options_give_one_line_and_exit_code_2(
    tiny_checkpoints: Path, tmp_path: Path, capsys, args, message
) -> None:
    write_images(tmp_path / "in", ["x.png"])
    code = run(
        tiny_checkpoints, "--dataset_path", str(tmp_path / "in"), "--video_save_folder", str(tmp_path / "out"), *args
    )
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_missing_checkpoint_names_the_download_command(tmp_path: Path, capsys) -> None:
    write_images(tmp_path / "in", ["x.png"])
    code = run(tmp_path / "nowhere", "--dataset_path", str(tmp_path / "in"), "--num_video_frames", "1")
    err = capsys.readouterr().err
    assert code == 2 and "download_diffusion_renderer_checkpoints.py" in err

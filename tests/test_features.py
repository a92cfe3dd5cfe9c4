"""Features beyond the original (float outputs, camera-aware lighting, contact sheets, fitting, long videos)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import OpenEXR
import pytest
import torch
from test_cli_forward import sky
from test_cli_inverse import SIZE, write_images

from cosmos_predict1.diffusion import envmap
from cosmos_predict1.diffusion.inference import inference_forward_renderer as forward
from cosmos_predict1.diffusion.inference import inference_inverse_renderer as inverse
from cosmos_predict1.errors import UserError

PASSES = ("basecolor", "normal", "depth", "roughness", "metallic")


def seam_strength(video: np.ndarray, borders) -> tuple[float, float]:
    """(mean |frame t − frame t−1| at the border frames t, the same inside chunks) of ``[T, H, W, C]``."""
    steps = np.abs(np.diff(video.astype(np.float64), axis=0)).mean(axis=(1, 2, 3))  # steps[t - 1] = |f_t − f_t−1|
    at_borders = [t - 1 for t in borders if 0 < t < len(video)]
    inside = [i for i in range(len(steps)) if i not in at_borders]
    return float(steps[at_borders].mean()), float(steps[inside].mean())


def common(checkpoints: Path) -> list[str]:
    return ["--checkpoint_dir", str(checkpoints), "--device", "cpu", "--num_steps", "2", *SIZE]


def read_exr(path: Path) -> np.ndarray:
    return OpenEXR.File(str(path)).channels()["RGB"].pixels


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    write_images(folder, ["image_1.jpg"])
    return folder


@pytest.fixture(scope="module")
def float_run(tiny_checkpoints: Path, images: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same inverse run written as 16-bit PNG and as EXR."""
    outputs = {}
    for output_format in ("png16", "exr"):
        out = tmp_path_factory.mktemp(output_format)
        assert (
            inverse.main(
                [
                    *common(tiny_checkpoints),
                    "--dataset_path",
                    str(images),
                    "--num_video_frames",
                    "1",
                    "--group_mode",
                    "webdataset",
                    "--output_format",
                    output_format,
                    "--video_save_folder",
                    str(out),
                ]
            )
            == 0
        )
        outputs[output_format] = out
    return outputs


def test_png16_and_exr_outputs_hold_the_same_float_values(float_run: dict[str, Path]) -> None:
    frames = lambda fmt: float_run[fmt] / "gbuffer_frames/image_1"  # noqa: E731
    for name in PASSES:
        png = cv2.imread(str(frames("png16") / f"0000.0000.{name}.png"), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint16 and png.shape == (64, 96, 3)
        unit = png[..., ::-1].astype(np.float64) / 65535
        if name in ("normal", "depth"):
            exr = read_exr(frames("exr") / f"0000.0000.{name}.exr")
            assert exr.dtype == np.float32 and exr.shape == (64, 96, 3)
            decoded = (exr + 1) / 2 if name == "normal" else exr  # normals are stored as signed vectors
            assert np.abs(decoded - unit).max() <= 1 / 65535
            if name == "normal":
                assert exr.min() < 0 <= exr.max() <= 1
        else:
            assert (frames("exr") / f"0000.0000.{name}.png").is_file()
    # 16 bit keeps what 8 bit truncates: more than 256 distinct levels in some pass
    assert max(len(np.unique(cv2.imread(str(frames("png16") / f"0000.0000.{n}.png"), -1))) for n in PASSES) > 256


def test_forward_reads_float_gbuffers_and_writes_linear_exr(
    tiny_checkpoints: Path, float_run: dict[str, Path], tmp_path: Path
) -> None:
    hdri = tmp_path / "sky.hdr"
    cv2.imwrite(str(hdri), sky()[..., ::-1])
    code = forward.main(
        [
            *common(tiny_checkpoints),
            "--dataset_path",
            str(float_run["exr"] / "gbuffer_frames"),
            "--num_video_frames",
            "1",
            "--envlight_path",
            str(hdri),
            "--output_linear",
            "true",
            "--video_save_folder",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    display = iio.imread(tmp_path / "out/image_1__0000.relit_0000.jpg").astype(np.float64) / 255
    linear = read_exr(
        tmp_path / "out/relit_linear_0000/image_1__0000.0000.exr".replace("image_1__0000", "image_1/0000")
    )
    assert linear.dtype == np.float32 and 0 <= linear.min() and linear.max() <= 1
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    # the JPEG of the same frame agrees up to compression (which smears the tiny model's noise-like output)
    assert np.abs(srgb.mean(axis=(0, 1)) - display.mean(axis=(0, 1))).max() < 0.02


def write_poses(path: Path, angles: list[float]) -> None:
    frames = []
    for angle in angles:
        matrix = np.eye(4)
        matrix[:3, :3] = envmap.rotation_y(angle).double().numpy()
        frames.append({"transform_matrix": matrix.tolist()})
    path.write_text(json.dumps({"frames": frames}))


def test_camera_poses_turn_the_environment_and_identity_changes_nothing(tmp_path: Path) -> None:
    write_poses(tmp_path / "identity.json", [0.0] * 3)
    write_poses(tmp_path / "turning.json", [0.3, 0.3 + np.pi / 2, 0.3 + np.pi])  # relative to frame 0
    environment = envmap.EnvironmentMap(envmap.cube_ops.latlong_to_cubemap(torch.rand(16, 32, 3) * 5, 8))
    plain = environment.conditions(8, 16, 3)
    identity = environment.conditions(
        8, 16, 3, camera_to_world=envmap.load_camera_rotations(tmp_path / "identity.json", 3)
    )
    assert all(torch.equal(plain[k], identity[k]) for k in plain)
    turning = envmap.load_camera_rotations(tmp_path / "turning.json", 3)
    assert torch.allclose(turning[1], envmap.rotation_y(np.pi / 2), atol=1e-6)
    rotated = environment.conditions(8, 16, 3, camera_to_world=turning)
    assert torch.equal(rotated["env_ldr"][:, :, 0], plain["env_ldr"][:, :, 0])
    assert not torch.allclose(rotated["env_ldr"][:, :, 1], plain["env_ldr"][:, :, 1])
    with pytest.raises(UserError, match="need 5 frames"):
        envmap.load_camera_rotations(tmp_path / "turning.json", 5)
    (tmp_path / "bad.json").write_text("{frames: oops")
    with pytest.raises(UserError, match="bad.json"):
        envmap.load_camera_rotations(tmp_path / "bad.json", 1)


def test_forward_cli_takes_camera_poses(tiny_checkpoints: Path, float_run: dict[str, Path], tmp_path: Path) -> None:
    write_poses(tmp_path / "poses.json", [0.0])
    code = forward.main(
        [
            *common(tiny_checkpoints),
            "--dataset_path",
            str(float_run["png16"] / "gbuffer_frames"),
            "--num_video_frames",
            "1",
            "--envlight_ind",
            "1",
            "--camera_poses",
            str(tmp_path / "poses.json"),
            "--video_save_folder",
            str(tmp_path / "posed"),
        ]
    )
    assert code == 0
    code = forward.main(
        [
            *common(tiny_checkpoints),
            "--dataset_path",
            str(float_run["png16"] / "gbuffer_frames"),
            "--num_video_frames",
            "1",
            "--envlight_ind",
            "1",
            "--video_save_folder",
            str(tmp_path / "plain"),
        ]
    )
    assert code == 0
    name = "image_1__0000.relit_0001.jpg"
    assert np.array_equal(iio.imread(tmp_path / "posed" / name), iio.imread(tmp_path / "plain" / name))


def test_contact_sheets_show_input_and_outputs(tiny_checkpoints: Path, images: Path, tmp_path: Path) -> None:
    code = inverse.main(
        [
            *common(tiny_checkpoints),
            "--dataset_path",
            str(images),
            "--num_video_frames",
            "1",
            "--group_mode",
            "webdataset",
            "--inference_passes",
            "depth",
            "normal",
            "--contact_sheet",
            "true",
            "--video_save_folder",
            str(tmp_path),
        ]
    )
    assert code == 0
    sheet = iio.imread(tmp_path / "contact_sheets/image_1.png")
    assert sheet.ndim == 3 and sheet.shape[1] == 3 * round(96 * 256 / 64)  # input + 2 passes, tiles 256 high


# --- any input size and aspect ratio --------------------------------------------------------------------------


def test_placements_keep_the_aspect_ratio() -> None:
    from cosmos_predict1.diffusion import fit

    pad = fit.place((48, 80), (64, 96), "pad")  # scale 1.2 → 58 × 96, centred
    assert pad.scaled == (58, 96) and pad.box == (3, 0, 58, 96)
    crop = fit.place((48, 80), (64, 96), "crop")  # scale 4/3 → 64 × 107, centre 96 columns
    assert crop.scaled == (64, 107) and crop.box == (0, 0, 64, 96)
    assert fit.place((48, 80), (64, 96), "stretch").box == (0, 0, 64, 96)
    mask = fit.padding_mask(pad)
    assert mask.shape == (1, 1, 64, 96) and mask.sum() == 6 * 96 and mask[0, 0, 3:61].sum() == 0

    rows, cols = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 80), indexing="ij")
    image = torch.stack([rows, cols, rows * cols])  # smooth, so resampling there and back is close
    padded = fit.fit_frame(image, pad)
    assert padded.shape == (3, 64, 96)
    assert torch.equal(padded[:, 0], padded[:, 3]) and torch.equal(padded[:, 63], padded[:, 60])  # edge repeated
    video = padded[None, :, None]
    assert fit.restore(video, pad, "model").shape == (1, 3, 1, 58, 96)
    back = fit.restore(video, pad, "input")
    assert back.shape == (1, 3, 1, 48, 80) and (back[0, :, 0] - image).abs().max() < 0.02
    assert fit.restore(fit.fit_frame(image, crop)[None, :, None], crop, "input").shape == (1, 3, 1, 48, 72)


def test_cli_fit_pad_round_trips_the_input_size(tiny_checkpoints: Path, tmp_path: Path) -> None:
    write_images(tmp_path / "in", ["wide.png"])  # 48 × 80 inputs, model frame 64 × 96
    assert (
        inverse.main(
            [
                *common(tiny_checkpoints),
                "--dataset_path",
                str(tmp_path / "in"),
                "--num_video_frames",
                "1",
                "--group_mode",
                "webdataset",
                "--fit",
                "pad",
                "--output_size",
                "input",
                "--video_save_folder",
                str(tmp_path / "inv"),
            ]
        )
        == 0
    )
    for name in PASSES:
        assert iio.imread(tmp_path / f"inv/gbuffer_frames/wide/0000.0000.{name}.jpg").shape == (48, 80, 3)
    assert (
        forward.main(
            [
                *common(tiny_checkpoints),
                "--dataset_path",
                str(tmp_path / "inv/gbuffer_frames"),
                "--num_video_frames",
                "1",
                "--envlight_ind",
                "0",
                "--fit",
                "pad",
                "--output_size",
                "input",
                "--video_save_folder",
                str(tmp_path / "fwd"),
            ]
        )
        == 0
    )
    assert iio.imread(tmp_path / "fwd/wide__0000.relit_0000.jpg").shape == (48, 80, 3)
    assert (
        inverse.main(
            [
                *common(tiny_checkpoints),
                "--dataset_path",
                str(tmp_path / "in"),
                "--num_video_frames",
                "1",
                "--group_mode",
                "webdataset",
                "--fit",
                "crop",
                "--inference_passes",
                "depth",
                "--video_save_folder",
                str(tmp_path / "crop"),
            ]
        )
        == 0
    )
    assert iio.imread(tmp_path / "crop/wide.depth.jpg").shape == (64, 96, 3)


# --- long videos ----------------------------------------------------------------------------------------------


def test_stitching_cross_fades_the_overlap(tmp_path: Path) -> None:
    from cosmos_predict1.diffusion import stitch

    values = {}
    chunks = []
    for chunk, level in enumerate((0.2, 0.6)):
        files = []
        for frame in range(6):
            path = tmp_path / f"{chunk}.{frame}.png"
            values[path] = np.full((2, 2, 3), level, np.float32)
            files.append(path)
        chunks.append(files)
    frames = list(stitch.stitched_frames(chunks, step=4, length=10, read=values.__getitem__))  # overlap: frames 4, 5
    levels = [float(f.mean()) for f in frames]
    assert levels[:4] == pytest.approx([0.2] * 4) and levels[6:] == pytest.approx([0.6] * 4)
    assert levels[4:6] == pytest.approx([0.2 + 0.4 / 3, 0.2 + 0.8 / 3])
    faded = np.stack(frames)
    cut = np.stack([values[chunks[0][t]] if t < 4 else values[chunks[1][t - 4]] for t in range(10)])
    assert seam_strength(faded, [4, 5, 6])[0] < seam_strength(cut, [4])[0]


def test_long_clip_gives_one_continuous_video(tiny_checkpoints: Path, tmp_path: Path) -> None:

    write_images(tmp_path / "in", ["clip"], frames=100)
    base = [
        *common(tiny_checkpoints),
        "--dataset_path",
        str(tmp_path / "in"),
        "--num_video_frames",
        "57",
        "--chunk_mode",
        "all",
        "--overlap_n_frames",
        "14",
        "--inference_passes",
        "depth",
    ]
    assert inverse.main([*base, "--stitch_chunks", "true", "--video_save_folder", str(tmp_path / "out")]) == 0
    video = iio.imread(tmp_path / "out/clip.depth.mp4")
    assert video.shape == (100, 64, 96, 3)
    frames = [sorted((tmp_path / "out/gbuffer_frames/clip").glob(f"{c:04d}.*.depth.jpg")) for c in (0, 1)]
    cut = np.stack([iio.imread(frames[0][t]) if t < 43 else iio.imread(frames[1][t - 43]) for t in range(100)])
    faded_border, faded_inside = seam_strength(video, range(43, 58))
    cut_border, cut_inside = seam_strength(cut, [43])
    print(
        f"seam strength (mean |Δframe|, 0-255): hard cut {cut_border:.2f} at the border vs {cut_inside:.2f} inside; "
        f"cross-fade {faded_border:.2f} per frame over the overlap vs {faded_inside:.2f} inside"
    )
    assert faded_border < cut_border


def test_missing_contact_sheet_is_redone_on_resume(tiny_checkpoints: Path, images: Path, tmp_path: Path) -> None:
    args = [
        *common(tiny_checkpoints),
        "--dataset_path",
        str(images),
        "--num_video_frames",
        "1",
        "--group_mode",
        "webdataset",
        "--inference_passes",
        "depth",
        "--contact_sheet",
        "true",
        "--video_save_folder",
        str(tmp_path),
    ]
    assert inverse.main(args) == 0
    sheet = tmp_path / "contact_sheets/image_1.png"
    sheet.unlink()
    assert inverse.main(args) == 0 and sheet.is_file()

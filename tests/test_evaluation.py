"""The evaluation package and scripts/evaluate_renderer.py: metrics on hand-computed cases, the file layouts, the
chunk/seam bookkeeping, and end-to-end runs of tiny checkpoints on the bundled ground truth."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

from conftest import REPO_ROOT
from cosmos_predict1.diffusion.inference import inference_forward_renderer as forward
from cosmos_predict1.diffusion.inference import inference_inverse_renderer as inverse
from cosmos_predict1.errors import UserError
from cosmos_predict1.evaluation import compare, evaluate_forward, evaluate_inverse, metrics, write_reports
from cosmos_predict1.evaluation.quantities import GBUFFER_QUANTITIES

GROUND_TRUTH = REPO_ROOT / "asset/examples/ground_truth"
IMAGES = REPO_ROOT / "asset/examples/image_examples"
HDRIS = REPO_ROOT / "asset/examples/hdri_examples"
SCRIPT = REPO_ROOT / "scripts/evaluate_renderer.py"
TINY = ["--device", "cpu", "--height", "64", "--width", "96", "--num_video_frames", "1"]


def rotation(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rodrigues rotation matrix [3, 3]."""
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.radians(angle_deg)
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


# ----------------------------------------------------------------------------------------------- metrics


def test_psnr_and_ssim_hand_values() -> None:
    a, b = np.full((16, 16, 3), 0.5), np.full((16, 16, 3), 0.6)
    assert metrics.psnr(a, a) == metrics.PSNR_CAP_DB
    assert metrics.psnr(a, b) == pytest.approx(20.0)  # MSE 0.01
    c1 = metrics.SSIM_K1**2
    assert metrics.ssim(a, b) == pytest.approx((2 * 0.5 * 0.6 + c1) / (0.25 + 0.36 + c1))  # no variance: luminance
    rng = np.random.default_rng(0)
    texture = rng.random((32, 32, 3))
    assert metrics.ssim(texture, texture) == pytest.approx(1.0)
    assert metrics.ssim(texture, 1 - texture) < 0


def test_metrics_use_only_masked_pixels() -> None:
    target = np.zeros((4, 4, 3))
    prediction = target.copy()
    prediction[0] = 1.0  # wrong only in row 0
    mask = np.ones((4, 4), dtype=bool)
    mask[0] = False
    assert metrics.psnr(prediction, target, mask) == metrics.PSNR_CAP_DB
    assert metrics.psnr(prediction, target) == pytest.approx(10 * np.log10(4))  # MSE 1/4
    assert metrics.mae(prediction[..., 0], target[..., 0], mask) == 0.0
    with pytest.raises(ValueError, match="no pixel"):
        metrics.mae(prediction[..., 0], target[..., 0], np.zeros((4, 4), dtype=bool))


def test_basecolor_alignment_undoes_a_per_channel_scale_in_linear_light() -> None:
    rng = np.random.default_rng(1)
    target = rng.uniform(0.05, 0.6, (8, 8, 3))
    darker = metrics.linear_to_srgb(metrics.srgb_to_linear(target) * np.array([0.5, 0.8, 0.25]))
    assert metrics.channel_scales(metrics.srgb_to_linear(darker), metrics.srgb_to_linear(target)) == pytest.approx(
        [2.0, 1.25, 4.0]
    )
    assert metrics.psnr(metrics.align_color(darker, target), target) > 90
    assert metrics.psnr(darker, target) < 25


def test_normal_metrics_of_identity_and_of_a_known_rotation() -> None:
    rng = np.random.default_rng(2)
    normals = rng.standard_normal((10, 12, 3))
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    perfect = metrics.normal_metrics(normals, normals)
    assert perfect["mean_angle"] == pytest.approx(0.0, abs=1e-5) and perfect["within_11.25"] == 100.0
    # Vectors perpendicular to the rotation axis turn by exactly the rotation angle.
    axis = np.array([1.0, 2.0, 3.0]) / np.linalg.norm([1.0, 2.0, 3.0])
    perpendicular = np.cross(normals, axis)
    scores = metrics.normal_metrics(perpendicular @ rotation(axis, 20.0).T, perpendicular)
    assert scores["mean_angle"] == pytest.approx(20.0) and scores["median_angle"] == pytest.approx(20.0)
    assert (scores["within_11.25"], scores["within_22.5"], scores["within_30"]) == (0.0, 100.0, 100.0)
    scaled = metrics.normal_metrics(3 * perpendicular, perpendicular)  # lengths do not matter
    assert scaled["mean_angle"] == pytest.approx(0.0, abs=1e-5)


def test_depth_alignment_makes_affine_predictions_exact() -> None:
    rng = np.random.default_rng(3)
    depth = rng.uniform(2.0, 9.0, (6, 7))
    aligned = metrics.align_depth(-0.3 * depth + 4.0, depth)  # any scale (even negative) and shift
    assert metrics.depth_metrics(aligned, depth) == {"abs_rel": pytest.approx(0.0, abs=1e-12), "delta_1": 100.0}


def test_depth_metrics_hand_values() -> None:
    target, prediction = np.array([1.0, 2.0, 4.0]), np.array([0.0, 1.0, 2.0])
    # Least squares: s = 1.5, b = 5/6 → [5/6, 7/3, 23/6], clipped to the target's [1, 4] → [1, 7/3, 23/6].
    assert metrics.scale_and_shift(prediction, target) == pytest.approx((1.5, 5 / 6))
    aligned = metrics.align_depth(prediction, target)
    assert aligned == pytest.approx([1.0, 7 / 3, 23 / 6])
    scores = metrics.depth_metrics(aligned, target)
    assert scores["abs_rel"] == pytest.approx((0 + (1 / 3) / 2 + (1 / 6) / 4) / 3)
    assert scores["delta_1"] == 100.0
    assert metrics.depth_metrics(np.array([1.0, 2.0]), np.array([1.0, 3.0]))["delta_1"] == 50.0  # 3/2 > 1.25


def test_flicker_is_the_mean_absolute_change_between_frames() -> None:
    frames = np.stack([np.full((2, 3), value) for value in (0.0, 0.1, 0.3)])
    assert metrics.flicker(frames) == pytest.approx(0.15)
    masks = np.ones((3, 2, 3), dtype=bool)
    frames[1, 0, 0] = 5.0
    masks[1, 0, 0] = False  # the outlier is not ground truth in frame 1, so neither pair counts it
    assert metrics.flicker(frames, masks) == pytest.approx(0.15)
    with pytest.raises(ValueError):
        metrics.flicker(frames[:1])


def test_normal_files_decode_as_encoded_or_signed() -> None:
    normal = GBUFFER_QUANTITIES["normal"]
    encoded = np.array([[[0.5, 1.0, 0.0]]])
    assert normal.decode(encoded, signed_file=False) == pytest.approx(np.array([[[0.0, 1.0, -1.0]]]))
    assert normal.decode(encoded, signed_file=True) is encoded
    assert normal.valid(np.array([[[0.0, 0.0, 0.0]]])).tolist() == [[False]]


# ----------------------------------------------------------------------------------------------- layouts


def write_png(path: Path, values: np.ndarray, bits: int = 8) -> None:
    """[0, 1] values [H, W] or [H, W, 3] as an 8- or 16-bit PNG (RGB order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scale, dtype = (255, np.uint8) if bits == 8 else (65535, np.uint16)
    image = np.round(np.clip(values, 0, 1) * scale).astype(dtype)
    assert cv2.imwrite(str(path), image[..., ::-1] if image.ndim == 3 else image)


def test_ground_truth_as_prediction_scores_perfectly(tmp_path: Path) -> None:
    """The bundled image_3 ground truth written in the inverse renderer's 16-bit PNG layout (depth affinely
    normalised, as the renderer's relative depth) must score as perfect: checks decoding and alignment end to end."""
    truth = GROUND_TRUTH / "image_3"
    shutil.copytree(truth, tmp_path / "truth/image_3")
    frames = tmp_path / "run/gbuffer_frames/image_3"
    for name in ("basecolor", "normal", "roughness", "metallic"):
        image = cv2.imread(str(truth / f"{name}.png"), cv2.IMREAD_UNCHANGED) / 255.0
        write_png(frames / f"0000.0000.{name}.png", image[..., ::-1] if image.ndim == 3 else image, bits=16)
    depth = cv2.imread(str(truth / "depth.png"), cv2.IMREAD_UNCHANGED).astype(np.float64)
    write_png(frames / "0000.0000.depth.png", (depth - depth.min()) / (depth.max() - depth.min()), bits=16)
    scores = evaluate_inverse(tmp_path / "run", tmp_path / "truth")["clips"]["image_3"]
    assert scores["basecolor"]["psnr"] > 90 and scores["basecolor"]["ssim"] == pytest.approx(1.0)
    assert scores["normal"]["mean_angle"] < 1e-3 and scores["normal"]["within_11.25"] == 100.0
    assert scores["depth"]["abs_rel"] < 1e-4 and scores["depth"]["delta_1"] == 100.0
    assert scores["roughness"]["mae"] < 1e-6 and scores["metallic"]["mae"] < 1e-6


def test_chunks_overlap_and_seams_map_to_clip_frames(tmp_path: Path) -> None:
    """Ground truth: roughness 0.0, 0.1, …, 0.5 over 6 frames. Two chunks of 4 frames overlapping by 2 (frames 0-3
    and 2-5); the second predicts 0.05 too high. Per-frame MAE: 0 on 4 frames, 0.05 on 4; flicker 0.1 in both; the
    seam (frame 3 of chunk 0 → frame 4 from chunk 1, its local frame 2) changes by 0.15 against the truth's 0.1."""
    for frame in range(6):
        write_png(tmp_path / f"truth/clip/{frame:04d}.roughness.png", np.full((8, 12), frame / 10), bits=16)
    for chunk, start, offset in ((0, 0, 0.0), (1, 2, 0.05)):
        for local in range(4):
            path = tmp_path / f"run/gbuffer_frames/clip/{chunk:04d}.{local:04d}.roughness.png"
            write_png(path, np.full((4, 6, 3), (start + local) / 10 + offset), bits=16)
    scores = evaluate_inverse(tmp_path / "run", tmp_path / "truth", overlap_n_frames=2)["clips"]["clip"]["roughness"]
    assert scores["frames"] == 8
    assert scores["mae"] == pytest.approx(0.025, abs=1e-4)
    assert scores["flicker"] == pytest.approx(0.1, abs=1e-4) and scores["flicker_gt"] == pytest.approx(0.1, abs=1e-4)
    assert scores["seam_flicker"] == pytest.approx(0.15, abs=1e-4)
    assert scores["seam_flicker_gt"] == pytest.approx(0.1, abs=1e-4)


def test_still_ground_truth_and_mask_apply_to_every_frame(tmp_path: Path) -> None:
    write_png(tmp_path / "truth/clip/metallic.png", np.zeros((4, 4)), bits=16)
    mask = np.ones((4, 4))
    mask[:, :2] = 0
    write_png(tmp_path / "truth/clip/mask.png", mask)
    (tmp_path / "inputs/clip").mkdir(parents=True)
    for frame in range(3):  # the clip has 3 frames; a 4th predicted frame is padding and must not count
        write_png(tmp_path / f"inputs/clip/frame_{frame:05d}.png", np.zeros((4, 4, 3)))
    for local in range(4):
        prediction = np.zeros((4, 4, 3))
        prediction[:, :2] = 1.0  # wrong only where the mask says there is no ground truth
        prediction[:, 2:] = 0.1 * local
        write_png(tmp_path / f"run/gbuffer_frames/clip/0000.{local:04d}.metallic.png", prediction, bits=16)
    run = evaluate_inverse(tmp_path / "run", tmp_path / "truth", input_folder=tmp_path / "inputs")
    scores = run["clips"]["clip"]["metallic"]
    assert scores["frames"] == 3
    assert scores["mae"] == pytest.approx(0.1, abs=1e-4)  # mean of 0, 0.1, 0.2
    assert scores["flicker_gt"] == 0.0 and scores["flicker"] == pytest.approx(0.1, abs=1e-4)


def test_unusable_inputs_raise_user_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no gbuffer_frames"):
        evaluate_inverse(tmp_path / "empty", GROUND_TRUTH)
    with pytest.raises(UserError, match="does not exist"):
        evaluate_inverse(tmp_path / "missing", GROUND_TRUTH)
    write_png(tmp_path / "run/gbuffer_frames/other/0000.0000.depth.png", np.zeros((4, 4, 3)))
    with pytest.raises(UserError, match="matches the ground truth"):
        evaluate_inverse(tmp_path / "run", GROUND_TRUTH)
    with pytest.raises(UserError, match="No ground truth"):
        evaluate_inverse(tmp_path / "run", tmp_path / "empty")
    with pytest.raises(UserError, match="forward run"):
        evaluate_forward(tmp_path / "run", GROUND_TRUTH)


def test_script_reports_bad_input_on_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--predictions", str(tmp_path / "nothing"), "--output_folder", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("Error: ")


# ----------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def inverse_runs(tiny_checkpoints: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two tiny inverse runs (2 and 3 steps) on the bundled example images."""
    runs = []
    for steps in ("2", "3"):
        out = tmp_path_factory.mktemp(f"steps{steps}")
        args = ["--checkpoint_dir", str(tiny_checkpoints), *TINY, "--num_steps", steps, "--group_mode", "webdataset"]
        assert inverse.main([*args, "--dataset_path", str(IMAGES), "--video_save_folder", str(out)]) == 0
        runs.append(out)
    return runs


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("evaluate_renderer", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tiny_inverse_runs_are_compared_on_the_bundled_ground_truth(
    inverse_runs: list[Path], tmp_path: Path, capsys
) -> None:
    code = load_script().main(
        [
            "--predictions",
            *map(str, inverse_runs),
            "--labels",
            "steps2",
            "steps3",
            "--inputs",
            str(IMAGES),
            "--output_folder",
            str(tmp_path),
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert [run["label"] for run in report["runs"]] == ["steps2", "steps3"]
    stems = sorted(path.stem for path in IMAGES.glob("*.jpg"))
    for run in report["runs"]:
        assert sorted(run["clips"]) == stems
        assert list(run["summary"]) == list(GBUFFER_QUANTITIES)
        for scores in run["summary"].values():
            assert scores["clips"] == len(stems) and all(np.isfinite(v) for v in scores.values())
        assert any("video1: no output" in entry for entry in run["missing"])
    markdown = (tmp_path / "report.md").read_text()
    assert "| steps2 |" in markdown and "| image_1 | steps3 |" in markdown and "AbsRel" in markdown
    for stem in stems:
        figure = cv2.imread(str(tmp_path / "figures" / f"{stem}.png"))
        assert figure is not None and figure.shape[0] > 5 * 176  # a header and five rows of passes
    assert "### depth" in capsys.readouterr().out


def test_tiny_forward_run_is_scored_per_hdri(tiny_checkpoints: Path, inverse_runs: list[Path], tmp_path: Path) -> None:
    hdris = [str(HDRIS / "overcast.hdr"), str(HDRIS / "clear_sky_sun.hdr")]
    frames = tmp_path / "gbuffers"
    shutil.copytree(inverse_runs[0] / "gbuffer_frames/image_2", frames / "image_2")
    args = ["--checkpoint_dir", str(tiny_checkpoints), *TINY, "--num_steps", "2", "--dataset_path", str(frames)]
    assert forward.main([*args, "--envlight_path", *hdris, "--video_save_folder", str(tmp_path / "run")]) == 0
    comparison = compare([tmp_path / "run"], GROUND_TRUTH, envlight_paths=hdris)
    run = comparison["runs"][0]
    assert comparison["kind"] == "forward" and list(run["clips"]["image_2"]) == ["overcast", "clear_sky_sun"]
    assert {"psnr", "ssim", "psnr_aligned", "ssim_aligned"} <= set(run["summary"]["all lights"])
    paths = write_reports(comparison, tmp_path / "report")
    assert paths["json"].is_file() and paths["markdown"].is_file() and paths["figure image_2"].is_file()

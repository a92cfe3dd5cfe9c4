"""The bundled example assets and scripts/make_example_assets.py: layout, conventions against the spec, and
reproduction of committed files from the seed.

The rendering tests need Mitsuba 3 (``pip install -e ".[assets]"``) and are skipped without it; the layout tests
read only the committed files.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

from conftest import REPO_ROOT
from cosmos_predict1.evaluation.ground_truth import GBUFFER_PASSES, find_frames, ground_truth_clips

EXAMPLES = REPO_ROOT / "asset/examples"
GROUND_TRUTH = EXAMPLES / "ground_truth"
HDRI_STEMS = ("clear_sky_sun", "pink_sunrise", "street_lamp_night", "overcast")


@pytest.fixture(scope="module")
def assets() -> ModuleType:
    """scripts/make_example_assets.py as a module."""
    spec = importlib.util.spec_from_file_location("make_example_assets", REPO_ROOT / "scripts/make_example_assets.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class body runs
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mitsuba(assets: ModuleType) -> ModuleType:
    pytest.importorskip("mitsuba", reason='needs Mitsuba 3: pip install -e ".[assets]"')
    return assets.load_mitsuba()


def read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image[..., ::-1] if image.ndim == 3 else image


def camera_rays(width: int, height: int, vfov_deg: float) -> np.ndarray:
    """Unit directions [height, width, 3] through the pixel centres of a pinhole camera looking along -z."""
    half = np.tan(np.radians(vfov_deg) / 2)
    x = ((np.arange(width) + 0.5) * 2 / width - 1) * half * width / height
    y = (1 - (np.arange(height) + 0.5) * 2 / height) * half
    xx, yy = np.meshgrid(x, y)
    rays = np.stack([xx, yy, -np.ones_like(xx)], axis=-1)
    return rays / np.linalg.norm(rays, axis=-1, keepdims=True)


# ----------------------------------------------------------------------------------------------- layout


def test_every_example_has_complete_ground_truth() -> None:
    clips = ground_truth_clips(GROUND_TRUTH)
    images = sorted(path.stem for path in (EXAMPLES / "image_examples").glob("*.jpg"))
    videos = sorted(path.stem for path in (EXAMPLES / "video_examples").glob("*.mp4"))
    assert sorted(clips) == sorted(images + videos) and images and videos
    readme = (GROUND_TRUTH / "README.md").read_text()
    for clip, folder in clips.items():
        assert f"| {clip} |" in readme
        for name in GBUFFER_PASSES:
            assert find_frames(folder, name) is not None, f"{clip}: no {name}"
        for stem in HDRI_STEMS:
            assert find_frames(folder / "relit", stem, videos=True) is not None, f"{clip}: no relit {stem}"
            assert (EXAMPLES / "hdri_examples" / f"{stem}.hdr").is_file()


def test_image_ground_truth_matches_its_image_and_the_encodings(assets: ModuleType) -> None:
    for image_path in sorted((EXAMPLES / "image_examples").glob("*.jpg")):
        folder = GROUND_TRUTH / image_path.stem
        height, width = read(image_path).shape[:2]
        normal = read(folder / "normal.png").astype(np.float64) / 255 * 2 - 1
        depth = read(folder / "depth.png")
        assert normal.shape == (height, width, 3) and depth.shape == (height, width)
        assert depth.dtype == np.uint16 and depth.min() > 0  # the floor fills every frame: depth everywhere
        lengths = np.linalg.norm(normal, axis=-1)
        assert np.median(np.abs(lengths - 1)) < 0.01  # unit normals, 8-bit rounding aside
        # Camera space (x right, y up, z towards the camera): every visible surface faces back along its pixel's ray.
        assert ((normal * -camera_rays(width, height, assets.VFOV_DEG)).sum(axis=-1) > 0).all()
        assert read(folder / "basecolor.png").shape == (height, width, 3)
        assert read(folder / "roughness.png").ndim == 2 and read(folder / "metallic.png").ndim == 2


def test_video_ground_truth_covers_every_frame() -> None:
    for video in sorted((EXAMPLES / "video_examples").glob("*.mp4")):
        capture = cv2.VideoCapture(str(video))
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()
        for name in GBUFFER_PASSES:
            truth = find_frames(GROUND_TRUTH / video.stem, name)
            assert truth.count is None or truth.count == frames, f"{video.stem} {name}"
        assert all(
            find_frames(GROUND_TRUTH / video.stem / "relit", stem, videos=True).count in (None, frames)
            for stem in HDRI_STEMS
        )


def test_readme_table_names_the_input_lighting_of_each_clip(assets: ModuleType) -> None:
    readme = (GROUND_TRUTH / "README.md").read_text()
    assert readme == assets.ground_truth_readme(assets.example_clips())
    for row in re.findall(r"^\| (image_\d+|video\d+) \| \d+ \| (\w+)", readme, flags=re.M):
        assert row[1] in HDRI_STEMS


# ----------------------------------------------------------------------------------------------- conventions


def test_sphere_gbuffers_follow_the_renderer_conventions(assets: ModuleType, mitsuba: ModuleType) -> None:
    """A red plastic sphere seen from above and in front (spec 4.2 and the ground-truth README): camera-space
    normals (x right, y up, z towards the camera; the sphere's centre pixel faces the camera), z-depth along the
    viewing axis in metres (the sphere's nearest point), sRGB basecolor, roughness and metallic as given."""
    center, radius = np.array([0.0, 0.5, 0.0]), 0.5
    camera = assets.Camera((0.0, 3.0, 3.0), tuple(center))
    objects = (assets.Floor(assets.CONCRETE), assets.Sphere(tuple(center), radius, assets.RED_PLASTIC))
    width, height = 96, 64
    gbuffers = assets.render_gbuffers(objects, camera, (width, height), 16, 0)
    cy, cx = height // 2, width // 2
    assert gbuffers.normal[cy - 1 : cy + 1, cx - 1 : cx + 1].mean(axis=(0, 1)) == pytest.approx([0, 0, 1], abs=0.01)
    nearest = np.linalg.norm(np.array(camera.position) - center) - radius
    assert gbuffers.depth[cy - 1 : cy + 1, cx - 1 : cx + 1].mean() == pytest.approx(nearest, abs=0.01)
    sphere = np.abs(gbuffers.roughness - assets.RED_PLASTIC.first.roughness) < 1e-3
    rows, columns = np.nonzero(sphere)
    left, right = gbuffers.normal[cy, columns.min() + 1], gbuffers.normal[cy, columns.max() - 1]
    top, bottom = gbuffers.normal[rows.min() + 1, cx], gbuffers.normal[rows.max() - 1, cx]
    assert left[0] < -0.7 and right[0] > 0.7 and top[1] > 0.7 and bottom[1] < -0.7
    floor_normal = camera.rotation().T @ np.array([0.0, 1.0, 0.0])  # world up seen from the camera
    assert gbuffers.normal[height - 1, 0] == pytest.approx(floor_normal, abs=1e-3)
    assert gbuffers.basecolor[cy, cx] == pytest.approx(assets.RED_PLASTIC.first.basecolor, abs=1e-4)
    assert gbuffers.metallic[cy, cx] == 0.0
    encoded = assets.encode_gbuffers(gbuffers)
    assert encoded["normal"][cy, cx, 2] == 255 and encoded["depth"].dtype == np.uint16


def test_environment_follows_the_forward_renderers_convention(assets: ModuleType, mitsuba: ModuleType) -> None:
    """Spec 5.2: HDRI pixel (i, j) of an H x W map lies in direction (sin t sin p, cos t, sin t cos p) of the frame
    the map is attached to, t = pi (i + 0.5) / H, p = pi (2 (j + 0.5) / W - 1). A camera looking from the origin
    along the direction of the committed clear sky's brightest pixel must see the sun; looking away, sky only."""
    hdri = read(EXAMPLES / "hdri_examples/clear_sky_sun.hdr")
    i, j = np.unravel_index(hdri.sum(axis=-1).argmax(), hdri.shape[:2])
    t, p = np.pi * (i + 0.5) / hdri.shape[0], np.pi * (2 * (j + 0.5) / hdri.shape[1] - 1)
    sun = (np.sin(t) * np.sin(p), np.cos(t), np.sin(t) * np.cos(p))
    views = {}
    for name, target in (("sun", sun), ("away", (-sun[0], sun[1], -sun[2]))):
        shot = assets.Shot((), assets.Camera((0.0, 0.0, 0.0), target), assets.Lighting.in_world("clear_sky_sun"))
        views[name] = assets.render_radiance(shot, (32, 32), 5, 0, EXAMPLES / "hdri_examples")
    assert views["sun"][14:18, 14:18].max() > 1000  # the sun disc (3 degrees, radiance 2e4) at the centre
    assert views["away"].max() < 100


# ----------------------------------------------------------------------------------------------- reproduction


@pytest.mark.slow
def test_hdris_are_reproduced_bit_for_bit(assets: ModuleType, tmp_path: Path) -> None:
    assets.write_hdris(tmp_path)
    for stem in HDRI_STEMS:
        assert (tmp_path / f"{stem}.hdr").read_bytes() == (EXAMPLES / "hdri_examples" / f"{stem}.hdr").read_bytes()


@pytest.mark.slow
def test_video2_ground_truth_is_reproduced_from_the_seed(
    assets: ModuleType, mitsuba: ModuleType, tmp_path: Path
) -> None:
    """Re-renders video2's G-buffers (one set for its still camera, 320x176) and its relit render under the overcast
    HDRI with the committed sample counts and seed 0. Mitsuba's scalar_rgb variant is deterministic, so on the
    machine that made the assets the files are bit-identical; across CPUs its ray-intersection code may differ in
    the last bits of a float, so the test allows 1 code value (1 cm of depth) on at most 0.5% of the G-buffer
    pixels and a mean difference of 0.5 code values on the relit JPEG."""
    clip = next(clip for clip in assets.example_clips() if clip.name == "video2")
    [(prefix, objects, camera)] = clip.ground_truth_views()
    gbuffers = assets.encode_gbuffers(assets.render_gbuffers(objects, camera, clip.gbuffer_size, assets.GBUFFER_SPP, 0))
    for name, image in gbuffers.items():
        committed = read(GROUND_TRUTH / "video2" / f"{prefix}{name}.png").astype(np.int64)
        difference = np.abs(image.astype(np.int64) - committed)
        assert difference.max() <= 1 and (difference > 0).mean() <= 0.005, name
    shot = assets.Shot(objects, camera, assets.Lighting.on_camera("overcast", camera))
    radiance = assets.render_radiance(shot, assets.RELIT_SIZE, assets.RELIT_SPP, 0, EXAMPLES / "hdri_examples")
    quality = [cv2.IMWRITE_JPEG_QUALITY, assets.JPEG_QUALITY]
    assets.write_image(tmp_path / "overcast.jpg", assets.display(radiance), quality)
    committed = GROUND_TRUTH / "video2/relit/overcast.jpg"
    if (tmp_path / "overcast.jpg").read_bytes() != committed.read_bytes():
        difference = np.abs(read(tmp_path / "overcast.jpg").astype(np.int64) - read(committed))
        assert difference.mean() <= 0.5

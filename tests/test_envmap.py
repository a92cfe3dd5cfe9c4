"""The environment-map chain: the original's fixtures (made with nvdiffrast on a GPU), closed forms, file handling."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np
import OpenEXR
import pytest
import torch

from conftest import assert_close_elementwise, fixture_cases, load_pt
from cosmos_predict1.diffusion import cubemap, envmap
from cosmos_predict1.errors import UserError

TOLERANCE = 1e-4


# --- parity with the original -------------------------------------------------------------------------------------


@pytest.mark.fixtures
@pytest.mark.parametrize("case", fixture_cases("envmap"))
def test_chain_reproduces_fixture(case: Path, caplog: pytest.LogCaptureFixture) -> None:
    inputs, ref = load_pt(case / "inputs.pt"), load_pt(case / "outputs.pt")
    options = inputs["options"]
    height, width = options["resolution"]
    frames = options["num_frames"]
    hdr_file = case / inputs["hdr_file"]

    image = envmap.read_hdr(hdr_file)
    torch.testing.assert_close(image, ref["hdr_loaded"], rtol=0, atol=0, equal_nan=True)
    prepare = {"strength": options["env_strength"], "flip": options["env_flip"], "rotation_deg": options["env_rot"]}
    assert torch.equal(envmap.prepare_latlong(image, **prepare), ref["latlong_prepared"])
    angles = envmap.light_rotation_angles(frames, options["rotate_envlight"])
    assert np.allclose(angles, inputs["rot_angles"], rtol=0, atol=1e-12)
    rotations = envmap.frame_rotations(angles)
    assert torch.equal(rotations, ref["y_rot"][:, :3, :3])

    with caplog.at_level(logging.WARNING):
        environment = envmap.EnvironmentMap.from_file(hdr_file, **prepare)
    assert (hdr_file.name in caplog.text) == (not torch.isfinite(image).all() or bool((image < 0).any()))
    index = ref["cubemap_index"]
    directions = envmap.latlong_directions(height, width)
    queries = envmap.query_directions(directions, rotations)
    env_hdr = torch.flip(environment.radiance(queries), dims=[1, 2])
    env_ldr, env_log = envmap.tone_map(env_hdr)
    conditions = environment.conditions(height, width, frames, rotate_light=options["rotate_envlight"])
    ours = {
        "cubemap_faces": environment.cube[:, index][:, :, index],
        "latlong_vec": directions,
        "cube_query_dirs": queries,
        "env_hdr": env_hdr,
        "env_ldr": env_ldr,
        "env_log": env_log,
        "env_ldr_m11": conditions["env_ldr"],
        "env_log_m11": conditions["env_log"],
        "env_nrm_hw3": envmap.environment_directions(height, width),
        "env_nrm": conditions["env_nrm"],
    }
    assert all(ours[key].shape == ref[key].shape for key in ours)
    for key, value in ours.items():  # elementwise: the references hold texels up to 65504 next to tiny values
        assert_close_elementwise(value, ref[key], TOLERANCE, key)


# --- reading and cleaning files -----------------------------------------------------------------------------------


def write_exr(path: Path, channels: dict[str, np.ndarray]) -> None:
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {name: np.ascontiguousarray(pixels) for name, pixels in channels.items()}).write(str(path))


def opencv_reads_exr(path: Path) -> bool:
    return cv2.haveImageReader(str(path)) and cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is not None


@pytest.fixture
def dirty_exr(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """An RGB float EXR with one NaN, one +Inf and one negative texel."""
    image = np.full((16, 32, 3), 0.5, dtype=np.float32)
    image[2, 3] = [np.nan, 1, 1]
    image[4, 5] = [1, np.inf, 1]
    image[6, 7] = [1, 1, -3]
    write_exr(tmp_path / "sky.exr", {"RGB": image})
    return tmp_path / "sky.exr", image


def test_exr_without_opencv_keeps_stored_values_and_cleanup_warns(
    dirty_exr: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path, image = dirty_exr
    monkeypatch.setattr(cv2, "haveImageReader", lambda _: False)  # the OpenEXR-package path, on any OpenCV build
    loaded = envmap.read_hdr(path)
    torch.testing.assert_close(loaded, torch.from_numpy(image), rtol=0, atol=0, equal_nan=True)
    with caplog.at_level(logging.WARNING):
        environment = envmap.EnvironmentMap.from_file(path, resolution=8)
    assert "1 NaN, 1 infinite, 1 negative texel(s)" in caplog.text and str(path) in caplog.text
    assert all(torch.isfinite(c).all() for c in environment.conditions(8, 16, 1).values())
    prepared = envmap.prepare_latlong(loaded, flip=False, rotation_deg=0)
    assert prepared[2, 3, 0] == 0 and prepared[4, 5, 1] == 65504 and prepared[6, 7, 2] == 0


def test_exr_through_opencv_equals_the_openexr_package(
    dirty_exr: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = dirty_exr
    if not opencv_reads_exr(path):
        pytest.skip("this OpenCV build has no (enabled) EXR codec")
    via_opencv = envmap.read_hdr(path)
    monkeypatch.setattr(cv2, "haveImageReader", lambda _: False)
    torch.testing.assert_close(via_opencv, envmap.read_hdr(path), rtol=0, atol=0, equal_nan=True)


def test_rgba_and_single_channel_files_become_rgb(tmp_path: Path) -> None:
    rgba = np.random.default_rng(0).random((4, 8, 4), dtype=np.float32)
    write_exr(tmp_path / "rgba.exr", {"RGBA": rgba})
    assert torch.equal(envmap.read_hdr(tmp_path / "rgba.exr"), torch.from_numpy(rgba[..., :3]))
    write_exr(tmp_path / "gray.exr", {"Y": rgba[..., 0].copy()})
    assert torch.equal(envmap.read_hdr(tmp_path / "gray.exr"), torch.from_numpy(rgba[..., :1]).expand(4, 8, 3))


def test_hdr_round_trips_through_radiance_files(tmp_path: Path) -> None:
    image = np.random.default_rng(1).random((8, 16, 3), dtype=np.float32) * 100
    cv2.imwrite(str(tmp_path / "sky.HDR"), image[..., ::-1])
    loaded = envmap.read_hdr(tmp_path / "sky.HDR").numpy()
    assert (np.abs(loaded - image).max(-1) <= image.max(-1) / 128).all()  # RGBE: 8-bit mantissas, shared exponent


def _truncated(tmp_path: Path, name: str) -> bytes:
    image = np.random.default_rng(2).random((32, 64, 3), dtype=np.float32)
    if name.endswith(".exr"):
        write_exr(tmp_path / f"full_{name}", {"RGB": image})
    else:
        cv2.imwrite(str(tmp_path / f"full_{name}"), image)
    data = (tmp_path / f"full_{name}").read_bytes()
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "name, content",
    [
        ("header_only.hdr", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 8 +X"),
        ("cut.hdr", None),
        ("garbage.exr", b"v/1\x01garbage"),
        ("cut.exr", None),
        ("empty.exr", b""),
        ("sky.png", b"\x89PNG\r\n\x1a\n"),
        ("missing.hdr", "absent"),
    ],
)
def test_unreadable_or_wrong_files_give_one_line_user_errors(
    tmp_path: Path, name: str, content: bytes | str | None
) -> None:
    if content != "absent":
        (tmp_path / name).write_bytes(_truncated(tmp_path, name) if content is None else content)
    with pytest.raises(UserError, match=name) as raised:
        envmap.EnvironmentMap.from_file(tmp_path / name, resolution=4)
    assert "\n" not in str(raised.value) and ".hdr (Radiance) or .exr (OpenEXR)" in str(raised.value)


def test_preparation_scales_cleans_flips_and_rolls() -> None:
    image = torch.arange(5.0).expand(2, 5)[..., None].repeat(1, 1, 3)  # column c holds c
    image[0, 0] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    # odd width: roll by int(5·180/360) = 2 columns towards larger indices; strength before the clamp
    rolled = envmap.prepare_latlong(image * 20000, strength=2.0, flip=False)
    assert rolled[1, :, 0].tolist() == [65504, 65504, 0, 40000, 65504]
    assert rolled[0, 2].tolist() == [0, 65504, 0]
    flipped = envmap.prepare_latlong(image, flip=True, rotation_deg=0)
    assert flipped[1, :, 0].tolist() == [4, 3, 2, 1, 0]


# --- closed forms -------------------------------------------------------------------------------------------------


def test_constant_hdri_gives_the_formulas_and_env_nrm_is_the_closed_form_direction() -> None:
    height, width = 8, 12
    environment = envmap.EnvironmentMap.from_latlong(torch.full((16, 32, 3), 3.0), resolution=8)
    conditions = environment.conditions(height, width, 2, rotate_light=True)
    reinhard = 3.0 * (1 + 3.0 / 256) / 4.0
    srgb = lambda x: 1.055 * x ** (1 / 2.4) - 0.055  # noqa: E731
    assert torch.allclose(conditions["env_ldr"], torch.tensor(2 * srgb(reinhard) - 1), atol=1e-6)
    log_value = 2 * srgb(math.log1p(3.0) / math.log1p(10000)) - 1
    assert torch.allclose(conditions["env_log"], torch.tensor(log_value), atol=1e-6)
    theta = torch.linspace(1 / height, 1 - 1 / height, height, dtype=torch.float64)[:, None] * math.pi
    phi = ((torch.arange(width, dtype=torch.float64) * 2 + 1) / width - 1) * math.pi
    closed_form = torch.stack(torch.broadcast_tensors(theta.sin() * phi.sin(), theta.cos(), theta.sin() * phi.cos()))
    assert torch.allclose(conditions["env_nrm"][0, :, 1].double(), closed_form, atol=1e-6)
    assert conditions["env_nrm"].shape == (1, 3, 2, height, width)


def test_tone_curves_match_their_definitions_at_known_points() -> None:
    radiance = torch.tensor([0.0, 1e-4, 16.0, 10000.0, 1e6])
    ldr, logarithmic = envmap.tone_map(radiance)
    assert ldr[0] == 0 and ldr[1] == pytest.approx(12.92 * 1e-4 * (1 + 1e-4 / 256) / (1 + 1e-4), rel=1e-5)
    # Reinhard reaches 1 at max_point 16 and is clamped above; log1p(L)/log1p(10000) reaches 1 at 10000
    assert ldr[2] == pytest.approx(1.0, abs=1e-6) and ldr[4] == envmap.srgb(torch.tensor(1.0))
    assert logarithmic[3] == pytest.approx(1.0, abs=1e-6) and logarithmic[4] == 1.0


def _spot_hdri(u: float, v: float, height: int = 64, width: int = 128) -> torch.Tensor:
    """An HDRI as stored on disk: dim background, a bright 4×4 block centred on texture coordinates (u, v)."""
    image = torch.full((height, width, 3), 0.1)
    row, col = round(v * height), round(u * width)
    image[row - 2 : row + 2, col - 2 : col + 2] = 100.0
    return image


def _centroid(brightness: torch.Tensor) -> tuple[float, float]:
    """(row, col) centre of the pixels brighter than half the peak of ``[H, W]``."""
    weights = (brightness - brightness.min()).clamp_min(0)
    weights = torch.where(weights > weights.max() / 2, weights, 0.0)
    rows, cols = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in weights.shape), indexing="ij")
    total = weights.double().sum()
    return float((rows * weights).sum() / total), float((cols * weights).sum() / total)


def test_bright_spot_lands_where_predicted_also_after_a_quarter_turn() -> None:
    """Frame k shows the stored HDRI at u = (j + 0.5)/W + a_k/2π, v = linspace(1/H, 1 − 1/H, H)[i] (spec 5.2)."""
    height, width, u, v = 32, 64, 0.625, 0.375
    environment = envmap.EnvironmentMap.from_latlong(_spot_hdri(u, v), resolution=64)
    brightness = environment.conditions(height, width, 5, rotate_light=True)["env_log"][0, 0]  # a = 0, π/2, π, ...
    expected_row = (v - 1 / height) * (height - 1) / (1 - 2 / height)
    for frame, turn in ((0, 0.0), (1, 0.25), (2, 0.5)):
        row, col = _centroid(brightness[frame])
        assert abs(row - expected_row) < 0.25, (frame, row)
        assert abs(col - (((u - turn) % 1) * width - 0.5)) < 0.25, (frame, col)


def test_latlong_lookup_wraps_vertically_like_the_original() -> None:
    texture = torch.arange(4.0)[:, None, None].expand(4, 4, 1)  # row r holds r
    u = torch.tensor([0.125])
    assert cubemap.sample_latlong(texture, u, torch.tensor([0.0])).item() == 1.5  # half top row, half bottom row
    assert cubemap.sample_latlong(texture, u, torch.tensor([0.375])).item() == 1.0
    assert cubemap.sample_latlong(texture, u + 1, torch.tensor([1.375])).item() == 1.0


# --- the cube-map lookup at seams and corners (spec 5.5) -----------------------------------------------------------


def _numbered_cube(resolution: int) -> torch.Tensor:
    """Texel (face f, row r, column c) holds 10·f + resolution·r + c."""
    axes = (torch.arange(n, dtype=torch.float32) for n in (6, resolution, resolution))
    f, r, c = torch.meshgrid(*axes, indexing="ij")
    return (10 * f + resolution * r + c)[..., None]


def test_seam_and_corner_lookups_blend_the_neighbouring_texels() -> None:
    environment = envmap.EnvironmentMap(_numbered_cube(2))
    lookup = lambda *d: environment.radiance(torch.tensor(d, dtype=torch.float32)).item()  # noqa: E731
    # +X/+Z edge (tie → +X, s = 0): +X texels (0,0)=0 and (1,0)=2 with +Z texels (0,1)=41 and (1,1)=43
    assert lookup(1.0, 0.0, 1.0) == pytest.approx((0 + 2 + 41 + 43) / 4)
    # −Y/−Z edge (tie → −Y, t = 1): −Y texels (1,0)=32, (1,1)=33 with −Z texels (1,1)=53, (1,0)=52
    assert lookup(0.0, -1.0, -1.0) == pytest.approx((32 + 33 + 53 + 52) / 4)
    # +X/+Y/+Z corner: +X (0,0)=0, +Y (1,1)=23, +Z (0,1)=41 and the missing corner texel = their mean
    three = 0 + 23 + 41
    assert lookup(1.0, 1.0, 1.0) == pytest.approx((three + three * 0.33333333) / 4)
    for face, direction in enumerate(((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))):
        assert lookup(*direction) == pytest.approx(10 * face + 1.5)  # face centre: mean of the face's 4 texels
    assert lookup(0.0, 0.0, 0.0) == 0.0


def _scalar_face_coordinates(d: tuple[float, float, float]) -> tuple[int, float, float]:
    """Spec 5.5 face selection and (s, t), one direction at a time."""
    x, y, z = d
    if abs(z) > max(abs(x), abs(y)):
        face, major = (4 if z >= 0 else 5), z
    elif abs(y) > abs(x):
        face, major = (2 if y >= 0 else 3), y
    else:
        face, major = (0 if x >= 0 else 1), x
    h = 1 / (2 * abs(major))
    s, t = [(-z, -y), (z, -y), (x, z), (x, -z), (x, -y), (-x, -y)][face]
    return face, 0.5 + s * h, 0.5 + t * h


def _scalar_face_direction(face: int, x: float, y: float) -> tuple[float, float, float]:
    """Spec 5.4: the direction of position (x, y) on a face's plane."""
    return [(1, -y, -x), (-1, -y, x), (x, 1, y), (x, -1, -y), (x, -y, 1), (-x, -y, -1)][face]


def _scalar_cube_lookup(cube: np.ndarray, d: tuple[float, float, float]) -> np.ndarray:
    """Spec 5.5 transcribed literally: every footprint texel resolved on its own, corners averaged."""
    resolution = cube.shape[1]
    clamp = lambda value, low, high: min(max(value, low), high)  # noqa: E731
    face, s, t = _scalar_face_coordinates(d)
    x, y = clamp(s, 0.0, 1.0) * resolution - 0.5, clamp(t, 0.0, 1.0) * resolution - 0.5
    x0, y0 = math.floor(x), math.floor(y)
    fx, fy = x - x0, y - y0

    def texel(row: int, col: int) -> np.ndarray | None:
        row_in, col_in = 0 <= row < resolution, 0 <= col < resolution
        if row_in and col_in:
            return cube[face, row, col]
        if not row_in and not col_in:
            return None  # a corner of the cube: no such texel
        centre = _scalar_face_direction(face, -1 + (2 * col + 1) / resolution, -1 + (2 * row + 1) / resolution)
        other, s2, t2 = _scalar_face_coordinates(centre)
        last = resolution - 1
        return cube[other, clamp(math.floor(t2 * resolution), 0, last), clamp(math.floor(s2 * resolution), 0, last)]

    footprint = [texel(y0, x0), texel(y0, x0 + 1), texel(y0 + 1, x0), texel(y0 + 1, x0 + 1)]
    present = [value for value in footprint if value is not None]
    a, b, c, e = (value if value is not None else sum(present) * 0.33333333 for value in footprint)
    top, bottom = a + fx * (b - a), c + fx * (e - c)
    return top + fy * (bottom - top)


def test_cube_lookup_matches_a_scalar_transcription_of_the_spec() -> None:
    generator = torch.Generator().manual_seed(0)
    cube = torch.rand(6, 3, 3, 2, generator=generator)
    directions = torch.cat(
        [
            torch.randn(400, 3, generator=generator),
            torch.randn(200, 3, generator=generator).sign() * (0.9 + 0.1 * torch.rand(200, 3, generator=generator)),
            torch.cartesian_prod(*[torch.tensor([-1.0, 0.0, 1.0])] * 3)[torch.arange(27) != 13],  # exact ties
            torch.tensor([[2.0, 2.0, 0.5], [-0.3, 0.3, -0.3], [1e-3, -5.0, 5.0]]),
        ]
    )
    ours = envmap.EnvironmentMap(cube).radiance(directions)
    scalar = np.stack([_scalar_cube_lookup(cube.numpy().astype(np.float64), tuple(d.tolist())) for d in directions])
    assert np.abs(ours.numpy() - scalar).max() < 1e-5


def test_cube_lookup_takes_any_leading_shape() -> None:
    environment = envmap.EnvironmentMap(_numbered_cube(4))
    directions = torch.randn(2, 3, 5, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(environment.radiance(directions).reshape(-1, 1), environment.radiance(directions.reshape(-1, 3)))


def test_cube_map_reproduces_the_latlong_image() -> None:
    """A smooth HDRI survives lat-long → cube → lookup: the output is the HDRI resized (spec 5.2 'net effect')."""
    rows, cols = torch.meshgrid((torch.arange(64) + 0.5) / 64, (torch.arange(128) + 0.5) / 128, indexing="ij")
    smooth = (2 + torch.sin(2 * math.pi * cols) * torch.sin(math.pi * rows))[..., None].repeat(1, 1, 3)
    environment = envmap.EnvironmentMap.from_latlong(smooth, resolution=64)
    height, width = 16, 32
    queries = envmap.query_directions(envmap.latlong_directions(height, width), envmap.rotation_y(0.0))
    seen = torch.flip(environment.radiance(queries), dims=[0, 1])[..., 0]
    v = torch.linspace(1 / height, 1 - 1 / height, height)[:, None]
    u = (torch.arange(width) + 0.5) / width
    assert torch.allclose(seen, 2 + torch.sin(2 * math.pi * u) * torch.sin(math.pi * v), atol=0.02)


# --- camera poses and backends ------------------------------------------------------------------------------------


def test_identity_camera_changes_nothing_and_a_camera_turn_equals_a_light_turn() -> None:
    hdri = torch.rand(16, 32, 3, generator=torch.Generator().manual_seed(3)) * 10
    environment = envmap.EnvironmentMap.from_latlong(hdri, resolution=8)
    default = environment.conditions(6, 10, 3, rotate_light=True)
    identity = environment.conditions(6, 10, 3, rotate_light=True, camera_to_world=torch.eye(3).expand(3, 3, 3))
    assert all(torch.equal(default[k], identity[k]) for k in default)
    angles = envmap.light_rotation_angles(5, rotate=True)
    camera = torch.stack([envmap.rotation_y(a) for a in angles])
    turned_camera = environment.conditions(6, 10, 5, camera_to_world=camera)
    turned_light = environment.conditions(6, 10, 5, rotate_light=True)
    assert all(torch.equal(turned_camera[k], turned_light[k]) for k in default)
    # R_y(a)·R_y(b) = R_y(a + b): a camera turn adds to the light's
    combined = envmap.frame_rotations(angles, torch.stack([envmap.rotation_y(0.4)] * 5))
    assert torch.allclose(combined, envmap.frame_rotations(angles + 0.4), atol=1e-6)
    with pytest.raises(ValueError, match="camera_to_world"):
        envmap.frame_rotations(angles, torch.eye(3)[None])


def test_backend_choice() -> None:
    cube = _numbered_cube(2)
    assert envmap.EnvironmentMap(cube).backend == "torch"  # auto on CPU
    with pytest.raises(UserError, match="nvdiffrast"):
        envmap.EnvironmentMap(cube, backend="nvdiffrast")
    with pytest.raises(ValueError, match="backend"):
        envmap.EnvironmentMap(cube, backend="opengl")

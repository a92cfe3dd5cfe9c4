"""The environment-map chain: the original's fixtures (made with nvdiffrast on a GPU), closed forms, file handling."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import OpenEXR
import pytest
import torch

from cosmos_predict1.diffusion import cubemap, envmap
from cosmos_predict1.errors import UserError

from conftest import fixture_cases, load_pt, max_relative_error


@pytest.mark.fixtures
@pytest.mark.parametrize("case", fixture_cases("envmap"))
def test_chain_reproduces_fixture(case: Path) -> None:
    inputs, ref = load_pt(case / "inputs.pt"), load_pt(case / "outputs.pt")
    options = inputs["options"]
    height, width = options["resolution"]
    frames = options["num_frames"]
    image = envmap.read_hdr(case / inputs["hdr_file"])
    assert torch.equal(torch.nan_to_num(image, nan=-1.0), torch.nan_to_num(ref["hdr_loaded"], nan=-1.0))
    latlong = envmap.prepare_latlong(
        image, strength=options["env_strength"], flip=options["env_flip"], rotation_deg=options["env_rot"]
    )
    assert torch.equal(latlong, ref["latlong_prepared"])
    cube = cubemap.latlong_to_cubemap(latlong, 512)
    index = ref["cubemap_index"]
    errors = {"cubemap_faces": max_relative_error(cube[:, index][:, :, index], ref["cubemap_faces"])}
    directions = envmap.latlong_directions(height, width)
    angles = envmap.light_rotation_angles(frames, options["rotate_envlight"])
    assert np.allclose(angles, inputs["rot_angles"])
    rotations = torch.stack([envmap.rotation_y(a) for a in angles])
    assert torch.equal(rotations, ref["y_rot"][:, :3, :3])
    queries = envmap.query_directions(directions, angles)
    errors["latlong_vec"] = max_relative_error(directions, ref["latlong_vec"])
    errors["cube_query_dirs"] = max_relative_error(queries, ref["cube_query_dirs"])
    environment = envmap.EnvironmentMap(cube)
    errors["env_hdr"] = max_relative_error(torch.flip(environment.radiance(queries), dims=[1, 2]), ref["env_hdr"])
    conditions = environment.conditions(height, width, frames, rotate_light=options["rotate_envlight"])
    for key, name in (("env_ldr", "env_ldr_m11"), ("env_log", "env_log_m11"), ("env_nrm", "env_nrm")):
        errors[key] = max_relative_error(conditions[key], ref[name])
    ldr, logarithmic = envmap.tone_map(ref["env_hdr"])
    errors["tone_map_ldr"] = max_relative_error(ldr, ref["env_ldr"])
    errors["tone_map_log"] = max_relative_error(logarithmic, ref["env_log"])
    assert max(errors.values()) <= 1e-4, errors


def write_exr(path: Path, image: np.ndarray) -> None:
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {"RGB": np.ascontiguousarray(image, dtype=np.float32)}).write(str(path))


def test_exr_with_nan_inf_and_negative_values_is_cleaned(tmp_path: Path, caplog) -> None:
    image = np.full((16, 32, 3), 0.5, dtype=np.float32)
    image[2, 3] = [np.nan, 1, 1]
    image[4, 5] = [np.inf, 1, 1]
    image[6, 7] = [-3, 1, 1]
    write_exr(tmp_path / "sky.exr", image)
    loaded = envmap.read_hdr(tmp_path / "sky.exr")
    assert torch.isnan(loaded[2, 3, 0]) and torch.isinf(loaded[4, 5, 0]) and loaded[6, 7, 0] == -3
    with caplog.at_level(logging.WARNING):
        environment = envmap.EnvironmentMap.from_file(tmp_path / "sky.exr", resolution=8)
    assert "1 NaN, 1 infinite, 1 negative" in caplog.text and "sky.exr" in caplog.text
    conditions = environment.conditions(8, 16, 1)
    assert all(torch.isfinite(c).all() for c in conditions.values())
    prepared = envmap.prepare_latlong(loaded, flip=False, rotation_deg=0)
    assert prepared[2, 3, 0] == 0 and prepared[4, 5, 0] == 65504 and prepared[6, 7, 0] == 0


@pytest.mark.parametrize("name, content", [("a.hdr", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 8 +X"), ("b.exr", b"v/1\x01garbage"), ("c.png", b"")])
def test_unreadable_or_wrong_files_give_user_errors(tmp_path: Path, name: str, content: bytes) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UserError, match=name):
        envmap.read_hdr(tmp_path / name)


def test_truncated_exr_gives_a_user_error(tmp_path: Path) -> None:
    write_exr(tmp_path / "full.exr", np.ones((32, 64, 3), np.float32))
    (tmp_path / "cut.exr").write_bytes((tmp_path / "full.exr").read_bytes()[:200])
    with pytest.raises(UserError, match="cut.exr"):
        envmap.EnvironmentMap.from_file(tmp_path / "cut.exr")


def test_constant_hdri_gives_constant_conditions() -> None:
    environment = envmap.EnvironmentMap(cubemap.latlong_to_cubemap(torch.full((16, 32, 3), 3.0), 8))
    conditions = environment.conditions(8, 12, 2, rotate_light=True)
    reinhard = 3.0 * (1 + 3.0 / 256) / 4.0
    srgb = lambda x: 1.055 * x ** (1 / 2.4) - 0.055  # noqa: E731
    assert torch.allclose(conditions["env_ldr"], torch.tensor(2 * srgb(reinhard) - 1), atol=1e-6)
    assert torch.allclose(conditions["env_log"], torch.tensor(2 * srgb(math.log1p(3.0) / math.log1p(10000)) - 1), atol=1e-6)
    assert torch.allclose(conditions["env_nrm"].norm(dim=1), torch.ones(1), atol=1e-6)


def _bright_spot(u: float, v: float, height: int = 64, width: int = 128) -> torch.Tensor:
    """An HDRI (as stored on disk) with a small bright block at texture coordinates (u, v)."""
    image = torch.full((height, width, 3), 0.1)
    row, col = int(v * height), int(u * width)
    image[row - 2 : row + 2, col - 2 : col + 2] = 100.0
    return image


def test_bright_texel_lands_where_predicted_also_after_a_quarter_turn() -> None:
    """Frame k shows the HDRI at u = (j + 0.5)/W + a_k/2π, v ≈ (i + 0.5)/H (spec: content scrolls to smaller j)."""
    height, width = 32, 64
    latlong = envmap.prepare_latlong(_bright_spot(u=0.6, v=0.4))
    environment = envmap.EnvironmentMap(cubemap.latlong_to_cubemap(latlong, 64))
    ldr = environment.conditions(height, width, 5, rotate_light=True)["env_ldr"][0, 0]  # frames a = 0, π/2, ...
    for frame, expected_u in ((0, 0.6), (1, 0.6 - 0.25)):
        row, col = divmod(int(ldr[frame].argmax()), width)
        assert abs((col + 0.5) / width - expected_u) <= 2 / width, (frame, col)
        assert abs((row + 0.5) / height - 0.4) <= 2 / height, (frame, row)


def _faces(resolution: int, values: torch.Tensor | None = None) -> torch.Tensor:
    if values is not None:
        return values
    return torch.arange(6, dtype=torch.float32)[:, None, None, None].expand(6, resolution, resolution, 1).clone()


def test_edge_and_corner_lookups_blend_neighbouring_faces() -> None:
    padded = cubemap.pad_cubemap(_faces(4))
    # On the +X/+Z edge: half +X (0), half +Z (4).
    assert cubemap.sample_cubemap(padded, torch.tensor([1.0, 0.0, 1.0])).item() == pytest.approx(2.0)
    # At the +X/+Y/+Z corner the footprint holds +X, +Y, +Z texels and the corner (their mean).
    assert cubemap.sample_cubemap(padded, torch.tensor([1.0, 1.0, 1.0])).item() == pytest.approx(2.0, abs=1e-6)
    # Face centres are exact; a zero direction samples zeros.
    for face, direction in enumerate(([1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1])):
        assert cubemap.sample_cubemap(padded, torch.tensor(direction, dtype=torch.float32)).item() == face
    assert cubemap.sample_cubemap(padded, torch.zeros(3)).item() == 0.0


def _reference_lookup(cube: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """A scalar transcription of nvdiffrast's cube lookup: each footprint texel resolved on its own."""
    resolution = cube.shape[1]
    face, s, t = (x.item() for x in cubemap.select_face(direction))
    s, t = min(max(s, 0.0), 1.0), min(max(t, 0.0), 1.0)
    x, y = s * resolution - 0.5, t * resolution - 0.5
    x0, y0 = math.floor(x), math.floor(y)
    fx, fy = x - x0, y - y0

    def inside(r: int, c: int) -> bool:
        return 0 <= r < resolution and 0 <= c < resolution

    def texel(r: int, c: int) -> torch.Tensor:
        if inside(r, c):
            return cube[face, r, c]
        gx = torch.tensor(-1 + (2 * c + 1) / resolution)
        gy = torch.tensor(-1 + (2 * r + 1) / resolution)
        other, s2, t2 = cubemap.select_face(cubemap.face_directions(face, gx, gy))
        row = min(max(math.floor(t2.item() * resolution), 0), resolution - 1)
        col = min(max(math.floor(s2.item() * resolution), 0), resolution - 1)
        return cube[other.item(), row, col]

    corners = [(y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)]
    values = {}
    for r, c in corners:
        if not inside(r, c) and not (0 <= r < resolution) and not (0 <= c < resolution):
            continue  # a cube corner: filled below
        values[(r, c)] = texel(r, c)
    for r, c in corners:
        if (r, c) not in values:
            values[(r, c)] = sum(values.values()) * 0.33333333
    top = values[corners[0]] + fx * (values[corners[1]] - values[corners[0]])
    bottom = values[corners[2]] + fx * (values[corners[3]] - values[corners[2]])
    return top + fy * (bottom - top)


def test_cube_lookup_matches_scalar_transcription_of_the_seam_rules() -> None:
    generator = torch.Generator().manual_seed(0)
    cube = torch.rand(6, 4, 4, 2, generator=generator)
    padded = cubemap.pad_cubemap(cube)
    directions = torch.randn(300, 3, generator=generator)
    directions[:100] = torch.sign(directions[:100]) * (0.9 + 0.1 * torch.rand(100, 3, generator=generator))  # near corners
    fast = cubemap.sample_cubemap(padded, directions)
    slow = torch.stack([_reference_lookup(cube, d) for d in directions])
    assert torch.allclose(fast, slow, atol=1e-6)


def test_camera_rotation_equals_light_rotation_and_identity_changes_nothing() -> None:
    directions = envmap.latlong_directions(6, 10)
    angle = 0.7
    rotated_light = envmap.query_directions(directions, np.array([angle]))
    rotated_camera = envmap.query_directions(directions, np.zeros(1), envmap.rotation_y(angle)[None])
    assert torch.allclose(rotated_light, rotated_camera, atol=1e-6)
    environment = envmap.EnvironmentMap(cubemap.latlong_to_cubemap(torch.rand(16, 32, 3) * 10, 8))
    default = environment.conditions(6, 10, 3, rotate_light=True)
    identity = environment.conditions(6, 10, 3, rotate_light=True, camera_to_world=torch.eye(3).expand(3, 3, 3))
    assert all(torch.equal(default[k], identity[k]) for k in default)

"""Bilinear texture lookups of the environment chain, in pure PyTorch (any device, float32).

They reproduce nvdiffrast's ``texture(..., filter_mode="linear")``, which the original uses on CUDA only:
- ``sample_latlong``: a 2D texture with wrap-around at all four borders (vertically too, as nvdiffrast's default
  boundary mode does; rows near a pole blend with the opposite pole);
- ``sample_cubemap``: ``boundary_mode="cube"``: the face is picked by the largest direction component and
  bilinear footprints that leave a face read the neighbouring face's texels; at the four corners of a face the
  missing texel is the mean of the three others. Implemented by padding every face with a one-texel border taken
  from its neighbours, then sampling each face as an ordinary texture.

Cube faces are ordered +X, −X, +Y, −Y, +Z, −Z; a face is ``[R, R, C]`` indexed [row, column].
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

LatlongSampler = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return a + t * (b - a)


def sample_latlong(texture: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``texture`` ``[H, W, C]`` at texture coordinates u (along columns), v (along rows), any range → ``[..., C]``."""
    height, width = texture.shape[:2]
    x = (u - torch.floor(u)) * width - 0.5
    y = (v - torch.floor(v)) * height - 0.5
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = x0.long() % width, y0.long() % height
    x1, y1 = (x0 + 1) % width, (y0 + 1) % height
    top = _lerp(texture[y0, x0], texture[y0, x1], fx)
    bottom = _lerp(texture[y1, x0], texture[y1, x1], fx)
    return _lerp(top, bottom, fy)


def face_directions(face: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unnormalised direction of face position (x along columns, y along rows, both in [−1, 1]) → ``[..., 3]``."""
    one = torch.ones_like(x)
    components = {
        0: (one, -y, -x),
        1: (-one, -y, x),
        2: (x, one, y),
        3: (x, -one, -y),
        4: (x, -y, one),
        5: (-x, -y, -one),
    }[face]
    return torch.stack(components, dim=-1)


def texel_centres(resolution: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """x or y of the texel centres of a face: −1 + (2i + 1)/R."""
    return torch.linspace(-1.0 + 1.0 / resolution, 1.0 - 1.0 / resolution, resolution, device=device)


def latlong_to_cubemap(
    latlong: torch.Tensor, resolution: int = 512, sample: LatlongSampler | None = None
) -> torch.Tensor:
    """Resample an equirectangular image ``[h, w, C]`` into a cube map ``[6, R, R, C]``.

    A texel of direction v reads the lat-long image at u = atan2(v_x, −v_z)/2π + 0.5, v = arccos(v_y)/π, with
    ``sample(texture, u, v)`` (default ``sample_latlong``).
    """
    sample = sample or sample_latlong
    centres = texel_centres(resolution, latlong.device)
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    faces = []
    for face in range(6):
        d = face_directions(face, x, y)
        d = d / torch.sqrt(torch.clamp((d * d).sum(-1, keepdim=True), min=1e-20))
        u = torch.atan2(d[..., 0], -d[..., 2]) / (2 * math.pi) + 0.5
        v = torch.acos(torch.clamp(d[..., 1], -1, 1)) / math.pi
        faces.append(sample(latlong, u, v))
    return torch.stack(faces)


def select_face(direction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """nvdiffrast's face choice and face coordinates: (face ``[...]`` long, s along columns, t along rows).

    s and t are in [0, 1] on the face (not clamped here); non-finite for a zero direction.
    """
    dx, dy, dz = direction.unbind(-1)
    ax, ay, az = dx.abs(), dy.abs(), dz.abs()
    is_z = az > torch.maximum(ax, ay)
    is_y = ~is_z & (ay > ax)
    is_x = ~is_z & ~is_y
    major = torch.where(is_z, dz, torch.where(is_y, dy, dx))
    negative = major < 0
    face = torch.where(is_z, 4, torch.where(is_y, 2, 0)) + negative.long()
    half = 0.5 / major.abs()
    # (s, t) numerators per face: +X (−z, −y), −X (z, −y), +Y (x, z), −Y (x, −z), +Z (x, −y), −Z (−x, −y)
    s_num = torch.where(is_x, torch.where(negative, dz, -dz), torch.where(is_z & negative, -dx, dx))
    t_num = torch.where(is_y, torch.where(negative, -dz, dz), -dy)
    return face, 0.5 + s_num * half, 0.5 + t_num * half


def pad_cubemap(cube: torch.Tensor) -> torch.Tensor:
    """``[6, R, R, C]`` → ``[6, R + 2, R + 2, C]`` with each face's one-texel border read from its neighbours.

    A border texel takes the texel that its centre, continued on the plane of its own face, falls into on the
    face it selects; a border corner is the mean of the three texels next to it in a bilinear footprint.
    """
    resolution = cube.shape[1]
    padded = torch.nn.functional.pad(cube, (0, 0, 1, 1, 1, 1))
    padded[:, 1:-1, 1:-1] = cube
    index = torch.arange(-1, resolution + 1, device=cube.device)
    rows, cols = torch.meshgrid(index, index, indexing="ij")
    outside = (rows < 0) | (rows >= resolution) | (cols < 0) | (cols >= resolution)
    edge = outside & ~(((rows < 0) | (rows >= resolution)) & ((cols < 0) | (cols >= resolution)))
    r, c = rows[edge], cols[edge]
    x = -1 + (2 * c.float() + 1) / resolution
    y = -1 + (2 * r.float() + 1) / resolution
    for face in range(6):
        target, s, t = select_face(face_directions(face, x, y))
        row = torch.clamp(torch.floor(t * resolution).long(), 0, resolution - 1)
        col = torch.clamp(torch.floor(s * resolution).long(), 0, resolution - 1)
        padded[face, r + 1, c + 1] = cube[target, row, col]
    last = resolution + 1
    for corner_row, corner_col, step_row, step_col in (
        (0, 0, 1, 1),
        (0, last, 1, -1),
        (last, 0, -1, 1),
        (last, last, -1, -1),
    ):
        neighbours = (
            padded[:, corner_row, corner_col + step_col]
            + padded[:, corner_row + step_row, corner_col]
            + padded[:, corner_row + step_row, corner_col + step_col]
        )
        padded[:, corner_row, corner_col] = neighbours * 0.33333333
    return padded


def sample_cubemap(padded: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Bilinear cube-map lookup of directions ``[..., 3]`` (need not be unit) in a ``pad_cubemap`` result.

    Returns ``[..., C]``; a zero or non-finite direction gives zeros.
    """
    resolution = padded.shape[1] - 2
    face, s, t = select_face(direction)
    valid = torch.isfinite(s) & torch.isfinite(t)
    s = torch.where(valid, s, 0.5).clamp(0, 1)
    t = torch.where(valid, t, 0.5).clamp(0, 1)
    x, y = s * resolution - 0.5, t * resolution - 0.5
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    col, row = x0.long() + 1, y0.long() + 1
    top = _lerp(padded[face, row, col], padded[face, row, col + 1], fx)
    bottom = _lerp(padded[face, row + 1, col], padded[face, row + 1, col + 1], fx)
    return torch.where(valid[..., None], _lerp(top, bottom, fy), 0.0)

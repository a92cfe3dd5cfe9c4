"""The forward renderer's lighting condition: an HDR environment map → env_ldr, env_log, env_nrm.

The chain, as the original computes it:
1. read the equirectangular HDRI (``.hdr`` or ``.exr``), scale by the strength, replace NaN by 0, +Inf by 65504
   and −Inf by 0, clamp to [0, 65504], mirror it horizontally and roll it by int(w·rotation/360) columns;
2. resample it into a 512² cube map;
3. per output pixel (i, j) take the lat-long direction d with θ = π·linspace(1/H, 1 − 1/H, H)[i] (not pixel
   centres) and φ = π·linspace(−1 + 1/W, 1 − 1/W, W)[j]: d = (sinθ sinφ, cosθ, −sinθ cosφ); rotate it by the
   camera pose and by the frame's light rotation about +Y; look the cube map up at −d; flip the image on both axes;
4. tone-map: env_ldr = sRGB(clamp(Reinhard₁₆(L), 0, 1)), env_log = clamp(sRGB(log1p(L)/log1p(10000)), 0, 1),
   both mapped to [−1, 1]; env_nrm is the (unrotated) direction map −d flipped, a unit vector per pixel.

The cube-map lookups are pure PyTorch (``cubemap.py``) and run on any device; with ``backend="nvdiffrast"`` on a
GPU where nvdiffrast is installed, its texture op is used instead.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from cosmos_predict1.errors import UserError

from . import cubemap as cube_ops
from .frames import read_pixels

log = logging.getLogger(__name__)

HALF_MAX = 65504.0
LOG_SCALE = 10000.0
REINHARD_MAX_POINT = 16.0
CUBE_RESOLUTION = 512
HDR_SUFFIXES = (".hdr", ".exr")


def read_hdr(path: Path) -> torch.Tensor:
    """An HDR image as float32 ``[h, w, 3]`` linear RGB, values as stored (NaN/Inf kept; alpha dropped)."""
    path = Path(path)
    if path.suffix.lower() not in HDR_SUFFIXES:
        raise UserError(f"{path}: environment maps must be .hdr (Radiance) or .exr (OpenEXR) files.")
    pixels = read_pixels(path)
    if pixels.dtype.kind != "f":
        raise UserError(f"{path}: not a floating-point HDR image ({pixels.dtype}); save it as .hdr or .exr.")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 2, 3, 4):
        raise UserError(f"{path}: unsupported image layout {list(pixels.shape)}.")
    if pixels.shape[-1] < 3:
        pixels = np.repeat(pixels[..., :1], 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(pixels[..., :3], dtype=np.float32))


def prepare_latlong(image: torch.Tensor, *, strength: float = 1.0, flip: bool = True, rotation_deg: float = 180.0) -> torch.Tensor:
    """Scale, clean (NaN → 0, ±Inf → 65504/0, clamp to [0, 65504]), mirror and roll an HDRI ``[h, w, 3]``."""
    image = torch.nan_to_num(image * strength, nan=0.0, posinf=HALF_MAX, neginf=0.0).clamp(0.0, HALF_MAX)
    if flip:
        image = torch.flip(image, dims=[1])
    if rotation_deg != 0:
        image = torch.roll(image, shifts=int(image.shape[1] * rotation_deg / 360), dims=1)
    return image


def latlong_directions(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """d(i, j) = (sinθ sinφ, cosθ, −sinθ cosφ) on the original's grid, float32 ``[H, W, 3]``."""
    rows = torch.linspace(1.0 / height, 1.0 - 1.0 / height, height, device=device)
    cols = torch.linspace(-1.0 + 1.0 / width, 1.0 - 1.0 / width, width, device=device)
    gy, gx = torch.meshgrid(rows, cols, indexing="ij")
    sin_theta, cos_theta = torch.sin(gy * math.pi), torch.cos(gy * math.pi)
    sin_phi, cos_phi = torch.sin(gx * math.pi), torch.cos(gx * math.pi)
    return torch.stack((sin_theta * sin_phi, cos_theta, -sin_theta * cos_phi), dim=-1)


def light_rotation_angles(num_frames: int, rotate: bool) -> np.ndarray:
    """Per-frame angle about +Y: linspace(0, 2π, T) (both ends included) when rotating, else zeros."""
    return np.linspace(0, 2 * np.pi, num_frames) if rotate else np.zeros(num_frames)


def rotation_y(angle: float) -> torch.Tensor:
    """[[c, 0, s], [0, 1, 0], [−s, 0, c]] in float32 from float64 sin/cos."""
    s, c = np.sin(angle), np.cos(angle)
    return torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float32)


def query_directions(
    directions: torch.Tensor, angles: np.ndarray, camera_to_world: torch.Tensor | None = None
) -> torch.Tensor:
    """Cube-map lookup directions ``[T, H, W, 3]``: −(R_y(a_t) · R_c2w,t · d) for every pixel direction d.

    ``camera_to_world``: ``[T, 3, 3]`` camera rotations (None = identity, the renderers' fixed camera).
    """
    height, width, _ = directions.shape
    flat = directions.reshape(-1, 3)
    queries = []
    for frame, angle in enumerate(angles):
        camera = flat if camera_to_world is None else flat @ camera_to_world[frame].to(flat).T
        queries.append(-(camera @ rotation_y(angle).to(flat.device).T))
    return torch.stack(queries).reshape(len(angles), height, width, 3)


def load_camera_rotations(path: Path, num_frames: int) -> torch.Tensor:
    """Camera-to-world rotations ``[T, 3, 3]`` of the first ``num_frames`` frames of a NeRF-style pose file.

    The file is JSON with ``frames[i].transform_matrix`` (4×4 camera-to-world). Rotations are taken relative to the
    first frame (R₀ᵀ·Rᵢ), so frame 0 sees the environment exactly as without poses and the environment then stays
    fixed in the world while the camera turns.
    """
    path = Path(path)
    try:
        frames = json.loads(path.read_text())["frames"]
        matrices = torch.tensor([frame["transform_matrix"] for frame in frames[:num_frames]], dtype=torch.float64)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"{path}: not a readable pose file ({type(err).__name__}: {err}); expected JSON "
            '{"frames": [{"transform_matrix": 4×4 camera-to-world}, ...]}.'
        ) from err
    if matrices.ndim != 3 or matrices.shape[1:] not in ((4, 4), (3, 4)) or len(matrices) < num_frames:
        raise UserError(f"{path}: need {num_frames} frames of 4×4 transform_matrix, found {list(matrices.shape)}.")
    rotations = matrices[:, :3, :3]
    return (rotations[0].T @ rotations).float()


def srgb(x: torch.Tensor) -> torch.Tensor:
    """12.92·x below 0.0031308, else 1.055·x^(1/2.4) − 0.055."""
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


def reinhard(x: torch.Tensor, max_point: float = REINHARD_MAX_POINT) -> torch.Tensor:
    """x·(1 + x/max²)/(1 + x): 1 at x = max_point."""
    return x * (1 + x / max_point**2) / (1 + x)


def tone_map(radiance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ldr, log) in [0, 1] from linear radiance ≥ 0."""
    ldr = srgb(reinhard(radiance).clamp(0, 1))
    logarithmic = srgb(torch.log1p(radiance) / np.log1p(LOG_SCALE)).clamp(0, 1)
    return ldr, logarithmic


def _nvdiffrast():
    try:
        import nvdiffrast.torch as dr
    except ImportError:
        return None
    return dr


class EnvironmentMap:
    """A prepared HDRI as a cube map, ready to produce the lighting conditions of any clip size."""

    def __init__(self, cube: torch.Tensor, name: str = "", backend: str = "torch") -> None:
        """``cube``: ``[6, R, R, 3]`` float32 radiance; ``backend``: "torch" or "nvdiffrast" (CUDA only)."""
        if backend not in ("torch", "nvdiffrast"):
            raise ValueError(f"unknown backend {backend!r}")
        if backend == "nvdiffrast" and (cube.device.type != "cuda" or _nvdiffrast() is None):
            raise UserError("the nvdiffrast backend needs nvdiffrast installed and a CUDA device")
        self.cube, self.name, self.backend = cube, name, backend
        self._padded = cube_ops.pad_cubemap(cube) if backend == "torch" else None

    @classmethod
    def from_file(
        cls,
        path: Path,
        *,
        strength: float = 1.0,
        flip: bool = True,
        rotation_deg: float = 180.0,
        resolution: int = CUBE_RESOLUTION,
        device: torch.device | str = "cpu",
        backend: str = "auto",
    ) -> "EnvironmentMap":
        """Read, clean and project an HDRI file. ``backend="auto"``: nvdiffrast on CUDA if installed, else torch."""
        path = Path(path)
        image = read_hdr(path)
        bad = {"NaN": torch.isnan(image), "infinite": torch.isinf(image), "negative": image < 0}
        counts = {label: int(mask.any(-1).sum()) for label, mask in bad.items()}
        if any(counts.values()):
            found = ", ".join(f"{n} {label}" for label, n in counts.items() if n)
            log.warning("%s: %s texel(s) replaced (NaN → 0, +Inf → 65504, negative → 0)", path, found)
        latlong = prepare_latlong(image.to(device), strength=strength, flip=flip, rotation_deg=rotation_deg)
        if backend == "auto":
            backend = "nvdiffrast" if torch.device(device).type == "cuda" and _nvdiffrast() else "torch"
        sample = None
        if backend == "nvdiffrast":
            dr = _nvdiffrast()

            def sample(texture: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
                uv = torch.stack([u, v], dim=-1)[None].contiguous()
                return dr.texture(texture[None].contiguous(), uv, filter_mode="linear")[0]

        return cls(cube_ops.latlong_to_cubemap(latlong, resolution, sample), path.name, backend)

    def radiance(self, queries: torch.Tensor) -> torch.Tensor:
        """Linear radiance ``[..., 3]`` seen along lookup directions ``[..., 3]``."""
        if self.backend == "nvdiffrast":
            dr = _nvdiffrast()
            flat = queries.reshape(1, -1, 1, 3).contiguous()
            out = dr.texture(self.cube[None].contiguous(), flat, filter_mode="linear", boundary_mode="cube")
            return out.reshape(*queries.shape[:-1], 3)
        return cube_ops.sample_cubemap(self._padded, queries)

    def conditions(
        self,
        height: int,
        width: int,
        num_frames: int,
        *,
        rotate_light: bool = False,
        camera_to_world: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The network's lighting inputs, each float32 ``[1, 3, T, H, W]`` on the cube map's device.

        env_ldr, env_log: tone-mapped radiance in [−1, 1]; env_nrm: the per-pixel direction, in [−1, 1].
        ``rotate_light`` turns the environment once around +Y over the clip; ``camera_to_world`` ``[T, 3, 3]``
        keeps it fixed in the world while the camera turns (identity = the original's fixed camera).
        """
        directions = latlong_directions(height, width, self.cube.device)
        queries = query_directions(directions, light_rotation_angles(num_frames, rotate_light), camera_to_world)
        radiance = torch.flip(self.radiance(queries), dims=[1, 2])
        ldr, logarithmic = tone_map(radiance)
        normals = -torch.flip(directions, dims=[0, 1])
        return {
            "env_ldr": ldr.permute(3, 0, 1, 2)[None] * 2 - 1,
            "env_log": logarithmic.permute(3, 0, 1, 2)[None] * 2 - 1,
            "env_nrm": normals.permute(2, 0, 1)[None, :, None].expand(1, 3, num_frames, height, width),
        }

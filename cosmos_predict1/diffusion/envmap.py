"""The forward renderer's lighting condition: an HDR environment map → env_ldr, env_log, env_nrm.

The chain, as the original computes it:
1. read the equirectangular HDRI (``.hdr`` or ``.exr``), scale by the strength, replace NaN by 0, +Inf by 65504
   and −Inf by 0, clamp to [0, 65504], mirror it horizontally and roll it by int(w·rotation/360) columns;
2. resample it into a 512² cube map;
3. per output pixel (i, j) take the lat-long direction d with θ = π·linspace(1/H, 1 − 1/H, H)[i] (not pixel
   centres) and φ = π·linspace(−1 + 1/W, 1 − 1/W, W)[j]: d = (sinθ sinφ, cosθ, −sinθ cosφ); rotate it by the
   camera pose, then by the frame's light rotation about +Y; look the cube map up at −d; flip the image on both
   axes;
4. tone-map: env_ldr = sRGB(clamp(Reinhard₁₆(L), 0, 1)), env_log = clamp(sRGB(log1p(L)/log1p(10000)), 0, 1),
   both mapped to [−1, 1]; env_nrm is the (unrotated) direction map −d flipped, a unit vector per pixel.

The net effect: with no rotation, output pixel (i, j) shows the HDRI as stored at u = (j + 0.5)/W, v = θ_i/π; a
light rotation by a shows u + a/2π there instead. The texture lookups are pure PyTorch (``cubemap.py``) on any
device; with ``backend="nvdiffrast"`` (or ``"auto"`` on CUDA where nvdiffrast is installed) its texture op is used.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cosmos_predict1.errors import UserError

from . import cubemap as cube_ops
from .frames import read_pixels
from .options import check_regular_file
from .pixel_limit import TooManyPixels

log = logging.getLogger(__name__)

HALF_MAX = 65504.0
LOG_SCALE = 10000.0
REINHARD_MAX_POINT = 16.0
CUBE_RESOLUTION = 512
HDR_SUFFIXES = (".hdr", ".exr")
BACKENDS = ("auto", "torch", "nvdiffrast")


def read_hdr(path: Path | str) -> torch.Tensor:
    """An HDR image as float32 ``[h, w, 3]`` linear RGB, values as stored (NaN/Inf kept).

    Alpha is dropped and a single channel is replicated to RGB. ``UserError`` for a missing, unreadable or
    non-float file, for one that declares more pixels than the limit (``pixel_limit``) and for any extension other
    than ``.hdr``/``.exr``.
    """
    path = Path(path)
    fix = "give an equirectangular .hdr (Radiance) or .exr (OpenEXR) file"
    if path.suffix.lower() not in HDR_SUFFIXES:
        raise UserError(f"{path}: not an HDR environment map; {fix}.")
    if not path.is_file():
        raise UserError(f"{path}: environment map not found; {fix}.")
    try:
        pixels = read_pixels(path)
    except TooManyPixels:
        raise
    except UserError as err:
        reason = " ".join(str(err.__cause__ or err).split())
        raise UserError(f"{path}: cannot read the environment map ({reason}); {fix}.") from err
    if pixels.dtype.kind != "f":
        raise UserError(f"{path}: integer pixels ({pixels.dtype}), not HDR radiance; {fix} with float pixels.")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[-1] > 4:
        raise UserError(f"{path}: unsupported image layout {list(pixels.shape)}; {fix} with RGB or Y channels.")
    if pixels.shape[-1] < 3:
        pixels = np.repeat(pixels[..., :1], 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(pixels[..., :3], dtype=np.float32))


def warn_invalid_texels(image: torch.Tensor, source: str) -> None:
    """Log how many texels of ``image`` ``[h, w, C]`` are NaN, infinite or negative (the cleanup replaces them)."""
    masks = {"NaN": torch.isnan(image), "infinite": torch.isinf(image), "negative": image < 0}
    counts = {label: int(mask.any(-1).sum()) for label, mask in masks.items()}
    if any(counts.values()):
        found = ", ".join(f"{count} {label}" for label, count in counts.items() if count)
        log.warning("%s: %s texel(s) replaced (NaN → 0, +Inf → 65504, negative → 0)", source, found)


def prepare_latlong(
    image: torch.Tensor, *, strength: float = 1.0, flip: bool = True, rotation_deg: float = 180.0
) -> torch.Tensor:
    """Scale, clean, mirror and roll an HDRI ``[h, w, C]`` as the original does → float32 in [0, 65504].

    ×strength; NaN → 0, +Inf → 65504, −Inf → 0, clamp; reverse the columns if ``flip``; roll by
    int(w·rotation_deg/360) columns towards larger column indices.
    """
    image = torch.nan_to_num(image * strength, nan=0.0, posinf=HALF_MAX, neginf=0.0).clamp(0.0, HALF_MAX)
    if flip:
        image = torch.flip(image, dims=[1])
    return torch.roll(image, shifts=int(image.shape[1] * rotation_deg / 360), dims=1)


def latlong_directions(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """d(i, j) = (sinθ sinφ, cosθ, −sinθ cosφ) on the original's grid: unit vectors, float32 ``[H, W, 3]``."""
    rows = torch.linspace(1.0 / height, 1.0 - 1.0 / height, height, device=device)
    cols = torch.linspace(-1.0 + 1.0 / width, 1.0 - 1.0 / width, width, device=device)
    theta, phi = torch.meshgrid(rows * math.pi, cols * math.pi, indexing="ij")
    return torch.stack((theta.sin() * phi.sin(), theta.cos(), -theta.sin() * phi.cos()), dim=-1)


def environment_directions(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The env_nrm map n(i, j) = (sinθ sinφ, cosθ, sinθ cosφ) = −d flipped on both axes, float32 ``[H, W, 3]``."""
    return -torch.flip(latlong_directions(height, width, device), dims=[0, 1])


def light_rotation_angles(num_frames: int, rotate: bool) -> np.ndarray:
    """Per-frame angle (radians) about +Y: linspace(0, 2π, T) (both ends included) when rotating, else zeros."""
    return np.linspace(0, 2 * np.pi, num_frames) if rotate else np.zeros(num_frames)


def rotation_y(angle: float) -> torch.Tensor:
    """[[c, 0, s], [0, 1, 0], [−s, 0, c]] in float32 from float64 sin/cos: ``[3, 3]``."""
    s, c = np.sin(angle), np.cos(angle)
    return torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float32)


def frame_rotations(angles: np.ndarray, camera_to_world: torch.Tensor | None = None) -> torch.Tensor:
    """Per-frame rotation of the lookup direction, R_y(a_t)·R_c2w,t: float32 ``[T, 3, 3]``.

    ``camera_to_world``: ``[T, 3, 3]`` camera rotations; None is the original's fixed identity camera (and gives
    bit-for-bit the same result as identity matrices).
    """
    rotations = torch.stack([rotation_y(angle) for angle in angles])
    if camera_to_world is None:
        return rotations
    if camera_to_world.shape != rotations.shape:
        raise ValueError(f"camera_to_world must be [{len(angles)}, 3, 3], got {list(camera_to_world.shape)}")
    return rotations @ camera_to_world.to(rotations)


def query_directions(directions: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Cube-map lookup directions −(R·d): directions ``[H, W, 3]``, rotations ``[..., 3, 3]`` → ``[..., H, W, 3]``."""
    height, width, _ = directions.shape
    rotated = directions.reshape(-1, 3) @ rotation.to(directions).transpose(-1, -2)
    return -rotated.reshape(*rotation.shape[:-2], height, width, 3)


def load_camera_rotations(path: Path, num_frames: int) -> torch.Tensor:
    """Camera-to-world rotations ``[T, 3, 3]`` of the first ``num_frames`` frames of a NeRF-style pose file.

    The file is JSON with ``frames[i].transform_matrix`` (4×4 camera-to-world; 3×4 is taken too). Rotations are taken
    relative to the first frame (R₀ᵀ·Rᵢ), so frame 0 sees the environment exactly as without poses and the
    environment then stays fixed in the world while the camera turns.

    ``UserError`` naming the file (and the frame) for anything else: not a regular file, larger than
    ``MAX_POSE_FILE_BYTES``, not JSON (also nesting too deep to parse), too few frames, a matrix of another shape,
    values that are not finite numbers, a 3×3 part that is not a rotation (orthonormal within ``POSE_TOLERANCE``).
    """
    path = Path(path)
    check_regular_file(path, "a JSON pose file to --camera_poses")
    try:
        if path.stat().st_size > MAX_POSE_FILE_BYTES:
            raise UserError(f"{path}: a pose file larger than {MAX_POSE_FILE_BYTES // 2**20} MiB; {POSE_FILE_FORMAT}.")
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        reason = "nested too deeply" if isinstance(err, RecursionError) else f"{type(err).__name__}: {err}"
        raise UserError(f"{path}: not a readable pose file ({reason}); {POSE_FILE_FORMAT}.") from err
    frames = document.get("frames") if isinstance(document, dict) else None
    if not isinstance(frames, list):
        raise UserError(f'{path}: no "frames" list; {POSE_FILE_FORMAT}.')
    if len(frames) < num_frames:
        raise UserError(f"{path}: need {num_frames} frames of 4×4 transform_matrix, found {len(frames)}.")
    matrices = np.stack([_pose_matrix(frame, index, path) for index, frame in enumerate(frames[:num_frames])])
    rotations = torch.from_numpy(matrices[:, :3, :3])
    return (rotations[0].T @ rotations).float()


MAX_POSE_FILE_BYTES = 64 * 2**20
POSE_TOLERANCE = 1e-3  # largest |RᵀR − I| entry of a rotation part
POSE_FILE_FORMAT = 'expected JSON {"frames": [{"transform_matrix": 4×4 camera-to-world}, ...]}'


def _pose_matrix(frame: object, index: int, path: Path) -> np.ndarray:
    """``frames[index].transform_matrix`` as float64 ``[3 or 4, 4]``, checked (see ``load_camera_rotations``)."""
    where = f"{path}: frames[{index}].transform_matrix"
    matrix = frame.get("transform_matrix") if isinstance(frame, dict) else None
    rows_ok = isinstance(matrix, list) and len(matrix) in (3, 4)
    if not rows_ok or not all(isinstance(row, list) and len(row) == 4 for row in matrix):
        raise UserError(f"{where}: not a 4×4 list of numbers; {POSE_FILE_FORMAT}.")
    values = []
    for row in matrix:
        for value in row:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"{where}: {value!r} is not a number; {POSE_FILE_FORMAT}.")
            try:
                number = float(value)
            except OverflowError:  # an integer beyond float range
                number = math.inf
            if not math.isfinite(number):
                shown = value if isinstance(value, float) else f"an integer of {len(str(abs(value)))} digits"
                raise UserError(f"{where}: {shown} is not a finite number; every value must be finite.")
            values.append(number)
    result = np.array(values, dtype=np.float64).reshape(len(matrix), 4)
    deviation = rotation_deviation(result[:3, :3])
    if not deviation <= POSE_TOLERANCE:
        raise UserError(
            f"{where}: its 3×3 part is not a rotation (orthonormal; off by {deviation:.3g}); give camera-to-world "
            "matrices without scale or shear."
        )
    return result


def rotation_deviation(rotation: np.ndarray) -> float:
    """The largest entry of |RᵀR − I| for a 3×3 ``rotation``: 0 for a rotation (or reflection), 1 for an all-zero
    matrix, NaN or Inf where a value is not finite; a rotation is within ``POSE_TOLERANCE``."""
    rotation = np.asarray(rotation, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.abs(rotation.T @ rotation - np.eye(3)).max())


def check_camera_rotations(camera_to_world: torch.Tensor, num_frames: int) -> None:
    """``UserError`` unless ``camera_to_world`` (the Python API's argument) is ``[num_frames, 3, 3]`` rotations:
    finite and orthonormal within ``POSE_TOLERANCE`` (not all-zero, singular, scaled or sheared)."""
    if tuple(camera_to_world.shape) != (num_frames, 3, 3):
        raise UserError(
            f"camera_to_world: must be [{num_frames}, 3, 3] (one rotation per frame), got "
            f"{list(camera_to_world.shape)}."
        )
    for index, rotation in enumerate(camera_to_world.detach().double().cpu().numpy()):
        if not np.isfinite(rotation).all():
            raise UserError(f"camera_to_world[{index}] holds NaN or infinite values; every value must be finite.")
        deviation = rotation_deviation(rotation)
        if not deviation <= POSE_TOLERANCE:
            raise UserError(
                f"camera_to_world[{index}] is not a rotation (orthonormal; off by {deviation:.3g}); give "
                "camera-to-world rotations without scale or shear."
            )


def srgb(x: torch.Tensor) -> torch.Tensor:
    """sRGB encoding of linear x ≥ 0: 12.92·x up to 0.0031308, else 1.055·x^(1/2.4) − 0.055 (no clamp)."""
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


def reinhard(x: torch.Tensor, max_point: float = REINHARD_MAX_POINT) -> torch.Tensor:
    """Extended Reinhard x·(1 + x/max²)/(1 + x): 1 at x = max_point, above 1 beyond it."""
    return x * (1 + x / max_point**2) / (1 + x)


def tone_map(radiance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ldr, log), both in [0, 1] and shaped like the linear radiance ≥ 0 they come from."""
    ldr = srgb(reinhard(radiance).clamp(0, 1))
    logarithmic = srgb(torch.log1p(radiance) / math.log1p(LOG_SCALE)).clamp(0, 1)
    return ldr, logarithmic


def _nvdiffrast():
    """The ``nvdiffrast.torch`` module, or None where it is not installed."""
    try:
        import nvdiffrast.torch as dr
    except ImportError:
        return None
    return dr


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """ "torch" or "nvdiffrast": "auto" picks nvdiffrast on CUDA where it is installed."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}")
    on_cuda = torch.device(device).type == "cuda"
    if backend == "auto":
        return "nvdiffrast" if on_cuda and _nvdiffrast() is not None else "torch"
    if backend == "nvdiffrast" and not (on_cuda and _nvdiffrast() is not None):
        raise UserError("the nvdiffrast backend needs nvdiffrast installed and a CUDA device; use backend='torch'.")
    return backend


def _nvdiffrast_latlong(texture: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``cube_ops.sample_latlong`` done by nvdiffrast (bilinear, wrap-around)."""
    uv = torch.stack([u, v], dim=-1)[None].contiguous()
    return _nvdiffrast().texture(texture[None].contiguous(), uv, filter_mode="linear")[0]


class EnvironmentMap:
    """A prepared HDRI as a cube map, built once and reused for the lighting conditions of any number of clips."""

    def __init__(self, cube: torch.Tensor, name: str = "", backend: str = "auto") -> None:
        """``cube``: ``[6, R, R, 3]`` float32 radiance, faces +X, −X, +Y, −Y, +Z, −Z; ``backend``: see ``BACKENDS``."""
        if cube.ndim != 4 or cube.shape[0] != 6 or cube.shape[1] != cube.shape[2]:
            raise ValueError(f"a cube map is [6, R, R, C], got {list(cube.shape)}")
        self.cube, self.name = cube, name
        self.backend = resolve_backend(backend, cube.device)
        self._padded = cube_ops.pad_cubemap(cube) if self.backend == "torch" else None

    @classmethod
    def from_latlong(
        cls,
        image: torch.Tensor,
        *,
        name: str = "environment map",
        strength: float = 1.0,
        flip: bool = True,
        rotation_deg: float = 180.0,
        resolution: int = CUBE_RESOLUTION,
        device: torch.device | str = "cpu",
        backend: str = "auto",
    ) -> EnvironmentMap:
        """Clean and project an equirectangular HDRI ``[h, w, 3]`` (linear, as stored; see ``prepare_latlong``).

        ``name`` identifies the image in the warning about NaN/infinite/negative texels.
        """
        warn_invalid_texels(image, name)
        latlong = prepare_latlong(image.to(device), strength=strength, flip=flip, rotation_deg=rotation_deg)
        backend = resolve_backend(backend, device)
        sample = _nvdiffrast_latlong if backend == "nvdiffrast" else cube_ops.sample_latlong
        return cls(cube_ops.latlong_to_cubemap(latlong, resolution, sample), name, backend)

    @classmethod
    def from_file(cls, path: Path | str, **options: Any) -> EnvironmentMap:
        """Read an ``.hdr``/``.exr`` file (``read_hdr``) and project it; ``options`` as for ``from_latlong``."""
        return cls.from_latlong(read_hdr(path), name=str(path), **options)

    def radiance(self, queries: torch.Tensor) -> torch.Tensor:
        """Linear radiance ``[..., 3]`` ≥ 0 seen along lookup directions ``[..., 3]`` (need not be unit)."""
        if self.backend == "nvdiffrast":
            flat = queries.reshape(1, -1, 1, 3).contiguous()
            out = _nvdiffrast().texture(self.cube[None].contiguous(), flat, filter_mode="linear", boundary_mode="cube")
            return out.reshape(*queries.shape[:-1], self.cube.shape[-1])
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

        env_ldr, env_log: tone-mapped radiance mapped to [−1, 1]; env_nrm: the per-pixel unit direction (values in
        [−1, 1], the same for every frame, an expanded view). ``rotate_light`` turns the environment once around +Y
        over the clip; ``camera_to_world`` ``[T, 3, 3]`` turns the lookup with the camera (None = identity, the
        original's fixed camera). Frames are computed one at a time to bound memory.
        """
        device = self.cube.device
        directions = latlong_directions(height, width, device)
        rotations = frame_rotations(light_rotation_angles(num_frames, rotate_light), camera_to_world)
        env_ldr = torch.empty(1, 3, num_frames, height, width, device=device)
        env_log = torch.empty_like(env_ldr)
        for frame, rotation in enumerate(rotations):
            radiance = torch.flip(self.radiance(query_directions(directions, rotation)), dims=[0, 1])
            ldr, logarithmic = tone_map(radiance)
            env_ldr[0, :, frame] = ldr.permute(2, 0, 1) * 2 - 1
            env_log[0, :, frame] = logarithmic.permute(2, 0, 1) * 2 - 1
        normals = environment_directions(height, width, device).permute(2, 0, 1)
        return {
            "env_ldr": env_ldr,
            "env_log": env_log,
            "env_nrm": normals[None, :, None].expand(1, 3, num_frames, height, width),
        }

"""Generate the bundled example assets procedurally: HDRIs, images with ground-truth G-buffers, and videos.

Nothing is copied from elsewhere. Every file under asset/examples/ that this script writes is computed here from
fixed parameters (no random numbers), so running it again rewrites the same bytes with the same library builds
(OpenCV for .hdr/.jpg/.png, the ffmpeg of imageio-ffmpeg for .mp4):

    hdri_examples/<name>.hdr          four equirectangular Radiance HDRIs (2:1), in --envlight_ind order
    image_examples/image_<k>.jpg      1280x704 renders of a small scene of spheres and boxes on a tiled floor
    ground_truth/image_<k>/<pass>.png the G-buffers of each image (encodings in ground_truth/README.md)
    video_examples/video<k>.mp4       1280x704 H.264 clips, 60 frames at 24 fps (rendered at 640x352 and
                                      upscaled, to keep this script fast): an orbiting camera, a turning light

Conventions: world +Y is up. An equirectangular pixel (i, j) of an H x 2H map looks along
(sin t sin p, cos t, sin t cos p) with t = pi (i + 0.5) / H and p = 2 pi (j + 0.5) / 2H - pi, so the map's
horizontal centre faces +Z and its top row +Y (the convention of the renderer's environment-map chain).

The renderer is a small vectorised ray caster: exact ray casts against the floor, spheres and boxes, hard shadows
from the HDRI's sun/lamp discs treated as directional lights, GGX specular + Lambert diffuse, image-based ambient
light from pre-convolved versions of the HDRI's sky, one traced mirror bounce for glossy surfaces, and an analytic
sphere occlusion term. Usage: python scripts/make_example_assets.py [--output_dir asset/examples]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if importlib.util.find_spec("cosmos_predict1") is None:  # run as `python scripts/...` without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import imageio_ffmpeg
import numpy as np

from cosmos_predict1.diffusion.assets import FALLBACK_HDRI_LIST

WIDTH, HEIGHT = 1280, 704
HDRI_HEIGHT = 1024
VIDEO_FPS = 24
VIDEO_FRAMES = 60
VIDEO_CRF = 28
JPEG_QUALITY = 95
PREFILTER_ROUGHNESS = (0.0, 0.15, 0.3, 0.5, 0.75, 1.0)
GLOSSY_LIMIT = 0.5  # surfaces rougher than this reflect the pre-filtered sky only, no traced bounce
EPS = 1e-3

Array = np.ndarray


# ----------------------------------------------------------------------------------------------- directions


def normalize(v: Array) -> Array:
    """``v`` scaled to unit length along the last axis."""
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def dot(a: Array, b: Array) -> Array:
    """Row-wise dot product of [N, 3] arrays, as [N, 1]."""
    return np.einsum("ij,ij->i", a, b)[:, None]


def latlong_directions(height: int) -> Array:
    """Unit directions [height, 2 height, 3] of the pixel centres of an equirectangular map."""
    theta = np.pi * (np.arange(height) + 0.5) / height
    phi = np.pi * (np.arange(2 * height) + 0.5) / height - np.pi
    t, p = np.meshgrid(theta, phi, indexing="ij")
    return np.stack([np.sin(t) * np.sin(p), np.cos(t), np.sin(t) * np.cos(p)], axis=-1)


def direction(elevation_deg: float, azimuth_deg: float) -> Array:
    """Unit vector at an elevation above the horizon and an azimuth from +Z towards +X."""
    e, a = np.radians(elevation_deg), np.radians(azimuth_deg)
    return np.array([np.cos(e) * np.sin(a), np.sin(e), np.cos(e) * np.cos(a)])


def rotate_y(v: Array, angle: float) -> Array:
    """``v`` turned by ``angle`` radians about +Y (from +Z towards +X)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * v[..., 0] + s * v[..., 2], v[..., 1], -s * v[..., 0] + c * v[..., 2]], axis=-1)


def latlong_uv(d: Array) -> tuple[Array, Array]:
    """Equirectangular texture coordinates in [0, 1] (u along columns, v down the rows) of unit directions [N, 3]."""
    return np.arctan2(d[:, 0], d[:, 2]) / (2 * np.pi) + 0.5, np.arccos(np.clip(d[:, 1], -1.0, 1.0)) / np.pi


def sample_latlong(image: Array, uv: tuple[Array, Array]) -> Array:
    """Bilinear lookup [N, 3] of an equirectangular ``image`` [h, 2h, 3] at ``uv`` (columns wrap, rows clamp)."""
    h, w = image.shape[:2]
    x, y = uv[0] * w - 0.5, uv[1] * h - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0 = x0.astype(np.int64) % w
    x1 = (x0 + 1) % w
    y1 = np.minimum(y0 + 1, h - 1).astype(np.int64) * w
    y0 = np.maximum(y0, 0).astype(np.int64) * w
    flat = image.reshape(-1, 3)
    top = flat[y0 + x0] * (1 - fx) + flat[y0 + x1] * fx
    bottom = flat[y1 + x0] * (1 - fx) + flat[y1 + x1] * fx
    return top * (1 - fy) + bottom * fy


# ----------------------------------------------------------------------------------------------- environments


@dataclass(frozen=True)
class Light:
    """A small bright disc of an HDRI; the renderer treats it as a directional light."""

    elevation_deg: float
    azimuth_deg: float
    radius_deg: float
    radiance: tuple[float, float, float]

    @property
    def direction(self) -> Array:
        return direction(self.elevation_deg, self.azimuth_deg)

    @property
    def irradiance(self) -> Array:
        """Radiance times the disc's solid angle: the light's irradiance on a surface facing it."""
        solid_angle = 2 * np.pi * (1 - np.cos(np.radians(self.radius_deg)))
        return np.array(self.radiance) * solid_angle


@dataclass(frozen=True)
class Environment:
    """An HDRI: a smooth sky (directions [..., 3] -> radiance [..., 3]) plus light discs."""

    sky: Callable[[Array], Array]
    lights: tuple[Light, ...]

    def radiance(self, height: int) -> Array:
        """The equirectangular HDRI [height, 2 height, 3] float32, discs anti-aliased over one pixel."""
        d = latlong_directions(height)
        image = self.sky(d)
        pixel_angle = np.pi / height
        for light in self.lights:
            angle = np.arccos(np.clip(d @ light.direction, -1.0, 1.0))
            cover = np.clip((np.radians(light.radius_deg) - angle) / pixel_angle + 0.5, 0.0, 1.0)[..., None]
            image = image * (1 - cover) + np.array(light.radiance) * cover
        # A floor per pixel keeps every channel representable next to the brightest one in RGBE (no zeros).
        image = np.maximum(image, 0.02 * image.max(axis=-1, keepdims=True))
        return image.astype(np.float32)


def _mix(a: Array | tuple[float, ...], b: Array | tuple[float, ...], t: Array) -> Array:
    """Per-direction blend from colour ``a`` (t = 0) to ``b`` (t = 1); ``t`` is [..., 1]."""
    return np.asarray(a) * (1 - t) + np.asarray(b) * t


def _over_ground(d: Array, sky: Array, ground: tuple[float, float, float]) -> Array:
    """``sky`` above the horizon and a flat ``ground`` radiance below, blended over +-1 degree."""
    t = np.clip(d[..., 1:2] / np.sin(np.radians(1.0)) * 0.5 + 0.5, 0.0, 1.0)
    return _mix(ground, sky, t)


def _glow(d: Array, towards: Array, width_rad: float) -> Array:
    """exp(-angle / width) between every direction of ``d`` and ``towards``, [..., 1]."""
    return np.exp(-np.arccos(np.clip(d @ towards, -1.0, 1.0)) / width_rad)[..., None]


def _elevation_blend(d: Array, rate: float) -> Array:
    """0 at and below the horizon, rising to 1 towards the zenith, [..., 1]."""
    return 1 - np.exp(-rate * np.clip(d[..., 1:2], 0.0, 1.0))


CLEAR_SUN = Light(elevation_deg=40.0, azimuth_deg=-125.0, radius_deg=1.5, radiance=(2.2e4, 2.05e4, 1.85e4))
SUNRISE_SUN = Light(elevation_deg=4.0, azimuth_deg=-60.0, radius_deg=1.5, radiance=(5.0e3, 2.8e3, 1.5e3))
LAMPS = (
    Light(elevation_deg=28.0, azimuth_deg=-140.0, radius_deg=2.0, radiance=(2.5e3, 1.75e3, 0.95e3)),
    Light(elevation_deg=18.0, azimuth_deg=110.0, radius_deg=1.5, radiance=(1.6e3, 1.25e3, 0.75e3)),
)


def clear_sky(d: Array) -> Array:
    """Blue gradient with a warm glow around the sun over a beige ground."""
    sky = _mix((1.5, 1.75, 2.1), (0.4, 0.7, 1.6), _elevation_blend(d, 3.0))
    sky = sky + np.array([3.0, 2.6, 2.0]) * _glow(d, CLEAR_SUN.direction, 0.12)
    return _over_ground(d, sky, (0.75, 0.72, 0.55))


def pink_sunrise(d: Array) -> Array:
    """Orange horizon towards the low sun, pink elsewhere, violet-blue zenith, dim reddish ground."""
    flat = normalize(d * np.array([1.0, 0.0, 1.0]))
    towards_sun = 0.5 + 0.5 * (flat @ normalize(SUNRISE_SUN.direction * np.array([1.0, 0.0, 1.0])))[..., None]
    horizon = _mix((1.6, 0.75, 0.95), (3.6, 1.7, 1.0), towards_sun**2)
    sky = _mix(horizon, (0.3, 0.33, 0.7), _elevation_blend(d, 4.0))
    sky = sky + np.array([6.0, 3.2, 1.6]) * _glow(d, SUNRISE_SUN.direction, 0.2)
    return _over_ground(d, sky, (0.3, 0.2, 0.2))


def street_lamp_night(d: Array) -> Array:
    """Dark blue night sky, a warm haze low on the horizon, halos around the lamps, dark ground."""
    sky = _mix((0.06, 0.045, 0.04), (0.008, 0.012, 0.03), _elevation_blend(d, 6.0))
    for lamp in LAMPS:
        sky = sky + np.array([2.0, 1.4, 0.7]) * _glow(d, lamp.direction, 0.04)
    return _over_ground(d, sky, (0.03, 0.025, 0.02))


def overcast(d: Array) -> Array:
    """CIE overcast sky: three times brighter at the zenith than at the horizon, no sun; grey ground."""
    up = np.clip(d[..., 1:2], 0.0, 1.0)
    return _over_ground(d, np.array([0.95, 0.98, 1.0]) * 4.0 * (1 + 2 * up) / 3, (0.5, 0.5, 0.47))


# Keyed by the file stems of FALLBACK_HDRI_LIST.
ENVIRONMENTS: dict[str, Environment] = {
    "clear_sky_sun": Environment(clear_sky, (CLEAR_SUN,)),
    "pink_sunrise": Environment(pink_sunrise, (SUNRISE_SUN,)),
    "street_lamp_night": Environment(street_lamp_night, LAMPS),
    "overcast": Environment(overcast, ()),
}


def write_hdr(path: Path, radiance: Array) -> None:
    """Write linear RGB ``radiance`` [h, w, 3] as a run-length encoded Radiance (RGBE) file."""
    if not cv2.imwrite(str(path), np.ascontiguousarray(radiance[..., ::-1], dtype=np.float32)):
        raise OSError(f"could not write {path}")


# ----------------------------------------------------------------------------------------------- scene


@dataclass(frozen=True)
class Material:
    """Basecolor (sRGB-encoded), GGX roughness and metallic, as stored in the G-buffers."""

    basecolor: tuple[float, float, float]
    roughness: float
    metallic: float


RED_PLASTIC = Material((0.75, 0.12, 0.10), 0.3, 0.0)
GOLD = Material((1.0, 0.78, 0.34), 0.25, 1.0)
CHROME = Material((0.95, 0.95, 0.95), 0.06, 1.0)
WHITE_MATTE = Material((0.82, 0.82, 0.80), 0.85, 0.0)
BLUE_PAINT = Material((0.12, 0.28, 0.72), 0.45, 0.0)
GREEN_RUBBER = Material((0.20, 0.55, 0.25), 0.7, 0.0)
COPPER = Material((0.95, 0.64, 0.54), 0.4, 1.0)
FLOOR_LIGHT = Material((0.66, 0.62, 0.56), 0.35, 0.0)
FLOOR_DARK = Material((0.30, 0.29, 0.28), 0.7, 0.0)
FLOOR_TILE = 0.6  # metres


@dataclass(frozen=True)
class Sphere:
    center: tuple[float, float, float]
    radius: float
    material: Material

    def distance(self, o: Array, d: Array) -> Array:
        """Distance [N] along rays ``o + t d`` (unit ``d``, ``o`` outside) to the sphere, inf on a miss."""
        oc = o - np.array(self.center)
        b = dot(oc, d)[:, 0]
        disc = b * b - (dot(oc, oc)[:, 0] - self.radius**2)
        t = -b - np.sqrt(np.maximum(disc, 0.0))
        return np.where((disc > 0) & (t > EPS), t, np.inf)

    def normal_at(self, p: Array) -> Array:
        """Outward unit normals [N, 3] at surface points ``p``."""
        return (p - np.array(self.center)) / self.radius

    @property
    def occluder(self) -> tuple[Array, float]:
        """Centre and radius of the sphere used for ambient occlusion."""
        return np.array(self.center), self.radius


@dataclass(frozen=True)
class Box:
    """A box standing on the floor, turned by ``yaw_deg`` about +Y."""

    center_xz: tuple[float, float]
    half_size: tuple[float, float, float]
    yaw_deg: float
    material: Material

    @property
    def center(self) -> Array:
        return np.array([self.center_xz[0], self.half_size[1], self.center_xz[1]])

    def distance(self, o: Array, d: Array) -> Array:
        """Distance [N] along rays ``o + t d`` (``o`` outside) to the box, inf on a miss (slab test)."""
        yaw = np.radians(self.yaw_deg)
        lo, ld = rotate_y(o - self.center, -yaw), rotate_y(d, -yaw)
        half = np.array(self.half_size)
        inv = 1.0 / np.where(ld == 0, 1e-30, ld)
        t1, t2 = (-half - lo) * inv, (half - lo) * inv
        t_near, t_far = np.minimum(t1, t2).max(axis=1), np.maximum(t1, t2).min(axis=1)
        return np.where((t_near <= t_far) & (t_near > EPS), t_near, np.inf)

    def normal_at(self, p: Array) -> Array:
        """Outward unit normals [N, 3] at surface points ``p``: the axis of the face the point lies on."""
        yaw = np.radians(self.yaw_deg)
        local = rotate_y(p - self.center, -yaw) / np.array(self.half_size)
        axis = np.abs(local).argmax(axis=1)
        normal = np.zeros_like(local)
        rows = np.arange(len(local))
        normal[rows, axis] = np.sign(local[rows, axis])
        return rotate_y(normal, yaw)

    @property
    def occluder(self) -> tuple[Array, float]:
        """Centre and radius of the sphere of equal volume, used for ambient occlusion."""
        return self.center, float(np.cbrt(np.prod(self.half_size) * 6 / np.pi))


@dataclass
class Surface:
    """What rays hit: ``ids`` -1 = nothing, 0 = floor, k = object k - 1; per-ray G-buffer values."""

    ids: Array
    t: Array
    position: Array
    normal: Array
    basecolor: Array
    roughness: Array
    metallic: Array

    @property
    def hit(self) -> Array:
        return self.ids >= 0


@dataclass(frozen=True)
class Scene:
    """Objects standing on an endless tiled floor (the plane y = 0)."""

    objects: tuple[Sphere | Box, ...]

    def intersect(self, o: Array, d: Array) -> tuple[Array, Array]:
        """Nearest distance [N] and id [N] (see ``Surface``) along rays ``o + t d``."""
        going_down = d[:, 1] < -1e-6
        t = np.where(going_down, -o[:, 1] / np.where(going_down, d[:, 1], -1.0), np.inf)
        t = np.where(t > EPS, t, np.inf)
        ids = np.where(np.isfinite(t), 0, -1)
        for k, obj in enumerate(self.objects, start=1):
            t_obj = obj.distance(o, d)
            closer = t_obj < t
            t = np.where(closer, t_obj, t)
            ids[closer] = k
        return t, ids

    def occluded(self, o: Array, d: Array) -> Array:
        """Whether an object blocks each ray ``o + t d`` (the floor never blocks the lights above it)."""
        blocked = np.zeros(len(o), dtype=bool)
        for obj in self.objects:
            blocked |= np.isfinite(obj.distance(o, d))
        return blocked

    def ambient_visibility(self, surface: Surface) -> Array:
        """1 minus the analytic occlusion of every other object approximated by a sphere, [N, 1]."""
        visibility = np.ones((len(surface.ids), 1))
        for k, obj in enumerate(self.objects, start=1):
            center, radius = obj.occluder
            to_center = center - surface.position
            distance = np.linalg.norm(to_center, axis=1, keepdims=True)
            cosine = np.clip(dot(surface.normal, to_center) / distance, 0.0, 1.0)
            occlusion = np.clip((radius / distance) ** 2 * cosine, 0.0, 1.0)
            visibility *= np.where((surface.ids == k)[:, None], 1.0, 1.0 - occlusion)
        return visibility

    def surface(self, o: Array, d: Array, footprint_per_metre: float) -> Surface:
        """Cast rays and gather their G-buffer values; the floor's tiles are filtered over the pixel footprint."""
        t, ids = self.intersect(o, d)
        t_safe = np.where(np.isfinite(t), t, 0.0)
        position = o + t_safe[:, None] * d
        normal = np.zeros_like(position)
        normal[ids == 0] = (0.0, 1.0, 0.0)
        basecolor = np.zeros_like(o)
        roughness = np.ones((len(o), 1))
        metallic = np.zeros((len(o), 1))
        floor = ids == 0
        footprint = t_safe[floor] * footprint_per_metre / np.sqrt(np.maximum(-d[floor, 1], 1e-3))
        tiles = _tile_pattern(position[floor], footprint)[:, None]
        basecolor[floor] = _mix(FLOOR_DARK.basecolor, FLOOR_LIGHT.basecolor, tiles)
        roughness[floor] = _mix(FLOOR_DARK.roughness, FLOOR_LIGHT.roughness, tiles)
        for k, obj in enumerate(self.objects, start=1):
            mask = ids == k
            normal[mask] = obj.normal_at(position[mask])
            basecolor[mask] = obj.material.basecolor
            roughness[mask] = obj.material.roughness
            metallic[mask] = obj.material.metallic
        return Surface(ids, t, position, normal, basecolor, roughness, metallic)


def _tile_pattern(position: Array, footprint: Array) -> Array:
    """Checkerboard of the floor in [0, 1] (1 = light tile), its edges blurred over ``footprint`` metres."""

    def soft_sign(x: Array) -> Array:
        return np.clip(np.sin(np.pi * x / FLOOR_TILE) * FLOOR_TILE / (np.pi * footprint), -1.0, 1.0)

    return 0.5 + 0.5 * soft_sign(position[:, 0]) * soft_sign(position[:, 2])


# ----------------------------------------------------------------------------------------------- lighting


def convolve_latlong(source: Array, height: int, lobe: Callable[[Array], Array]) -> Array:
    """Equirectangular map [height, 2 height, 3] of the ``lobe``-weighted average of ``source`` around each direction.

    ``lobe`` maps the cosine between output and source directions to a weight; source texels are weighted by
    their solid angle too.
    """
    source_dirs = latlong_directions(source.shape[0]).reshape(-1, 3)
    solid_angle = np.sqrt(np.maximum(1 - source_dirs[:, 1] ** 2, 0.0))
    values = source.reshape(-1, 3)
    out_dirs = latlong_directions(height).reshape(-1, 3)
    out = np.empty_like(out_dirs)
    for start in range(0, len(out_dirs), 1024):
        weights = lobe(out_dirs[start : start + 1024] @ source_dirs.T) * solid_angle
        out[start : start + 1024] = (weights @ values) / weights.sum(axis=1, keepdims=True)
    return out.reshape(height, 2 * height, 3)


def ggx_lobe(roughness: float) -> Callable[[Array], Array]:
    """GGX distribution of the half-vector times the cosine, as a function of the cosine to the mirror direction."""
    alpha2 = roughness**4

    def lobe(cosine: Array) -> Array:
        cos_half2 = (1 + cosine) / 2
        return alpha2 / (np.pi * ((alpha2 - 1) * cos_half2 + 1) ** 2) * np.maximum(cosine, 0.0)

    return lobe


@dataclass(frozen=True)
class Lighting:
    """An ``Environment`` prepared for shading, turned by ``yaw`` radians about +Y."""

    specular_maps: tuple[Array, ...]  # sky pre-filtered for each PREFILTER_ROUGHNESS (the first is the sky itself)
    irradiance_map: Array  # cosine-weighted sky irradiance, per normal direction
    light_directions: Array  # [L, 3]
    light_irradiance: Array  # [L, 3]
    yaw: float = 0.0

    @classmethod
    def prepare(cls, environment: Environment) -> Lighting:
        """Pre-filter the sky of ``environment`` (about a second) and collect its lights."""
        source = environment.sky(latlong_directions(48))
        specular = [environment.sky(latlong_directions(HDRI_HEIGHT))]
        specular += [convolve_latlong(source, 32, ggx_lobe(r)) for r in PREFILTER_ROUGHNESS[1:]]
        irradiance = np.pi * convolve_latlong(source, 32, lambda cosine: np.maximum(cosine, 0.0))
        return cls(
            tuple(specular),
            irradiance,
            np.array([light.direction for light in environment.lights]).reshape(-1, 3),
            np.array([light.irradiance for light in environment.lights]).reshape(-1, 3),
        )

    def turned(self, yaw: float) -> Lighting:
        """The same lighting turned by ``yaw`` radians about +Y."""
        return Lighting(self.specular_maps, self.irradiance_map, self.light_directions, self.light_irradiance, yaw)

    def lights(self) -> list[tuple[Array, Array]]:
        """(direction, irradiance) of every directional light, turned."""
        return list(zip(rotate_y(self.light_directions, self.yaw), self.light_irradiance))

    def sky(self, d: Array) -> Array:
        """Sky radiance (without the light discs) along ``d``."""
        return sample_latlong(self.specular_maps[0], latlong_uv(rotate_y(d, -self.yaw)))

    def irradiance(self, normal: Array) -> Array:
        """Sky irradiance on a surface with ``normal``."""
        return sample_latlong(self.irradiance_map, latlong_uv(rotate_y(normal, -self.yaw)))

    def specular(self, d: Array, roughness: Array) -> Array:
        """Pre-filtered sky radiance along reflection directions ``d`` for per-ray ``roughness`` [N, 1]."""
        u, v = latlong_uv(rotate_y(d, -self.yaw))
        out = np.zeros_like(d)
        for k, level in enumerate(self.specular_maps):
            weight = np.interp(roughness[:, 0], PREFILTER_ROUGHNESS, np.eye(len(PREFILTER_ROUGHNESS))[k])
            used = np.flatnonzero(weight > 0)
            out[used] += weight[used, None] * sample_latlong(level, (u[used], v[used]))
        return out


def srgb_to_linear(c: Array) -> Array:
    """sRGB-encoded values in [0, 1] to linear."""
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: Array) -> Array:
    """Linear values in [0, 1] to sRGB-encoded."""
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(np.maximum(c, 0.0031308), 1 / 2.4) - 0.055)


def environment_brdf(f0: Array, roughness: Array, n_dot_v: Array) -> Array:
    """Analytic fit of the pre-integrated GGX specular reflectance (Karis, 'Physically based shading on mobile')."""
    r = roughness * np.array([-1.0, -0.0275, -0.572, 0.022]) + np.array([1.0, 0.0425, 1.04, -0.04])
    a004 = np.minimum(r[:, :1] ** 2, np.exp2(-9.28 * n_dot_v)) * r[:, :1] + r[:, 1:2]
    scale, bias = -1.04 * a004 + r[:, 2:3], 1.04 * a004 + r[:, 3:4]
    return f0 * scale + bias


def shade(scene: Scene, lighting: Lighting, surface: Surface, d: Array, footprint: float, bounce: bool) -> Array:
    """Linear radiance [N, 3] leaving ``surface`` towards the ray origins (the sky where a ray hit nothing).

    With ``bounce`` the reflection of glossy surfaces is traced once and blended with the pre-filtered sky.
    """
    n, v = surface.normal, -d
    n_dot_v = np.clip(dot(n, v), 1e-4, 1.0)
    base = srgb_to_linear(surface.basecolor)
    diffuse_color = base * (1 - surface.metallic)
    f0 = 0.04 * (1 - surface.metallic) + base * surface.metallic
    lift = surface.position + n * EPS
    color = np.zeros_like(d)
    alpha = np.maximum(surface.roughness**2, 0.03)  # no narrower than the sun disc
    for l, irradiance in lighting.lights():  # noqa: E741 (l: the light direction, as in the formulas)
        n_dot_l = np.clip(n @ l, 0.0, 1.0)[:, None]
        h = normalize(l + v)
        n_dot_h, v_dot_h = np.clip(dot(n, h), 0.0, 1.0), np.clip(dot(v, h), 0.0, 1.0)
        ndf = alpha**2 / (np.pi * ((alpha**2 - 1) * n_dot_h**2 + 1) ** 2)
        k = alpha / 2
        geometry = n_dot_l / (n_dot_l * (1 - k) + k) * n_dot_v / (n_dot_v * (1 - k) + k)
        fresnel = f0 + (1 - f0) * (1 - v_dot_h) ** 5
        specular = ndf * geometry * fresnel / (4 * n_dot_l * n_dot_v + 1e-4)
        visible = ~scene.occluded(lift, np.broadcast_to(l, lift.shape))[:, None]
        color += visible * irradiance * n_dot_l * (diffuse_color / np.pi + specular)
    ambient = scene.ambient_visibility(surface)
    color += diffuse_color * lighting.irradiance(n) / np.pi * ambient
    reflected = d - 2 * dot(d, n) * n
    reflection = lighting.specular(reflected, surface.roughness) * ambient
    if bounce:
        glossy = np.flatnonzero(surface.hit & (surface.roughness[:, 0] < GLOSSY_LIMIT))
        second = scene.surface(lift[glossy], reflected[glossy], footprint)
        traced = shade(scene, lighting, second, reflected[glossy], footprint, False)
        sharpness = 1 - surface.roughness[glossy] / GLOSSY_LIMIT
        reflection[glossy] = sharpness * traced + (1 - sharpness) * reflection[glossy]
    color += reflection * environment_brdf(f0, surface.roughness, n_dot_v)
    missed = ~surface.hit
    color[missed] = lighting.sky(d[missed])
    return color


# ----------------------------------------------------------------------------------------------- camera and output

VFOV_DEG = 40.0


@dataclass(frozen=True)
class Camera:
    """A pinhole camera at ``position`` looking at ``target`` with +Y up, VFOV_DEG vertical field of view."""

    position: tuple[float, float, float]
    target: tuple[float, float, float]

    def basis(self) -> tuple[Array, Array, Array]:
        """Unit (right, up, forward) vectors in world space."""
        forward = normalize(np.array(self.target) - np.array(self.position))
        right = normalize(np.cross(forward, [0.0, 1.0, 0.0]))
        return right, np.cross(right, forward), forward

    def rays(self, width: int, height: int) -> tuple[Array, Array]:
        """Origins and unit directions [height * width, 3] through the pixel centres, row-major from the top left."""
        right, up, forward = self.basis()
        half = np.tan(np.radians(VFOV_DEG) / 2)
        x = ((np.arange(width) + 0.5) * 2 / width - 1) * half * width / height
        y = (1 - (np.arange(height) + 0.5) * 2 / height) * half
        yy, xx = np.meshgrid(y, x, indexing="ij")
        d = normalize(forward + xx[..., None] * right + yy[..., None] * up).reshape(-1, 3)
        return np.broadcast_to(np.array(self.position, dtype=float), d.shape), d


def render(
    scene: Scene, lighting: Lighting, camera: Camera, width: int = WIDTH, height: int = HEIGHT
) -> tuple[Array, Surface, Array]:
    """Linear radiance [height, width, 3], the primary ``Surface`` and the ray directions of one view."""
    origins, d = camera.rays(width, height)
    pixel_angle = 2 * np.tan(np.radians(VFOV_DEG) / 2) / height  # radians per pixel near the image centre
    surface = scene.surface(origins, d, pixel_angle)
    color = shade(scene, lighting, surface, d, pixel_angle, bounce=True)
    return color.reshape(height, width, 3), surface, d


def exposure_for(radiance: Array, key: float = 0.18) -> float:
    """Scale that maps the log-average luminance to ``key`` (0.18: middle grey)."""
    luminance = radiance @ np.array([0.2126, 0.7152, 0.0722])
    return float(key / np.exp(np.mean(np.log(luminance + 1e-4))))


def tone_map(radiance: Array, exposure: float) -> Array:
    """Exposed linear radiance -> uint8 sRGB through the ACES filmic fit of Narkowicz."""
    x = radiance * exposure
    mapped = np.clip(x * (2.51 * x + 0.03) / (x * (2.43 * x + 0.59) + 0.14), 0.0, 1.0)
    return to_uint8(linear_to_srgb(mapped))


def to_uint8(values: Array) -> Array:
    """Values in [0, 1] rounded to uint8."""
    return np.round(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)


def gbuffers(surface: Surface, d: Array, camera: Camera) -> dict[str, Array]:
    """The 8-bit G-buffer images [H, W, 3] or [H, W] of a primary ``Surface`` (encodings: GROUND_TRUTH_README)."""
    right, up, forward = camera.basis()
    normal = np.stack([surface.normal @ right, surface.normal @ up, -(surface.normal @ forward)], axis=-1)
    depth = np.where(surface.hit, surface.t * (d @ forward), np.inf)
    near, far = np.percentile(depth[surface.hit], [2, 98])
    depth = np.clip((depth - near) / (far - near), 0.0, 1.0)
    image = {
        "basecolor": surface.basecolor,
        "normal": np.where(surface.hit[:, None], (normal + 1) / 2, 0.5),
        "depth": depth,
        "roughness": surface.roughness[:, 0],
        "metallic": surface.metallic[:, 0],
    }
    return {name: to_uint8(values).reshape(HEIGHT, WIDTH, *values.shape[1:]) for name, values in image.items()}


GROUND_TRUTH_README = """\
# Ground-truth G-buffers of the example images

Made by scripts/make_example_assets.py together with image_examples/<stem>.jpg; one folder per image.
All files are 8-bit PNGs of 1280x704, values rounded (not truncated) from [0, 1]:

- basecolor.png: RGB basecolor, sRGB-encoded (the value the renderer shades with after sRGB decoding).
- normal.png: RGB = (n + 1) / 2 of the unit normal n in camera space: x right, y up, z towards the camera.
- depth.png: grey, distance along the viewing axis mapped to [0, 1] between its 2nd and 98th percentile over the
  image (clipped; 0 = near, 1 = far).
- roughness.png: grey, GGX roughness (alpha = roughness^2).
- metallic.png: grey, metallic (0 or 1 in these scenes; 1 for gold, chrome and copper).

The floor's checkerboard is blurred over one pixel footprint, so its G-buffer values are filtered like the image.
"""


def write_image(path: Path, image: Array, params: list[int] | None = None) -> None:
    """Write a uint8 RGB or grey image with OpenCV (format from the suffix)."""
    bgr = image[..., ::-1] if image.ndim == 3 else image
    if not cv2.imwrite(str(path), np.ascontiguousarray(bgr), params or []):
        raise OSError(f"could not write {path}")


def write_video(path: Path, frames: list[Array]) -> None:
    """Write uint8 RGB frames as an H.264 MP4 at VIDEO_FPS with the imageio-ffmpeg binary, without version tags."""
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (WIDTH, HEIGHT),
        fps=VIDEO_FPS,
        codec="libx264",
        quality=None,
        output_params=["-crf", str(VIDEO_CRF), "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1"],
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


# ----------------------------------------------------------------------------------------------- the examples

SCENE_SPHERES = Scene(
    (
        Sphere((-1.3, 0.5, 0.0), 0.5, RED_PLASTIC),
        Sphere((0.1, 0.6, -0.9), 0.6, CHROME),
        Sphere((1.3, 0.4, 0.4), 0.4, GOLD),
        Box((-0.2, 1.0), (0.35, 0.35, 0.35), 30.0, WHITE_MATTE),
        Sphere((0.8, 0.25, 1.6), 0.25, BLUE_PAINT),
    )
)
SCENE_BLOCKS = Scene(
    (
        Box((-1.0, -0.4), (0.5, 0.6, 0.4), -20.0, BLUE_PAINT),
        Box((0.9, -0.8), (0.3, 0.9, 0.3), 15.0, WHITE_MATTE),
        Sphere((0.3, 0.45, 0.6), 0.45, COPPER),
        Sphere((-0.6, 0.3, 1.3), 0.3, GREEN_RUBBER),
        Sphere((1.5, 0.35, 0.9), 0.35, CHROME),
    )
)
SCENE_ROW = Scene(
    (
        Sphere((-2.0, 0.4, 0.0), 0.4, WHITE_MATTE),
        Sphere((-1.0, 0.4, 0.0), 0.4, GREEN_RUBBER),
        Sphere((0.0, 0.4, 0.0), 0.4, RED_PLASTIC),
        Sphere((1.0, 0.4, 0.0), 0.4, COPPER),
        Sphere((2.0, 0.4, 0.0), 0.4, GOLD),
        Box((0.0, -1.4), (1.6, 0.25, 0.3), 0.0, BLUE_PAINT),
    )
)
FRONT = Camera((0.6, 3.6, 5.2), (0.0, 0.2, 0.2))


@dataclass(frozen=True)
class Shot:
    """One example image: a scene under an environment turned by ``yaw_deg``, seen from a camera.

    ``key`` is the grey level the log-average luminance is exposed to (lower for a night look).
    """

    scene: Scene
    environment: str
    camera: Camera
    yaw_deg: float = 0.0
    key: float = 0.18


IMAGES: dict[str, Shot] = {
    "image_1": Shot(SCENE_SPHERES, "clear_sky_sun", FRONT),
    "image_2": Shot(SCENE_BLOCKS, "pink_sunrise", Camera((-2.2, 3.6, 4.6), (0.2, 0.3, 0.0))),
    "image_3": Shot(SCENE_ROW, "overcast", Camera((0.0, 3.5, 5.0), (0.0, 0.2, -0.3))),
    "image_4": Shot(SCENE_SPHERES, "street_lamp_night", Camera((-3.2, 3.7, 4.2), (0.0, 0.3, 0.0)), key=0.07),
    "image_5": Shot(SCENE_BLOCKS, "clear_sky_sun", Camera((2.8, 3.0, 3.4), (0.3, 0.4, 0.1)), yaw_deg=90.0),
}


def orbit(camera: Camera, angle_deg: float) -> Camera:
    """``camera`` moved about the vertical axis through its target by ``angle_deg``."""
    target = np.array(camera.target)
    position = target + rotate_y(np.array(camera.position) - target, np.radians(angle_deg))
    return Camera(tuple(position), camera.target)


def video_orbit(lighting: dict[str, Lighting]) -> list[Array]:
    """video1: the camera swings 40 degrees around SCENE_SPHERES under the clear sky."""
    angles = np.linspace(-20.0, 20.0, VIDEO_FRAMES)
    return _video_frames(SCENE_SPHERES, [(lighting["clear_sky_sun"], orbit(FRONT, a)) for a in angles])


def video_turning_light(lighting: dict[str, Lighting]) -> list[Array]:
    """video2: SCENE_ROW under the clear sky turning 180 degrees about the vertical axis, still camera."""
    yaws = np.radians(np.linspace(0.0, 180.0, VIDEO_FRAMES))
    camera = IMAGES["image_3"].camera
    return _video_frames(SCENE_ROW, [(lighting["clear_sky_sun"].turned(y), camera) for y in yaws])


def _video_frames(scene: Scene, views: list[tuple[Lighting, Camera]]) -> list[Array]:
    """Tone-mapped WIDTH x HEIGHT frames of ``views``, rendered at half size and upscaled (to keep the script fast).

    All frames use the exposure of the first, so brightness changes stay visible.
    """
    frames, exposure = [], None
    for lighting, camera in views:
        radiance = render(scene, lighting, camera, WIDTH // 2, HEIGHT // 2)[0]
        exposure = exposure_for(radiance) if exposure is None else exposure
        frames.append(cv2.resize(tone_map(radiance, exposure), (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC))
    return frames


VIDEOS: dict[str, Callable[[dict[str, Lighting]], list[Array]]] = {
    "video1": video_orbit,
    "video2": video_turning_light,
}


def write_hdris(folder: Path, height: int = HDRI_HEIGHT) -> None:
    """The HDRIs of FALLBACK_HDRI_LIST, ``height`` x 2 ``height``."""
    folder.mkdir(parents=True, exist_ok=True)
    for relative in FALLBACK_HDRI_LIST:
        name = Path(relative).name
        write_hdr(folder / name, ENVIRONMENTS[Path(name).stem].radiance(height))


def write_images(root: Path, lighting: dict[str, Lighting]) -> None:
    """image_examples/<stem>.jpg and ground_truth/<stem>/<pass>.png for every entry of IMAGES."""
    (root / "image_examples").mkdir(parents=True, exist_ok=True)
    (root / "ground_truth").mkdir(parents=True, exist_ok=True)
    (root / "ground_truth" / "README.md").write_text(GROUND_TRUTH_README)
    for stem, shot in IMAGES.items():
        turned = lighting[shot.environment].turned(np.radians(shot.yaw_deg))
        radiance, surface, d = render(shot.scene, turned, shot.camera)
        image = tone_map(radiance, exposure_for(radiance, shot.key))
        write_image(root / "image_examples" / f"{stem}.jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        folder = root / "ground_truth" / stem
        folder.mkdir(exist_ok=True)
        for name, image in gbuffers(surface, d, shot.camera).items():
            write_image(folder / f"{name}.png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"Wrote {stem}", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Write every asset into --output_dir."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--output_dir",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "asset" / "examples",
        help="Folder that receives hdri_examples/, image_examples/, ground_truth/ and video_examples/ "
        "(default: asset/examples of this repository).",
    )
    args = parser.parse_args(argv)
    write_hdris(args.output_dir / "hdri_examples")
    print("Wrote the HDRIs", flush=True)
    lighting = {name: Lighting.prepare(environment) for name, environment in ENVIRONMENTS.items()}
    write_images(args.output_dir, lighting)
    (args.output_dir / "video_examples").mkdir(parents=True, exist_ok=True)
    for stem, make_frames in VIDEOS.items():
        write_video(args.output_dir / "video_examples" / f"{stem}.mp4", make_frames(lighting))
        print(f"Wrote {stem}", flush=True)


if __name__ == "__main__":
    main()

"""Generate the bundled example assets: HDRIs, images and videos rendered with Mitsuba 3, and their ground truth.

Every file under asset/examples/ that this script writes is computed here from fixed parameters and ``--seed``
(the samplers' seed and the random marble texture); nothing is copied from elsewhere:

    hdri_examples/<name>.hdr           four procedural equirectangular Radiance HDRIs (2:1), in --envlight_ind order
    image_examples/image_<k>.jpg       1280x704 renders of small scenes of spheres, boxes and a cylinder on a floor
    video_examples/video<k>.mp4        1280x704 H.264 clips, 60 frames at 24 fps (rendered at 640x352, upscaled)
    ground_truth/<clip>/...            G-buffers and relit renders of every image and video (ground_truth/README.md)

Scenes are rendered by Mitsuba 3 (``pip install -e ".[assets]"``, variant scalar_rgb: plain compiled code, the same
bytes on every run on one machine) with its path tracer and principled BSDF, whose base_color, roughness
(GGX alpha = roughness^2) and metallic are exactly the values written as ground truth. G-buffers come from Mitsuba's
AOV integrator with the same camera rays: basecolor and roughness/metallic as the "albedo" of stand-in diffuse
materials, position and shading normal of the hit, all averaged over each pixel like the image's samples.

Conventions: world +Y is up; cameras look along -Z of their own frame (x right, y up, z towards the viewer, the frame
of the normal G-buffer). An equirectangular pixel (i, j) of an H x 2H map lies in direction
(sin t sin p, cos t, sin t cos p), t = pi (i + 0.5) / H, p = 2 pi (j + 0.5) / 2H - pi, of the frame the map is attached
to: the map's horizontal centre faces +Z and its top row +Y (the forward renderer's environment-map convention).
Only the HDRIs are written without Mitsuba. Usage: python scripts/make_example_assets.py [--output_dir DIR]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import cv2
import imageio_ffmpeg
import numpy as np

MITSUBA_VARIANT = "scalar_rgb"
WIDTH, HEIGHT = 1280, 704
VIDEO_SIZE = (640, 352)  # rendered size of video frames (the clips are upscaled to WIDTH x HEIGHT)
VIDEO_GROUND_TRUTH_SIZE = (320, 176)  # of the videos' G-buffers (the images' are WIDTH x HEIGHT)
RELIT_SIZE = (320, 176)  # of every relit ground truth
HDRI_HEIGHT = 1024
VIDEO_FPS = 24
VIDEO_FRAMES = 60
VIDEO_CRF = 28
RELIT_VIDEO_CRF = 16
JPEG_QUALITY = 90  # of the example images and the relit ground truth of still views
IMAGE_SPP = 40  # samples per pixel of the example images
VIDEO_SPP = 20  # of the video frames and the per-frame relit ground truth
RELIT_SPP = 40  # of the relit ground truth of still views
GBUFFER_SPP = 16  # of the G-buffers (only anti-aliasing: every sample of a pixel sees the same light-free values)
MEDIAN_GROUPS = 5  # see render_radiance
MAX_DEPTH = 8  # longest light path (mirror-like metal needs a few bounces)
VFOV_DEG = 40.0
DEPTH_UNIT = 1e-2  # metres per code value of the 16-bit depth ground truth

Array = np.ndarray


# ----------------------------------------------------------------------------------------------- directions and HDRIs


def normalize(v: Array) -> Array:
    """``v`` scaled to unit length along the last axis."""
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


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


# Keyed by file stem, in the forward renderer's fallback --envlight_ind order.
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


# ----------------------------------------------------------------------------------------------- materials


@dataclass(frozen=True)
class Finish:
    """What the G-buffers record at a surface point: basecolor (sRGB-encoded, [0, 1]), GGX roughness, metallic."""

    basecolor: tuple[float, float, float]
    roughness: float
    metallic: float


@dataclass(frozen=True)
class Material:
    """A principled material: one ``Finish``, two alternating in a checkerboard, or a seeded basecolor texture.

    ``checks``: checkerboard squares per unit of the shape's uv coordinates (``second`` alternates with ``first``).
    ``texture``: a key of TEXTURES, the basecolor; ``first`` then gives only roughness and metallic.
    """

    first: Finish
    second: Finish | None = None
    checks: float = 0.0
    texture: str | None = None

    def finishes(self) -> tuple[Finish, Finish]:
        """(first, second) of the checkerboard; a uniform material has two equal ones."""
        return self.first, self.second or self.first


def marble(rng: np.random.Generator, height: int = 128) -> Array:
    """A veined white-and-blue stone texture [height, 2 height, 3], sRGB-encoded in [0, 1], seamless along x."""
    coarse = rng.standard_normal((8, 16))
    tiled = np.concatenate([coarse, coarse[:, :1]], axis=1)  # repeat the first column: seamless wrap along x
    noise = cv2.resize(tiled, (2 * height + height // 8, height), interpolation=cv2.INTER_CUBIC)[:, : 2 * height]
    x = np.linspace(0.0, 1.0, 2 * height, endpoint=False)[None, :]
    veins = np.abs(np.sin(2 * np.pi * (3 * x + 0.35 * noise)))
    return _mix((0.28, 0.36, 0.62), (0.92, 0.90, 0.86), veins[..., None] ** 0.35)


TEXTURES: dict[str, Callable[[np.random.Generator], Array]] = {"marble": marble}

RED_PLASTIC = Material(Finish((0.75, 0.12, 0.10), 0.3, 0.0))
GOLD = Material(Finish((1.0, 0.78, 0.34), 0.25, 1.0))
CHROME = Material(Finish((0.95, 0.95, 0.95), 0.06, 1.0))
COPPER = Material(Finish((0.95, 0.64, 0.54), 0.4, 1.0))
WHITE_MATTE = Material(Finish((0.82, 0.82, 0.80), 0.85, 0.0))
BLUE_PAINT = Material(Finish((0.12, 0.28, 0.72), 0.45, 0.0))
GREEN_RUBBER = Material(Finish((0.20, 0.55, 0.25), 0.7, 0.0))
MARBLE = Material(Finish((1.0, 1.0, 1.0), 0.15, 0.0), texture="marble")
CHECKED_TILES = Material(Finish((0.85, 0.68, 0.20), 0.35, 0.0), Finish((0.10, 0.10, 0.12), 0.2, 1.0), checks=4.0)
FLOOR_TILE = 0.6  # metres
FLOOR_HALF_SIZE = 30.0  # metres
TILED_FLOOR = Material(
    Finish((0.66, 0.62, 0.56), 0.35, 0.0), Finish((0.30, 0.29, 0.28), 0.7, 0.0), checks=2 * FLOOR_HALF_SIZE / FLOOR_TILE
)
CONCRETE = Material(Finish((0.52, 0.50, 0.47), 0.8, 0.0))


def srgb_to_linear(c: Array) -> Array:
    """sRGB-encoded values in [0, 1] to linear."""
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: Array) -> Array:
    """Linear values in [0, 1] to sRGB-encoded."""
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(np.maximum(c, 0.0031308), 1 / 2.4) - 0.055)


class Textures:
    """Mitsuba texture dictionaries of the materials' channels; ``seed`` makes the random textures."""

    def __init__(self, mi: ModuleType, seed: int) -> None:
        self.mi = mi
        self.images = {name: make(np.random.default_rng(seed)) for name, make in TEXTURES.items()}

    def channel(self, material: Material, values: Callable[[Finish], list[float]]) -> dict:
        """Linear RGB ``values`` of each finish, as a constant or a checkerboard over the shape's uv."""
        first, second = (values(finish) for finish in material.finishes())
        if first == second:
            return {"type": "rgb", "value": first}
        # Mitsuba's checkerboard has two squares per uv unit along each axis.
        to_uv = self.mi.ScalarTransform4f().scale([material.checks / 2, material.checks / 2, 1.0])
        rgb = [{"type": "rgb", "value": value} for value in (first, second)]
        return {"type": "checkerboard", "color0": rgb[0], "color1": rgb[1], "to_uv": to_uv}

    def basecolor(self, material: Material) -> dict:
        """The linear basecolor texture of ``material``."""
        if material.texture is None:
            return self.channel(material, lambda finish: srgb_to_linear(finish.basecolor).tolist())
        linear = srgb_to_linear(self.images[material.texture]).astype(np.float32)
        return {"type": "bitmap", "bitmap": self.mi.Bitmap(linear), "raw": True, "filter_type": "bilinear"}

    def principled(self, material: Material) -> dict:
        """The BSDF the images are rendered with (specular 0.5: F0 = 0.04 for non-metals)."""
        return {
            "type": "principled",
            "base_color": self.basecolor(material),
            "roughness": self.channel(material, lambda finish: [finish.roughness] * 3),
            "metallic": self.channel(material, lambda finish: [finish.metallic] * 3),
        }

    def basecolor_standin(self, material: Material) -> dict:
        """A diffuse BSDF whose albedo AOV is the linear basecolor."""
        return {"type": "diffuse", "reflectance": self.basecolor(material)}

    def finish_standin(self, material: Material) -> dict:
        """A diffuse BSDF whose albedo AOV is (roughness, metallic, 0)."""
        return {"type": "diffuse", "reflectance": self.channel(material, lambda f: [f.roughness, f.metallic, 0.0])}


# ----------------------------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class Sphere:
    center: tuple[float, float, float]
    radius: float
    material: Material

    def shapes(self, mi: ModuleType) -> list[dict]:
        """Mitsuba shape dictionaries (without BSDF)."""
        return [{"type": "sphere", "center": list(self.center), "radius": self.radius}]


@dataclass(frozen=True)
class Box:
    """A box standing on the floor, turned by ``yaw_deg`` about +Y."""

    center_xz: tuple[float, float]
    half_size: tuple[float, float, float]
    yaw_deg: float
    material: Material

    def shapes(self, mi: ModuleType) -> list[dict]:
        """Mitsuba shape dictionaries (without BSDF)."""
        center = [self.center_xz[0], self.half_size[1], self.center_xz[1]]
        to_world = mi.ScalarTransform4f().translate(center).rotate([0, 1, 0], self.yaw_deg).scale(list(self.half_size))
        return [{"type": "cube", "to_world": to_world}]


@dataclass(frozen=True)
class Cylinder:
    """An upright cylinder standing on the floor, closed by a disc on top."""

    center_xz: tuple[float, float]
    radius: float
    height: float
    material: Material

    def shapes(self, mi: ModuleType) -> list[dict]:
        """Mitsuba shape dictionaries (without BSDF)."""
        x, z = self.center_xz
        top = mi.ScalarTransform4f().translate([x, self.height, z]).rotate([1, 0, 0], -90).scale(self.radius)
        return [
            {"type": "cylinder", "p0": [x, 0.0, z], "p1": [x, self.height, z], "radius": self.radius},
            {"type": "disk", "to_world": top},
        ]


@dataclass(frozen=True)
class Floor:
    """The square floor y = 0 around the origin, FLOOR_HALF_SIZE metres to each side."""

    material: Material

    def shapes(self, mi: ModuleType) -> list[dict]:
        """Mitsuba shape dictionaries (without BSDF)."""
        to_world = mi.ScalarTransform4f().rotate([1, 0, 0], -90).scale(FLOOR_HALF_SIZE)
        return [{"type": "rectangle", "to_world": to_world}]


Shape = Sphere | Box | Cylinder | Floor


# ----------------------------------------------------------------------------------------------- views


def yaw_rotation(angle_deg: float) -> Array:
    """Rotation [3, 3] by ``angle_deg`` about +Y (from +Z towards +X)."""
    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


@dataclass(frozen=True)
class Camera:
    """A pinhole camera at ``position`` looking at ``target`` with +Y up and VFOV_DEG vertical field of view."""

    position: tuple[float, float, float]
    target: tuple[float, float, float]

    def rotation(self) -> Array:
        """Camera-to-world rotation [3, 3]: its columns are the camera's right, up and backward unit vectors."""
        forward = normalize(np.array(self.target, dtype=float) - np.array(self.position, dtype=float))
        right = normalize(np.cross(forward, [0.0, 1.0, 0.0]))
        return np.stack([right, np.cross(right, forward), -forward], axis=1)

    def orbited(self, angle_deg: float) -> Camera:
        """This camera moved by ``angle_deg`` about the vertical axis through its target."""
        target = np.array(self.target, dtype=float)
        position = target + yaw_rotation(angle_deg) @ (np.array(self.position, dtype=float) - target)
        return Camera(tuple(position.tolist()), self.target)

    def sensor(self, mi: ModuleType, size: tuple[int, int]) -> dict:
        """Mitsuba sensor of ``size`` (width, height) pixels, box pixel filter, multi-jittered samples."""
        to_world = mi.ScalarTransform4f().look_at(origin=list(self.position), target=list(self.target), up=[0, 1, 0])
        film = {"type": "hdrfilm", "width": size[0], "height": size[1], "rfilter": {"type": "box"}}
        return {
            "type": "perspective",
            "fov": VFOV_DEG,
            "fov_axis": "y",
            "to_world": to_world,
            "film": {**film, "pixel_format": "rgb"},
            "sampler": {"type": "multijitter"},
        }


@dataclass(frozen=True)
class Lighting:
    """An HDRI of hdri_examples/ (by file stem) around the scene; ``rotation`` [3, 3] takes its frame to world space."""

    hdri: str
    rotation: tuple[tuple[float, ...], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))

    @classmethod
    def in_world(cls, hdri: str, yaw_deg: float = 0.0) -> Lighting:
        """The HDRI fixed in the world, turned by ``yaw_deg`` about +Y."""
        return cls(hdri, _as_tuple(yaw_rotation(yaw_deg)))

    @classmethod
    def on_camera(cls, hdri: str, camera: Camera) -> Lighting:
        """The HDRI attached to the camera's frame: how the forward renderer lights a clip (identity camera pose)."""
        return cls(hdri, _as_tuple(camera.rotation()))

    def emitter(self, mi: ModuleType, hdri_folder: Path) -> dict:
        """Mitsuba envmap. Its own lookup puts u = 0.25 at +X; mirroring x gives this script's convention."""
        matrix = np.eye(4)
        matrix[:3, :3] = np.array(self.rotation) @ np.diag([-1.0, 1.0, 1.0])
        return {
            "type": "envmap",
            "filename": str(hdri_folder / f"{self.hdri}.hdr"),
            "to_world": mi.ScalarTransform4f(matrix.tolist()),
        }


def _as_tuple(matrix: Array) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in matrix)


@dataclass(frozen=True)
class Shot:
    """One rendered frame: objects on the floor under ``lighting`` seen by ``camera``; radiance times ``exposure``."""

    objects: tuple[Shape, ...]
    camera: Camera
    lighting: Lighting
    exposure: float = 1.0


# ----------------------------------------------------------------------------------------------- rendering


def load_mitsuba() -> ModuleType:
    """Mitsuba 3 set to MITSUBA_VARIANT, or SystemExit with the install command."""
    try:
        import mitsuba as mi
    except ImportError:
        raise SystemExit('Rendering the examples needs Mitsuba 3: pip install -e ".[assets]"') from None
    mi.set_variant(MITSUBA_VARIANT)
    return mi


def _scene(mi: ModuleType, objects: tuple[Shape, ...], bsdf: Callable[[Material], dict], extra: dict) -> object:
    """A loaded Mitsuba scene of ``objects`` with ``bsdf(material)`` each, plus ``extra`` entries."""
    entries = dict(extra)
    for k, obj in enumerate(objects):
        for j, shape in enumerate(obj.shapes(mi)):
            entries[f"shape_{k}_{j}"] = {**shape, "bsdf": bsdf(obj.material)}
    return mi.load_dict({"type": "scene", **entries})


def render_radiance(shot: Shot, size: tuple[int, int], spp: int, seed: int, hdri_folder: Path) -> Array:
    """Linear radiance [height, width, 3] float32 of ``shot`` (path tracing, principled BSDFs), ``spp`` samples a pixel.

    Each pixel is the median of MEDIAN_GROUPS means of spp / MEDIAN_GROUPS samples (a median of means): it drops
    the rare, very bright samples of sunlight reflected by mirror-like metal onto the floor (fireflies), at a small
    bias against such caustics.
    """
    if spp % MEDIAN_GROUPS:
        raise ValueError(f"spp must be a multiple of {MEDIAN_GROUPS}")
    mi = load_mitsuba()
    textures = Textures(mi, seed)
    extra = {
        "integrator": {"type": "path", "max_depth": MAX_DEPTH},
        "sensor": shot.camera.sensor(mi, size),
        "environment": shot.lighting.emitter(mi, hdri_folder),
    }
    scene = _scene(mi, shot.objects, textures.principled, extra)
    groups = [mi.render(scene, seed=seed * MEDIAN_GROUPS + k, spp=spp // MEDIAN_GROUPS) for k in range(MEDIAN_GROUPS)]
    return np.median(np.array(groups, dtype=np.float32), axis=0)


@dataclass(frozen=True)
class GBuffers:
    """The G-buffers of one view as floats, each pixel the average of its samples.

    basecolor [H, W, 3] sRGB-encoded in [0, 1]; normal [H, W, 3] unit vectors in camera space (x right, y up,
    z towards the camera); depth [H, W] metres along the viewing axis; roughness, metallic [H, W] in [0, 1].
    """

    basecolor: Array
    normal: Array
    depth: Array
    roughness: Array
    metallic: Array


def render_gbuffers(objects: tuple[Shape, ...], camera: Camera, size: tuple[int, int], spp: int, seed: int) -> GBuffers:
    """G-buffers of ``objects`` seen by ``camera`` at ``size`` (width, height); the floor must fill the frame."""
    mi = load_mitsuba()
    textures = Textures(mi, seed)
    sensor = camera.sensor(mi, size)
    geometry = _scene(
        mi,
        objects,
        textures.basecolor_standin,
        {"integrator": {"type": "aov", "aovs": "a:albedo,p:position,n:sh_normal"}, "sensor": sensor},
    )
    finish = _scene(
        mi, objects, textures.finish_standin, {"integrator": {"type": "aov", "aovs": "a:albedo"}, "sensor": sensor}
    )
    albedo_position_normal = np.array(mi.render(geometry, seed=seed, spp=spp), dtype=np.float64)
    roughness_metallic = np.array(mi.render(finish, seed=seed, spp=spp), dtype=np.float64)
    rotation = camera.rotation()
    depth = (albedo_position_normal[..., 3:6] - np.array(camera.position)) @ -rotation[:, 2]
    if not depth.min() > 0 or depth.max() > FLOOR_HALF_SIZE:
        raise ValueError("the floor must fill the frame: every pixel needs a surface well inside the floor")
    return GBuffers(
        basecolor=linear_to_srgb(np.clip(albedo_position_normal[..., :3], 0.0, 1.0)),
        normal=normalize(albedo_position_normal[..., 6:9] @ rotation),
        depth=depth,
        roughness=roughness_metallic[..., 0],
        metallic=roughness_metallic[..., 1],
    )


def to_uint8(values: Array) -> Array:
    """Values in [0, 1] rounded to uint8."""
    return np.round(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)


def encode_gbuffers(gbuffers: GBuffers) -> dict[str, Array]:
    """The ground-truth files' pixels (encodings: GROUND_TRUTH_README): uint8 [H, W, 3] or [H, W], uint16 depth."""
    return {
        "basecolor": to_uint8(gbuffers.basecolor),
        "normal": to_uint8((gbuffers.normal + 1) / 2),
        "depth": np.round(gbuffers.depth / DEPTH_UNIT).astype(np.uint16),
        "roughness": to_uint8(gbuffers.roughness),
        "metallic": to_uint8(gbuffers.metallic),
    }


def reinhard(radiance: Array) -> Array:
    """The forward renderer's tone curve for environment maps: L (1 + L / 256) / (1 + L), 1 at L = 16."""
    return radiance * (1 + radiance / 256) / (1 + radiance)


def display(radiance: Array, exposure: float = 1.0) -> Array:
    """Linear radiance [..., 3] -> uint8 sRGB: exposure, Reinhard (max 16), clip to [0, 1], sRGB encoding."""
    return to_uint8(linear_to_srgb(np.clip(reinhard(radiance * exposure), 0.0, 1.0)))


# ----------------------------------------------------------------------------------------------- the examples

SPHERES = (
    Floor(TILED_FLOOR),
    Sphere((-1.3, 0.5, 0.0), 0.5, RED_PLASTIC),
    Sphere((0.1, 0.6, -0.9), 0.6, CHROME),
    Sphere((1.3, 0.4, 0.4), 0.4, GOLD),
    Box((-0.2, 1.0), (0.35, 0.35, 0.35), 30.0, CHECKED_TILES),
    Sphere((0.8, 0.25, 1.6), 0.25, BLUE_PAINT),
)
BLOCKS = (
    Floor(TILED_FLOOR),
    Box((-1.0, -0.4), (0.5, 0.6, 0.4), -20.0, BLUE_PAINT),
    Cylinder((0.9, -0.8), 0.3, 1.8, WHITE_MATTE),
    Sphere((0.3, 0.45, 0.6), 0.45, COPPER),
    Sphere((-0.6, 0.3, 1.3), 0.3, GREEN_RUBBER),
    Sphere((1.5, 0.35, 0.9), 0.35, CHROME),
)
ROW = (
    Floor(TILED_FLOOR),
    Sphere((-2.0, 0.4, 0.0), 0.4, MARBLE),
    Sphere((-1.0, 0.4, 0.0), 0.4, GREEN_RUBBER),
    Sphere((0.0, 0.4, 0.0), 0.4, RED_PLASTIC),
    Sphere((1.0, 0.4, 0.0), 0.4, COPPER),
    Sphere((2.0, 0.4, 0.0), 0.4, GOLD),
    Box((0.0, -1.4), (1.6, 0.25, 0.3), 0.0, CHECKED_TILES),
)
SPHERES_ON_CONCRETE = (Floor(CONCRETE), *SPHERES[1:])  # a plain floor keeps the per-frame ground truth small
FRONT = Camera((0.6, 3.6, 5.2), (0.0, 0.2, 0.2))
ROW_CAMERA = Camera((0.0, 3.5, 5.0), (0.0, 0.2, -0.3))
DAYLIGHT_EXPOSURE = 0.5  # inputs under the sun are exposed a stop down; the relit ground truth never is

IMAGES: dict[str, Shot] = {
    "image_1": Shot(SPHERES, FRONT, Lighting.in_world("clear_sky_sun"), DAYLIGHT_EXPOSURE),
    "image_2": Shot(BLOCKS, Camera((-2.2, 3.6, 4.6), (0.2, 0.3, 0.0)), Lighting.in_world("pink_sunrise")),
    "image_3": Shot(ROW, ROW_CAMERA, Lighting.in_world("overcast")),
    "image_4": Shot(SPHERES, Camera((-3.2, 3.7, 4.2), (0.0, 0.3, 0.0)), Lighting.in_world("street_lamp_night"), 2.0),
    "image_5": Shot(
        BLOCKS, Camera((2.8, 3.0, 3.4), (0.3, 0.4, 0.1)), Lighting.in_world("clear_sky_sun", 90.0), DAYLIGHT_EXPOSURE
    ),
}


def orbit_frames() -> list[Shot]:
    """video1: the camera swings 40 degrees around the spheres under the clear sky, fixed in the world."""
    lighting = Lighting.in_world("clear_sky_sun")
    angles = np.linspace(-20.0, 20.0, VIDEO_FRAMES)
    return [Shot(SPHERES_ON_CONCRETE, FRONT.orbited(a), lighting, DAYLIGHT_EXPOSURE) for a in angles]


def turning_light_frames() -> list[Shot]:
    """video2: the row of spheres seen by a still camera under the clear sky turning 180 degrees about +Y."""
    yaws = np.linspace(0.0, 180.0, VIDEO_FRAMES)
    return [Shot(ROW, ROW_CAMERA, Lighting.in_world("clear_sky_sun", yaw), DAYLIGHT_EXPOSURE) for yaw in yaws]


VIDEOS: dict[str, Callable[[], list[Shot]]] = {"video1": orbit_frames, "video2": turning_light_frames}

RELIT_HDRIS = tuple(ENVIRONMENTS)


@dataclass(frozen=True)
class Clip:
    """An example (one frame: an image) and the size (width, height) of its G-buffer ground truth."""

    name: str
    frames: tuple[Shot, ...]
    gbuffer_size: tuple[int, int]

    def ground_truth_views(self) -> list[tuple[str, tuple[Shape, ...], Camera]]:
        """(file name prefix, objects, camera) per ground-truth frame: one for all frames of a still view."""
        views = [(shot.objects, shot.camera) for shot in self.frames]
        if len(set(views)) == 1:
            return [("", *views[0])]
        return [(f"{index:04d}.", *view) for index, view in enumerate(views)]


def example_clips() -> list[Clip]:
    """The images (one frame each) and the videos."""
    clips = [Clip(stem, (shot,), (WIDTH, HEIGHT)) for stem, shot in IMAGES.items()]
    return clips + [Clip(stem, tuple(make()), VIDEO_GROUND_TRUTH_SIZE) for stem, make in VIDEOS.items()]


# ----------------------------------------------------------------------------------------------- writing


def write_image(path: Path, image: Array, params: list[int] | None = None) -> None:
    """Write a uint8/uint16 RGB or grey image with OpenCV (format from the suffix)."""
    bgr = image[..., ::-1] if image.ndim == 3 else image
    if not cv2.imwrite(str(path), np.ascontiguousarray(bgr), params or []):
        raise OSError(f"could not write {path}")


def write_video(path: Path, frames: list[Array], crf: int) -> None:
    """Write uint8 RGB frames as an H.264 MP4 (yuv420p) at VIDEO_FPS with the imageio-ffmpeg binary, no version tags."""
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (frames[0].shape[1], frames[0].shape[0]),
        fps=VIDEO_FPS,
        codec="libx264",
        quality=None,
        macro_block_size=1,
        output_params=["-crf", str(crf), "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1"],
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def write_hdris(folder: Path, height: int = HDRI_HEIGHT) -> None:
    """<stem>.hdr of every entry of ENVIRONMENTS, ``height`` x 2 ``height``."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem, environment in ENVIRONMENTS.items():
        write_hdr(folder / f"{stem}.hdr", environment.radiance(height))


def write_inputs(root: Path, clip: Clip, seed: int) -> None:
    """image_examples/<clip>.jpg (one frame) or video_examples/<clip>.mp4."""
    hdris = root / "hdri_examples"
    if len(clip.frames) == 1:
        shot = clip.frames[0]
        image = display(render_radiance(shot, (WIDTH, HEIGHT), IMAGE_SPP, seed, hdris), shot.exposure)
        write_image(root / "image_examples" / f"{clip.name}.jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        return
    frames = []
    for shot in clip.frames:
        radiance = render_radiance(shot, VIDEO_SIZE, VIDEO_SPP, seed, hdris)
        frames.append(cv2.resize(display(radiance, shot.exposure), (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC))
    write_video(root / "video_examples" / f"{clip.name}.mp4", frames, VIDEO_CRF)


def write_ground_truth(root: Path, clip: Clip, seed: int) -> None:
    """ground_truth/<clip>/: the G-buffers, and relit/ renders under each HDRI attached to the camera."""
    folder = root / "ground_truth" / clip.name
    (folder / "relit").mkdir(parents=True, exist_ok=True)
    views = clip.ground_truth_views()
    for prefix, objects, camera in views:
        gbuffers = render_gbuffers(objects, camera, clip.gbuffer_size, GBUFFER_SPP, seed)
        for name, image in encode_gbuffers(gbuffers).items():
            write_image(folder / f"{prefix}{name}.png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    spp = RELIT_SPP if len(views) == 1 else VIDEO_SPP
    for hdri in RELIT_HDRIS:
        shots = [Shot(objects, camera, Lighting.on_camera(hdri, camera)) for _, objects, camera in views]
        frames = [display(render_radiance(shot, RELIT_SIZE, spp, seed, root / "hdri_examples")) for shot in shots]
        if len(frames) == 1:
            write_image(folder / "relit" / f"{hdri}.jpg", frames[0], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        else:
            write_video(folder / "relit" / f"{hdri}.mp4", frames, RELIT_VIDEO_CRF)


def ground_truth_readme(clips: list[Clip]) -> str:
    """ground_truth/README.md: the layout, the encodings and one line per clip."""
    rows = []
    for clip in clips:
        first = clip.frames[0]
        per_frame = len(clip.ground_truth_views()) > 1
        width, height = clip.gbuffer_size
        files = f"`<frame:04d>.<pass>.png`, {width}x{height}" if per_frame else f"`<pass>.png`, {width}x{height}"
        relit = "`relit/<hdri>.mp4` (one frame per video frame)" if per_frame else "`relit/<hdri>.jpg`"
        turning = " (turning)" if len({shot.lighting for shot in clip.frames}) > 1 else ""
        rows.append(f"| {clip.name} | {len(clip.frames)} | {first.lighting.hdri}{turning} | {files} | {relit} |")
    return GROUND_TRUTH_README.format(
        table="\n".join(rows),
        hdris=", ".join(f"`{hdri}`" for hdri in RELIT_HDRIS),
        relit=f"{RELIT_SIZE[0]}x{RELIT_SIZE[1]}",
        depth_unit=f"{DEPTH_UNIT * 100:g} cm",
        jpeg=JPEG_QUALITY,
        crf=RELIT_VIDEO_CRF,
    )


GROUND_TRUTH_README = """\
# Ground truth of the example images and videos

Made by `scripts/make_example_assets.py` with Mitsuba 3 together with `image_examples/` and `video_examples/`,
from the same scenes, cameras and seed: one folder per example (an image or a video clip, named like its input).

| clip | frames | input lit by | G-buffers | relit renders |
| --- | --- | --- | --- | --- |
{table}

A file without a frame number holds the ground truth of every frame of its clip (the camera of video2 does not
move, so its G-buffers and relit renders are the same for all 60 frames). Frame numbers count the video's frames
from 0, as `scripts/dataproc_extract_frames_from_video.py` numbers them (`frame_00000.jpg` is frame 0).

G-buffers (PNG, every pixel the average of its samples, like the image):

- `basecolor.png`: RGB, sRGB-encoded 8 bit: the principled BSDF's base_color, as the renderer writes basecolor.
- `normal.png`: RGB 8 bit = (n + 1) / 2 of the unit shading normal n in camera space: x right, y up, z towards the
  camera (a surface facing the camera is (0.5, 0.5, 1.0)).
- `depth.png`: grey 16 bit, distance from the camera along its viewing axis in units of {depth_unit} (0 would mean
  no surface; the floor fills every frame). Absolute, not normalised like the renderer's depth pass: evaluation
  aligns scale and shift, which needs true depth.
- `roughness.png`: grey 8 bit, principled roughness (GGX alpha = roughness^2).
- `metallic.png`: grey 8 bit, metallic (0 or 1 inside a surface; mixed only where a pixel covers both).

Relit renders (`relit/<hdri>.jpg` or `.mp4`, {relit}, JPEG quality {jpeg} or H.264 crf {crf}), one per HDRI of
`hdri_examples/`: {hdris}.
Each is the scene under `hdri_examples/<hdri>.hdr` attached to the camera as the forward renderer assumes with its
default identity camera pose: the map's top row along the camera's up, its horizontal centre behind the camera,
radiance at strength 1, tone-mapped like the forward renderer's `env_ldr` condition (Reinhard with maximum 16, then
sRGB). Relight a clip's G-buffers with `--envlight_path asset/examples/hdri_examples/<hdri>.hdr` (default
`--env_rotation 180 --env_flip True`) and compare with these. The input images are lit differently (see the table,
with the HDRI fixed in the world) so that relighting is a real change. Monte Carlo noise and compression limit their
precision: a still's relit render is within 31 to 34 dB PSNR (SSIM 0.93) of one with ten times the samples, so
scores near that are as close as this ground truth can tell.
"""


def main(argv: list[str] | None = None) -> None:
    """Write every asset into --output_dir."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--output_dir",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "asset" / "examples",
        help="Folder that receives hdri_examples/, image_examples/, video_examples/ and ground_truth/ "
        "(default: asset/examples of this repository).",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the samplers and of the random textures.")
    parser.add_argument("--clips", nargs="+", default=None, help="Render only these examples (default: all).")
    args = parser.parse_args(argv)
    clips = example_clips()
    unknown = set(args.clips or []) - {clip.name for clip in clips}
    if unknown:
        parser.error(f"--clips: unknown example(s) {', '.join(sorted(unknown))}")
    write_hdris(args.output_dir / "hdri_examples")
    print("Wrote the HDRIs", flush=True)
    for folder in ("image_examples", "video_examples", "ground_truth"):
        (args.output_dir / folder).mkdir(parents=True, exist_ok=True)
    (args.output_dir / "ground_truth" / "README.md").write_text(ground_truth_readme(clips))
    for clip in clips:
        if args.clips is None or clip.name in args.clips:
            write_inputs(args.output_dir, clip, args.seed)
            write_ground_truth(args.output_dir, clip, args.seed)
            print(f"Wrote {clip.name}", flush=True)


if __name__ == "__main__":
    main()

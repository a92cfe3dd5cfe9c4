"""Reading image files and turning one chunk of them into the model's input video.

Per frame, in the original's order: decode → scale to [0, 1] → composite alpha onto white → resize → centre crop
(zero padding) → 2x − 1 → for ``.exr`` files optionally the original's gamma step. Differences from the original,
none of which changes ordinary 8-bit RGB inputs: the reader is chosen per file (not once per chunk from the first
file), grayscale is replicated to RGB, 16-bit images are divided by 65535, GIF/APNG give their first frame, CMYK is
converted to RGB, NaN/Inf values of float files are replaced (with a warning), each frame is resized on its own (mixed
sizes in one clip work; the original crashes), the gamma step also applies to ``.EXR``. As in the original, EXIF
orientation is *not* applied: a photo stored rotated stays rotated.
"""

from __future__ import annotations

import logging
import os

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # read by OpenCV at its first EXR decode

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import OpenEXR
import torch
import torch.nn.functional as F
from PIL import Image

from cosmos_predict1.errors import UserError

from .fit import FIT_MODES, Placement, fit_frame, place

log = logging.getLogger(__name__)

EXR_GAMMA = 2.2
FINITE_LIMIT = 65504.0  # ±Inf in float images becomes ±this (the largest half float, as for environment maps)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True, kw_only=True)
class Preprocessing:
    """How frames become model input; invalid values raise ``UserError`` when it is built.

    ``resize_resolution``: None resizes to exactly (height, width) (aspect ratio not kept, the original's default);
    one value resizes the shorter side to it (longer side int(value · long / short)); two values are (h, w). The
    result is then centre-cropped to (height, width). ``gamma_encode_exr``: the inverse renderer's step for
    ``.exr`` inputs (clip linear values to [0, 1], power 1/2.2); the forward renderer does not use it.
    ``signed_exr``: ``.exr`` files already hold values in [−1, 1] (normals written by ``--output_format exr``), so
    the 2x − 1 step is skipped for them. ``fit``: "stretch" (the resize + crop above) or an aspect-keeping "crop"
    or "pad" (see ``fit.py``; ``resize_resolution`` must then be None).
    """

    height: int
    width: int
    resize_resolution: tuple[int, ...] | None = None
    gamma_encode_exr: bool = False
    signed_exr: bool = False
    fit: str = "stretch"

    def __post_init__(self) -> None:
        if self.fit not in FIT_MODES:
            raise UserError(f"--fit {self.fit}: choose one of {', '.join(FIT_MODES)}.")
        if self.fit != "stretch" and self.resize_resolution is not None:
            raise UserError(f"--fit {self.fit} sizes frames itself: leave out --resize_resolution.")
        if self.height < 1 or self.width < 1:
            raise UserError(f"--height and --width must be positive (got {self.height} x {self.width}).")
        size = self.resize_resolution
        if size is not None and (len(size) not in (1, 2) or min(size) < 1):
            raise UserError(f"--resize_resolution takes one or two positive values (H W), got {list(size)}.")

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) a frame of ``height`` × ``width`` is resized to before the crop (torchvision ``Resize`` rule)."""
        size = self.resize_resolution or (self.height, self.width)
        if len(size) == 2:
            return size[0], size[1]
        short, long = min(height, width), max(height, width)
        new_long = int(size[0] * long / short)
        return (size[0], new_long) if height <= width else (new_long, size[0])

    def placement(self, path: Path) -> Placement:
        """Where the frames of a clip whose first file is ``path`` land in the model frame (for ``fit.restore``)."""
        return place(read_pixels(Path(path)).shape[:2], (self.height, self.width), self.fit)


def load_frames(paths: Sequence[Path], preprocessing: Preprocessing) -> torch.Tensor:
    """The files of one chunk as a float32 video ``[3, T, H, W]`` (T = len(paths)).

    Values are in [−1, 1], except linear EXR values above 1 when ``gamma_encode_exr`` is off (then 2x − 1 > 1).
    """
    return torch.stack([_frame(Path(path), preprocessing) for path in paths], dim=1)


def _frame(path: Path, preprocessing: Preprocessing) -> torch.Tensor:
    """One file as float32 ``[3, H, W]`` in [−1, 1]."""
    image = torch.from_numpy(read_image(path)).permute(2, 0, 1)
    if preprocessing.fit == "stretch":
        image = resize(image, preprocessing.resized_size(*image.shape[-2:]))
        image = center_crop(image, preprocessing.height, preprocessing.width)
    else:
        target = (preprocessing.height, preprocessing.width)
        image = fit_frame(image, place(tuple(image.shape[-2:]), target, preprocessing.fit))
    if preprocessing.signed_exr and path.suffix.lower() == ".exr":
        return image
    image = image * 2 - 1
    if preprocessing.gamma_encode_exr and path.suffix.lower() == ".exr":
        image = ((image + 1) / 2).clip(0, 1).pow(1 / EXR_GAMMA) * 2 - 1
    return image


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[C, h, w]`` → ``[C, size[0], size[1]]``, bilinear with antialiasing (torchvision ``Resize`` on tensors)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def center_crop(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[C, h, w]`` → ``[C, height, width]`` as torchvision ``CenterCrop``.

    A side shorter than the crop is first zero-padded, ⌊Δ/2⌋ before and ⌈Δ/2⌉ after; the crop offset is then
    round((size − crop)/2) with Python's round-half-to-even.
    """
    pad_h, pad_w = max(height - image.shape[-2], 0), max(width - image.shape[-1], 0)
    if pad_h or pad_w:
        image = F.pad(image, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2))
    top = round((image.shape[-2] - height) / 2)
    left = round((image.shape[-1] - width) / 2)
    return image[:, top : top + height, left : left + width]


def read_image(path: Path) -> np.ndarray:
    """One image file as float32 ``[h, w, 3]`` RGB.

    8-bit values are divided by 255 and 16-bit values by 65535 (→ [0, 1]); float files (EXR) keep their linear
    values, except that NaN becomes 0 and ±Inf ±65504, with a warning (one NaN would spread over the whole output).
    Grayscale is replicated to three channels; an alpha channel is composited onto white. An unreadable, corrupt or
    unsupported file raises ``UserError`` naming it.
    """
    return _finite(_to_rgb(read_pixels(path), path), path)


def _finite(image: np.ndarray, path: Path) -> np.ndarray:
    """``image`` with NaN → 0 and ±Inf → ±FINITE_LIMIT, logging a warning that names ``path`` when any is found."""
    invalid = ~np.isfinite(image)
    if not invalid.any():
        return image
    log.warning("%s: %d NaN or infinite value(s) replaced (NaN → 0, ±Inf → ±%g)", path, invalid.sum(), FINITE_LIMIT)
    return np.nan_to_num(image, nan=0.0, posinf=FINITE_LIMIT, neginf=-FINITE_LIMIT)


def read_pixels(path: Path) -> np.ndarray:
    """Decoded pixels as stored: ``[h, w]`` or ``[h, w, C]``, RGB(A) channel order, the file's dtype.

    ``.exr`` and Radiance ``.hdr`` files come back as linear float32. ``UserError`` if the file cannot be read.
    """
    try:
        return _decode(path)
    except Exception as error:  # decoders raise many types; the user needs the file name
        raise UserError(
            f"Cannot read image {path} (missing, corrupt or not an image): {error}; replace the file or remove it."
        ) from error


def _decode(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".exr":
        return _read_exr(path)
    if suffix == ".hdr":
        return _read_with_opencv(path)
    if suffix == ".png" and _png_bit_depth(path) == 16:
        return _read_with_opencv(path)  # Pillow reduces 16-bit colour PNGs to 8 bits
    return _read_with_pillow(path)


def _read_with_pillow(path: Path) -> np.ndarray:
    """The first frame (of a GIF/APNG too) via Pillow; CMYK (print JPEGs and TIFFs) converted to RGB."""
    with Image.open(path) as image:
        cmyk = image.mode == "CMYK"  # else its 4 channels would be taken for RGBA
    return iio.imread(path, plugin="pillow", index=0, mode="RGB" if cmyk else None)


def _png_bit_depth(path: Path) -> int:
    """Bits per sample from the PNG header (IHDR is always the first chunk)."""
    with open(path, "rb") as file:
        header = file.read(25)
    if len(header) < 25 or not header.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    return header[24]


def _read_exr(path: Path) -> np.ndarray:
    """OpenCV as the original; the OpenEXR package where this OpenCV build has no (enabled) EXR codec."""
    if cv2.haveImageReader(str(path)):
        try:
            return _read_with_opencv(path)
        except (cv2.error, ValueError):
            pass
    return _read_with_openexr(path)


def _read_with_opencv(path: Path) -> np.ndarray:
    """``cv2.imread`` unchanged (bit depth and alpha kept), BGR(A) reordered to RGB(A)."""
    with _quiet_opencv():
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("OpenCV could not decode it")
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        image = image[..., [2, 1, 0, 3][: image.shape[-1]]]
    return image


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV's own log silenced for the block: a file it cannot decode is reported once, as a ``UserError``."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _read_with_openexr(path: Path) -> np.ndarray:
    """Pixels of the first part: RGB(A), else luminance Y, else the only channel."""
    channels = OpenEXR.File(str(path)).channels()
    for name in ("RGBA", "RGB", "Y"):
        if name in channels:
            return channels[name].pixels
    if len(channels) == 1:
        return next(iter(channels.values())).pixels
    raise ValueError(f"no RGB or Y channels (has {', '.join(channels)})")


def _to_rgb(image: np.ndarray, path: Path) -> np.ndarray:
    """Decoded pixels → float32 ``[h, w, 3]``: scaled to [0, 1] by bit depth, alpha onto white, gray → RGB."""
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255
    elif image.dtype == np.uint16:
        image = image.astype(np.float32) / 65535
    elif image.dtype == np.bool_ or image.dtype.kind == "f":
        image = image.astype(np.float32)
    else:
        raise UserError(f"Cannot read image {path}: unsupported pixel type {image.dtype}; convert it to 8 or 16 bits.")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] > 4:
        raise UserError(f"Cannot read image {path}: unsupported layout {list(image.shape)}; convert it to RGB.")
    if image.shape[-1] in (2, 4):
        alpha = image[..., -1:]
        image = image[..., :-1] * alpha + (1 - alpha)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image

"""Reading image files, and turning frames (from files or arrays) into the model's input video.

Per frame, in the original's order: decode → scale to [0, 1] → composite alpha onto white → resize → centre crop
(zero padding) → 2x − 1 → for ``.exr`` files optionally the original's gamma step. Differences from the original,
none of which changes ordinary 8-bit RGB inputs: the reader is chosen per file (not once per chunk from the first
file), grayscale is replicated to RGB, 16-bit images are divided by 65535, GIF/APNG give their first frame, CMYK is
converted to RGB, NaN/Inf values of float files are replaced (with a warning), each frame is resized on its own (mixed
sizes in one clip work; the original crashes), the gamma step also applies to ``.EXR``, a file whose header declares
more pixels than the limit of ``pixel_limit`` is refused before it is decoded. As in the original, EXIF
orientation is *not* applied: a photo stored rotated stays rotated.
"""

from __future__ import annotations

import logging
import os

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # read by OpenCV at its first EXR decode

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cosmos_predict1.errors import UserError

from .fit import Placement, fit_frame, place
from .integrity import PNG_SIGNATURE
from .options import MAX_RESIZED_PIXELS, FrameOptions
from .pixel_limit import check_declared_size

log = logging.getLogger(__name__)

EXR_GAMMA = 2.2
FINITE_LIMIT = 65504.0  # ±Inf in float images becomes ±this (the largest half float, as for environment maps)


# How a frame's values encode the model's [−1, 1]: "display" values in [0, 1] (8-bit images, the usual case) map by
# 2x − 1; "linear" values (the inverse renderer's EXR inputs) are gamma-encoded after resizing, as the original does;
# "signed" values already are in [−1, 1] (normals written by --output_format exr) and stay as they are.
ENCODINGS = ("display", "linear", "signed")


def file_encoding(path: Path, *, linear_exr: bool = False, signed_exr: bool = False) -> str:
    """The encoding of a frame file: ``.exr`` files are "linear" or "signed" where asked, else "display"."""
    if path.suffix.lower() == ".exr":
        if linear_exr:
            return "linear"
        if signed_exr:
            return "signed"
    return "display"


def resized_size(options: FrameOptions, height: int, width: int) -> tuple[int, int]:
    """(h, w) a ``height × width`` frame is resized to before the crop (torchvision ``Resize`` rule).

    ``UserError`` when one value of ``--resize_resolution`` (the shorter side) would make a frame of extreme aspect
    ratio larger than ``MAX_RESIZED_PIXELS``.
    """
    size = options.resize_resolution or (options.height, options.width)
    if len(size) == 2:
        return size[0], size[1]
    short, long = min(height, width), max(height, width)
    new_long = int(size[0] * long / short)
    if size[0] * new_long > MAX_RESIZED_PIXELS:
        raise UserError(
            f"--resize_resolution {size[0]}: a {height}×{width} input would become {size[0]}×{new_long} pixels "
            f"before the crop (more than {MAX_RESIZED_PIXELS}); give a smaller value or two values (H W)."
        )
    return (size[0], new_long) if height <= width else (new_long, size[0])


def clip_placement(options: FrameOptions, frame_shape: tuple[int, ...]) -> Placement | None:
    """Where frames of ``frame_shape`` (h, w, ...) land in the model frame; None when outputs stay the model frame."""
    if options.keeps_model_frame:
        return None
    return place(tuple(frame_shape[:2]), (options.height, options.width), options.fit)


def prepare_clip(frames: Sequence[np.ndarray], options: FrameOptions, encodings: Sequence[str]) -> torch.Tensor:
    """RGB frames float32 ``[h, w, 3]`` (see ``as_rgb``) → the model's input video float32 ``[3, T, H, W]``.

    Each frame is resized on its own (mixed sizes work) and mapped to [−1, 1] by its encoding (``ENCODINGS``); linear
    values above 1 stay above 1 only when not gamma-encoded.
    """
    return torch.stack([_prepare_frame(frame, options, code) for frame, code in zip(frames, encodings)], dim=1)


def _prepare_frame(frame: np.ndarray, options: FrameOptions, encoding: str) -> torch.Tensor:
    """One frame ``[h, w, 3]`` → float32 ``[3, H, W]``."""
    image = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)
    if options.fit == "stretch":
        image = resize(image, resized_size(options, *image.shape[-2:]))
        image = center_crop(image, options.height, options.width)
    else:
        target = (options.height, options.width)
        image = fit_frame(image, place(tuple(image.shape[-2:]), target, options.fit))
    if encoding == "signed":
        return image
    image = image * 2 - 1
    if encoding == "linear":
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
    """One image file as float32 ``[h, w, 3]`` RGB (see ``as_rgb``); ``UserError`` naming an unreadable file."""
    return as_rgb(read_pixels(path), str(path))


def as_rgb(image: np.ndarray, source: str) -> np.ndarray:
    """Decoded pixels ``[h, w]`` or ``[h, w, C]`` (C ≤ 4) → float32 ``[h, w, 3]`` RGB.

    8-bit values are divided by 255 and 16-bit values by 65535 (→ [0, 1]); float values (EXR) stay as they are,
    except that NaN becomes 0 and ±Inf ±65504, with a warning naming ``source`` (one NaN would spread over the whole
    output). Grayscale is replicated to three channels; an alpha channel is composited onto white. Other dtypes and
    layouts raise ``UserError`` naming ``source``.
    """
    image = np.asarray(image)
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255
    elif image.dtype == np.uint16:
        image = image.astype(np.float32) / 65535
    elif image.dtype == np.bool_ or image.dtype.kind == "f":
        image = image.astype(np.float32)
    else:
        raise UserError(
            f"Cannot read image {source}: unsupported pixel type {image.dtype}; convert it to 8 or 16 bits."
        )
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or not 1 <= image.shape[-1] <= 4 or min(image.shape[:2]) < 1:
        raise UserError(f"Cannot read image {source}: unsupported layout {list(image.shape)}; convert it to RGB.")
    if image.shape[-1] in (2, 4):
        alpha = image[..., -1:]
        image = image[..., :-1] * alpha + (1 - alpha)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return _finite(image, source)


def _finite(image: np.ndarray, source: str) -> np.ndarray:
    """``image`` with NaN → 0 and ±Inf → ±FINITE_LIMIT, logging a warning that names ``source`` when any is found."""
    invalid = ~np.isfinite(image)
    if not invalid.any():
        return image
    log.warning("%s: %d NaN or infinite value(s) replaced (NaN → 0, ±Inf → ±%g)", source, invalid.sum(), FINITE_LIMIT)
    return np.nan_to_num(image, nan=0.0, posinf=FINITE_LIMIT, neginf=-FINITE_LIMIT)


def read_pixels(path: Path) -> np.ndarray:
    """Decoded pixels as stored: ``[h, w]`` or ``[h, w, C]``, RGB(A) channel order, the file's dtype.

    ``.exr`` and Radiance ``.hdr`` files come back as linear float32. ``UserError`` if the file cannot be read, and
    before decoding when its header declares more pixels than the limit (``pixel_limit.check_declared_size``).
    """
    try:
        check_declared_size(path)
        return _decode(path)
    except UserError:
        raise
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
    import OpenEXR  # only EXR inputs need it

    channels = OpenEXR.File(str(path)).channels()
    for name in ("RGBA", "RGB", "Y"):
        if name in channels:
            return channels[name].pixels
    if len(channels) == 1:
        return next(iter(channels.values())).pixels
    raise ValueError(f"no RGB or Y channels (has {', '.join(channels)})")

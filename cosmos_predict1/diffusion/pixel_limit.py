"""The pixel limit of decoded files: every image, HDR/EXR map and video frame is checked by its declared size, read
from the file's header, before any decoder allocates its pixels.

A small file can declare a huge image (a 1.7 MB PNG of 30000 × 30000 16-bit pixels decodes to 5.4 GB, and to 11 GB
as float RGB); decoding it would be killed for lack of memory without a word. The limit is ``DEFAULT_MAX_PIXELS``
(16384 × 16384: 16k HDRIs and 200-megapixel photos pass; about 3.2 GB as float32 RGB) unless the environment
variable ``COSMOS_MAX_PIXELS`` gives another count. A video read whole into memory (the evaluation's ground truth)
may hold ``VIDEO_FACTOR`` times the limit over all its frames: its 8-bit frames take a quarter of the memory of the
float32 RGB that one image is decoded to. The headers are read by the library that knows the format: OpenEXR for
``.exr`` (every part's data window), a parser of the Radiance resolution line for ``.hdr``, Pillow (lazily, without
decoding) for the rest; videos report their frame size in ffmpeg's metadata.

Pillow's own decompression-bomb guard covers only Pillow, warns from 89 megapixels, refuses from 179 and cannot be
raised per call. The scripts switch it off (``replace_pillow_guard``), as this check replaces it for every decoder;
importing the package leaves it alone, so a Python caller's process keeps Pillow's stricter guard.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from PIL import Image

from cosmos_predict1.errors import UserError

DEFAULT_MAX_PIXELS = 16384 * 16384
MAX_PIXELS_VARIABLE = "COSMOS_MAX_PIXELS"
VIDEO_FACTOR = 4
RADIANCE_HEADER_BYTES = 1 << 16  # the variable lines before the resolution line; real headers take ~100 bytes
_RADIANCE_RESOLUTION = re.compile(rb"([-+])([XY]) (\d{1,10}) ([-+])([XY]) (\d{1,10})")


def replace_pillow_guard() -> None:
    """Switch off Pillow's decompression-bomb guard in favour of this module's limit, for the whole process: for the
    scripts' own processes only (see the module docstring)."""
    Image.MAX_IMAGE_PIXELS = None


class TooManyPixels(UserError):
    """A file declares more pixels than the limit; ``str(err)`` names it, its size, the limit and how to raise it."""


def max_pixels() -> int:
    """The largest pixel count of one decoded image or frame: ``COSMOS_MAX_PIXELS``, else ``DEFAULT_MAX_PIXELS``.

    ``UserError`` when the variable is set to anything but a whole number ≥ 1.
    """
    text = os.environ.get(MAX_PIXELS_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    if not re.fullmatch(r"[0-9]{1,30}", text) or int(text) < 1:
        raise UserError(
            f"{MAX_PIXELS_VARIABLE}={text!r}: must be a whole number of pixels of at least 1 (default "
            f"{DEFAULT_MAX_PIXELS}); fix or unset it."
        )
    return int(text)


def declared_sizes(path: Path) -> list[tuple[int, int]]:
    """The (height, width) of each image that decoding ``path`` allocates, from its header only.

    ``.exr``: every part's data window (the OpenEXR reader loads all parts); ``.hdr``: the Radiance resolution
    line; anything else: Pillow's size of the first frame. Raises the parsers' own errors (``ValueError``,
    ``OSError``, ...) for a file that is no such image.
    """
    suffix = path.suffix.lower()
    if suffix == ".exr":
        return _exr_sizes(path)
    if suffix == ".hdr":
        return [_radiance_size(path)]
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError as err:  # only where Pillow's guard is on (see replace_pillow_guard)
        raise TooManyPixels(
            f"{path}: {str(err).rstrip('.')}; shrink the file, or call {__name__}.replace_pillow_guard() to rely on "
            f"{MAX_PIXELS_VARIABLE} alone."
        ) from err
    return [(height, width)]


def check_declared_size(path: Path) -> None:
    """``TooManyPixels`` naming ``path``, its declared size and the limit (``max_pixels``) when it declares more;
    the parsers' own errors for a header that cannot be read (see ``declared_sizes``)."""
    sizes = declared_sizes(path)
    described = " + ".join(f"{width}×{height}" for height, width in sizes)
    _check(path, described, sum(height * width for height, width in sizes), max_pixels())


def check_frame_size(path: Path, width: int, height: int, frames: int = 1) -> None:
    """``TooManyPixels`` unless video ``path``'s frames of ``width × height`` (metadata) stay within the limit, and, for
    a video read whole (``frames`` > 1, its frame count), ``VIDEO_FACTOR`` × the limit over all frames."""
    limit = max_pixels()
    _check(path, f"frames of {width}×{height}", width * height, limit)
    if frames > 1:
        whole = f"{frames} frames of {width}×{height}"
        _check(path, whole, frames * width * height, VIDEO_FACTOR * limit, f" ({VIDEO_FACTOR}× for a whole video)")


def _check(path: Path, described: str, pixels: int, limit: int, note: str = "") -> None:
    """The one refusal line: what ``path`` declares, the limit, how to raise it."""
    if pixels > limit:
        raise TooManyPixels(
            f"{path}: declares {described} pixels ({pixels:,}), more than the limit of {limit:,}{note}; "
            f"shrink the file, or raise the limit with the environment variable {MAX_PIXELS_VARIABLE}=<pixels> if "
            "the machine has the memory."
        )


def _exr_sizes(path: Path) -> list[tuple[int, int]]:
    import OpenEXR  # only EXR inputs need it

    sizes = []
    for part in OpenEXR.File(str(path), header_only=True).parts:
        (x_min, y_min), (x_max, y_max) = (tuple(int(v) for v in corner) for corner in part.header["dataWindow"])
        sizes.append((max(y_max - y_min + 1, 0), max(x_max - x_min + 1, 0)))
    return sizes


def _radiance_size(path: Path) -> tuple[int, int]:
    """(height, width) of a Radiance ``.hdr``: the line after the header's blank line, e.g. ``-Y 512 +X 1024``."""
    with open(path, "rb") as file:
        head = file.read(RADIANCE_HEADER_BYTES)
    if not head.startswith(b"#?"):
        raise ValueError("not a Radiance HDR file (no #? signature)")
    _, blank, rest = head.partition(b"\n\n")
    match = _RADIANCE_RESOLUTION.match(rest) if blank else None
    if match is None or match[2] == match[5]:
        raise ValueError("no Radiance resolution line (such as -Y 512 +X 1024) after the header")
    sizes = {match[2]: int(match[3]), match[5]: int(match[6])}
    return sizes[b"Y"], sizes[b"X"]

"""Sequences of frames on disk: one image per frame, one image for every frame, or a video file.

Ground truth, predictions and inputs are all read through ``Frames``; pixels come back as float32 ``[h, w, 3]``
(8/16-bit files scaled to [0, 1], EXR values as stored; see ``cosmos_predict1.diffusion.frames.read_image``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import imageio.v2 as imageio_v2
import numpy as np

from cosmos_predict1.diffusion.frames import read_image
from cosmos_predict1.diffusion.pixel_limit import TooManyPixels, check_frame_size
from cosmos_predict1.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".exr", ".tif", ".tiff", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")
VIDEO_CACHE_SIZE = 2  # decoded videos kept in memory (a 57-frame 1280x704 clip is 150 MB)


@dataclass(frozen=True)
class Frames:
    """Frame ``i`` of a sequence: ``files[i]``, else the ``still`` image (the same for every frame), else frame
    ``i`` of ``video``. Exactly one of the three is given."""

    files: Mapping[int, Path] = field(default_factory=dict)
    still: Path | None = None
    video: Path | None = None

    def __post_init__(self) -> None:
        if sum((bool(self.files), self.still is not None, self.video is not None)) != 1:
            raise ValueError("Frames takes exactly one of files, still and video")

    @property
    def count(self) -> int | None:
        """Frames stored (one more than the last index of ``files``); None for a still image."""
        if self.still is not None:
            return None
        if self.video is not None:
            return len(_decoded_video(self.video))
        return max(self.files) + 1

    def has(self, index: int) -> bool:
        """Whether frame ``index`` exists."""
        if self.files:
            return index in self.files
        count = self.count
        return index >= 0 and (count is None or index < count)

    def source(self, index: int) -> Path:
        """The file that holds frame ``index``."""
        return self.files[index] if self.files else self.still or self.video

    def is_exr(self, index: int) -> bool:
        """Whether frame ``index`` comes from an EXR file (float values; normals as signed vectors)."""
        return self.source(index).suffix.lower() == ".exr"

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as float32 ``[h, w, 3]``; ``UserError`` naming the file if it cannot be read."""
        if self.video is not None:
            return _decoded_video(self.video)[index].astype(np.float32) / 255
        return read_image(self.source(index))


def numbered_files(folder: Path, pattern: str) -> dict[int, Path]:
    """Files of ``folder`` whose names match ``pattern`` (a regex with a group ``index``), keyed by that number."""
    if not folder.is_dir():
        return {}
    regex = re.compile(pattern)
    found = {}
    for path in folder.iterdir():
        match = regex.fullmatch(path.name)
        if match and path.suffix.lower() in IMAGE_SUFFIXES:
            found[int(match["index"])] = path
    return found


def single_file(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    """``folder/<stem><suffix>`` for the one suffix (any case) that exists; ``UserError`` if several do."""
    if not folder.is_dir():
        return None
    found = [path for path in folder.iterdir() if path.stem == stem and path.suffix.lower() in suffixes]
    if len(found) > 1:
        names = ", ".join(sorted(path.name for path in found))
        raise UserError(f"{folder}: several files for {stem!r} ({names}); keep one.")
    return found[0] if found else None


def resize(image: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """``[h, w, C]`` → ``[size[0], size[1], C]``: area averaging to shrink, bilinear to enlarge, or nearest."""
    if image.shape[:2] == tuple(size):
        return image
    shrinking = size[0] * size[1] < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(image, (size[1], size[0]), interpolation=interpolation)
    return resized.reshape(size[0], size[1], *image.shape[2:])


@lru_cache(maxsize=VIDEO_CACHE_SIZE)
def _decoded_video(path: Path) -> np.ndarray:
    """Every frame of a video as uint8 ``[T, h, w, 3]`` (ffmpeg via imageio), within the pixel limit of a video read
    whole (``pixel_limit.check_frame_size``): checked from the metadata first, then as frames arrive."""
    try:
        with imageio_v2.get_reader(path, format="FFMPEG") as reader:
            meta = reader.get_meta_data()
            width, height = meta["size"]
            declared = float(meta.get("duration") or 0) * float(meta.get("fps") or 0)
            check_frame_size(path, width, height, max(1, round(declared)) if math.isfinite(declared) else 1)
            frames = []
            for frame in reader:  # the metadata may understate the length
                frames.append(np.asarray(frame)[..., :3])
                check_frame_size(path, width, height, len(frames))
            return np.stack(frames)
    except TooManyPixels:
        raise
    except Exception as error:  # ffmpeg and imageio raise many types; the user needs the file name
        raise UserError(f"Cannot read video {path} (missing, corrupt or not a video): {error}") from error

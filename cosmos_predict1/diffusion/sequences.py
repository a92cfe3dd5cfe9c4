"""Does a clip look like the frames of one video? A folder of unrelated photos read with ``--num_video_frames 57``
becomes one 57-frame "video" of stills, padded with copies of its last photo, and nothing fails; these checks say
so before the models load.

A clip of T > 1 frames is doubtful when the files of its first chunk (at most T):

- have different image sizes (the frames of one video share one size; sizes come from the file headers, and files
  whose header cannot be read are left out of this check);
- are not named as a frame sequence: their names (with extension) must be equal once every run of digits is
  replaced by one placeholder, and their numbers must increase from file to file in processing order
  (``frame_0000.jpg``, ``frame_0001.jpg``, …; gaps are fine, ``frame_2.jpg`` after ``frame_10.jpg`` is not);
- fill fewer than half of the T frames (the rest repeat the last file).

One file alone is a sequence of one; only the padding rule applies to it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from .pixel_limit import declared_sizes
from .progress import counted

DIGITS = re.compile(r"\d+")
MIN_REAL_SHARE = 0.5  # a clip whose files fill less than this share of its frames is mostly padding


def image_sizes(path: Path) -> tuple[tuple[int, int], ...] | None:
    """The (height, width) of each image in the file, from its header (``pixel_limit.declared_sizes``), or None
    where the header cannot be read (a damaged file, or one over the pixel limit: the run reports those itself)."""
    try:
        return tuple(declared_sizes(path))
    except Exception:  # noqa: BLE001 (any failure only leaves the file out of the size check)
        return None


def is_frame_sequence(names: Sequence[str]) -> bool:
    """Whether ``names`` (in processing order) differ only in their numbers, which increase from name to name."""
    templates = {DIGITS.sub("#", name) for name in names}
    numbers = [tuple(int(run) for run in DIGITS.findall(name)) for name in names]
    return len(templates) == 1 and bool(numbers[0]) and all(a < b for a, b in zip(numbers, numbers[1:]))


def padding_doubts(real_frames: int, num_frames: int) -> list[str]:
    """The doubt about a clip whose ``real_frames`` files fill less than half of its ``num_frames`` frames, if so."""
    if real_frames >= MIN_REAL_SHARE * num_frames:
        return []
    padding = num_frames - real_frames
    return [f"only {counted(real_frames, 'file')} for {num_frames} frames (the last one fills the other {padding})"]


def clip_doubts(paths: Sequence[Path], num_frames: int) -> list[str]:
    """Why the files ``paths`` (one clip's first chunk without its padding, in order) may not be one video of
    ``num_frames`` frames; empty when they look like one."""
    doubts = []
    sizes = {size for size in map(image_sizes, paths) if size is not None}
    if len(sizes) > 1:
        doubts.append(f"its files have {len(sizes)} different sizes")
    if len(paths) > 1 and not is_frame_sequence([path.name for path in paths]):
        doubts.append(f"their names ({paths[0].name} … {paths[-1].name}) are not one numbered frame sequence")
    return doubts + padding_doubts(len(paths), num_frames)


def grouping_warning(doubts: dict[str, list[str]], advice: str) -> str | None:
    """One warning line for the clips with doubts (``doubts``: clip name → its doubts, for every clip of the run),
    naming the first doubtful clip and ending with ``advice``; None when no clip has any."""
    doubtful = {name: found for name, found in doubts.items() if found}
    if not doubtful:
        return None
    name, found = next(iter(doubtful.items()))
    if len(doubtful) == 1:
        return f"Clip {name!r} may not be one video: {'; '.join(found)}. {advice}"
    return (
        f"{len(doubtful)} of {len(doubts)} clips may not be one video each, e.g. clip {name!r}: {'; '.join(found)}. "
        f"{advice}"
    )

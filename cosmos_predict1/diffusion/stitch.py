"""Long videos: one continuous video per clip from its overlapping chunks, without jumps at the chunk borders.

A clip longer than one window is processed as chunks that start every T − O frames (``--chunk_mode all
--overlap_n_frames O``). Each chunk is sampled on its own, so neighbouring chunks disagree a little; a hard cut
shows that as a jump. Over the O frames two chunks share, the stitched video cross-fades linearly from the earlier
to the later chunk (weights (i + 1)/(O + 1) for the later one), spreading the difference over the overlap.
Frames are read back from the per-frame files the run wrote and streamed into the video, so memory stays at a
few frames whatever the clip length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from .frames import read_image
from .writers import video_writer


def crossfade_weight(position: int, overlap: int) -> float:
    """Weight of the later chunk at ``position`` (0-based) inside an overlap of ``overlap`` frames."""
    return (position + 1) / (overlap + 1)


def stitched_frames(
    chunk_frames: Sequence[Sequence[Path]], step: int, length: int, read: Callable[[Path], np.ndarray] = read_image
) -> Iterator[np.ndarray]:
    """Frames 0 … length − 1 of a clip, float32 ``[H, W, 3]``, from chunks starting every ``step`` frames.

    ``chunk_frames[k]``: the files of chunk k (it covers frames k·step … k·step + len − 1); where two chunks
    overlap the frames are blended with ``crossfade_weight``.
    """
    for frame in range(length):
        covering = [
            (k, frame - k * step) for k in range(len(chunk_frames)) if 0 <= frame - k * step < len(chunk_frames[k])
        ]
        (first, local_first), *rest = covering
        image = read(chunk_frames[first][local_first])
        if rest:
            later, local_later = rest[0]
            overlap = len(chunk_frames[first]) - step
            weight = crossfade_weight(local_later, overlap)
            image = (1 - weight) * image + weight * read(chunk_frames[later][local_later])
        yield image


def write_stitched_video(
    path: Path,
    chunk_frames: Sequence[Sequence[Path]],
    step: int,
    length: int,
    fps: int,
    read: Callable[[Path], np.ndarray] = read_image,
) -> Path:
    """Stream the stitched clip into an MP4 (values in [0, 1] → uint8 by truncation, like every output)."""
    with video_writer(path, fps) as append:
        for image in stitched_frames(chunk_frames, step, length, read):
            append((np.clip(image, 0, 1) * 255).astype(np.uint8))
    return path

"""Scores of one quantity (a G-buffer pass or a relit render) of one clip, from its chunks and ground truth.

Chunk c's local frame f is frame c·(T − overlap) + f of the clip (T = frames per chunk, overlap = the inverse run's
``--overlap_n_frames``); predictions are resized to the ground truth's resolution. Per-frame metrics align each
chunk on its own (one scale, or scale and shift, for all its frames: each chunk is a separate generation) and are
averaged over frames. The temporal metrics align the whole clip at once, so jumps between chunks count:
``flicker`` is the mean change between consecutive frames of a chunk, ``seam_flicker`` the change across chunk
borders, each beside the ground truth's own (``flicker_gt``, ``seam_flicker_gt``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cosmos_predict1.errors import UserError

from .frames import Frames, resize
from .metrics import frame_change
from .quantities import Quantity


@dataclass(frozen=True)
class Scored:
    """The evaluated frames of one quantity of one clip, in chunk order: ``[N, ...]`` stacks and their indices."""

    prediction: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    indices: list[int]  # clip frame index of each entry
    chunks: list[int]  # chunk of each entry
    local_indices: list[int]  # frame index inside its chunk


def score_quantity(
    quantity: Quantity, chunks: dict[int, Frames], target: Frames, mask: Frames | None, overlap: int, length: int | None
) -> dict[str, float] | None:
    """Mean per-frame metrics and the flicker metrics of one quantity of one clip; None if no frame has ground
    truth. ``length``: frames of the clip (None: as many as predicted)."""
    scored = _collect(quantity, chunks, target, mask, overlap, length)
    if scored is None:
        return None
    per_frame = []
    for chunk in dict.fromkeys(scored.chunks):
        rows = [i for i, c in enumerate(scored.chunks) if c == chunk]
        prediction, truth, valid = scored.prediction[rows], scored.target[rows], scored.mask[rows]
        aligned = quantity.align(prediction, truth, valid)
        per_frame += [quantity.frame_metrics(prediction[i], aligned[i], truth[i], valid[i]) for i in range(len(rows))]
    scores = mean_scores(per_frame)
    scores["frames"] = len(scored.indices)
    scores.update(_temporal_scores(quantity, scored, overlap))
    return scores


def _collect(
    quantity: Quantity, chunks: dict[int, Frames], target: Frames, mask: Frames | None, overlap: int, length: int | None
) -> Scored | None:
    """Decode every predicted frame that has ground truth (resized to the ground truth's size) with its mask."""
    frames_per_chunk = chunks[min(chunks)].count or 1
    step = frames_per_chunk - overlap
    if step < 1 and len(chunks) > 1:
        raise UserError(f"--overlap_n_frames {overlap} must be smaller than the {frames_per_chunk} frames per chunk.")
    predictions, truths, masks, indices, chunk_of, local_of = [], [], [], [], [], []
    for chunk, frames in chunks.items():
        for local in range(frames.count or 1):
            index = chunk * step + local
            if (length is not None and index >= length) or not target.has(index):
                continue
            truth = quantity.decode(target.read(index), target.is_exr(index))
            valid = valid_pixels(quantity, truth, mask, index)
            if not valid.any():
                continue
            predictions.append(quantity.decode(resize(frames.read(local), valid.shape), frames.is_exr(local)))
            truths.append(truth)
            masks.append(valid)
            indices.append(index)
            chunk_of.append(chunk)
            local_of.append(local)
    if not indices:
        return None
    return Scored(np.stack(predictions), np.stack(truths), np.stack(masks), indices, chunk_of, local_of)


def valid_pixels(quantity: Quantity, truth: np.ndarray, mask: Frames | None, index: int) -> np.ndarray:
    """Boolean ``[h, w]``: where the decoded ground truth ``truth`` of frame ``index`` is defined and the clip's mask
    (if any, resized to fit) is white."""
    valid = quantity.valid(truth)
    if mask is not None and mask.has(index):
        valid &= resize(mask.read(index), valid.shape, nearest=True).mean(axis=-1) > 0.5
    return valid


def _temporal_scores(quantity: Quantity, scored: Scored, overlap: int) -> dict[str, float]:
    """flicker (within chunks) and seam_flicker (across chunk borders) with the ground truth's, where frames allow.

    A seam joins the last frame of chunk c to the first frame of chunk c + 1 that chunk c does not cover (its local
    frame ``overlap``), as a clip reads when each frame comes from the first chunk that has it.
    """
    entry = {(chunk, local): i for i, (chunk, local) in enumerate(zip(scored.chunks, scored.local_indices))}
    within = [
        (i, i + 1)
        for i in range(len(scored.indices) - 1)
        if scored.chunks[i + 1] == scored.chunks[i] and scored.indices[i + 1] == scored.indices[i] + 1
    ]
    seams = []
    chunks = list(dict.fromkeys(scored.chunks))
    for chunk, following in zip(chunks, chunks[1:]):
        last = max(local for c, local in entry if c == chunk)
        i, j = entry[chunk, last], entry.get((following, overlap))
        if j is not None and scored.indices[j] == scored.indices[i] + 1:
            seams.append((i, j))
    if not within and not seams:
        return {}
    aligned = quantity.align(scored.prediction, scored.target, scored.mask)
    prediction, truth = quantity.temporal(aligned, scored.target, scored.mask)
    scores = {}
    for name, pairs in (("flicker", within), ("seam_flicker", seams)):
        if pairs:
            masks = [scored.mask[i] & scored.mask[j] for i, j in pairs]
            scores[name] = _mean_change(prediction, pairs, masks)
            scores[f"{name}_gt"] = _mean_change(truth, pairs, masks)
    return scores


def _mean_change(frames: np.ndarray, pairs: list[tuple[int, int]], masks: list[np.ndarray]) -> float:
    return float(np.mean([frame_change(frames[i], frames[j], mask) for (i, j), mask in zip(pairs, masks)]))


def mean_scores(scores: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over the dictionaries that have it (``frames``: their sum)."""
    keys = dict.fromkeys(key for entry in scores for key in entry)
    mean = {}
    for key in keys:
        values = [entry[key] for entry in scores if key in entry]
        mean[key] = int(sum(values)) if key == "frames" else float(np.mean(values))
    return mean

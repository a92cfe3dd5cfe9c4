"""One picture per clip to look at: input, ground truth, and each run's prediction and error map, per pass/light.

The frame shown is the middle frame of each run's first chunk that has ground truth (the image itself for
images). Predictions are aligned on that frame alone, as the metrics align a chunk; error maps use the inferno
colour map from 0 to the range given in the row title; pixels without ground truth are grey.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from cosmos_predict1.diffusion.writers import write_image

from .frames import Frames, resize
from .ground_truth import MASK, RELIT_FOLDER, find_frames, find_input, ground_truth_clips
from .predictions import INVERSE, forward_chunks, inverse_chunks
from .quantities import GBUFFER_QUANTITIES, RELIT, Quantity
from .scoring import valid_pixels

TILE_HEIGHT = 176
LABEL_WIDTH = 190
HEADER_HEIGHT = 28
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.45
TEXT_COLOR = (235, 235, 235)
BACKGROUND = (32, 32, 32)
NO_DATA = (96, 96, 96)


def write_figures(comparison: dict, folder: Path) -> list[Path]:
    """``<folder>/<clip>.png`` ("/" in clip names → "__") for every clip that any run scored; returns the paths."""
    runs = comparison["runs"]
    ground_truth = ground_truth_clips(Path(comparison["ground_truth_folder"]))
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for clip in dict.fromkeys(clip for run in runs for clip in run["clips"]):
        keys = list(dict.fromkeys(key for run in runs for key in run["clips"].get(clip, {})))
        figure = _clip_figure(comparison["kind"], runs, clip, ground_truth[clip], keys)
        path = folder / f"{clip.replace('/', '__')}.png"
        write_image(path, figure)
        written.append(path)
    return written


def _clip_figure(kind: str, runs: list[dict], clip: str, folder: Path, keys: list[str]) -> np.ndarray:
    """The figure of one clip, uint8 RGB: a header row and one row per pass or light."""
    inputs = _inputs(runs[0], clip)
    headers = ["input", "ground truth"] + [f"{run['label']} {part}" for run in runs for part in ("output", "error")]
    rows, size = [], None
    for row, key in enumerate(keys):
        quantity = GBUFFER_QUANTITIES[key] if kind == INVERSE else RELIT
        target = find_frames(folder, key) if kind == INVERSE else find_frames(folder / RELIT_FOLDER, key, videos=True)
        index = _shown_frame(kind, runs, clip, key, target)
        truth = quantity.decode(target.read(index), target.is_exr(index))
        size = size or _tile_size(truth.shape[:2])
        valid = valid_pixels(quantity, truth, find_frames(folder, MASK), index)
        first = inputs is not None and row == 0 and inputs.has(index)
        tiles = [_tile(resize(inputs.read(index), truth.shape[:2]), size) if first else _blank(size)]
        tiles.append(_tile(quantity.picture(truth, truth), size))
        for run in runs:
            tiles += _run_tiles(kind, run, clip, key, index, quantity, truth, valid, size)
        title = f"{key}\nerror: {quantity.error_label}\nfrom 0 to {quantity.error_range:g}\nframe {index}"
        rows.append(np.concatenate([_label(title, size[0])] + tiles, axis=1))
    header = np.concatenate(
        [_label(clip, HEADER_HEIGHT)] + [_label(text, HEADER_HEIGHT, size[1]) for text in headers], axis=1
    )
    return np.concatenate([header, *rows], axis=0)


def _run_tiles(
    kind: str,
    run: dict,
    clip: str,
    key: str,
    index: int,
    quantity: Quantity,
    truth: np.ndarray,
    valid: np.ndarray,
    size: tuple[int, int],
) -> list[np.ndarray]:
    """[prediction, error map] of one run at clip frame ``index``; blank tiles where it has no such frame."""
    found = _prediction(kind, run, clip, key, index)
    if found is None:
        return [_blank(size), _blank(size)]
    frames, local = found
    image = resize(frames.read(local), truth.shape[:2])
    prediction = quantity.decode(image, frames.is_exr(local))
    aligned = quantity.align(prediction[None], truth[None], valid[None])[0]
    error = np.clip(quantity.error(aligned, truth) / quantity.error_range, 0.0, 1.0)
    colored = cv2.applyColorMap(np.round(error * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]
    colored = np.where(valid[..., None], colored, np.array(NO_DATA, np.uint8))
    return [_tile(quantity.picture(aligned, truth), size), _tile(colored, size)]


def _prediction(kind: str, run: dict, clip: str, key: str, index: int) -> tuple[Frames, int] | None:
    """(frames of the chunk, local index) holding clip frame ``index`` in the first chunk, if the run has it."""
    folder = Path(run["prediction_folder"])
    lights = run.get("lights", [])
    if kind == INVERSE:
        chunks = inverse_chunks(folder, clip, key)
    elif key in lights:
        chunks = forward_chunks(folder, clip, lights.index(key))
    else:
        return None
    first = chunks.get(0)
    return (first, index) if first is not None and first.has(index) else None


def _shown_frame(kind: str, runs: list[dict], clip: str, key: str, target: Frames) -> int:
    """The middle frame of the first run's first chunk with ground truth (0 if none fits)."""
    found = _prediction(kind, runs[0], clip, key, 0)
    count = (found[0].count or 1) if found is not None else 1
    candidates = [index for index in range(count) if target.has(index)]
    return candidates[len(candidates) // 2] if candidates else 0


def _inputs(run: dict, clip: str) -> Frames | None:
    folder = run.get("input_folder")
    return find_input(Path(folder), clip) if folder else None


def _tile_size(shape: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of a tile: TILE_HEIGHT high, the ground truth's aspect ratio."""
    return TILE_HEIGHT, max(1, round(TILE_HEIGHT * shape[1] / shape[0]))


def _tile(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if image.dtype != np.uint8:
        image = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    return resize(image, size)


def _blank(size: tuple[int, int]) -> np.ndarray:
    return np.full((*size, 3), BACKGROUND, np.uint8)


def _label(text: str, height: int, width: int = LABEL_WIDTH) -> np.ndarray:
    """A dark box ``[height, width, 3]`` with the lines of ``text`` (ASCII; each cut to fit) in it."""
    box = np.full((height, width, 3), BACKGROUND, np.uint8)
    for number, line in enumerate(text.splitlines()):
        while line and cv2.getTextSize(line, FONT, FONT_SCALE, 1)[0][0] > width - 8:
            line = line[:-1]
        cv2.putText(box, line, (4, 18 + 18 * number), FONT, FONT_SCALE, TEXT_COLOR, 1, cv2.LINE_AA)
    return box

"""One PNG per clip showing the input and every output side by side, labelled, to judge a run at a glance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .writers import write_image

TILE_HEIGHT = 256
LABEL_HEIGHT = 28
MAX_COLUMNS = 6


def _tile(label: str, image: np.ndarray, height: int) -> np.ndarray:
    """A uint8 ``[H, W, 3]`` image scaled to ``height`` (aspect kept) under a white bar with its label."""
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    scaled = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    bar = np.full((LABEL_HEIGHT, width, 3), 255, np.uint8)
    cv2.putText(bar, label, (6, LABEL_HEIGHT - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, scaled])


def make_contact_sheet(tiles: Sequence[tuple[str, np.ndarray]], height: int = TILE_HEIGHT) -> np.ndarray:
    """Labelled images in rows of at most ``MAX_COLUMNS``, uint8 ``[H, W, 3]`` on a white background."""
    rendered = [_tile(label, image, height) for label, image in tiles]
    rows = [rendered[i : i + MAX_COLUMNS] for i in range(0, len(rendered), MAX_COLUMNS)]
    width = max(sum(tile.shape[1] for tile in row) for row in rows)
    lines = []
    for row in rows:
        line = np.concatenate(row, axis=1)
        lines.append(np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)), constant_values=255))
    return np.concatenate(lines)


def write_contact_sheet(path: Path, tiles: Sequence[tuple[str, np.ndarray]]) -> None:
    """Write a contact sheet of ``tiles`` to ``path`` (atomically)."""
    write_image(path, make_contact_sheet(tiles))

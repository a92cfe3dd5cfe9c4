"""Inputs of any size and aspect ratio: how a frame is fitted into the model's H × W and how outputs map back.

- ``stretch`` (the original): resize to exactly H × W; the aspect ratio is lost.
- ``crop``: scale to cover H × W keeping the aspect ratio, centre-crop; outputs cover the cropped region only.
- ``pad``: scale to fit inside H × W keeping the aspect ratio, centre it and fill the border by repeating the
  edge pixels; the border is flagged in the DiT's padding-mask input, and outputs are cut back to the content.

Outputs come out at the model's scale (``output_size="model"``) or resized to the input's own resolution
(``output_size="input"``: for ``crop`` the resolution of the cropped part of the input).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Placement:
    """Where a ``source`` (h, w) frame lands in the model frame: scaled to ``scaled`` and shown in ``box``.

    ``box`` = (top, left, height, width) of the model frame that holds the frame's content.
    """

    mode: str
    source: tuple[int, int]
    target: tuple[int, int]
    scaled: tuple[int, int]
    box: tuple[int, int, int, int]


def place(source: tuple[int, int], target: tuple[int, int], mode: str) -> Placement:
    """The placement of a ``source``-sized frame in a ``target``-sized model frame."""
    (h, w), (height, width) = source, target
    if mode == "stretch":
        return Placement(mode, source, target, target, (0, 0, height, width))
    scale = max(height / h, width / w) if mode == "crop" else min(height / h, width / w)
    scaled = (max(1, round(h * scale)), max(1, round(w * scale)))
    if mode == "crop":
        scaled = (max(scaled[0], height), max(scaled[1], width))
        return Placement(mode, source, target, scaled, (0, 0, height, width))
    scaled = (min(scaled[0], height), min(scaled[1], width))
    top, left = (height - scaled[0]) // 2, (width - scaled[1]) // 2
    return Placement(mode, source, target, scaled, (top, left, *scaled))


def fit_frame(image: torch.Tensor, placement: Placement) -> torch.Tensor:
    """``[C, h, w]`` → ``[C, H, W]`` per the placement (bilinear, antialiased resizing)."""
    scaled = F.interpolate(image[None], size=placement.scaled, mode="bilinear", align_corners=False, antialias=True)
    height, width = placement.target
    if placement.mode == "crop":
        top, left = (placement.scaled[0] - height) // 2, (placement.scaled[1] - width) // 2
        return scaled[0, :, top : top + height, left : left + width]
    if placement.mode == "pad":
        top, left, h, w = placement.box
        scaled = F.pad(scaled, (left, width - left - w, top, height - top - h), mode="replicate")
    return scaled[0]


def padding_mask(placement: Placement) -> torch.Tensor:
    """``[1, 1, H, W]``: 1 where the model frame is padding, 0 over the content."""
    mask = torch.ones(1, 1, *placement.target)
    top, left, h, w = placement.box
    mask[..., top : top + h, left : left + w] = 0
    return mask


def restore(video: torch.Tensor, placement: Placement, output_size: str) -> torch.Tensor:
    """A model-frame output ``[1, C, T, H, W]`` → the content region, at model scale or at the input's size."""
    top, left, h, w = placement.box
    content = video[..., top : top + h, left : left + w]
    if output_size == "model":
        return content
    if placement.mode == "crop":
        scale = placement.scaled[0] / placement.source[0]
        size = (round(placement.target[0] / scale), round(placement.target[1] / scale))
    else:
        size = placement.source
    frames = content[0].transpose(0, 1)  # [T, C, h, w]
    resized = F.interpolate(frames.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    return resized.transpose(0, 1)[None]

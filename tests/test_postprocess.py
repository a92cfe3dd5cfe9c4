"""The last step after decoding (optional normal blend, then 8-bit conversion) bit for bit as the original's GPU path.

The original works on the bf16 decoded video, each operation rounding to bf16; the project keeps the decoded video in
the model dtype so that its uint8 frames are the original's bytes. bf16 arithmetic runs on the CPU too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import fixture_cases, load_pt
from cosmos_predict1.diffusion.renderer import normalize_normals
from cosmos_predict1.diffusion.writers import frames_to_uint8


@pytest.mark.fixtures
@pytest.mark.parametrize("case", fixture_cases("postprocess"))
def test_reproduces_the_original_bytes(case: Path) -> None:
    inputs, expected = load_pt(case / "inputs.pt"), load_pt(case / "outputs.pt")["frames"]
    video = inputs["video"]
    if inputs["normalize_normal"]:
        video = normalize_normals(video)
    frames = frames_to_uint8(video)
    assert frames.dtype == np.uint8 and frames.shape == tuple(expected.shape)
    differing = int((torch.from_numpy(frames) != expected).sum())
    assert differing == 0, f"{differing} of {expected.numel()} values differ from the original's"


def test_bf16_conversion_differs_from_float32_where_bf16_rounds() -> None:
    """The dtype of the decoded video decides the arithmetic: the two paths are not interchangeable."""
    video = torch.linspace(-1, 1, 3 * 64 * 64).reshape(1, 3, 1, 64, 64).bfloat16()
    in_bf16, in_float32 = frames_to_uint8(video), frames_to_uint8(video.float())
    assert not np.array_equal(in_bf16, in_float32)
    assert (in_bf16.astype(int) - in_float32.astype(int)).min() >= 0  # bf16 rounding only ever lands higher

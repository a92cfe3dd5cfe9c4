"""The check that loaded weights are finite: one NaN or ±Inf in a checkpoint spreads through every output (a black
video), so the loaders refuse such a file in one line, naming it and the first bad tensor, before any sampling.

The check costs one pass over the weights without temporaries: per tensor ``aminmax`` (NaN propagates into both
results; +Inf is the maximum, −Inf the minimum), computed where the tensor lies and read back once for all tensors
(one synchronisation on a GPU). Measured for the 7B DiT (588 tensors): 20 ms in bfloat16 on an H200, 0.5 s in
float32 (28.7 GB) on 16 CPU cores; ``isfinite(t).all()``, which writes a boolean copy first, took 8 s there.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from cosmos_predict1.errors import UserError


def first_nonfinite(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor of ``tensors`` (in their order) that holds a NaN or ±Inf, or
    None when every value is finite. Integer and empty tensors are skipped."""
    names, extremes = [], []
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and tensor.numel():
            names.append(name)
            extremes.append(torch.stack(tensor.detach().aminmax()).float())
    if not names:
        return None
    device = extremes[0].device
    finite = torch.isfinite(torch.stack([pair.to(device) for pair in extremes])).all(dim=1).tolist()
    return next((name for name, ok in zip(names, finite) if not ok), None)


def check_finite(tensors: Mapping[str, torch.Tensor], source: str, fix: str) -> None:
    """``UserError`` naming ``source`` (the file), the first non-finite tensor and ``fix`` (what to do), if any."""
    name = first_nonfinite(tensors)
    if name is not None:
        raise UserError(f"{source}: the weight {name} holds NaN or infinite values; {fix}.")

"""Moving a checkpoint's tensors onto the GPU fast: disk (page cache) reads, host-to-device copies and the dtype cast
overlap.

Reading a memory-mapped multi-GB file one tensor at a time from one thread is bound by page faults, and a copy from
pageable memory waits for itself. Here a few threads copy the tensors (concatenating the parts of fused weights)
into a ring of pinned staging buffers, while the main thread sends each full buffer to the GPU on a side stream
and casts it there; a buffer is reused once its copy is done. On the CPU the tensors are simply cast.
"""

from __future__ import annotations

import collections
import queue
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import torch

READERS = 8  # threads copying from the mapped file into pinned buffers
STAGING_BUFFERS = 12  # pinned buffers in flight, each as large as the largest tensor


def to_device(
    tensors: Sequence[tuple[str, Sequence[torch.Tensor]]], device: torch.device | str, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """``{name: cat(parts, dim=0)}`` in ``dtype`` on ``device`` for every (name, parts) of ``tensors``.

    The parts are CPU tensors (typically memory-mapped); the result is the same as ``torch.cat(parts).to(device,
    dtype)`` tensor by tensor.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return {name: _joined(parts).to(device=device, dtype=dtype) for name, parts in tensors}
    largest = max(sum(part.numel() * part.element_size() for part in parts) for _, parts in tensors)
    free: queue.Queue[torch.Tensor | None] = queue.Queue()
    for _ in range(min(STAGING_BUFFERS, len(tensors))):
        free.put(torch.empty(largest, dtype=torch.uint8, pin_memory=True))

    def stage(parts: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
        buffer = free.get()
        if buffer is None:  # the transfer was abandoned
            return None
        shape = (sum(part.shape[0] for part in parts), *parts[0].shape[1:])
        host = buffer[: _numel(shape) * parts[0].element_size()].view(parts[0].dtype).view(shape)
        torch.cat(list(parts), dim=0, out=host) if len(parts) > 1 else host.copy_(parts[0])
        return buffer, host

    stream = torch.cuda.Stream(device)
    in_flight: collections.deque[tuple[torch.cuda.Event, torch.Tensor]] = collections.deque()
    result = {}
    pool = ThreadPoolExecutor(READERS, "cosmos-weights")
    try:
        staged = [pool.submit(stage, parts) for _, parts in tensors]
        for (name, _), future in zip(tensors, staged):
            while True:  # hand back finished buffers, or the readers would wait for them forever
                try:
                    buffer, host = future.result(timeout=0.002)
                    break
                except FutureTimeout:
                    if in_flight:
                        event, done = in_flight.popleft()
                        event.synchronize()
                        free.put(done)
            with torch.cuda.stream(stream):
                result[name] = host.to(device, non_blocking=True).to(dtype)
                in_flight.append((stream.record_event(), buffer))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        for _ in range(READERS):  # readers still waiting for a buffer end at once
            free.put(None)
    stream.synchronize()
    return result


def _joined(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(list(parts), dim=0)


def _numel(shape: Sequence[int]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count

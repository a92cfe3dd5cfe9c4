"""Moving a checkpoint's tensors onto the GPU fast: disk (page cache) reads, host-to-device copies and the dtype cast
overlap.

Reading a memory-mapped multi-GB file one tensor at a time from one thread is bound by page faults, and a copy from
pageable memory waits for itself. Here a few threads copy the tensors (concatenating the parts of fused weights)
into a ring of pinned staging buffers, while the main thread sends each full buffer to the GPU on a side stream
and casts it there; a buffer is reused once its copy is done. On the CPU the tensors are simply cast.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

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
    free = collections.deque(
        torch.empty(largest, dtype=torch.uint8, pin_memory=True) for _ in range(min(STAGING_BUFFERS, len(tensors)))
    )
    stream = torch.cuda.Stream(device)
    staged: collections.deque[tuple[str, Future]] = collections.deque()  # in order, each with its own buffer
    in_flight: collections.deque[tuple[torch.cuda.Event, torch.Tensor]] = collections.deque()
    upcoming = iter(tensors)
    result = {}
    with ThreadPoolExecutor(READERS, "cosmos-weights") as pool:

        def stage_more() -> None:
            """Give every free buffer to the next tensor (in order, so no reader ever waits for a buffer)."""
            while free:
                entry = next(upcoming, None)
                if entry is None:
                    return
                staged.append((entry[0], pool.submit(_stage, entry[1], free.popleft())))

        stage_more()
        while staged:
            name, future = staged.popleft()
            buffer, host = future.result()
            with torch.cuda.stream(stream):
                result[name] = host.to(device, non_blocking=True).to(dtype)
                in_flight.append((stream.record_event(), buffer))
            while in_flight and in_flight[0][0].query():  # buffers whose copies are done are free again
                free.append(in_flight.popleft()[1])
            if not free and len(staged) < READERS and in_flight:  # the readers would run dry: wait for the oldest
                event, done = in_flight.popleft()
                event.synchronize()
                free.append(done)
            stage_more()
    stream.synchronize()
    return result


def _stage(parts: Sequence[torch.Tensor], buffer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The parts concatenated into ``buffer`` (pinned, large enough): (buffer, the tensor view of it)."""
    shape = (sum(part.shape[0] for part in parts), *parts[0].shape[1:]) if parts[0].ndim else parts[0].shape
    host = buffer[: _numel(shape) * parts[0].element_size()].view(parts[0].dtype).view(shape)
    if len(parts) > 1:
        torch.cat(list(parts), dim=0, out=host)
    else:
        host.copy_(parts[0])
    return buffer, host


def _joined(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(list(parts), dim=0)


def _numel(shape: Sequence[int]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count

"""Multi-GPU runs on PyTorch's own distributed engine: ``torchrun --nproc_per_node=N <script> ...``.

torchrun starts one process per GPU and sets RANK, WORLD_SIZE and LOCAL_RANK; ``setup`` joins the process group
(NCCL on CUDA, gloo on the CPU) when WORLD_SIZE > 1. A plain ``python <script>`` is world size 1, where every
function here returns at once and changes nothing.

Layout. The W ranks form W/K context-parallel groups of K consecutive ranks (K = ``--context_parallel_size``,
default 1): ranks gK … gK+K−1 sample each of their clips together, every rank on 1/K of the DiT's tokens
(``networks.context_parallel``). Data parallelism runs across the groups: group g processes only its share of the
work (``shard``); the group's first rank writes the outputs, the others only help to sample them.

Sharding rule. The work list is the script's ``todo`` after the resume check: (item, pending outputs) pairs in
the script's order, each cut into the batches the renderer samples together (not cut with ``--contact_sheet``,
whose sheet shows all outputs of an item). Every rank lists the same units before any rank writes, and ``owners``
cuts them into W/K contiguous runs with about equal numbers of outputs. Every output is thus sampled in the same
batch, from the same per-item noise, as in a single process: the union of all ranks' files equals a
single-process run bit for bit. Files built from several ranks' outputs (stitched videos) are written by rank 0
after a ``barrier``.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from cosmos_predict1.errors import UserError

if TYPE_CHECKING:  # torch is imported only by runs of several processes
    import torch.distributed as dist

log = logging.getLogger("cosmos_predict1")

# Waiting for other ranks (a share of the work, the model loading) can take hours; the GPU collectives inside
# sampling keep PyTorch's default timeout.
WAIT_TIMEOUT = datetime.timedelta(days=7)


@dataclass(frozen=True)
class Layout:
    """This process's place: global rank, world size, GPU index on its machine, context-parallel group size K."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    context_parallel_size: int = 1

    @property
    def data_parallel_rank(self) -> int:
        """Index of this rank's context-parallel group: the share of the work it processes."""
        return self.rank // self.context_parallel_size

    @property
    def data_parallel_size(self) -> int:
        return self.world_size // self.context_parallel_size

    @property
    def is_main(self) -> bool:
        """Rank 0: prints the summary and writes what needs every rank's outputs (stitched videos)."""
        return self.rank == 0

    @property
    def writes_outputs(self) -> bool:
        """The first rank of each context-parallel group writes the group's files."""
        return self.rank % self.context_parallel_size == 0


_layout = Layout()
_context_group: dist.ProcessGroup | None = None
_wait_group: dist.ProcessGroup | None = None


def layout() -> Layout:
    return _layout


def launched_rank() -> int:
    """RANK as torchrun sets it (0 outside torchrun); readable before ``setup``."""
    return int(os.environ.get("RANK", "0"))


def launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str, context_parallel_size: int) -> Layout:
    """Join the torchrun process group (WORLD_SIZE > 1) and form the context-parallel groups.

    ``device``: the ``--device`` value; CUDA devices communicate through NCCL, CPU processes through gloo.
    """
    global _layout, _context_group, _wait_group
    rank, world = launched_rank(), launched_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    size = context_parallel_size
    if size < 1 or world % size:
        raise UserError(
            f"--context_parallel_size {size}: must divide the number of processes ({world}); launch with "
            f"torchrun --nproc_per_node=<a multiple of {size}>."
        )
    if world > 1:
        import torch
        import torch.distributed as dist

        cuda = device.startswith("cuda") and torch.cuda.is_available()
        if cuda and local_rank < torch.cuda.device_count():
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
        _wait_group = dist.new_group(backend="gloo", timeout=WAIT_TIMEOUT)
        for first in range(0, world, size):  # every rank creates every group, in the same order
            group = dist.new_group(list(range(first, first + size))) if size > 1 else None
            if first <= rank < first + size:
                _context_group = group
    _layout = Layout(rank, world, local_rank, size)
    return _layout


def teardown() -> None:
    """Leave the process group (after the last collective; a failed rank just exits and torchrun stops the rest)."""
    global _layout, _context_group, _wait_group
    if _wait_group is not None:
        import torch.distributed as dist

        dist.destroy_process_group()
    _layout, _context_group, _wait_group = Layout(), None, None


def context_parallel_group() -> dist.ProcessGroup | None:
    """This rank's context-parallel group (None when K = 1)."""
    return _context_group


def barrier() -> None:
    """Wait until every rank gets here (no-op in a single process)."""
    if _wait_group is not None:
        import torch.distributed as dist

        dist.barrier(group=_wait_group)


def owners(sizes: Sequence[int], parts: int) -> list[int]:
    """The part (0 … parts−1) that takes each unit: contiguous runs with about equal sums of ``sizes``.

    Cut the T outputs of all units (``sizes`` ≥ 1 each) into ``parts`` equal ranges; a unit goes to the range that
    holds the middle of its outputs (the lower one on a tie). Deterministic, and every unit has exactly one owner;
    owners never decrease along the list, and with equal sizes each part gets ⌈units/parts⌉ or ⌊units/parts⌋ units.
    """
    total, start, result = sum(sizes), 0, []
    for size in sizes:
        result.append((parts * (2 * start + size) - 1) // (2 * total))
        start += size
    return result


Item = TypeVar("Item")


def shard(units: Sequence[tuple[Item, list]]) -> list[tuple[Item, list]]:
    """This rank's share of the work units: its context-parallel group's run of ``owners`` (all in one process).

    ``units``: (item, outputs) pairs, the same list on every rank; consecutive units of one item that fall to this
    rank are merged back into one (so the item's input is loaded and encoded once). Waits until every rank has
    listed its work, so that no rank writes a file before all have checked which outputs exist.
    """
    place = _layout
    mine: list[tuple[Item, list]] = []
    for (item, outputs), owner in zip(units, owners([len(o) for _, o in units], place.data_parallel_size)):
        if owner != place.data_parallel_rank:
            continue
        if mine and mine[-1][0] is item:
            mine[-1] = (item, mine[-1][1] + list(outputs))
        else:
            mine.append((item, list(outputs)))
    if place.world_size > 1:
        share = f"{len(mine)} work item(s), {sum(len(o) for _, o in mine)} of {sum(len(o) for _, o in units)} output(s)"
        if place.context_parallel_size > 1:
            share += f" in context-parallel group {place.data_parallel_rank}"
            share += "" if place.writes_outputs else " (samples them, the group's first rank writes them)"
        log.info("rank %d of %d: %s", place.rank, place.world_size, share)
    barrier()
    return mine


def writer_summaries(summary: str) -> list[tuple[int, str]]:
    """(rank, summary) of every rank that writes outputs, in rank order; waits for all ranks (the final barrier)."""
    if _wait_group is None:
        return [(0, summary)]
    import torch.distributed as dist

    summaries: list[str | None] = [None] * _layout.world_size
    dist.all_gather_object(summaries, summary, group=_wait_group)
    size = _layout.context_parallel_size
    return [(rank, text) for rank, text in enumerate(summaries) if rank % size == 0]

"""Streaming the DiT's transformer blocks from pinned CPU memory, so the 7B network runs in a few GB of GPU memory.

Every block's weights live in one flat pinned CPU buffer. Two GPU buffers ("slots") take turns: while block i runs
in slot i mod 2, block i + 1 is already in the other slot and block i + 2 is copied into slot i mod 2 as soon as
block i is done, on a separate CUDA stream (the last blocks prefetch the first ones for the next call). All other
weights (patch embedding, timestep MLP, final layer: about 1 % of the network) stay on the GPU. The arithmetic is
unchanged: the same weights, the same kernels.
"""

from __future__ import annotations

import torch
from torch import nn

from .dit import DiffusionRendererDiT


def _flat_views(flat: torch.Tensor, params: list[nn.Parameter]) -> list[torch.Tensor]:
    """Views into ``flat`` with the shapes of ``params``, in order."""
    views, offset = [], 0
    for param in params:
        views.append(flat[offset : offset + param.numel()].view(param.shape))
        offset += param.numel()
    return views


class BlockStreamer:
    """Attach to a network: its blocks stay on the CPU and are fetched to ``device`` just before they run."""

    SLOTS = 2

    def __init__(self, network: DiffusionRendererDiT, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.blocks = list(network.blocks)
        self.params = [list(block.parameters()) for block in self.blocks]
        size = sum(p.numel() for p in self.params[0])
        dtype = self.params[0][0].dtype
        if any(sum(p.numel() for p in params) != size for params in self.params):
            raise ValueError("all blocks must have the same size to share streaming slots")
        for module in network.children():
            if module is not network.blocks:
                module.to(self.device)
        for param in network.parameters(recurse=False):
            param.data = param.data.to(self.device)
        cuda = self.device.type == "cuda"
        self.host_views = []
        for params in self.params:
            flat = torch.empty(size, dtype=dtype, pin_memory=cuda)
            views = _flat_views(flat, params)
            for param, view in zip(params, views):
                view.copy_(param.data)
                param.data = view
            self.host_views.append((flat, views))
        self.slots = [torch.empty(size, dtype=dtype, device=self.device) for _ in range(self.SLOTS)]
        self.slot_views = [_flat_views(slot, self.params[0]) for slot in self.slots]
        self.copy_stream = torch.cuda.Stream(self.device) if cuda else None
        self.loaded: dict[int, torch.cuda.Event] = {}
        for index, block in enumerate(self.blocks):
            block.register_forward_pre_hook(self._before(index))
            block.register_forward_hook(self._after(index))
        for index in range(min(self.SLOTS, len(self.blocks))):
            self._fetch(index)

    def _fetch(self, index: int) -> None:
        """Start copying block ``index`` into its slot (after the slot's previous block has finished)."""
        slot = self.slots[index % self.SLOTS]
        flat = self.host_views[index][0]
        if self.copy_stream is None:
            slot.copy_(flat)
            return
        done = torch.cuda.current_stream(self.device).record_event()
        with torch.cuda.stream(self.copy_stream):
            self.copy_stream.wait_event(done)
            slot.copy_(flat, non_blocking=True)
            self.loaded[index] = self.copy_stream.record_event()

    def _before(self, index: int):
        def hook(module: nn.Module, args: tuple) -> None:
            if index in self.loaded:
                torch.cuda.current_stream(self.device).wait_event(self.loaded.pop(index))
            for param, view in zip(self.params[index], self.slot_views[index % self.SLOTS]):
                param.data = view

        return hook

    def _after(self, index: int):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            for param, view in zip(self.params[index], self.host_views[index][1]):
                param.data = view
            count = len(self.blocks)
            if index + self.SLOTS < count or count % self.SLOTS == 0:
                self._fetch((index + self.SLOTS) % count)  # the next block for this slot, wrapping to the next call
            elif index == count - 1:
                for first in range(min(self.SLOTS, count)):
                    self._fetch(first)

        return hook

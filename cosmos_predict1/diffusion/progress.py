"""Progress of a run over work items: a live bar on a terminal, one line per finished item in a log file.

On a terminal (stderr is a TTY) a tqdm bar shows the items done and the sampling step of the current batch. When
stderr is a file or a pipe, each finished item prints one line with its name, the time it took, the time since the
start and an estimate of the time left, so logs stay readable (no carriage-return updates).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

import torch

log = logging.getLogger("cosmos_predict1")


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    """Reports ``items`` work items with ``outputs`` outputs in all, each sampled in ``num_steps`` steps.

    ``enabled`` False prints nothing (the ranks other than 0 under torchrun); ``live`` None picks the bar on a TTY.
    """

    def __init__(
        self,
        items: int,
        outputs: int,
        num_steps: int,
        *,
        enabled: bool = True,
        live: bool | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.items, self.outputs, self.num_steps = items, outputs, num_steps
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.done = 0
        self.start = self.item_start = time.perf_counter()
        self.bar = None
        self.redirect = None

    def __enter__(self) -> Progress:
        if self.enabled and self.live:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            desc = f"{self.outputs} output(s)"
            self.bar = tqdm(total=self.items, unit="item", desc=desc, dynamic_ncols=True, file=self.stream)
            self.redirect = logging_redirect_tqdm()
            self.redirect.__enter__()
        self.start = self.item_start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
            self.redirect.__exit__(*exc)

    def step(self, index: int, state: torch.Tensor | None = None) -> None:
        """Sampling step ``index`` (0-based) of the current batch is done."""
        if self.bar is not None:
            self.bar.set_postfix_str(f"step {index + 1}/{self.num_steps}")

    def item_done(self, name: str) -> None:
        """Work item ``name`` is finished."""
        self.done += 1
        now = time.perf_counter()
        took, self.item_start = now - self.item_start, now
        if self.bar is not None:
            self.bar.update(1)
        elif self.enabled:
            elapsed = now - self.start
            left = elapsed / self.done * (self.items - self.done)
            print(
                f"[{self.done}/{self.items}] {name} done in {took:.1f} s; elapsed {_duration(elapsed)}, "
                f"about {_duration(left)} left",
                file=self.stream,
                flush=True,
            )

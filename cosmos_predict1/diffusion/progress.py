"""Progress of a run over work items: a live bar on a terminal, one line per finished item in a log file.

On a terminal (stderr is a TTY) a tqdm bar shows the items done and the sampling step of the current batch. When
stderr is a file or a pipe, each finished item prints one line with its name, the time it took, the time since the
start and an estimate of the time left, so logs stay readable (no carriage-return updates).

Until the first item is done, a first estimate comes from the sampling steps: once two steps of a batch are done,
their spacing times every step the run has left (the bar's text on a terminal; one line in a log, for runs with at
least ``MIN_ESTIMATE_S`` seconds left). It counts sampling only, so it is a lower bound; each finished item refines
it.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

import torch

log = logging.getLogger("cosmos_predict1")
MIN_ESTIMATE_S = 10.0  # a shorter first estimate is not worth a line in the log


def counted(number: int, noun: str) -> str:
    """ "1 image", "3 images", "5 G-buffer passes": ``number`` and ``noun``, plural unless ``number`` is 1 (regular
    English nouns: "es" after s, x, ch and sh, else "s")."""
    if number == 1:
        return f"{number} {noun}"
    return f"{number} {noun}{'es' if noun.endswith(('s', 'x', 'ch', 'sh')) else 's'}"


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    """Reports ``items`` work items (each a ``noun``) with ``outputs`` outputs in all, each sampled in ``num_steps``
    steps; ``batches``: the sampling batches of the whole run, for the first estimate (None: no first estimate).

    ``enabled`` False prints nothing (the ranks other than 0 under torchrun); ``live`` None picks the bar on a TTY.
    """

    def __init__(
        self,
        items: int,
        outputs: int,
        num_steps: int,
        *,
        batches: int | None = None,
        noun: str = "item",
        enabled: bool = True,
        live: bool | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.items, self.outputs, self.num_steps, self.noun = items, outputs, num_steps, noun
        self.steps_total = batches * num_steps if batches else None
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.done = self.steps_done = 0
        self.start = self.item_start = time.perf_counter()
        self.last_step: float | None = None
        self.estimate_printed = False
        self.bar = None
        self.redirect = None

    def __enter__(self) -> Progress:
        if self.enabled and self.live:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            desc = counted(self.outputs, "output")
            self.bar = tqdm(total=self.items, unit=self.noun, desc=desc, dynamic_ncols=True, file=self.stream)
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
        now = time.perf_counter()
        self.steps_done += 1
        spacing = now - self.last_step if index > 0 and self.last_step is not None else None
        self.last_step = now
        status = f"step {index + 1}/{self.num_steps}"
        if spacing is not None and self.done == 0 and self.steps_total:
            seconds = spacing * max(self.steps_total - self.steps_done, 0)
            status += f", about {_duration(seconds)} of sampling left"
            if self.bar is None and self.enabled and not self.estimate_printed and seconds >= MIN_ESTIMATE_S:
                self.estimate_printed = True
                print(
                    f"[0/{self.items}] sampling takes {spacing:.1f} s per step: about {_duration(seconds)} left for "
                    f"the run's {self.steps_total} steps (sampling only; refined as items finish)",
                    file=self.stream,
                    flush=True,
                )
        if self.bar is not None:
            self.bar.set_postfix_str(status)

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

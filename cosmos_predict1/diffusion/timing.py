"""Where a run's time goes: seconds per phase (start-up, loading, compiling, sampling, encoding, decoding, reading,
writing), summed over the process, for the run's summary line and the benchmarks.

Phases that do GPU work wait for it at their end (``torch.cuda.synchronize``), so their seconds are the work's own;
the reading and writing threads overlap sampling, so the phases can add up to more than the wall time ("writing"
sums the writer threads). "last writes" is the wait for the writes still running after the last item: the part of
writing that the run's wall time shows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

PHASES = ("start-up", "loading", "compiling", "sampling", "encoding", "decoding", "reading", "writing", "last writes")
PROCESS_START = time.perf_counter()  # close enough to the interpreter's start: this module is imported early

_seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
_lock = threading.Lock()
_runs = 0


def start_run() -> float:
    """Reset the counts for a new run; returns when the run started: the process's start for its first run, now for
    later runs in the same process (tests, notebooks)."""
    global _runs
    with _lock:
        _seconds.update(dict.fromkeys(PHASES, 0.0))
        _runs += 1
        return PROCESS_START if _runs == 1 else time.perf_counter()


def add(phase: str, seconds: float) -> None:
    """Count ``seconds`` towards ``phase``."""
    with _lock:
        _seconds[phase] += seconds


@contextmanager
def phase(name: str, device: object = None) -> Iterator[None]:
    """Time the block as ``name``; with a CUDA ``device``, the GPU work it queued is waited for first."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if getattr(device, "type", None) == "cuda":
            import torch

            torch.cuda.synchronize(device)
        add(name, time.perf_counter() - start)


def seconds() -> dict[str, float]:
    """Seconds per phase so far."""
    with _lock:
        return dict(_seconds)


def summary() -> str:
    """ "start-up 3.1 s, loading 2.0 s, ..." for the phases that took any time."""
    return ", ".join(f"{name} {value:.1f} s" for name, value in seconds().items() if value >= 0.05)

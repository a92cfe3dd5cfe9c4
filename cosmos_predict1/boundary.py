"""The error boundary of every command-line entry point: one line per failure, and the exit code.

0 = done; 1 = an internal error (a bug; ``--debug`` shows the traceback); 2 = a problem the user can fix (the
``UserError``'s message says how); 128 + the signal's number = interrupted: 130 by Ctrl-C (SIGINT), and inside
``signals_interrupt`` 143 by SIGTERM (``kill``), 129 by SIGHUP (a closed terminal). The renderer scripts
(``diffusion/cli.py``) and the helper scripts (download, frame extraction, tiny checkpoints) all end through
``guard`` or ``failure``, so none of them ends in a traceback unless asked to. Imports nothing heavy: the
scripts' ``--help`` stays fast.
"""

from __future__ import annotations

import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cosmos_predict1.errors import UserError

INTERRUPTED = "interrupted: rerun the same command to finish."
OUT_OF_MEMORY_SIGNS = ("CUDA out of memory", "CUDA error: out of memory", "_ALLOC_FAILED")  # in RuntimeErrors
OUT_OF_MEMORY = (
    "the GPU ran out of memory; retry with a smaller --max_batch (down to 1) and/or "
    "--offload_diffusion_transformer --offload_tokenizer (finished outputs are kept)."
)


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGHUP) turned into a Ctrl-C: it unwinds the same way; ``signal`` is its number."""

    def __init__(self, number: int) -> None:
        super().__init__(signal.Signals(number).name)
        self.signal = number


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise ``Stopped`` in the main thread, as Ctrl-C raises
    ``KeyboardInterrupt``: a run ended by ``kill`` or a closed terminal cleans up, says so and exits like one
    stopped by Ctrl-C. A second such signal ends the process at once (the default action). The previous handlers
    are back after the block. Outside the main thread (where handlers cannot be set) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}

    def stop(number: int, frame: object) -> None:
        for each in STOP_SIGNALS:
            signal.signal(each, signal.SIG_DFL)
        raise Stopped(number)

    for number in STOP_SIGNALS:
        signal.signal(number, stop)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def is_out_of_memory(err: BaseException) -> bool:
    """A GPU allocation failure: PyTorch's own error, or one that cuBLAS/cuDNN report as a RuntimeError."""
    if type(err).__name__ == "OutOfMemoryError":
        return True
    return isinstance(err, RuntimeError) and any(sign in str(err) for sign in OUT_OF_MEMORY_SIGNS)


def failure(err: BaseException, *, prefix: str = "error", interrupted: str = INTERRUPTED) -> tuple[str, int]:
    """The one line and the exit code for ``err`` (a ``UserError``, a Ctrl-C or any other exception).

    ``prefix`` starts the line of a problem the user can fix ("error" in the renderers, "Error" in the helper
    scripts, as they always printed); ``interrupted`` is the line for Ctrl-C (and ``Stopped``).
    """
    if isinstance(err, UserError):
        return f"{prefix}: {err}", 2
    if isinstance(err, KeyboardInterrupt):
        return interrupted, 128 + getattr(err, "signal", signal.SIGINT)
    if is_out_of_memory(err):
        return f"{prefix}: {OUT_OF_MEMORY}", 2
    return f"internal error: {type(err).__name__}: {err} (rerun with --debug for the traceback)", 1


def report(message: str, code: int, debug: bool = False) -> int:
    """Print ``message`` as one line on stderr (the current exception's traceback first with ``debug``)."""
    if debug:
        traceback.print_exc()
    print(one_line(message), file=sys.stderr)
    return code


def one_line(message: str) -> str:
    """``message`` with its lines joined by spaces (an exception's text may span several lines)."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def guard(
    body: Callable[[], int], *, debug: bool = False, prefix: str = "error", interrupted: str = INTERRUPTED
) -> int:
    """``body()``'s exit code, or the exit code of its failure after printing its one line (see ``failure``)."""
    try:
        return body()
    except (Exception, KeyboardInterrupt) as err:
        return report(*failure(err, prefix=prefix, interrupted=interrupted), debug)

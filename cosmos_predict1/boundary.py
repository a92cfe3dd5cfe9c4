"""The error boundary of every command-line entry point: one line per failure, and the exit code.

0 = done; 1 = an internal error (a bug; ``--debug`` shows the traceback); 2 = a problem the user can fix (the
``UserError``'s message says how); 130 = interrupted. The renderer scripts (``diffusion/cli.py``) and the helper
scripts (download, frame extraction, tiny checkpoints) all end through ``guard`` or ``failure``, so none of them
ends in a traceback unless asked to. Imports nothing heavy: the scripts' ``--help`` stays fast.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

from cosmos_predict1.errors import UserError

INTERRUPTED = "interrupted: rerun the same command to finish."
OUT_OF_MEMORY_SIGNS = ("CUDA out of memory", "CUDA error: out of memory", "_ALLOC_FAILED")  # in RuntimeErrors
OUT_OF_MEMORY = (
    "the GPU ran out of memory; retry with a smaller --max_batch (down to 1) and/or "
    "--offload_diffusion_transformer --offload_tokenizer (finished outputs are kept)."
)


def is_out_of_memory(err: BaseException) -> bool:
    """A GPU allocation failure: PyTorch's own error, or one that cuBLAS/cuDNN report as a RuntimeError."""
    if type(err).__name__ == "OutOfMemoryError":
        return True
    return isinstance(err, RuntimeError) and any(sign in str(err) for sign in OUT_OF_MEMORY_SIGNS)


def failure(err: BaseException, *, prefix: str = "error", interrupted: str = INTERRUPTED) -> tuple[str, int]:
    """The one line and the exit code for ``err`` (a ``UserError``, a Ctrl-C or any other exception).

    ``prefix`` starts the line of a problem the user can fix ("error" in the renderers, "Error" in the helper
    scripts, as they always printed); ``interrupted`` is the line for Ctrl-C.
    """
    if isinstance(err, UserError):
        return f"{prefix}: {err}", 2
    if isinstance(err, KeyboardInterrupt):
        return interrupted, 130
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

"""This program's temporary files: written beside their target under a marked name, renamed when complete.

A temporary name is ``.<stem>.cosmos-tmp-<pid>-<token><suffix>`` for the target ``<stem><suffix>``: ``<pid>`` is the
writing process and ``<token>`` 8 random hex digits, so the name cannot be guessed (nothing can be planted there
in advance) and no other program writes such names. A file counts as a killed run's leftover, and is removed by
``remove_stale``, only when all of these hold: its name has exactly that form, it is a regular file of this user,
and its process no longer runs on this machine. Anything else stays: a user's ``.photo.tmp-12.jpg``, a hidden file
of another program, or a file that a live run is still writing.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from contextlib import suppress
from pathlib import Path

MARKER = "cosmos-tmp"
TEMPORARY_NAME = re.compile(
    rf"\.(?P<stem>.+)\.{MARKER}-(?P<pid>[1-9][0-9]{{0,9}})-(?P<token>[0-9a-f]{{8}})(?P<suffix>\.[^.]+)?"
)
EXTRA_BYTES = 1 + len(f".{MARKER}-") + 10 + 1 + 8  # what a temporary name adds to its target's (pid ≤ 10 digits)


def temporary_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` for this process (see the module's docstring)."""
    return path.with_name(f".{path.stem}.{MARKER}-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")


def is_stale(path: Path) -> bool:
    """Whether ``path`` is a temporary file (or staging folder) that a process no longer running on this machine
    left behind."""
    match = TEMPORARY_NAME.fullmatch(path.name)
    if match is None or os.name != "posix":  # without POSIX signals a process cannot be looked up
        return False
    try:
        info = path.lstat()
    except OSError:
        return False
    ours = (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)) and info.st_uid == os.getuid()
    return ours and not _process_running(int(match["pid"]))


def stale_beside(path: Path) -> list[Path]:
    """The stale temporaries (``is_stale``) of ``path``: those beside it that were meant to become ``path``."""

    def target(name: str) -> str | None:
        match = TEMPORARY_NAME.fullmatch(name)
        return None if match is None else match["stem"] + (match["suffix"] or "")

    if not path.parent.is_dir():
        return []
    return [other for other in path.parent.iterdir() if target(other.name) == path.name and is_stale(other)]


def remove_stale(folder: str | os.PathLike) -> int:
    """Delete the stale temporary files (``is_stale``) anywhere under ``folder`` (links to folders are not
    followed); returns how many were removed."""
    removed = 0
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root, name)
            if is_stale(path):
                with suppress(OSError):  # gone meanwhile, or not ours to remove after all
                    path.unlink()
                    removed += 1
    return removed


def _process_running(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or not a valid process id at all
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True

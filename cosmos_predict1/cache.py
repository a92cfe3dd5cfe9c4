"""The project's cache folder: converted tokenizer weights and PyTorch's compiled kernels, kept between runs.

Location: ``$COSMOS_CACHE_DIR``, else ``$XDG_CACHE_HOME/cosmos_predict1``, else ``~/.cache/cosmos_predict1``.
Deleting it is always safe: everything in it is rebuilt when needed. Caches of whole files (the tokenizer's) stay
small with ``prune``: only their most recently used entries are kept.

A cache is a place where a planted file could be trusted, so its folders are private: created with mode 0700, and a
folder that another user owns or that others may write to is not used (the run then rebuilds in a fresh private
temporary folder, with a warning). What each cache stores is verified on its own terms as well (see
``tokenizer/convert.py``; PyTorch keys its compiled artifacts by hashes of what they compile).
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from contextlib import suppress
from pathlib import Path

from cosmos_predict1.temporary import remove_stale

log = logging.getLogger("cosmos_predict1")


def cache_dir() -> Path:
    """``$COSMOS_CACHE_DIR``, else ``$XDG_CACHE_HOME/cosmos_predict1``, else ``~/.cache/cosmos_predict1``."""
    if os.environ.get("COSMOS_CACHE_DIR"):
        return Path(os.environ["COSMOS_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cosmos_predict1"


def is_private(folder: Path) -> bool:
    """Whether ``folder`` is a directory of this user that no one else may write to."""
    info = folder.lstat()
    private = stat.S_ISDIR(info.st_mode) and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    return private and (not hasattr(os, "getuid") or info.st_uid == os.getuid())


def private_folder(name: str) -> Path:
    """``<cache_dir>/<name>``, created private (0700) if needed; a fresh temporary folder when it is not private or
    cannot be created (nothing is then kept for the next run)."""
    folder = cache_dir() / name
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if is_private(folder):
            return folder
        reason = "another user owns it or others may write to it"
    except OSError as err:
        reason = err.strerror or str(err)
    log.warning("not using the cache folder %s (%s); caching in a temporary folder for this run only", folder, reason)
    return Path(tempfile.mkdtemp(prefix=f"cosmos_predict1_{name}_"))


def prune(folder: Path, suffix: str, keep: int) -> None:
    """Keep the ``keep`` most recently used entries of a cache folder (its files ending in ``suffix``, by
    modification time: a read marks an entry used with ``os.utime``); remove the others, and the temporary files
    that killed processes left there. What cannot be removed stays (a cache only costs disk space)."""
    remove_stale(folder)
    entries = []
    for path in folder.iterdir():
        if path.name.endswith(suffix) and not path.name.startswith("."):
            with suppress(OSError):
                entries.append((path.stat().st_mtime_ns, path))
    for _, path in sorted(entries, reverse=True)[keep:]:
        with suppress(OSError):
            path.unlink()

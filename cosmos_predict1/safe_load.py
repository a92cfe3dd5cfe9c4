"""What the checkpoint loaders may unpickle without running code from the file: the one allowlist of the project.

A pickle can call any Python function while it loads, so a crafted checkpoint can run code. ``model.pt``, the
tokenizer's statistics files and its TorchScript archives are therefore read as tensors and plain data only:

- ``torch.save`` files (:func:`load_torch_file`): ``torch.load(weights_only=True)`` (PyTorch's allowlist: tensors,
  storages, dtypes, sizes, devices, ``OrderedDict``) plus :data:`DATA_ONLY_GLOBALS`. transformer-engine 1.12 saves
  its FP8 metadata (``_extra_state``) as an ``io.BytesIO`` holding another ``torch.save`` stream; that blob is read
  as an inert :class:`OpaqueBlob` and never opened.
- TorchScript archives (:class:`ArchiveUnpickler`): every scripted class (``__torch__.*``) becomes an inert
  :class:`ScriptObject` holding its pickled attributes, tensors are rebuilt from the archive's records, and the
  few other globals of the format map to functions of this module that only pass data through.

Anything else is refused with one line naming the global(s) the file would call; ``--allow_unsafe_checkpoint``
(``allow_unsafe=True`` in the loaders) is the only way past, for files the user trusts.
"""

from __future__ import annotations

import io
import pickle
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from cosmos_predict1.errors import UserError
from cosmos_predict1.release import redownload_hint

UNSAFE_OPTION = "--allow_unsafe_checkpoint"


class OpaqueBlob:
    """Stand-in for an ``io.BytesIO`` in a ``torch.save`` file; its bytes are dropped unread.

    transformer-engine 1.12 returns ``io.BytesIO(torch.save(fp8 metadata))`` from ``get_extra_state``; the renderer
    ignores ``_extra_state`` entries, so the nested stream is never unpickled.
    """

    def __setstate__(self, state: object) -> None:
        """Accept and drop the pickled ``(bytes, position, attributes)`` of the buffer."""


# ``torch.load(weights_only=True)`` additions: (stand-in, name of the global in the file).
DATA_ONLY_GLOBALS: list[tuple[type, str]] = [(OpaqueBlob, "_io.BytesIO"), (OpaqueBlob, "io.BytesIO")]
# ``safe_globals`` sets process-wide state on entry and restores it on exit: loads on two threads (the DiT and the
# tokenizer load together) must not interleave those, or one would lose the other's additions mid-load.
_ALLOWLIST_LOCK = threading.Lock()


def refusal(path: Path, offending: Iterable[str]) -> UserError:
    """The one-line error for a file whose pickle would call ``offending`` (globals outside the allowlist)."""
    names = ", ".join(sorted(set(offending)))
    return UserError(
        f"{path}: refused, loading it would call {names}, which is code, not the tensors and plain data a released "
        f"file holds: if it came from the download, {redownload_hint(path)}; only if you trust this "
        f"very file, rerun with {UNSAFE_OPTION} (that loads it fully, running any code it holds)."
    )


def load_torch_file(path: Path, *, allow_unsafe: bool, mmap: bool = False) -> Any:
    """The content of a ``torch.save`` file, on the CPU, built from tensors and plain data only.

    A pickle that would call a global outside the allowlist raises :func:`refusal`, unless ``allow_unsafe``, which
    unpickles it fully (as ``torch.load(weights_only=False)``). Any other failure (a damaged file) propagates for
    the caller to report. ``mmap`` maps the tensors of zip-format files instead of reading them (multi-GB files);
    legacy-format files cannot be mapped and are read.
    """
    mmap = mmap and _is_zip_format(path)
    try:
        with _ALLOWLIST_LOCK, torch.serialization.safe_globals(DATA_ONLY_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        if not allow_unsafe:
            offending = _offending_globals(path, err)
            if offending:
                raise refusal(path, offending) from None
            raise
    return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)


def _offending_globals(path: Path, err: pickle.UnpicklingError) -> list[str]:
    """The globals outside the allowlist that ``path`` names, found without running anything.

    Zip-format files are disassembled whole (``get_unsafe_globals_in_checkpoint`` lists every such global); for
    the others, and pickles that disassembler does not handle, the one ``torch.load`` stopped at.
    """
    if _is_zip_format(path):
        try:
            with _ALLOWLIST_LOCK, torch.serialization.safe_globals(DATA_ONLY_GLOBALS):
                found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except (pickle.UnpicklingError, ValueError, RuntimeError, EOFError, OSError):
            found = []
        if found:
            return found
    return re.findall(r"GLOBAL ([\w.]+)", str(err))[:1]


def _is_zip_format(path: Path) -> bool:
    """Whether ``path`` starts like the zip format of ``torch.save`` (a legacy-format file may hold zips inside)."""
    with open(path, "rb") as stream:
        return stream.read(4) == b"PK\x03\x04"


# ------------------------------------------------------------------------------------------ TorchScript archives


class ScriptObject:
    """Inert stand-in for an object of a TorchScript class: the attributes its pickle gives, nothing run.

    Subclassed once per class name (``qualified_name``) by :class:`ArchiveUnpickler`.
    """

    qualified_name: ClassVar[str] = ""
    state: object

    def __setstate__(self, state: object) -> None:
        """Keep the pickled state as it is (TorchScript would pass it to the class's own ``__setstate__``)."""
        self.state = state


@dataclass(frozen=True)
class ArchiveStorage:
    """The bytes of one ``data/<key>`` record of an archive and the element type its tensors read them as."""

    data: torch.UntypedStorage
    dtype: torch.dtype


@dataclass(frozen=True)
class _StorageType:
    """What the legacy storage classes (``torch.FloatStorage`` ...) of a persistent id stand for: a dtype."""

    dtype: torch.dtype


_STORAGE_DTYPES = {
    f"torch.{name}Storage": dtype
    for name, dtype in {
        "Double": torch.float64,
        "Float": torch.float32,
        "Half": torch.float16,
        "BFloat16": torch.bfloat16,
        "Long": torch.int64,
        "Int": torch.int32,
        "Short": torch.int16,
        "Char": torch.int8,
        "Byte": torch.uint8,
        "Bool": torch.bool,
        "ComplexFloat": torch.complex64,
        "ComplexDouble": torch.complex128,
    }.items()
}


def _rebuild_tensor(
    storage: ArchiveStorage,
    offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool,
    hooks: dict,
    metadata: dict | None = None,
) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` for archive records: a view of ``storage``, checked to lie inside it.

    Autograd flags, hooks and metadata carry no data for inference; non-empty hooks or metadata are refused.
    """
    if not (
        isinstance(storage, ArchiveStorage)
        and _all_ints((offset, *size, *stride))
        and isinstance(requires_grad, bool)
        and len(size) == len(stride)
        and not hooks
        and not metadata
    ):
        raise ValueError("malformed tensor record")
    elements = storage.data.nbytes() // storage.dtype.itemsize
    if offset < 0 or min((*size, *stride), default=0) < 0:
        raise ValueError("negative tensor offset, size or stride")
    if all(size) and offset + sum((n - 1) * s for n, s in zip(size, stride)) >= elements:
        raise ValueError(f"tensor {list(size)} at offset {offset} lies outside its record of {elements} elements")
    return torch.empty(0, dtype=storage.dtype).set_(storage.data, offset, size, stride)


def _all_ints(values: tuple) -> bool:
    return all(isinstance(value, int) and not isinstance(value, bool) for value in values)


def _tagged(value: object, type_name: str) -> object:
    """``torch.jit._pickle.restore_type_tag``: the container itself (the tag only names its TorchScript type)."""
    return value


def _as_list(values: list) -> list:
    """``torch.jit._pickle.build_{int,double,bool,tensor}list``: the list itself."""
    if not isinstance(values, list):
        raise ValueError("malformed list record")
    return values


def _device(spec: str, index: int | None = None) -> torch.device:
    """``torch.device`` from the name (and index) an archive stores."""
    if not isinstance(spec, str) or not (index is None or _all_ints((index,))):
        raise ValueError("malformed device record")
    return torch.device(spec) if index is None else torch.device(spec, index)


_ARCHIVE_FUNCTIONS: dict[str, Callable[..., object]] = {
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "collections.OrderedDict": OrderedDict,
    "torch.device": _device,
    "torch.jit._pickle.restore_type_tag": _tagged,
    **{f"torch.jit._pickle.build_{kind}list": _as_list for kind in ("int", "double", "bool", "tensor")},
}


class ArchiveUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript archive's ``data.pkl`` into :class:`ScriptObject` trees, tensors and plain data.

    ``read_record(key, dtype, elements)`` returns the bytes of record ``data/<key>``. Every global is resolved by
    :meth:`find_class` (pickle looks up nothing else), which returns only this module's inert functions and
    classes; any other global raises :func:`refusal` for ``source``. ``classes`` collects the scripted classes
    met, so the caller can check that none would run code of its own (``__setstate__``) in TorchScript.
    """

    def __init__(
        self, data: bytes, source: Path, read_record: Callable[[str, torch.dtype, int], torch.UntypedStorage]
    ) -> None:
        super().__init__(io.BytesIO(data))
        self.source = source
        self.read_record = read_record
        self.classes: dict[str, type[ScriptObject]] = {}
        self.storages: dict[str, ArchiveStorage] = {}

    def find_class(self, module: str, name: str) -> object:
        """The inert stand-in for global ``module.name``; a one-line refusal for anything outside the allowlist."""
        full = f"{module}.{name}"
        if re.fullmatch(r"__torch__(\.\w+)+", full):
            if full not in self.classes:
                self.classes[full] = type(name, (ScriptObject,), {"qualified_name": full})
            return self.classes[full]
        if full in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[full])
        if full in _ARCHIVE_FUNCTIONS:
            return _ARCHIVE_FUNCTIONS[full]
        raise refusal(self.source, [full])

    def persistent_load(self, pid: object) -> ArchiveStorage:
        """The storage a persistent id ``('storage', type, key, location, elements)`` names, read once per key."""
        if not (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and _all_ints(pid[4:])
        ):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        _, kind, key, _, elements = pid
        if key not in self.storages:
            self.storages[key] = ArchiveStorage(self.read_record(key, kind.dtype, elements), kind.dtype)
        if self.storages[key].dtype != kind.dtype:
            raise pickle.UnpicklingError(f"record {key} read as two element types")
        return self.storages[key]

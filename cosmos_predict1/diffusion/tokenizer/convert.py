"""Tokenizer weights from a checkpoint folder into diffusers' ``AutoencoderKLCosmos``.

Two folder layouts are read:
- released: ``encoder.jit`` + ``decoder.jit`` (TorchScript; only their tensors are used). They are read straight
  from the archives as data (:func:`read_jit_state_dict`): ``torch.jit.load`` would run the scripted classes'
  ``__setstate__`` code, so it is used only with ``allow_unsafe``. Renaming the tensors takes a while for the
  full-size files, so they are cached as safetensors in the project's cache folder (``cosmos_predict1.cache``),
  keyed by the SHA-256 of both files' content; an entry whose metadata or content digest does not match is
  rebuilt, never used. Only the ``CACHE_ENTRIES`` most recently used entries are kept (about 230 MB each for the
  released tokenizer). The checkpoint folder is never written.
- diffusers: ``config.json`` + ``diffusion_pytorch_model.safetensors``.
Weights are checked strictly (every name, every shape) before anything is built.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import re
import sys
import zipfile
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLCosmos
from diffusers.models.autoencoders.autoencoder_kl_cosmos import CosmosPatchEmbed3d, CosmosUnpatcher3d
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from cosmos_predict1.cache import private_folder, prune
from cosmos_predict1.diffusion.options import DIFFUSERS_TOKENIZER_WEIGHTS
from cosmos_predict1.errors import UserError
from cosmos_predict1.release import missing_file, redownload_hint
from cosmos_predict1.safe_load import ArchiveUnpickler, ScriptObject, refusal
from cosmos_predict1.temporary import temporary_path
from cosmos_predict1.weights import check_finite

from .names import (
    DECODER_FILE,
    ENCODER_FILE,
    infer_config,
    released_file,
    released_tensors,
    released_to_diffusers,
)

DIFFUSERS_CONFIG = "config.json"
DIFFUSERS_WEIGHTS = DIFFUSERS_TOKENIZER_WEIGHTS
_CACHE_FORMAT = "tokenizer-diffusers-v3"  # change when the cached content changes (v3: checked to be finite)
CACHE_ENTRIES = 2  # converted tokenizers kept in the cache: the most recently used ones
_HASH_CHUNK_BYTES = 16 * 1024 * 1024

log = logging.getLogger(__name__)


def read_jit_state_dict(path: Path, allow_unsafe: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a TorchScript file as ``torch.jit.load(path).state_dict()`` names them, on the CPU, in the
    dtype they were saved in.

    Read from the archive as data; only with ``allow_unsafe`` through ``torch.jit.load``, which runs code of the
    file. Raises a one-line ``UserError`` for a damaged file or one whose pickle would call code.
    """
    try:
        if allow_unsafe:
            module = torch.jit.load(str(path), map_location="cpu")
            return {name: tensor.detach() for name, tensor in module.state_dict().items()}
        return _read_archive(path)
    except UserError:
        raise
    except Exception as err:  # a damaged archive fails in many ways (zip, pickle, records, code); all mean unreadable
        reason = f"cannot be read as a TorchScript file ({type(err).__name__})"
        raise UserError(f"{path}: {reason}; {redownload_hint(path)}") from err


@dataclass(frozen=True)
class _ScriptClass:
    """What the archive's ``code/`` says about a TorchScript class: which attributes ``state_dict()`` holds."""

    is_module: bool
    parameters: frozenset[str]
    buffers: frozenset[str]
    restores_state: bool  # defines __setstate__: torch.jit.load would run it


_CLASS_LINE = re.compile(r"class (\w+)(?:\((\w*)\))?:")
_MEMBERS_LINE = re.compile(r"  (__parameters__|__buffers__) = (\[.*\])")


def _read_archive(path: Path) -> dict[str, torch.Tensor]:
    """``torch.jit.load(path).state_dict()`` computed from the archive's records without running anything.

    A TorchScript archive is a zip of ``<name>/data.pkl`` (the module tree as a pickle), ``<name>/data/<key>`` (one
    record per storage) and ``<name>/code/`` (the classes' source, which names their parameters and buffers).
    """
    with zipfile.ZipFile(path) as archive:
        records = archive.namelist()
        prefix = records[0].split("/")[0] + "/"
        if f"{prefix}constants.pkl" not in records:
            raise ValueError("not a TorchScript archive (no constants.pkl)")
        if f"{prefix}byteorder" in records and archive.read(f"{prefix}byteorder").decode() != sys.byteorder:
            raise ValueError("tensors stored in the other byte order")
        unpickler = ArchiveUnpickler(
            archive.read(f"{prefix}data.pkl"), path, lambda key, dtype, n: _read_record(archive, prefix, key, dtype, n)
        )
        root = unpickler.load()
        classes = _script_classes(archive, prefix, unpickler.classes)
    unsafe = [f"{name}.__setstate__" for name in unpickler.classes if classes[name].restores_state]
    if unsafe:
        raise refusal(path, unsafe)
    if not (isinstance(root, ScriptObject) and classes[root.qualified_name].is_module):
        raise ValueError("the archive does not hold a module")
    return _module_state_dict(root, classes)


def _read_record(
    archive: zipfile.ZipFile, prefix: str, key: str, dtype: torch.dtype, elements: int
) -> torch.UntypedStorage:
    """The bytes of record ``data/<key>``, which must hold ``elements`` values of ``dtype`` (CRC-checked by zipfile)."""
    info = archive.getinfo(f"{prefix}data/{key}")
    if info.file_size != elements * dtype.itemsize:
        raise ValueError(f"record {key} holds {info.file_size} bytes, not {elements} × {dtype}")
    buffer = torch.empty(info.file_size, dtype=torch.uint8)
    with archive.open(info) as stream:
        if stream.readinto(buffer.numpy()) != info.file_size or stream.read(1):
            raise ValueError(f"record {key} is not {info.file_size} bytes long")
    return buffer.untyped_storage()


def _script_classes(archive: zipfile.ZipFile, prefix: str, names: Iterable[str]) -> dict[str, _ScriptClass]:
    """The classes ``names`` (``__torch__.a.b.C``), read from the archive's ``code/__torch__/a/b.py`` as text."""
    classes: dict[str, _ScriptClass] = {}
    for module in {name.rpartition(".")[0] for name in names}:
        source = archive.read(f"{prefix}code/{module.replace('.', '/')}.py").decode("utf-8")
        classes.update({f"{module}.{name}": info for name, info in _parse_classes(source).items()})
    missing = sorted(set(names) - classes.keys())
    if missing:
        raise ValueError(f"no TorchScript code for {missing[0]}")
    return classes


def _parse_classes(source: str) -> dict[str, _ScriptClass]:
    """The top-level classes of a TorchScript source file: base, ``__parameters__``, ``__buffers__``, ``__setstate__``.

    The source is only scanned line by line (TorchScript prints these members in a fixed form), never run.
    """
    found: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in source.splitlines():
        if match := _CLASS_LINE.fullmatch(line):
            current = found[match[1]] = {"is_module": match[2] == "Module", "restores_state": False}
        elif current is not None and (match := _MEMBERS_LINE.fullmatch(line)):
            names = ast.literal_eval(match[2])
            if not all(isinstance(name, str) for name in names):
                raise ValueError(f"malformed {match[1]} line")
            current[match[1].strip("_")] = frozenset(names)
        elif current is not None and line.startswith("  def __setstate__("):
            current["restores_state"] = True
    return {
        name: _ScriptClass(
            info["is_module"],
            info.get("parameters", frozenset()),
            info.get("buffers", frozenset()),
            info["restores_state"],
        )
        for name, info in found.items()
    }


def _module_state_dict(root: ScriptObject, classes: Mapping[str, _ScriptClass]) -> dict[str, torch.Tensor]:
    """Parameters then buffers of each module, in attribute order, then its submodules: ``state_dict()``'s order."""
    state: dict[str, torch.Tensor] = {}

    def visit(module: ScriptObject, prefix: str, ancestors: frozenset[int]) -> None:
        attributes = getattr(module, "state", None)
        if not (isinstance(attributes, dict) and all(isinstance(name, str) for name in attributes)):
            raise ValueError(f"{module.qualified_name}: attributes are not a name → value table")
        info = classes[module.qualified_name]
        for group in (info.parameters, info.buffers):
            for name, value in attributes.items():
                if name in group and value is not None:
                    if not isinstance(value, torch.Tensor):
                        raise ValueError(f"{prefix}{name}: not a tensor")
                    state[prefix + name] = value
        for name, value in attributes.items():
            if isinstance(value, ScriptObject) and classes[value.qualified_name].is_module:
                if id(value) in ancestors:
                    raise ValueError(f"{prefix}{name}: the module tree has a cycle")
                visit(value, f"{prefix}{name}.", ancestors | {id(value)})

    visit(root, "", frozenset({id(root)}))
    return state


def check_tensors(found: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size], path: Path) -> None:
    """Raise a one-line ``UserError`` naming ``path`` unless ``found`` has exactly the expected names and shapes,
    and only finite values (``cosmos_predict1.weights``)."""
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    wrong = [
        f"{name} {list(found[name].shape)} (expected {list(expected[name])})"
        for name in sorted(expected.keys() & found.keys())
        if found[name].shape != expected[name]
    ]
    problems = [
        f"{len(items)} {label}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
        if items
    ]
    if problems:
        raise UserError(f"{path}: not the expected tokenizer weights ({'; '.join(problems)}); {redownload_hint(path)}")
    check_finite(found, str(path), f"the file is damaged: {redownload_hint(path)}")


def _meta_vae(config: Mapping[str, Any]) -> AutoencoderKLCosmos:
    with torch.device("meta"):
        return AutoencoderKLCosmos.from_config(dict(config))


def build_vae(
    config: Mapping[str, Any], state: Mapping[str, torch.Tensor], *, device: torch.device | str, dtype: torch.dtype
) -> AutoencoderKLCosmos:
    """The network in ``dtype`` on ``device``, eval mode, from diffusers-named weights (checked already).

    Entries for the Haar buffers (``*.wavelets``, ``*._arange``) replace diffusers' defaults: the released files
    carry the taps the original computes with. The network is created on the meta device and takes the weights
    by assignment, so no random weights are ever allocated.
    """
    vae = _meta_vae(config)
    buffers = {name for name, _ in vae.named_buffers()}
    weights = {name: t.to(device=device, dtype=dtype) for name, t in state.items() if name not in buffers}
    vae.load_state_dict(weights, strict=True, assign=True)
    # The (un)patchers hold only non-persistent buffers, which the meta-device build left without values.
    vae.encoder.patch_embed = CosmosPatchEmbed3d(vae.config.patch_size, vae.config.patch_type)
    vae.decoder.unpatch_embed = CosmosUnpatcher3d(vae.config.patch_size, vae.config.patch_type)
    with torch.no_grad():
        for name in buffers & state.keys():
            vae.get_buffer(name).copy_(state[name])
    for patcher in (vae.encoder.patch_embed, vae.decoder.unpatch_embed):
        patcher.to(device=device, dtype=dtype)
    return vae.eval().requires_grad_(False)


def _file_digest(path: Path) -> str:
    """Hex SHA-256 of a file's content, read in 16 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _content_digest(state: Mapping[str, torch.Tensor]) -> str:
    """Hex SHA-256 of tensors: every name, dtype, shape and byte, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name]
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _cache_entry(sources: list[Path], allow_unsafe: bool) -> tuple[Path, str]:
    """(file, identity) of the cache entry for these source files: the identity names the cache format, how the
    sources were read and their SHA-256; the file name is its digest, so other content gets another entry."""
    reader = "torch.jit.load" if allow_unsafe else "archive data"
    identity = json.dumps([_CACHE_FORMAT, reader, {path.name: _file_digest(path) for path in sources}])
    key = hashlib.sha256(identity.encode()).hexdigest()[:32]
    return private_folder("tokenizer") / f"{key}.safetensors", identity


def _read_cache(path: Path, identity: str) -> dict[str, torch.Tensor] | None:
    """The entry's tensors, or None when it is absent or is not exactly what :func:`_write_cache` stored for
    ``identity`` (unreadable, truncated, swapped for another file, or altered: its content digest differs)."""
    if not path.is_file():
        return None
    try:
        with safe_open(path, framework="pt") as entry:
            metadata = entry.metadata() or {}
            state = {name: entry.get_tensor(name) for name in entry.keys()}
    except (OSError, SafetensorError) as err:
        log.warning("rebuilding the unreadable tokenizer cache entry %s (%s)", path, err)
        return None
    if metadata.get("identity") != identity or metadata.get("content") != _content_digest(state):
        log.warning("rebuilding the tokenizer cache entry %s: it does not match its sources or its digest", path)
        return None
    return state


def _write_cache(path: Path, identity: str, state: Mapping[str, torch.Tensor]) -> None:
    """Write the entry with its identity and content digest as metadata, atomically (temporary file, flushed to
    disk, then renamed), then prune the cache to its ``CACHE_ENTRIES`` most recently used entries; an unwritable
    cache only costs the next load time."""
    tensors = {name: t.contiguous() for name, t in state.items()}
    metadata = {"identity": identity, "content": _content_digest(tensors)}
    temporary = temporary_path(path)
    try:
        try:
            save_file(tensors, temporary, metadata=metadata)
            with open(temporary, "rb") as written:
                os.fsync(written.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        prune(path.parent, path.suffix, CACHE_ENTRIES)
    except (OSError, SafetensorError) as err:  # safetensors reports a failed write (a full disk) as its own error
        log.warning("not caching the converted tokenizer weights in %s (%s)", path.parent, err)


def _require(path: Path) -> Path:
    if not path.is_file():
        raise missing_file(path)
    return path


def load_released_weights(folder: Path, allow_unsafe: bool = False) -> dict[str, torch.Tensor]:
    """Diffusers-named tensors of ``encoder.jit`` + ``decoder.jit`` in ``folder`` (Haar buffers included), in
    the dtype they were saved in; from the conversion cache when it holds an intact entry for these exact files.

    The files are read as data; ``allow_unsafe`` reads them with ``torch.jit.load`` instead (runs their code).
    """
    sources = [_require(folder / ENCODER_FILE), _require(folder / DECODER_FILE)]
    cache, identity = _cache_entry(sources, allow_unsafe)
    cached = _read_cache(cache, identity)
    if cached is not None:
        with suppress(OSError):
            os.utime(cache)  # used now: pruning keeps the most recently used entries
        return cached
    released = {path.name: read_jit_state_dict(path, allow_unsafe) for path in sources}
    state = released_to_diffusers(released[ENCODER_FILE] | released[DECODER_FILE])
    try:
        config = infer_config(state)
    except KeyError as err:
        raise UserError(
            f"{folder}: {ENCODER_FILE}/{DECODER_FILE} do not hold a Cosmos video tokenizer (no {err}); "
            f"{redownload_hint(sources[0])}"
        ) from None
    expected = released_tensors(_meta_vae(config))
    for path in sources:
        shapes = {name: t.shape for name, t in expected.items() if released_file(name) == path.name}
        check_tensors(released[path.name], shapes, path)
    _write_cache(cache, identity, state)
    return state


def load_diffusers_weights(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config, weights) of a diffusers-format folder, checked strictly against the config."""
    config_path, weights_path = _require(folder / DIFFUSERS_CONFIG), _require(folder / DIFFUSERS_WEIGHTS)
    try:
        config = json.loads(config_path.read_text())
        state = load_file(weights_path)
    except (OSError, ValueError, SafetensorError) as err:
        raise UserError(f"{folder}: unreadable diffusers tokenizer ({type(err).__name__}: {err})") from None
    if config.get("_class_name", AutoencoderKLCosmos.__name__) != AutoencoderKLCosmos.__name__:
        raise UserError(f"{config_path}: describes a {config['_class_name']}, not an {AutoencoderKLCosmos.__name__}")
    check_tensors(state, {name: t.shape for name, t in _meta_vae(config).state_dict().items()}, weights_path)
    return config, state

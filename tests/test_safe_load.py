"""Checkpoint files load without running code from them (cosmos_predict1.safe_load; tiny checkpoints, CPU).

transformer-engine checkpoints (``io.BytesIO``/None/empty ``_extra_state``) load with no flag; a ``model.pt``,
statistics file or TorchScript archive that would call code is refused in one line naming what it would call, and
its payload never runs; the TorchScript archives are read as data exactly as ``torch.jit.load(...).state_dict()``.
"""

from __future__ import annotations

import io as bytes_io
import os
import pickle
import shlex
import shutil
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Dict, List

import pytest
import torch
from test_reliability import Run, forward_args, inverse_args, run_cli, write_gbuffers, write_images
from torch import nn

from cosmos_predict1.diffusion.inference import inference_forward_renderer as forward
from cosmos_predict1.diffusion.inference import inference_inverse_renderer as inverse
from cosmos_predict1.diffusion.networks import INVERSE_7B, build_network
from cosmos_predict1.diffusion.tokenizer import load_tokenizer
from cosmos_predict1.diffusion.tokenizer.convert import read_jit_state_dict
from cosmos_predict1.errors import UserError
from cosmos_predict1.release import FORWARD_MODEL, INVERSE_MODEL, TOKENIZER
from cosmos_predict1.safe_load import ArchiveStorage, OpaqueBlob, _rebuild_tensor, load_torch_file

SYSTEM = f"{os.system.__module__}.system"  # the global a pickle names for os.system (posix.system on Linux)


# ---------------------------------------------------------------------------------------------------- helpers


class _RunsShellCommand:
    """Pickles as a call of ``os.system(command)``: a model.pt that would run code while it loads."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return os.system, (self.command,)


def _touch_command(marker: Path) -> _RunsShellCommand:
    return _RunsShellCommand(f"touch {shlex.quote(str(marker))}")


class _WritesOnLoad(nn.Module):
    """A scripted module whose TorchScript ``__setstate__`` writes ``target`` (torch.from_file, shared=True)."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self.weight = nn.Parameter(torch.zeros(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight.sum()

    @torch.jit.export
    def __getstate__(self) -> tuple[str, torch.Tensor, bool]:
        return (self.target, self.weight, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, torch.Tensor, bool]) -> None:
        self.target = state[0]
        self.training = state[2]
        written = torch.from_file(self.target, shared=True, size=8)
        self.weight = state[1] + written[:2] * 0


def _te_extra_state(fp8: bool) -> bytes_io.BytesIO:
    """What transformer-engine 1.12's ``get_extra_state()`` returns: ``io.BytesIO`` of ``torch.save`` of the FP8
    metadata (tensors + plain values), or of None when FP8 was off."""
    state = None
    if fp8:
        state = {f"{name}_{way}": torch.rand(3) for name in ("scale", "scale_inv") for way in ("fwd", "bwd")}
        state |= {f"amax_history_{way}": torch.rand(16, 3) for way in ("fwd", "bwd")}
        state["extra_fp8_variables"] = {"num_gemms": 1, "fp8_max_fwd": 448.0, "recipe": "delayed", "shape": (3, 1)}
    blob = bytes_io.BytesIO()
    torch.save(state, blob)
    return blob


def _te_state_dict(released: dict[str, torch.Tensor], blocks: int) -> dict[str, object]:
    """``released`` plus the ``_extra_state`` entries transformer-engine modules add to ``state_dict()``."""
    state: dict[str, object] = dict(released)
    for block in range(blocks):
        for sub in (0, 1):
            attention = f"net.blocks.block{block}.blocks.{sub}.block.attn"
            state[f"{attention}.attn_op._extra_state"] = _te_extra_state(fp8=sub == 0)
            state[f"{attention}.to_q.1._extra_state"] = None
            state[f"{attention}.to_k.1._extra_state"] = torch.empty(0)
    state["net.affline_norm._extra_state"] = _te_extra_state(fp8=False)
    state["logvar.0.freqs"] = torch.randn(8)
    return state


def _replace(path: Path, write: Callable[[Path], object]) -> None:
    """Write a new file at ``path`` (unlinked first: the tiny checkpoint copies are hard links)."""
    path.unlink()
    write(path)


def _checkpoints_copy(tiny_checkpoints: Path, folder: Path) -> Path:
    shutil.copytree(tiny_checkpoints, folder, copy_function=os.link)
    return folder


def _released(checkpoints: Path, model: str) -> dict[str, torch.Tensor]:
    return torch.load(checkpoints / model / "model.pt", weights_only=True)


def _assert_refused(run: Run, path: Path, *fragments: str) -> None:
    assert run.code == 2, run.output
    assert "Traceback" not in run.output
    line = run.last_line
    assert line.startswith("error: ") and str(path) in line and "--allow_unsafe_checkpoint" in line, line
    assert all(fragment in line for fragment in fragments), line


def _archive_state(path: Path) -> dict[str, torch.Tensor]:
    """What ``torch.jit.load`` gives (only for files made by the tests)."""
    module = torch.jit.load(str(path), map_location="cpu")
    return {name: tensor.detach() for name, tensor in module.state_dict().items()}


def _assert_same_state(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert list(found) == list(expected)
    for name, tensor in expected.items():
        assert found[name].dtype == tensor.dtype and found[name].shape == tensor.shape, name
        assert torch.equal(found[name], tensor), name


# ---------------------------------------------------------------------------------------------------- model.pt


def test_transformer_engine_checkpoints_run_both_clis_without_flag(tiny_checkpoints: Path, tmp_path: Path) -> None:
    checkpoints = _checkpoints_copy(tiny_checkpoints, tmp_path / "checkpoints")
    inverse_state = _te_state_dict(_released(checkpoints, INVERSE_MODEL), blocks=2)
    wrapped = {
        "model": inverse_state,
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.99), "params": [0, 1]}]},
        "grad_scaler": OrderedDict(scale=torch.tensor(65536.0), growth_tracker=0),
        "iteration": 12000,
    }
    _replace(checkpoints / INVERSE_MODEL / "model.pt", lambda path: torch.save(wrapped, path))
    forward_state = _te_state_dict(_released(checkpoints, FORWARD_MODEL), blocks=2)
    ema = {"ema": {key.replace(".", "-"): value for key, value in forward_state.items()}}
    _replace(checkpoints / FORWARD_MODEL / "model.pt", lambda path: torch.save(ema, path))
    loaded = load_torch_file(checkpoints / INVERSE_MODEL / "model.pt", allow_unsafe=False)["model"]
    assert isinstance(loaded["net.blocks.block0.blocks.0.block.attn.attn_op._extra_state"], OpaqueBlob)

    write_images(tmp_path / "images", ["photo.png"])
    run = run_cli(inverse, checkpoints, *inverse_args(tmp_path / "images", tmp_path / "inverse"))
    assert run.code == 0, run.output
    assert (tmp_path / "inverse" / "gbuffer_frames" / "photo" / "0000.0000.depth.jpg").is_file()
    gbuffers = write_gbuffers(tmp_path / "gbuffers")
    run = run_cli(forward, checkpoints, *forward_args(gbuffers, tmp_path / "forward"))
    assert run.code == 0, run.output
    assert any((tmp_path / "forward").rglob("*.jpg"))


def test_legacy_format_checkpoint_with_extra_state_loads(tmp_path: Path) -> None:
    path = tmp_path / "model" / "model.pt"
    path.parent.mkdir()
    state = {"net.w": torch.ones(2), "net.attn_op._extra_state": _te_extra_state(fp8=True)}
    torch.save({"model": state}, path, _use_new_zipfile_serialization=False)
    loaded = load_torch_file(path, allow_unsafe=False, mmap=True)["model"]
    assert torch.equal(loaded["net.w"], torch.ones(2)) and isinstance(loaded["net.attn_op._extra_state"], OpaqueBlob)


def test_model_pt_that_would_run_code_is_refused(tiny_checkpoints: Path, tmp_path: Path) -> None:
    checkpoints = _checkpoints_copy(tiny_checkpoints, tmp_path / "checkpoints")
    marker = tmp_path / "payload-ran"
    payload = {"model": _released(checkpoints, INVERSE_MODEL), "trainer": _touch_command(marker)}
    model = checkpoints / INVERSE_MODEL / "model.pt"
    _replace(model, lambda path: torch.save(payload, path))
    write_images(tmp_path / "images", ["photo.png"])
    run = run_cli(inverse, checkpoints, *inverse_args(tmp_path / "images", tmp_path / "out"))
    _assert_refused(run, model, f"would call {SYSTEM},")
    assert not marker.exists()

    # The payload is live: the opt-in unpickles the file fully, which runs it.
    assert build_network(model.parent, INVERSE_7B, dtype=torch.float32, allow_pickle=True) is not None
    assert marker.exists()


def test_legacy_format_model_pt_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "checkpoints" / "model" / "model.pt"
    path.parent.mkdir(parents=True)
    torch.save({"model": {}, "hook": _touch_command(marker)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(UserError, match=f"would call {SYSTEM},") as caught:
        load_torch_file(path, allow_unsafe=False, mmap=True)
    assert "\n" not in str(caught.value) and "download_diffusion_renderer_checkpoints.py" in str(caught.value)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------- tokenizer


def test_statistics_file_that_would_run_code_is_refused(tiny_checkpoints: Path, tmp_path: Path) -> None:
    checkpoints = _checkpoints_copy(tiny_checkpoints, tmp_path / "checkpoints")
    marker = tmp_path / "payload-ran"
    statistics = checkpoints / TOKENIZER / "image_mean_std.pt"
    pair = torch.load(statistics, weights_only=True)
    _replace(statistics, lambda path: torch.save((pair[0], pair[1], _touch_command(marker)), path))
    with pytest.raises(UserError, match=f"{statistics}: refused, loading it would call {SYSTEM},"):
        load_tokenizer(checkpoints / TOKENIZER)
    assert not marker.exists()


def test_torchscript_that_would_run_code_is_refused_by_both_clis(tiny_checkpoints: Path, tmp_path: Path) -> None:
    checkpoints = _checkpoints_copy(tiny_checkpoints, tmp_path / "checkpoints")
    marker = tmp_path / "payload-wrote-this"
    encoder = checkpoints / TOKENIZER / "encoder.jit"
    _replace(encoder, lambda path: torch.jit.save(torch.jit.script(_WritesOnLoad(str(marker))), str(path)))
    write_images(tmp_path / "images", ["photo.png"])
    runs = [
        run_cli(inverse, checkpoints, *inverse_args(tmp_path / "images", tmp_path / "inverse")),
        run_cli(forward, checkpoints, *forward_args(write_gbuffers(tmp_path / "gbuffers"), tmp_path / "forward")),
    ]
    for run in runs:
        _assert_refused(run, encoder, "_WritesOnLoad.__setstate__")
    assert not marker.exists()

    # The payload is live: torch.jit.load runs the __setstate__, which writes the file.
    torch.jit.load(str(encoder))
    assert marker.stat().st_size == 8 * 4


def test_torchscript_archive_calling_other_globals_is_refused(tiny_checkpoints: Path, tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    source, path = tiny_checkpoints / TOKENIZER / "decoder.jit", tmp_path / "tokenizer" / "decoder.jit"
    path.parent.mkdir()
    _rewrite_archive(source, path, lambda data: pickle.dumps(_touch_command(marker), protocol=2))
    with pytest.raises(UserError, match=f"{path}: refused, loading it would call {SYSTEM},"):
        read_jit_state_dict(path)
    assert not marker.exists()


# ------------------------------------------------------------------------------- archive reader == torch.jit.load


class _Mixed(nn.Module):
    """Parameter and buffer kinds a traced archive can hold: bf16, views sharing one storage, integer and
    non-persistent buffers, a None bias, nested modules."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 3, 1, bias=False)
        self.norm = nn.BatchNorm1d(3)
        self.register_buffer("taps", torch.full((2,), 0.5**0.5).bfloat16(), persistent=False)
        self.register_buffer("size", torch.tensor([4], dtype=torch.int32))
        self.register_buffer("arange", torch.arange(2))
        self.table = nn.Parameter(torch.randn(4, 4).bfloat16())
        self.rows = nn.Parameter(self.table.data[1:3])
        self.head = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv(x).flatten(2).mean(-1)).sum() + self.head(torch.ones(2)).sum()
        return y + self.taps.float().sum() + self.size.sum() + self.arange.sum() + (self.table @ self.rows.T).sum()


class _Attributes(nn.Module):
    """A scripted module with non-tensor attributes (lists, typed dicts, strings, devices, a plain tensor)."""

    def __init__(self) -> None:
        super().__init__()
        self.ints: List[int] = [1, 2]
        self.named: Dict[str, torch.Tensor] = {"a": torch.ones(2)}
        self.label = "x"
        self.where = torch.device("cpu")
        self.plain = torch.ones(3)
        self.weight = nn.Parameter(torch.randn(2))
        self.register_buffer("steps", torch.arange(3, dtype=torch.int32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight.sum() + self.plain.sum() + self.steps.sum() + self.named["a"].sum() + len(self.ints)


def _rewrite_archive(source: Path, target: Path, change: Callable[[bytes], bytes]) -> None:
    """``source`` with its ``data.pkl`` replaced by ``change(data.pkl)``, every other record as it is."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            new.writestr(info, change(data) if info.filename.endswith("/data.pkl") else data)


def _pickled_string(text: str) -> bytes:
    encoded = text.encode()
    return b"X" + struct.pack("<I", len(encoded)) + encoded


@pytest.mark.parametrize("folder", ["fixture_tokenizer_folder", "tiny_checkpoints"])
def test_archive_reader_matches_jit_load_on_tokenizer_pairs(folder: str, request: pytest.FixtureRequest) -> None:
    root = request.getfixturevalue(folder)
    tokenizer = root / TOKENIZER if folder == "tiny_checkpoints" else root
    for name in ("encoder.jit", "decoder.jit"):
        _assert_same_state(read_jit_state_dict(tokenizer / name), _archive_state(tokenizer / name))


def test_archive_reader_matches_jit_load_on_traced_and_scripted_modules(tmp_path: Path) -> None:
    traced = torch.jit.trace(_Mixed().eval(), torch.randn(2, 2, 3, 3, 3))
    torch.jit.save(traced, str(tmp_path / "traced.jit"))
    torch.jit.save(torch.jit.script(_Attributes()), str(tmp_path / "scripted.jit"))
    for name in ("traced.jit", "scripted.jit"):
        _assert_same_state(read_jit_state_dict(tmp_path / name), _archive_state(tmp_path / name))
    names = read_jit_state_dict(tmp_path / "traced.jit").keys()
    assert {"taps", "size", "arange", "table", "rows", "norm.num_batches_tracked", "head.2.bias"} <= names


def test_archive_reader_reads_tensors_saved_on_a_gpu(tiny_checkpoints: Path, tmp_path: Path) -> None:
    """The released files were exported from CUDA: their storages are tagged 'cuda:0'; they load on the CPU."""
    source, moved = tiny_checkpoints / TOKENIZER / "decoder.jit", tmp_path / "decoder.jit"
    cpu, gpu = _pickled_string("cpu"), _pickled_string("cuda:0")
    _rewrite_archive(source, moved, lambda data: data.replace(cpu, gpu))
    with zipfile.ZipFile(moved) as archive:
        pickled = archive.read(next(name for name in archive.namelist() if name.endswith("/data.pkl")))
    assert gpu in pickled and cpu not in pickled
    _assert_same_state(read_jit_state_dict(moved), _archive_state(source))


def test_archive_reader_detects_damaged_tensor_records(tiny_checkpoints: Path, tmp_path: Path) -> None:
    path = tmp_path / "tokenizer" / "encoder.jit"
    path.parent.mkdir()
    data = bytearray((tiny_checkpoints / TOKENIZER / "encoder.jit").read_bytes())
    with zipfile.ZipFile(tiny_checkpoints / TOKENIZER / "encoder.jit") as archive:
        record = max((info for info in archive.infolist() if "/data/" in info.filename), key=lambda i: i.file_size)
    name_length, extra_length = struct.unpack("<HH", data[record.header_offset + 26 : record.header_offset + 30])
    start = record.header_offset + 30 + name_length + extra_length
    data[start + record.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=f"{path}: cannot be read as a TorchScript file .*download"):
        read_jit_state_dict(path)


def test_tensor_records_must_lie_inside_their_storage() -> None:
    storage = ArchiveStorage(torch.arange(16, dtype=torch.uint8).untyped_storage(), torch.float32)
    assert _rebuild_tensor(storage, 1, (3,), (1,), False, OrderedDict()).shape == (3,)
    assert _rebuild_tensor(storage, 9, (0, 2), (2, 1), False, OrderedDict()).numel() == 0
    for offset, size, stride in [(2, (3,), (1,)), (0, (2, 2), (3, 1)), (-1, (1,), (1,)), (0, (2,), (-1,))]:
        with pytest.raises(ValueError):
            _rebuild_tensor(storage, offset, size, stride, False, OrderedDict())
    with pytest.raises(ValueError, match="malformed"):
        _rebuild_tensor(storage, 0, (1,), (1,), False, OrderedDict(hook=print))


def test_torch_jit_load_only_with_allow_unsafe(
    tiny_checkpoints: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COSMOS_CACHE_DIR", str(tmp_path / "cache"))
    original, loads = torch.jit.load, []
    monkeypatch.setattr(torch.jit, "load", lambda path, **k: loads.append(Path(path).name) or original(path, **k))
    safe = load_tokenizer(tiny_checkpoints / TOKENIZER, pixel_chunk_duration=9)
    assert loads == []
    trusted = load_tokenizer(tiny_checkpoints / TOKENIZER, pixel_chunk_duration=9, allow_unsafe=True)
    assert sorted(loads) == ["decoder.jit", "encoder.jit"], "allow_unsafe used the data-only cache entry"
    expected = safe.vae.state_dict()
    assert all(torch.equal(tensor, expected[name]) for name, tensor in trusted.vae.state_dict().items())

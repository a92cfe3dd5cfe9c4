"""When compiling pays, and where compiled kernels are kept.

``torch.compile`` makes every DiT step and tokenizer call faster, but costs seconds before the first one: for the
DiT about 12 s the first time on a machine and 4.5 s once PyTorch's caches hold its kernels; for the tokenizer about
60 s and 7 s. A run of one image saves far less than that, a 57-frame clip far more. ``decide`` compares, for the
planned work, the time compiling saves with what it costs (``COSTS``, measured on an H100 with the released sizes;
scripts/benchmark.py measures them again) and compiles only what pays. ``--compile true|false`` forces it.

Compiled kernels persist between runs in ``<cache dir>/compile`` (PyTorch's own inductor and Triton caches, pointed
there; a private folder, see ``cosmos_predict1.cache``). A marker per compiled shape records that the cache is warm
for it, which makes the next decision use the warm cost; markers only steer that estimate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cosmos_predict1.cache import private_folder

log = logging.getLogger("cosmos_predict1")


@dataclass(frozen=True)
class CompileCosts:
    """Seconds compiling saves per unit of work, and what it costs per distinct input shape (cold: empty caches).

    Units: a DiT step over one latent position (batch × T' × h × w); an encoded pixel; a decoded latent position.
    Images and videos differ because the tokenizer runs them through different paths.
    """

    dit_saved_per_position_step: float = 2.5e-6
    dit_cold: float = 12.0
    dit_warm: float = 4.5
    encode_saved_per_pixel: dict[str, float] = field(default_factory=lambda: {"image": 3.4e-8, "video": 3.4e-9})
    decode_saved_per_position: dict[str, float] = field(default_factory=lambda: {"image": 3.3e-6, "video": 2.3e-6})
    tokenizer_cold: float = 60.0
    tokenizer_warm: float = 7.0


COSTS = CompileCosts()
Shape = tuple[int, ...]


@dataclass(frozen=True)
class PlannedWork:
    """What a run will compute, as the decision needs it.

    ``dit_calls``: (network input shape ``[B, 16, T', h, w]``, steps) per sampling batch (B doubled with guidance);
    ``encodes``: video shapes ``[B, 3, T, H, W]``; ``decodes``: latent shapes ``[B, 16, T', h, w]``.
    """

    dit_calls: tuple[tuple[Shape, int], ...] = ()
    encodes: tuple[Shape, ...] = ()
    decodes: tuple[Shape, ...] = ()

    @staticmethod
    def combine(parts: Iterable[PlannedWork]) -> PlannedWork:
        """All calls of ``parts``."""
        parts = list(parts)
        return PlannedWork(
            tuple(call for part in parts for call in part.dit_calls),
            tuple(shape for part in parts for shape in part.encodes),
            tuple(shape for part in parts for shape in part.decodes),
        )

    def dit_shapes(self) -> set[Shape]:
        return {shape for shape, _ in self.dit_calls}

    def tokenizer_shapes(self) -> set[tuple]:
        """The tokenizer's compile keys: ("encode", *shape) and ("decode", *shape)."""
        return {("encode", *shape) for shape in self.encodes} | {("decode", *shape) for shape in self.decodes}


@dataclass(frozen=True)
class Decision:
    """Compile the DiT and/or the tokenizer; the seconds each is expected to save (negative: it would cost)."""

    network: bool
    tokenizer: bool
    network_gain: float
    tokenizer_gain: float


def _positions(shape: Shape) -> int:
    batch, _, frames, height, width = shape
    return batch * frames * height * width


def _kind(frames: int) -> str:
    return "image" if frames == 1 else "video"


def decide(work: PlannedWork, *, network_warm: bool, tokenizer_warm: bool, costs: CompileCosts = COSTS) -> Decision:
    """Compile each model exactly when the time it saves over ``work`` exceeds its compile time.

    Every distinct input shape compiles once (``dynamic=False``), at the warm cost where the cache holds it.
    """
    saved = sum(_positions(shape) * steps for shape, steps in work.dit_calls) * costs.dit_saved_per_position_step
    network_cost = len(work.dit_shapes()) * (costs.dit_warm if network_warm else costs.dit_cold)
    tokenizer_saved = sum(costs.encode_saved_per_pixel[_kind(s[2])] * _positions(s) for s in work.encodes)
    tokenizer_saved += sum(costs.decode_saved_per_position[_kind(s[2])] * _positions(s) for s in work.decodes)
    tokenizer_cost = len(work.tokenizer_shapes()) * (costs.tokenizer_warm if tokenizer_warm else costs.tokenizer_cold)
    network_gain, tokenizer_gain = saved - network_cost, tokenizer_saved - tokenizer_cost
    return Decision(network_gain > 0, tokenizer_gain > 0, network_gain, tokenizer_gain)


def forced(choice: bool | None, device_type: str) -> bool | None:
    """The choice known before any work is planned: ``--compile`` true/false as given, no compiling on the CPU
    (``COSTS`` are GPU times); None: ``decide`` from the planned work once the models are loaded."""
    if choice is None and device_type != "cuda":
        return False
    return choice


def describe_choice(choice: bool | None, device_type: str) -> str:
    """One line saying whether this run compiles (see ``forced``), for the lines printed before loading."""
    known = forced(choice, device_type)
    if known is None:
        return "Compiling: what pays for this run's work, decided once the models are loaded (--compile forces it)"
    if choice is None:
        return "Compiling: no, not on the CPU (--compile true forces it)"
    return f"Compiling: {'the DiT and the tokenizer' if known else 'no'} (--compile {str(known).lower()})"


def use_cache_folder() -> Path:
    """Point PyTorch's compile caches (inductor, Triton) at ``<cache dir>/compile`` unless the user set them."""
    folder = private_folder("compile")
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(folder / "inductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(folder / "triton"))
    return folder


def _marker(model: str, shape: object, identity: dict) -> Path:
    key = json.dumps([model, str(shape), identity], sort_keys=True)
    return use_cache_folder() / "markers" / hashlib.sha256(key.encode()).hexdigest()[:32]


def is_warm(model: str, shapes: Iterable[object], identity: dict) -> bool:
    """Whether every one of ``shapes`` of ``model`` was compiled before with the same ``identity`` (torch, GPU,
    config)."""
    return all(_marker(model, shape, identity).is_file() for shape in shapes)


def mark_warm(model: str, shape: object, identity: dict) -> None:
    """Record that ``shape`` is compiled (a failure to write only costs a cold estimate next time)."""
    marker = _marker(model, shape, identity)
    try:
        marker.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        marker.touch()
    except OSError as err:
        log.debug("compile marker %s not written (%s)", marker, err)

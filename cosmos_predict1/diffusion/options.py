"""The options of a run as frozen values, and the names they choose from. Imports no torch: the command line reads
this module to offer its choices, so ``--help`` and argument errors answer at once.

- ``ModelOptions``: which weights, on which device, with which speed and memory switches;
- ``SamplingOptions``: steps, guidance, batch size;
- ``FrameOptions``: how input frames meet the model's H × W, and the size outputs come back at;
- ``OutputOptions``, ``InverseRunOptions``, ``ForwardRunOptions``: what a script run does and writes;
- ``Lighting``: one lighting of the forward renderer.
"""

from __future__ import annotations

import math
import numbers
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cosmos_predict1.errors import UserError
from cosmos_predict1.release import REQUIRED_FILES, TOKENIZER, missing_files

if TYPE_CHECKING:
    import numpy as np

# Row of the inverse network's context embedding for each G-buffer.
GBUFFER_INDEX = {
    "basecolor": 0,
    "metallic": 1,
    "roughness": 2,
    "normal": 3,
    "depth": 4,
    "diffuse_albedo": 5,
    "specular_albedo": 6,
}
# The passes the inverse renderer writes by default, in this order; the forward renderer reads the same five.
GBUFFER_PASSES = ("basecolor", "normal", "depth", "roughness", "metallic")
FIT_MODES = ("stretch", "crop", "pad")
OUTPUT_SIZES = ("model", "input")
OUTPUT_FORMATS = ("jpg", "png16", "exr")
TOKENIZER_CHUNK = 57  # pixel frames per tokenizer chunk: the released models take 1 or 57 frames
MODEL_FPS = 24.0  # the frame rate the original's datasets give the model, whatever the output videos' fps
MAX_SIDE = 1920  # the network's position tables cover 240 latent rows and columns
DIFFUSERS_TOKENIZER_WEIGHTS = "diffusion_pytorch_model.safetensors"  # a tokenizer folder in diffusers' format

# Ranges of the numeric options (inclusive), checked before anything is loaded.
MAX_STEPS = 1000  # Euler steps; the released models are meant for 15
MAX_GUIDANCE = 100.0
MAX_FPS = 1000  # frame rate written into output videos
MAX_SEED = 2**63 - 1  # the seed must fit a 64-bit generator seed, as in the original (torch.manual_seed)
MAX_RESIZE = 8192  # pixels per value of --resize_resolution
MAX_RESIZED_PIXELS = MAX_RESIZE * MAX_RESIZE  # one resized frame, before the crop
MAX_ROTATION = 360.0  # degrees, either way
MAX_STRENGTH = 1e6


def check_number(
    option: str, value: object, low: float, high: float, *, integer: bool = False, open_low: bool = False
) -> None:
    """``UserError`` naming ``option`` and the allowed range unless ``value`` is a finite number (an integer if
    ``integer``) in [``low``, ``high``] (in (``low``, ``high``] with ``open_low``); ``high`` may be ``math.inf``."""
    kind = "an integer" if integer else "a number"
    if high == math.inf:
        allowed = f"{kind} {'above' if open_low else 'of at least'} {_number(low)}"
    elif open_low:
        allowed = f"{kind} above {_number(low)} and at most {_number(high)}"
    else:
        allowed = f"{kind} from {_number(low)} to {_number(high)}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if integer else numbers.Real):
        raise UserError(f"{option} {value!r}: must be {allowed}.")
    if not (math.isfinite(value) and (low < value if open_low else low <= value) and value <= high):
        raise UserError(f"{option} {value}: must be {allowed}.")


def _number(value: float) -> str:
    """A range limit as written: whole numbers in full, others in the shortest form."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**64 else f"{value:g}"


@dataclass(frozen=True, kw_only=True)
class ModelOptions:
    """Where the weights are and how the models run.

    ``network_folder`` is the DiT folder inside ``checkpoint_dir`` (or any path); ``compile`` None decides from the
    planned work, True/False forces it; ``allow_unsafe_checkpoint`` permits full unpickling (trusted files only).
    """

    checkpoint_dir: Path = Path("checkpoints")
    network_folder: str
    tokenizer_folder: str = TOKENIZER
    device: str = "cuda"
    offload_network: bool = False
    offload_tokenizer: bool = False
    compile: bool | None = None
    fp8: bool = False
    allow_unsafe_checkpoint: bool = False

    def check_files(self) -> None:
        """Missing model folders or files are one line naming the first and the downloads that fetch them, before
        anything loads.

        The DiT folder needs ``model.pt``; the tokenizer folder the released files or a diffusers-format model.
        """
        required = [self.network_dir, self.network_dir / "model.pt", self.tokenizer_dir]
        if not (self.tokenizer_dir / DIFFUSERS_TOKENIZER_WEIGHTS).is_file():
            required += [self.tokenizer_dir / name for name in REQUIRED_FILES[TOKENIZER]]
        missing = [path for path in required if not path.exists()]
        missing = [path for path in missing if path.parent not in missing]  # a missing folder stands for its files
        if missing:
            raise missing_files(missing)
        for path in [required[1], *required[3:]]:  # the files (reading a named pipe would block forever)
            check_regular_file(path, "the downloaded checkpoint file")
        config = self.network_dir / "config.json"
        if config.exists() or config.is_symlink():
            check_regular_file(config, "the network's config.json")

    @property
    def network_dir(self) -> Path:
        return Path(self.checkpoint_dir) / self.network_folder

    @property
    def tokenizer_dir(self) -> Path:
        return Path(self.checkpoint_dir) / self.tokenizer_folder

    def __post_init__(self) -> None:
        if self.fp8 and self.offload_network:
            raise UserError("--fp8 and --offload_diffusion_transformer cannot be combined; choose one.")


@dataclass(frozen=True)
class SamplingOptions:
    """How each output is sampled: Euler steps, guidance weight g (F_c + g·(F_c − F_u)), outputs per batch.

    ``max_batch`` None sizes batches from the clip (about one 57-frame clip or nine images of DiT tokens per batch:
    larger batches of long clips cost memory without running faster).
    """

    num_steps: int = 15
    guidance: float = 0.0
    max_batch: int | None = None

    def __post_init__(self) -> None:
        check_number("--num_steps", self.num_steps, 1, MAX_STEPS, integer=True)
        check_number("--guidance", self.guidance, 0, MAX_GUIDANCE)
        if self.max_batch is not None:
            check_number("--max_batch", self.max_batch, 1, math.inf, integer=True)


@dataclass(frozen=True, kw_only=True)
class FrameOptions:
    """How input frames become the model's ``height × width`` frames, and the size outputs come back at.

    ``resize_resolution``: None resizes to exactly (height, width) (aspect ratio lost, the original's default); one
    value resizes the shorter side to it; two values are (h, w); the result is then centre-cropped. ``fit``:
    "stretch" (that resize + crop) or the aspect-keeping "crop" or "pad" (see ``fit.py``). ``output_size``: "model"
    (the model frame, cut to the content with ``pad``) or "input" (resized back to the input's resolution).
    """

    height: int = 704
    width: int = 1280
    resize_resolution: tuple[int, ...] | None = None
    fit: str = "stretch"
    output_size: str = "model"

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            value = getattr(self, name)
            if value <= 0 or value % 16:
                raise UserError(f"--{name} {value}: must be a positive multiple of 16 (e.g. 704 × 1280).")
        if max(self.height, self.width) > MAX_SIDE:
            raise UserError(f"--height/--width: at most {MAX_SIDE} (the network's position tables cover 240 rows).")
        if self.fit not in FIT_MODES:
            raise UserError(f"--fit {self.fit}: choose one of {', '.join(FIT_MODES)}.")
        if self.output_size not in OUTPUT_SIZES:
            raise UserError(f"--output_size {self.output_size}: choose one of {', '.join(OUTPUT_SIZES)}.")
        if self.fit != "stretch" and self.resize_resolution is not None:
            raise UserError(f"--fit {self.fit} sizes frames itself: leave out --resize_resolution.")
        size = self.resize_resolution
        if size is not None and len(size) not in (1, 2):
            raise UserError(f"--resize_resolution takes one or two values (H W), got {list(size)}.")
        for value in size or ():
            check_number("--resize_resolution", value, 1, MAX_RESIZE, integer=True)

    @property
    def keeps_model_frame(self) -> bool:
        """Outputs are exactly the model frame (the original's behaviour): no placement to undo."""
        return self.fit == "stretch" and self.output_size == "model"


@dataclass(frozen=True, kw_only=True)
class OutputOptions:
    """Where and how a script writes: the folder, the videos' frame rate, the seed of every work item's noise, and
    the switches that every script has."""

    folder: Path
    fps: int = 24
    seed: int = 1000
    save_image: bool = True
    overwrite: bool = False
    contact_sheet: bool = False
    stitch_chunks: bool = False
    overlap: int = 0

    def __post_init__(self) -> None:
        check_number("--fps", self.fps, 1, MAX_FPS, integer=True)
        check_number("--seed", self.seed, 0, MAX_SEED, integer=True)
        check_number("--overlap_n_frames", self.overlap, 0, math.inf, integer=True)


@dataclass(frozen=True)
class Lighting:
    """One lighting of the forward renderer: an HDR environment map, or random lighting (``hdri`` None).

    ``hdri``: an equirectangular ``.hdr``/``.exr`` file or a linear float array ``[h, w, 3]``; ``strength``
    multiplies its radiance; ``rotation`` turns it (degrees, the original's 180 by default) and ``flip`` mirrors it
    (the original does). ``seed`` and ``index`` pick the noise (the forward script's ``--seed`` and
    ``--envlight_ind``; random lighting there uses seed + 1000·index); ``name`` labels an array HDRI in the noise
    (files: their file name).
    """

    hdri: str | Path | np.ndarray | None = None
    strength: float = 1.0
    rotation: float = 180.0
    flip: bool = True
    seed: int = 1000
    index: int = 0
    name: str | None = None

    def __post_init__(self) -> None:
        check_number("--env_strength", self.strength, 0, MAX_STRENGTH, open_low=True)
        check_number("--env_rotation", self.rotation, -MAX_ROTATION, MAX_ROTATION)
        check_number("--seed", self.seed, 0, MAX_SEED, integer=True)
        check_number("--envlight_ind", self.index, 0, math.inf, integer=True)

    @property
    def label(self) -> str:
        """The lighting's part of the noise identity: "random", or "envlight:<name>"."""
        if self.hdri is None:
            return "random"
        if self.name is not None:
            return f"envlight:{self.name}"
        return f"envlight:{Path(self.hdri).name}" if isinstance(self.hdri, (str, Path)) else "envlight:array"

    @property
    def title(self) -> str:
        """A short human label (contact sheets): the HDRI's stem, or "random k"."""
        if self.hdri is None:
            return f"random {self.index}"
        return self.name or (Path(self.hdri).stem if isinstance(self.hdri, (str, Path)) else "array")

    def environment_key(self) -> tuple | None:
        """What identifies the prepared environment map of a file HDRI (None: arrays and random lighting)."""
        if not isinstance(self.hdri, (str, Path)):
            return None
        return (str(self.hdri), self.strength, self.rotation, self.flip)


@dataclass(frozen=True, kw_only=True)
class InverseRunOptions:
    """Everything the inverse script does, as values (built once from its command line)."""

    model: ModelOptions
    sampling: SamplingOptions
    frames: FrameOptions
    output: OutputOptions
    dataset: Path
    num_frames: int
    passes: tuple[str, ...]
    normalize_normal: bool = False
    save_video: bool = True
    output_format: str = "jpg"
    chunk_mode: str = "first"
    group_mode: str = "folder"
    extensions: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ForwardRunOptions:
    """Everything the forward script does, as values (built once from its command line).

    ``lightings``: the requested lightings in output order; ``hold_frame``: one G-buffer frame for every frame.
    """

    model: ModelOptions
    sampling: SamplingOptions
    frames: FrameOptions
    output: OutputOptions
    dataset: Path
    num_frames: int
    lightings: tuple[Lighting, ...]
    rotate_light: bool = False
    hold_frame: int | None = None
    camera_poses: Path | None = None
    output_linear: bool = False
    extensions: tuple[str, ...]


def check_regular_file(path: Path, what: str) -> None:
    """``UserError`` unless ``path`` is a regular file or a link to one: reading a named pipe would block forever,
    and a device or socket is no file of ours."""
    try:
        mode = Path(path).stat().st_mode
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror or err}); give {what}.") from err
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe, socket or device)"
        raise UserError(f"{path}: {kind}; give {what}.")

"""The Python API: load the renderers once, call them many times with arrays, get arrays back — no files.

    from cosmos_predict1 import ForwardPipeline, InversePipeline, Lighting

    inverse = InversePipeline.from_pretrained("checkpoints")
    gbuffers = inverse(frames)                     # uint8/float [T, H, W, 3] or [H, W, 3] → dict pass → float [0, 1]
    forward = ForwardPipeline.from_pretrained("checkpoints")
    relit = forward(gbuffers, Lighting(hdri="sky.hdr"))

Both command-line scripts run on these classes: ``prepare`` turns frames into the model's input (``PreparedClip``),
``render`` samples the outputs as decoded tensors, and ``__call__`` does both and converts to arrays. Noise is a
function of the seed and the work item (``name``, ``chunk``, pass or lighting) as in the command line, so the same
inputs give the same pixels through the API and through the scripts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cosmos_predict1.errors import UserError
from cosmos_predict1.release import FORWARD_MODEL, INVERSE_MODEL, TOKENIZER

from . import fit
from .assembly import load_renderer
from .compilation import COSTS, Decision, PlannedWork, decide, forced, is_warm
from .envmap import EnvironmentMap, check_camera_rotations
from .frames import ENCODINGS, as_rgb, clip_placement, prepare_clip
from .networks import FORWARD_7B, INVERSE_7B, DiTConfig
from .options import (
    GBUFFER_INDEX,
    GBUFFER_PASSES,
    MODEL_FPS,
    FrameOptions,
    Lighting,
    ModelOptions,
    SamplingOptions,
)
from .renderer import ForwardRenderer, InverseRenderer, Renderer, work_item_noise
from .writers import display_to_linear, frames_to_uint8, frames_to_unit

log = logging.getLogger("cosmos_predict1")
StepCallback = Callable[[int, torch.Tensor], None]
Frames = np.ndarray | torch.Tensor | Sequence[np.ndarray]
OUTPUT_TYPES = ("float", "uint8")


@dataclass(frozen=True)
class PreparedClip:
    """A clip as the model takes it: videos ``[1, 3, T, H, W]`` in [−1, 1] by name, and how to map outputs back.

    ``placement`` None: outputs are exactly the model frame; else ``fit.restore`` maps them to ``output_size``.
    """

    videos: Mapping[str, torch.Tensor]
    placement: fit.Placement | None
    output_size: str

    @property
    def num_frames(self) -> int:
        return next(iter(self.videos.values())).shape[2]

    @property
    def padding_mask(self) -> torch.Tensor | None:
        """The DiT's padding-mask input ``[1, 1, H, W]`` for ``fit="pad"`` (None: no padding)."""
        if self.placement is None or self.placement.mode != "pad":
            return None
        return fit.padding_mask(self.placement)

    def restore(self, video: torch.Tensor) -> torch.Tensor:
        """A model-frame video ``[1, C, T, H, W]`` → the input's aspect ratio / size (identity without placement)."""
        return video if self.placement is None else fit.restore(video, self.placement, self.output_size)


def _frame_list(frames: Frames, what: str) -> tuple[list[np.ndarray], bool]:
    """Frames as a list of ``[h, w, C]`` arrays, and whether the input was a single frame."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    if isinstance(frames, np.ndarray):
        if frames.ndim in (2, 3) and not (frames.ndim == 3 and frames.shape[-1] > 4):
            return [frames], True
        if frames.ndim == 4:
            return list(frames), False
        raise UserError(
            f"{what}: expected [H, W, C], [T, H, W, C] or a list of frames, got shape {list(frames.shape)}."
        )
    frames = list(frames)
    if not frames:
        raise UserError(f"{what}: no frames.")
    return [np.asarray(frame) for frame in frames], False


def _as_model_frames(frames: list[np.ndarray], what: str) -> list[np.ndarray]:
    return [as_rgb(frame, f"{what} frame {index}") for index, frame in enumerate(frames)]


def _encodings(encoding: str | Sequence[str], count: int) -> list[str]:
    codes = [encoding] * count if isinstance(encoding, str) else list(encoding)
    if len(codes) != count or any(code not in ENCODINGS for code in codes):
        raise UserError(f"encoding: one of {', '.join(ENCODINGS)} (or one per frame), got {encoding!r}.")
    return codes


def _arrays(video: torch.Tensor, output: str, single: bool) -> np.ndarray:
    """A decoded video ``[1, 3, T, H, W]`` → float32 in [0, 1] or the uint8 values the scripts write."""
    if output not in OUTPUT_TYPES:
        raise UserError(f"output: one of {', '.join(OUTPUT_TYPES)}, got {output!r}.")
    array = frames_to_uint8(video) if output == "uint8" else frames_to_unit(video)
    return array[0] if single else array


def _report(decision: Decision, work: PlannedWork, network_warm: bool, tokenizer_warm: bool) -> None:
    """One line per compiled model: from the cache, or for the first time and about how long that takes."""
    models = (
        ("DiT", decision.network, network_warm, len(work.dit_shapes()) * COSTS.dit_cold, decision.network_gain),
        (
            "tokenizer",
            decision.tokenizer,
            tokenizer_warm,
            len(work.tokenizer_shapes()) * COSTS.tokenizer_cold,
            decision.tokenizer_gain,
        ),
    )
    for name, chosen, warm, first_time, gain in models:
        if chosen and warm:
            log.info("compiling the %s from the compile cache (saves about %.0f s)", name, gain)
        elif chosen:
            log.info(
                "compiling the %s for the first time at these sizes: about %.0f s, kept in the compile cache "
                "for later runs (saves about %.0f s here)",
                name,
                first_time,
                gain,
            )
    if not (decision.network or decision.tokenizer):
        log.info("not compiling: this run is too short for compiling to pay (--compile true forces it)")


class _Pipeline:
    """Shared construction: a loaded renderer plus the options that say how frames meet it."""

    model_folder: str
    base: DiTConfig
    renderer_class: type[Renderer]

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer

    @classmethod
    def from_pretrained(
        cls,
        checkpoint_dir: str | Path = "checkpoints",
        *,
        model: str | None = None,
        tokenizer: str = TOKENIZER,
        device: str = "cuda",
        offload: bool = False,
        compile: bool = False,
        fp8: bool = False,
        num_steps: int = 15,
        guidance: float = 0.0,
        max_batch: int | None = None,
        allow_unsafe_checkpoint: bool = False,
    ):
        """Load the renderer from a checkpoint folder in the released layout.

        ``model``: the DiT folder inside ``checkpoint_dir`` (default: the released model) or a path; ``device``:
        "cuda", "cuda:N" or "cpu" (float32; for tiny models); ``offload``: keep the DiT and the tokenizer in CPU
        memory and stream them to the GPU (a 57-frame clip in under 8 GiB); ``compile``: ``torch.compile`` them
        (pays off for many calls of the same size); ``fp8``: approximate FP8 matrix products on Hopper GPUs.
        """
        options = ModelOptions(
            checkpoint_dir=Path(checkpoint_dir),
            network_folder=model or cls.model_folder,
            tokenizer_folder=tokenizer,
            device=device,
            offload_network=offload,
            offload_tokenizer=offload,
            fp8=fp8,
            allow_unsafe_checkpoint=allow_unsafe_checkpoint,
        )
        sampling = SamplingOptions(num_steps=num_steps, guidance=guidance, max_batch=max_batch)
        pipeline = cls.from_options(options, sampling)
        pipeline.renderer.compile(network=compile, tokenizer=compile)
        return pipeline

    @classmethod
    def from_options(
        cls,
        options: ModelOptions,
        sampling: SamplingOptions,
        *,
        clip_shape: Sequence[int] | None = None,
        **extra: object,
    ):
        """Load from option values (the command line's way; see ``assembly.load_renderer``); ``extra`` goes to the
        constructor."""
        renderer = load_renderer(cls.renderer_class, cls.base, options, sampling, clip_shape=clip_shape)
        return cls(renderer, **extra)

    def compile_for(self, work: PlannedWork, choice: bool | None) -> Decision:
        """Compile what pays for ``work`` (``choice`` None; never on the CPU), or both models (True), or none."""
        renderer = self.renderer
        known = forced(choice, renderer.device.type)
        if known is not None:
            decision = Decision(known, known, 0.0, 0.0)
        else:
            network_warm = is_warm("dit", work.dit_shapes(), renderer.compile_identity("dit"))
            tokenizer_warm = is_warm("tokenizer", work.tokenizer_shapes(), renderer.compile_identity("tokenizer"))
            decision = decide(work, network_warm=network_warm, tokenizer_warm=tokenizer_warm)
            _report(decision, work, network_warm, tokenizer_warm)
        renderer.compile(decision.network, decision.tokenizer)
        return decision

    def planned_calls(self, clip_shape: Sequence[int], outputs: int, encodes: int) -> PlannedWork:
        """The DiT and tokenizer calls of one clip of ``clip_shape`` (T, H, W) with ``outputs`` outputs sampled in
        this pipeline's batches, its input encoded ``encodes`` times."""
        latent = self.renderer.latent_shape(*clip_shape)
        frames, height, width = clip_shape
        factor = 2 if self.renderer.options.guidance > 0 else 1
        dit, decodes = [], []
        for batch in self.batches(outputs, clip_shape):
            dit.append(((len(batch) * factor, *latent[1:]), self.renderer.options.num_steps))
            decodes.append((len(batch), *latent[1:]))
        return PlannedWork(tuple(dit), ((1, 3, frames, height, width),) * encodes, tuple(decodes))

    def batches(self, count: int, clip_shape: Sequence[int]) -> list[range]:
        """How ``count`` outputs of one clip of ``clip_shape`` (T, H, W) are split into sampling batches."""
        return self.renderer.batches(count, self.renderer.latent_shape(*clip_shape))

    def _noise_shape(self, clip: PreparedClip) -> tuple[int, ...]:
        video = next(iter(clip.videos.values()))
        return self.renderer.latent_shape(*video.shape[2:])


class InversePipeline(_Pipeline):
    """Images or video frames → G-buffers (basecolor, normal, depth, roughness, metallic)."""

    model_folder = INVERSE_MODEL
    base = INVERSE_7B
    renderer_class = InverseRenderer

    def prepare(self, frames: Sequence[np.ndarray], options: FrameOptions, encodings: Sequence[str]) -> PreparedClip:
        """RGB frames float32 ``[h, w, 3]`` (``frames.as_rgb``) → the model's input; one encoding per frame."""
        video = prepare_clip(frames, options, encodings)[None]
        return PreparedClip({"rgb": video}, clip_placement(options, frames[0].shape), options.output_size)

    def render(
        self,
        clip: PreparedClip,
        passes: Sequence[str],
        *,
        seed: int,
        name: str,
        chunk: int = 0,
        normalize_normal: bool = False,
        fps: float = MODEL_FPS,
        on_step: StepCallback | None = None,
    ) -> dict[str, torch.Tensor]:
        """Sample ``passes`` of a prepared clip → pass name → decoded video ``[1, 3, T, h, w]`` (model dtype, about
        [−1, 1]) at the clip's output size. Noise: ``(seed, name, chunk, pass)``."""
        shape = self._noise_shape(clip)
        noises = [work_item_noise(shape, seed, name, chunk, name_of_pass) for name_of_pass in passes]
        outputs = self.renderer.render(
            clip.videos["rgb"],
            passes,
            noises,
            normalize_normal=normalize_normal,
            on_step=on_step,
            padding_mask=clip.padding_mask,
            fps=fps,
        )
        return {pass_name: clip.restore(video) for pass_name, video in outputs.items()}

    def __call__(
        self,
        frames: Frames,
        passes: Sequence[str] = GBUFFER_PASSES,
        *,
        height: int = 704,
        width: int = 1280,
        fit: str = "stretch",
        output_size: str = "input",
        encoding: str | Sequence[str] = "display",
        seed: int = 1000,
        name: str = "clip",
        chunk: int = 0,
        normalize_normal: bool = False,
        fps: float = MODEL_FPS,
        output: str = "float",
        on_step: StepCallback | None = None,
    ) -> dict[str, np.ndarray]:
        """G-buffers of one image ``[H, W, C]`` or clip ``[T, H, W, C]`` (T = 1 or 57; a list of frames works too).

        Frames: uint8, uint16 or float in [0, 1] (``encoding="linear"`` for linear light, e.g. EXR; gray and alpha
        are handled), any size: ``fit`` ("stretch", "crop", "pad") places them in the model's ``height × width``.
        Returns pass → ``[T, h, w, 3]`` (``[h, w, 3]`` for one frame) at the input's size (``output_size="input"``)
        or the model's (``"model"``): float32 (x + 1)/2 in [0, 1] — normals are (n + 1)/2 — or, with
        ``output="uint8"``, the 8-bit values the scripts write. ``seed``, ``name``, ``chunk``: the noise of each
        pass, as the inverse script's (seed, clip name, chunk index).
        """
        unknown = [p for p in passes if p not in GBUFFER_INDEX]
        if unknown or not passes:
            choices = ", ".join(GBUFFER_INDEX)
            raise UserError(
                f"passes: unknown pass {unknown[0]!r}; choose from {choices}." if unknown else "passes: none."
            )
        listed, single = _frame_list(frames, "frames")
        rgb = _as_model_frames(listed, "frames")
        options = FrameOptions(height=height, width=width, fit=fit, output_size=output_size)
        clip = self.prepare(rgb, options, _encodings(encoding, len(rgb)))
        decoded = self.render(
            clip, passes, seed=seed, name=name, chunk=chunk, normalize_normal=normalize_normal, fps=fps, on_step=on_step
        )
        return {pass_name: _arrays(video, output, single) for pass_name, video in decoded.items()}


def prepare_environment(light: Lighting, device: torch.device | str) -> EnvironmentMap:
    """The environment map of a lighting with an HDRI (file or array), cleaned and projected on ``device``."""
    options = {"strength": light.strength, "flip": light.flip, "rotation_deg": light.rotation}
    if isinstance(light.hdri, (str, Path)):
        return EnvironmentMap.from_file(light.hdri, device=device, **options)
    image = torch.as_tensor(np.asarray(light.hdri, dtype=np.float32))
    if image.ndim != 3 or image.shape[-1] != 3:
        raise UserError(f"Lighting.hdri: expected a linear float array [h, w, 3], got {list(image.shape)}.")
    return EnvironmentMap.from_latlong(image, name=light.label, device=device, **options)


def load_environments(lightings: Sequence[Lighting], device: torch.device | str) -> dict[tuple, EnvironmentMap]:
    """The environment maps of the file HDRIs among ``lightings`` (each once), for ``ForwardPipeline``: reading them
    before the models load reports a bad file at once."""
    environments = {}
    for light in lightings:
        key = light.environment_key()
        if key is not None and key not in environments:
            environments[key] = prepare_environment(light, device)
    return environments


class ForwardPipeline(_Pipeline):
    """G-buffers + lighting → relit frames.

    Environment maps and the lighting part of the condition are computed once per lighting and reused by every clip
    of the same size (files only; array HDRIs are prepared per call).
    """

    model_folder = FORWARD_MODEL
    base = FORWARD_7B
    renderer_class = ForwardRenderer

    def __init__(self, renderer: Renderer, environments: Mapping[tuple, EnvironmentMap] | None = None) -> None:
        """``environments``: maps already prepared by ``load_environments`` (keyed by ``Lighting.environment_key``)."""
        super().__init__(renderer)
        self._environments: dict[tuple, EnvironmentMap] = dict(environments or {})
        self._lighting_latents: dict[tuple, torch.Tensor] = {}

    def prepare(
        self,
        gbuffers: Mapping[str, Sequence[np.ndarray]],
        options: FrameOptions,
        encodings: Mapping[str, Sequence[str]],
        *,
        hold_frame: int | None = None,
    ) -> PreparedClip:
        """G-buffer passes (frames float32 ``[h, w, 3]`` as the files encode them) → the model's input.

        ``hold_frame``: use this frame of every pass for all frames (a static scene, e.g. under a turning light).
        """
        videos = {}
        for name, frames in gbuffers.items():
            video = prepare_clip(frames, options, encodings[name])[None]
            if hold_frame is not None:
                video = video[:, :, hold_frame : hold_frame + 1].expand_as(video)
            videos[name] = video
        first = next(iter(gbuffers.values()))[0]
        return PreparedClip(videos, clip_placement(options, first.shape), options.output_size)

    def environment(self, light: Lighting) -> EnvironmentMap:
        """The prepared environment map of a lighting with an HDRI (cached for files)."""
        key = light.environment_key()
        if key is None:
            return prepare_environment(light, self.renderer.device)
        if key not in self._environments:
            self._environments[key] = prepare_environment(light, self.renderer.device)
        return self._environments[key]

    def _lighting_latent(
        self,
        light: Lighting,
        shape: tuple[int, int, int],
        gbuffer_condition: torch.Tensor,
        rotate_light: bool,
        camera_to_world: torch.Tensor | None,
    ) -> torch.Tensor:
        camera = None if camera_to_world is None else tuple(camera_to_world.flatten().tolist())
        key = (light.environment_key() or ("random",), shape, rotate_light, camera)
        cacheable = light.hdri is None or light.environment_key() is not None
        if cacheable and key in self._lighting_latents:
            return self._lighting_latents[key]
        conditions = None
        if light.hdri is not None:
            frames, height, width = shape
            conditions = self.environment(light).conditions(
                height, width, frames, rotate_light=rotate_light, camera_to_world=camera_to_world
            )
        latent = self.renderer.encode_lighting(conditions, gbuffer_condition)
        if cacheable:
            self._lighting_latents[key] = latent
        return latent

    def render(
        self,
        clip: PreparedClip,
        lightings: Sequence[Lighting],
        *,
        name: str,
        rotate_light: bool = False,
        camera_to_world: torch.Tensor | None = None,
        fps: float = MODEL_FPS,
        on_step: StepCallback | None = None,
    ) -> list[torch.Tensor]:
        """Relit videos ``[1, 3, T, h, w]`` (model dtype, about [−1, 1]) of a prepared clip, one per lighting, at the
        clip's output size. Noise: ``(lighting.seed, name, lighting.label, lighting.index)``.

        ``rotate_light`` turns every environment once around the vertical axis over the clip; ``camera_to_world``
        ``[T, 3, 3]`` keeps it fixed in the world while the camera turns.
        """
        if not clip.videos:
            raise UserError("the forward renderer needs at least one G-buffer pass.")
        video = next(iter(clip.videos.values()))
        shape = (video.shape[2], video.shape[3], video.shape[4])
        if camera_to_world is not None:
            check_camera_rotations(camera_to_world, shape[0])
        gbuffer_condition = self.renderer.encode_gbuffers(dict(clip.videos))
        latents = [
            self._lighting_latent(light, shape, gbuffer_condition, rotate_light, camera_to_world) for light in lightings
        ]
        noise_shape = self._noise_shape(clip)
        noises = [work_item_noise(noise_shape, light.seed, name, light.label, light.index) for light in lightings]
        outputs = self.renderer.render(
            gbuffer_condition, latents, noises, on_step=on_step, padding_mask=clip.padding_mask, fps=fps
        )
        return [clip.restore(video) for video in outputs]

    def __call__(
        self,
        gbuffers: Mapping[str, Frames],
        lighting: Lighting | Sequence[Lighting] | None = None,
        *,
        height: int = 704,
        width: int = 1280,
        fit: str = "stretch",
        output_size: str = "input",
        signed_normals: bool = False,
        name: str = "clip",
        rotate_light: bool = False,
        camera_to_world: torch.Tensor | np.ndarray | None = None,
        fps: float = MODEL_FPS,
        linear: bool = False,
        output: str = "float",
        on_step: StepCallback | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Relight G-buffers under one lighting (returns one array) or several (returns a list, sampled together).

        ``gbuffers``: pass name (basecolor, normal, depth, roughness, metallic; at least one) → frames as the inverse
        renderer returns them: ``[T, H, W, 3]`` or ``[H, W, 3]``, uint8 or float in [0, 1] (normals (n + 1)/2, or
        signed vectors with ``signed_normals``); all passes the same frame count. ``lighting`` None: random lighting
        with seed 1000. Returns ``[T, h, w, 3]`` (``[h, w, 3]`` for one frame): float32 in [0, 1], the uint8 values
        the scripts write (``output="uint8"``), or with ``linear`` the inverse sRGB of the float values (float32).
        """
        if not gbuffers:
            raise UserError("gbuffers: give at least one of basecolor, normal, depth, roughness, metallic.")
        unknown = [key for key in gbuffers if key not in GBUFFER_PASSES]
        if unknown:
            raise UserError(f"gbuffers: unknown pass {unknown[0]!r}; the passes are {', '.join(GBUFFER_PASSES)}.")
        lights = [lighting or Lighting()] if lighting is None or isinstance(lighting, Lighting) else list(lighting)
        frames, single, encodings = {}, True, {}
        for key, value in gbuffers.items():
            listed, single = _frame_list(value, f"gbuffers[{key!r}]")
            frames[key] = _as_model_frames(listed, f"gbuffers[{key!r}]")
            encodings[key] = ["signed" if key == "normal" and signed_normals else "display"] * len(listed)
        counts = {key: len(value) for key, value in frames.items()}
        if len(set(counts.values())) > 1:
            raise UserError(f"gbuffers: every pass needs the same number of frames, got {counts}.")
        options = FrameOptions(height=height, width=width, fit=fit, output_size=output_size)
        clip = self.prepare(frames, options, encodings)
        camera = None if camera_to_world is None else torch.as_tensor(np.asarray(camera_to_world), dtype=torch.float32)
        decoded = self.render(
            clip, lights, name=name, rotate_light=rotate_light, camera_to_world=camera, fps=fps, on_step=on_step
        )
        if linear:
            arrays = [display_to_linear(_arrays(video, "float", single)) for video in decoded]
        else:
            arrays = [_arrays(video, output, single) for video in decoded]
        return arrays[0] if isinstance(lighting, Lighting) or lighting is None else arrays

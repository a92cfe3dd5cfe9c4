"""What the forward script does per clip (one ``<inverse clip>/<chunk>`` of G-buffers): read its passes, sample
every requested lighting in batches from one encoding, write the relit video, frames and contact sheet; at the end,
stitch the chunks of long clips into one video per lighting (``--stitch_chunks``).

With ``--stitch_chunks`` an inverse clip of several chunks gets the stitched ``<clip>.relit_XXXX.mp4`` instead of
per-chunk videos; a clip of one chunk keeps its ordinary video. The inverse script follows the same rule.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch

from cosmos_predict1.diffusion import data, layout
from cosmos_predict1.diffusion.assembly import check_model, compute_device, describe_loading
from cosmos_predict1.diffusion.compilation import PlannedWork
from cosmos_predict1.diffusion.contact_sheet import write_contact_sheet
from cosmos_predict1.diffusion.envmap import load_camera_rotations
from cosmos_predict1.diffusion.frames import file_encoding, read_image
from cosmos_predict1.diffusion.integrity import is_complete
from cosmos_predict1.diffusion.options import ForwardRunOptions, Lighting
from cosmos_predict1.diffusion.pipelines import ForwardPipeline, PreparedClip, load_environments
from cosmos_predict1.diffusion.progress import counted
from cosmos_predict1.diffusion.run_loop import BatchRule, Job
from cosmos_predict1.diffusion.sequences import grouping_warning, padding_doubts
from cosmos_predict1.diffusion.stitch import write_stitched_video
from cosmos_predict1.diffusion.writers import (
    display_to_linear,
    frames_to_uint8,
    frames_to_unit,
    write_clip,
    write_exr,
    write_image,
)

log = logging.getLogger("cosmos_predict1")
AS_IMAGES = "For the G-buffers of images, use --num_video_frames 1."


class ForwardJob(Job[data.GBufferClip, Lighting]):
    """Work items are G-buffer clips (images with one frame); their outputs are lightings."""

    output_noun = "lighting"

    def __init__(self, options: ForwardRunOptions) -> None:
        super().__init__(options.output, options.sampling.num_steps)
        self.options = options
        self.camera = load_camera_rotations(options.camera_poses, options.num_frames) if options.camera_poses else None
        self.clips = data.gbuffer_clips(options.dataset, options.num_frames, extensions=options.extensions)
        chunks = defaultdict(list)
        for clip in self.clips:
            parent, _, chunk = clip.clip_name.rpartition("/")
            if parent and chunk.isdigit():
                chunks[parent].append((int(chunk), clip))
        self.stitched = {  # inverse clip → its (chunk index, forward clip) pairs in chunk order
            parent: sorted(members, key=lambda member: member[0])
            for parent, members in chunks.items()
            if options.output.stitch_chunks and len(members) > 1
        }
        self.stitched_clips = {clip.clip_name for members in self.stitched.values() for _, clip in members}
        self.output_names = layout.flat_output_names(
            [*(clip.clip_name for clip in self.clips), *self.stitched], log.warning
        )
        self.pipeline: ForwardPipeline | None = None

    # ------------------------------------------------------------------------------------------------ outputs

    @property
    def item_noun(self) -> str:
        return "G-buffer image" if self.options.num_frames == 1 else "G-buffer clip"

    def inputs_found(self) -> str:
        return f"{counted(len(self.clips), self.item_noun)} in {self.options.dataset}"

    def input_warnings(self) -> list[str]:
        """A warning when clips are mostly padding: the G-buffers of images read as videos."""
        doubts = {clip.clip_name: padding_doubts(clip.num_real_frames, self.options.num_frames) for clip in self.clips}
        warning = grouping_warning(doubts, AS_IMAGES)
        return [warning] if warning else []

    def work(self) -> list[tuple[data.GBufferClip, list[Lighting]]]:
        return [(clip, list(self.options.lightings)) for clip in self.clips]

    def frame_paths(self, clip_name: str, light: Lighting) -> list[Path]:
        root = self.output.folder
        return [layout.forward_frame_path(root, clip_name, light.index, f) for f in range(self.options.num_frames)]

    def output_files(self, clip: data.GBufferClip, light: Lighting) -> list[Path]:
        root, frames = self.output.folder, self.options.num_frames
        paths = []
        if clip.clip_name not in self.stitched_clips:
            paths.append(layout.forward_video_path(root, self.output_names[clip.clip_name], light.index, frames))
        if self.output.save_image:
            paths += self.frame_paths(clip.clip_name, light)
        if self.options.output_linear:
            paths += [layout.forward_linear_frame_path(root, clip.clip_name, light.index, f) for f in range(frames)]
        return paths

    def item_files(self, clip: data.GBufferClip) -> list[Path]:
        if not self.output.contact_sheet:
            return []
        return [layout.contact_sheet_path(self.output.folder, self.output_names[clip.clip_name])]

    def item_name(self, clip: data.GBufferClip) -> str:
        return clip.clip_name

    # ------------------------------------------------------------------------------------------------ work

    def loading_plan(self) -> list[str]:
        """The models' lines and one for the lighting: the HDRIs are made into cube maps before the models load (a
        bad file is reported at once) and encoded by the tokenizer."""
        model = self.options.model
        lines = describe_loading(model, check_model(model, ForwardPipeline.base, self.clip_shape))
        files = list(dict.fromkeys(Path(light.hdri).name for light in self.options.lightings if light.hdri is not None))
        randoms = sum(light.hdri is None for light in self.options.lightings)
        if files:
            lines.append(
                f"Lighting: {counted(len(files), 'HDRI')} ({', '.join(files)}), made into cube maps before the models "
                "load and encoded by the tokenizer"
            )
        if randoms:
            lines.append(f"Lighting: {counted(randoms, 'random lighting')} (no environment map: an empty condition)")
        return lines

    def load(self) -> BatchRule:
        options = self.options
        device = compute_device(options.model.device)
        environments = load_environments(options.lightings, device)  # a bad HDRI is reported before the models load
        self.pipeline = ForwardPipeline.from_options(
            options.model, options.sampling, clip_shape=self.clip_shape, environments=environments
        )
        return lambda clip, count: self.pipeline.batches(count, self.clip_shape)

    @property
    def clip_shape(self) -> tuple[int, int, int]:
        return (self.options.num_frames, self.options.frames.height, self.options.frames.width)

    def begin(self, share: list[tuple[data.GBufferClip, list[Lighting]]]) -> None:
        """Compile what pays for this share: per clip, its passes' encodes and its lightings' batches (each
        lighting's three encodes happen once per run)."""
        plans = [self.pipeline.planned_calls(self.clip_shape, len(lights), len(clip.passes)) for clip, lights in share]
        lightings = self.pipeline.planned_calls(self.clip_shape, 0, 3 * len(self.options.lightings))
        self.pipeline.compile_for(PlannedWork.combine([*plans, lightings]), self.options.model.compile)

    def read(self, clip: data.GBufferClip) -> PreparedClip:
        if clip.missing_passes:
            log.warning(
                "%s: no %s frames (files named *.<pass>.<ext>); the model gets an empty condition for them",
                clip.clip_name,
                ", ".join(clip.missing_passes),
            )
        frames = {name: [read_image(path) for path in paths] for name, paths in clip.passes.items()}
        encodings = {
            name: [file_encoding(path, signed_exr=name == "normal") for path in paths]
            for name, paths in clip.passes.items()
        }
        return self.pipeline.prepare(frames, self.options.frames, encodings, hold_frame=self.options.hold_frame)

    def render(
        self, clip: data.GBufferClip, lights: list[Lighting], prepared: PreparedClip, on_step: Callable
    ) -> list[torch.Tensor]:
        outputs = self.pipeline.render(
            prepared,
            lights,
            name=clip.clip_name,
            rotate_light=self.options.rotate_light,
            camera_to_world=self.camera,
            on_step=on_step,
        )
        return [video.cpu() for video in outputs]

    def writes(
        self, clip: data.GBufferClip, lights: list[Lighting], prepared: PreparedClip, outputs: list[torch.Tensor]
    ) -> list[Callable[[], int]]:
        """One task per lighting (its video, frames and linear frames), and one for the contact sheet."""
        tasks = [functools.partial(self.write_lighting, clip, light, out) for light, out in zip(lights, outputs)]
        if self.item_files(clip):
            tasks.append(functools.partial(self.write_sheet, clip, lights, prepared, outputs))
        return tasks

    def write_lighting(self, clip: data.GBufferClip, light: Lighting, decoded: torch.Tensor) -> int:
        root, written = self.output.folder, 0
        frames = frames_to_uint8(decoded)
        if self.output.save_image:
            for path, frame in zip(self.frame_paths(clip.clip_name, light), frames):
                write_image(path, frame)
                written += 1
        if self.options.output_linear:
            for index, frame in enumerate(display_to_linear(frames_to_unit(decoded))):
                write_exr(layout.forward_linear_frame_path(root, clip.clip_name, light.index, index), frame)
                written += 1
        if clip.clip_name not in self.stitched_clips:
            path = layout.forward_video_path(root, self.output_names[clip.clip_name], light.index, len(frames))
            write_clip(path, frames, self.output.fps)
            log.info("Saved %s %s", layout.media_kind(len(frames)), path)
            written += 1
        return written

    def write_sheet(
        self, clip: data.GBufferClip, lights: list[Lighting], prepared: PreparedClip, outputs: list[torch.Tensor]
    ) -> int:
        tiles = [(name, frames_to_uint8(prepared.restore(video))[0]) for name, video in prepared.videos.items()]
        tiles += [(light.title, frames_to_uint8(out)[0]) for light, out in zip(lights, outputs)]
        write_contact_sheet(self.item_files(clip)[0], tiles)
        return 1

    def finish(self, processed: list[data.GBufferClip]) -> int:
        """One continuous relit video per stitched inverse clip and lighting; redone for clips processed now or
        whose video is missing or incomplete."""
        step = self.options.num_frames - self.output.overlap
        processed_names = {clip.clip_name for clip in processed}
        written = 0
        for parent, members in self.stitched.items():
            last_index, last = members[-1]
            length = last_index * step + last.num_real_frames
            redo = self.output.overwrite or any(clip.clip_name in processed_names for _, clip in members)
            for light in self.options.lightings:
                path = layout.forward_video_path(self.output.folder, self.output_names[parent], light.index, length)
                if redo or not is_complete(path):
                    files = [self.frame_paths(clip.clip_name, light) for _, clip in members]
                    write_stitched_video(path, files, step, length, self.output.fps)
                    log.info("Saved stitched video %s", path)
                    written += 1
        return written

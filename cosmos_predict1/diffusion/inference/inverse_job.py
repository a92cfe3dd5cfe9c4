"""What the inverse script does per work item (one chunk of one clip): read its frames, sample its G-buffer passes
in batches from one encoding, write the per-frame files, the clip video and the contact sheet; at the end, stitch
the chunks of long clips into one video per pass (``--stitch_chunks``).

With ``--stitch_chunks`` a clip of several chunks gets the stitched video instead of per-chunk videos (they would
share its name); a clip of one chunk keeps its ordinary video. The forward script follows the same rule.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch

from cosmos_predict1.diffusion import data, layout
from cosmos_predict1.diffusion.assembly import check_model, describe_loading
from cosmos_predict1.diffusion.compilation import PlannedWork
from cosmos_predict1.diffusion.contact_sheet import write_contact_sheet
from cosmos_predict1.diffusion.frames import file_encoding, read_image
from cosmos_predict1.diffusion.integrity import is_complete
from cosmos_predict1.diffusion.options import InverseRunOptions
from cosmos_predict1.diffusion.pipelines import InversePipeline, PreparedClip
from cosmos_predict1.diffusion.progress import counted
from cosmos_predict1.diffusion.run_loop import BatchRule, Job
from cosmos_predict1.diffusion.sequences import clip_doubts, grouping_warning
from cosmos_predict1.diffusion.stitch import write_stitched_video
from cosmos_predict1.diffusion.writers import frames_to_uint8, write_clip, write_gbuffer_frames

log = logging.getLogger("cosmos_predict1")
AS_IMAGES = "If the files are separate images, process each as one with --num_video_frames 1 --group_mode webdataset."


class InverseJob(Job[data.WorkItem, str]):
    """Work items are chunks of clips (images with one frame); their outputs are G-buffer pass names."""

    output_noun = "G-buffer pass"

    def __init__(self, options: InverseRunOptions) -> None:
        super().__init__(options.output, options.sampling.num_steps)
        self.options = options
        self.items = data.inverse_work_items(
            options.dataset,
            options.num_frames,
            overlap=options.output.overlap,
            chunk_mode=options.chunk_mode,
            group_mode=options.group_mode,
            extensions=options.extensions,
        )
        chunks = defaultdict(list)
        for item in self.items:
            chunks[item.clip_name].append(item)
        self.stitched = {
            clip: items for clip, items in chunks.items() if options.output.stitch_chunks and len(items) > 1
        }
        self.output_names = layout.flat_output_names(chunks, log.warning)
        self.pipeline: InversePipeline | None = None

    # ------------------------------------------------------------------------------------------------ outputs

    @property
    def item_noun(self) -> str:
        return "image" if self.options.num_frames == 1 else "chunk"

    def inputs_found(self) -> str:
        if self.options.num_frames == 1:
            return f"{counted(len(self.items), 'image')} in {self.options.dataset}"
        clips = counted(len({item.clip_name for item in self.items}), "video clip")
        chunks = f"{counted(len(self.items), 'chunk')} of {self.options.num_frames} frames"
        return f"{clips} in {self.options.dataset}, in {chunks}"

    def input_warnings(self) -> list[str]:
        """A warning when clips look like unrelated stills read as one video (``sequences``)."""
        frames = self.options.num_frames
        if frames == 1:  # images: nothing is grouped
            return []
        doubts = {
            item.clip_name: clip_doubts(item.paths[: item.num_real_frames], frames)
            for item in self.items
            if item.chunk_index == 0
        }
        warning = grouping_warning(doubts, AS_IMAGES)
        return [warning] if warning else []

    def work(self) -> list[tuple[data.WorkItem, list[str]]]:
        return [(item, list(self.options.passes)) for item in self.items]

    def frame_paths(self, item: data.WorkItem, pass_name: str) -> list[Path]:
        root, output_format = self.output.folder, self.options.output_format
        return [
            layout.inverse_frame_path(root, item.clip_name, item.chunk_index, frame, pass_name, output_format)
            for frame in range(len(item.paths))
        ]

    def video_path(self, clip_name: str, pass_name: str, num_frames: int) -> Path:
        return layout.inverse_video_path(self.output.folder, self.output_names[clip_name], pass_name, num_frames)

    def writes_clip_video(self, item: data.WorkItem) -> bool:
        return self.options.save_video and item.clip_name not in self.stitched

    def output_files(self, item: data.WorkItem, pass_name: str) -> list[Path]:
        paths = self.frame_paths(item, pass_name) if self.output.save_image else []
        if self.writes_clip_video(item):
            paths.append(self.video_path(item.clip_name, pass_name, len(item.paths)))
        return paths

    def item_files(self, item: data.WorkItem) -> list[Path]:
        if self.output.contact_sheet and item.chunk_index == 0:
            return [layout.contact_sheet_path(self.output.folder, self.output_names[item.clip_name])]
        return []

    def item_name(self, item: data.WorkItem) -> str:
        return item.clip_name if self.options.num_frames == 1 else f"{item.clip_name} chunk {item.chunk_index}"

    # ------------------------------------------------------------------------------------------------ work

    @property
    def clip_shape(self) -> tuple[int, int, int]:
        return (self.options.num_frames, self.options.frames.height, self.options.frames.width)

    def loading_plan(self) -> list[str]:
        model = self.options.model
        return describe_loading(model, check_model(model, InversePipeline.base, self.clip_shape))

    def load(self) -> BatchRule:
        self.pipeline = InversePipeline.from_options(
            self.options.model, self.options.sampling, clip_shape=self.clip_shape
        )
        return lambda item, count: self.pipeline.batches(count, self.clip_shape)

    def begin(self, share: list[tuple[data.WorkItem, list[str]]]) -> None:
        """Compile what pays for this share: per item, one encode and its passes' batches."""
        plans = [self.pipeline.planned_calls(self.clip_shape, len(passes), encodes=1) for _, passes in share]
        self.pipeline.compile_for(PlannedWork.combine(plans), self.options.model.compile)

    def read(self, item: data.WorkItem) -> PreparedClip:
        frames = [read_image(path) for path in item.paths]
        encodings = [file_encoding(path, linear_exr=True) for path in item.paths]
        return self.pipeline.prepare(frames, self.options.frames, encodings)

    def render(
        self, item: data.WorkItem, passes: list[str], clip: PreparedClip, on_step: Callable
    ) -> dict[str, torch.Tensor]:
        outputs = self.pipeline.render(
            clip,
            passes,
            seed=self.output.seed,
            name=item.clip_name,
            chunk=item.chunk_index,
            normalize_normal=self.options.normalize_normal,
            on_step=on_step,
        )
        return {name: video.cpu() for name, video in outputs.items()}

    def writes(
        self, item: data.WorkItem, passes: list[str], clip: PreparedClip, outputs: dict[str, torch.Tensor]
    ) -> list[Callable[[], int]]:
        """One task per pass (its frames and video), and one for the contact sheet."""
        tasks = [functools.partial(self.write_pass, item, name, outputs[name]) for name in passes]
        if self.item_files(item):
            tasks.append(functools.partial(self.write_sheet, item, passes, clip, outputs))
        return tasks

    def write_pass(self, item: data.WorkItem, name: str, decoded: torch.Tensor) -> int:
        written = 0
        if self.output.save_image:
            paths = self.frame_paths(item, name)
            write_gbuffer_frames(paths, decoded, name, self.options.output_format)
            written += len(paths)
        if self.writes_clip_video(item):
            path = self.video_path(item.clip_name, name, len(item.paths))
            write_clip(path, frames_to_uint8(decoded), self.output.fps)
            log.info("Saved %s %s", layout.media_kind(len(item.paths)), path)
            written += 1
        return written

    def write_sheet(
        self, item: data.WorkItem, passes: list[str], clip: PreparedClip, outputs: dict[str, torch.Tensor]
    ) -> int:
        tiles = [("input", frames_to_uint8(clip.restore(clip.videos["rgb"]))[0])]
        tiles += [(name, frames_to_uint8(outputs[name])[0]) for name in passes]
        write_contact_sheet(self.item_files(item)[0], tiles)
        return 1

    def finish(self, processed: list[data.WorkItem]) -> int:
        """One continuous video per stitched clip and pass; redone for clips processed now or whose video is missing
        or incomplete."""
        step = self.options.num_frames - self.output.overlap
        processed_clips = {item.clip_name for item in processed}
        written = 0
        for clip, chunks in self.stitched.items():
            length = chunks[-1].chunk_index * step + chunks[-1].num_real_frames
            for name in self.options.passes:
                path = self.video_path(clip, name, length)
                if clip in processed_clips or self.output.overwrite or not is_complete(path):
                    files = [self.frame_paths(chunk, name) for chunk in chunks]
                    signed = (
                        name == "normal" and layout.gbuffer_frame_suffix(self.options.output_format, name) == ".exr"
                    )
                    read = (lambda p: (read_image(p) + 1) / 2) if signed else read_image
                    write_stitched_video(path, files, step, length, self.output.fps, read)
                    log.info("Saved stitched video %s", path)
                    written += 1
        return written

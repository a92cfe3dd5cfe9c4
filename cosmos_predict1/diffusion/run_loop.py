"""The one run loop of both scripts: pending work → this rank's share → read, render, write → finish.

A script describes its run as a ``Job``: its work items and their outputs, the files each output writes, how an
item's inputs are read, rendered and written, and what is built from several items at the end (stitched videos).
``run`` does the rest, the same way for both:

- **Before loading**, every check that reads no weights (``Job.loading_plan``: files, config, device), so that
  nothing expensive (HDRI conversion, frame decoding, model loading) runs before a problem is reported; then one
  line each for the device, the models, compiling and the work found, and any doubt about the inputs.
- **Resume.** An item whose files all exist and are complete (``integrity.is_complete``: a truncated file is
  not) is skipped (``overwrite`` redoes it). An unfinished item is redone whole: outputs are sampled in batches,
  and which outputs share a batch can change the floating-point result, so only the same batches make a resumed
  run's files byte-identical to an uninterrupted run's.
- **Sharing** under torchrun: the pending outputs are cut where the renderer's batches end and split into one
  contiguous run per rank (``distributed.shard``); ``keep_items_whole`` keeps each item on one rank.
- **Overlap.** While the GPU samples item i, a reader thread loads item i + 1's frames and writer threads encode and
  write the files of the items before it (each file atomically; an item's outputs in parallel). The files are the
  same as a sequential run's.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Generic, TypeVar

from . import distributed, integrity, timing
from .options import OutputOptions
from .progress import Progress, counted

log = logging.getLogger("cosmos_predict1")

Item = TypeVar("Item")
Output = TypeVar("Output")
BatchRule = Callable[[Any, int], list[range]]  # (item, number of outputs) → index ranges sampled together
BACKGROUND_IO = True  # read ahead and write behind in threads (False: one step after the other)
WRITERS = 4  # writer threads: JPEG, PNG, EXR and H.264 encoding release the GIL


class Job(ABC, Generic[Item, Output]):
    """What a script supplies to ``run``: ``output`` (where and how it writes) and ``num_steps`` (for progress).

    ``item_noun`` and ``output_noun`` name a work item and an output in messages ("image", "G-buffer pass").
    """

    item_noun = "work item"
    output_noun = "output"

    def __init__(self, output: OutputOptions, num_steps: int) -> None:
        self.output, self.num_steps = output, num_steps

    @abstractmethod
    def inputs_found(self) -> str:
        """The inputs, for the line printed before loading: "3 images in <folder>"."""

    def input_warnings(self) -> list[str]:
        """Doubts about the inputs (stills read as a video, say), one line each, printed before loading."""
        return []

    @abstractmethod
    def loading_plan(self) -> list[str]:
        """Check what ``load`` will load, reading no weights (files, config, device), so that a problem is reported
        before any expensive step; return the lines that say it (device and dtype, models, compiling)."""

    @abstractmethod
    def work(self) -> list[tuple[Item, list[Output]]]:
        """Every work item with all its outputs, in processing order."""

    @abstractmethod
    def output_files(self, item: Item, output: Output) -> list[Path]:
        """The files one output of an item writes (all must be complete for it to count as done)."""

    def item_files(self, item: Item) -> list[Path]:
        """Files an item writes once for all its outputs (e.g. its contact sheet)."""
        return []

    @abstractmethod
    def item_name(self, item: Item) -> str:
        """The item's name in progress lines."""

    @abstractmethod
    def load(self) -> BatchRule:
        """Load the models; return how an item's outputs are batched."""

    def begin(self, share: list[tuple[Item, list[Output]]]) -> None:
        """Called once with this rank's share before the first item (e.g. to decide what to compile)."""

    @abstractmethod
    def read(self, item: Item) -> Any:
        """The item's inputs, ready for ``render`` (CPU work: runs ahead in a thread)."""

    @abstractmethod
    def render(self, item: Item, outputs: list[Output], inputs: Any, on_step: Callable) -> Any:
        """Sample the item's ``outputs``; return what ``write`` needs, on the CPU."""

    @abstractmethod
    def writes(self, item: Item, outputs: list[Output], inputs: Any, result: Any) -> list[Callable[[], int]]:
        """The item's file writing as independent tasks (they run behind, on writer threads, in parallel); each
        returns how many files it wrote."""

    def finish(self, processed: list[Item]) -> int:
        """Files built from several items (after all ranks are done, on rank 0); ``processed``: the items of this
        run. Returns how many were written."""
        return 0


def files_of(job: Job, item: Any, outputs: Sequence) -> list[Path]:
    """Every file ``item`` writes for ``outputs``: the outputs' and the item's own."""
    return [path for output in outputs for path in job.output_files(item, output)] + job.item_files(item)


def pending_work(job: Job, overwrite: bool) -> tuple[list, list]:
    """(all work, the items with an output not done yet — every item with ``overwrite`` — with all their outputs).

    ``UserError`` first if a folder on the way to an output is a link (``integrity.check_inside``).
    """
    work = job.work()
    files = [files_of(job, item, outputs) for item, outputs in work]
    integrity.check_inside(job.output.folder, (path for paths in files for path in paths))
    todo = [
        (item, list(outputs))
        for (item, outputs), paths in zip(work, files)
        if overwrite or not all(integrity.is_complete(path) for path in paths)
    ]
    return work, todo


def announce(job: Job, work: list, todo: list, plan: list[str]) -> None:
    """Log what the run will do, before loading: ``plan`` (device, models, compiling), the work found and what of
    it is already done, and any doubt about the inputs."""
    for line in plan:
        log.info(line)
    outputs = sum(len(outputs) for _, outputs in todo)
    line = f"Found {job.inputs_found()}; to write: {counted(outputs, 'output')}"
    per_item = {len(outputs) for _, outputs in todo}
    if len(per_item) == 1:
        line += f" ({counted(len(todo), job.item_noun)} × {counted(per_item.pop(), job.output_noun)})"
    line += f", {counted(sum(len(files_of(job, item, outputs)) for item, outputs in todo), 'file')}"
    skipped = len(work) - len(todo)
    if skipped:
        line += f"; {counted(skipped, job.item_noun)} skipped, already done (--overwrite redoes them)"
    log.info(line)
    for warning in job.input_warnings():
        log.warning(warning)


def my_share(todo: list, batches: BatchRule, keep_items_whole: bool) -> list:
    """This process's part of ``todo`` (all of it in a single process), cut only between batches."""
    units = [
        (item, [outputs[i] for i in batch])
        for item, outputs in todo
        for batch in ([range(len(outputs))] if keep_items_whole else batches(item, len(outputs)))
    ]
    return distributed.shard(units)


class _Background:
    """A reader thread and writer threads; a write's failure surfaces in the caller at its next write or at the end."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.reader = ThreadPoolExecutor(1, "cosmos-read") if enabled else None
        self.writer = ThreadPoolExecutor(WRITERS, "cosmos-write") if enabled else None
        self.writes: list[Future] = []

    def read(self, function: Callable, *args: Any) -> Future:
        return self._submit(self.reader, "reading", function, *args)

    def write(self, function: Callable, *args: Any) -> None:
        self.raise_failures()
        self.writes.append(self._submit(self.writer, "writing", function, *args))

    @staticmethod
    def _submit(pool: ThreadPoolExecutor | None, phase: str, function: Callable, *args: Any) -> Future:
        def timed() -> Any:
            with timing.phase(phase):
                return function(*args)

        if pool is not None:
            return pool.submit(timed)
        future: Future = Future()
        future.set_result(timed())
        return future

    def raise_failures(self) -> None:
        for future in self.writes:
            if future.done() and future.exception() is not None:
                raise future.exception()

    def written(self) -> int:
        """Wait for every write; the number of files written."""
        return sum(future.result() for future in self.writes)

    def close(self) -> None:
        for pool in (self.reader, self.writer):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)


def run(job: Job) -> str:
    """Do the job's pending work (this rank's share of it); returns the one-line summary of this rank.

    ``--contact_sheet`` keeps each item on one rank (its sheet shows all of the item's outputs).
    """
    place, folder = distributed.layout(), job.output.folder
    work, todo = pending_work(job, job.output.overwrite)
    if not todo:
        if place.is_main:
            job.finish([])
        everything = counted(len(work), job.item_noun)
        return f"Nothing to do: all outputs of {everything} exist in {folder} (--overwrite redoes them)"
    plan = job.loading_plan()
    if place.is_main:
        announce(job, work, todo, plan)
    with timing.phase("loading"):
        batches = job.load()
    share = my_share(todo, batches, keep_items_whole=job.output.contact_sheet)
    job.begin(share)
    background = _Background(BACKGROUND_IO)
    outputs_count = sum(len(outputs) for _, outputs in share)
    sampling_batches = sum(len(batches(item, len(outputs))) for item, outputs in share)
    progress = Progress(
        len(share),
        outputs_count,
        job.num_steps,
        batches=sampling_batches,
        noun=job.item_noun,
        enabled=place.is_main,
    )
    try:
        with progress:
            upcoming = background.read(job.read, share[0][0]) if share else None
            for position, (item, outputs) in enumerate(share):
                inputs = upcoming.result()
                if position + 1 < len(share):
                    upcoming = background.read(job.read, share[position + 1][0])
                result = job.render(item, outputs, inputs, progress.step)
                if place.writes_outputs:  # context parallel: the group's first rank writes
                    for task in job.writes(item, outputs, inputs, result):
                        background.write(task)
                progress.item_done(job.item_name(item))
            with timing.phase("last writes"):  # what the run waits for after its last item (in "writing" too)
                written = background.written()
    finally:
        background.close()
    distributed.barrier()  # outputs built from several items may come from several ranks
    if place.is_main:
        written += job.finish([item for item, _ in todo])
    return f"Done: {counted(len(share), job.item_noun)}, {counted(written, 'file')} written to {folder}"

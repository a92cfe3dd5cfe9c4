"""Score renderer runs against a ground-truth folder: ``evaluate_inverse``, ``evaluate_forward`` and ``compare``.

Every clip of the ground truth that a run has outputs for is scored (``scoring.score_quantity``) and the clips'
scores are averaged. The results are plain dictionaries, ready for JSON: ``{"clips": {clip: {key: scores}},
"summary": {key: mean scores}, "missing": [...]}`` plus the settings, where a key is a G-buffer pass or an HDRI.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cosmos_predict1.diffusion.assets import FALLBACK_HDRI_LIST
from cosmos_predict1.errors import UserError

from .frames import Frames
from .ground_truth import MASK, RELIT_FOLDER, find_frames, find_input, ground_truth_clips
from .predictions import FORWARD, INVERSE, forward_chunks, inverse_chunks, light_indices, run_kind
from .quantities import GBUFFER_QUANTITIES, RELIT, Quantity
from .scoring import mean_scores, score_quantity

ALL_LIGHTS = "all lights"


def evaluate_inverse(
    prediction_folder: str | Path,
    ground_truth_folder: str | Path,
    *,
    overlap_n_frames: int = 0,
    input_folder: str | Path | None = None,
    label: str | None = None,
) -> dict:
    """Scores of an inverse run's G-buffers: ``{"clips": {clip: {pass: metrics}}, "summary": {pass: metrics}}``
    plus the settings. ``input_folder`` (the run's ``--dataset_path``) tells how long clips with one ground truth
    for every frame are; without it every predicted frame is scored. ``UserError`` if nothing could be scored."""
    run = _new_run(INVERSE, prediction_folder, ground_truth_folder, overlap_n_frames, input_folder, label)
    for clip, folder in ground_truth_clips(Path(ground_truth_folder)).items():
        tasks = []
        for name, quantity in GBUFFER_QUANTITIES.items():
            target = find_frames(folder, name)
            if target is not None:
                tasks.append((name, quantity, inverse_chunks(Path(prediction_folder), clip, name), target))
        _score_clip(run, clip, folder, tasks)
    return _finished(run)


def evaluate_forward(
    prediction_folder: str | Path,
    ground_truth_folder: str | Path,
    *,
    envlight_paths: Sequence[str | Path] | None = None,
    overlap_n_frames: int = 0,
    input_folder: str | Path | None = None,
    label: str | None = None,
) -> dict:
    """Scores of a forward run's relit frames against ``<clip>/relit/<hdri stem>`` ground truth.

    ``envlight_paths``: the run's ``--envlight_path`` list (output relit_<k> used its k-th file; only the file
    stems matter); default: the procedural stand-ins, whose relit renders the bundled ground truth holds. Results
    are keyed by HDRI stem, with the mean over all lights under ``"all lights"`` in the summary.
    """
    stems = [Path(path).stem for path in (envlight_paths or FALLBACK_HDRI_LIST)]
    if len(set(stems)) != len(stems):
        raise UserError("--envlight_path names the same HDRI twice; each needs its own relit ground truth.")
    run = _new_run(FORWARD, prediction_folder, ground_truth_folder, overlap_n_frames, input_folder, label)
    run["lights"] = stems
    lights = light_indices(Path(prediction_folder))
    run["missing"] += [f"relit_{k:04d}: no HDRI at this index of --envlight_path" for k in lights if k >= len(stems)]
    lights = [k for k in lights if k < len(stems)]
    for clip, folder in ground_truth_clips(Path(ground_truth_folder)).items():
        tasks = []
        for light in lights:
            target = find_frames(folder / RELIT_FOLDER, stems[light], videos=True)
            if target is not None:
                tasks.append((stems[light], RELIT, forward_chunks(Path(prediction_folder), clip, light), target))
        _score_clip(run, clip, folder, tasks)
    run = _finished(run)
    every = [scores for clip in run["clips"].values() for scores in clip.values()]
    run["summary"][ALL_LIGHTS] = {**mean_scores(every), "clips": len(run["clips"])}
    return run


def compare(
    prediction_folders: Sequence[str | Path],
    ground_truth_folder: str | Path,
    *,
    labels: Sequence[str] | None = None,
    envlight_paths: Sequence[str | Path] | None = None,
    overlap_n_frames: int = 0,
    input_folder: str | Path | None = None,
) -> dict:
    """Scores of several runs of one kind (e.g. ``--num_steps`` 15 and 30) against the same ground truth:
    ``{"kind": ..., "runs": [one evaluate_* result per folder]}``. Labels default to the folder names."""
    folders = [Path(folder) for folder in prediction_folders]
    if not folders:
        raise UserError("Give at least one prediction folder.")
    kinds = {run_kind(folder) for folder in folders}
    if len(kinds) > 1:
        raise UserError("The prediction folders mix inverse and forward runs; compare runs of one kind at a time.")
    labels = list(labels) if labels else _default_labels(folders)
    if len(labels) != len(folders) or len(set(labels)) != len(labels):
        raise UserError(f"Give one distinct label per prediction folder ({len(folders)}), got {len(labels)}.")
    kind = kinds.pop()
    runs = []
    for folder, label in zip(folders, labels):
        options = {"overlap_n_frames": overlap_n_frames, "input_folder": input_folder, "label": label}
        if kind == INVERSE:
            runs.append(evaluate_inverse(folder, ground_truth_folder, **options))
        else:
            runs.append(evaluate_forward(folder, ground_truth_folder, envlight_paths=envlight_paths, **options))
    return {"kind": kind, "ground_truth_folder": str(ground_truth_folder), "runs": runs}


Task = tuple[str, Quantity, dict[int, Frames], Frames]  # key (pass or HDRI), quantity, predicted chunks, ground truth


def _score_clip(run: dict, clip: str, folder: Path, tasks: list[Task]) -> None:
    """Score each (key, quantity, predicted chunks, ground truth) of one clip into ``run``; note what is missing."""
    if tasks and not any(chunks for _, _, chunks, _ in tasks):
        run["missing"].append(f"{clip}: no output in this run")
        return
    inputs = find_input(Path(run["input_folder"]), clip) if run["input_folder"] is not None else None
    length = inputs.count if inputs is not None else None
    mask = find_frames(folder, MASK)
    for key, quantity, chunks, target in tasks:
        if not chunks:
            run["missing"].append(f"{clip}: no {key} output")
            continue
        scores = score_quantity(quantity, chunks, target, mask, run["overlap_n_frames"], length)
        if scores is None:
            run["missing"].append(f"{clip}: no {key} output has ground truth (frame numbers or mask)")
        else:
            run["clips"].setdefault(clip, {})[key] = scores


def _new_run(
    kind: str, prediction_folder, ground_truth_folder, overlap_n_frames: int, input_folder, label: str | None
) -> dict:
    if overlap_n_frames < 0:
        raise UserError("--overlap_n_frames must be 0 or more.")
    run_kind_found = run_kind(Path(prediction_folder))
    if run_kind_found != kind:
        raise UserError(f"{prediction_folder} holds the outputs of a {run_kind_found} run, not of a {kind} run.")
    return {
        "kind": kind,
        "label": label or Path(prediction_folder).name,
        "prediction_folder": str(prediction_folder),
        "ground_truth_folder": str(ground_truth_folder),
        "input_folder": None if input_folder is None else str(input_folder),
        "overlap_n_frames": overlap_n_frames,
        "clips": {},
        "missing": [],
    }


def _finished(run: dict) -> dict:
    if not run["clips"]:
        raise UserError(
            f"No output of {run['prediction_folder']} matches the ground truth in {run['ground_truth_folder']} "
            "(clip names must agree, e.g. gbuffer_frames/image_1/ and image_1/)."
        )
    keys = dict.fromkeys(key for clip in run["clips"].values() for key in clip)
    run["summary"] = {key: _summary([c[key] for c in run["clips"].values() if key in c]) for key in keys}
    return run


def _summary(clip_scores: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over clips, the number of clips and the total of their frames."""
    return {**mean_scores(clip_scores), "clips": len(clip_scores)}


def _default_labels(folders: list[Path]) -> list[str]:
    names = [folder.name for folder in folders]
    return names if len(set(names)) == len(names) else [str(folder) for folder in folders]

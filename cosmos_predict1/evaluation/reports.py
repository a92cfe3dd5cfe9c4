"""Reports of a comparison (``evaluate.compare``): ``report.json`` (everything), ``report.md`` (tables) and the
figures (``figures.py``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from cosmos_predict1.diffusion.writers import write_text

from .figures import write_figures

FIGURES = "figures"

# metric key → (column header, format); the order of the table columns
COLUMNS: dict[str, tuple[str, str]] = {
    "psnr": ("PSNR dB ↑", "{:.2f}"),
    "ssim": ("SSIM ↑", "{:.4f}"),
    "psnr_raw": ("PSNR unaligned ↑", "{:.2f}"),
    "psnr_aligned": ("PSNR aligned ↑", "{:.2f}"),
    "ssim_aligned": ("SSIM aligned ↑", "{:.4f}"),
    "mean_angle": ("mean ° ↓", "{:.2f}"),
    "median_angle": ("median ° ↓", "{:.2f}"),
    "within_11.25": ("< 11.25° % ↑", "{:.1f}"),
    "within_22.5": ("< 22.5° % ↑", "{:.1f}"),
    "within_30": ("< 30° % ↑", "{:.1f}"),
    "abs_rel": ("AbsRel ↓", "{:.4f}"),
    "delta_1": ("δ < 1.25 % ↑", "{:.1f}"),
    "mae": ("MAE ↓", "{:.4f}"),
    "flicker": ("flicker", "{:.4f}"),
    "flicker_gt": ("flicker GT", "{:.4f}"),
    "seam_flicker": ("seam flicker", "{:.4f}"),
    "seam_flicker_gt": ("seam flicker GT", "{:.4f}"),
    "clips": ("clips", "{:d}"),
    "frames": ("frames", "{:d}"),
}
DEFINITIONS = """\
Basecolor: PSNR/SSIM after one scale per colour channel fitted in linear light (per chunk), PSNR unaligned without
it. Normal: angle between predicted and true camera-space normals. Depth: AbsRel and δ < 1.25 after a least-squares
scale and shift (per chunk), clipped to the true range. Roughness, metallic: mean absolute error. Relit: PSNR/SSIM
as written, and after a per-channel linear-light scale (exposure). flicker: mean absolute change between
consecutive frames of a chunk in [0, 1] units (normals as (n + 1) / 2, depth over the clip's true depth range),
with the ground truth's own beside it (GT); seam flicker: the same across chunk borders. Every metric is averaged
over frames, then over clips; frames are compared at the ground truth's resolution."""


def write_reports(comparison: dict, folder: str | Path, figures: bool = True) -> dict[str, Path]:
    """``report.json``, ``report.md`` and (with ``figures``) ``figures/<clip>.png`` of a comparison in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pictures = write_figures(comparison, folder / FIGURES) if figures else []
    paths = {"json": write_json(comparison, folder / "report.json")}
    paths["markdown"] = write_markdown(comparison, folder / "report.md", pictures)
    return {**paths, **{f"figure {path.stem}": path for path in pictures}}


def write_json(comparison: dict, path: Path) -> Path:
    """The comparison as indented JSON."""
    write_text(path, json.dumps(comparison, indent=2, ensure_ascii=False) + "\n")
    return path


def write_markdown(comparison: dict, path: Path, figures: Sequence[Path] = ()) -> Path:
    """Summary tables (one per pass or light, one row per run), per-clip tables, what was not scored."""
    runs = comparison["runs"]
    lines = [f"# Evaluation of {comparison['kind']} runs against ground truth", ""]
    lines += [f"Ground truth: `{comparison['ground_truth_folder']}`. Runs:", ""]
    lines += [f"- **{run['label']}**: `{run['prediction_folder']}`" for run in runs]
    lines += ["", "## Summary (mean over clips)", "", summary_markdown(comparison), "## Per clip", ""]
    for key in _keys(runs, "clips"):
        rows = [
            ([clip, run["label"]], run["clips"][clip][key])
            for clip in dict.fromkeys(clip for run in runs for clip in run["clips"])
            for run in runs
            if key in run["clips"].get(clip, {})
        ]
        lines += [f"### {key}", ""] + _table(["clip", "run"], rows)
    missing = [f"- {run['label']}: {entry}" for run in runs for entry in run["missing"]]
    if missing:
        lines += ["## Not scored", ""] + missing + [""]
    if figures:
        lines += ["## Figures", ""] + [f"![{figure.stem}]({FIGURES}/{figure.name})" for figure in figures] + [""]
    lines += ["## Metrics", "", DEFINITIONS, ""]
    write_text(path, "\n".join(lines))
    return path


def summary_markdown(comparison: dict) -> str:
    """One Markdown table per pass or light: a row per run with its mean over clips."""
    runs, lines = comparison["runs"], []
    for key in _keys(runs, "summary"):
        lines += [f"### {key}", ""] + _table(["run"], [([run["label"]], run["summary"].get(key)) for run in runs])
    return "\n".join(lines)


def _keys(runs: list[dict], level: str) -> list[str]:
    """Passes or lights in first-seen order over the runs' summaries or clips."""
    if level == "summary":
        return list(dict.fromkeys(key for run in runs for key in run["summary"]))
    return list(dict.fromkeys(key for run in runs for clip in run["clips"].values() for key in clip))


def _table(label_headers: list[str], rows: list[tuple[list[str], dict | None]]) -> list[str]:
    """A Markdown table: the label columns, then every metric that any row has, in COLUMNS order."""
    present = {key for _, scores in rows for key in (scores or {})}
    keys = [key for key in COLUMNS if key in present]
    header = label_headers + [COLUMNS[key][0] for key in keys]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for labels, scores in rows:
        cells = [_cell(key, (scores or {}).get(key)) for key in keys]
        lines.append("| " + " | ".join(labels + cells) + " |")
    return lines + [""]


def _cell(key: str, value: float | int | None) -> str:
    if value is None:
        return "–"
    return COLUMNS[key][1].format(value)

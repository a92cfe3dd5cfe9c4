"""Score renderer outputs against ground truth and compare runs side by side (JSON, Markdown, figures).

    python scripts/evaluate_renderer.py --predictions outputs/steps15 outputs/steps30 \
        --ground_truth asset/examples/ground_truth --inputs asset/examples/image_examples \
        --output_folder outputs/evaluation

Each --predictions folder is the --video_save_folder of one inverse run (G-buffers) or one forward run (relit
frames); all of one kind. Writes report.json, report.md and figures/<clip>.png into --output_folder and prints the
summary. Metric definitions and the ground-truth layout: README.md, "Evaluate against ground truth".
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("cosmos_predict1") is None:  # run as `python scripts/...` without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cosmos_predict1.arguments import Parser
from cosmos_predict1.diffusion.assets import REPOSITORY_ROOT
from cosmos_predict1.diffusion.pixel_limit import replace_pillow_guard
from cosmos_predict1.errors import UserError
from cosmos_predict1.evaluation import compare, write_reports
from cosmos_predict1.evaluation.reports import summary_markdown

BUNDLED_GROUND_TRUTH = REPOSITORY_ROOT / "asset" / "examples" / "ground_truth"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser("Score renderer outputs against ground truth (see README: Evaluate against ground truth).")
    add = parser.add_argument
    add("--predictions", type=Path, nargs="+", required=True, help="--video_save_folder of each run to score.")
    add("--labels", type=str, nargs="+", default=None, help="A name per run for the tables (default: folder names).")
    add(
        "--ground_truth",
        type=Path,
        default=BUNDLED_GROUND_TRUTH,
        help="Folder of ground-truth clips (default: the bundled asset/examples/ground_truth).",
    )
    add(
        "--inputs",
        type=Path,
        default=None,
        help="The runs' input frames (the inverse run's --dataset_path): shown in the figures, and they give the "
        "length of clips whose ground truth is one image for every frame.",
    )
    add(
        "--envlight_path",
        type=str,
        nargs="+",
        default=None,
        help="Forward runs: the --envlight_path list they were run with (relit_<k> used the k-th file; default: "
        "the bundled HDRI list).",
    )
    add("--overlap_n_frames", type=int, default=0, help="The inverse run's --overlap_n_frames (video chunks).")
    add("--output_folder", type=Path, default=Path("outputs/evaluation"), help="Where the reports are written.")
    add("--no_figures", action="store_true", help="Skip figures/<clip>.png (input, truth, predictions, errors).")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Evaluate, write the reports, print the summary; 0 on success, 2 with a one-line message on bad input."""
    args = build_parser().parse_args(argv)
    replace_pillow_guard()
    try:
        comparison = compare(
            args.predictions,
            args.ground_truth,
            labels=args.labels,
            envlight_paths=args.envlight_path,
            overlap_n_frames=args.overlap_n_frames,
            input_folder=args.inputs,
        )
        paths = write_reports(comparison, args.output_folder, figures=not args.no_figures)
    except UserError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 2
    print(summary_markdown(comparison))
    print(f"Wrote {paths['json']}, {paths['markdown']} and {len(paths) - 2} figure(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

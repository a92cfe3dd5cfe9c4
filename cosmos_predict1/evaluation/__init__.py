"""Quality of renderer runs against ground truth (no command-line parsing here: see scripts/evaluate_renderer.py).

from cosmos_predict1.evaluation import compare, evaluate_inverse, write_reports

scores = evaluate_inverse("outputs/delighting", "asset/examples/ground_truth")
write_reports(compare(["outputs/steps15", "outputs/steps30"], "asset/examples/ground_truth"), "outputs/eval")
"""

from .evaluate import compare, evaluate_forward, evaluate_inverse
from .reports import write_reports

__all__ = ["compare", "evaluate_forward", "evaluate_inverse", "write_reports"]

"""What is evaluated, quantity by quantity: how files decode, which pixels count, alignment, metrics, pictures.

A quantity is one G-buffer pass (``basecolor``, ``normal``, ``depth``, ``roughness``, ``metallic``) or a relit
render. Decoded values: colours ``[h, w, 3]`` in [0, 1] (sRGB-encoded), normals ``[h, w, 3]`` signed unit-ish
vectors, depth and scalar passes ``[h, w]``. Alignment runs over a stack ``[T, ...]`` of frames with one set of
parameters (one chunk, or a whole clip for the temporal metrics).
"""

from __future__ import annotations

import numpy as np

from . import metrics

ERROR_COLOR_RANGE = 0.25  # colour error shown saturated at this mean absolute difference
ERROR_ANGLE_RANGE_DEG = 45.0
ERROR_DEPTH_RANGE = 0.25  # relative depth error
ERROR_SCALAR_RANGE = 0.5
DEPTH_DISPLAY_PERCENTILES = (2.0, 98.0)  # near/far of the depth pictures, as the renderer's depth convention


class Quantity:
    """A colour image in [0, 1] compared as it is (no alignment, all pixels): the base of the other quantities."""

    error_range = ERROR_COLOR_RANGE
    error_label = "mean |difference|"

    def decode(self, image: np.ndarray, signed_file: bool) -> np.ndarray:
        """File pixels ``[h, w, 3]`` → values; ``signed_file``: the file stores signed values (a normal EXR)."""
        return np.clip(image, 0.0, 1.0)

    def valid(self, target: np.ndarray) -> np.ndarray:
        """Boolean ``[..., h, w]``: the pixels whose ground truth is defined."""
        return np.ones(target.shape[:-1] if target.ndim == 3 else target.shape, dtype=bool)

    def align(self, prediction: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The prediction fitted to the ground truth where that is ambiguous (here: unchanged)."""
        return prediction

    def frame_metrics(
        self, prediction: np.ndarray, aligned: np.ndarray, target: np.ndarray, mask: np.ndarray
    ) -> dict[str, float]:
        """Metrics of one frame: raw and aligned prediction against the ground truth on ``mask``."""
        return {"psnr": metrics.psnr(aligned, target, mask), "ssim": metrics.ssim(aligned, target, mask)}

    def temporal(self, aligned: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prediction and ground truth ``[T, ...]`` in comparable [0, 1] units for the flicker metrics."""
        return aligned, target

    def picture(self, values: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """uint8 ``[h, w, 3]`` to look at; ``reference`` is the ground truth of the same frame (for ranges)."""
        return _to_uint8(values)

    def error(self, aligned: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Per-pixel error ``[h, w]``, shown from 0 to ``error_range``."""
        return np.abs(aligned - target).mean(axis=-1)


class Relit(Quantity):
    """A relit frame: PSNR/SSIM as it is, and after a per-channel scale in linear light (exposure is ambiguous)."""

    def align(self, prediction: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return metrics.align_color(prediction, target, mask)

    def frame_metrics(
        self, prediction: np.ndarray, aligned: np.ndarray, target: np.ndarray, mask: np.ndarray
    ) -> dict[str, float]:
        return {
            "psnr": metrics.psnr(prediction, target, mask),
            "ssim": metrics.ssim(prediction, target, mask),
            "psnr_aligned": metrics.psnr(aligned, target, mask),
            "ssim_aligned": metrics.ssim(aligned, target, mask),
        }


class Basecolor(Relit):
    """Basecolor: PSNR/SSIM after the per-channel linear-light scale, and PSNR without it."""

    def frame_metrics(
        self, prediction: np.ndarray, aligned: np.ndarray, target: np.ndarray, mask: np.ndarray
    ) -> dict[str, float]:
        return {
            "psnr": metrics.psnr(aligned, target, mask),
            "ssim": metrics.ssim(aligned, target, mask),
            "psnr_raw": metrics.psnr(prediction, target, mask),
        }


class Normal(Quantity):
    """Normals in camera space; files hold (n + 1) / 2, or n itself in EXR. No ground truth where |n| < 0.5."""

    error_range = ERROR_ANGLE_RANGE_DEG
    error_label = "angle in degrees"

    def decode(self, image: np.ndarray, signed_file: bool) -> np.ndarray:
        return image if signed_file else image * 2 - 1

    def valid(self, target: np.ndarray) -> np.ndarray:
        return np.linalg.norm(target, axis=-1) > 0.5

    def frame_metrics(
        self, prediction: np.ndarray, aligned: np.ndarray, target: np.ndarray, mask: np.ndarray
    ) -> dict[str, float]:
        return metrics.normal_metrics(aligned, target, mask)

    def temporal(self, aligned: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (aligned + 1) / 2, (target + 1) / 2

    def picture(self, values: np.ndarray, reference: np.ndarray) -> np.ndarray:
        return _to_uint8((values + 1) / 2)

    def error(self, aligned: np.ndarray, target: np.ndarray) -> np.ndarray:
        return metrics.angular_error_deg(aligned, target)


class Scalar(Quantity):
    """Roughness or metallic in [0, 1] (the mean of a file's channels): mean absolute error."""

    error_range = ERROR_SCALAR_RANGE
    error_label = "|difference|"

    def decode(self, image: np.ndarray, signed_file: bool) -> np.ndarray:
        return np.clip(image.mean(axis=-1), 0.0, 1.0)

    def frame_metrics(
        self, prediction: np.ndarray, aligned: np.ndarray, target: np.ndarray, mask: np.ndarray
    ) -> dict[str, float]:
        return {"mae": metrics.mae(prediction, target, mask)}

    def picture(self, values: np.ndarray, reference: np.ndarray) -> np.ndarray:
        return _to_uint8(np.repeat(values[..., None], 3, axis=-1))

    def error(self, aligned: np.ndarray, target: np.ndarray) -> np.ndarray:
        return np.abs(aligned - target)


class Depth(Scalar):
    """Depth: predictions are relative (any scale and shift), ground truth proportional to true depth (> 0)."""

    error_range = ERROR_DEPTH_RANGE
    error_label = "|difference| / depth"

    def decode(self, image: np.ndarray, signed_file: bool) -> np.ndarray:
        return image.mean(axis=-1)

    def valid(self, target: np.ndarray) -> np.ndarray:
        return np.isfinite(target) & (target > 0)

    def align(self, prediction: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return metrics.align_depth(prediction, target, mask)

    def frame_metrics(
        self, prediction: np.ndarray, aligned: np.ndarray, target: np.ndarray, mask: np.ndarray
    ) -> dict[str, float]:
        return metrics.depth_metrics(aligned, target, mask)

    def temporal(self, aligned: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        near, far = target[mask].min(), target[mask].max()
        span = max(far - near, 1e-12)
        return (aligned - near) / span, (target - near) / span

    def picture(self, values: np.ndarray, reference: np.ndarray) -> np.ndarray:
        valid = self.valid(reference)
        near, far = np.percentile(reference[valid], DEPTH_DISPLAY_PERCENTILES) if valid.any() else (0.0, 1.0)
        return super().picture((values - near) / max(far - near, 1e-12), reference)

    def error(self, aligned: np.ndarray, target: np.ndarray) -> np.ndarray:
        return np.where(self.valid(target), np.abs(aligned - target) / np.where(target > 0, target, 1.0), 0.0)


GBUFFER_QUANTITIES: dict[str, Quantity] = {
    "basecolor": Basecolor(),
    "normal": Normal(),
    "depth": Depth(),
    "roughness": Scalar(),
    "metallic": Scalar(),
}
RELIT = Relit()


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.round(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)

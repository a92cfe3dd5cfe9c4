"""Quality metrics of renderer outputs against ground truth: pure functions on numpy arrays.

Images are float arrays ``[H, W, C]`` (or ``[T, H, W, C]`` where stated) with display values in [0, 1]; masks are
boolean ``[H, W]`` (or ``[T, H, W]``) that select the pixels which have ground truth. Every metric averages over the
selected pixels only. The conventions follow the intrinsic-image and depth literature:

* basecolor: PSNR and SSIM after a per-channel scale fitted in linear light (least squares), since de-lighting
  cannot tell a brighter light from a brighter material;
* normals: angles between unit vectors, mean, median and the share of pixels under 11.25, 22.5 and 30 degrees;
* depth: AbsRel and delta < 1.25 after a least-squares scale and shift (affine-invariant depth, as Marigold), the
  aligned prediction clipped to the ground truth's range;
* roughness, metallic: mean absolute error;
* temporal flicker: mean absolute change between consecutive frames, in the same [0, 1] units for prediction and
  ground truth (a flicker above the ground truth's is an artefact).
"""

from __future__ import annotations

import cv2
import numpy as np

PSNR_CAP_DB = 100.0  # PSNR of identical images (a mean squared error below 1e-10)
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5  # Gaussian window of Wang et al. 2004
SSIM_K1, SSIM_K2 = 0.01, 0.03
NORMAL_THRESHOLDS_DEG = (11.25, 22.5, 30.0)
DELTA_THRESHOLD = 1.25


def psnr(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB of ``[H, W, C]`` images in [0, 1] (peak 1), capped at PSNR_CAP_DB."""
    squared = (np.asarray(prediction, np.float64) - target) ** 2
    mse = float(_pixels(squared, mask, channels=True).mean())
    return min(10 * np.log10(1 / mse), PSNR_CAP_DB) if mse > 10 ** (-PSNR_CAP_DB / 10) else PSNR_CAP_DB


def ssim(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Structural similarity in [-1, 1] of ``[H, W, C]`` images in [0, 1]: the SSIM map of Wang et al. (Gaussian
    window 11 x 11, sigma 1.5, K1 0.01, K2 0.03, data range 1, borders reflected) averaged over channels and the
    masked pixels."""
    x, y = np.asarray(prediction, np.float64), np.asarray(target, np.float64)
    c1, c2 = SSIM_K1**2, SSIM_K2**2

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    maps = []
    for channel in range(x.shape[-1]):
        a, b = x[..., channel], y[..., channel]
        mean_a, mean_b = blur(a), blur(b)
        var_a = blur(a * a) - mean_a**2
        var_b = blur(b * b) - mean_b**2
        covariance = blur(a * b) - mean_a * mean_b
        numerator = (2 * mean_a * mean_b + c1) * (2 * covariance + c2)
        maps.append(numerator / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)))
    return float(_pixels(np.mean(maps, axis=0), mask).mean())


def mae(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute difference of two scalar maps of equal shape (e.g. roughness ``[H, W]`` in [0, 1])."""
    return float(_pixels(np.abs(np.asarray(prediction, np.float64) - target), mask).mean())


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] → linear light in [0, 1]."""
    values = np.clip(np.asarray(values, np.float64), 0.0, 1.0)
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(values: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] → sRGB-encoded values in [0, 1] (clipped first)."""
    values = np.clip(np.asarray(values, np.float64), 0.0, 1.0)
    encoded = 1.055 * np.power(np.maximum(values, 0.0031308), 1 / 2.4) - 0.055
    return np.where(values <= 0.0031308, 12.92 * values, encoded)


def channel_scales(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-channel scales ``[C]`` minimising ||s_c p_c - t_c||² over the masked pixels of ``[..., C]`` arrays.

    A channel that is zero everywhere in ``prediction`` keeps scale 1.
    """
    p = _pixels(np.asarray(prediction, np.float64), mask, channels=True)
    t = _pixels(np.asarray(target, np.float64), mask, channels=True)
    energy = (p * p).sum(axis=0)
    return np.where(energy > 0, (p * t).sum(axis=0) / np.where(energy > 0, energy, 1.0), 1.0)


def align_color(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``prediction`` (sRGB-encoded ``[..., 3]`` in [0, 1]) scaled per channel in linear light to fit ``target``,
    clipped to [0, 1] and encoded back to sRGB. Leading axes (e.g. frames) share one scale per channel."""
    linear = srgb_to_linear(prediction)
    return linear_to_srgb(linear * channel_scales(linear, srgb_to_linear(target), mask))


def angular_error_deg(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Angle in degrees ``[...]`` between the vectors ``[..., 3]`` of two normal maps (each normalised first;
    a zero vector is 90 degrees from everything)."""
    p, t = _unit(prediction), _unit(target)
    return np.degrees(np.arccos(np.clip((p * t).sum(axis=-1), -1.0, 1.0)))


def normal_metrics(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Signed normal vectors ``[H, W, 3]`` in [-1, 1] against the ground truth: mean and median angular error
    (degrees) and the percentage of pixels whose error is below each of NORMAL_THRESHOLDS_DEG."""
    errors = _pixels(angular_error_deg(prediction, target), mask)
    metrics = {"mean_angle": float(errors.mean()), "median_angle": float(np.median(errors))}
    for threshold in NORMAL_THRESHOLDS_DEG:
        metrics[f"within_{threshold:g}"] = float(100 * (errors < threshold).mean())
    return metrics


def scale_and_shift(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """(s, b) minimising ||s p + b - t||² over the masked values of two arrays of equal shape.

    A constant prediction gets s = 0 and b = the mean of the target.
    """
    p, t = _pixels(np.asarray(prediction, np.float64), mask), _pixels(np.asarray(target, np.float64), mask)
    p_centered = p - p.mean()
    energy = float((p_centered**2).sum())
    scale = float((p_centered * (t - t.mean())).sum()) / energy if energy > 0 else 0.0
    return scale, float(t.mean() - scale * p.mean())


def align_depth(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``prediction`` mapped by the least-squares scale and shift onto ``target`` (positive depths of any unit),
    clipped to the masked target's [min, max]. Leading axes (e.g. frames) share one scale and shift."""
    scale, shift = scale_and_shift(prediction, target, mask)
    valid = _pixels(np.asarray(target, np.float64), mask)
    return np.clip(scale * np.asarray(prediction, np.float64) + shift, valid.min(), valid.max())


def depth_metrics(aligned: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """AbsRel = mean |a - t| / t and delta_1 = percentage of pixels with max(a / t, t / a) < 1.25, for an aligned
    prediction ``a`` (see ``align_depth``) and positive ground-truth depths ``t`` of shape ``[H, W]``."""
    a, t = _pixels(np.asarray(aligned, np.float64), mask), _pixels(np.asarray(target, np.float64), mask)
    ratio = np.maximum(a / t, t / a)
    return {"abs_rel": float((np.abs(a - t) / t).mean()), "delta_1": float(100 * (ratio < DELTA_THRESHOLD).mean())}


def frame_change(first: np.ndarray, second: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute difference between two frames ``[H, W]`` or ``[H, W, C]`` over the pixels of ``mask``."""
    difference = np.abs(np.asarray(second, np.float64) - first)
    return float(_pixels(difference, mask, channels=difference.ndim == 3).mean())


def flicker(frames: np.ndarray, masks: np.ndarray | None = None) -> float:
    """Temporal flicker: the mean of ``frame_change`` over consecutive frames of ``[T, H, W(, C)]`` (T ≥ 2), each
    pair compared on the pixels that ``masks`` ``[T, H, W]`` selects in both frames."""
    if len(frames) < 2:
        raise ValueError("flicker needs at least two frames")
    pairs = range(len(frames) - 1)
    if masks is None:
        return float(np.mean([frame_change(frames[t], frames[t + 1]) for t in pairs]))
    return float(np.mean([frame_change(frames[t], frames[t + 1], masks[t] & masks[t + 1]) for t in pairs]))


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def _pixels(values: np.ndarray, mask: np.ndarray | None, channels: bool = False) -> np.ndarray:
    """The entries of ``values`` at the pixels ``mask`` selects: ``[N]`` of a scalar map, ``[N, C]`` of an array
    with a trailing channel axis (``channels``); all of them without a mask."""
    if mask is None:
        return values.reshape(-1, values.shape[-1]) if channels else values.reshape(-1)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (values.shape[:-1] if channels else values.shape):
        raise ValueError(f"mask of shape {mask.shape} does not fit values of shape {values.shape}")
    if not mask.any():
        raise ValueError("the mask selects no pixel")
    return values[mask]

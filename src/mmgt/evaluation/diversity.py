"""Diversity of generated motion (spec §9): mean pairwise distance of features, and L1Div on keypoints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy.spatial.distance import pdist

from mmgt.errors import MmgtError
from mmgt.evaluation.keypoint_metrics import PoseLike, pose_arrays

_METRICS = {"l1": "cityblock", "l2": "euclidean"}


def diversity(features: np.ndarray, metric: Literal["l1", "l2"] = "l1") -> float:
    """Mean distance over all unordered pairs of samples.

    L1 (summed over the D dimensions) is the default because the spec's Diversity is "mean pairwise L1 between
    autoencoder features"; ``"l2"`` gives the Euclidean variant some gesture papers use instead.

    Args:
        features: (N, D) array, one feature vector per generated sample (e.g. :func:`pose_features`); N >= 2.
        metric: ``"l1"`` or ``"l2"``.

    Returns:
        Mean over the N (N - 1) / 2 pairs i < j of ||f_i - f_j||.
    """
    if metric not in _METRICS:
        raise MmgtError(f"metric: expected 'l1' or 'l2', got {metric!r}")
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise MmgtError(f"features: expected an (N, D) array with N >= 2, got shape {features.shape}")
    if not np.isfinite(features).all():
        raise MmgtError("features: contain NaN or infinite values")
    return float(pdist(features, _METRICS[metric]).mean())


def pose_diversity(poses: Sequence[PoseLike]) -> float:
    """L1Div: mean L1 distance of every pose to the mean pose, pooled over all frames of all samples.

    The L1Div of the co-speech literature (Audio2Gestures, HA2G, DiffGesture) sums |pose - mean pose| over all
    coordinates of a frame. Detected keypoints come and go, so here the mean pose is taken per keypoint over the
    frames where that point is visible, and the L1 term |dx| + |dy| is averaged over visible (frame, keypoint)
    entries instead of summed over a fixed set: the result is in px per keypoint and does not grow when fewer points
    are seen. With every point visible, multiply by K to recover the summed form.

    Args:
        poses: samples, each a :class:`PoseSequence` or an (F_i, 134, 2|3) array (see :func:`pose_arrays`); frame
            counts may differ. Normalise them consistently (e.g. same canvas) before comparing models.

    Returns:
        Mean per-keypoint L1 deviation from the mean pose.
    """
    if len(poses) == 0:
        raise MmgtError("poses: need at least one pose sequence")
    arrays = [pose_arrays(p, f"poses[{i}]") for i, p in enumerate(poses)]
    xy = np.concatenate([a[0] for a in arrays])  # (sum F, K, 2)
    visible = np.concatenate([a[1] for a in arrays])  # (sum F, K)
    counts = visible.sum(axis=0)  # (K,)
    if not counts.any():
        raise MmgtError("poses: no keypoint is visible in any frame")
    mean = (xy * visible[..., None]).sum(axis=0) / np.maximum(counts, 1)[:, None]  # (K, 2)
    deviation = np.abs(xy - mean).sum(axis=-1)  # (sum F, K)
    return float(deviation[visible].mean())

"""Keypoint accuracy of a predicted pose sequence against ground truth: L2, L1 and PCK (spec §9, "Keypoint L1/PCK").

All metrics are in the pixel space the poses are given in and count only the points that are visible in the ground
truth: a stage-1 prediction is scored where the detector saw something, whatever the prediction's own scores say.
This module also holds the pose-input conversion shared by the other pose metrics of :mod:`mmgt.evaluation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from mmgt.constants import BODY, FACE, KEYPOINT_GROUPS, LEGS, NUM_KEYPOINTS, VISIBILITY_THRESHOLD
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError

PoseLike = PoseSequence | np.ndarray

# Body without knees and ankles (spec §2 removes the legs); hips stay, they are part of a seated speaker's torso.
UPPER_BODY: tuple[int, ...] = tuple(i for i in BODY if i not in LEGS)

PckReference = Literal["bbox", "head"]


def pose_arrays(
    pose: PoseLike, name: str = "pose", threshold: float = VISIBILITY_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates and visibility of a pose in the 134 layout.

    Args:
        pose: a :class:`PoseSequence`; an (F, K, 2) pixel array (every point counts as visible); or an (F, K, 3)
            array [x_px, y_px, score] as written by :meth:`PoseSequence.as_array` (pixel-space scores, not the
            normalised model output).
        name: argument name used in error messages.
        threshold: a point is visible when its score is above this.

    Returns:
        ``(xy, visible)``: (F, K, 2) float64 coordinates and (F, K) bool visibility.
    """
    if isinstance(pose, PoseSequence):
        return pose.keypoints.astype(np.float64), pose.visible(threshold)
    array = np.asarray(pose, dtype=np.float64)
    if array.ndim != 3 or array.shape[1] != NUM_KEYPOINTS or array.shape[2] not in (2, 3):
        raise MmgtError(f"{name}: expected a PoseSequence or an (F, {NUM_KEYPOINTS}, 2|3) array, got {array.shape}")
    if not np.isfinite(array).all():
        raise MmgtError(f"{name}: keypoints contain NaN or infinite values")
    if array.shape[2] == 2:
        return array, np.ones(array.shape[:2], dtype=bool)
    return array[..., :2], array[..., 2] > threshold


def group_indices(groups: str | Sequence[str] | None) -> np.ndarray:
    """Sorted keypoint indices of the union of the named ``constants.KEYPOINT_GROUPS`` (all 134 for ``None``)."""
    if groups is None:
        return np.arange(NUM_KEYPOINTS)
    names = [groups] if isinstance(groups, str) else list(groups)
    unknown = [g for g in names if g not in KEYPOINT_GROUPS]
    if unknown or not names:
        raise MmgtError(
            f"groups: unknown keypoint group(s) {unknown or names}; expected some of {list(KEYPOINT_GROUPS)}"
        )
    return np.unique(np.concatenate([KEYPOINT_GROUPS[g] for g in names]))


def _paired(pred: PoseLike, gt: PoseLike, groups: str | Sequence[str] | None):
    """Prediction and ground-truth coordinates plus the gt visibility mask, restricted to ``groups``."""
    if isinstance(pred, PoseSequence) and isinstance(gt, PoseSequence):
        if (pred.width, pred.height) != (gt.width, gt.height):
            raise MmgtError(
                f"pred is {pred.width}x{pred.height} px but gt is {gt.width}x{gt.height} px; rescale one first"
            )
    pred_xy, _ = pose_arrays(pred, "pred")
    gt_xy, gt_visible = pose_arrays(gt, "gt")
    if pred_xy.shape != gt_xy.shape:
        raise MmgtError(f"pred has {pred_xy.shape[0]} frames, gt has {gt_xy.shape[0]}; they must match")
    idx = group_indices(groups)
    return pred_xy[:, idx], gt_xy[:, idx], gt_visible[:, idx]


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> float:
    """Mean of ``values`` where ``mask``; NaN when nothing is selected (e.g. hands never visible in gt)."""
    return float(values[mask].mean()) if mask.any() else float("nan")


def keypoint_l2(pred: PoseLike, gt: PoseLike, groups: str | Sequence[str] | None = None) -> float:
    """Mean Euclidean keypoint error in pixels over the points visible in ``gt``.

    Args:
        pred: predicted poses, (F, 134, 2|3) array or :class:`PoseSequence`.
        gt: ground-truth poses of the same shape; its scores decide which points count.
        groups: restrict to one or several names of ``constants.KEYPOINT_GROUPS`` (their union), e.g. ``"lips"``.

    Returns:
        Mean ||pred - gt||_2 in px; NaN if no selected point is visible in ``gt``.
    """
    p, g, visible = _paired(pred, gt, groups)
    return _masked_mean(np.linalg.norm(p - g, axis=-1), visible)


def keypoint_l1(pred: PoseLike, gt: PoseLike, groups: str | Sequence[str] | None = None) -> float:
    """Mean L1 (Manhattan, |dx| + |dy|) keypoint error in pixels over the points visible in ``gt``.

    Per point, like :func:`keypoint_l2`, so L2 <= L1 <= sqrt(2) L2. Divide by 2 for the per-coordinate mean that
    ``torch.nn.functional.l1_loss`` would report. Arguments as in :func:`keypoint_l2`.
    """
    p, g, visible = _paired(pred, gt, groups)
    return _masked_mean(np.abs(p - g).sum(axis=-1), visible)


def _reference_sizes(gt_xy: np.ndarray, gt_visible: np.ndarray, reference: PckReference) -> np.ndarray:
    """(F,) per-frame max(w, h) of the gt box of the upper body ("bbox") or of the face ("head"); NaN if unseen."""
    if reference == "bbox":
        idx = np.array(UPPER_BODY)
    elif reference == "head":
        idx = np.array(FACE)
    else:
        raise MmgtError(f"reference: unknown PCK reference {reference!r}; expected 'bbox' or 'head'")
    xy, visible = gt_xy[:, idx], gt_visible[:, idx]
    lo = np.where(visible[..., None], xy, np.inf).min(axis=1)  # (F, 2)
    hi = np.where(visible[..., None], xy, -np.inf).max(axis=1)
    size = (hi - lo).max(axis=-1)
    # A frame needs two distinct visible points for a box with a size.
    return np.where(np.isfinite(size) & (size > 0), size, np.nan)


def pck(
    pred: PoseLike,
    gt: PoseLike,
    alpha: float = 0.1,
    reference: PckReference = "bbox",
    groups: str | Sequence[str] | None = None,
) -> float:
    """Percentage of Correct Keypoints: fraction of gt-visible points within ``alpha * size`` of the ground truth.

    The size is per frame, from the ground truth: ``"bbox"`` takes max(w, h) of the box around the visible
    upper-body points (body without legs, the usual PCK@0.1-of-bbox of 2D pose benchmarks, restricted to what a
    talking-head crop shows); ``"head"`` takes max(w, h) of the box around the visible face landmarks (a PCKh-like
    variant; the 134 layout has no head-top point, and PCKh is usually quoted at alpha = 0.5). Frames without a
    reference box are skipped.

    Args:
        pred: predicted poses, (F, 134, 2|3) array or :class:`PoseSequence`.
        gt: ground-truth poses; its scores decide which points count and which frames have a reference.
        alpha: threshold as a fraction of the reference size, > 0.
        reference: ``"bbox"`` or ``"head"``.
        groups: restrict the scored points (not the reference box) to these ``KEYPOINT_GROUPS`` names.

    Returns:
        Fraction in [0, 1]; NaN if no point can be scored.
    """
    if not alpha > 0:
        raise MmgtError(f"alpha: must be positive, got {alpha}")
    _, gt_full, gt_visible_full = _paired(pred, gt, None)
    sizes = _reference_sizes(gt_full, gt_visible_full, reference)  # (F,)
    p, g, visible = _paired(pred, gt, groups)
    visible = visible & np.isfinite(sizes)[:, None]
    within = np.linalg.norm(p - g, axis=-1) <= alpha * np.nan_to_num(sizes)[:, None]
    return _masked_mean(within.astype(np.float64), visible)

"""Normalisation of pixel keypoints to the model range [-1, 1] and back.

Two maps are provided:

* ``"fixed"`` (default, spec §2): coordinates are first expressed on the 512-pixel canvas, then
  v -> 2 (v + 200) / 1000 - 1, so pixels [-200, 800] map to [-1, 1] and an off-canvas margin remains representable.
  With ``normalize_scores=True`` (the released SMGA convention) the same map is applied to the scores as well,
  which puts them near -0.6; otherwise scores are mapped 0..1 -> -1..1.
* ``"image"``: v -> 2 v / size - 1 per axis (x by width, y by height); scores 0..1 -> -1..1.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from mmgt.constants import CANVAS_SIZE, FPS, NORM_OFFSET, NORM_RANGE
from mmgt.contracts import PoseSequence

NormMode = Literal["fixed", "image"]


def _fixed(v: np.ndarray) -> np.ndarray:
    return 2.0 * (v + NORM_OFFSET) / NORM_RANGE - 1.0


def _fixed_inverse(v: np.ndarray) -> np.ndarray:
    return (v + 1.0) * NORM_RANGE / 2.0 - NORM_OFFSET


def normalize_pose(pose: PoseSequence, mode: NormMode = "fixed", normalize_scores: bool = True) -> np.ndarray:
    """Pixel pose -> model array.

    Args:
        pose: the pose sequence (coordinates in pixels of ``pose.width`` x ``pose.height``).
        mode: ``"fixed"`` (spec map on the 512 canvas) or ``"image"`` (size-relative).
        normalize_scores: in ``"fixed"`` mode, map scores with the same affine map as coordinates (released SMGA).

    Returns:
        (F, K, 3) float32 [x, y, score], coordinates in [-1, 1] for points on the canvas.
    """
    size = np.array([pose.width, pose.height], dtype=np.float32)
    if mode == "fixed":
        xy = _fixed(pose.keypoints * (CANVAS_SIZE / size))
        s = _fixed(pose.scores) if normalize_scores else 2.0 * pose.scores - 1.0
    elif mode == "image":
        xy = 2.0 * pose.keypoints / size - 1.0
        s = 2.0 * pose.scores - 1.0
    else:
        raise ValueError(f"unknown normalisation mode {mode!r}; expected 'fixed' or 'image'")
    return np.concatenate([xy, s[..., None]], axis=-1).astype(np.float32)


def denormalize_pose(
    array: np.ndarray,
    width: int,
    height: int,
    mode: NormMode = "fixed",
    normalize_scores: bool = True,
    fps: float = FPS,
) -> PoseSequence:
    """Inverse of :func:`normalize_pose`: (F, K, 3) model array -> :class:`PoseSequence` in pixels.

    Scores are clipped to [0, 1]; visibility is therefore tested after de-normalisation (spec §2).
    """
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected a (F, K, 3) array, got {array.shape}")
    size = np.array([width, height], dtype=np.float32)
    xy, s = array[..., :2], array[..., 2]
    if mode == "fixed":
        xy = _fixed_inverse(xy) * (size / CANVAS_SIZE)
        s = _fixed_inverse(s) if normalize_scores else (s + 1.0) / 2.0
    elif mode == "image":
        xy = (xy + 1.0) * size / 2.0
        s = (s + 1.0) / 2.0
    else:
        raise ValueError(f"unknown normalisation mode {mode!r}; expected 'fixed' or 'image'")
    return PoseSequence(xy, np.clip(s, 0.0, 1.0), width, height, fps)

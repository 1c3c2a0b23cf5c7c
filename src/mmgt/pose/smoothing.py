"""Temporal smoothing of pose sequences: per-track jitter removal and spline blending at window boundaries."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.signal import savgol_filter

from mmgt.constants import VISIBILITY_THRESHOLD
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError

SmoothMethod = Literal["savgol", "one_euro"]


# ---------------------------------------------------------------------------------------------------------------------
# Confidence-aware smoothing of one sequence
# ---------------------------------------------------------------------------------------------------------------------
def smooth_poses(
    pose: PoseSequence,
    method: SmoothMethod = "savgol",
    window: int = 5,
    polyorder: int = 2,
    max_gap: int = 3,
    min_cutoff: float = 1.0,
    beta: float = 0.05,
    d_cutoff: float = 1.0,
    threshold: float = VISIBILITY_THRESHOLD,
) -> PoseSequence:
    """Smooth each keypoint track over time, using only frames where that point is visible.

    For every keypoint, frames with score > ``threshold`` are visible. Invisible runs of at most ``max_gap`` frames
    with visible frames on both sides are filled by linear interpolation; the track is then cut into runs of
    consecutive (visible or filled) frames and each run is smoothed on its own, so an undetected point (often at
    (0, 0)) never pulls a visible one. Coordinates of longer gaps and of leading/trailing invisible frames are
    returned unchanged. Scores are returned unchanged, so filled frames stay invisible to renderers and masks.

    Args:
        pose: the sequence to smooth.
        method: ``"savgol"`` (Savitzky-Golay, zero lag, window ``window`` and ``polyorder``) or ``"one_euro"``
            (Casiraghi et al.'s 1-euro filter: causal, adaptive cut-off ``min_cutoff + beta * |speed|`` in Hz with
            speed in px/s, derivative cut-off ``d_cutoff`` Hz, sampled at ``pose.fps``).
        window: Savitzky-Golay window in frames (odd; shortened for shorter runs).
        polyorder: Savitzky-Golay polynomial order (< window).
        max_gap: longest invisible run (frames) that is bridged by interpolation; 0 disables filling.
        min_cutoff, beta, d_cutoff: 1-euro parameters.
        threshold: visibility threshold on scores.

    Returns:
        A new :class:`PoseSequence` with smoothed ``keypoints`` (F, K, 2) and the original scores.
    """
    if method not in ("savgol", "one_euro"):
        raise MmgtError(f"smooth_poses: unknown method {method!r}; expected 'savgol' or 'one_euro'")
    if method == "savgol" and not (window >= 1 and 0 <= polyorder < window):
        raise MmgtError(f"smooth_poses: need window >= 1 and 0 <= polyorder < window, got {window}, {polyorder}")
    if max_gap < 0:
        raise MmgtError(f"smooth_poses: max_gap must be >= 0, got {max_gap}")
    keypoints = pose.keypoints.astype(np.float64)  # (F, K, 2)
    visible = pose.scores > threshold  # (F, K)
    for k in range(keypoints.shape[1]):
        track, known = _fill_short_gaps(keypoints[:, k], visible[:, k], max_gap)
        for start, stop in _runs(known):
            if method == "savgol":
                track[start:stop] = _savgol(track[start:stop], window, polyorder)
            else:
                track[start:stop] = _one_euro(track[start:stop], pose.fps, min_cutoff, beta, d_cutoff)
        keypoints[:, k] = track
    return pose.replace(keypoints=keypoints.astype(np.float32))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in a 1-D bool array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _fill_short_gaps(track: np.ndarray, visible: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate invisible runs of <= max_gap frames between visible frames. Returns (track, known)."""
    track, known = track.copy(), visible.copy()
    for start, stop in _runs(~visible):
        if start == 0 or stop == len(visible) or stop - start > max_gap:
            continue  # no visible frame on one side, or too long to guess
        w = (np.arange(start, stop) - (start - 1))[:, None] / (stop - (start - 1))
        track[start:stop] = (1 - w) * track[start - 1] + w * track[stop]
        known[start:stop] = True
    return track, known


def _savgol(values: np.ndarray, window: int, polyorder: int) -> np.ndarray:
    """Savitzky-Golay along axis 0, with the window shrunk (kept odd) to fit short runs."""
    length = min(window, len(values))
    length -= 1 - length % 2  # odd
    if length <= polyorder:
        return values  # too short to fit the polynomial: leave as is
    return savgol_filter(values, length, polyorder, axis=0, mode="interp")


def _one_euro(values: np.ndarray, fps: float, min_cutoff: float, beta: float, d_cutoff: float) -> np.ndarray:
    """The 1-euro filter (Casiraghi, Roussel, Vogel, CHI 2012) along axis 0 of (T, D) values."""

    def alpha(cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau * fps)  # smoothing factor for one sample period 1/fps

    out = np.empty_like(values)
    out[0] = values[0]
    speed = np.zeros(values.shape[1:])
    for t in range(1, len(values)):
        raw_speed = (values[t] - out[t - 1]) * fps
        speed = speed + alpha(d_cutoff) * (raw_speed - speed)
        cutoff = min_cutoff + beta * np.abs(speed)
        out[t] = out[t - 1] + alpha(cutoff) * (values[t] - out[t - 1])
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Window-boundary blending (spec §6 step 6)
# ---------------------------------------------------------------------------------------------------------------------
def blend_boundaries(array: np.ndarray, boundaries: Iterable[int], span: int = 5, anchors: int = 3) -> np.ndarray:
    """Replace frames around each window boundary by a cubic spline through the frames just outside them.

    For a boundary ``b`` (the first frame of a new window), frames ``b - span .. b + span - 1`` are replaced by a
    :class:`scipy.interpolate.CubicSpline` (not-a-knot) through the ``anchors`` frames ``b - span - anchors ..
    b - span - 1`` and ``b + span .. b + span + anchors - 1``. Anchors falling outside the array are dropped; a
    boundary with no anchor left on one side is skipped (there is nothing to blend towards). Boundaries are
    processed in increasing order on the progressively blended array. Frames outside every span are unchanged.

    Args:
        array: (F, ...) values over time, e.g. (F, K, 2) pixel keypoints or (F, 402) normalised frames.
        boundaries: frame indices in [0, F], e.g. multiples of the 80-frame stage-1 window.
        span: half-width of the replaced range in frames (spec default 5).
        anchors: spline anchor frames per side (spec default 3).

    Returns:
        A new array of the same shape; same dtype for floating input (float64 otherwise).
    """
    src = np.asarray(array)
    if src.ndim < 1:
        raise MmgtError(f"blend_boundaries: array must have a time axis, got shape {src.shape}")
    if span < 1 or anchors < 1:
        raise MmgtError(f"blend_boundaries: span and anchors must be >= 1, got {span} and {anchors}")
    num_frames = len(src)
    out = src.astype(np.float64)
    for b in sorted(int(b) for b in boundaries):
        if not 0 <= b <= num_frames:
            raise MmgtError(f"blend_boundaries: boundary {b} is outside [0, {num_frames}]")
        left = np.arange(max(b - span - anchors, 0), max(b - span, 0))
        right = np.arange(min(b + span, num_frames), min(b + span + anchors, num_frames))
        if len(left) == 0 or len(right) == 0:
            continue
        knots = np.concatenate([left, right])
        # CubicSpline needs >= 2 knots (guaranteed: one per side); with 2 or 3 it degrades to a line/parabola.
        spline = CubicSpline(knots, out[knots], axis=0)
        replaced = np.arange(max(b - span, 0), min(b + span, num_frames))
        out[replaced] = spline(replaced)
    return out.astype(src.dtype) if np.issubdtype(src.dtype, np.floating) else out

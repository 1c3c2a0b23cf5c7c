"""Lip-sync on keypoints: correlation of mouth opening with speech loudness (a cheap stand-in for SyncNet, spec §9).

SyncNet's Sync-C/Sync-D need a face crop of rendered video and pretrained weights. At the keypoint level, stage-1
output can be checked directly: the inner-lip gap should rise and fall with the speech energy envelope. The score is
the Pearson correlation of the two 25-fps curves, maximised over a few frames of lag.
"""

from __future__ import annotations

import numpy as np

from mmgt.constants import FACE, FACE_OFFSET, FPS
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError
from mmgt.evaluation.keypoint_metrics import PoseLike, pose_arrays
from mmgt.utils.audio_io import check_wave

# iBUG-68 inner lips: upper 61, 62, 63 face the lower 67, 66, 65 (60 and 64 are the corners).
INNER_LIP_PAIRS: tuple[tuple[int, int], ...] = tuple(
    (FACE_OFFSET + upper, FACE_OFFSET + lower) for upper, lower in ((61, 67), (62, 66), (63, 65))
)
MIN_FRAMES = 3  # fewer overlapping frames than this give no meaningful correlation


def _face_height(xy: np.ndarray, visible: np.ndarray) -> float:
    """Median over frames of the height of the box around the visible face landmarks (px); NaN if never seen."""
    idx = np.array(FACE)
    y, seen = xy[:, idx, 1], visible[:, idx]
    heights = np.where(seen, y, -np.inf).max(axis=1) - np.where(seen, y, np.inf).min(axis=1)
    heights = heights[np.isfinite(heights) & (heights > 0)]
    # One number per sequence: the jaw drops when the mouth opens, so a per-frame height would damp the signal.
    return float(np.median(heights)) if heights.size else float("nan")


def mouth_opening(pose: PoseLike) -> np.ndarray:
    """Inner-lip gap divided by face height, per frame.

    The gap is the mean distance between the three matching upper/lower inner-lip points. For an upright face this
    is their vertical distance; the Euclidean distance also stays correct when the head rolls.

    Args:
        pose: (F, 134, 2|3) array or :class:`PoseSequence` (see :func:`pose_arrays`).

    Returns:
        (F,) float64, scale-free (the same for a pose scaled by any factor); NaN in frames where one of the six
        inner-lip points is not visible, and everywhere if the face is never visible.
    """
    xy, visible = pose_arrays(pose)
    upper = np.array([u for u, _ in INNER_LIP_PAIRS])
    lower = np.array([lo for _, lo in INNER_LIP_PAIRS])
    gap = np.linalg.norm(xy[:, lower] - xy[:, upper], axis=-1).mean(axis=1)  # (F,)
    seen = visible[:, upper].all(axis=1) & visible[:, lower].all(axis=1)
    return np.where(seen, gap / _face_height(xy, visible), np.nan)


def audio_envelope(wave: np.ndarray, sr: int, num_frames: int, fps: float = FPS) -> np.ndarray:
    """RMS energy of the waveform in consecutive non-overlapping windows of 1 / fps s (40 ms at 25 fps).

    Args:
        wave: (S,) mono waveform; sample 0 is the start of frame 0.
        sr: sample rate in Hz.
        num_frames: number of frames F to return; frames past the end of the audio are 0.
        fps: frame rate.

    Returns:
        (F,) float64 RMS amplitude per frame.
    """
    wave = check_wave(wave, sr, name="wave").astype(np.float64)
    if num_frames < 0:
        raise MmgtError(f"num_frames: must be >= 0, got {num_frames}")
    # Rounded boundaries handle rates that are not a multiple of fps (e.g. 22,050 Hz at 25 fps = 882 per frame).
    bounds = np.round(np.arange(num_frames + 1) * sr / fps).astype(np.int64)
    padded = np.pad(wave, (0, max(0, int(bounds[-1]) - wave.size)))
    energy = np.concatenate([[0.0], np.cumsum(padded**2)])
    lengths = np.diff(bounds)
    return np.sqrt((energy[bounds[1:]] - energy[bounds[:-1]]) / np.maximum(lengths, 1))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r; 0 if either signal is constant (a still mouth correlates with nothing)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:  # tested before centring, which leaves ~1e-17 rounding noise
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _lagged(mouth: np.ndarray, envelope: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (mouth[t + lag], envelope[t]) over the overlap, frames with an unseen mouth dropped."""
    n = len(mouth)
    m, e = (mouth[lag:], envelope[: n - lag]) if lag >= 0 else (mouth[: n + lag], envelope[-lag:])
    valid = np.isfinite(m)
    return m[valid], e[valid]


def lip_sync(pose: PoseLike, wave: np.ndarray, sr: int, max_lag: int = 2) -> tuple[float, int]:
    """Best Pearson correlation between mouth opening and audio envelope over lags -max_lag..max_lag.

    Args:
        pose: (F, 134, 2|3) array or :class:`PoseSequence` (its fps is used; ``constants.FPS`` for arrays).
        wave: (S,) mono waveform aligned with the poses.
        sr: sample rate in Hz.
        max_lag: largest shift in frames tried in each direction (2 frames = 80 ms at 25 fps).

    Returns:
        ``(r, lag)``: the correlation in [-1, 1] and its lag in frames; a positive lag means the mouth moves
        ``lag`` frames after the sound. Ties go to the smaller |lag|.
    """
    fps = pose.fps if isinstance(pose, PoseSequence) else FPS
    mouth = mouth_opening(pose)
    best = best_lag_correlation(mouth, audio_envelope(wave, sr, len(mouth), fps=fps), max_lag)
    if best is None:
        raise MmgtError(f"pose: fewer than {MIN_FRAMES} frames with visible inner lips; cannot measure lip sync")
    return best


def best_lag_correlation(signal: np.ndarray, envelope: np.ndarray, max_lag: int = 2) -> tuple[float, int] | None:
    """Best Pearson r between a per-frame ``signal`` (NaN = unseen) and ``envelope`` over lags -max_lag..max_lag.

    Args:
        signal: (F,) e.g. mouth opening or mouth-region pixel change; NaN frames are skipped.
        envelope: (F,) audio envelope of the same frames.
        max_lag: largest shift in frames tried each way; a positive lag means the signal follows the sound.

    Returns:
        ``(r, lag)`` (ties go to the smaller |lag|), or None when fewer than ``MIN_FRAMES`` frames overlap.
    """
    if max_lag < 0:
        raise MmgtError(f"max_lag: must be >= 0, got {max_lag}")
    best: tuple[float, int] | None = None
    for lag in sorted(range(-max_lag, max_lag + 1), key=abs):
        m, e = _lagged(np.asarray(signal, dtype=np.float64), envelope, lag)
        if len(m) < MIN_FRAMES:
            continue
        r = _pearson(m, e)
        if best is None or r > best[0]:
            best = (r, lag)
    return best


def lip_sync_score(pose: PoseLike, wave: np.ndarray, sr: int, max_lag: int = 2) -> float:
    """The correlation of :func:`lip_sync` alone: higher is better synchronised speech and mouth motion."""
    return lip_sync(pose, wave, sr, max_lag=max_lag)[0]

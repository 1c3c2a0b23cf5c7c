"""Hand keypoint confidence (HKC) and hand keypoint variance (HKV) of detected poses (spec §9).

Both read the 42 hand points (21 per hand) of poses detected on video frames:

* **HKC** ↑: the mean detector confidence of the hand points over all frames (0 where a hand was not found). With
  DWPose this is the literature's HKC (mean SimCC confidence); MediaPipe gives 1 for a found hand and 0 otherwise,
  so with it HKC is the share of hand points found. Labels in results say which detector ran.
* **HKV** ↑ (spec [decision]): the temporal variance of hand positions: for each hand point, the variance over the
  frames where it is visible of x / S and y / S (S = the frame's longer side), summed over x and y, averaged over the
  points seen in at least two frames. Still hands give 0; the unit is (fraction of the frame)^2.
"""

from __future__ import annotations

import numpy as np

from mmgt.constants import HANDS, VISIBILITY_THRESHOLD
from mmgt.contracts import PoseSequence


def hand_confidence(pose: PoseSequence) -> float:
    """HKC of one sequence: mean confidence of the 42 hand points over all frames."""
    return float(pose.scores[:, list(HANDS)].mean()) if pose.num_frames else float("nan")


def hand_variance(pose: PoseSequence, threshold: float = VISIBILITY_THRESHOLD) -> float:
    """HKV of one sequence (see the module docstring); NaN when no hand point is seen in two frames."""
    idx = list(HANDS)
    xy = pose.keypoints[:, idx].astype(np.float64) / max(pose.width, pose.height)  # (F, 42, 2)
    seen = pose.scores[:, idx] > threshold  # (F, 42)
    counts = seen.sum(axis=0)
    valid = counts >= 2
    if not valid.any():
        return float("nan")
    mean = (xy * seen[..., None]).sum(axis=0) / np.maximum(counts, 1)[:, None]  # (42, 2)
    var = (((xy - mean) ** 2) * seen[..., None]).sum(axis=0) / np.maximum(counts - 1, 1)[:, None]  # unbiased
    return float(var.sum(axis=1)[valid].mean())

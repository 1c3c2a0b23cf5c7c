"""Region measurements on generated video, located by the driving keypoints: the mouth and the shirt (spec §9).

Stage II is driven by known poses, so the keypoints say where each region is in every frame; no detector runs on the
generated pixels. Two measurements back the stage-2 acceptance checks:

* :func:`mouth_activity` — how far the mouth region of each frame is from the clip's typical (median) mouth: it rises
  when the mouth opens. Correlated with the audio envelope it says whether the mouth follows the speech.
* :func:`torso_colour` — the median colour of a patch below the shoulders: the clothing colour, an identity cue that
  should match the reference image.
"""

from __future__ import annotations

import cv2
import numpy as np

from mmgt.constants import BODY_INDEX, LIPS, VISIBILITY_THRESHOLD
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError

MOUTH_CROP = 16  # mouth crops are resampled to 16 x 16 px so clips of any size compare
MOUTH_MARGIN = 0.6  # half-side of the crop = (0.5 + margin) x lip width: lips, teeth and some of the chin


def _check(frames: np.ndarray, poses: PoseSequence) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise MmgtError(f"frames must be (F, H, W, 3), got shape {frames.shape}")
    if len(frames) != poses.num_frames:
        raise MmgtError(f"{len(frames)} frames but {poses.num_frames} pose frames")


def _pixel_keypoints(frames: np.ndarray, poses: PoseSequence) -> np.ndarray:
    """(F, K, 2) keypoints scaled from the pose canvas to the frame size."""
    h, w = frames.shape[1:3]
    return poses.keypoints * np.array([w / poses.width, h / poses.height], dtype=np.float64)


def mouth_crops(frames: np.ndarray, poses: PoseSequence) -> np.ndarray:
    """Square crops around the lips, one per frame.

    Args:
        frames: (F, H, W, 3) uint8 video.
        poses: the F driving poses (any canvas size; scaled to the frames).

    Returns:
        (F, 16, 16, 3) float32 crops in [0, 1]; NaN for frames whose lips are not visible.
    """
    _check(frames, poses)
    kp = _pixel_keypoints(frames, poses)[:, list(LIPS)]  # (F, 20, 2)
    seen = (poses.scores[:, list(LIPS)] > VISIBILITY_THRESHOLD).all(axis=1)  # (F,)
    out = np.full((len(frames), MOUTH_CROP, MOUTH_CROP, 3), np.nan, np.float32)
    for i in np.flatnonzero(seen):
        lo, hi = kp[i].min(axis=0), kp[i].max(axis=0)
        centre, half = (lo + hi) / 2, max((0.5 + MOUTH_MARGIN) * (hi - lo)[0], 3.0)
        # An affine warp samples the square (borders replicated) without integer rounding of the box.
        scale = MOUTH_CROP / (2 * half)
        matrix = np.array([[scale, 0, MOUTH_CROP / 2 - scale * centre[0]],
                           [0, scale, MOUTH_CROP / 2 - scale * centre[1]]])  # fmt: skip
        crop = cv2.warpAffine(frames[i], matrix, (MOUTH_CROP, MOUTH_CROP), flags=cv2.INTER_AREA,
                              borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        out[i] = crop.astype(np.float32) / 255.0
    return out


def mouth_activity(frames: np.ndarray, poses: PoseSequence) -> np.ndarray:
    """(F,) mean absolute difference of each mouth crop from the clip's median mouth crop (NaN where unseen).

    A closed mouth is the common state in speech with pauses, so the median crop is close to it and the activity
    grows with the opening (dark mouth interior, teeth, lips apart).
    """
    crops = mouth_crops(frames, poses)  # (F, 16, 16, 3)
    seen = np.isfinite(crops).all(axis=(1, 2, 3))
    if seen.sum() == 0:
        raise MmgtError("no frame with visible lips: cannot measure mouth activity")
    median = np.median(crops[seen], axis=0)  # (16, 16, 3)
    return np.abs(crops - median).mean(axis=(1, 2, 3))


def torso_colour(frames: np.ndarray, poses: PoseSequence) -> np.ndarray:
    """Median RGB of a patch just below the shoulders, over all frames (the clothing colour).

    The patch spans the middle 40 % of the shoulder line and reaches from 15 % to 45 % of the shoulder width below it.

    Args:
        frames: (F, H, W, 3) uint8 video (or one (1, H, W, 3) image).
        poses: the F poses (shoulders must be visible in at least one frame).

    Returns:
        (3,) float64 median colour in 0..255.
    """
    _check(frames, poses)
    kp = _pixel_keypoints(frames, poses)
    rs, ls = BODY_INDEX["right_shoulder"], BODY_INDEX["left_shoulder"]
    seen = (poses.scores[:, [rs, ls]] > VISIBILITY_THRESHOLD).all(axis=1)
    pixels = []
    h, w = frames.shape[1:3]
    for i in np.flatnonzero(seen):
        a, b = kp[i, rs], kp[i, ls]
        width = np.linalg.norm(b - a)
        x0, x1 = sorted((a[0] + 0.3 * (b[0] - a[0]), a[0] + 0.7 * (b[0] - a[0])))
        top = max(a[1], b[1])
        y0, y1 = top + 0.15 * width, top + 0.45 * width
        xs = slice(max(int(x0), 0), min(int(np.ceil(x1)), w))
        ys = slice(max(int(y0), 0), min(int(np.ceil(y1)), h))
        pixels.append(frames[i, ys, xs].reshape(-1, 3))
    pixels = np.concatenate(pixels) if pixels else np.zeros((0, 3))
    if len(pixels) == 0:
        raise MmgtError("shoulders not visible (or the torso patch is outside the frame): no torso colour")
    return np.median(pixels.astype(np.float64), axis=0)

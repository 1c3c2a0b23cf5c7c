"""Region measurements on generated video, located by the driving keypoints: the mouth and the shirt (spec §9).

Stage II is driven by known poses, so the keypoints say where each region is in every frame; no detector runs on the
generated pixels. Two measurements back the stage-2 acceptance checks:

* :func:`mouth_activity` — how far the mouth region of each frame (a window fixed to the head, not to the lips) is
  from the clip's typical (median) mouth: it rises when the mouth opens. Correlated with the audio envelope it says
  whether the mouth follows the speech.
* :func:`torso_colour` — the median colour of a patch below the shoulders: the clothing colour, an identity cue that
  should match the reference image.
* :func:`hand_psnr` — PSNR against the real frames inside the hand boxes only: whether the hands are rendered where
  and as they are, which a whole-frame PSNR (mostly background and torso) barely sees.
"""

from __future__ import annotations

import cv2
import numpy as np

from mmgt.constants import BODY_INDEX, FACE_OFFSET, LEFT_HAND, LIPS, NOSE, RIGHT_HAND, VISIBILITY_THRESHOLD
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError

MOUTH_CROP = 16  # mouth crops are resampled to 16 x 16 px so clips of any size compare
MOUTH_MARGIN = 0.6  # half-side of the crop = (0.5 + margin) x lip width: lips, teeth and some of the chin
HEAD_AXIS = (FACE_OFFSET + 36, FACE_OFFSET + 45)  # outer eye corners: the head's x axis and scale


def _check(frames: np.ndarray, poses: PoseSequence) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise MmgtError(f"frames must be (F, H, W, 3), got shape {frames.shape}")
    if len(frames) != poses.num_frames:
        raise MmgtError(f"{len(frames)} frames but {poses.num_frames} pose frames")


def _pixel_keypoints(frames: np.ndarray, poses: PoseSequence) -> np.ndarray:
    """(F, K, 2) keypoints scaled from the pose canvas to the frame size."""
    h, w = frames.shape[1:3]
    return poses.keypoints * np.array([w / poses.width, h / poses.height], dtype=np.float64)


def _head_frames(kp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame rigid head frame from points that do not move when the mouth opens.

    Args:
        kp: (F, K, 2) pixel keypoints.

    Returns:
        origin (F, 2): the nose centroid; x_axis, y_axis (F, 2): unit vectors along the outer eye corners and
        perpendicular to it (down the face for an upright head); unit (F,): the outer-eye-corner distance in px.
    """
    origin = kp[:, list(NOSE)].mean(axis=1)
    eye_line = kp[:, HEAD_AXIS[1]] - kp[:, HEAD_AXIS[0]]
    unit = np.linalg.norm(eye_line, axis=1)
    x_axis = eye_line / np.maximum(unit, 1e-9)[:, None]
    y_axis = np.stack([-x_axis[:, 1], x_axis[:, 0]], axis=1)
    return origin, x_axis, y_axis, unit


def mouth_squares(poses: PoseSequence, height: int, width: int) -> np.ndarray:
    """The head-fixed mouth square of each frame, in the pixels of a ``height`` x ``width`` frame.

    The square follows the head (nose and outer eye corners: translation, roll and scale) but not the lips: it sits
    where the clip's lips are on median, so an opening mouth changes the pixels inside a still window. (A window
    centred on each frame's lip keypoints would itself move down as the keypoints open, and read pixel change from a
    closed generated mouth.) :func:`mouth_crops` samples it here; the lip-sync expert (``mmgt.models.lipsync``)
    samples the same squares, differentiably.

    Args:
        poses: the F driving poses (any canvas size; scaled to the frame size).
        height, width: the frame size in pixels.

    Returns:
        (F, 7) float64 rows ``(cx, cy, ax, ay, bx, by, half)``: the centre, the unit head x axis (along the eyes), the
        unit y axis (down the face) and the half-side in pixels (at least 3); NaN rows for frames whose lips, nose or
        outer eye corners are not visible.
    """
    kp = poses.keypoints * np.array([width / poses.width, height / poses.height], dtype=np.float64)  # (F, K, 2)
    needed = [*LIPS, *NOSE, *HEAD_AXIS]
    seen = (poses.scores[:, needed] > VISIBILITY_THRESHOLD).all(axis=1)  # (F,)
    out = np.full((poses.num_frames, 7), np.nan)
    if not seen.any():
        return out
    origin, x_axis, y_axis, unit = _head_frames(kp)
    # Lip box in head units (x along the eyes, y down the face), then its median over the clip.
    rel = kp[:, list(LIPS)] - origin[:, None]  # (F, 20, 2)
    lx = np.einsum("fpc,fc->fp", rel, x_axis) / unit[:, None]
    ly = np.einsum("fpc,fc->fp", rel, y_axis) / unit[:, None]
    cx = np.median((lx.min(1) + lx.max(1))[seen]) / 2
    cy = np.median((ly.min(1) + ly.max(1))[seen]) / 2
    half = (0.5 + MOUTH_MARGIN) * np.median((lx.max(1) - lx.min(1))[seen])  # in eye-distance units
    centre = origin + unit[:, None] * (cx * x_axis + cy * y_axis)
    rows = np.concatenate([centre, x_axis, y_axis, np.maximum(half * unit, 3.0)[:, None]], axis=1)
    out[seen] = rows[seen]
    return out


def mouth_crops(frames: np.ndarray, poses: PoseSequence) -> np.ndarray:
    """Square crops of the mouth, fixed to the head (:func:`mouth_squares`), one per frame.

    Args:
        frames: (F, H, W, 3) uint8 video.
        poses: the F driving poses (any canvas size; scaled to the frames).

    Returns:
        (F, 16, 16, 3) float32 crops in [0, 1]; NaN for frames whose lips, nose or outer eye corners are not visible.
    """
    _check(frames, poses)
    squares = mouth_squares(poses, *frames.shape[1:3])  # (F, 7)
    out = np.full((len(frames), MOUTH_CROP, MOUTH_CROP, 3), np.nan, np.float32)
    for i in np.flatnonzero(np.isfinite(squares).all(axis=1)):
        centre, x_axis, y_axis, half = squares[i, :2], squares[i, 2:4], squares[i, 4:6], squares[i, 6]
        scale = MOUTH_CROP / (2 * half)
        rotation = np.stack([x_axis, y_axis])  # image -> head axes
        # An affine warp samples the rotated square (borders replicated) without integer rounding of the box.
        matrix = np.concatenate([scale * rotation, (MOUTH_CROP / 2 - scale * rotation @ centre)[:, None]], axis=1)
        crop = cv2.warpAffine(
            frames[i], matrix, (MOUTH_CROP, MOUTH_CROP), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
        )
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


HAND_MARGIN = 0.25  # the hand box grows by this fraction of its size on every side (fingers beyond the keypoints)


def hand_psnr(pred: np.ndarray, target: np.ndarray, poses: PoseSequence, data_range: float = 255.0) -> float:
    """PSNR in dB over the pixels of the hand boxes of every frame (both hands pooled), NaN if no hand is seen.

    A hand's box is the bounding box of its visible keypoints (score above the threshold, at least 2) grown by
    :data:`HAND_MARGIN` of its size on each side; the squared error is averaged over all boxed pixels of the clip.

    Args:
        pred, target: (F, H, W, 3) generated and real frames.
        poses: the F poses the video follows.
    """
    _check(target, poses)
    if pred.shape != target.shape:
        raise MmgtError(f"pred {pred.shape} and target {target.shape} differ")
    kp = _pixel_keypoints(target, poses)
    h, w = target.shape[1:3]
    errors = []
    for i in range(len(target)):
        for hand in (LEFT_HAND, RIGHT_HAND):
            idx = np.asarray(hand)
            seen = idx[poses.scores[i, idx] > VISIBILITY_THRESHOLD]
            if len(seen) < 2:
                continue
            lo, hi = kp[i, seen].min(axis=0), kp[i, seen].max(axis=0)
            pad = HAND_MARGIN * (hi - lo)
            x0, y0 = np.maximum(np.floor(lo - pad).astype(int), 0)
            x1, y1 = np.minimum(np.ceil(hi + pad).astype(int), [w, h])
            if x1 > x0 and y1 > y0:
                diff = pred[i, y0:y1, x0:x1].astype(np.float64) - target[i, y0:y1, x0:x1].astype(np.float64)
                errors.append((diff**2).ravel())
    if not errors:
        return float("nan")
    mse = np.concatenate(errors).mean()
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range**2 / mse))

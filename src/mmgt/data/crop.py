"""One square crop per video: from a fixed left edge (the PATS recipe, spec §8.2) or from detected upper bodies.

The crop is chosen once per video and then applied to every frame, so the camera of the preprocessed clip is as
steady as the source: a per-frame crop would add motion that no gesture caused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from mmgt.constants import BODY_INDEX, FACE, HANDS, VISIBILITY_THRESHOLD
from mmgt.errors import MmgtError, NoPersonError

# The square side is this many (median) shoulder widths: head to mid-torso plus room for gestures. In the PATS
# show crops (a 16:9 frame cropped to its height) the shoulders span roughly 40 % of the square.
SIDE_PER_SHOULDER = 2.4
# Without visible shoulders (close-ups) the shoulder width is estimated from the width of the 68 face landmarks
# (jaw to jaw), which is about half the shoulder width for a frontal adult.
SHOULDERS_PER_FACE_WIDTH = 2.0
# The face landmarks end at the brows; the top of the head (hair included) lies about this many face heights
# (brow to chin) higher.
HEAD_TOP_PER_FACE_HEIGHT = 0.6
# Without a face, the top of the head is this many shoulder widths above the shoulder line.
HEAD_TOP_PER_SHOULDER = 1.1
TOP_MARGIN = 0.08  # free space above the head, as a share of the side
HAND_MARGIN = 0.05  # free space around the hands' range, as a share of the side
HAND_PERCENTILES = (5.0, 95.0)  # hands' range, robust to a few wild detections


@dataclass(frozen=True)
class CropBox:
    """A square ``side`` x ``side`` window with top-left corner (``x``, ``y``), in source-frame pixels."""

    x: int
    y: int
    side: int

    def apply(self, frame: np.ndarray, size: int) -> np.ndarray:
        """Crop an (H, W, 3) uint8 frame and resize it to (size, size, 3)."""
        window = frame[self.y : self.y + self.side, self.x : self.x + self.side]
        if window.shape[:2] != (self.side, self.side):
            raise MmgtError(f"crop {self} does not fit a {frame.shape[1]}x{frame.shape[0]} frame")
        # INTER_AREA averages when shrinking (no aliasing); cubic when enlarging.
        interpolation = cv2.INTER_AREA if self.side >= size else cv2.INTER_CUBIC
        return cv2.resize(window, (size, size), interpolation=interpolation)

    def to_list(self) -> list[int]:
        return [self.x, self.y, self.side]


def fixed_crop(width: int, height: int, left: float) -> CropBox:
    """The PATS-recipe crop: side = the shorter frame side, left edge at ``left`` x width.

    The box is shifted left where it would leave the frame, so ``left=1`` gives a right-aligned crop ("jon").
    Portrait frames keep their top rows (the head).

    Args:
        width, height: source frame size in pixels.
        left: left edge as a fraction of the width, in [0, 1] (seth 0.395, oliver 0.38, chemistry 0.031, jon 1).
    """
    if not 0.0 <= left <= 1.0:
        raise MmgtError(f"crop_left must be a fraction of the width in [0, 1], got {left}")
    side = min(width, height)
    return CropBox(x=min(round(left * width), width - side), y=0, side=side)


@dataclass(frozen=True)
class _Frame:
    """Upper-body measurements of one detected frame (NaN where the part is not visible)."""

    centre_x: float  # shoulder midpoint x, else face centre x
    scale: float  # shoulder width (px), measured or estimated from the face
    head_top: float  # y of the top of the head
    shoulders: bool  # the centre and scale come from both shoulders


def _measure(kp: np.ndarray, sc: np.ndarray) -> _Frame | None:
    """Measure one frame's (134, 2) px keypoints and (134,) scores; None when neither shoulders nor a face show."""
    vis = sc > VISIBILITY_THRESHOLD
    right, left = BODY_INDEX["right_shoulder"], BODY_INDEX["left_shoulder"]
    face = np.asarray(FACE)[vis[list(FACE)]]
    has_face = len(face) >= len(FACE) / 2  # a few stray landmarks do not make a face
    has_shoulders = bool(vis[right] and vis[left])
    if not (has_face or has_shoulders):
        return None
    if has_face:
        (fx0, fy0), (fx1, fy1) = kp[face].min(axis=0), kp[face].max(axis=0)
        head_top = fy0 - HEAD_TOP_PER_FACE_HEIGHT * (fy1 - fy0)
    if has_shoulders:
        mid = (kp[right] + kp[left]) / 2
        scale = float(np.linalg.norm(kp[right] - kp[left]))
        if not has_face:
            head_top = mid[1] - HEAD_TOP_PER_SHOULDER * scale
        return _Frame(float(mid[0]), scale, float(head_top), True)
    return _Frame(float((fx0 + fx1) / 2), SHOULDERS_PER_FACE_WIDTH * float(fx1 - fx0), float(head_top), False)


def auto_crop(poses: Sequence[tuple[np.ndarray, np.ndarray]], width: int, height: int) -> CropBox:
    """A square crop covering head to mid-torso and the hands' range, stable over the sampled frames.

    The centre x is the median shoulder midpoint (the face centre when the shoulders are rarely seen); the side is
    :data:`SIDE_PER_SHOULDER` median shoulder widths, enlarged to contain the 5-95th percentile of the visible hand
    points; the top sits :data:`TOP_MARGIN` of the side above the median head top. The box is clamped to the frame
    (shifted, and shrunk to the shorter frame side at most).

    Args:
        poses: per sampled frame, (134, 2) px keypoints and (134,) scores in source-frame pixels.
        width, height: source frame size.

    Raises:
        NoPersonError: no sampled frame shows both shoulders or a face.
    """
    frames = [m for kp, sc in poses if (m := _measure(np.asarray(kp), np.asarray(sc))) is not None]
    if not frames:
        raise NoPersonError(f"no person (face or both shoulders) found in {len(poses)} sampled frames")
    with_shoulders = [f for f in frames if f.shoulders]
    # Prefer shoulder measurements when at least half the detections have them: they are steadier than the face.
    base = with_shoulders if len(with_shoulders) >= len(frames) / 2 else frames
    centre_x = float(np.median([f.centre_x for f in base]))
    side = SIDE_PER_SHOULDER * float(np.median([f.scale for f in base]))
    top = float(np.median([f.head_top for f in frames])) - TOP_MARGIN * side
    side = _cover_hands(poses, centre_x, top, side)
    side = int(round(min(max(side, 1.0), width, height)))
    x = int(round(min(max(centre_x - side / 2, 0), width - side)))
    y = int(round(min(max(top, 0), height - side)))
    return CropBox(x=x, y=y, side=side)


def _cover_hands(poses: Sequence[tuple[np.ndarray, np.ndarray]], centre_x: float, top: float, side: float) -> float:
    """Enlarge ``side`` so the box centred at ``centre_x`` from ``top`` down contains the hands' range."""
    hands = list(HANDS) + [BODY_INDEX["right_wrist"], BODY_INDEX["left_wrist"]]
    points = [np.asarray(kp)[hands][np.asarray(sc)[hands] > VISIBILITY_THRESHOLD] for kp, sc in poses]
    points = np.concatenate(points) if points else np.zeros((0, 2))
    if len(points) == 0:
        return side
    (x_lo, _), (x_hi, y_hi) = np.percentile(points, HAND_PERCENTILES, axis=0)
    half_width = max(centre_x - x_lo, x_hi - centre_x)
    # side * (1 - 2 * margin) must hold the hands' half-width on each side, and their lowest point below the top.
    return max(side, 2 * half_width / (1 - 2 * HAND_MARGIN), (y_hi - top) / (1 - HAND_MARGIN))

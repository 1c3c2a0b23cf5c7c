"""Pose frames in the OpenPose/ControlNet style that the stage-II pose guider reads (spec §4.1).

The look follows the DWPose/ControlNet renderer the official code uses, so frames rendered here match the frames the
released stage-II weights were trained on:

* black canvas; 13 body limbs (the leg limbs are never drawn) as filled ellipses of half-width 4 px in the limb's
  OpenPose colour dimmed to 60 %; then the body joints as radius-4 discs in the joint's full colour;
* each hand: 20 skeleton edges, 2 px wide, in HSV-rainbow colours, then its 21 joints as blue radius-4 discs;
* the 68 face landmarks as white radius-3 dots; feet are not drawn.

All sizes are defined at 512 px and scale with ``min(H, W) / 512`` (at least 1 px). Shapes are drawn with 4 bits of
sub-pixel precision (OpenCV ``shift``) and without anti-aliasing, so every drawn pixel has exactly one palette colour.
Pixel ``i`` is centred on coordinate ``i`` (OpenCV convention), the same convention :mod:`mmgt.pose.masks` uses.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterator
from typing import NamedTuple

import cv2
import numpy as np

from mmgt.constants import (
    BODY,
    CANVAS_SIZE,
    JAW,
    LEFT_HAND,
    LEGS,
    LIPS,
    NUM_KEYPOINTS,
    RIGHT_HAND,
    VISIBILITY_THRESHOLD,
)
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError
from mmgt.pose.layout import BODY_COLORS, BODY_LIMBS, FACE_POINTS, LEFT_HAND_EDGES, LEG_LIMBS, RIGHT_HAND_EDGES

# Sizes at the 512 px reference canvas (ControlNet/DWPose values).
STICK_WIDTH = 4  # half-width (minor semi-axis) of a body-limb ellipse
BODY_JOINT_RADIUS = 4
HAND_LINE_WIDTH = 2
HAND_JOINT_RADIUS = 4
FACE_DOT_RADIUS = 3

# ControlNet draws limbs at full colour, multiplies the canvas by 0.6, then draws the joints: limbs end up dimmed.
LIMB_DIM = 0.6
LIMB_COLORS: tuple[tuple[int, int, int], ...] = tuple(
    tuple(int(c * LIMB_DIM) for c in BODY_COLORS[i]) for i in range(len(BODY_LIMBS))
)
HAND_EDGE_COLORS: tuple[tuple[int, int, int], ...] = tuple(
    tuple(round(255 * c) for c in colorsys.hsv_to_rgb(e / len(LEFT_HAND_EDGES), 1.0, 1.0))
    for e in range(len(LEFT_HAND_EDGES))
)
HAND_JOINT_COLOR = (0, 0, 255)  # blue in RGB (ControlNet's canvas is RGB)
FACE_COLOR = (255, 255, 255)

_DRAWN_LIMBS = tuple(i for i in range(len(BODY_LIMBS)) if i not in LEG_LIMBS)
_DRAWN_JOINTS = tuple(j for j in BODY if j not in LEGS)
MOUTH_POINTS = JAW + LIPS  # the face points that move when the mouth opens: jaw line and lips
_FACE_WITHOUT_MOUTH = tuple(j for j in FACE_POINTS if j not in MOUTH_POINTS)
_SHIFT = 4  # fixed-point bits passed to OpenCV: coordinates are drawn to 1/16 px
_ONE = 1 << _SHIFT
_COORD_LIMIT = 1e6  # clip absurd coordinates so fixed-point values stay far inside int32
_ELLIPSE_VERTICES = 48  # < 0.3 px deviation from a true ellipse for a 512 px limb
_ANGLES = np.linspace(0.0, 2.0 * np.pi, _ELLIPSE_VERTICES, endpoint=False)
_COS, _SIN = np.cos(_ANGLES), np.sin(_ANGLES)


class _Sizes(NamedTuple):
    """Stroke sizes in pixels for one canvas size."""

    stick: int
    body_joint: int
    hand_line: int
    hand_joint: int
    face_dot: int


def _sizes(width: int, height: int) -> _Sizes:
    scale = min(width, height) / CANVAS_SIZE
    return _Sizes(
        *(
            max(1, round(s * scale))
            for s in (STICK_WIDTH, BODY_JOINT_RADIUS, HAND_LINE_WIDTH, HAND_JOINT_RADIUS, FACE_DOT_RADIUS)
        )
    )


def _check_size(width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if int(value) != value or value <= 0:
            raise MmgtError(f"render: {name} must be a positive integer, got {value!r}")


def pose_at_size(pose: PoseSequence, width: int | None = None, height: int | None = None) -> PoseSequence:
    """``pose`` with coordinates in pixels of ``width`` x ``height`` (``None`` keeps the pose's own dimension)."""
    width = pose.width if width is None else width
    height = pose.height if height is None else height
    _check_size(width, height)
    if (width, height) == (pose.width, pose.height):
        return pose
    return pose.rescaled(int(width), int(height))


# ---------------------------------------------------------------------------------------------------------------------
# Drawing primitives (all draw in place into an (H, W, 3) uint8 canvas)
# ---------------------------------------------------------------------------------------------------------------------
def _limb_polygons(start: np.ndarray, end: np.ndarray, half_width: float) -> np.ndarray:
    """(L, 2) endpoints -> (L, V, 2) fixed-point ellipse outlines spanning each segment, ``half_width`` thick."""
    centre = (start + end) / 2  # (L, 2)
    delta = end - start
    length = np.hypot(delta[:, 0], delta[:, 1])  # (L,)
    # A zero-length limb degenerates to a vertical stroke of the stick width; any direction works, pick x.
    u = np.where(length[:, None] > 0, delta / np.maximum(length, 1e-12)[:, None], [1.0, 0.0])  # (L, 2) along
    v = np.stack([-u[:, 1], u[:, 0]], axis=-1)  # (L, 2) across
    outline = (
        centre[:, None]
        + (length / 2)[:, None, None] * _COS[None, :, None] * u[:, None]
        + half_width * _SIN[None, :, None] * v[:, None]
    )  # (L, V, 2)
    return np.rint(outline * _ONE).astype(np.int32)


def _draw_body(canvas: np.ndarray, xy: np.ndarray, fixed: list, visible: np.ndarray, sizes: _Sizes) -> None:
    limbs = [i for i in _DRAWN_LIMBS if visible[BODY_LIMBS[i][0]] and visible[BODY_LIMBS[i][1]]]
    if limbs:
        ends = np.array([BODY_LIMBS[i] for i in limbs])  # (L, 2) keypoint indices
        polygons = _limb_polygons(xy[ends[:, 0]], xy[ends[:, 1]], sizes.stick)
        for i, polygon in zip(limbs, polygons):
            cv2.fillConvexPoly(canvas, polygon, LIMB_COLORS[i], cv2.LINE_8, _SHIFT)
    for j in _DRAWN_JOINTS:
        if visible[j]:
            cv2.circle(canvas, fixed[j], sizes.body_joint * _ONE, BODY_COLORS[j], -1, cv2.LINE_8, _SHIFT)


def _draw_hand(canvas: np.ndarray, fixed: list, visible: np.ndarray, edges, joints, sizes: _Sizes) -> None:
    for (a, b), color in zip(edges, HAND_EDGE_COLORS):
        if visible[a] and visible[b]:
            cv2.line(canvas, fixed[a], fixed[b], color, sizes.hand_line, cv2.LINE_8, _SHIFT)
    for j in joints:
        if visible[j]:
            cv2.circle(canvas, fixed[j], sizes.hand_joint * _ONE, HAND_JOINT_COLOR, -1, cv2.LINE_8, _SHIFT)


def _draw_face(canvas: np.ndarray, fixed: list, visible: np.ndarray, sizes: _Sizes, mouth: bool) -> None:
    for j in FACE_POINTS if mouth else _FACE_WITHOUT_MOUTH:
        if visible[j]:
            cv2.circle(canvas, fixed[j], sizes.face_dot * _ONE, FACE_COLOR, -1, cv2.LINE_8, _SHIFT)


def _draw(
    canvas: np.ndarray,
    keypoints: np.ndarray,
    visible: np.ndarray,
    sizes: _Sizes,
    draw_face: bool,
    draw_hands: bool,
    mouth: bool = True,
) -> None:
    """Draw one pose into ``canvas`` (H, W, 3) uint8, in ControlNet's order: body, hands, face."""
    xy = np.clip(keypoints.astype(np.float64), -_COORD_LIMIT, _COORD_LIMIT)  # (K, 2)
    fixed = [tuple(p) for p in np.rint(xy * _ONE).astype(np.int64).tolist()]  # OpenCV wants Python int tuples
    _draw_body(canvas, xy, fixed, visible, sizes)
    if draw_hands:
        _draw_hand(canvas, fixed, visible, LEFT_HAND_EDGES, LEFT_HAND, sizes)
        _draw_hand(canvas, fixed, visible, RIGHT_HAND_EDGES, RIGHT_HAND, sizes)
    if draw_face:
        _draw_face(canvas, fixed, visible, sizes, mouth)


def _visibility(keypoints: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """(..., K) bool: score above threshold and finite coordinates; legs never count (spec §2)."""
    visible = (scores > threshold) & np.isfinite(keypoints).all(axis=-1)
    visible[..., list(LEGS)] = False
    return visible


# ---------------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------------
def render_pose(
    keypoints: np.ndarray,
    scores: np.ndarray,
    width: int,
    height: int,
    threshold: float = VISIBILITY_THRESHOLD,
    draw_face: bool = True,
    draw_hands: bool = True,
    mouth: bool = True,
) -> np.ndarray:
    """Render one pose as an OpenPose/ControlNet-style frame.

    A point is drawn if its score is > ``threshold``; a limb or hand edge only if both of its ends are. Leg limbs and
    joints (9, 10, 12, 13) and the feet are never drawn.

    Args:
        keypoints: (134, 2) pixel coordinates (x right, y down) in an image of ``width`` x ``height``.
        scores: (134,) detector confidences in [0, 1].
        width, height: output size in pixels; strokes scale with ``min(width, height) / 512``.
        threshold: visibility threshold (spec: 0.3).
        draw_face: draw the 68 face landmarks as white dots.
        draw_hands: draw the two hand skeletons.
        mouth: with ``draw_face``, also draw the landmarks that move when the mouth opens: the jaw line and the
            lips (:data:`MOUTH_POINTS`, keypoints 24-40 and 72-91). False leaves the mouth to the audio (stage II's
            ``pose_mouth`` setting, docs/stage2.md).

    Returns:
        (height, width, 3) uint8 RGB frame.

    Raises:
        MmgtError: wrong array shapes or a non-positive size.
    """
    keypoints = np.asarray(keypoints, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if keypoints.shape != (NUM_KEYPOINTS, 2) or scores.shape != (NUM_KEYPOINTS,):
        raise MmgtError(
            f"render_pose: expected keypoints ({NUM_KEYPOINTS}, 2) and scores ({NUM_KEYPOINTS},), "
            f"got {keypoints.shape} and {scores.shape}"
        )
    _check_size(width, height)
    canvas = np.zeros((int(height), int(width), 3), dtype=np.uint8)
    visible = _visibility(keypoints, scores, threshold)
    _draw(canvas, keypoints, visible, _sizes(int(width), int(height)), draw_face, draw_hands, mouth)
    return canvas


def iter_pose_frames(
    pose: PoseSequence, width: int | None = None, height: int | None = None, mouth: bool = True
) -> Iterator[np.ndarray]:
    """Yield the rendered frames of ``pose`` one at a time (constant memory, for long videos).

    Args:
        pose: the pose sequence.
        width, height: output size; ``None`` keeps the pose's size, anything else rescales the coordinates.
        mouth: draw the jaw-line and lip landmarks (:data:`MOUTH_POINTS`).

    Yields:
        (H, W, 3) uint8 RGB frames, one per pose frame.
    """
    pose = pose_at_size(pose, width, height)
    sizes = _sizes(pose.width, pose.height)
    visible = _visibility(pose.keypoints, pose.scores, VISIBILITY_THRESHOLD)  # (F, K)
    for f in range(pose.num_frames):
        canvas = np.zeros((pose.height, pose.width, 3), dtype=np.uint8)
        _draw(canvas, pose.keypoints[f], visible[f], sizes, draw_face=True, draw_hands=True, mouth=mouth)
        yield canvas


def render_pose_sequence(
    pose: PoseSequence, width: int | None = None, height: int | None = None, mouth: bool = True
) -> np.ndarray:
    """Render every frame of ``pose``.

    Args:
        pose: the pose sequence.
        width, height: output size; ``None`` keeps the pose's size, anything else rescales the coordinates.
        mouth: draw the jaw-line and lip landmarks (:data:`MOUTH_POINTS`).

    Returns:
        (F, H, W, 3) uint8 RGB frames.
    """
    pose = pose_at_size(pose, width, height)
    sizes = _sizes(pose.width, pose.height)
    visible = _visibility(pose.keypoints, pose.scores, VISIBILITY_THRESHOLD)  # (F, K)
    frames = np.zeros((pose.num_frames, pose.height, pose.width, 3), dtype=np.uint8)
    for f in range(pose.num_frames):
        _draw(frames[f], pose.keypoints[f], visible[f], sizes, draw_face=True, draw_hands=True, mouth=mouth)
    return frames

"""Converters from other keypoint layouts to the 134-point mmgt layout (spec §2; tables in docs/keypoints.md).

Every converter returns ``(keypoints (F, 134, 2) float32 px, scores (F, 134) float32)``; points the source layout does
not have get coordinates 0 and score 0, so they are invisible (score <= 0.3) everywhere downstream.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmgt.constants import BODY_INDEX, FACE, FEET, FPS, LEFT_HAND, NUM_KEYPOINTS, RIGHT_HAND, VISIBILITY_THRESHOLD
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError

# ---------------------------------------------------------------------------------------------------------------------
# COCO-WholeBody 133 (DWPose output)
# ---------------------------------------------------------------------------------------------------------------------
# COCO-17 body index -> OpenPose-18 body index (the neck, OpenPose 1, has no COCO source: it is inserted).
COCO_TO_OPENPOSE: tuple[int, ...] = (
    0,  # nose
    15, 14,  # left eye, right eye
    17, 16,  # left ear, right ear
    5, 2,  # left shoulder, right shoulder
    6, 3,  # left elbow, right elbow
    7, 4,  # left wrist, right wrist
    11, 8,  # left hip, right hip
    12, 9,  # left knee, right knee
    13, 10,  # left ankle, right ankle
)  # fmt: skip
# The inverse: OpenPose-18 index -> COCO-17 index (-1 for the inserted neck).
OPENPOSE_FROM_COCO: tuple[int, ...] = tuple(
    COCO_TO_OPENPOSE.index(op) if op in COCO_TO_OPENPOSE else -1 for op in range(18)
)
NUM_COCO_WHOLEBODY = 133
# COCO-WholeBody ranges after the 17 body points; each maps onto one contiguous mmgt group, in the same order.
COCO_WHOLEBODY_PARTS: tuple[tuple[range, tuple[int, ...]], ...] = (
    (range(17, 23), FEET),  # left big toe, small toe, heel; right big toe, small toe, heel
    (range(23, 91), FACE),  # 68 face landmarks (iBUG order)
    (range(91, 112), LEFT_HAND),
    (range(112, 133), RIGHT_HAND),
)

# ---------------------------------------------------------------------------------------------------------------------
# MediaPipe Holistic (pose 33 + face mesh 468 + two 21-point hands)
# ---------------------------------------------------------------------------------------------------------------------
# OpenPose-18 body index -> MediaPipe pose landmark index (the neck, OpenPose 1, is inserted).
MEDIAPIPE_POSE_TO_OPENPOSE: dict[int, int] = {
    0: 0,  # nose
    2: 12, 3: 14, 4: 16,  # right shoulder, elbow, wrist
    5: 11, 6: 13, 7: 15,  # left shoulder, elbow, wrist
    8: 24, 9: 26, 10: 28,  # right hip, knee, ankle
    11: 23, 12: 25, 13: 27,  # left hip, knee, ankle
    14: 5, 15: 2,  # right eye, left eye (the eye centres, not the inner/outer corners)
    16: 8, 17: 7,  # right ear, left ear
}  # fmt: skip
# mmgt foot index -> MediaPipe pose landmark index. MediaPipe's "foot index" is the tip of the big toe; it has no
# small toe, so FEET[1] and FEET[4] stay at score 0.
MEDIAPIPE_POSE_TO_FEET: dict[int, int] = {FEET[0]: 31, FEET[2]: 29, FEET[3]: 32, FEET[5]: 30}

# iBUG-68 landmark j -> MediaPipe face-mesh vertex. Contours come from the mesh's own FACEMESH_* connection lists;
# along each contour the vertex nearest the iBUG point's arc-length position was taken (docs/keypoints.md, rendered
# and checked on skimage's astronaut). Subject-right points (iBUG 0-7, 17-21, 31-32, 36-41, 48-50, ...) sit on the
# image left, as in iBUG.
FACE_MESH_TO_IBUG68: tuple[int, ...] = (
    # jaw 0-16: face oval from the right ear-level point (127) via the chin (152) to the left (356)
    127, 234, 93, 132, 58, 172, 150, 176, 152, 400, 379, 397, 288, 361, 323, 454, 356,
    # brows 17-26: upper brow contour, right brow outer->inner, then left brow inner->outer
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    # nose bridge 27-30: mid-eyes (168) down to the tip; 4 rather than 1 keeps 30 apart from 33 when pitched down
    168, 197, 195, 4,
    # nose base 31-35: right nostril corner (98), subnasale (2), left nostril corner (327)
    98, 97, 2, 326, 327,
    # right eye 36-41: outer corner, upper lid x2, inner corner, lower lid x2
    33, 160, 158, 133, 153, 144,
    # left eye 42-47: inner corner, upper lid x2, outer corner, lower lid x2
    362, 385, 387, 263, 373, 380,
    # outer lips 48-59: right corner, upper contour, left corner, lower contour
    61, 39, 37, 0, 267, 269, 291, 321, 314, 17, 84, 91,
    # inner lips 60-67: right inner corner, upper inner contour, left inner corner, lower inner contour
    78, 81, 13, 311, 308, 402, 14, 178,
)  # fmt: skip
NUM_FACE_MESH = 468  # 478 with refine_face_landmarks (10 iris points appended); the table uses the first 468

# ---------------------------------------------------------------------------------------------------------------------
# PATS (Ahuja et al. 2020): 52 upper-body joints, neck-relative, 15 fps (spec §8.1)
# ---------------------------------------------------------------------------------------------------------------------
# Joint order from chahuja/pats data/skeleton.py (Skeleton2D.joint_names): neck; right shoulder, elbow, wrist; left
# shoulder, elbow, wrist; nose, right eye, left eye; 21 left-hand joints; 21 right-hand joints.
NUM_PATS_JOINTS = 52
PATS_FPS = 15
PATS_TO_MMGT: tuple[int, ...] = (
    BODY_INDEX["neck"],
    BODY_INDEX["right_shoulder"], BODY_INDEX["right_elbow"], BODY_INDEX["right_wrist"],
    BODY_INDEX["left_shoulder"], BODY_INDEX["left_elbow"], BODY_INDEX["left_wrist"],
    BODY_INDEX["nose"], BODY_INDEX["right_eye"], BODY_INDEX["left_eye"],
    *LEFT_HAND,  # PATS hand = root + 4 joints each for thumb, index, middle, ring, little = OpenPose hand order
    *RIGHT_HAND,
)  # fmt: skip
PATS_SHOULDERS = (1, 4)  # right, left shoulder in PATS order


# ---------------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------------
def _as_frames(keypoints, scores, num_points: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``(F, N, 2)``/``(F, N)`` or a single ``(N, 2)``/``(N,)`` frame; returns float32 arrays with F."""
    kp = np.asarray(keypoints, dtype=np.float32)
    sc = np.asarray(scores, dtype=np.float32)
    if kp.ndim == 2:
        kp, sc = kp[None], sc[None]
    if kp.ndim != 3 or kp.shape[1:] != (num_points, 2):
        raise MmgtError(
            f"{name}: keypoints must have shape (F, {num_points}, 2) or ({num_points}, 2), got {np.shape(keypoints)}"
        )
    if sc.shape != kp.shape[:2]:
        raise MmgtError(f"{name}: scores must have shape {kp.shape[:2]}, got {np.shape(scores)}")
    if not (np.isfinite(kp).all() and np.isfinite(sc).all()):
        raise MmgtError(f"{name}: keypoints and scores must be finite")
    return kp, sc


def _empty(num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.zeros((num_frames, NUM_KEYPOINTS, 2), dtype=np.float32),
        np.zeros((num_frames, NUM_KEYPOINTS), dtype=np.float32),
    )


def _insert_neck(kp: np.ndarray, sc: np.ndarray) -> None:
    """Neck (OpenPose 1) = mean of the shoulders; its score = the smaller shoulder score (in place)."""
    shoulders = [BODY_INDEX["right_shoulder"], BODY_INDEX["left_shoulder"]]
    neck = BODY_INDEX["neck"]
    kp[:, neck] = kp[:, shoulders].mean(axis=1)
    # min, not mean: the neck is visible exactly when both shoulders are, which is DWPose's own rule (it sets the
    # neck score to 1 iff both shoulder scores > 0.3); min keeps a graded confidence instead of a 0/1 flag.
    sc[:, neck] = sc[:, shoulders].min(axis=1)


def to_pose_sequence(
    keypoints: np.ndarray, scores: np.ndarray, width: int, height: int, fps: float = FPS
) -> PoseSequence:
    """Wrap a converter's output ``(F, 134, 2)`` px and ``(F, 134)`` scores in a :class:`PoseSequence`."""
    return PoseSequence(keypoints, scores, width, height, fps)


# ---------------------------------------------------------------------------------------------------------------------
# COCO-WholeBody
# ---------------------------------------------------------------------------------------------------------------------
def from_coco_wholebody(keypoints: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO-WholeBody 133 (DWPose order) -> mmgt 134.

    Body via :data:`COCO_TO_OPENPOSE` with the neck inserted (mean of the shoulders, score = min of their scores);
    feet 17-22 -> 18-23, face 23-90 -> 24-91, left hand 91-111 -> 92-112, right hand 112-132 -> 113-133.

    Args:
        keypoints: (F, 133, 2) or (133, 2) pixel coordinates.
        scores: (F, 133) or (133,) detector scores.

    Returns:
        (F, 134, 2) float32 pixel coordinates and (F, 134) float32 scores (F = 1 for a single frame).
    """
    src_kp, src_sc = _as_frames(keypoints, scores, NUM_COCO_WHOLEBODY, "COCO-WholeBody")
    kp, sc = _empty(len(src_kp))
    kp[:, COCO_TO_OPENPOSE] = src_kp[:, :17]
    sc[:, COCO_TO_OPENPOSE] = src_sc[:, :17]
    _insert_neck(kp, sc)
    for src, dst in COCO_WHOLEBODY_PARTS:
        kp[:, dst] = src_kp[:, src]
        sc[:, dst] = src_sc[:, src]
    return kp, sc


# ---------------------------------------------------------------------------------------------------------------------
# MediaPipe Holistic
# ---------------------------------------------------------------------------------------------------------------------
def _landmark_array(landmarks, name: str, sizes: Sequence[int]) -> np.ndarray | None:
    """NormalizedLandmarkList | (N, 3|4) array | None -> (N, 4) float32 [x, y, z, visibility] or None."""
    if landmarks is None:
        return None
    if hasattr(landmarks, "landmark"):  # a mediapipe NormalizedLandmarkList
        arr = np.array([[p.x, p.y, p.z, p.visibility] for p in landmarks.landmark], dtype=np.float32)
    else:
        arr = np.asarray(landmarks, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] not in (3, 4):
            raise MmgtError(f"{name}: expected an (N, 3) or (N, 4) landmark array, got shape {arr.shape}")
        if arr.shape[1] == 3:  # no visibility column: a present landmark counts as fully visible
            arr = np.concatenate([arr, np.ones((len(arr), 1), dtype=np.float32)], axis=1)
    if len(arr) not in sizes:
        raise MmgtError(f"{name}: expected {' or '.join(map(str, sizes))} landmarks, got {len(arr)}")
    if not np.isfinite(arr).all():
        raise MmgtError(f"{name}: landmarks must be finite")
    return arr


def from_mediapipe_holistic(
    pose_landmarks,
    face_landmarks,
    left_hand_landmarks,
    right_hand_landmarks,
    width: int,
    height: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One MediaPipe Holistic result -> mmgt 134 (one frame).

    Each landmark argument is a mediapipe ``NormalizedLandmarkList``, an (N, 3|4) array of normalised
    [x, y, z(, visibility)] or None (not detected). ``left_hand_landmarks`` is the subject's left hand (Holistic
    derives hands from the body pose), which is mmgt's LEFT_HAND.

    Scores: body and feet use the landmark visibility (1.0 for 3-column arrays); the neck gets the smaller shoulder
    visibility; face points get 1.0 when a face was found (the mesh has no per-point confidence); hand points get
    1.0 when the hand was found. Small toes and everything not detected get 0.

    Args:
        pose_landmarks: 33 pose landmarks or None.
        face_landmarks: 468 (or 478 with iris refinement) face-mesh landmarks or None.
        left_hand_landmarks, right_hand_landmarks: 21 landmarks each, or None.
        width, height: image size in pixels; normalised coordinates are scaled by it.

    Returns:
        (1, 134, 2) float32 pixel coordinates and (1, 134) float32 scores.
    """
    if int(width) <= 0 or int(height) <= 0:
        raise MmgtError(f"image size must be positive, got {width}x{height}")
    size = np.array([width, height], dtype=np.float32)
    kp, sc = _empty(1)

    pose = _landmark_array(pose_landmarks, "pose_landmarks", (33,))
    if pose is not None:
        body = list(MEDIAPIPE_POSE_TO_OPENPOSE)
        src = list(MEDIAPIPE_POSE_TO_OPENPOSE.values())
        kp[0, body], sc[0, body] = pose[src, :2] * size, pose[src, 3]
        feet, src = list(MEDIAPIPE_POSE_TO_FEET), list(MEDIAPIPE_POSE_TO_FEET.values())
        kp[0, feet], sc[0, feet] = pose[src, :2] * size, pose[src, 3]
        _insert_neck(kp, sc)

    face = _landmark_array(face_landmarks, "face_landmarks", (NUM_FACE_MESH, NUM_FACE_MESH + 10))
    if face is not None:
        kp[0, FACE] = face[list(FACE_MESH_TO_IBUG68), :2] * size
        sc[0, FACE] = 1.0

    for arg, name, group in (
        (left_hand_landmarks, "left_hand_landmarks", LEFT_HAND),
        (right_hand_landmarks, "right_hand_landmarks", RIGHT_HAND),
    ):
        hand = _landmark_array(arg, name, (21,))
        if hand is not None:  # MediaPipe hand order (wrist, thumb 1-4, ..., pinky 1-4) = OpenPose hand order
            kp[0, group] = hand[:, :2] * size
            sc[0, group] = 1.0
    return kp, sc


# ---------------------------------------------------------------------------------------------------------------------
# PATS
# ---------------------------------------------------------------------------------------------------------------------
def pats_joints_from_flat(flat: np.ndarray) -> np.ndarray:
    """PATS ``pose/data`` rows (F, 104) = [x_0..x_51, y_0..y_51] -> (F, 52, 2).

    The (F, 2, 52) layout is how the PATS authors' own renderer reads the rows (mix-stage ``view(..., 2, -1)``).
    """
    flat = np.asarray(flat, dtype=np.float32)
    if flat.ndim != 2 or flat.shape[1] != 2 * NUM_PATS_JOINTS:
        raise MmgtError(f"PATS pose/data: expected shape (F, {2 * NUM_PATS_JOINTS}), got {flat.shape}")
    return flat.reshape(len(flat), 2, NUM_PATS_JOINTS).transpose(0, 2, 1).copy()


def _resample_linear(kp: np.ndarray, sc: np.ndarray, fps: float, target_fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample (F, J, 2)/(F, J) from ``fps`` to ``target_fps``: coordinates linearly, scores nearest.

    Output frame i is at time i / target_fps; there are ceil(F * target_fps / fps) of them (15 -> 25 for one second).
    A coordinate is only interpolated between two visible samples; otherwise the nearest sample is copied, so an
    undetected joint (stored at the origin) never drags a visible one.
    """
    num_in = len(kp)
    num_out = int(np.ceil(round(num_in * target_fps / fps, 6)))
    pos = np.minimum(np.arange(num_out) * (fps / target_fps), num_in - 1)  # fractional source frame
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, num_in - 1)
    w = (pos - lo)[:, None, None].astype(np.float32)
    nearest = np.minimum(np.floor(pos + 0.5).astype(int), num_in - 1)
    out_kp = (1.0 - w) * kp[lo] + w * kp[hi]
    both_visible = (sc[lo] > VISIBILITY_THRESHOLD) & (sc[hi] > VISIBILITY_THRESHOLD)
    out_kp = np.where(both_visible[..., None], out_kp, kp[nearest])
    return out_kp.astype(np.float32), sc[nearest]


def from_pats(
    data: np.ndarray,
    confidence: np.ndarray | None,
    width: int,
    height: int,
    neck_xy: tuple[float, float] | None = None,
    scale: float | None = None,
    fps: float = PATS_FPS,
    target_fps: float = FPS,
) -> tuple[np.ndarray, np.ndarray]:
    """PATS neck-relative joints -> mmgt 134 pixels at ``target_fps``.

    PATS joint 0 (neck) is the origin; its stored value is ignored (the PATS renderer zeroes it too). Each joint is
    placed at ``neck_xy + scale * data`` (PATS coordinates are y-down like OpenPose's), then the sequence is resampled
    from ``fps`` to ``target_fps``. Points PATS does not have (ears, hips, legs, feet, the 68 face landmarks) get
    score 0; nose and eyes are body points 0/14/15.

    Args:
        data: (F, 52, 2) or (52, 2) PATS ``pose/data`` joints (see :func:`pats_joints_from_flat`).
        confidence: (F, 52) or (52,) PATS ``pose/confidence``, or None for all 1.
        width, height: target image size in pixels.
        neck_xy: pixel position of the neck; default (width / 2, 0.35 * height).
        scale: pixels per PATS unit; default makes the median shoulder width 0.3 * width.
        fps: frame rate of ``data`` (PATS: 15).
        target_fps: output frame rate.

    Returns:
        (F', 134, 2) float32 pixel coordinates and (F', 134) float32 scores, F' = ceil(F * target_fps / fps).
    """
    if confidence is None:
        confidence = np.ones(np.shape(data)[:-1], dtype=np.float32)
    joints, conf = _as_frames(data, confidence, NUM_PATS_JOINTS, "PATS")
    if int(width) <= 0 or int(height) <= 0:
        raise MmgtError(f"PATS: image size must be positive, got {width}x{height}")
    if not (fps > 0 and target_fps > 0):
        raise MmgtError(f"PATS: fps and target_fps must be positive, got {fps} and {target_fps}")
    joints = joints - joints[:, :1]  # neck at the origin, whatever the file stores there
    if scale is None:
        scale = _default_pats_scale(joints, width)
    if not (np.isfinite(scale) and scale > 0):
        raise MmgtError(f"PATS: scale must be a positive number of pixels per unit, got {scale}")
    neck = np.array(neck_xy if neck_xy is not None else (width / 2.0, 0.35 * height), dtype=np.float32)
    px = neck + np.float32(scale) * joints  # (F, 52, 2)
    px, conf = _resample_linear(px, conf, fps, target_fps)
    kp, sc = _empty(len(px))
    kp[:, PATS_TO_MMGT], sc[:, PATS_TO_MMGT] = px, conf
    return kp, sc


def _default_pats_scale(joints: np.ndarray, width: int) -> float:
    """Pixels per PATS unit that make the median shoulder width (right-left shoulder distance) 0.3 * width."""
    shoulder = np.linalg.norm(joints[:, PATS_SHOULDERS[0]] - joints[:, PATS_SHOULDERS[1]], axis=-1)
    shoulder = shoulder[shoulder > 0]
    if shoulder.size == 0:
        raise MmgtError("PATS: cannot choose a default scale, the shoulders coincide in every frame; pass scale=")
    return float(0.3 * width / np.median(shoulder))

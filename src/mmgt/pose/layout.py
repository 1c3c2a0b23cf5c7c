"""Skeleton topology of the 134-keypoint layout: limb lists and drawing colours (derived from ``constants``)."""

from __future__ import annotations

from mmgt.constants import BODY_INDEX, FACE, LEFT_HAND, LEGS, RIGHT_HAND


def _limb(a: str, b: str) -> tuple[int, int]:
    return BODY_INDEX[a], BODY_INDEX[b]


# OpenPose-18 body limbs in the order ControlNet/OpenPose draws them (each has its own colour below).
BODY_LIMBS: tuple[tuple[int, int], ...] = (
    _limb("neck", "right_shoulder"),
    _limb("neck", "left_shoulder"),
    _limb("right_shoulder", "right_elbow"),
    _limb("right_elbow", "right_wrist"),
    _limb("left_shoulder", "left_elbow"),
    _limb("left_elbow", "left_wrist"),
    _limb("neck", "right_hip"),
    _limb("right_hip", "right_knee"),
    _limb("right_knee", "right_ankle"),
    _limb("neck", "left_hip"),
    _limb("left_hip", "left_knee"),
    _limb("left_knee", "left_ankle"),
    _limb("neck", "nose"),
    _limb("nose", "right_eye"),
    _limb("right_eye", "right_ear"),
    _limb("nose", "left_eye"),
    _limb("left_eye", "left_ear"),
)

# Limbs that touch a leg keypoint; legs are not drawn (spec §2: knees/ankles zeroed before rendering).
LEG_LIMBS = tuple(i for i, (a, b) in enumerate(BODY_LIMBS) if a in LEGS or b in LEGS)

# The 18 OpenPose colours (RGB); body joint j and limb j use colour j.
BODY_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip

# 21-point hand: wrist 0; thumb 1-4, index 5-8, middle 9-12, ring 13-16, little 17-20.
HAND_EDGES_LOCAL: tuple[tuple[int, int], ...] = tuple(
    (0 if j == 0 else base + j, base + j + 1) for base in (0, 4, 8, 12, 16) for j in range(4)
)
LEFT_HAND_EDGES = tuple((LEFT_HAND[a], LEFT_HAND[b]) for a, b in HAND_EDGES_LOCAL)
RIGHT_HAND_EDGES = tuple((RIGHT_HAND[a], RIGHT_HAND[b]) for a, b in HAND_EDGES_LOCAL)
FACE_POINTS = FACE  # drawn as white dots

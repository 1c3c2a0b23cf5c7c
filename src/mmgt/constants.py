"""Facts shared by every part of mmgt: rates, the 134-keypoint layout, mask and normalisation constants.

Each fact lives here once (STYLE §4.1 "one definition per fact"). Skeleton topology (limbs, colours) is derived from
these groups in :mod:`mmgt.pose.layout`.
"""

from __future__ import annotations

import math

# ---------------------------------------------------------------------------------------------------------------------
# Rates
# ---------------------------------------------------------------------------------------------------------------------
FPS = 25  # poses, audio features and video all run at 25 fps (spec §1)
SAMPLE_RATE = 16_000  # both speech encoders take 16 kHz mono (spec §1)
MUX_SAMPLE_RATE = 48_000  # output audio tracks: keeps up to 24 kHz of the original; the models read 16 kHz
LIBROSA_HOP = 512  # EDGE-style music features: sr = FPS * hop = 12,800 Hz (spec §3.2)
LIBROSA_SAMPLE_RATE = FPS * LIBROSA_HOP

# Stage-2 samplers over the one saved schedule (built by mmgt.diffusion.stage2.make_stage2_sampler; CLI --sampler)
VIDEO_SAMPLERS = ("ddim", "dpmpp_2m", "unipc")


def num_frames_for(num_samples: int, sample_rate: int, fps: int = FPS) -> int:
    """Number of video/pose frames covering ``num_samples`` of audio: exactly ceil(duration * fps)."""
    # Integer arithmetic: float durations such as 0.1 s would otherwise round up one frame too many.
    return -(-int(num_samples) * fps // int(sample_rate))


def duration_frames(duration_s: float, fps: int = FPS) -> int:
    """ceil(duration_s * fps), robust to float noise (3.2 s -> 80, not 81)."""
    return int(math.ceil(round(duration_s * fps, 6)))


# ---------------------------------------------------------------------------------------------------------------------
# The 134-keypoint whole-body layout (spec §2): COCO-WholeBody 133 + an inserted neck, body in OpenPose-18 order.
# ---------------------------------------------------------------------------------------------------------------------
NUM_KEYPOINTS = 134

BODY = tuple(range(0, 18))  # OpenPose-18 body
FEET = tuple(range(18, 24))  # 6 foot points (big toe, small toe, heel; left then right)
FACE = tuple(range(24, 92))  # 68 face landmarks (iBUG-68 order)
LEFT_HAND = tuple(range(92, 113))  # 21 points: wrist, then thumb/index/middle/ring/little, 4 each
RIGHT_HAND = tuple(range(113, 134))
HANDS = LEFT_HAND + RIGHT_HAND

FACE_OFFSET = FACE[0]  # face landmark j (0..67) sits at keypoint FACE_OFFSET + j
LIPS = tuple(FACE_OFFSET + j for j in range(48, 68))  # face 48-67 -> keypoints 72-91
EYES = tuple(FACE_OFFSET + j for j in range(36, 48))  # face 36-47 -> keypoints 60-71
JAW = tuple(FACE_OFFSET + j for j in range(0, 17))
NOSE = tuple(FACE_OFFSET + j for j in range(27, 36))

# OpenPose-18 body names, in index order.
BODY_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
BODY_INDEX = {name: i for i, name in enumerate(BODY_NAMES)}
LEGS = (9, 10, 12, 13)  # knees and ankles: zeroed before rendering (spec §2)

# Named index groups: the single table used by masks, renderers, converters and models.
KEYPOINT_GROUPS: dict[str, tuple[int, ...]] = {
    "body": BODY,
    "feet": FEET,
    "face": FACE,
    "lips": LIPS,
    "eyes": EYES,
    "left_hand": LEFT_HAND,
    "right_hand": RIGHT_HAND,
}

# A keypoint is visible if its detector score exceeds this (spec §2, §4.1).
VISIBILITY_THRESHOLD = 0.3

# ---------------------------------------------------------------------------------------------------------------------
# Normalisation (spec §2): v -> 2 (v + 200) / 1000 - 1 maps pixels [-200, 800] of the 512 canvas to [-1, 1].
# ---------------------------------------------------------------------------------------------------------------------
CANVAS_SIZE = 512
NORM_OFFSET = 200.0
NORM_RANGE = 1000.0

# ---------------------------------------------------------------------------------------------------------------------
# Motion masks (spec §4.2-4.3)
# ---------------------------------------------------------------------------------------------------------------------
MASK_WORK_SIZE = 64  # masks are resized to 64x64 before blurring (at 512^2; scales with the latent size)
BLUR_KERNEL_FACE_HANDS = 31
BLUR_KERNEL_LIPS = 21
BLUR_KERNEL_HANDS = 21
LATENT_DOWNSAMPLE = 8  # VAE factor: UNet levels are H/8, H/16, H/32, H/64
NUM_MASK_LEVELS = 4
# The vocabulary of the masks, everywhere (code, configs, saved folders, docs):
MOTION_MASKS = ("lips", "face_hands", "hands")  # the binary motion masks V^l, V^{f+h}, V^h (spec §4.2)
# MM-HAA's branches, in mask-channel order; each reads one mask: global 1 - V^l, face_hands V^{f+h}, lips V^l
# (spec §4.4, variant "paper"). Their per-branch weights are the "branch weights".
BRANCHES = ("global", "face_hands", "lips")

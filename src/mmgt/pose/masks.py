"""THE motion-mask definition (spec §4.2-4.4). Training data, pipelines and evaluation all call this module.

Motion masks mark the regions whose motion is driven by speech: the lips (V^l), the face plus both hands (V^{f+h})
and the hands alone (V^h). They are pure geometry: per frame, the tight axis-aligned box of the visible keypoints of
each region, filled. Stage II reads them through :func:`branch_masks`, which blurs, normalises and resizes them to the
four UNet levels and orders them as the MM-HAA branches (1 - V^l, V^{f+h}, V^l) (spec §4.4, variant "paper"); the
other :data:`MASK_VARIANTS` change only the global branch, to reproduce how the authors' release feeds its weights.

Conventions:

* Pixel ``i`` is centred on coordinate ``i`` (OpenCV convention, as in :mod:`mmgt.pose.render`), so the pixel that
  contains a point at ``x`` is ``round(x)``; halves round up (``floor(x + 0.5)``).
* A point counts if its score is > 0.3 and both of its coordinates are > 0 (the official code marks missing points
  with 0 or -1; spec §4.2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from mmgt.constants import (
    BLUR_KERNEL_FACE_HANDS,
    BLUR_KERNEL_HANDS,
    BLUR_KERNEL_LIPS,
    BRANCHES,
    FACE,
    LATENT_DOWNSAMPLE,
    LEFT_HAND,
    LIPS,
    MASK_WORK_SIZE,
    NUM_KEYPOINTS,
    NUM_MASK_LEVELS,
    RIGHT_HAND,
    VISIBILITY_THRESHOLD,
)
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError
from mmgt.pose.render import pose_at_size

# The keypoint groups whose boxes make up the masks.
BOX_REGIONS: dict[str, tuple[int, ...]] = {
    "lips": LIPS,
    "face": FACE,
    "left_hand": LEFT_HAND,
    "right_hand": RIGHT_HAND,
}

# The MM-HAA global branch of each mask variant (spec §4.4), from the processed lips (l), face+hands (fh) and hands (h)
# masks of one level; the face_hands and lips branches are fh and l in every variant. "paper" is mmgt's; the others
# are what the authors' code feeds its weights (names as in spec §4.4's table).
MASK_VARIANTS: dict[str, str] = {
    "paper": "1 - l",  # the paper's figure; mmgt's training, inference and pose-only mode
    "official_audio2vid": "1 + l",  # the release's audio-to-video demo (scripts/audio2vid.py): values in [1, 2]
    "official_train": "h",  # the release's stage-II training data (the hands mask in the "full" slot)
    "official_pats": "1 - fh + l",  # the release's PATS dataset variant
    "official_pose2vid": "clip(1 - fh + l + h, 0, 1)",  # the release's pose-to-video script
    # Ablation (docs/ablations.md): no motion masks at all, every branch's mask is 1 (the face_hands and lips
    # channels too). With branch weights (1, 0, 0) MM-HAA becomes one plain, ungated audio cross-attention.
    "ungated": "1 (and fh = l = 1)",
}
_NEEDS_HANDS = ("official_train", "official_pose2vid")

_FRAME_CHUNK = 64  # frames per chunk in branch_masks: bounds the full-resolution binary masks held at once


@dataclass(frozen=True, eq=False)
class MotionMasks:
    """Binary motion masks of a pose sequence at one resolution (spec §4.2).

    Attributes:
        lips: (F, H, W) bool, V^l: the box of the lip points 72-91.
        face_hands: (F, H, W) bool, V^{f+h}: the face box (points 24-91) united with one box per hand.
        hands: (F, H, W) bool, V^h: the two hand boxes.
    """

    lips: np.ndarray
    face_hands: np.ndarray
    hands: np.ndarray

    def __post_init__(self) -> None:
        shape = np.shape(self.lips)
        for name in ("lips", "face_hands", "hands"):
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.dtype != bool or value.ndim != 3 or value.shape != shape:
                got = f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
                raise MmgtError(f"MotionMasks.{name} must be a bool (F, H, W) array like lips {shape}, got {got}")

    @property
    def num_frames(self) -> int:
        return self.lips.shape[0]

    @property
    def height(self) -> int:
        return self.lips.shape[1]

    @property
    def width(self) -> int:
        return self.lips.shape[2]


# ---------------------------------------------------------------------------------------------------------------------
# Boxes and binary masks
# ---------------------------------------------------------------------------------------------------------------------
def region_boxes(
    keypoints: np.ndarray, scores: np.ndarray, threshold: float = VISIBILITY_THRESHOLD, margin: float = 0.0
) -> dict[str, np.ndarray]:
    """Per-frame tight boxes of the visible points of each region (spec §4.2).

    The float extent [min, max] of the visible points is grown by ``margin`` times its size on each side, then each
    bound is rounded to the pixel containing it (``floor(v + 0.5)``): the box is the inclusive pixel range
    ``[x0, x1] x [y0, y1]`` and contains the pixel of every visible point. Bounds are not clipped to any image.

    Args:
        keypoints: (F, 134, 2) pixel coordinates.
        scores: (F, 134) confidences; a point is visible if its score is > ``threshold``.
        threshold: visibility threshold (spec: 0.3).
        margin: fraction of the box width (height) added left and right (top and bottom); 0 = the spec's tight box.

    Returns:
        ``{"lips", "face", "left_hand", "right_hand"}`` -> (F, 4) float64 ``[x0, y0, x1, y1]``; a row is NaN when the
        region has no visible point in that frame.

    Raises:
        MmgtError: wrong shapes or a negative/non-finite margin.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    scores = np.asarray(scores)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (NUM_KEYPOINTS, 2) or scores.shape != keypoints.shape[:2]:
        raise MmgtError(
            f"region_boxes: expected keypoints (F, {NUM_KEYPOINTS}, 2) and scores (F, {NUM_KEYPOINTS}), "
            f"got {keypoints.shape} and {scores.shape}"
        )
    if not (math.isfinite(margin) and margin >= 0):
        raise MmgtError(f"region_boxes: margin must be a finite fraction >= 0, got {margin!r}")
    return {
        name: _tight_boxes(keypoints[:, idx], scores[:, idx] > threshold, margin) for name, idx in BOX_REGIONS.items()
    }


def _tight_boxes(xy: np.ndarray, visible: np.ndarray, margin: float) -> np.ndarray:
    """(F, N, 2) points + (F, N) visibility -> (F, 4) rounded [x0, y0, x1, y1] boxes, NaN rows where none count."""
    # Spec §4.2: points at x <= 0 or y <= 0 are "missing" in the official data, whatever their score.
    ok = visible & (xy > 0).all(axis=-1) & np.isfinite(xy).all(axis=-1)  # (F, N)
    any_ok = ok.any(axis=1)  # (F,)
    lo = np.where(ok[..., None], xy, np.inf).min(axis=1)  # (F, 2)
    hi = np.where(ok[..., None], xy, -np.inf).max(axis=1)
    lo[~any_ok], hi[~any_ok] = 0.0, 0.0  # placeholders, replaced by NaN below (avoids inf - inf)
    pad = margin * (hi - lo)
    boxes = np.floor(np.concatenate([lo - pad, hi + pad], axis=-1) + 0.5)  # (F, 4) inclusive pixel bounds
    boxes[~any_ok] = np.nan
    return boxes


def _fill_boxes(mask: np.ndarray, boxes: np.ndarray) -> None:
    """Set the (F, 4) inclusive boxes (NaN rows = none) in the (F, H, W) bool ``mask``, clipped to the image."""
    height, width = mask.shape[1:]
    for f in np.flatnonzero(~np.isnan(boxes[:, 0])):
        x0, y0, x1, y1 = boxes[f]
        # Clip in float first: boxes wholly outside the image give an empty slice, never a wrapped negative index.
        x0, x1 = int(max(x0, 0)), int(min(x1, width - 1))
        y0, y1 = int(max(y0, 0)), int(min(y1, height - 1))
        if x0 <= x1 and y0 <= y1:
            mask[f, y0 : y1 + 1, x0 : x1 + 1] = True


def motion_masks(
    pose: PoseSequence, width: int | None = None, height: int | None = None, margin: float = 0.0
) -> MotionMasks:
    """Binary motion masks V^l, V^{f+h}, V^h of every frame (spec §4.2).

    Args:
        pose: the pose sequence.
        width, height: mask size; ``None`` keeps the pose's size, anything else rescales the coordinates.
        margin: box margin as a fraction of the box size (see :func:`region_boxes`); 0 = the spec's tight boxes.

    Returns:
        :class:`MotionMasks` of (F, height, width) bool arrays. A region with no visible point adds nothing.
    """
    pose = pose_at_size(pose, width, height)
    boxes = region_boxes(pose.keypoints, pose.scores, VISIBILITY_THRESHOLD, margin)
    shape = (pose.num_frames, pose.height, pose.width)
    lips, face_hands, hands = np.zeros(shape, bool), np.zeros(shape, bool), np.zeros(shape, bool)
    _fill_boxes(lips, boxes["lips"])
    for name in ("face", "left_hand", "right_hand"):
        _fill_boxes(face_hands, boxes[name])
    for name in ("left_hand", "right_hand"):
        _fill_boxes(hands, boxes[name])
    return MotionMasks(lips=lips, face_hands=face_hands, hands=hands)


REGION_MARGIN = 0.2  # loss regions: the face and hand boxes grow by this share of their size per side (hair, fingers)


def face_hand_regions(
    pose: PoseSequence, width: int | None = None, height: int | None = None, margin: float = REGION_MARGIN
) -> np.ndarray:
    """(F, height, width) bool: the face and hand boxes grown by ``margin`` (see :func:`region_boxes`).

    Not a motion mask of the method: the training losses' ``region_weight`` options (VAE, stage 2) weigh these
    pixels more, because at small sizes an unweighted loss spends its capacity on background and torso.
    """
    return motion_masks(pose, width, height, margin).face_hands


def mask_frames_to_uint8(mask: np.ndarray) -> np.ndarray:
    """(F, H, W) bool mask -> (F, H, W, 3) uint8 frames, white (255) inside the region and black (0) outside."""
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise MmgtError(f"mask_frames_to_uint8: expected an (F, H, W) mask, got shape {mask.shape}")
    return np.repeat(np.where(mask != 0, np.uint8(255), np.uint8(0))[..., None], 3, axis=-1)


# ---------------------------------------------------------------------------------------------------------------------
# Stage-II preprocessing (spec §4.3)
# ---------------------------------------------------------------------------------------------------------------------
def mask_level_sizes(height: int, width: int, levels: int = NUM_MASK_LEVELS) -> list[tuple[int, int]]:
    """(h, w) of the mask at each UNet level for an image of ``height`` x ``width``.

    Level 0 is the latent, ``(height // 8, width // 8)`` (the VAE floors); each further level halves it rounding up,
    as the UNet's stride-2 convolutions do, and is at least 1 px. For sizes divisible by 64 these are H/8 .. H/64.
    """
    for name, value in (("height", height), ("width", width)):
        if int(value) != value or value < LATENT_DOWNSAMPLE:
            raise MmgtError(f"mask sizes: image {name} must be an integer >= {LATENT_DOWNSAMPLE}, got {value!r}")
    if int(levels) != levels or levels < 1:
        raise MmgtError(f"mask sizes: levels must be a positive integer, got {levels!r}")
    sizes = [(int(height) // LATENT_DOWNSAMPLE, int(width) // LATENT_DOWNSAMPLE)]
    while len(sizes) < levels:
        h, w = sizes[-1]
        sizes.append((max(1, -(-h // 2)), max(1, -(-w // 2))))
    return sizes


def scaled_blur_kernel(kernel: int, latent_size: int) -> int:
    """The blur kernel for a latent of ``latent_size`` px, given one defined at the 64 px latent of a 512² image.

    ``kernel * latent_size / 64`` rounded to the nearest odd integer, at least 1 (31 -> 7 and 21 -> 5 at 16 px).
    """
    exact = kernel * latent_size / MASK_WORK_SIZE
    return max(1, 2 * math.floor((exact - 1) / 2 + 0.5) + 1)


def blur_sigma(kernel: int) -> float:
    """Gaussian sigma OpenCV derives from an odd kernel size: 0.3 ((k - 1) / 2 - 1) + 0.8 (31 -> 5.0, 21 -> 3.5)."""
    # Passed explicitly: with sigma=0 OpenCV uses fixed binomial tables for k <= 7 instead of this formula.
    return 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8


def _per_frame(op, frames: np.ndarray) -> np.ndarray:
    """Apply a 2D cv2 ``op`` to each (H, W) float32 frame of ``frames`` (F, H, W).

    One frame at a time on purpose: batching frames as channels lets OpenCV pick other SIMD paths, which changes the
    last float bit with the batch, and a frame's masks must not depend on which clip it was computed in.
    """
    return np.stack([op(np.ascontiguousarray(frame)) for frame in frames]).astype(np.float32, copy=False)


def _resize(frames: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    h, w = size
    return _per_frame(lambda x: cv2.resize(x, (w, h), interpolation=interpolation), frames)


def _area_resize(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(F, H, W) bool -> (F, h, w) float32 coverage fractions, frame by frame (no full-size float copy)."""
    # INTER_AREA: each latent pixel becomes the share of its 8x8 image block the box covers. Bilinear sampling
    # would read only 4 of the 64 pixels and make the mask jump by whole latent pixels as a box edge moves.
    h, w = size
    out = np.empty((mask.shape[0], h, w), dtype=np.float32)
    frame = np.empty(mask.shape[1:], dtype=np.float32)
    for f in range(mask.shape[0]):
        np.copyto(frame, mask[f])
        out[f] = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    return out


def _min_max(frames: np.ndarray) -> np.ndarray:
    """Per-frame min-max to [0, 1]; an all-zero frame stays 0 and a constant non-zero frame becomes 1."""
    lo = frames.min(axis=(1, 2), keepdims=True)
    hi = frames.max(axis=(1, 2), keepdims=True)
    span = hi - lo
    scaled = (frames - lo) / np.where(span > 0, span, 1.0)
    return np.where(span > 0, scaled, (hi > 0).astype(frames.dtype)).astype(np.float32)


def _latent_mask(mask: np.ndarray, latent: tuple[int, int], kernel: int) -> np.ndarray:
    """(F, H, W) bool -> (F, h, w) float32 in [0, 1]: area resize to the latent, Gaussian blur, min-max."""
    small = _area_resize(mask, latent)
    sigma = blur_sigma(kernel)
    blurred = _per_frame(lambda x: cv2.GaussianBlur(x, (kernel, kernel), sigma, sigmaY=sigma), small)
    return _min_max(blurred)


def _global_branch(variant: str, lips: np.ndarray, face_hands: np.ndarray, hands: np.ndarray | None) -> np.ndarray:
    """The global branch of ``variant`` (:data:`MASK_VARIANTS`) from one level's processed masks (F, h, w)."""
    if variant == "paper":
        return 1.0 - lips
    if variant == "official_audio2vid":
        return 1.0 + lips
    if variant == "official_train":
        return hands
    if variant == "official_pats":
        return 1.0 - face_hands + lips
    return np.clip(1.0 - face_hands + lips + hands, 0.0, 1.0)  # official_pose2vid


def _pyramid(masks: MotionMasks, sizes: list[tuple[int, int]], variant: str) -> list[np.ndarray]:
    latent = sizes[0]
    # Official kernels are for the 64 px latent; scale them with the shorter latent side so they cover the same
    # fraction of the person at any resolution (the renderer scales its strokes the same way).
    side = min(latent)
    lips = _latent_mask(masks.lips, latent, scaled_blur_kernel(BLUR_KERNEL_LIPS, side))
    face_hands = _latent_mask(masks.face_hands, latent, scaled_blur_kernel(BLUR_KERNEL_FACE_HANDS, side))
    hands = None
    if variant in _NEEDS_HANDS:  # V^h is only processed for the variants that read it
        hands = _latent_mask(masks.hands, latent, scaled_blur_kernel(BLUR_KERNEL_HANDS, side))
    levels = []
    for i, size in enumerate(sizes):
        if i > 0:
            # Bilinear halving level by level: for even sizes this is an exact 2x2 average, so coarse levels are
            # anti-aliased instead of sampling 2 of every 8 latent pixels.
            lips = np.clip(_resize(lips, size, cv2.INTER_LINEAR), 0.0, 1.0)
            face_hands = np.clip(_resize(face_hands, size, cv2.INTER_LINEAR), 0.0, 1.0)
            if hands is not None:
                hands = np.clip(_resize(hands, size, cv2.INTER_LINEAR), 0.0, 1.0)
        # Spec §4.3-4.4 [decision]: the global branch (1 - V^l for "paper") is computed per level from the
        # processed masks.
        if variant == "ungated":  # no motion masks: every branch sees every pixel
            branches = {r: np.ones_like(lips) for r in BRANCHES}
        else:
            branches = {
                "global": _global_branch(variant, lips, face_hands, hands),
                "face_hands": face_hands,
                "lips": lips,
            }
        levels.append(np.stack([branches[r] for r in BRANCHES], axis=1).astype(np.float32))  # (F, R, h, w)
    return levels


def check_mask_variant(variant: str) -> str:
    """``variant`` if it is one of :data:`MASK_VARIANTS`, else a one-line :class:`MmgtError`."""
    if variant not in MASK_VARIANTS:
        raise MmgtError(f"mask variant must be one of {tuple(MASK_VARIANTS)}, got {variant!r}")
    return variant


def mask_pyramid(
    masks: MotionMasks, height: int, width: int, levels: int = NUM_MASK_LEVELS, variant: str = "paper"
) -> list[np.ndarray]:
    """Stage-II preprocessing of binary masks into the MM-HAA branch masks of every UNet level (spec §4.3-4.4).

    Per frame: each binary mask -> float, area-resize to the latent size (H/8, W/8), Gaussian blur (kernel 31 for
    V^{f+h}, 21 for V^l at a 64 px latent, scaled with the latent, see :func:`scaled_blur_kernel`; sigma from
    :func:`blur_sigma`; OpenCV's reflect-101 border), min-max to [0, 1], then bilinear halving to each level.

    Args:
        masks: binary masks at any resolution (normally the image's).
        height, width: size in pixels of the image the stage-II UNet generates.
        levels: number of UNet levels (spec: 4).
        variant: how the global branch is built (:data:`MASK_VARIANTS`); V^h (blur kernel 21, like the lips) is
            processed only for the variants that read it.

    Returns:
        ``levels`` float32 arrays, level ``i`` of shape (F, 3, h_i, w_i) with (h_i, w_i) from
        :func:`mask_level_sizes` (H/8 .. H/64 for sizes divisible by 64), channels in ``BRANCHES`` order:
        global (1 - lips for ``"paper"``), face_hands, lips; values in [0, 1] (the global branch of
        ``"official_audio2vid"`` in [1, 2], of ``"official_pats"`` in [0, 2]).
    """
    sizes = mask_level_sizes(height, width, levels)
    check_mask_variant(variant)
    if masks.num_frames == 0:
        return [np.zeros((0, 3, h, w), dtype=np.float32) for h, w in sizes]
    return _pyramid(masks, sizes, variant)


def branch_masks(
    pose: PoseSequence,
    height: int,
    width: int,
    levels: int = NUM_MASK_LEVELS,
    margin: float = 0.0,
    variant: str = "paper",
) -> list[np.ndarray]:
    """The MM-HAA branch masks of a pose sequence: what the stage-II dataset and pipelines call.

    Equal to ``mask_pyramid(motion_masks(pose, width, height, margin), height, width, levels, variant)``, computed in
    chunks of frames so long sequences never hold every full-resolution mask at once.

    Args:
        pose: the pose sequence (any size; coordinates are rescaled to ``width`` x ``height``).
        height, width: size in pixels of the generated video.
        levels: number of UNet levels (spec: 4).
        margin: box margin as a fraction of the box size; 0 = the spec's tight boxes.
        variant: the global branch's definition (:data:`MASK_VARIANTS`); ``"paper"``: 1 - V^l.

    Returns:
        ``levels`` float32 arrays (F, 3, h_i, w_i): channels (global, V^{f+h}, V^l); for ``"paper"``
        (1 - V^l, V^{f+h}, V^l) in [0, 1].
    """
    sizes = mask_level_sizes(height, width, levels)  # validates before any work
    check_mask_variant(variant)
    pose = pose_at_size(pose, width, height)
    if pose.num_frames == 0:
        return [np.zeros((0, 3, h, w), dtype=np.float32) for h, w in sizes]
    chunks = [
        mask_pyramid(motion_masks(pose[start : start + _FRAME_CHUNK], margin=margin), height, width, levels, variant)
        for start in range(0, pose.num_frames, _FRAME_CHUNK)
    ]
    return [np.concatenate(level, axis=0) for level in zip(*chunks)]

"""The reference image: any photo of a person -> the square stage-2 reference, its pose and its CLIP input.

:func:`load_image` reads the file (one image-reading path: :func:`mmgt.utils.video_io.read_image`);
:func:`prepare_reference` detects the person and takes a square like the training frames (head at the top, the
person filling the frame down to about the hips) and maps the detected keypoints into it. Every resize of a reference
goes through :func:`fit_image` (one interpolation rule), and :func:`clip_pixels` is the CLIP preprocessing of
training and inference alike.

Where the square reaches outside the photo, the photo's edge pixels are repeated (``cv2.BORDER_REPLICATE``): a
torso cut off by the bottom edge continues downwards and a background keeps its colour, with no flat bars.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mmgt.constants import BODY_INDEX, FACE, FPS, VISIBILITY_THRESHOLD
from mmgt.contracts import PoseSequence
from mmgt.errors import MediaError, MmgtError
from mmgt.pose.detect import MediaPipeDetector, PoseDetector, require_person
from mmgt.utils.video_io import read_image

# OpenAI CLIP's preprocessing constants (the feature extractor of sd-image-variations-diffusers).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MIN_IMAGE_SIDE = 32  # smaller photos carry too little of a person to be a reference
MODES = ("crop", "pad")

# Framing of the training data (the synthetic speakers at rest, mmgt.data.synthetic): side S of the square.
HEAD_TOP = 0.12  # the top of the head sits this far (x S) below the square's top edge
HIP_LEVEL = 0.92  # the hips sit this far (x S) below the top edge
SIDE_PER_SHOULDER = 2.15  # S >= this x shoulder width
ARM_MARGIN = 0.05  # shoulders, elbows, wrists and head stay at least this far (x S) inside the left/right edges
WHOLE_IMAGE = 0.75  # a square of at least this share of the image's long side becomes the whole image ("pad")

_HEAD = [BODY_INDEX[n] for n in ("nose", "right_eye", "left_eye", "right_ear", "left_ear")] + list(FACE)
_SHOULDERS = [BODY_INDEX["right_shoulder"], BODY_INDEX["left_shoulder"]]
_HIPS = [BODY_INDEX["right_hip"], BODY_INDEX["left_hip"]]
_ARMS = _SHOULDERS + [BODY_INDEX[f"{s}_{p}"] for s in ("right", "left") for p in ("elbow", "wrist")]


@dataclass(frozen=True, eq=False)
class PreparedReference:
    """A square reference image and the person's pose in it.

    Attributes:
        image: (size, size, 3) uint8 RGB.
        pose: one-frame :class:`PoseSequence` in ``image`` pixels (width = height = size, 25 fps).
        box: (x0, y0, x1, y1) integer square (x1 - x0 == y1 - y0) of the original image that ``image`` shows;
            it may reach outside the original (edge pixels repeated there).
    """

    image: np.ndarray
    pose: PoseSequence
    box: tuple[int, int, int, int]

    @property
    def scale(self) -> float:
        """Prepared pixels per original pixel."""
        return self.image.shape[0] / (self.box[2] - self.box[0])

    def to_prepared(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) original-image px -> prepared-image px."""
        return (np.asarray(points, np.float32) - np.float32(self.box[:2])) * np.float32(self.scale)

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) prepared-image px -> original-image px (the inverse of :meth:`to_prepared`)."""
        return np.asarray(points, np.float32) / np.float32(self.scale) + np.float32(self.box[:2])


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read a reference photo as (H, W, 3) uint8 RGB.

    Decoding is :func:`~mmgt.utils.video_io.read_image`: EXIF orientation applied, grayscale -> RGB, 16-bit scaled to
    8 bits, transparency composited onto white.

    Raises:
        MediaError: missing, empty, not an image, truncated, or under 32 px on a side (one line naming the file).
    """
    image = read_image(path)
    height, width = image.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE:
        raise MediaError(f"{path}: image too small ({width}x{height} px; need at least {MIN_IMAGE_SIDE} px a side)")
    return image


def prepare_reference(
    image: np.ndarray, size: int, detector: PoseDetector | None = None, mode: str = "crop"
) -> PreparedReference:
    """Detect the person, take a square around them, resize it to ``size`` and map the keypoints into it.

    Args:
        image: (H, W, 3) uint8 RGB photo.
        size: side of the output in pixels.
        detector: any :class:`~mmgt.pose.detect.PoseDetector` (left open); default a
            :class:`~mmgt.pose.detect.MediaPipeDetector`, closed before returning.
        mode: "crop": a head-to-hips square (:func:`crop_box`); "pad": the whole image, centred in a square.

    Returns:
        A :class:`PreparedReference`; keypoints of points with score 0 stay at (0, 0), scores are unchanged.

    Raises:
        NoPersonError: no visible shoulder or face (:func:`~mmgt.pose.detect.require_person`).
        MmgtError: bad ``image``, ``size`` or ``mode``.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise MmgtError(f"image must be an (H, W, 3) uint8 RGB array, got {getattr(image, 'shape', type(image))}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise MmgtError(f"size must be a positive int, got {size!r}")
    if mode not in MODES:
        raise MmgtError(f"mode must be one of {MODES}, got {mode!r}")
    with MediaPipeDetector() if detector is None else contextlib.nullcontext(detector) as det:
        keypoints, scores = det.detect(image)
    height, width = image.shape[:2]
    require_person(PoseSequence(keypoints[None], scores[None], width, height, FPS), "reference image")
    box = crop_box(keypoints, scores, width, height) if mode == "crop" else pad_box(width, height)
    side = box[2] - box[0]
    square = fit_image(_take(image, box), size, size)
    mapped = (keypoints - np.float32(box[:2])) * np.float32(size / side)
    mapped[scores == 0] = 0.0
    return PreparedReference(square, PoseSequence(mapped[None], scores[None], size, size, FPS), box)


def fit_image(image: np.ndarray | Image.Image, height: int, width: int) -> np.ndarray:
    """Resize ``image`` to cover ``height`` x ``width`` (aspect ratio kept), then centre-crop to exactly that size.

    THE resize of a reference image: area averaging when shrinking (no aliasing), bicubic when enlarging. An image
    already at the size is returned as it is.

    Returns:
        (height, width, 3) uint8 RGB.
    """
    image = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
        raise MmgtError(f"reference image must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}")
    h0, w0 = image.shape[:2]
    if (h0, w0) == (height, width):
        return image
    scale = max(height / h0, width / w0)
    size = (max(width, round(w0 * scale)), max(height, round(h0 * scale)))  # cv2 wants (w, h)
    resized = cv2.resize(
        np.ascontiguousarray(image), size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    )
    top, left = (size[1] - height) // 2, (size[0] - width) // 2
    return np.ascontiguousarray(resized[top : top + height, left : left + width])


def clip_pixels(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """CLIP image preprocessing in torch, for training batches and inference alike.

    As ``CLIPImageProcessor`` does: bicubic resize of the short side to ``image_size``, centre crop, CLIP mean/std.

    Args:
        images: (B, 3, H, W) RGB in [-1, 1] (the VAE's input range).
        image_size: the vision model's ``config.image_size`` (224 for ViT-L/14).

    Returns:
        (B, 3, image_size, image_size) normalised pixel values.
    """
    h, w = images.shape[-2:]
    scale = image_size / min(h, w)
    size = (max(image_size, round(h * scale)), max(image_size, round(w * scale)))
    x = F.interpolate((images.float() + 1) / 2, size=size, mode="bicubic", antialias=True, align_corners=False)
    top, left = (size[0] - image_size) // 2, (size[1] - image_size) // 2
    x = x[..., top : top + image_size, left : left + image_size].clamp(0, 1)
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def pad_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The square (x0, y0, x1, y1) of side max(width, height) with the image in its middle."""
    side = max(width, height)
    x0, y0 = (width - side) // 2, (height - side) // 2
    return x0, y0, x0 + side, y0 + side


def crop_box(keypoints: np.ndarray, scores: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """A head-to-hips square (x0, y0, x1, y1) around the person, framed like the training data.

    The side S is the largest of: (hips - head top) / (HIP_LEVEL - HEAD_TOP), SIDE_PER_SHOULDER x shoulder width and
    the arms' and head's horizontal extent plus margins (so the square never cuts the upper body). The square is
    centred on the shoulders and face with the head top at HEAD_TOP x S, then shifted towards the inside of the image
    as far as the person allows. A square of at least WHOLE_IMAGE x the long side becomes :func:`pad_box`, so a photo
    that already is an upper-body shot stays (nearly) as it is.

    Args:
        keypoints: (134, 2) px; scores: (134,). Without two visible head points or both shoulders the result is
            :func:`pad_box`.
        width, height: image size in px.
    """
    vis = np.asarray(scores) > VISIBILITY_THRESHOLD
    kp = np.asarray(keypoints, np.float64)

    def visible(indices: list[int]) -> np.ndarray:  # (N, 2) visible points among ``indices``
        return kp[np.array([i for i in indices if vis[i]], dtype=int)]

    head, shoulders, hips = visible(_HEAD), visible(_SHOULDERS), visible(_HIPS)
    head_size = float(np.ptp(head, axis=0).max()) if len(head) >= 2 else 0.0
    shoulder_w = float(np.linalg.norm(shoulders[0] - shoulders[1])) if len(shoulders) == 2 else 0.0
    if head_size <= 0 and shoulder_w <= 0:  # e.g. one shoulder at an image edge: nothing to measure the person by
        return pad_box(width, height)
    # Fill in what is missing from body proportions (head size ~ half the shoulder width).
    head_size, shoulder_w = head_size or 0.45 * shoulder_w, shoulder_w or 2.0 * head_size
    if len(head) >= 2:
        head_top, chin, head_x = head[:, 1].min() - 0.5 * head_size, head[:, 1].max(), head[:, 0].mean()
    else:
        head_top, chin, head_x = shoulders[:, 1].mean() - 0.9 * shoulder_w, None, None
    shoulder_y = shoulders[:, 1].mean() if len(shoulders) else chin + 0.5 * head_size
    hip_y = hips[:, 1].mean() if len(hips) else shoulder_y + max(1.2 * shoulder_w, 2.5 * head_size)
    centre_x = np.mean([x for x in (head_x, shoulders[:, 0].mean() if len(shoulders) else None) if x is not None])

    arms = np.concatenate([visible(_ARMS), head])[:, 0]  # x of everything that must stay inside
    side = max(
        (hip_y - head_top) / (HIP_LEVEL - HEAD_TOP),
        SIDE_PER_SHOULDER * shoulder_w,
        np.ptp(arms) / (1 - 2 * ARM_MARGIN),
    )
    if side >= WHOLE_IMAGE * max(width, height):
        return pad_box(width, height)
    margin = ARM_MARGIN * side
    x0 = _place(centre_x - side / 2, side, width, arms.max() + margin - side, arms.min() - margin)
    y0 = _place(head_top - HEAD_TOP * side, side, height, hip_y + 0.02 * side - side, head_top - 0.04 * side)
    x0, y0, side = round(x0), round(y0), max(1, round(side))
    return x0, y0, x0 + side, y0 + side


def _place(start: float, side: float, extent: int, lowest: float, highest: float) -> float:
    """Shift ``start`` towards covering as much of [0, extent) as possible, keeping it in [lowest, highest]."""
    inside = (0.0, extent - side) if side <= extent else (extent - side, 0.0)
    start = min(max(start, inside[0]), inside[1])
    return min(max(start, lowest), max(lowest, highest))


def _take(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """(y1 - y0, x1 - x0, 3) pixels of ``box``; outside the image the edge pixels repeat."""
    x0, y0, x1, y1 = box
    height, width = image.shape[:2]
    top, bottom, left, right = max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width)
    if top or bottom or left or right:
        image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(image[y0 + top : y1 + top, x0 + left : x1 + left])

"""Whole-body keypoint detection (E_K in the paper): MediaPipe Holistic or DWPose ONNX, -> 134-point PoseSequence.

DWPose (spec §2, the released detector) is YOLOX-L person boxes + the ``dw-ll_ucoco_384`` RTMPose/SimCC whole-body
model; its pre- and post-processing are small pure functions below so they can be tested without the ONNX files.
MediaPipe Holistic is the default because its models ship inside the pip package (nothing to download).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from mmgt.constants import BODY_INDEX, FACE, FPS, NUM_KEYPOINTS, VISIBILITY_THRESHOLD
from mmgt.contracts import PoseSequence
from mmgt.errors import MediaError, MmgtError, ModelFolderError, NoPersonError
from mmgt.pose.convert import from_coco_wholebody, from_mediapipe_holistic
from mmgt.pose.smoothing import smooth_poses
from mmgt.utils import image_io, video_io
from mmgt.utils.video_io import VIDEO_SUFFIXES

# Sources are told apart by suffix (case-insensitive): these images, VIDEO_SUFFIXES videos; anything else is rejected
# with a MediaError.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})


@runtime_checkable
class PoseDetector(Protocol):
    """Anything that turns one RGB image into 134 keypoints."""

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 RGB -> (134, 2) float32 px and (134,) float32 scores (all 0 when nobody is found)."""
        ...

    def close(self) -> None:
        """Release the underlying models."""
        ...


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        desc = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise MmgtError(f"image must be an (H, W, 3) uint8 RGB array, got a {desc}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise MmgtError(f"image must not be empty, got shape {image.shape}")
    return image


def _no_person() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((NUM_KEYPOINTS, 2), np.float32), np.zeros(NUM_KEYPOINTS, np.float32)


class _ClosingContext:
    """``with detector: ...`` closes the detector on exit."""

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------------------------
# MediaPipe Holistic
# ---------------------------------------------------------------------------------------------------------------------
class MediaPipeDetector(_ClosingContext):
    """MediaPipe Holistic (mediapipe 0.10.21 ``mp.solutions.holistic``) as a :class:`PoseDetector`.

    Args:
        static_image_mode: True for unrelated images (every call runs full detection); False for the frames of one
            video in order (Holistic tracks between frames, which is faster and steadier).
        min_detection_confidence, min_tracking_confidence: Holistic's thresholds.
    """

    def __init__(
        self,
        static_image_mode: bool = True,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ):
        import mediapipe as mp  # lazy: keeps `import mmgt` light

        # model_complexity=1 is the pose model bundled in the wheel (0 and 2 are downloaded at first use);
        # refine_face_landmarks only adds iris points, which the 68-point face does not use.
        self._holistic = mp.solutions.holistic.Holistic(
            static_image_mode=static_image_mode,
            model_complexity=1,
            smooth_landmarks=not static_image_mode,
            refine_face_landmarks=False,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 RGB -> (134, 2) px, (134,) scores."""
        if self._holistic is None:
            raise MmgtError("MediaPipeDetector is closed")
        image = _check_image(image)
        result = self._holistic.process(np.ascontiguousarray(image))
        kp, sc = from_mediapipe_holistic(
            result.pose_landmarks,
            result.face_landmarks,
            result.left_hand_landmarks,
            result.right_hand_landmarks,
            width=image.shape[1],
            height=image.shape[0],
        )
        return kp[0], sc[0]

    def close(self) -> None:
        if self._holistic is not None:
            self._holistic.close()
            self._holistic = None


# ---------------------------------------------------------------------------------------------------------------------
# DWPose: pure pre/post-processing functions
# ---------------------------------------------------------------------------------------------------------------------
YOLOX_PAD_VALUE = 114.0  # YOLOX letterbox grey
YOLOX_STRIDES = (8, 16, 32)
# ImageNet mean/std in RGB order, the RTMPose/DWPose data preprocessor's values.
POSE_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
POSE_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
BOX_PADDING = 1.25  # person box enlarged by 25% before cropping (RTMPose top-down default)
SIMCC_SPLIT_RATIO = 2.0  # SimCC bins per input pixel


def letterbox(image: np.ndarray, input_size: tuple[int, int] = (640, 640)) -> tuple[np.ndarray, float]:
    """Resize keeping the aspect ratio into the top-left of a grey ``input_size`` (width, height) canvas.

    Returns:
        (H_in, W_in, 3) float32 canvas (values 0-255, pad 114) and the resize ratio (input px per image px).
    """
    import cv2

    width, height = input_size
    ratio = min(width / image.shape[1], height / image.shape[0])
    new_w, new_h = int(image.shape[1] * ratio), int(image.shape[0] * ratio)
    canvas = np.full((height, width, 3), YOLOX_PAD_VALUE, dtype=np.float32)
    canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return canvas, ratio


def decode_yolox(raw: np.ndarray, input_size: tuple[int, int] = (640, 640), strides=YOLOX_STRIDES) -> np.ndarray:
    """Raw YOLOX head output (N, 5 + C) -> boxes as [cx, cy, w, h] in input pixels, objectness and class scores.

    Row order is stride by stride, then grid row by row (y), then column (x), as the exported model emits it:
    cx, cy = (offset + cell) * stride and w, h = exp(log_size) * stride. Objectness and class columns are already
    sigmoid probabilities in the export and pass through unchanged.
    """
    width, height = input_size
    grids, cell_strides = [], []
    for stride in strides:
        xs, ys = np.meshgrid(np.arange(width // stride), np.arange(height // stride))
        grids.append(np.stack([xs, ys], axis=-1).reshape(-1, 2))
        cell_strides.append(np.full((grids[-1].shape[0], 1), stride))
    grid, stride_col = np.concatenate(grids), np.concatenate(cell_strides)
    raw = np.asarray(raw, dtype=np.float32).reshape(-1, raw.shape[-1])
    if len(raw) != len(grid):
        raise MmgtError(f"YOLOX output has {len(raw)} rows, expected {len(grid)} for input {width}x{height}")
    out = raw.copy()
    out[:, :2] = (raw[:, :2] + grid) * stride_col
    out[:, 2:4] = np.exp(raw[:, 2:4]) * stride_col
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices by decreasing score.

    Areas use YOLOX's inclusive-pixel convention (x2 - x1 + 1), so results match the reference post-processing.
    """
    x1, y1, x2, y2 = np.asarray(boxes, dtype=np.float64).T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        inter_w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        inter_h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = inter_w * inter_h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= iou_threshold]
    return np.array(keep, dtype=int)


def person_boxes(
    decoded: np.ndarray,
    ratio: float,
    score_threshold: float = 0.3,
    nms_threshold: float = 0.45,
    candidate_threshold: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Decoded YOLOX rows -> person boxes (M, 4) [x1, y1, x2, y2] in image px and scores (M,), best first.

    As DWPose does: class-agnostic NMS over all candidates whose best class score (objectness x class
    probability) exceeds ``candidate_threshold``, then keep the boxes whose best class is person (COCO class 0) and
    whose score exceeds ``score_threshold``.
    """
    class_scores = decoded[:, 4:5] * decoded[:, 5:]
    best_class, best = class_scores.argmax(axis=1), class_scores.max(axis=1)
    cx, cy, w, h = decoded[:, :4].T
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1) / ratio
    candidates = np.flatnonzero(best > candidate_threshold)
    kept = candidates[nms(boxes[candidates], best[candidates], nms_threshold)]
    kept = kept[(best_class[kept] == 0) & (best[kept] > score_threshold)]
    return boxes[kept].astype(np.float32), best[kept].astype(np.float32)


def box_center_scale(box: np.ndarray, input_size: tuple[int, int] = (288, 384)) -> tuple[np.ndarray, np.ndarray]:
    """[x1, y1, x2, y2] -> crop centre (2,) and size (2,) in image px: padded by 25% and widened or heightened to
    the model's aspect ratio ``input_size`` (width, height)."""
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float32)
    center = np.array([(x1 + x2) / 2, (y1 + y2) / 2], dtype=np.float32)
    w, h = (x2 - x1) * BOX_PADDING, (y2 - y1) * BOX_PADDING
    aspect = input_size[0] / input_size[1]
    if w > h * aspect:
        h = w / aspect
    else:
        w = h * aspect
    return center, np.array([w, h], dtype=np.float32)


def crop_matrix(center: np.ndarray, scale: np.ndarray, input_size: tuple[int, int] = (288, 384)) -> np.ndarray:
    """(2, 3) affine map from image px to crop px: the ``scale``-sized box around ``center`` fills the crop."""
    s = input_size[0] / float(scale[0])  # same factor on y, since scale has the crop's aspect ratio
    return np.array(
        [[s, 0.0, input_size[0] / 2 - s * center[0]], [0.0, s, input_size[1] / 2 - s * center[1]]], dtype=np.float32
    )


def pose_input(
    image: np.ndarray, box: np.ndarray, input_size: tuple[int, int] = (288, 384)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop one person for the pose model.

    Returns:
        (3, H_in, W_in) float32 normalised RGB crop, crop centre (2,) and crop size (2,) in image px.
    """
    import cv2

    center, scale = box_center_scale(box, input_size)
    crop = cv2.warpAffine(image, crop_matrix(center, scale, input_size), input_size, flags=cv2.INTER_LINEAR)
    crop = (crop.astype(np.float32) - POSE_MEAN) / POSE_STD
    return crop.transpose(2, 0, 1).copy(), center, scale


def decode_simcc(
    simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float = SIMCC_SPLIT_RATIO
) -> tuple[np.ndarray, np.ndarray]:
    """SimCC logits (K, W_in * r) and (K, H_in * r) -> (K, 2) crop px and (K,) scores.

    Each coordinate is its argmax bin / ``split_ratio``; the score is the smaller of the two maxima, and points with
    score <= 0 get location -1 (RTMPose's decoding).
    """
    x_bin, y_bin = simcc_x.argmax(axis=-1), simcc_y.argmax(axis=-1)
    scores = np.minimum(simcc_x.max(axis=-1), simcc_y.max(axis=-1)).astype(np.float32)
    locs = np.stack([x_bin, y_bin], axis=-1).astype(np.float32) / split_ratio
    locs[scores <= 0] = -1
    return locs, scores


def crop_to_image(
    points: np.ndarray, center: np.ndarray, scale: np.ndarray, input_size: tuple[int, int] = (288, 384)
) -> np.ndarray:
    """Map (K, 2) crop px back to image px (the inverse of :func:`crop_matrix`)."""
    return points / np.asarray(input_size, dtype=np.float32) * scale + center - scale / 2


# ---------------------------------------------------------------------------------------------------------------------
# DWPose detector
# ---------------------------------------------------------------------------------------------------------------------
class DWPoseDetector(_ClosingContext):
    """DWPose whole-body detector from user-supplied ONNX files (spec §2, the released E_K).

    Runs YOLOX on a letterboxed image, takes the highest-scoring person (the released pipeline's "first person")
    and runs the SimCC whole-body model on its crop; the 133 COCO-WholeBody points become 134 via
    :func:`~mmgt.pose.convert.from_coco_wholebody`.

    Args:
        det_model: YOLOX person detector ``.onnx`` (DWPose: ``yolox_l.onnx``).
        pose_model: whole-body pose ``.onnx`` (DWPose: ``dw-ll_ucoco_384.onnx``, input 288x384).
        providers: onnxruntime execution providers; default CPU.
        det_input_size, pose_input_size: model input sizes as (width, height).
    """

    def __init__(
        self,
        det_model: str | os.PathLike,
        pose_model: str | os.PathLike,
        providers: list[str] | None = None,
        det_input_size: tuple[int, int] = (640, 640),
        pose_input_size: tuple[int, int] = (288, 384),
    ):
        for path in (det_model, pose_model):
            if not Path(path).is_file():
                raise ModelFolderError(f"{path}: DWPose ONNX model file not found")
        try:
            import onnxruntime as ort  # lazy: optional dependency (extra "onnx")
        except ImportError as e:
            raise MmgtError("DWPoseDetector needs onnxruntime; install it with `pip install mmgt[onnx]`") from e
        providers = providers or ["CPUExecutionProvider"]
        self._det = ort.InferenceSession(str(det_model), providers=providers)
        self._pose = ort.InferenceSession(str(pose_model), providers=providers)
        self.det_input_size, self.pose_input_size = tuple(det_input_size), tuple(pose_input_size)

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 RGB -> (134, 2) px, (134,) scores of the best-scoring person."""
        if self._det is None:
            raise MmgtError("DWPoseDetector is closed")
        image = _check_image(image)
        # The released annotator hands the RGB frame to both models as is; so do we, for identical keypoints.
        canvas, ratio = letterbox(image, self.det_input_size)
        raw = self._det.run(None, {self._det.get_inputs()[0].name: canvas.transpose(2, 0, 1)[None]})[0]
        boxes, _ = person_boxes(decode_yolox(raw[0], self.det_input_size), ratio)
        if len(boxes) == 0:
            return _no_person()
        crop, center, scale = pose_input(image, boxes[0], self.pose_input_size)
        simcc_x, simcc_y = self._pose.run(None, {self._pose.get_inputs()[0].name: crop[None]})[:2]
        points, scores = decode_simcc(simcc_x[0], simcc_y[0])
        kp, sc = from_coco_wholebody(crop_to_image(points, center, scale, self.pose_input_size), scores)
        return kp[0], sc[0]

    def close(self) -> None:
        self._det = self._pose = None


# ---------------------------------------------------------------------------------------------------------------------
# Sequences
# ---------------------------------------------------------------------------------------------------------------------
def _source_frames(source, fps: float | None) -> tuple[Iterable[np.ndarray], int | None, float, bool]:
    """(frames, frame count or None, fps, is_image) for a path or an array."""
    if isinstance(source, np.ndarray):
        if source.ndim == 3:
            return [source], 1, float(fps or FPS), True
        if source.ndim == 4:
            if len(source) == 0:
                raise MmgtError("frames array is empty (0 frames)")
            return source, len(source), float(fps or FPS), False
        raise MmgtError(f"source array must be (H, W, 3) or (F, H, W, 3), got shape {source.shape}")
    if not isinstance(source, (str, os.PathLike)):
        raise MmgtError(f"source must be an image/video path or an array, got {type(source).__name__}")
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return [image_io.read_image(path)], 1, float(fps or FPS), True
    if suffix in VIDEO_SUFFIXES:
        info = video_io.probe_video(path)
        out_fps = float(fps or info.fps)
        total = int(round(info.num_frames * out_fps / info.fps)) if info.num_frames and info.fps else None
        return video_io.iter_video_frames(path, fps=fps), total, out_fps, False
    raise MediaError(
        f"{path}: unknown file type {suffix!r}; images: {', '.join(sorted(IMAGE_SUFFIXES))}; videos: "
        f"{', '.join(sorted(VIDEO_SUFFIXES))}"
    )


def _progress(frames: Iterable[np.ndarray], total: int | None, enabled: bool) -> Iterator[np.ndarray]:
    if not enabled:
        return iter(frames)
    from tqdm.auto import tqdm

    return iter(tqdm(frames, total=total, desc="keypoints", unit="frame"))


def extract_poses(
    source: str | os.PathLike | np.ndarray,
    detector: PoseDetector | None = None,
    fps: float | None = None,
    smooth: bool = True,
    progress: bool = False,
) -> PoseSequence:
    """Detect 134-point poses in an image, a video or frames.

    Args:
        source: an image path (suffix in :data:`IMAGE_SUFFIXES`), a video path
            (:data:`~mmgt.utils.video_io.VIDEO_SUFFIXES`), an (H, W, 3) uint8 RGB image or (F, H, W, 3) uint8 RGB
            frames.
        detector: any :class:`PoseDetector`; default a :class:`MediaPipeDetector` (static mode for one image,
            tracking mode for videos and frame arrays), closed again before returning. A detector you pass in is
            left open.
        fps: resample a video to this rate first; for arrays and images it is just the returned ``fps``
            (default 25).
        smooth: apply :func:`~mmgt.pose.smoothing.smooth_poses` (Savitzky-Golay, 5 frames) to multi-frame results.
        progress: show a tqdm progress bar.

    Returns:
        A :class:`PoseSequence` in pixels of the source frames (one frame for an image).
    """
    frames, total, out_fps, is_image = _source_frames(source, fps)
    own = detector is None
    if own:
        detector = MediaPipeDetector(static_image_mode=is_image)
    results, size = [], None
    try:
        for frame in _progress(frames, total, progress and not is_image):
            size = size or frame.shape[:2]
            results.append(detector.detect(frame))
    finally:
        if own:
            detector.close()
    if not results:
        raise MediaError(f"{source}: no frames could be read")
    pose = PoseSequence(
        np.stack([kp for kp, _ in results]), np.stack([sc for _, sc in results]), size[1], size[0], out_fps
    )
    return smooth_poses(pose) if smooth and pose.num_frames > 1 else pose


def person_visible(pose: PoseSequence, threshold: float = VISIBILITY_THRESHOLD) -> np.ndarray:
    """(F,) bool: the frame shows a person — at least one shoulder or at least half of the 68 face landmarks visible.

    The one definition of "a person is there", used by :func:`require_person`, ``mmgt data check`` and
    ``mmgt data preprocess``: stage 2 needs a body or a face to anchor the reference; a stray hand or ear does not
    count.
    """
    visible = pose.scores > threshold
    shoulders = visible[:, [BODY_INDEX["right_shoulder"], BODY_INDEX["left_shoulder"]]].any(axis=1)
    face = visible[:, list(FACE)].mean(axis=1) >= 0.5
    return shoulders | face


def require_person(pose: PoseSequence, what: str = "image") -> None:
    """Raise :class:`NoPersonError` unless frame 0 shows a person (:func:`person_visible`)."""
    if pose.num_frames == 0:
        raise NoPersonError(f"{what}: no person detected (no frames)")
    if not person_visible(pose[0])[0]:
        raise NoPersonError(f"{what}: no person detected (no visible shoulder or face in frame 0)")

"""Whole-body keypoint detection (E_K in the paper): MediaPipe Holistic or DWPose ONNX, -> 134-point PoseSequence.

DWPose (spec §2, the released detector) is YOLOX-L person boxes + the ``dw-ll_ucoco_384`` RTMPose/SimCC whole-body
model; its pre- and post-processing are small pure functions in :mod:`mmgt.pose.dwpose`, tested without the ONNX
files.
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
from mmgt.pose.dwpose import crop_to_image, decode_simcc, decode_yolox, letterbox, person_boxes, pose_input
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
# DWPose (ONNX)
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

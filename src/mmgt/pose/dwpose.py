"""DWPose's numerical pre- and post-processing as pure functions: YOLOX letterbox and box decoding, NMS, the
RTMPose top-down crop, SimCC decoding and the map back to image pixels.

:class:`mmgt.pose.detect.DWPoseDetector` chains them around the two ONNX models; kept apart so that every step can be
tested with small arrays, without the model files.
"""

from __future__ import annotations

import numpy as np

from mmgt.errors import MmgtError

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

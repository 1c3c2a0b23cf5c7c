"""Pose detection: DWPose pre/post-processing on synthetic arrays, MediaPipe on skimage's astronaut, extract_poses."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mmgt.constants import BODY_INDEX, FACE, FACE_OFFSET, LEFT_HAND, NUM_KEYPOINTS
from mmgt.contracts import PoseSequence
from mmgt.errors import MediaError, MmgtError, ModelFolderError, NoPersonError
from mmgt.pose import detect
from mmgt.pose.detect import DWPoseDetector, MediaPipeDetector, PoseDetector, extract_poses, require_person
from mmgt.pose.dwpose import (
    POSE_MEAN,
    POSE_STD,
    box_center_scale,
    crop_matrix,
    crop_to_image,
    decode_simcc,
    decode_yolox,
    letterbox,
    nms,
    person_boxes,
    pose_input,
)


# ---------------------------------------------------------------------------------------------------------------------
# DWPose pieces, on synthetic arrays
# ---------------------------------------------------------------------------------------------------------------------
def test_letterbox_resizes_into_top_left_and_pads_grey():
    image = np.full((100, 200, 3), 7, np.uint8)
    canvas, ratio = letterbox(image, (640, 640))
    assert ratio == pytest.approx(3.2) and canvas.shape == (640, 640, 3) and canvas.dtype == np.float32
    assert (canvas[:320] == 7).all() and (canvas[320:] == 114).all()


def test_decode_yolox_grid_and_strides():
    raw = np.zeros((64 + 16 + 4, 7), np.float32)  # 64x64 input: 8x8, 4x4 and 2x2 cells
    raw[1 * 8 + 2, :4] = (0.5, 0.5, np.log(2.0), 0.0)  # stride 8, cell x=2, y=1
    raw[64 + 3, :4] = (0.0, 0.0, 0.0, 0.0)  # stride 16, cell x=3, y=0
    out = decode_yolox(raw, (64, 64))
    np.testing.assert_allclose(out[10, :4], [20.0, 12.0, 16.0, 8.0], rtol=1e-6)
    np.testing.assert_allclose(out[67, :4], [48.0, 0.0, 16.0, 16.0], rtol=1e-6)
    with pytest.raises(MmgtError, match="YOLOX output has 10 rows, expected 84"):
        decode_yolox(np.zeros((10, 7)), (64, 64))


def test_nms_suppresses_overlaps_in_score_order():
    boxes = np.array([[1, 0, 10, 9], [0, 0, 9, 9], [20, 20, 29, 29]], np.float32)
    scores = np.array([0.8, 0.9, 0.7])
    np.testing.assert_array_equal(nms(boxes, scores, 0.45), [1, 2])  # IoU(0, 1) = 90 / 110 = 0.82
    np.testing.assert_array_equal(nms(boxes, scores, 0.9), [1, 0, 2])


def _row(cx, cy, w, h, obj, person, other):
    return [cx, cy, w, h, obj, person, other]


def test_person_boxes_thresholds_classes_and_ratio():
    decoded = np.array(
        [
            _row(100, 100, 40, 80, 0.9, 0.9, 0.1),  # person 0.81
            _row(102, 100, 40, 80, 0.9, 0.8, 0.1),  # overlapping person 0.72 -> suppressed
            _row(300, 300, 40, 40, 0.9, 0.1, 0.9),  # best class is "other" -> dropped
            _row(500, 100, 40, 80, 0.5, 0.5, 0.0),  # person 0.25: a candidate, but below 0.3
            _row(500, 400, 20, 20, 0.8, 0.5, 0.0),  # person 0.40
        ],
        np.float32,
    )
    boxes, scores = person_boxes(decoded, ratio=2.0)
    np.testing.assert_allclose(boxes, [[40, 30, 60, 70], [245, 195, 255, 205]])
    np.testing.assert_allclose(scores, [0.81, 0.40], rtol=1e-6)


def test_box_center_scale_pads_and_fixes_aspect():
    center, scale = box_center_scale(np.array([10, 20, 110, 220]), (288, 384))
    np.testing.assert_allclose(center, [60, 120])
    np.testing.assert_allclose(scale, [187.5, 250.0])  # 125 x 250 widened to 3:4
    _, wide = box_center_scale(np.array([0, 0, 400, 100]), (288, 384))
    np.testing.assert_allclose(wide, [500.0, 500.0 * 4 / 3])


def test_crop_matrix_and_back_projection_round_trip():
    center, scale = np.array([60.0, 120.0]), np.array([187.5, 250.0])
    m = crop_matrix(center, scale, (288, 384))
    points = np.array([[60.0, 120.0], [-33.75, -5.0], [10.0, 200.0]])
    in_crop = points @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(in_crop[:2], [[144, 192], [0, 0]], atol=1e-4)  # centre -> middle; corner -> 0
    np.testing.assert_allclose(crop_to_image(in_crop, center, scale, (288, 384)), points, atol=1e-4)


def test_pose_input_normalises_the_crop():
    image = np.zeros((400, 400, 3), np.uint8)
    image[150:250, 150:250] = 255  # white square around the box centre (200, 200)
    crop, center, scale = pose_input(image, np.array([140, 150, 260, 250]), (288, 384))  # crop: 125-275, 100-300
    assert crop.shape == (3, 384, 288) and crop.dtype == np.float32
    np.testing.assert_allclose(center, [200, 200])
    np.testing.assert_allclose(crop[:, 192, 144], (255 - POSE_MEAN) / POSE_STD, rtol=1e-5)
    np.testing.assert_allclose(crop[:, 2, 2], -POSE_MEAN / POSE_STD, rtol=1e-5)  # black outside the square


def test_decode_simcc_argmax_min_score_and_invalid():
    simcc_x, simcc_y = np.zeros((2, 576), np.float32), np.zeros((2, 768), np.float32)
    simcc_x[0, 100], simcc_y[0, 301] = 0.8, 0.6
    simcc_x[1] -= 1.0  # all negative -> invalid
    simcc_y[1] -= 1.0
    locs, scores = decode_simcc(simcc_x, simcc_y)
    np.testing.assert_allclose(locs, [[50.0, 150.5], [-1.0, -1.0]])
    np.testing.assert_allclose(scores, [0.6, -1.0])


class _FakeSession:
    def __init__(self, outputs):
        self.outputs, self.inputs = outputs, []

    def get_inputs(self):
        return [SimpleNamespace(name="input")]

    def run(self, _names, feed):
        self.inputs.append(feed["input"])
        return self.outputs


def test_dwpose_detector_glue_with_fake_sessions():
    """YOLOX finds one person; the pose model puts COCO left shoulder (5) at the crop centre."""
    raw = np.zeros((1, 8400, 85), np.float32)
    # objectness 0 everywhere (YOLOX exports obj/cls already through a sigmoid) except stride-8 cell (0, 0)
    raw[0, 0, :6] = (0.5, 0.5, np.log(50.0 / 8), np.log(100.0 / 8), 0.9, 0.9)
    simcc_x, simcc_y = np.zeros((1, 133, 576), np.float32), np.zeros((1, 133, 768), np.float32)
    simcc_x[0, 5, 288], simcc_y[0, 5, 384] = 0.9, 0.9
    det = object.__new__(DWPoseDetector)
    det._det, det._pose = _FakeSession([raw]), _FakeSession([simcc_x, simcc_y])
    det.det_input_size, det.pose_input_size = (640, 640), (288, 384)
    kp, sc = det.detect(np.zeros((320, 640, 3), np.uint8))  # ratio 1: the box is (-21, -46, 29, 54) px
    assert det._det.inputs[0].shape == (1, 3, 640, 640) and det._pose.inputs[0].shape == (1, 3, 384, 288)
    assert kp.shape == (NUM_KEYPOINTS, 2) and sc.shape == (NUM_KEYPOINTS,)
    np.testing.assert_allclose(kp[BODY_INDEX["left_shoulder"]], [4.0, 4.0], atol=1e-4)  # the box centre
    assert sc[BODY_INDEX["left_shoulder"]] == pytest.approx(0.9)
    assert sc[BODY_INDEX["right_shoulder"]] == 0 and sc[BODY_INDEX["neck"]] == 0
    det.close()
    with pytest.raises(MmgtError, match="closed"):
        det.detect(np.zeros((8, 8, 3), np.uint8))


def test_dwpose_detector_reports_missing_files_and_runtime(tmp_path, monkeypatch):
    det_file, pose_file = tmp_path / "yolox_l.onnx", tmp_path / "dw-ll_ucoco_384.onnx"
    det_file.write_bytes(b"x")
    with pytest.raises(ModelFolderError, match=r"dw-ll_ucoco_384\.onnx: DWPose ONNX model file not found"):
        DWPoseDetector(det_file, pose_file)
    pose_file.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    with pytest.raises(MmgtError, match="needs onnxruntime"):
        DWPoseDetector(det_file, pose_file)


# ---------------------------------------------------------------------------------------------------------------------
# MediaPipe on a real photo (about 1 s in all: one shared detector)
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mediapipe_detector():
    with MediaPipeDetector(static_image_mode=True) as detector:
        yield detector


@pytest.fixture(scope="module")
def astronaut_pose(mediapipe_detector) -> PoseSequence:
    from skimage import data

    return extract_poses(data.astronaut(), detector=mediapipe_detector)


def test_mediapipe_detector_is_a_pose_detector(mediapipe_detector):
    assert isinstance(mediapipe_detector, PoseDetector)
    with pytest.raises(MmgtError, match=r"\(H, W, 3\) uint8 RGB"):
        mediapipe_detector.detect(np.zeros((8, 8), np.uint8))


def test_astronaut_body(astronaut_pose):
    pose = astronaut_pose
    assert (pose.num_frames, pose.width, pose.height, pose.fps) == (1, 512, 512, 25)
    kp, visible = pose.keypoints[0], pose.visible()[0]
    r_sh, l_sh, neck = (BODY_INDEX[n] for n in ("right_shoulder", "left_shoulder", "neck"))
    assert visible[[r_sh, l_sh, neck, BODY_INDEX["nose"]]].all()
    # the subject's right shoulder is on the image left; both near y = 250 (measured 112/240 and 306/257)
    assert 80 < kp[r_sh, 0] < 160 and 260 < kp[l_sh, 0] < 350
    assert 200 < kp[r_sh, 1] < 300 and 200 < kp[l_sh, 1] < 300
    np.testing.assert_allclose(kp[neck], (kp[r_sh] + kp[l_sh]) / 2, atol=1e-4)
    assert kp[BODY_INDEX["nose"], 1] < kp[neck, 1]
    for shoulder, elbow in ((r_sh, BODY_INDEX["right_elbow"]), (l_sh, BODY_INDEX["left_elbow"])):
        assert kp[elbow, 1] > kp[shoulder, 1] + 50  # arms hang down
        assert abs(kp[elbow, 0] - kp[shoulder, 0]) < 80
    assert visible[BODY_INDEX["right_elbow"]]  # measured visibility 0.76


def test_astronaut_face_box_and_ibug_geometry(astronaut_pose):
    kp, sc = astronaut_pose.keypoints[0], astronaut_pose.scores[0]
    face = kp[list(FACE)]
    assert (sc[list(FACE)] == 1).all()
    # measured: x 178-275, y 84-178
    assert (
        (face[:, 0] > 150).all() and (face[:, 0] < 330).all() and (face[:, 1] > 30).all() and (face[:, 1] < 250).all()
    )

    def p(j: int) -> np.ndarray:  # iBUG landmark j
        return kp[FACE_OFFSET + j]

    jaw = np.stack([p(j) for j in range(17)])
    assert jaw[:, 1].argmax() == 8  # chin is the lowest jaw point
    assert p(0)[0] < p(8)[0] < p(16)[0]
    lips = np.stack([p(j) for j in range(48, 68)])
    lo, hi = face.min(0), face.max(0)
    assert (lips > lo).all() and (lips < hi).all()
    centre_x = (p(39)[0] + p(42)[0]) / 2  # between the inner eye corners
    assert p(48)[0] < centre_x < p(54)[0]  # mouth corners either side
    assert p(36)[0] < p(39)[0] < p(42)[0] < p(45)[0]  # eye corners left to right
    eyes_y = max(p(j)[1] for j in range(36, 48))
    assert eyes_y < p(30)[1] < p(51)[1] < p(57)[1] < p(8)[1]  # eyes, nose tip, upper lip, lower lip, chin
    assert all(p(b)[1] < p(e)[1] for b, e in ((19, 37), (24, 44)))  # brows above eyelids
    assert p(62)[1] < p(66)[1]  # inner upper lip above inner lower lip


@pytest.mark.parametrize("kind", ["flat", "noise"])
def test_no_person_raises(mediapipe_detector, kind):
    rng = np.random.default_rng(0)
    image = np.full((256, 256, 3), 128, np.uint8) if kind == "flat" else rng.integers(0, 256, (256, 256, 3), np.uint8)
    pose = extract_poses(image, detector=mediapipe_detector)
    assert (pose.scores == 0).all()
    with pytest.raises(NoPersonError, match=f"^{kind}.png: no person detected"):
        require_person(pose, what=f"{kind}.png")


# ---------------------------------------------------------------------------------------------------------------------
# require_person and extract_poses plumbing (fake detectors, no models)
# ---------------------------------------------------------------------------------------------------------------------
def _scores_only(indices) -> PoseSequence:
    sc = np.zeros((1, NUM_KEYPOINTS), np.float32)
    sc[0, list(indices)] = 0.9
    return PoseSequence(np.zeros((1, NUM_KEYPOINTS, 2)), sc, 64, 64)


def test_require_person_rules():
    require_person(_scores_only([BODY_INDEX["left_shoulder"]]))
    require_person(_scores_only(FACE[:34]))  # half the face
    with pytest.raises(NoPersonError, match="^image: no person detected"):
        require_person(_scores_only(FACE[:33] + LEFT_HAND))
    with pytest.raises(NoPersonError, match="ref.png: no person detected"):
        require_person(PoseSequence(np.zeros((0, NUM_KEYPOINTS, 2)), np.zeros((0, NUM_KEYPOINTS)), 8, 8), "ref.png")


class _MeanDetector:
    """Fake detector: keypoint 0 at x = the frame's mean pixel value; records calls and close()."""

    def __init__(self, static_image_mode: bool = True):
        self.static_image_mode, self.calls, self.closed = static_image_mode, 0, False

    def detect(self, image):
        self.calls += 1
        kp, sc = np.zeros((NUM_KEYPOINTS, 2), np.float32), np.ones(NUM_KEYPOINTS, np.float32)
        kp[0, 0] = image.mean()
        return kp, sc

    def close(self):
        self.closed = True


def _frames(values) -> np.ndarray:
    return np.stack([np.full((6, 8, 3), v, np.uint8) for v in values])


def test_extract_poses_on_frames_smooths_and_keeps_caller_detector_open():
    detector = _MeanDetector()
    values = [10, 20, 10, 20, 10, 20, 10, 20, 10]
    raw = extract_poses(_frames(values), detector=detector, fps=30, smooth=False)
    assert (raw.num_frames, raw.width, raw.height, raw.fps) == (9, 8, 6, 30)
    np.testing.assert_array_equal(raw.keypoints[:, 0, 0], values)
    smoothed = extract_poses(_frames(values), detector=detector, fps=30)
    assert np.ptp(smoothed.keypoints[2:7, 0, 0]) < 0.5 * np.ptp(values)  # zig-zag damped
    assert detector.calls == 18 and not detector.closed


def test_extract_poses_default_detector_is_mediapipe_closed_after(monkeypatch):
    made = []

    def make(static_image_mode: bool) -> _MeanDetector:
        made.append(_MeanDetector(static_image_mode))
        return made[-1]

    monkeypatch.setattr(detect, "MediaPipeDetector", make)
    extract_poses(np.zeros((4, 4, 3), np.uint8))
    extract_poses(_frames([1, 2, 3]))
    assert [d.static_image_mode for d in made] == [True, False] and all(d.closed for d in made)


def test_extract_poses_rejects_bad_sources(tmp_path):
    with pytest.raises(MmgtError, match=r"source array must be \(H, W, 3\) or \(F, H, W, 3\)"):
        extract_poses(np.zeros((4, 4)), detector=_MeanDetector())
    bad = tmp_path / "clip.xyz"
    with pytest.raises(MediaError, match=r"clip\.xyz: unknown file type '\.xyz'"):
        extract_poses(bad, detector=_MeanDetector())


def _fake_video_io(monkeypatch, frames: np.ndarray, fps: float):
    calls = {}

    def iter_video_frames(path, fps=None):
        calls["iter"] = (Path(path).name, fps)
        yield from frames

    fake_video_io = SimpleNamespace(
        probe_video=lambda path: SimpleNamespace(num_frames=len(frames), fps=fps, width=8, height=6),
        iter_video_frames=iter_video_frames,
    )
    fake_image_io = SimpleNamespace(read_image=lambda path: calls.setdefault("image", Path(path).name) and frames[0])
    monkeypatch.setattr(detect, "video_io", fake_video_io)
    monkeypatch.setattr(detect, "image_io", fake_image_io)
    return calls


def test_extract_poses_dispatches_paths_by_suffix(monkeypatch):
    calls = _fake_video_io(monkeypatch, _frames([5, 6, 7]), fps=50.0)
    image_pose = extract_poses("ref.JPG", detector=_MeanDetector())
    assert image_pose.num_frames == 1 and calls["image"] == "ref.JPG"
    video_pose = extract_poses("talk.mp4", detector=_MeanDetector(), smooth=False)
    assert (video_pose.num_frames, video_pose.fps) == (3, 50.0) and calls["iter"] == ("talk.mp4", None)
    resampled = extract_poses("talk.mov", detector=_MeanDetector(), fps=25, smooth=False)
    assert resampled.fps == 25 and calls["iter"] == ("talk.mov", 25)


def test_extract_poses_reads_real_files(tmp_path):
    from PIL import Image

    from mmgt.utils.video_writer import save_video

    Image.fromarray(np.full((6, 8, 3), 40, np.uint8)).save(tmp_path / "ref.png")
    image_pose = extract_poses(tmp_path / "ref.png", detector=_MeanDetector())
    assert (image_pose.num_frames, image_pose.width, image_pose.height) == (1, 8, 6)
    assert image_pose.keypoints[0, 0, 0] == pytest.approx(40.0)
    save_video(tmp_path / "talk.mp4", _frames([0, 60, 120, 180, 240]).repeat(4, 1).repeat(4, 2), fps=10)
    video_pose = extract_poses(tmp_path / "talk.mp4", detector=_MeanDetector(), smooth=False)
    assert (video_pose.num_frames, video_pose.fps, video_pose.width, video_pose.height) == (5, 10, 32, 24)
    np.testing.assert_allclose(video_pose.keypoints[:, 0, 0], [0, 60, 120, 180, 240], atol=3)
    assert extract_poses(tmp_path / "talk.mp4", detector=_MeanDetector(), fps=20).num_frames == 10
    with pytest.raises(MediaError, match="missing.mp4"):
        extract_poses(tmp_path / "missing.mp4", detector=_MeanDetector())

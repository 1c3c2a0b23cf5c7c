"""Reference preparation: image files of every kind, and person-framed squares of synthetic figures and a photo."""

from __future__ import annotations

import wave
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from mmgt.constants import BODY, FACE, NUM_KEYPOINTS
from mmgt.data.synthetic import make_identities, reference_image, rest_pose
from mmgt.errors import MediaError, MmgtError, NoPersonError
from mmgt.pipelines.reference import PreparedReference, crop_box, load_image, pad_box, prepare_reference
from mmgt.pose.detect import MediaPipeDetector

BACKGROUND = (200, 200, 190)
OFFSET = np.array([100, 40])  # where the 128 px figure is pasted into the 300x200 canvas


@pytest.fixture(scope="module")
def detector():
    with MediaPipeDetector(static_image_mode=True) as det:
        yield det


@pytest.fixture(scope="module")
def figure():
    """A synthetic speaker at rest: (128, 128, 3) image, (134, 2) true keypoints and (134,) scores."""
    person = make_identities(1, seed=0)[0]
    pose = rest_pose(person.body, 128)
    return reference_image(person, 128), pose.keypoints[0], pose.scores[0]


def _on_canvas(image: np.ndarray) -> np.ndarray:
    canvas = np.full((200, 300, 3), BACKGROUND, np.uint8)
    canvas[OFFSET[1] : OFFSET[1] + 128, OFFSET[0] : OFFSET[0] + 128] = image
    return canvas


class FixedDetector:
    """A detector that always reports the same keypoints (to test the geometry exactly)."""

    def __init__(self, keypoints: np.ndarray, scores: np.ndarray):
        self.keypoints, self.scores, self.closed = np.float32(keypoints), np.float32(scores), False

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.keypoints.copy(), self.scores.copy()

    def close(self) -> None:
        self.closed = True


# ---------------------------------------------------------------------------------------------------------------------
# load_image
# ---------------------------------------------------------------------------------------------------------------------
def test_transparency_is_composited_onto_white(tmp_path: Path) -> None:
    rgba = np.zeros((40, 50, 4), np.uint8)
    rgba[10:30, 10:40] = [12, 140, 250, 255]  # opaque rectangle on a fully transparent (black) background
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "cutout.png")
    out = load_image(tmp_path / "cutout.png")
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[10:30, 10:40], np.full((20, 30, 3), [12, 140, 250]))
    out[10:30, 10:40] = 255
    assert (out == 255).all()


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (48, 64, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_images_are_scaled_not_clipped(tmp_path: Path, suffix: str) -> None:
    gray = np.full((40, 40), 65535, np.uint16)
    gray[:, 20:] = 32768
    cv2.imwrite(str(tmp_path / f"g16{suffix}"), gray)
    out = load_image(tmp_path / f"g16{suffix}")
    assert (out[:, :20] == 255).all() and (out[:, 20:] == 128).all()

    bgr = np.zeros((40, 40, 3), np.uint16)
    bgr[...] = [0, 32768, 65535]  # OpenCV order: R = 65535, G = 32768, B = 0
    cv2.imwrite(str(tmp_path / f"c16{suffix}"), bgr)
    np.testing.assert_array_equal(load_image(tmp_path / f"c16{suffix}"), np.full((40, 40, 3), [255, 128, 0]))


def test_exif_rotated_jpeg_is_upright(tmp_path: Path) -> None:
    stored = np.zeros((48, 64, 3), np.uint8)
    stored[:, :32] = 255  # white left half, as the camera stored it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "phone.jpg")
    assert out.shape == (64, 48, 3)
    assert out[:28].min() > 230 and out[36:].max() < 25  # the white half is now on top


def _write_wav(path: Path) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000)
        f.writeframes(np.zeros(16000, np.int16).tobytes())


def _bad_files(tmp_path: Path) -> dict[str, str]:
    """file name -> the problem its MediaError must name."""
    (tmp_path / "notes.png").write_text("not pixels\n" * 50)
    _write_wav(tmp_path / "speech.png")
    (tmp_path / "empty.png").write_bytes(b"")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for suffix in (".png", ".jpg"):
        Image.fromarray(noise).save(tmp_path / f"full{suffix}")
        whole = (tmp_path / f"full{suffix}").read_bytes()
        (tmp_path / f"cut{suffix}").write_bytes(whole[: len(whole) // 2])
    Image.fromarray(noise[:20, :40]).save(tmp_path / "tiny.png")
    return {
        "missing.png": "file not found",
        "notes.png": r"not an image \(cannot identify image file\)",
        "speech.png": r"not an image \(cannot identify image file\)",
        "empty.png": r"file is empty \(0 bytes\)",
        "cut.png": r"truncated image \(",
        "cut.jpg": r"truncated image \(",
        "tiny.png": r"image too small \(40x20 px; need at least 32 px a side\)",
    }


def test_bad_files_raise_one_line_media_errors(tmp_path: Path) -> None:
    for name, problem in _bad_files(tmp_path).items():
        path = tmp_path / name
        with pytest.raises(MediaError, match=rf"^{path}: {problem}") as info:
            load_image(path)
        assert "\n" not in str(info.value)
    assert load_image(tmp_path / "full.png").shape == (64, 64, 3)  # the intact originals read fine


# ---------------------------------------------------------------------------------------------------------------------
# prepare_reference
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["flat", "noise"])
def test_no_person_raises_no_person_error(detector, kind: str) -> None:
    rng = np.random.default_rng(1)
    image = np.full((120, 160, 3), 90, np.uint8) if kind == "flat" else rng.integers(0, 256, (120, 160, 3), np.uint8)
    with pytest.raises(NoPersonError, match=r"^reference image: no person detected"):
        prepare_reference(image, 64, detector)


def test_square_upper_body_shot_is_kept(detector, figure) -> None:
    image, _, _ = figure
    ref = prepare_reference(image, 128, detector)
    assert ref.box == (0, 0, 128, 128)
    np.testing.assert_array_equal(ref.image, image)


def test_figure_on_a_canvas_is_framed_like_the_training_data(detector, figure) -> None:
    image, true_kp, true_sc = figure
    canvas = _on_canvas(image)
    ref = prepare_reference(canvas, 96, detector)
    x0, y0, x1, y1 = ref.box
    side = x1 - x0
    assert isinstance(ref, PreparedReference) and ref.image.shape == (96, 96, 3) and y1 - y0 == side
    # The square is about the frame the figure was rendered in (128 px at OFFSET).
    assert abs(side - 128) < 16 and abs(x0 - OFFSET[0]) < 12 and abs(y0 - OFFSET[1]) < 12
    pose = ref.pose
    assert (pose.width, pose.height, pose.fps, pose.num_frames) == (96, 96, 25.0, 1)

    # Keypoints land on the true keypoints taken through the same transform.
    expected = (true_kp + OFFSET - [x0, y0]) * (96 / side)
    both = (pose.scores[0] > 0.3) & (true_sc > 0.3)
    err = np.linalg.norm(pose.keypoints[0] - expected, axis=1)
    face, body = both & np.isin(np.arange(NUM_KEYPOINTS), FACE), both & np.isin(np.arange(NUM_KEYPOINTS), BODY)
    assert face.sum() >= 60 and body.sum() >= 10
    assert np.median(err[face]) < 1.5 and err[face].max() < 4
    assert np.median(err[body]) < 4 and err[body].max() < 10

    # Mapped back, they land on the true keypoints in the canvas (MediaPipe is not bit-exact between calls, so the
    # exact arithmetic is checked with a fixed detector below).
    back = np.linalg.norm(ref.to_original(pose.keypoints[0]) - (true_kp + OFFSET), axis=1)
    assert np.median(back[face]) < 2 and np.median(back[body]) < 5
    # Detecting again in the prepared image finds the face where the returned pose has it.
    redetected, resc = detector.detect(ref.image)
    again = (resc > 0.3) & (pose.scores[0] > 0.3) & np.isin(np.arange(NUM_KEYPOINTS), FACE)
    assert again.sum() >= 60
    assert np.median(np.linalg.norm(redetected - pose.keypoints[0], axis=1)[again]) < 1.5


def test_pad_mode_keeps_the_whole_image(detector, figure) -> None:
    canvas = _on_canvas(figure[0])
    ref = prepare_reference(canvas, 150, detector, mode="pad")
    assert ref.box == pad_box(300, 200) == (0, -50, 300, 250)
    # Exactly 2:1, so the middle rows are the canvas shrunk by area averaging; edge rows repeat above and below.
    np.testing.assert_array_equal(ref.image[25:125], cv2.resize(canvas, (150, 100), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(ref.image[:25], np.broadcast_to(ref.image[25], (25, 150, 3)))
    _, true_kp, true_sc = figure
    both = (ref.pose.scores[0] > 0.3) & (true_sc > 0.3)
    err = np.linalg.norm(ref.pose.keypoints[0] - (true_kp + OFFSET - [0, -50]) * 0.5, axis=1)
    assert both.sum() >= 70 and np.median(err[both]) < 1
    assert pad_box(200, 300) == (-50, 0, 250, 300) and pad_box(64, 64) == (0, 0, 64, 64)


def test_photo_of_a_person(detector) -> None:
    photo = data.astronaut()  # (512, 512): already a square upper-body shot
    ref = prepare_reference(photo, 256, detector)
    assert ref.box == (0, 0, 512, 512)
    np.testing.assert_array_equal(ref.image, cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA))

    wide = np.full((512, 1400, 3), 128, np.uint8)
    wide[:, 300:812] = photo
    ref = prepare_reference(wide, 256, detector)
    x0, y0, x1, y1 = ref.box
    assert 250 <= x0 <= 330 and 740 <= x1 <= 850 and y0 <= 30  # the astronaut, not the empty grey sides
    face = ref.pose.keypoints[0][list(FACE)]
    assert face.min() > 0 and face.max() < 256


def test_geometry_with_known_keypoints_and_invisible_points(figure) -> None:
    _, true_kp, true_sc = figure
    kp, sc = true_kp + OFFSET, true_sc.copy()
    sc[[120, 121]] = 0  # two undetected finger points, reported at (0, 0)
    kp[[120, 121]] = 0
    det = FixedDetector(kp, sc)
    ref = prepare_reference(_on_canvas(figure[0]), 64, det)
    assert not det.closed  # a caller's detector is left open
    x0, y0, x1, y1 = ref.box
    assert ref.box == crop_box(kp, sc, 300, 200)
    assert abs(x0 - OFFSET[0]) <= 4 and abs(y0 - OFFSET[1]) <= 8 and abs(x1 - x0 - 128) <= 8
    expected = (kp - [x0, y0]) * (64 / (x1 - x0))
    expected[sc == 0] = 0  # the two fingers, and the legs and feet the figure does not have
    np.testing.assert_allclose(ref.pose.keypoints[0], expected, atol=1e-4)
    np.testing.assert_array_equal(ref.pose.scores[0], sc)
    np.testing.assert_allclose(ref.to_original(ref.to_prepared(kp)), kp, atol=1e-3)


def test_tall_photo_becomes_head_to_hips_with_edge_pixels_past_the_border(figure) -> None:
    _, true_kp, true_sc = figure
    head_top, hips = true_kp[list(FACE), 1].min(), true_kp[8, 1]  # brows and right hip, in the 128 px frame
    # A 64 px figure high in a tall image (standing, legs below): the square ends just below the hips.
    kp = true_kp * 0.5 + [28, 40]
    ref = prepare_reference(np.zeros((300, 120, 3), np.uint8), 64, FixedDetector(kp, true_sc))
    x0, y0, x1, y1 = ref.box
    assert abs(x1 - x0 - 64) <= 4 and y0 < 40 + 0.5 * head_top and 0 < y1 - (40 + 0.5 * hips) < 0.15 * 64

    # The same figure with its hips at the bottom edge: the square runs past it and repeats the bottom row.
    kp = true_kp * 0.5 + [28, 200 - 0.5 * hips]
    image = np.zeros((200, 120, 3), np.uint8)
    image[-1] = 255
    x0, y0, x1, y1 = crop_box(kp, true_sc, 120, 200)
    ref = prepare_reference(image, x1 - x0, FixedDetector(kp, true_sc))  # no resampling: pixels as taken
    assert ref.box == (x0, y0, x1, y1) and y1 > 200
    white = y1 - 200 + 1  # the bottom row and its repeats
    assert (ref.image[-white:] == 255).all() and (ref.image[:-white] == 0).all()


def test_bad_arguments(figure) -> None:
    image, kp, sc = figure
    det = FixedDetector(kp, sc)
    with pytest.raises(MmgtError, match="mode must be one of"):
        prepare_reference(image, 64, det, mode="zoom")
    with pytest.raises(MmgtError, match="size must be a positive int"):
        prepare_reference(image, 0, det)
    with pytest.raises(MmgtError, match=r"image must be an \(H, W, 3\) uint8"):
        prepare_reference(image.astype(np.float32), 64, det)

    one_shoulder = np.zeros(NUM_KEYPOINTS, np.float32)
    one_shoulder[2] = 1.0  # a shoulder at the edge and nothing else: a person, but nothing to frame them by
    assert prepare_reference(np.zeros((100, 60, 3), np.uint8), 64, FixedDetector(kp, one_shoulder)).box == pad_box(
        60, 100
    )


def test_default_detector(figure) -> None:
    ref = prepare_reference(figure[0], 64)  # builds and closes its own MediaPipeDetector
    assert ref.box == (0, 0, 128, 128) and ref.image.shape == (64, 64, 3) and (ref.pose.scores[0] > 0.3).sum() >= 70

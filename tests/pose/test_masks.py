"""Motion masks: known keypoints -> known boxes and pixels; the stage-II pyramid's exact values and shapes."""

from __future__ import annotations

import numpy as np
import pytest

from mmgt.constants import BRANCHES, FACE, LEFT_HAND, LIPS, NUM_KEYPOINTS, RIGHT_HAND
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError
from mmgt.pose.masks import (
    MotionMasks,
    blur_sigma,
    branch_masks,
    mask_frames_to_uint8,
    mask_level_sizes,
    mask_pyramid,
    motion_masks,
    region_boxes,
    scaled_blur_kernel,
)

NON_LIP_FACE = tuple(i for i in FACE if i not in LIPS)


def make_pose(points: dict[int, tuple[float, float]], width: int = 256, height: int = 256, score: float = 0.9):
    """One-frame pose with the given keypoints visible at ``score``; every other point invisible at (0, 0)."""
    keypoints = np.zeros((1, NUM_KEYPOINTS, 2), dtype=np.float32)
    scores = np.zeros((1, NUM_KEYPOINTS), dtype=np.float32)
    for index, xy in points.items():
        keypoints[0, index] = xy
        scores[0, index] = score
    return PoseSequence(keypoints, scores, width, height)


def box_mask(x0: int, y0: int, x1: int, y1: int, width: int = 256, height: int = 256) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[y0 : y1 + 1, x0 : x1 + 1] = True
    return mask


def spread(indices, x0: float, y0: float, x1: float, y1: float) -> dict[int, tuple[float, float]]:
    """Put the first point at (x0, y0), the second at (x1, y1) and the rest at the box centre."""
    centre = ((x0 + x1) / 2, (y0 + y1) / 2)
    return {i: (x0, y0) if k == 0 else (x1, y1) if k == 1 else centre for k, i in enumerate(indices)}


# ---------------------------------------------------------------------------------------------------------------------
# Boxes and binary masks
# ---------------------------------------------------------------------------------------------------------------------
def test_lips_mask_is_exactly_the_box_of_the_lip_points():
    masks = motion_masks(make_pose(spread(LIPS, 100, 200, 140, 220)))
    assert masks.lips.shape == (1, 256, 256) and masks.lips.dtype == bool
    np.testing.assert_array_equal(masks.lips[0], box_mask(100, 200, 140, 220))
    # Lips are face points, so the face box (and V^{f+h}) equals the lip box here; no hands.
    np.testing.assert_array_equal(masks.face_hands[0], box_mask(100, 200, 140, 220))
    assert not masks.hands.any()


def test_box_bounds_round_to_the_nearest_pixel_half_up():
    pose = make_pose({LIPS[0]: (100.4, 200.49), LIPS[1]: (140.5, 219.6)})
    boxes = region_boxes(pose.keypoints, pose.scores)
    np.testing.assert_array_equal(boxes["lips"], [[100, 200, 141, 220]])


def test_face_hands_is_the_union_and_hands_the_two_hand_boxes():
    points = {
        **spread(NON_LIP_FACE, 100, 40, 150, 90),
        **spread(LIPS, 115, 70, 135, 85),
        **spread(LEFT_HAND, 20, 150, 60, 200),
        **spread(RIGHT_HAND, 190, 160, 230, 210),
    }
    masks = motion_masks(make_pose(points))
    left, right = box_mask(20, 150, 60, 200), box_mask(190, 160, 230, 210)
    np.testing.assert_array_equal(masks.lips[0], box_mask(115, 70, 135, 85))
    np.testing.assert_array_equal(masks.face_hands[0], box_mask(100, 40, 150, 90) | left | right)
    np.testing.assert_array_equal(masks.hands[0], left | right)
    assert masks.face_hands[0].sum() == 51 * 51 + 41 * 51 + 41 * 51


def test_region_with_every_score_at_or_below_threshold_is_empty():
    # Visible means score > 0.3: exactly 0.3 does not count.
    pose = make_pose({**spread(LIPS, 100, 200, 140, 220), **spread(LEFT_HAND, 20, 20, 60, 60)}, score=0.3)
    boxes = region_boxes(pose.keypoints, pose.scores, threshold=0.3)
    assert np.isnan(boxes["lips"]).all() and np.isnan(boxes["left_hand"]).all()
    masks = motion_masks(pose)
    assert not masks.lips.any() and not masks.face_hands.any() and not masks.hands.any()


def test_points_with_non_positive_coordinates_are_ignored():
    points = {LIPS[0]: (100, 200), LIPS[1]: (140, 220), LIPS[2]: (0, 210), LIPS[3]: (-3, 205), LIPS[4]: (120, 0)}
    pose = make_pose(points)
    np.testing.assert_array_equal(region_boxes(pose.keypoints, pose.scores)["lips"], [[100, 200, 140, 220]])
    np.testing.assert_array_equal(motion_masks(pose).lips[0], box_mask(100, 200, 140, 220))


def test_margin_grows_the_box_by_a_fraction_of_its_size_on_every_side():
    pose = make_pose(spread(LIPS, 100, 200, 140, 220))  # 40 x 20 px
    boxes = region_boxes(pose.keypoints, pose.scores, margin=0.25)
    np.testing.assert_array_equal(boxes["lips"], [[90, 195, 150, 225]])
    np.testing.assert_array_equal(motion_masks(pose, margin=0.25).lips[0], box_mask(90, 195, 150, 225))


def test_boxes_are_clipped_to_the_image():
    masks = motion_masks(make_pose({LIPS[0]: (200, 50), LIPS[1]: (300, 60)}))
    np.testing.assert_array_equal(masks.lips[0], box_mask(200, 50, 255, 60))


def test_other_mask_size_rescales_the_coordinates():
    masks = motion_masks(make_pose(spread(LIPS, 100, 200, 140, 220)), width=128, height=64)
    assert masks.lips.shape == (1, 64, 128)
    np.testing.assert_array_equal(masks.lips[0], box_mask(50, 50, 70, 55, width=128, height=64))


def test_boxes_follow_the_motion_frame_by_frame():
    keypoints = np.zeros((3, NUM_KEYPOINTS, 2), dtype=np.float32)
    scores = np.zeros((3, NUM_KEYPOINTS), dtype=np.float32)
    for f in range(2):  # frame 2 has no visible lips
        keypoints[f, LIPS[0]], keypoints[f, LIPS[1]] = (10 + 20 * f, 10), (20 + 20 * f, 15)
        scores[f, LIPS[:2]] = 1.0
    boxes = region_boxes(keypoints, scores)["lips"]
    np.testing.assert_array_equal(boxes[:2], [[10, 10, 20, 15], [30, 10, 40, 15]])
    assert np.isnan(boxes[2]).all()
    masks = motion_masks(PoseSequence(keypoints, scores, 64, 64))
    assert masks.lips[:, 12, 15].tolist() == [True, False, False]
    assert masks.lips[:, 12, 35].tolist() == [False, True, False]


def test_bad_inputs_raise_mmgt_errors_naming_the_argument():
    with pytest.raises(MmgtError, match="region_boxes.*keypoints"):
        region_boxes(np.zeros((1, 10, 2)), np.zeros((1, 10)))
    with pytest.raises(MmgtError, match="margin"):
        region_boxes(np.zeros((1, NUM_KEYPOINTS, 2)), np.zeros((1, NUM_KEYPOINTS)), margin=-0.1)
    with pytest.raises(MmgtError, match="face_hands"):
        MotionMasks(np.zeros((1, 4, 4), bool), np.zeros((1, 4, 5), bool), np.zeros((1, 4, 4), bool))
    with pytest.raises(MmgtError, match="lips"):
        MotionMasks(np.zeros((1, 4, 4), np.uint8), np.zeros((1, 4, 4), bool), np.zeros((1, 4, 4), bool))
    with pytest.raises(MmgtError, match="height"):
        mask_level_sizes(4, 512)
    with pytest.raises(MmgtError, match="width"):
        motion_masks(make_pose({}), width=0)


def test_mask_frames_to_uint8_is_white_inside_black_outside():
    mask = np.zeros((2, 3, 4), dtype=bool)
    mask[1, 2, 3] = True
    frames = mask_frames_to_uint8(mask)
    assert frames.shape == (2, 3, 4, 3) and frames.dtype == np.uint8
    assert frames[1, 2, 3].tolist() == [255, 255, 255]
    assert frames.sum() == 3 * 255
    with pytest.raises(MmgtError, match="mask_frames_to_uint8"):
        mask_frames_to_uint8(np.zeros((3, 4), bool))


# ---------------------------------------------------------------------------------------------------------------------
# Stage-II pyramid
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "expected"),
    [((512, 512), [64, 32, 16, 8]), ((128, 128), [16, 8, 4, 2])],
)
def test_pyramid_shapes(size, expected):
    pose = make_pose(spread(LIPS, 50, 60, 70, 75), width=size[1], height=size[0])
    levels = branch_masks(pose, *size)
    assert [lv.shape for lv in levels] == [(1, len(BRANCHES), s, s) for s in expected]
    assert all(lv.dtype == np.float32 for lv in levels)


def test_level_sizes_for_sizes_not_divisible_by_64():
    # The VAE floors (200 // 8 = 25), the UNet's stride-2 convs round up.
    assert mask_level_sizes(200, 120) == [(25, 15), (13, 8), (7, 4), (4, 2)]
    assert mask_level_sizes(8, 8, levels=3) == [(1, 1), (1, 1), (1, 1)]


def test_kernel_scaling_and_sigma():
    assert [scaled_blur_kernel(31, s) for s in (64, 32, 16, 8, 1)] == [31, 15, 7, 3, 1]
    assert [scaled_blur_kernel(21, s) for s in (64, 32, 16, 96)] == [21, 11, 5, 31]
    assert blur_sigma(31) == pytest.approx(5.0) and blur_sigma(21) == pytest.approx(3.5)


def test_no_visible_region_gives_zero_masks_and_a_global_branch_of_one():
    levels = branch_masks(make_pose({}, width=128, height=128), 128, 128)
    for level in levels:
        assert (level[:, 0] == 1.0).all()
        assert (level[:, 1:] == 0.0).all()


def test_constant_full_mask_becomes_one():
    full = np.ones((1, 64, 64), dtype=bool)
    levels = mask_pyramid(MotionMasks(full, full, full), 64, 64)
    for level in levels:
        assert (level[:, 1:] == 1.0).all() and (level[:, 0] == 0.0).all()


def test_one_latent_pixel_is_blurred_with_the_documented_gaussians():
    # The 8x8 image block at pixels 256..263 is exactly latent pixel (32, 32) of a 512^2 image.
    pose = make_pose({LIPS[0]: (256, 256), LIPS[1]: (263, 263)}, width=512, height=512)
    level0 = branch_masks(pose, 512, 512)[0][0]  # (3, 64, 64)
    d = np.arange(64) - 32
    for channel, kernel, sigma in ((2, 21, 3.5), (1, 31, 5.0)):  # lips; face (= lips box here) + hands
        g = np.where(np.abs(d) <= kernel // 2, np.exp(-(d**2) / (2 * sigma**2)), 0.0)  # min-max -> peak 1
        np.testing.assert_allclose(level0[channel], np.outer(g, g), atol=1e-5)
    np.testing.assert_array_equal(level0[0], 1.0 - level0[2])


def test_small_kernels_use_the_sigma_formula_not_opencvs_fixed_tables():
    # At 128^2 the lips kernel is 5 with sigma 1.1 (OpenCV's sigma=0 table would give 4/6 = 0.667 next to the peak).
    pose = make_pose({LIPS[0]: (64, 64), LIPS[1]: (71, 71)}, width=128, height=128)
    lips = branch_masks(pose, 128, 128)[0][0, 2]  # (16, 16), peak at latent (8, 8)
    np.testing.assert_allclose(lips[8, 6:11], np.exp(-np.array([4, 1, 0, 1, 4]) / (2 * 1.1**2)), atol=1e-5)
    assert lips[8, 5] == 0.0 and lips[8, 11] == 0.0


def test_min_max_peaks_at_one_for_a_non_empty_region():
    pose = make_pose(
        {**spread(LIPS, 203.3, 151.7, 251.2, 190.4), **spread(LEFT_HAND, 20.6, 300.2, 97.1, 400.9)},
        width=512,
        height=512,
    )
    level0 = branch_masks(pose, 512, 512)[0]
    for channel in (1, 2):
        assert level0[:, channel].max() == 1.0 and level0[:, channel].min() == 0.0


def test_coarser_levels_are_exact_2x2_averages():
    pose = make_pose(
        {**spread(FACE, 180, 100, 330, 260), **spread(RIGHT_HAND, 40, 300, 120, 420)}, width=512, height=512
    )
    levels = branch_masks(pose, 512, 512)
    for fine, coarse in zip(levels, levels[1:]):
        f, r, h, w = fine.shape
        np.testing.assert_allclose(coarse, fine.reshape(f, r, h // 2, 2, w // 2, 2).mean(axis=(3, 5)), atol=1e-6)


def test_pyramid_of_a_centred_box_is_symmetric():
    # Pixels 0..511 are centred on 255.5: boxes mirrored about it give a mirror-symmetric pyramid.
    points = {
        **spread(LIPS, 192, 200, 319, 311),
        **spread(LEFT_HAND, 100, 350, 140, 400),
        **spread(RIGHT_HAND, 371, 350, 411, 400),
    }
    levels = branch_masks(make_pose(points, width=512, height=512), 512, 512)
    for level in levels:
        np.testing.assert_allclose(level, level[..., ::-1], atol=1e-6)  # left-right
        np.testing.assert_allclose(level[:, 2], level[:, 2, ::-1, :], atol=1e-6)  # lips alone: up-down too
        assert level[:, 2].max() > 0.5


def test_branch_masks_match_the_two_step_path_across_frame_chunks():
    frames = 70  # more than one internal chunk of 64 frames
    keypoints = np.zeros((frames, NUM_KEYPOINTS, 2), dtype=np.float32)
    scores = np.zeros((frames, NUM_KEYPOINTS), dtype=np.float32)
    for f in range(frames):
        keypoints[f, LIPS[0]], keypoints[f, LIPS[1]] = (2 + (f % 40), 10), (12 + (f % 40), 30)
        keypoints[f, LEFT_HAND[0]], keypoints[f, LEFT_HAND[1]] = (30, 2 + (f % 50)), (40, 9 + (f % 50))
        scores[f, [LIPS[0], LIPS[1], LEFT_HAND[0], LEFT_HAND[1]]] = 1.0
    pose = PoseSequence(keypoints, scores, 64, 64)
    levels = branch_masks(pose, 64, 64)
    two_step = mask_pyramid(motion_masks(pose), 64, 64)
    for level, other in zip(levels, two_step):
        assert level.shape[0] == frames
        np.testing.assert_array_equal(level, other)
    for f in (0, 63, 64, 69):  # each frame only depends on its own pose
        single = branch_masks(pose[f], 64, 64)
        for level, other in zip(levels, single):
            np.testing.assert_array_equal(level[f], other[0])


def test_empty_sequence_gives_empty_levels():
    pose = PoseSequence(np.zeros((0, NUM_KEYPOINTS, 2)), np.zeros((0, NUM_KEYPOINTS)), 128, 128)
    assert [lv.shape for lv in branch_masks(pose, 128, 128)] == [(0, 3, s, s) for s in (16, 8, 4, 2)]


# ---------------------------------------------------------------------------------------------------------------------
# Mask variants (spec §4.4): the release's global branch
# ---------------------------------------------------------------------------------------------------------------------
def _lips_and_hand_pose():
    """128^2: the lips fill latent pixel (8, 8), the left hand latent pixel (4, 12); kernels 5 (lips, hands), 7."""
    return make_pose(
        {LIPS[0]: (64, 64), LIPS[1]: (71, 71), LEFT_HAND[0]: (96, 32), LEFT_HAND[1]: (103, 39)}, width=128, height=128
    )


def _gauss(offsets, sigma: float) -> np.ndarray:
    return np.exp(-(np.asarray(offsets, dtype=np.float64) ** 2) / (2 * sigma**2))


def test_release_demo_variant_known_pixels():
    paper = branch_masks(_lips_and_hand_pose(), 128, 128)[0][0]  # (3, 16, 16)
    demo = branch_masks(_lips_and_hand_pose(), 128, 128, variant="official_audio2vid")[0][0]
    np.testing.assert_array_equal(demo[1:], paper[1:])  # face_hands and lips are the same masks
    # Global = 1 + V^l: 2 at the lips' peak, 1 + the lips' Gaussian (kernel 5, sigma 1.1) beside it, 1 elsewhere.
    np.testing.assert_allclose(demo[0, 8, 6:11], 1.0 + _gauss([-2, -1, 0, 1, 2], 1.1), atol=1e-5)
    assert demo[0, 8, 8] == 2.0 and demo[0, 8, 5] == 1.0 and demo[0, 4, 12] == 1.0 and demo[0].min() == 1.0
    assert paper[0, 8, 8] == 0.0 and paper[0, 4, 12] == 1.0  # mmgt's 1 - V^l


def test_release_training_variant_is_the_hands_mask():
    train = branch_masks(_lips_and_hand_pose(), 128, 128, variant="official_train")[0][0]
    # Global = V^h: the hand's Gaussian (kernel 5, sigma 1.1) around latent (4, 12), nothing at the lips.
    np.testing.assert_allclose(train[0, 4, 10:15], _gauss([-2, -1, 0, 1, 2], 1.1), atol=1e-5)
    np.testing.assert_allclose(train[0, 2:7, 12], _gauss([-2, -1, 0, 1, 2], 1.1), atol=1e-5)
    assert train[0, 4, 9] == 0.0 and train[0, 8, 8] == 0.0 and train[0].max() == 1.0


@pytest.mark.parametrize("variant", ["official_pats", "official_pose2vid"])
def test_other_release_variants_follow_their_formulas_at_every_level(variant):
    pose = _lips_and_hand_pose()
    levels = branch_masks(pose, 128, 128, variant=variant)
    hands = [level[:, 0] for level in branch_masks(pose, 128, 128, variant="official_train")]
    for level, h in zip(levels, hands):
        fh, lips = level[:, 1], level[:, 2]
        expected = 1.0 - fh + lips if variant == "official_pats" else np.clip(1.0 - fh + lips + h, 0.0, 1.0)
        np.testing.assert_allclose(level[:, 0], expected, atol=1e-6)
    assert not np.allclose(levels[0][:, 0], 1.0 - levels[0][:, 2])  # not the paper's branch


def test_ungated_variant_is_one_everywhere_at_every_level():
    paper = branch_masks(_lips_and_hand_pose(), 128, 128)
    ungated = branch_masks(_lips_and_hand_pose(), 128, 128, variant="ungated")
    assert [m.shape for m in ungated] == [m.shape for m in paper]
    assert all(np.array_equal(level, np.ones_like(level)) for level in ungated)
    assert paper[0][0, 2, 8, 8] == 1.0 and paper[0][0, 2, 0, 0] == 0.0  # the paper's lips mask is not


def test_unknown_mask_variant_is_refused():
    with pytest.raises(MmgtError, match="mask variant must be one of .*'paper'.* got 'released'"):
        branch_masks(_lips_and_hand_pose(), 128, 128, variant="released")

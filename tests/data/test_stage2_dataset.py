"""Stage-2 samples: shapes and ranges, masks identical to the pipeline's masks, audio alignment, determinism."""

from __future__ import annotations

import numpy as np

from mmgt.audio.mel import mel_features
from mmgt.audio.windows import stack_context
from mmgt.constants import LIPS
from mmgt.contracts import PoseSequence
from mmgt.data.stage2_dataset import Stage2ImageDataset, Stage2VideoDataset, random_crop_box
from mmgt.pose.masks import branch_masks, face_hand_regions
from mmgt.pose.render import render_pose_sequence
from mmgt.utils.audio_io import load_audio


def test_video_item_shapes_masks_and_audio(synth_dataset):
    ds = Stage2VideoDataset(synth_dataset, "train", size=64, num_frames=6, seed=3)
    item = ds[2]
    rec, start = ds.records[2 % len(ds.records)], item["start"]
    assert item["frames"].shape == (3, 6, 64, 64) and item["poses"].shape == (3, 6, 64, 64)
    assert -1.0 <= item["frames"].min() and item["frames"].max() <= 1.0
    assert 0.0 <= item["poses"].min() and item["poses"].max() <= 1.0 and item["reference"].shape == (3, 64, 64)
    # The masks are exactly what the pipelines compute from the same keypoints (the one mask function).
    pose = PoseSequence.load(synth_dataset / rec.keypoints)[start : start + 6]
    expected = branch_masks(pose, 64, 64)
    assert [tuple(m.shape) for m in item["masks"]] == [(6, 3, 8, 8), (6, 3, 4, 4), (6, 3, 2, 2), (6, 3, 1, 1)]
    for got, want in zip(item["masks"], expected):
        assert np.array_equal(got.numpy(), want)
    assert np.allclose(item["poses"].permute(1, 2, 3, 0).numpy(), render_pose_sequence(pose) / 255.0, atol=1e-6)
    # Frame k's audio window is centred on clip frame start + k (±2 frames of context, mel fallback: L = 1).
    feats = mel_features(load_audio(synth_dataset / rec.audio), 16000)[:, None]
    assert item["audio"].shape == (6, 5, 1, 81)
    assert np.allclose(item["audio"].numpy(), stack_context(feats, 2)[start : start + 6])
    assert np.allclose(item["audio"][0, 2].numpy(), feats[start])


def test_video_dataset_is_deterministic_per_seed_and_epoch(synth_dataset):
    a = Stage2VideoDataset(synth_dataset, size=64, num_frames=6, seed=1)
    b = Stage2VideoDataset(synth_dataset, size=64, num_frames=6, seed=1)
    assert a[3]["start"] == b[3]["start"] and np.array_equal(a[3]["frames"].numpy(), b[3]["frames"].numpy())
    starts = {a[i]["start"] for i in range(len(a))}
    a.set_epoch(1)
    assert {a[i]["start"] for i in range(len(a))} != starts


def test_image_item_shared_crop_and_gap(synth_dataset):
    ds = Stage2ImageDataset(synth_dataset, "train", size=48, min_gap=25, seed=0)
    item = ds[0]
    assert item["reference"].shape == item["target"].shape == item["pose"].shape == (3, 48, 48)
    # Pose pixels are where the target's figure is: the rendered skeleton lies on non-background target pixels.
    drawn = item["pose"].sum(0) > 0
    assert drawn.any()
    rng = np.random.default_rng(0)
    for _ in range(50):
        top, left, h, w = random_crop_box(rng, 64, 64, (0.9, 1.0), (0.9, 1.0))
        assert 0.85 * 64 * 64 <= h * w <= 64 * 64 and 0 <= top <= 64 - h and 0 <= left <= 64 - w


def test_pose_mouth_false_withholds_the_mouth_dots_but_not_the_lip_masks(synth_dataset):
    kwargs = dict(size=64, num_frames=6, seed=3)
    full = Stage2VideoDataset(synth_dataset, **kwargs)[2]
    bare_set = Stage2VideoDataset(synth_dataset, pose_mouth=False, **kwargs)
    bare = bare_set[2]
    rec = bare_set.records[2 % len(bare_set.records)]
    pose = PoseSequence.load(synth_dataset / rec.keypoints)[bare["start"] : bare["start"] + 6]
    want = render_pose_sequence(pose.rescaled(64, 64), mouth=False) / 255.0
    assert np.allclose(bare["poses"].permute(1, 2, 3, 0).numpy(), want, atol=1e-6)
    assert not np.array_equal(bare["poses"].numpy(), full["poses"].numpy())  # the mouth dots were there
    for got, same in zip(bare["masks"], full["masks"]):  # the lip mask still comes from the lip keypoints
        assert np.array_equal(got.numpy(), same.numpy()) and got[:, 2].max() > 0
    image_full = Stage2ImageDataset(synth_dataset, size=48, seed=0)[1]["pose"]
    image_bare = Stage2ImageDataset(synth_dataset, size=48, seed=0, pose_mouth=False)[1]["pose"]
    assert image_bare.sum() < image_full.sum() and (image_bare <= image_full + 1e-6).all()


def test_regions_are_the_face_and_hand_boxes_aligned_with_the_pixels(synth_dataset):
    ds = Stage2VideoDataset(synth_dataset, "train", size=64, num_frames=6, seed=3)
    item = ds[2]
    rec = ds.records[2 % len(ds.records)]
    pose = PoseSequence.load(synth_dataset / rec.keypoints)[item["start"] : item["start"] + 6].rescaled(64, 64)
    assert item["regions"].shape == (6, 64, 64)
    assert np.array_equal(item["regions"].numpy(), face_hand_regions(pose).astype(np.float32))
    for k in range(6):  # every lip keypoint lies in a box, and the boxes are a minority of the frame
        x, y = np.floor(pose.keypoints[k, list(LIPS)] + 0.5).astype(int).T
        assert item["regions"][k].numpy()[y, x].all() and 0 < item["regions"][k].mean() < 0.5
    # The image step crops them with the target: boxed target pixels are skin, hair or hands, not background.
    image = Stage2ImageDataset(synth_dataset, "train", size=48, seed=0)[0]
    assert image["regions"].shape == (1, 48, 48) and 0 < image["regions"].mean() < 0.5
    inside = image["regions"][0] > 0.5
    target = image["target"].permute(1, 2, 0).numpy()
    assert np.abs(target[inside].mean(0) - target[~inside].mean(0)).sum() > 0.1

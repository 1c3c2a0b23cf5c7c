"""Stage-1 windows: shapes, the conditioning frame, audio alignment, caching and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from mmgt.audio.features import stage1_audio_features
from mmgt.constants import FPS, NUM_KEYPOINTS
from mmgt.contracts import PoseSequence
from mmgt.data.manifest import read_manifest
from mmgt.data.stage1_dataset import Stage1Dataset, window_starts
from mmgt.pose.normalize import normalize_pose
from mmgt.utils.audio_io import load_audio


def test_window_starts():
    assert window_starts(60, 16, 10) == [1, 11, 21, 31, 41]  # target_offset 1: frame s-1 must exist
    assert window_starts(60, 16, 10, target_offset=0) == [0, 10, 20, 30, 40]
    assert window_starts(16, 16, 10) == []


def test_items_shapes_cond_frame_and_alignment(synth_dataset, tmp_path):
    ds = Stage1Dataset(synth_dataset, "train", window_frames=16, stride_frames=10, cache_dir=tmp_path / "cache")
    rec = ds.records[0]
    assert len(ds) == 9 * len(window_starts(rec.num_frames, 16, 10))
    item = ds[1]
    assert item["motion"].shape == (16, NUM_KEYPOINTS, 3) and item["cond_pose"].shape == (NUM_KEYPOINTS, 3)
    assert item["audio"].shape == (16, 35 + 81)
    start = item["start"]
    pose = normalize_pose(PoseSequence.load(synth_dataset / rec.keypoints))
    assert np.array_equal(item["motion"].numpy(), pose[start : start + 16])
    assert np.array_equal(item["cond_pose"].numpy(), pose[start - 1])  # the frame just before the window
    # Frame k of the window sees the audio at time (start + k) / 25 s: the features are those of exactly that span.
    wave = load_audio(synth_dataset / rec.audio)
    span = wave[start * 16000 // FPS : (start + 16) * 16000 // FPS]
    assert np.allclose(item["audio"].numpy(), stage1_audio_features(span, 16000), atol=1e-5)


def test_cache_and_determinism(synth_dataset, tmp_path):
    a = Stage1Dataset(synth_dataset, "train", window_frames=16, cache_dir=tmp_path / "c")
    a.precompute()
    assert len(list((tmp_path / "c").rglob("*.npy"))) == len(a)
    b = Stage1Dataset(synth_dataset, "train", window_frames=16, cache_dir=tmp_path / "c")
    for i in (0, len(a) - 1):
        assert np.array_equal(a[i]["audio"].numpy(), b[i]["audio"].numpy())
        assert np.array_equal(a[i]["motion"].numpy(), b[i]["motion"].numpy())


def test_offset_zero_and_errors(synth_dataset):
    ds = Stage1Dataset(synth_dataset, "val", window_frames=16, target_offset=0)
    item = ds[0]
    assert item["start"] == 0 and np.array_equal(item["cond_pose"].numpy(), item["motion"][0].numpy())
    longest = max(r.num_frames for r in read_manifest(synth_dataset))
    with pytest.raises(ValueError, match="no clip has"):
        Stage1Dataset(synth_dataset, "train", window_frames=longest)
    with pytest.raises(ValueError, match="target_offset"):
        Stage1Dataset(synth_dataset, "train", target_offset=2)

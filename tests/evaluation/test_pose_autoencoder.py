"""FGD autoencoder: save/load round trip, deterministic training that learns, FGD that separates real from noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmgt.constants import NUM_KEYPOINTS
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError
from mmgt.evaluation.pose_autoencoder import (
    FEATURE_KEYPOINTS,
    PoseAutoencoder,
    fgd,
    normalize_for_autoencoder,
    pose_features,
    reconstruction_error,
    sliding_windows,
    train_pose_autoencoder,
)

WINDOW = 16
TINY = dict(hidden_dim=32, latent_dim=8, num_downsamples=2)


def _sinusoids(count: int, frames: int, seed: int) -> np.ndarray:
    """(count, frames, 134, 2) motions of one family: a fixed rest pose swaying at a random frequency and phase."""
    layout = np.random.default_rng(123)  # the family (rest pose, amplitudes, per-point phases) is shared by all seeds
    rest = layout.uniform(-0.5, 0.5, (NUM_KEYPOINTS, 2))
    amplitude = layout.uniform(0.0, 0.2, (NUM_KEYPOINTS, 2))
    offset = layout.uniform(0.0, 2 * np.pi, (NUM_KEYPOINTS, 2))
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.03, 0.12, (count, 1, 1, 1))  # cycles per frame
    phase = rng.uniform(0.0, 2 * np.pi, (count, 1, 1, 1))
    t = np.arange(frames)[None, :, None, None]
    return (rest + amplitude * np.sin(2 * np.pi * freq * t + phase + offset)).astype(np.float32)


@pytest.fixture(scope="module")
def trained() -> tuple[PoseAutoencoder, PoseAutoencoder]:
    """(initial, trained) tiny models: the same seed, 0 and 100 steps."""
    windows = _sinusoids(256, WINDOW, seed=0)
    initial = train_pose_autoencoder(windows, steps=0, seed=0, **TINY)
    model = train_pose_autoencoder(windows, steps=100, batch_size=32, lr=3e-3, seed=0, **TINY)
    return initial, model


def test_shapes_and_keypoint_selection():
    model = PoseAutoencoder(window_frames=WINDOW, **TINY)
    x = torch.randn(3, WINDOW, NUM_KEYPOINTS, 2)
    assert len(FEATURE_KEYPOINTS) == 124  # 14 upper-body + 68 face + 42 hand points
    assert model.encode(x).shape == (3, 8)
    assert model(x).shape == (3, WINDOW, 124, 2)
    torch.testing.assert_close(model.select_keypoints(x), x[:, :, list(FEATURE_KEYPOINTS)])
    with pytest.raises(MmgtError, match="16-frame windows"):
        model(x[:, :8])
    with pytest.raises(MmgtError, match="divisible"):
        PoseAutoencoder(window_frames=18, num_downsamples=2)


def test_training_halves_the_reconstruction_error(trained):
    initial, model = trained
    held_out = _sinusoids(64, WINDOW, seed=1)
    trained_error = reconstruction_error(model, held_out)
    assert trained_error < 0.5 * reconstruction_error(initial, held_out)
    # It learned the motion, not only the rest pose: much better than always answering the mean pose.
    mean_pose_error = np.mean((held_out[:, :, list(FEATURE_KEYPOINTS)] - model.pose_mean.numpy()) ** 2)
    assert trained_error < 0.1 * mean_pose_error


def test_training_is_deterministic():
    windows = _sinusoids(32, WINDOW, seed=0)
    a = train_pose_autoencoder(windows, steps=3, batch_size=8, seed=7, **TINY)
    b = train_pose_autoencoder(windows, steps=3, batch_size=8, seed=7, **TINY)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_save_load_round_trip_gives_identical_encodings(trained, tmp_path):
    _, model = trained
    model.save_pretrained(tmp_path / "pose_ae")
    loaded = PoseAutoencoder.from_pretrained(tmp_path / "pose_ae")
    assert loaded.config.latent_dim == 8 and list(loaded.config.keypoints) == list(FEATURE_KEYPOINTS)
    x = torch.from_numpy(_sinusoids(4, WINDOW, seed=2))
    assert torch.equal(loaded.encode(x), model.encode(x))


def test_fgd_separates_real_from_noise_and_from_still_poses(trained):
    _, model = trained
    real = list(_sinusoids(24, 64, seed=3))
    real_again = list(_sinusoids(24, 64, seed=4))
    rng = np.random.default_rng(5)
    noise = [rng.normal(0.0, 0.3, (64, NUM_KEYPOINTS, 2)).astype(np.float32) for _ in range(24)]
    still = [np.repeat(pose[:1], 64, axis=0) for pose in real]  # right poses, no motion
    same = fgd(model, real, real_again, stride=4)
    assert fgd(model, real, noise, stride=4) > 10 * same
    assert fgd(model, real, still, stride=4) > 10 * same


def test_pose_features_slide_over_every_sequence(trained):
    _, model = trained
    features = pose_features(model, list(_sinusoids(3, 64, seed=3)), stride=8)
    assert features.shape == (3 * 7, 8)  # starts 0, 8, ..., 48 in each 64-frame sequence
    with torch.no_grad():
        first = model.encode(torch.from_numpy(_sinusoids(3, 64, seed=3)[:1, :WINDOW])).double().numpy()
    # Batched vs single float32 convs sum in another order (per CPU): errors scale with the largest latent (~16),
    # so a near-zero entry needs the absolute term (0.138 was off by 1.1e-5 relative on AVX2).
    np.testing.assert_allclose(features[:1], first, rtol=1e-5, atol=1e-4)


def test_sliding_windows_reject_short_sequences():
    with pytest.raises(MmgtError, match=r"poses\[1\]: 10 frames"):
        sliding_windows([np.zeros((20, NUM_KEYPOINTS, 2)), np.zeros((10, NUM_KEYPOINTS, 2))], window=16, stride=4)


def test_normalize_for_autoencoder_use_the_fixed_map_and_zero_unseen_points():
    keypoints = np.full((1, NUM_KEYPOINTS, 2), 300.0)  # 300 px on the 512 canvas -> 2 * 500 / 1000 - 1 = 0
    keypoints[0, 0] = [800.0, -200.0]  # -> (1, -1)
    scores = np.ones((1, NUM_KEYPOINTS))
    scores[0, 1] = 0.0
    out = normalize_for_autoencoder(PoseSequence(keypoints, scores, 512, 512))
    np.testing.assert_allclose(out[0, 0], [1.0, -1.0], atol=1e-6)
    np.testing.assert_allclose(out[0, 1:], 0.0, atol=1e-6)


def test_training_rejects_bad_windows():
    with pytest.raises(MmgtError, match="windows"):
        train_pose_autoencoder(np.zeros((4, WINDOW, NUM_KEYPOINTS)), steps=1)

"""Any-length stage-1 sampling: exact frame counts, window chaining, determinism, save/load identity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from builders import tiny_stage1
from mmgt.constants import LEGS, NUM_KEYPOINTS
from mmgt.contracts import PoseSequence
from mmgt.pipelines.audio_to_pose import AudioToPosePipeline

WINDOW = 8


@pytest.fixture(scope="module")
def pipe():
    return tiny_stage1(WINDOW)


def _reference():
    kp = np.tile(np.linspace(100, 400, NUM_KEYPOINTS)[:, None], (1, 2))[None].astype(np.float32)
    return PoseSequence(kp, np.ones((1, NUM_KEYPOINTS), np.float32), 512, 512)


def _wave(seconds: float) -> np.ndarray:
    t = np.arange(int(round(seconds * 16000))) / 16000
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)


@pytest.mark.parametrize("seconds, frames", [(0.5, 13), (0.64, 16), (0.97, 25)])
def test_exact_frame_count_any_length(pipe, seconds, frames):
    out = pipe(_wave(seconds), 16000, _reference(), num_inference_steps=2, progress=False)
    assert out.poses.num_frames == frames and out.keypoints.shape == (frames, NUM_KEYPOINTS, 3)
    assert (out.poses.width, out.poses.height, out.poses.fps) == (512, 512, 25.0)
    assert (out.poses.scores[:, list(LEGS)] == 0).all()  # legs removed (spec §2)


def test_windows_chain_from_the_previous_last_frame(pipe, monkeypatch):
    import mmgt.pipelines.audio_to_pose as module

    conds = []
    real = module.sample_window

    def spy(model, scheduler, cond, audio, *args, **kwargs):
        conds.append(cond.clone())
        out = real(model, scheduler, cond, audio, *args, **kwargs)
        spy.outputs.append(out.clone())
        return out

    spy.outputs = []
    monkeypatch.setattr(module, "sample_window", spy)
    pipe(_wave(1.0), 16000, _reference(), num_inference_steps=2, progress=False, smooth_span=0)
    assert len(conds) == 4  # ceil(25 / 8) contiguous windows from t = 0
    for k in range(1, 4):
        assert torch.equal(conds[k][0], spy.outputs[k - 1][0, -1])  # window k starts from frame 79 (here 7)


def test_seeded_determinism_and_save_load_identity(pipe, tmp_path):
    def run(p):
        return p(
            _wave(0.7),
            16000,
            _reference(),
            num_inference_steps=3,
            generator=torch.Generator().manual_seed(5),
            progress=False,
        ).keypoints

    first = run(pipe)
    assert np.array_equal(first, run(pipe))
    pipe.save_pretrained(tmp_path / "p")
    loaded = AudioToPosePipeline.from_pretrained(tmp_path / "p")
    assert loaded.config.audio_features == pipe.config.audio_features
    assert np.array_equal(first, run(loaded))


def test_motion_selection_and_bad_inputs(pipe):
    out = pipe(_wave(0.7), 16000, _reference(), num_inference_steps=2, num_candidates=3, progress=False)
    assert out.poses.num_frames == 18
    with pytest.raises(ValueError, match="non-empty mono"):
        pipe(np.zeros(0, np.float32), 16000, _reference())
    with pytest.raises(ValueError, match=">= 1"):
        pipe(_wave(0.5), 16000, _reference(), num_inference_steps=0)


def test_sixty_seconds_give_exactly_1500_frames(pipe):
    out = pipe(_wave(60.0), 16000, _reference(), num_inference_steps=1, guidance_scale=1.0, progress=False)
    assert out.poses.num_frames == 1500 and out.keypoints.shape == (1500, NUM_KEYPOINTS, 3)
    assert np.isfinite(out.keypoints).all()

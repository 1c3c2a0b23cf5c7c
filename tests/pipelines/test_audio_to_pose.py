"""Any-length stage-1 sampling: exact frame counts, window chaining, determinism, save/load identity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from builders import tiny_stage1
from mmgt.constants import LEGS, NUM_KEYPOINTS
from mmgt.contracts import PoseSequence
from mmgt.pipelines.audio_to_pose import AudioToPosePipeline
from mmgt.pipelines.sampling_defaults import PoseSampling
from mmgt.utils.audio_io import Audio

WINDOW = 8


@pytest.fixture(scope="module")
def pipe():
    return tiny_stage1(WINDOW)


def _reference():
    kp = np.tile(np.linspace(100, 400, NUM_KEYPOINTS)[:, None], (1, 2))[None].astype(np.float32)
    return PoseSequence(kp, np.ones((1, NUM_KEYPOINTS), np.float32), 512, 512)


def _wave(seconds: float) -> Audio:
    t = np.arange(int(round(seconds * 16000))) / 16000
    return Audio((0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32), 16000)


@pytest.mark.parametrize("seconds, frames", [(0.5, 13), (0.64, 16), (0.97, 25)])
def test_exact_frame_count_any_length(pipe, seconds, frames):
    out = pipe(_wave(seconds), _reference(), num_inference_steps=2, progress=False)
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
    pipe(_wave(1.0), _reference(), num_inference_steps=2, progress=False, smooth_span=0)
    assert len(conds) == 4  # ceil(25 / 8) contiguous windows from t = 0
    for k in range(1, 4):
        assert torch.equal(conds[k][0], spy.outputs[k - 1][0, -1])  # window k starts from frame 79 (here 7)


def test_seeded_determinism_and_save_load_identity(pipe, tmp_path):
    def run(p):
        return p(
            _wave(0.7),
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
    out = pipe(_wave(0.7), _reference(), num_inference_steps=2, num_candidates=3, progress=False)
    assert out.poses.num_frames == 18
    with pytest.raises(ValueError, match="audio must be an mmgt.utils.audio_io.Audio, got ndarray"):
        pipe(np.zeros(100, np.float32), _reference())
    with pytest.raises(ValueError, match="num_inference_steps must be a positive integer, got 0"):
        pipe(_wave(0.5), _reference(), num_inference_steps=0)
    with pytest.raises(ValueError, match="num_candidates must be >= 1"):
        pipe(_wave(0.5), _reference(), num_candidates=0)


def test_sampling_defaults_are_saved_and_call_arguments_override_them(pipe, tmp_path, monkeypatch):
    import mmgt.pipelines.audio_to_pose as module

    seen = []
    real = module.sample_window

    def spy(model, scheduler, cond, audio, steps, guidance, eta, generator):
        seen.append((type(scheduler).__name__, steps, guidance, eta))
        return real(model, scheduler, cond, audio, steps, guidance, eta, generator)

    monkeypatch.setattr(module, "sample_window", spy)
    pipe.set_sampling(num_inference_steps=3, guidance_scale=1.5)
    try:
        assert pipe.sampling == PoseSampling(num_inference_steps=3, guidance_scale=1.5)
        pipe.save_pretrained(tmp_path / "p")
    finally:
        pipe.set_sampling(**PoseSampling().to_dict())
    loaded = AudioToPosePipeline.from_pretrained(tmp_path / "p")
    loaded.set_progress_bar_config(disable=True)
    loaded(_wave(0.2), _reference())  # one window: the saved defaults
    loaded(_wave(0.2), _reference(), num_inference_steps=2, sampler="dpm", eta=None)  # overrides; None keeps
    assert seen == [("DDIMScheduler", 3, 1.5, 1.0), ("DPMSolverMultistepScheduler", 2, 1.5, 1.0)]


def test_sixty_seconds_give_exactly_1500_frames(pipe):
    out = pipe(_wave(60.0), _reference(), num_inference_steps=1, guidance_scale=1.0, progress=False)
    assert out.poses.num_frames == 1500 and out.keypoints.shape == (1500, NUM_KEYPOINTS, 3)
    assert np.isfinite(out.keypoints).all()

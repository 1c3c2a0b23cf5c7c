"""The stage-2 evaluation harness (``mmgt eval stage2``): conditions, metrics against real frames, side-by-sides."""

from __future__ import annotations

import numpy as np
import pytest

from builders import tiny_stage2
from mmgt.data.manifest import read_manifest
from mmgt.errors import MmgtError
from mmgt.training.validate_stage2 import evaluate_stage2
from mmgt.utils.video_io import read_video_frames

FRAMES = 12


def test_scores_each_condition_against_the_real_frames_and_writes_side_by_sides(synth_dataset, tmp_path):
    conditions = ("audio", "no_audio", "other_audio")
    result = evaluate_stage2(
        tiny_stage2(), synth_dataset, "test", num_frames=FRAMES, size=64, conditions=conditions,
        num_inference_steps=2, videos_dir=tmp_path,
    )  # fmt: skip
    clips = [r.id for r in read_manifest(synth_dataset, "test")]
    assert result["clips"] == clips
    # The real frames of the synthetic world open the mouth with the loudness: the ceiling of the mouth measure.
    assert all(row["mouth_r"] > 0.5 for row in result["per_clip"]["ground_truth"]), result["per_clip"]
    for cond in conditions:
        rows = result["per_clip"][cond]
        assert len(rows) == len(clips)
        for row in rows:
            extra = {"mouth_r_driving"} if cond == "other_audio" else set()
            assert set(row) == {"psnr", "ssim", "mouth_r", "hand_psnr", "colour_error", "identity_ok"} | extra
            assert 0 < row["psnr"] < 20 and row["ssim"] < 0.5  # random weights: noise, far from the real frames
            assert 0 < row["hand_psnr"] < 20
            assert row["identity_ok"] in (0.0, 1.0) and -1 <= row["mouth_r"] <= 1
        assert result["mean"][cond]["psnr"] == np.mean([r["psnr"] for r in rows])
    # A fresh MM-HAA adds exactly zero, so the audio changes nothing: the rows are identical (other_audio's r
    # against the speech that drove it aside).
    assert result["per_clip"]["audio"] == result["per_clip"]["no_audio"]
    other = [{k: v for k, v in row.items() if k != "mouth_r_driving"} for row in result["per_clip"]["other_audio"]]
    assert other == result["per_clip"]["audio"]
    for clip in clips:  # real | audio | no audio | other audio, with the clip's audio
        video = read_video_frames(tmp_path / f"{clip}.mp4")
        assert video.shape == (FRAMES, 64, 4 * 64, 3)
        for i, cond in enumerate(conditions, start=1):  # each condition alone, for `mmgt eval video --generated`
            alone = read_video_frames(tmp_path / cond / f"{clip}.mp4")
            assert alone.shape == (FRAMES, 64, 64, 3)
            own, real = (np.abs(alone.astype(int) - video[:, :, j * 64 : (j + 1) * 64]).mean() for j in (i, 0))
            assert own < 10 and own < real / 3, (own, real)  # x264 on noise frames is lossy; real frames differ more


def test_other_audio_needs_two_clips(synth_dataset):
    with pytest.raises(MmgtError, match="other_audio condition needs at least 2 clips"):
        evaluate_stage2(tiny_stage2(), synth_dataset, "test", num_clips=1, conditions=("other_audio",))


def test_each_condition_drives_the_pipeline_with_its_own_audio(synth_dataset, monkeypatch):
    """audio: the clip's speech; no_audio: no audio at all (zero tokens); silent_audio: zeros of the same length and
    rate through the encoder; other_audio: the next clip's speech."""
    pipe, seen = tiny_stage2(), []
    real_call = type(pipe).__call__

    def recording(self, reference, poses, audio, **kwargs):
        seen.append(None if audio is None else (audio.name, audio.sample_rate, audio.wave.copy()))
        return real_call(self, reference, poses, audio, **kwargs)

    conditions = ("audio", "no_audio", "silent_audio", "other_audio")
    monkeypatch.setattr(type(pipe), "__call__", recording)
    evaluate_stage2(
        pipe, synth_dataset, "test", num_clips=2, num_frames=FRAMES, size=64, conditions=conditions,
        num_inference_steps=1,
    )  # fmt: skip
    clips = [r.id for r in read_manifest(synth_dataset, "test")][:2]
    assert len(seen) == 2 * len(conditions)
    for i, clip in enumerate(clips):
        own, none, silent, other = seen[i * 4 : i * 4 + 4]
        assert none is None
        assert own[0] == silent[0] == clip and other[0] == clips[(i + 1) % 2]
        assert own[1] == silent[1] == 16000 and len(own[2]) == len(silent[2]) == FRAMES * 16000 // 25
        assert np.abs(own[2]).max() > 0.05 and not silent[2].any()  # speech vs exact zeros
        assert not np.array_equal(other[2], own[2])

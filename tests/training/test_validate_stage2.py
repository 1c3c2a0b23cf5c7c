"""The stage-2 evaluation harness (``mmgt eval stage2``): conditions, metrics against real frames, side-by-sides."""

from __future__ import annotations

import numpy as np

from builders import tiny_stage2
from mmgt.data.manifest import read_manifest
from mmgt.training.validate_stage2 import evaluate_stage2
from mmgt.utils.video_io import read_video_frames

FRAMES = 12


def test_scores_each_condition_against_the_real_frames_and_writes_side_by_sides(synth_dataset, tmp_path):
    result = evaluate_stage2(
        tiny_stage2(), synth_dataset, "test", num_frames=FRAMES, size=64, num_inference_steps=2, videos_dir=tmp_path
    )
    clips = [r.id for r in read_manifest(synth_dataset, "test")]
    assert result["clips"] == clips
    # The real frames of the synthetic world open the mouth with the loudness: the ceiling of the mouth measure.
    assert all(row["mouth_r"] > 0.5 for row in result["per_clip"]["ground_truth"]), result["per_clip"]
    for cond in ("audio", "no_audio"):
        rows = result["per_clip"][cond]
        assert len(rows) == len(clips)
        for row in rows:
            assert set(row) == {"psnr", "ssim", "mouth_r", "colour_error", "identity_ok"}
            assert 0 < row["psnr"] < 20 and row["ssim"] < 0.5  # random weights: noise, far from the real frames
            assert row["identity_ok"] in (0.0, 1.0) and -1 <= row["mouth_r"] <= 1
        assert result["mean"][cond]["psnr"] == np.mean([r["psnr"] for r in rows])
    # A fresh MM-HAA adds exactly zero, so zeroing the audio changes nothing: the rows are identical.
    assert result["per_clip"]["audio"] == result["per_clip"]["no_audio"]
    for clip in clips:  # real | audio | no audio, with the clip's audio
        video = read_video_frames(tmp_path / f"{clip}.mp4")
        assert video.shape == (FRAMES, 64, 3 * 64, 3)

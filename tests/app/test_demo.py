"""The bundled demo model: it loads with zero downloads, `mmgt demo` writes a video with the audio and a preview,
and the output keeps the speaker's identity (shirt colour) while following the poses."""

from __future__ import annotations

import numpy as np
import pytest

from mmgt.app.demo import demo_assets, demo_speech
from mmgt.cli import main
from mmgt.contracts import PoseSequence
from mmgt.errors import ModelFolderError
from mmgt.evaluation.video_regions import torso_colour
from mmgt.pipelines.mmgt_pipeline import MMGTPipeline
from mmgt.pipelines.sampling_defaults import video_sampling
from mmgt.utils.image_io import read_image
from mmgt.utils.video_io import probe_video, read_video_frames


def test_bundled_demo_is_complete_and_small():
    assets = demo_assets()
    size = sum(p.stat().st_size for p in assets.model.parent.rglob("*") if p.is_file())
    assert size <= 30 * 2**20  # the brief's limit for committed weights
    pipe = MMGTPipeline.from_pretrained(assets.model)
    assert pipe.config["size"] == 128 and assets.reference_pose().num_frames == 1
    # The folder samples as the tiny preset does (its motion modules trained on 8-frame windows).
    assert pipe.stage2.sampling == video_sampling("tiny", window_frames=8)
    assert pipe.stage2.sampling.sampler == "dpmpp_2m" and pipe.stage2.sampling.num_inference_steps == 4


def test_missing_demo_says_how_to_rebuild_it(tmp_path):
    with pytest.raises(ModelFolderError, match="make demo-weights"):
        demo_assets(tmp_path)


def test_demo_speaks_given_audio_keeps_the_identity(tmp_path, capsys):
    audio = demo_speech(tmp_path / "speech.wav", 1.2, seed=3)
    out, inter = tmp_path / "demo.mp4", tmp_path / "inter"
    code = main(
        [
            "demo",
            "--audio",
            str(audio),
            "-o",
            str(out),
            "--steps",
            "8",
            "--pose-steps",
            "10",
            "--save-intermediates",
            str(inter),
            "--quiet",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0 and f"{out}: 30 frames (1.20 s) with audio" in printed
    assert "demo_preview.mp4" in printed and probe_video(tmp_path / "demo_preview.mp4").width == 4 * 128
    info = probe_video(out)
    assert (info.num_frames, info.width, info.has_audio) == (30, 128, True)
    frames, poses = read_video_frames(out), PoseSequence.load(inter / "poses.npz")
    reference = read_image(demo_assets().image)
    shirt = torso_colour(reference[None], demo_assets().reference_pose())
    generated = torso_colour(frames, poses)
    assert np.abs(generated - shirt).max() < 40, (generated, shirt)  # the same blue shirt (mp4 + model error)

"""The end-to-end pipeline on tiny random models (64 px, 2 steps): exact frame counts, save/load identity, the
intermediates, audio checks and model-folder errors."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from builders import tiny_stage1, tiny_stage2
from mmgt.data.synthetic.speaker import rest_pose
from mmgt.data.synthetic.world import make_identities, reference_image
from mmgt.errors import MmgtError, ModelFolderError
from mmgt.pipelines.mmgt_pipeline import MMGTPipeline
from mmgt.pipelines.sampling_defaults import PoseSampling, VideoSampling
from mmgt.utils.audio_io import Audio

SIZE = 64
FAST = dict(stage1={"num_inference_steps": 2}, stage2={"num_inference_steps": 2}, progress=False)


def _speech(seconds: float, sr: int = 16000) -> Audio:
    t = np.arange(int(round(seconds * sr))) / sr
    return Audio((0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32), sr)


@pytest.fixture(scope="module")
def speaker():
    identity = make_identities(1, seed=0)[0]
    return reference_image(identity, SIZE), rest_pose(identity.body, SIZE)


@pytest.fixture(scope="module")
def pipe():
    return MMGTPipeline(tiny_stage1(), tiny_stage2(("adapter", "pose", "motion")), size=SIZE)


@pytest.mark.parametrize("seconds, frames", [(0.5, 13), (1.0, 25), (1.01, 26)])
def test_one_frame_per_25th_of_a_second_and_the_intermediates(pipe, speaker, seconds, frames):
    image, pose = speaker
    out = pipe(image, _speech(seconds), reference_pose=pose, **FAST)
    assert out.frames.shape == (frames, SIZE, SIZE, 3) and out.frames.dtype == np.uint8
    assert out.poses.num_frames == frames and (out.poses.width, out.poses.height) == (SIZE, SIZE)
    assert out.masks.lips.shape == (frames, SIZE, SIZE) and out.masks.face_hands.any()
    assert out.reference.shape == (SIZE, SIZE, 3) and out.audio.wave.shape == (int(round(seconds * 16000)),)


def test_other_sample_rates_are_resampled_and_kept_for_muxing(pipe, speaker):
    image, pose = speaker
    speech = _speech(1.0, 44100)
    out = pipe(image, speech, reference_pose=pose, **FAST)
    assert out.frames.shape[0] == 25 and out.audio is speech  # kept as given, for muxing
    assert 16000 in speech._resampled  # the models read 16 kHz, resampled once from the given samples


def test_save_load_round_trip_gives_identical_video(pipe, speaker, tmp_path):
    image, pose = speaker
    folder = pipe.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["mmgt.json", "stage1", "stage2"]
    loaded = MMGTPipeline.from_pretrained(folder)
    assert loaded.config == pipe.config
    a = pipe(image, _speech(0.6), reference_pose=pose, seed=3, **FAST)
    b = loaded(image, _speech(0.6), reference_pose=pose, seed=3, **FAST)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.poses.keypoints, b.poses.keypoints)
    c = loaded(image, _speech(0.6), reference_pose=pose, seed=4, **FAST)
    assert not np.array_equal(a.frames, c.frames)


def test_streaming_gives_the_same_frames_and_a_pose_callback(pipe, speaker):
    image, pose = speaker
    chunks, seen = [], {}
    full = pipe(image, _speech(0.6), reference_pose=pose, **FAST).frames
    out = pipe(
        image,
        _speech(0.6),
        reference_pose=pose,
        frame_callback=chunks.append,
        pose_callback=lambda p, ref: seen.update(poses=p, ref=ref),
        return_masks=False,
        **FAST,
    )
    assert out.frames is None and out.masks is None
    np.testing.assert_array_equal(np.concatenate(chunks), full)
    assert seen["poses"].num_frames == 15 and seen["ref"].shape == (SIZE, SIZE, 3)


def test_detected_reference_when_no_pose_is_given(pipe, speaker):
    image, _ = speaker
    out = pipe(np.pad(image, ((0, 0), (32, 32), (0, 0)), mode="edge"), _speech(0.3), **FAST)  # wide: cropped
    assert out.frames.shape == (8, SIZE, SIZE, 3) and out.reference_pose.num_frames == 1


def test_audio_checks(pipe, caplog):
    with pytest.raises(MmgtError, match="longer than the maximum of 2 s"):
        pipe.check_audio(_speech(2.5), max_seconds=2)
    with pytest.raises(MmgtError, match="audio must be an mmgt.utils.audio_io.Audio"):
        pipe.check_audio(np.zeros(100, np.float32))
    with caplog.at_level(logging.WARNING):
        pipe.check_audio(Audio(np.zeros(16000), 16000))
    assert "silent" in caplog.text
    pipe.check_audio(_speech(2.5), max_seconds=0)  # 0 = no limit


def test_unknown_settings_and_bad_size_are_refused():
    with pytest.raises(MmgtError, match="unknown model setting"):
        MMGTPipeline(tiny_stage1(), tiny_stage2(), steps=3)  # sampling lives in the stages now
    with pytest.raises(MmgtError, match="multiple of 8"):
        MMGTPipeline(tiny_stage1(), tiny_stage2(), size=60)


@pytest.fixture
def saved(pipe, tmp_path):
    return pipe.save_pretrained(tmp_path / "model")


def test_missing_parts_are_named(saved):
    shutil.rmtree(saved / "stage2" / "pose_guider")
    with pytest.raises(ModelFolderError, match="stage2"):
        MMGTPipeline.from_pretrained(saved)
    (saved / "mmgt.json").unlink()
    with pytest.raises(ModelFolderError, match="no mmgt.json"):
        MMGTPipeline.from_pretrained(saved)
    with pytest.raises(ModelFolderError, match="not found"):
        MMGTPipeline.from_pretrained(saved / "nowhere")


def test_mismatched_parts_are_refused(saved):
    config = saved / "stage2" / "audio_projection" / "config.json"
    cfg = json.loads(config.read_text())
    config.write_text(json.dumps({**cfg, "input_dim": cfg["input_dim"] + 1}))
    with pytest.raises(ModelFolderError, match="stage2"):
        MMGTPipeline.from_pretrained(saved)


def test_encoder_recipes_need_their_folder(saved):
    index = saved / "stage2" / "model_index.json"
    cfg = json.loads(index.read_text())
    cfg["audio_features"]["speech"] = {**cfg["audio_features"]["speech"], "type": "wav2vec2", "folder": "w2v"}
    index.write_text(json.dumps(cfg))
    with pytest.raises(ModelFolderError, match="encoders/stage2"):
        MMGTPipeline.from_pretrained(saved)


def test_reference_pose_needs_a_square_image(pipe, speaker):
    image, pose = speaker
    with pytest.raises(MmgtError, match="square"):
        pipe(image[:, :40], _speech(0.3), reference_pose=pose, **FAST)


def test_weights_assemble_combines_two_stage_exports(pipe, tmp_path, capsys):
    from mmgt.cli import main

    pipe.stage1.save_pretrained(tmp_path / "s1")
    pipe.stage2.save_pretrained(tmp_path / "s2")
    code = main(
        [
            "weights",
            "assemble",
            "--stage1",
            str(tmp_path / "s1"),
            "--stage2",
            str(tmp_path / "s2"),
            "--size",
            "32",
            "--steps",
            "7",
            "--pose-guidance",
            "1.5",
            "-o",
            str(tmp_path / "model"),
        ]
    )
    assert code == 0 and "model folder written" in capsys.readouterr().out
    loaded = MMGTPipeline.from_pretrained(tmp_path / "model")
    assert loaded.config["size"] == 32
    assert loaded.stage2.sampling == VideoSampling(num_inference_steps=7)  # the flag, over the export's value
    assert loaded.stage1.sampling == PoseSampling(guidance_scale=1.5)
    code = main(
        [
            "weights",
            "assemble",
            "--stage1",
            str(tmp_path / "s2" / "vae"),
            "--stage2",
            str(tmp_path / "s2"),
            "--size",
            "32",
            "-o",
            str(tmp_path / "bad"),
        ]
    )
    assert code == 1 and "not an exported pipeline folder" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_sampling_defaults_come_from_the_stages_and_calls_override_them(pipe, speaker, tmp_path, monkeypatch):
    """The folder's saved values are used when a call leaves them out; a call's values win; None keeps the model's."""
    image, pose = speaker
    pipe.stage1.set_sampling(num_inference_steps=2)
    pipe.stage2.set_sampling(num_inference_steps=3, guidance_scale=2.5)
    try:
        loaded = MMGTPipeline.from_pretrained(pipe.save_pretrained(tmp_path / "model"))
    finally:
        pipe.stage1.set_sampling(**PoseSampling().to_dict())
        pipe.stage2.set_sampling(**VideoSampling().to_dict())
    steps = []
    real = loaded.stage2.scheduler.set_timesteps
    monkeypatch.setattr(loaded.stage2.scheduler, "set_timesteps", lambda n, **k: steps.append(n) or real(n, **k))
    loaded(image, _speech(0.2), reference_pose=pose, progress=False)
    loaded(image, _speech(0.2), reference_pose=pose, stage2={"num_inference_steps": 1, "guidance_scale": None})
    assert steps == [3, 1]
    assert loaded.stage2.sampling.guidance_scale == 2.5 and loaded.stage1.sampling.num_inference_steps == 2


def test_version_1_folders_load_with_their_sampling_values(pipe, saved):
    """mmgt 0.1 kept steps and guidance in mmgt.json and called the branch weights region_scales and the adapter's
    branches regions."""
    (saved / "mmgt.json").write_text(
        json.dumps(
            {
                "format": "mmgt-pipeline",
                "version": 1,
                "config": {
                    "size": 64,
                    "pose_steps": 7,
                    "pose_guidance": 1.5,
                    "steps": 9,
                    "guidance": 4.0,
                    "max_audio_seconds": 30.0,
                },
            }
        )
    )
    index = saved / "stage2" / "model_index.json"
    cfg = json.loads(index.read_text())
    for key in ("branch_weights", "num_inference_steps", "guidance_scale", "audio_guidance_scale"):
        cfg.pop(key)
    index.write_text(json.dumps({**cfg, "region_scales": [1.0, 0.5, 3.0]}))
    adapter = saved / "stage2" / "audio_adapter" / "config.json"
    cfg = json.loads(adapter.read_text())
    adapter.write_text(json.dumps({**cfg, "regions": cfg.pop("branches")}))
    loaded = MMGTPipeline.from_pretrained(saved)
    assert tuple(loaded.stage2.audio_adapter.config.branches) == ("global", "face_hands", "lips")
    assert loaded.config == {"size": 64, "max_audio_seconds": 30.0}
    assert (loaded.stage1.sampling.num_inference_steps, loaded.stage1.sampling.guidance_scale) == (7, 1.5)
    assert (loaded.stage2.sampling.num_inference_steps, loaded.stage2.sampling.guidance_scale) == (9, 4.0)
    assert loaded.stage2.sampling.branch_weights == (1.0, 0.5, 3.0)
    resaved = loaded.save_pretrained(saved.parent / "resaved")
    assert json.loads((resaved / "mmgt.json").read_text())["version"] == 2
    assert "region_scales" not in json.loads((resaved / "stage2" / "model_index.json").read_text())
    assert "regions" not in json.loads((resaved / "stage2" / "audio_adapter" / "config.json").read_text())
    again = MMGTPipeline.from_pretrained(resaved)
    assert again.stage2.sampling == loaded.stage2.sampling and again.stage1.sampling == loaded.stage1.sampling

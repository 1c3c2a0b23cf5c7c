"""``mmgt generate`` end to end on a tiny random model, and every bad input of the robustness list: a one-line
error naming the problem, exit status 1 and no output file (silent audio and unusual image formats are not errors)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from skimage import data

from builders import tiny_stage1, tiny_stage2
from mmgt.cli import main
from mmgt.data.synthetic.world import make_identities, reference_image
from mmgt.errors import MmgtError
from mmgt.pipelines.mmgt_pipeline import MMGTPipeline
from mmgt.utils.audio_io import save_audio
from mmgt.utils.video_io import probe_video

SIZE = 64
FAST = ["--steps", "2", "--pose-steps", "2", "--quiet"]


def _speech(seconds: float, sr: int = 16000, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("generate")
    model = MMGTPipeline(tiny_stage1(), tiny_stage2(("adapter", "pose", "motion")), size=SIZE)
    model.save_pretrained(root / "model")
    speaker = reference_image(make_identities(1, seed=0)[0], 128)  # (128, 128, 3), detectable by MediaPipe
    Image.fromarray(speaker).save(root / "speaker.png")
    save_audio(root / "speech.wav", _speech(1.0))
    Image.fromarray(data.astronaut()).save(root / "astronaut.png")  # a real photo: MediaPipe finds her in gray too
    return root


def _generate(files, tmp_path, capsys, *extra, image=None, audio=None, model=None):
    out = tmp_path / "out.mp4"
    argv = [
        "generate",
        "--model",
        str(model or files / "model"),
        "--image",
        str(image or files / "speaker.png"),
        "--audio",
        str(audio or files / "speech.wav"),
        "-o",
        str(out),
        *FAST,
        *extra,
    ]
    code = main(argv)
    return code, out, capsys.readouterr()


def _assert_refused(code, out, captured, *needles):
    errors = [ln for ln in captured.err.splitlines() if ln.startswith("mmgt: error:")]
    assert code == 1 and len(errors) == 1, captured.err
    assert all(n in errors[0] for n in needles), errors[0]
    assert not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(".out")]


def test_generate_writes_exact_frames_with_audio_a_preview_and_intermediates(files, tmp_path):
    out, preview, inter = tmp_path / "clip.mp4", tmp_path / "preview.mp4", tmp_path / "inter"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmgt",
            "generate",
            "--model",
            str(files / "model"),
            "--image",
            str(files / "speaker.png"),
            "--audio",
            str(files / "speech.wav"),
            "-o",
            str(out),
            *FAST,
            "--preview",
            str(preview),
            "--save-intermediates",
            str(inter),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert f"{out}: 25 frames (1.00 s) with audio" in res.stdout
    info = probe_video(out)
    assert (info.num_frames, info.width, info.height, info.has_audio) == (25, SIZE, SIZE, True)
    assert abs(info.audio_duration_s - info.duration_s) <= 0.04
    side = probe_video(preview)
    assert (side.num_frames, side.width, side.height, side.has_audio) == (25, 4 * SIZE, SIZE, True)
    assert sorted(p.name for p in inter.iterdir()) == ["masks", "pose.mp4", "poses.npz", "reference.png"]
    assert {p.name for p in (inter / "masks").iterdir()} == {"lips.mp4", "face_hands.mp4", "hands.mp4"}
    assert probe_video(inter / "masks" / "lips.mp4").num_frames == 25


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_grayscale_rgba_and_16_bit_images_are_handled(files, tmp_path, capsys, mode):
    rgb = Image.open(files / "astronaut.png")
    if mode == "I;16":
        image = Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257).astype(np.uint16))
    else:
        image = rgb.convert(mode)
    path = tmp_path / f"astronaut_{mode.replace(';', '')}.png"
    image.save(path)
    code, out, captured = _generate(files, tmp_path, capsys, image=path)
    assert code == 0, captured.err
    assert probe_video(out).num_frames == 25


def test_silent_audio_is_allowed_with_a_warning(files, tmp_path):
    silent = save_audio(tmp_path / "silent.wav", np.zeros(8000, np.float32))
    out = tmp_path / "silent.mp4"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmgt",
            "generate",
            "--model",
            str(files / "model"),
            "--image",
            str(files / "speaker.png"),
            "--audio",
            str(silent),
            "-o",
            str(out),
            *FAST,
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0 and "mmgt: WARNING: " in res.stderr and "the audio is silent" in res.stderr
    assert probe_video(out).num_frames == 13


@pytest.fixture
def bad(tmp_path, files):
    made = {"missing": tmp_path / "missing.wav", "empty": tmp_path / "empty.wav", "text": tmp_path / "notes.wav"}
    made["empty"].write_bytes(b"")
    made["text"].write_text("these are not samples\n" * 20)
    sf.write(made.setdefault("zero_length", tmp_path / "zero.wav"), np.zeros(0, np.float32), 16000)  # header only
    made["long"] = save_audio(tmp_path / "long.wav", _speech(3.0))
    return made


@pytest.mark.parametrize(
    "kind, problem",
    [("missing", "not found"), ("empty", "empty"), ("text", ""), ("zero_length", "0 samples")],
)
def test_bad_audio_is_refused(files, tmp_path, capsys, bad, kind, problem):
    code, out, captured = _generate(files, tmp_path, capsys, audio=bad[kind])
    _assert_refused(code, out, captured, bad[kind].name, problem)


def test_audio_over_the_maximum_is_refused(files, tmp_path, capsys, bad):
    code, out, captured = _generate(files, tmp_path, capsys, "--max-seconds", "2", audio=bad["long"])
    _assert_refused(code, out, captured, "3.0 s is longer than the maximum of 2 s")


def test_a_file_that_is_not_an_image_is_refused(files, tmp_path, capsys):
    fake = tmp_path / "photo.png"
    shutil.copy(files / "speech.wav", fake)
    code, out, captured = _generate(files, tmp_path, capsys, image=fake)
    _assert_refused(code, out, captured, "photo.png", "not an image")


def test_an_image_without_a_person_is_refused(files, tmp_path, capsys):
    empty = tmp_path / "wall.png"
    Image.fromarray(np.full((128, 128, 3), 180, np.uint8)).save(empty)
    code, out, captured = _generate(files, tmp_path, capsys, image=empty)
    _assert_refused(code, out, captured, "no person")


def test_a_model_folder_with_a_missing_or_mismatched_part_is_refused(files, tmp_path, capsys):
    broken = shutil.copytree(files / "model", tmp_path / "broken")
    shutil.rmtree(broken / "stage1" / "denoiser")
    code, out, captured = _generate(files, tmp_path, capsys, model=broken)
    _assert_refused(code, out, captured, "stage1")
    mismatched = shutil.copytree(files / "model", tmp_path / "mismatched")
    config = mismatched / "stage2" / "audio_projection" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "num_tokens": 3, "input_dim": 7}))
    code, out, captured = _generate(files, tmp_path, capsys, model=mismatched)
    _assert_refused(code, out, captured, "stage2")


def test_without_flags_the_model_folders_sampling_values_are_used_and_flags_override_them(
    files, tmp_path, monkeypatch
):
    """No sampling literal in the CLI: `mmgt generate` reads steps and guidance from the model folder."""
    import mmgt.pipelines.audio_to_pose as stage1_module
    import mmgt.pipelines.pose_to_video as stage2_module

    model = MMGTPipeline.from_pretrained(files / "model")
    model.stage1.set_sampling(num_inference_steps=2, guidance_scale=1.5)
    model.stage2.set_sampling(num_inference_steps=3, guidance_scale=2.5)
    folder = model.save_pretrained(tmp_path / "model")
    seen = []
    real_sample, real_guidance = stage1_module.sample_window, stage2_module.Guidance

    def sample_window(model, scheduler, cond, audio, steps, guidance, eta, generator):
        seen.append(("stage1", steps, guidance))
        return real_sample(model, scheduler, cond, audio, steps, guidance, eta, generator)

    def guidance(scale, audio_scale=None):
        seen.append(("stage2", scale))
        return real_guidance(scale, audio_scale)

    monkeypatch.setattr(stage1_module, "sample_window", sample_window)
    monkeypatch.setattr(stage2_module, "Guidance", guidance)
    steps = []
    real_set = stage2_module.PoseToVideoPipeline.progress_bar
    monkeypatch.setattr(
        stage2_module.PoseToVideoPipeline,
        "progress_bar",
        lambda self, total: steps.append(total) or real_set(self, total=total),
    )
    argv = [
        "generate",
        "--model",
        str(folder),
        "--image",
        str(files / "speaker.png"),
        "--audio",
        str(files / "speech.wav"),
    ]
    assert main([*argv, "-o", str(tmp_path / "a.mp4")]) == 0  # no sampling flags at all
    # 25 frames: 4 stage-1 windows of 8; stage 2 builds its guidance and the conditional-only batch of the steps
    # outside its guidance interval (scale 1).
    assert seen == [("stage1", 2, 1.5)] * 4 + [("stage2", 2.5), ("stage2", 1.0)]
    assert steps == [3 * 4]  # 3 steps x 4 context windows (12 frames, overlap 4, closed loop: starts 0, 8, 16, 24)
    seen.clear(), steps.clear()
    flags = ["--steps", "1", "--guidance", "4", "--pose-steps", "1", "--pose-guidance", "1"]
    assert main([*argv, "-o", str(tmp_path / "b.mp4"), *flags]) == 0
    assert seen == [("stage1", 1, 1.0)] * 4 + [("stage2", 4.0), ("stage2", 1.0)] and steps == [1 * 4]


def test_a_failure_mid_video_leaves_no_output_preview_or_intermediates(files, tmp_path, monkeypatch, capsys):
    import mmgt.pipelines.pose_to_video as stage2_module

    real = stage2_module.PoseToVideoPipeline.iter_decoded

    def fails_after_one_chunk(self, latents, chunk_size):
        yield next(real(self, latents, chunk_size))  # frames reach every writer ...
        raise MmgtError("decoder ran out of memory")  # ... then the run fails

    monkeypatch.setattr(stage2_module.PoseToVideoPipeline, "iter_decoded", fails_after_one_chunk)
    code, out, captured = _generate(
        files,
        tmp_path,
        capsys,
        "--preview",
        str(tmp_path / "side.mp4"),
        "--save-intermediates",
        str(tmp_path / "inter"),
    )
    _assert_refused(code, out, captured, "decoder ran out of memory")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no video, preview, intermediates folder or temp file

"""Stage-2 any-length inference on tiny random components (64x64, 2 steps, CPU): shapes, determinism, save/load
identity, audio and branch-weight wiring, window averaging, streaming, schedulers, the CLI and input errors."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler
from PIL import Image

import mmgt.models.denoising_unet as unet_module
from builders import TINY_SPEECH, tiny_stage2
from mmgt.audio.features import feature_spec
from mmgt.audio.mel import mel_features
from mmgt.constants import NUM_KEYPOINTS
from mmgt.contracts import PoseSequence
from mmgt.diffusion.guidance import Guidance
from mmgt.errors import MmgtError
from mmgt.models.audio_projection import AudioProjection
from mmgt.models.stage2_presets import preset
from mmgt.pipelines.pose_to_video import PoseToVideoPipeline
from mmgt.pipelines.reference import CLIP_MEAN, CLIP_STD, clip_pixels, fit_image
from mmgt.pose.render import render_pose_sequence
from mmgt.utils.audio_io import Audio

SIZE = 64
STEPS = 2


_build = tiny_stage2


@pytest.fixture(scope="module")
def fresh():
    return _build()


@pytest.fixture(scope="module")
def trained():
    """All zero-initialised parts perturbed, as after training."""
    return _build(("adapter", "pose", "motion"))


def _poses(num_frames: int, size: int = SIZE) -> PoseSequence:
    """A pose whose points drift a little each frame, all visible."""
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2 * size, 0.8 * size, (NUM_KEYPOINTS, 2))
    drift = np.arange(num_frames)[:, None, None] * np.array([0.5, -0.3])
    kp = (base[None] + drift).astype(np.float32)
    return PoseSequence(kp, np.ones((num_frames, NUM_KEYPOINTS), np.float32), size, size)


def _image(height: int = SIZE, width: int = SIZE) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], axis=-1).astype(np.uint8)


def _wave(num_frames: int, sample_rate: int = 16000) -> Audio:
    t = np.arange(num_frames * sample_rate // 25) / sample_rate
    return Audio((0.4 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 4 * t) > 0)).astype(np.float32), sample_rate)


def _run(pipe, num_frames: int = 5, seed: int = 0, **kwargs):
    kwargs.setdefault("num_inference_steps", STEPS)
    return pipe(_image(), _poses(num_frames), generator=torch.Generator().manual_seed(seed), **kwargs).frames


# ---------------------------------------------------------------------------------------------------------------------
# Output and determinism
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_frames", [5, 12, 20])  # 20 frames: three windows of 12 (closed loop)
def test_one_uint8_frame_per_pose_frame(trained, num_frames):
    frames = _run(trained, num_frames, audio=_wave(num_frames))
    assert frames.shape == (num_frames, SIZE, SIZE, 3) and frames.dtype == np.uint8
    assert frames.std() > 1.0  # decoded pictures, not a constant fill


def test_seeded_runs_are_identical_and_seeds_differ(trained):
    a, b = _run(trained, seed=3), _run(trained, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _run(trained, seed=4))


def test_save_pretrained_from_pretrained_gives_identical_frames(trained, tmp_path):
    trained.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["audio_adapter"] == ["mmgt.models.audio_attention", "AudioAttentionAdapter"]
    assert index["unet"] == ["diffusers", "UNetMotionModel"]
    assert (tmp_path / "audio_adapter" / "config.json").is_file()
    scheduler_cfg = json.loads((tmp_path / "scheduler" / "scheduler_config.json").read_text())
    assert (scheduler_cfg["prediction_type"], scheduler_cfg["beta_schedule"]) == ("v_prediction", "scaled_linear")
    loaded = PoseToVideoPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.branch_weights == [1.0, 1.0, 2.0] and loaded.config.window_frames == 12
    assert loaded.sampling == trained.sampling
    assert loaded.config.audio_features == trained.config.audio_features
    wave = _wave(5)
    np.testing.assert_array_equal(_run(loaded, audio=wave), _run(trained, audio=wave))


def test_pose_mouth_false_shows_the_pose_guider_no_mouth_dots_and_is_saved(trained, tmp_path):
    seen = []  # what the pose guider reads: (w, 3, H, W) in [0, 1], once per window (5 frames: one window)
    hook = trained.pose_guider.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    try:
        full = _run(trained)
        trained.register_to_config(pose_mouth=False)
        bare = _run(trained)
        trained.save_pretrained(tmp_path)
    finally:
        trained.register_to_config(pose_mouth=True)
        hook.remove()
    want = {
        mouth: torch.from_numpy(render_pose_sequence(_poses(5), mouth=mouth)).permute(0, 3, 1, 2) / 255.0
        for mouth in (True, False)
    }
    assert len(seen) == 2 and not torch.equal(want[True], want[False])
    torch.testing.assert_close(seen[0], want[True])
    torch.testing.assert_close(seen[1], want[False])
    assert not np.array_equal(full, bare)
    loaded = PoseToVideoPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.pose_mouth is False
    np.testing.assert_array_equal(_run(loaded), bare)


def test_mask_variant_is_saved_and_builds_the_global_branch(fresh, tmp_path):
    def global_and_lips(pipe):
        masks = pipe.prepare_window(_poses(6), list(range(6)), None).branch_masks[0]  # (6, 3, 8, 8)
        return masks[:, 0], masks[:, 2]

    assert fresh.config.mask_variant == "paper"
    paper, lips = global_and_lips(fresh)
    torch.testing.assert_close(paper, 1.0 - lips, rtol=0, atol=0)
    assert lips.max() == 1.0
    fresh.register_to_config(mask_variant="official_audio2vid")
    try:
        demo, lips = global_and_lips(fresh)
        fresh.save_pretrained(tmp_path)
    finally:
        fresh.register_to_config(mask_variant="paper")
    torch.testing.assert_close(demo, 1.0 + lips, rtol=0, atol=0)
    assert PoseToVideoPipeline.from_pretrained(tmp_path).config.mask_variant == "official_audio2vid"
    with pytest.raises(MmgtError, match="mask variant must be one of"):
        PoseToVideoPipeline(**fresh.components, mask_variant="1 + lips")


# ---------------------------------------------------------------------------------------------------------------------
# Audio, branch weights and guidance
# ---------------------------------------------------------------------------------------------------------------------
def test_zero_initialised_adapter_ignores_audio_and_branch_weights(fresh):
    base = _run(fresh, output_type="latent")
    torch.testing.assert_close(_run(fresh, audio=_wave(5), output_type="latent"), base, rtol=0, atol=0)
    torch.testing.assert_close(_run(fresh, branch_weights=(0.0, 3.0, 5.0), output_type="latent"), base, rtol=0, atol=0)


def test_trained_adapter_hears_audio_and_branch_weights(trained):
    base = _run(trained, audio=_wave(5), output_type="latent")
    assert (base - _run(trained, output_type="latent")).abs().max() > 1e-3
    other_scales = _run(trained, audio=_wave(5), branch_weights=(1.0, 1.0, 0.0), output_type="latent")
    assert (base - other_scales).abs().max() > 1e-3


def test_no_audio_is_the_zero_audio_token_path(trained, monkeypatch):
    silent = _run(trained, output_type="latent")
    monkeypatch.setattr(trained.audio_projection, "forward", lambda x: torch.zeros(x.shape[1], 8, 64))
    zero_tokens = _run(trained, audio=_wave(5), output_type="latent")
    torch.testing.assert_close(zero_tokens, silent, rtol=0, atol=0)


def test_audio_is_cut_or_padded_to_the_pose_frames(fresh):
    exact = fresh.prepare_audio_features(_wave(12), 12)
    assert exact.shape == (12, 1, 81)
    np.testing.assert_array_equal(exact, mel_features(_wave(12).wave, 16000)[:, None])  # the dataset's features
    long = fresh.prepare_audio_features(_wave(30), 12)
    np.testing.assert_array_equal(long, mel_features(_wave(30).wave[: 12 * 640], 16000)[:, None])
    short = fresh.prepare_audio_features(_wave(6), 12)
    assert short.shape == (12, 1, 81) and np.allclose(short[8:], -3.0, atol=1e-4)  # silence: the -100 dB floor
    assert fresh.prepare_audio_features(None, 12) is None
    # Any input rate: the features are computed at the models' 16 kHz, resampled from the given samples.
    at_48k = fresh.prepare_audio_features(_wave(12, sample_rate=48000), 12)
    np.testing.assert_array_equal(at_48k, mel_features(_wave(12, sample_rate=48000).at(16000).wave, 16000)[:, None])


def test_wav2vec2_features_through_an_attached_encoder(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from mmgt.audio.encoders import SpeechEncoder

    torch.manual_seed(1)  # a tiny random wav2vec2 (3 layers x 32), built from config
    config = Wav2Vec2Config(num_hidden_layers=3, **TINY_SPEECH)
    Wav2Vec2Model(config).save_pretrained(tmp_path / "w2v")
    encoder = SpeechEncoder.from_pretrained(tmp_path / "w2v", layers="all", interpolate="before_transformer")
    spec = feature_spec(encoder, stage=2)
    assert (spec["num_layers"], spec["dim"]) == (3, 32)
    pipe = _build(("adapter",), spec=spec)
    with pytest.raises(MmgtError, match="gives 1 layers x 32, the model was trained on 3 x 32"):
        pipe.set_audio_encoder(SpeechEncoder.from_pretrained(tmp_path / "w2v", layers="last"))
    pipe.set_audio_encoder(encoder)
    assert pipe.prepare_audio_features(_wave(5), 5).shape == (5, 3, 32)
    heard = _run(pipe, audio=_wave(5), output_type="latent")
    assert (heard - _run(pipe, output_type="latent")).abs().max() > 1e-3


def test_equal_audio_scale_reduces_three_branch_cfg_to_the_released_two_branch_form(trained):
    assert Guidance(3.5).branches == ("uncond", "full") and Guidance(1.0).branches == ("full",)
    assert Guidance(0.5).branches == ("uncond", "full")  # one rule for both stages: only scale 1 skips the negative
    assert Guidance(3.5, 2.0).branches == ("uncond", "image", "full")
    out = torch.tensor([1.0, 2.0, 4.0]).view(3, 1, 1, 1, 1)
    assert Guidance(3.0, 0.5).combine(out).item() == 1 + 3 * (2 - 1) + 0.5 * (4 - 2)
    assert Guidance(3.0).combine(out[[0, 2]]).item() == 1 + 3 * (4 - 1)
    wave = _wave(5)
    two = _run(trained, audio=wave, guidance_scale=3.0, output_type="latent")
    three = _run(trained, audio=wave, guidance_scale=3.0, audio_guidance_scale=3.0, output_type="latent")
    torch.testing.assert_close(three, two, rtol=1e-4, atol=1e-4)
    louder = _run(trained, audio=wave, guidance_scale=3.0, audio_guidance_scale=6.0, output_type="latent")
    assert (louder - two).abs().max() > 1e-3


def test_unconditional_branch_skips_the_reference_as_in_training(trained, monkeypatch):
    """ "skip": the CFG negative runs alone without reference attention (training's image dropout); "zero_clip" (the
    release) runs every branch in one batch reading zero-CLIP ReferenceNet features."""
    calls = []
    real_denoise = unet_module.denoise

    def spy_denoise(unet, latents, t, clip, pose, inputs):
        calls.append((latents.shape[0], inputs.mode, len(inputs.reference_features), float(clip.abs().sum())))
        return real_denoise(unet, latents, t, clip, pose, inputs)

    monkeypatch.setattr(unet_module, "denoise", spy_denoise)
    assert trained.config.uncond_reference == "skip"
    skipped = _run(trained, 5, audio=_wave(5), num_inference_steps=1, output_type="latent")
    by_mode = {mode: (batch, features, clip) for batch, mode, features, clip in calls}
    assert len(calls) == 2 and set(by_mode) == {"off", "read"}
    assert by_mode["off"][:2] == (1, 0) and by_mode["read"][0] == 1  # the negative alone, with no reference features
    assert by_mode["read"][1] > 0  # the positive reads all of them
    assert by_mode["off"][2] == 0.0 and by_mode["read"][2] > 0  # zero CLIP only in the negative
    calls.clear()
    released = _run(
        trained, 5, audio=_wave(5), num_inference_steps=1, output_type="latent", uncond_reference="zero_clip"
    )
    assert [c[:2] for c in calls] == [(2, "read")]
    assert (released - skipped).abs().max() > 1e-4


def test_unknown_uncond_reference_is_refused(trained):
    with pytest.raises(ValueError, match="uncond_reference"):
        type(trained)(**trained.components, uncond_reference="none")  # saved settings are checked too


# ---------------------------------------------------------------------------------------------------------------------
# Windows, caching, streaming, schedulers
# ---------------------------------------------------------------------------------------------------------------------
def test_windows_are_averaged_where_they_overlap(trained, monkeypatch):
    """The model output handed to the scheduler is the per-frame mean of the windows' guided predictions."""
    outputs, steps = [], []
    real_denoise, real_step = unet_module.denoise, trained.scheduler.step

    def spy_denoise(unet, latents, t, clip, pose, inputs):
        out = real_denoise(unet, latents, t, clip, pose, inputs)
        outputs.append(out[:1])  # guidance off: one branch
        return out

    monkeypatch.setattr(unet_module, "denoise", spy_denoise)
    monkeypatch.setattr(trained.scheduler, "step", lambda out, *a, **k: steps.append(out) or real_step(out, *a, **k))
    _run(trained, 10, guidance_scale=1.0, window_frames=6, overlap=2, closed_loop=False, num_inference_steps=1)
    first, second = outputs  # windows 0..5 and 4..9
    expected = torch.cat([first[:, :, :4], (first[:, :, 4:] + second[:, :, :2]) / 2, second[:, :, 2:]], dim=2)
    torch.testing.assert_close(steps[0], expected, rtol=0, atol=1e-6)


def test_windowing_is_exact_when_frames_do_not_interact(trained):
    """Identity motion modules: each frame's prediction is window-independent, so windows == one window."""
    pipe = _build(("adapter", "pose"))  # motion modules still zero-initialised
    kwargs = dict(audio=_wave(8), guidance_scale=1.0, output_type="latent")
    single = _run(pipe, 8, window_frames=16, **kwargs)
    assert torch.equal(single, _run(pipe, 8, window_frames=8, **kwargs))  # window >= F: one window either way
    windowed = _run(pipe, 8, window_frames=4, overlap=2, **kwargs)  # 4 windows, closed loop
    torch.testing.assert_close(windowed, single, rtol=1e-4, atol=1e-5)
    # Trained motion modules mix frames, so there the windows do change the result.
    mixed = _run(trained, 8, window_frames=4, overlap=2, **kwargs) - _run(trained, 8, window_frames=8, **kwargs)
    assert mixed.abs().max() > 1e-3


def test_window_conditions_are_cached_within_the_budget(trained, monkeypatch):
    calls = []
    real = trained.prepare_window
    monkeypatch.setattr(trained, "prepare_window", lambda *a: calls.append(a[1]) or real(*a))
    cached = _run(
        trained, 10, window_frames=6, overlap=2, closed_loop=False, output_type="latent", condition_cache_mb=64
    )
    assert calls == [list(range(0, 6)), list(range(4, 10))]  # once per window, not once per step
    calls.clear()
    uncached = _run(
        trained, 10, window_frames=6, overlap=2, closed_loop=False, output_type="latent", condition_cache_mb=0
    )
    assert len(calls) == 2 * STEPS
    torch.testing.assert_close(uncached, cached, rtol=0, atol=0)
    one_fits = cached_window_bytes(trained) * 1.5 / 2**20  # room for one window, not both: nothing is cached
    calls.clear()
    _run(trained, 10, window_frames=6, overlap=2, closed_loop=False, output_type="latent", condition_cache_mb=one_fits)
    assert len(calls) == 2 * STEPS


def cached_window_bytes(pipe) -> int:
    return pipe.prepare_window(_poses(10), list(range(6)), None).nbytes


def test_frame_callback_streams_chunks_and_returns_no_frames(trained):
    full = _run(trained, 10, decode_chunk_size=3)
    chunks = []
    streamed = _run(trained, 10, decode_chunk_size=3, frame_callback=chunks.append)
    assert streamed is None
    assert [len(c) for c in chunks] == [3, 3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(chunks), full)
    # Another decode batch size changes the VAE convs' summation order (per CPU): a rounding flip of 1 level at most.
    np.testing.assert_allclose(full, _run(trained, 10), rtol=0, atol=1)


@pytest.mark.parametrize("scheduler_cls", [DPMSolverMultistepScheduler, EulerDiscreteScheduler])
def test_other_diffusers_schedulers_work(scheduler_cls):
    pipe = _build(("pose",))
    pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
    frames = _run(pipe, 5, num_inference_steps=3)
    assert frames.shape == (5, SIZE, SIZE, 3) and frames.std() > 1.0


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "unipc"])
def test_multistep_samplers_run_on_the_saved_schedule_and_leave_it_alone(trained, sampler):
    saved = trained.scheduler
    frames = _run(trained, 5, sampler=sampler, num_inference_steps=3)
    ddim = _run(trained, 5, num_inference_steps=3)
    assert trained.scheduler is saved and type(saved).__name__ == "DDIMScheduler"
    assert frames.shape == (5, SIZE, SIZE, 3) and frames.std() > 1.0
    assert np.abs(frames.astype(int) - ddim).max() > 0  # another solver, another path from the same noise
    # One step is first order in every solver, i.e. DDIM: x0 from v at t = T - 1. The solvers clamp the terminal
    # alpha_bar to 2^-24 (DDIM keeps 0), so x0 = -v + 2^-12 x_T: equal within 2^-12 |x_T| (< 5 sigma of N(0, 1)).
    one = _run(trained, 5, sampler=sampler, num_inference_steps=1, output_type="latent")
    torch.testing.assert_close(one, _run(trained, 5, num_inference_steps=1, output_type="latent"), rtol=0, atol=2e-3)


def test_guidance_interval_runs_the_negative_only_inside_it(trained, monkeypatch):
    """Outside the interval a step runs the conditional branch alone: (0, 0) over 2 trailing steps (t = 999, 499)
    guides none of them (= guidance off), (0.4, 1) guides both, (0.6, 1) the first only."""
    batches = []
    real_denoise = unet_module.denoise

    def spy_denoise(unet, latents, t, clip, pose, inputs):
        batches.append(int(t))
        return real_denoise(unet, latents, t, clip, pose, inputs)

    monkeypatch.setattr(unet_module, "denoise", spy_denoise)
    wave = _wave(5)
    off = _run(trained, audio=wave, guidance_scale=1.0, output_type="latent")
    assert batches == [999, 499]
    batches.clear()
    never = _run(trained, audio=wave, guidance_interval=(0.0, 0.0), output_type="latent")
    assert batches == [999, 499]
    # The same computation, but the ReferenceNet ran on a batch of 2 ([zero CLIP; CLIP]): float rounding only.
    torch.testing.assert_close(never, off, rtol=0, atol=1e-5)
    batches.clear()
    always = _run(trained, audio=wave, guidance_interval=(0.4, 1.0), output_type="latent")
    assert batches == [999, 999, 499, 499]  # both branches (two calls: the negative skips the reference)
    torch.testing.assert_close(always, _run(trained, audio=wave, output_type="latent"), rtol=0, atol=0)
    batches.clear()
    first = _run(trained, audio=wave, guidance_interval=(0.6, 1.0), output_type="latent")
    assert batches == [999, 999, 499]
    assert (first - always).abs().max() > 1e-4 and (first - never).abs().max() > 1e-4


def test_sampler_and_guidance_interval_are_saved_and_checked(trained, tmp_path):
    trained.set_sampling(sampler="unipc", guidance_interval=(0.2, 0.9))
    try:
        trained.save_pretrained(tmp_path)
    finally:
        trained.set_sampling(sampler="ddim", guidance_interval=(0.0, 1.0))
    saved = json.loads((tmp_path / "model_index.json").read_text())
    assert saved["sampler"] == "unipc" and saved["guidance_interval"] == [0.2, 0.9]
    loaded = PoseToVideoPipeline.from_pretrained(tmp_path)
    assert loaded.sampling.sampler == "unipc" and loaded.sampling.guidance_interval == (0.2, 0.9)
    with pytest.raises(MmgtError, match="sampler must be one of"):
        _run(trained, sampler="euler")
    for bad in [(0.5, 0.2), (-0.1, 1.0), (0.0, 1.5)]:
        with pytest.raises(MmgtError, match="guidance_interval"):
            _run(trained, guidance_interval=bad)


# ---------------------------------------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------------------------------------
def test_fit_image_covers_then_centre_crops():
    image = np.zeros((100, 50, 3), np.uint8)
    image[:, :, 0] = np.arange(100)[:, None]  # red = row index
    out = fit_image(image, 64, 64)  # scale 1.28 -> 64 x 128, keep rows 32..95
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert abs(int(out[0, 32, 0]) - 25) <= 1 and abs(int(out[63, 32, 0]) - 74) <= 1
    same = _image()
    assert fit_image(same, SIZE, SIZE) is same
    np.testing.assert_array_equal(fit_image(Image.fromarray(same), SIZE, SIZE), same)
    with pytest.raises(MmgtError, match=r"reference image must be \(H, W, 3\) uint8 RGB, got float32 \(4, 4, 3\)"):
        fit_image(np.zeros((4, 4, 3), np.float32), 8, 8)


def test_clip_pixels_resizes_crops_and_normalises():
    grey = torch.zeros(2, 3, 40, 80)  # mid grey in [-1, 1]
    x = clip_pixels(grey, 32)
    assert x.shape == (2, 3, 32, 32)
    expected = (0.5 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(x[0, :, 5, 7], expected)


# ---------------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(height=60), "height must be a positive multiple of 8 \\(the VAE factor\\), got 60"),
        (dict(width=0), "width must be a positive multiple of 8"),
        (dict(num_inference_steps=0), "num_inference_steps must be a positive integer, got 0"),
        (dict(decode_chunk_size=0), "decode_chunk_size must be >= 1, got 0"),
        (dict(branch_weights=(1.0, 2.0)), "branch_weights needs 3 values"),
        (dict(output_type="pil"), "output_type must be one of \\('np', 'latent'\\)"),
        (dict(num_frames=33, window_frames=40, overlap=0), "window_frames must be <= 32, got 40"),
        (dict(window_frames=4, overlap=4), "need 0 <= overlap < window_frames, got 4 and 4"),
        (dict(uncond_reference="none"), "uncond_reference must be one of"),
        (dict(audio=np.zeros(100, np.float32)), "audio must be an mmgt.utils.audio_io.Audio"),
    ],
)
def test_bad_arguments_raise_value_errors(fresh, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _run(fresh, **kwargs)


def test_bad_poses_raise(fresh):
    empty = _poses(3)[0:0]
    with pytest.raises(MmgtError, match="poses must be a non-empty PoseSequence, got 0 frames"):
        fresh(_image(), empty)
    with pytest.raises(MmgtError, match="poses run at 30 fps; stage II works at 25 fps"):
        fresh(_image(), _poses(3).replace(fps=30))
    with pytest.raises(MmgtError, match="height must be a positive multiple of 8 \\(the VAE factor\\), got 100"):
        fresh(_image(), _poses(3, size=100))  # default size = the pose canvas


def test_mismatched_audio_projection_and_missing_encoder_are_refused(fresh):
    parts = dict(fresh.components)
    wrong = AudioProjection(**preset("tiny")["audio_projection"])  # 4 layers x 32, not the mel fallback's 1 x 81
    with pytest.raises(MmgtError, match="audio_projection expects 4 layers x 32 per frame, but audio_features \\(mel"):
        PoseToVideoPipeline(**{**parts, "audio_projection": wrong})
    spec = {"stage": 2, "speech": {"folder": "wav2vec2-base"}, "dim": 32, "num_layers": 4}
    pipe = PoseToVideoPipeline(**{**parts, "audio_projection": wrong, "audio_features": spec})
    with pytest.raises(MmgtError, match="reads wav2vec2 features \\(wav2vec2-base\\); attach the encoder"):
        pipe(_image(), _poses(3), audio=_wave(3))


# ---------------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------------
def test_cli_sampling_flags_are_the_pipeline_settings():
    from mmgt.cli import pose2video
    from mmgt.cli._common import video_sampling

    parser = argparse.ArgumentParser()
    pose2video.register(parser.add_subparsers())
    args = parser.parse_args(
        ["pose2video", "--model", "m", "--image", "i", "--pose", "p", "-o", "o.mp4", "--sampler", "dpmpp_2m"]
        + ["--guidance-interval", "0.3", "1"]
    )
    assert video_sampling(args)["sampler"] == "dpmpp_2m" and video_sampling(args)["guidance_interval"] == [0.3, 1.0]
    with pytest.raises(SystemExit):
        parser.parse_args(
            ["pose2video", "--model", "m", "--image", "i", "--pose", "p", "-o", "o", "--sampler", "euler"]
        )


def test_cli_writes_one_frame_per_pose_with_audio(trained, tmp_path, capsys):
    from mmgt.cli import pose2video
    from mmgt.utils.audio_io import save_audio
    from mmgt.utils.video_io import probe_video

    trained.save_pretrained(tmp_path / "model")
    _poses(7).save(tmp_path / "poses.npz")
    Image.fromarray(_image(80, 80)).save(tmp_path / "ref.png")
    save_audio(tmp_path / "speech.wav", _wave(5).wave)  # shorter than the poses: padded with silence
    parser = argparse.ArgumentParser()
    pose2video.register(parser.add_subparsers())
    common = [
        "--model",
        str(tmp_path / "model"),
        "--image",
        str(tmp_path / "ref.png"),
        "--pose",
        str(tmp_path / "poses.npz"),
        "--steps",
        "1",
        "--window",
        "4",
        "--overlap",
        "1",
    ]
    args = parser.parse_args(
        ["pose2video", *common, "--audio", str(tmp_path / "speech.wav"), "-o", str(tmp_path / "out.mp4")]
    )
    assert args.func(args) == 0
    info = probe_video(tmp_path / "out.mp4")
    assert (info.num_frames, info.width, info.height, info.fps) == (7, SIZE, SIZE, 25.0)
    assert info.has_audio and abs(info.audio_duration_s - 7 / 25) < 0.05
    assert "out.mp4: 7 frames" in capsys.readouterr().out

    args = parser.parse_args(["pose2video", *common, "--no-closed-loop", "-o", str(tmp_path / "silent.mp4")])
    assert args.closed_loop is False and args.func(args) == 0
    info = probe_video(tmp_path / "silent.mp4")
    assert info.num_frames == 7 and not info.has_audio

    args = parser.parse_args(["pose2video", *common, "--size", "60", "-o", str(tmp_path / "bad.mp4")])
    with pytest.raises(MmgtError, match="height must be a positive multiple of 8"):
        args.func(args)
    assert not (tmp_path / "bad.mp4").exists() and not list(tmp_path.glob(".bad*"))  # atomic: nothing left

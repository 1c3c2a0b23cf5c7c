"""Stage-1 parity with the authors' own SMGA code (opt-in: ``MMGT_OFFICIAL_SRC=/path/to/MMGT pytest -m official``).

The release's ``GestureDecoder`` and ``GestureDiffusion`` are imported from ``$MMGT_OFFICIAL_SRC/src`` at test time
(never copied into mmgt), built at a tiny size in float64 with every parameter drawn from N(0, std), converted with
:func:`mmgt.weights.released_stage1.convert_stage1` and compared with mmgt's ``released`` ``GestureDenoiser``.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mmgt.audio.librosa_features import LIBROSA_FEATURE_DIM
from mmgt.constants import NUM_KEYPOINTS
from mmgt.diffusion.stage1 import make_stage1_scheduler, sample_window
from mmgt.models.gesture_denoiser import GestureDenoiser
from mmgt.pipelines.sampling_defaults import POSE_SAMPLING
from mmgt.weights.released_stage1 import convert_stage1, load_manifest

OFFICIAL_SRC = os.environ.get("MMGT_OFFICIAL_SRC", "")
pytestmark = [
    pytest.mark.official,
    pytest.mark.skipif(
        not OFFICIAL_SRC,
        reason="MMGT_OFFICIAL_SRC is not set: point it at a checkout of the authors' repository (SIA-IDE/MMGT)",
    ),
]

# Tiny release sizes; the window is the real one, so the time tokens sit at positions 80 and 81.
WIDTH, HEADS, LAYERS, FF, SPEECH, WINDOW = 64, 4, 2, 96, 64, 80
AUDIO_DIM = SPEECH + LIBROSA_FEATURE_DIM
FRAME_DIM = NUM_KEYPOINTS * 3


@pytest.fixture(scope="module")
def release():
    """The release's audio2pose_model package (its src/ only: the repository root holds a copy.py)."""
    pytest.importorskip("einops", reason="the release's SMGA code needs einops (pip install einops)")
    src = Path(OFFICIAL_SRC) / "src"
    if not (src / "audio2pose_model" / "model.py").is_file():
        pytest.fail(f"MMGT_OFFICIAL_SRC={OFFICIAL_SRC}: no src/audio2pose_model/model.py there")
    sys.path.insert(0, str(src))
    # diffusion.py imports p_tqdm.p_map for a rendering helper these tests do not call.
    sys.modules.setdefault("p_tqdm", types.SimpleNamespace(p_map=None))
    from audio2pose_model import diffusion, model

    return types.SimpleNamespace(GestureDecoder=model.GestureDecoder, GestureDiffusion=diffusion.GestureDiffusion)


def _decoder(release, std: float, seed: int = 0):
    """The release's SMGA at tiny size, float64, every parameter ~ N(0, std)."""
    torch.manual_seed(seed)
    decoder = release.GestureDecoder(
        nfeats=FRAME_DIM,
        seq_len=WINDOW,
        latent_dim=WIDTH,
        ff_size=FF,
        num_layers=LAYERS,
        num_heads=HEADS,
        dropout=0.1,
        cond_feature_dim=AUDIO_DIM,
        activation=F.gelu,
    )
    with torch.no_grad():
        for param in decoder.parameters():
            param.normal_(0.0, std)
    return decoder.double().eval()


def _mmgt(decoder, **overrides) -> GestureDenoiser:
    converted, config, _ = convert_stage1(decoder.state_dict(), num_heads=HEADS)
    model = GestureDenoiser(**{**config, **overrides}).double().eval()
    model.load_state_dict(converted, strict=True)
    return model


def _inputs(batch: int = 2, seed: int = 1):
    """Keypoints (B, F, K, 3), cond pose (B, K, 3), the audio in the release's [speech ; librosa] column order."""
    g = torch.Generator().manual_seed(seed)
    sample = torch.rand(batch, WINDOW, NUM_KEYPOINTS, 3, generator=g, dtype=torch.float64) * 2 - 1
    cond = torch.rand(batch, NUM_KEYPOINTS, 3, generator=g, dtype=torch.float64) * 2 - 1
    audio = torch.randn(batch, WINDOW, AUDIO_DIM, generator=g, dtype=torch.float64)
    return sample, cond, audio


def _mmgt_audio(release_audio: torch.Tensor) -> torch.Tensor:
    """The release's [speech ; librosa] columns in mmgt's [librosa ; speech] order."""
    speech, librosa = release_audio.split([SPEECH, LIBROSA_FEATURE_DIM], dim=-1)
    return torch.cat([librosa, speech], dim=-1)


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


class _Float64Default:
    """The release draws with torch.randn(shape) and builds positions from the default dtype: make it float64."""

    def __enter__(self):
        self.previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)

    def __exit__(self, *exc):
        torch.set_default_dtype(self.previous)


def test_release_layout_is_the_committed_manifest(release):
    with torch.device("meta"):
        decoder = release.GestureDecoder(
            nfeats=FRAME_DIM,
            seq_len=80,
            latent_dim=512,
            ff_size=1024,
            num_layers=8,
            num_heads=8,
            dropout=0.1,
            cond_feature_dim=1024 + LIBROSA_FEATURE_DIM,
            activation=F.gelu,
        )
    shapes = {key: tuple(value.shape) for key, value in decoder.state_dict().items()}
    assert list(shapes.items()) == list(load_manifest().items())


@pytest.mark.parametrize("std", [0.4, 0.1])
def test_smga_matches_the_release_conditional_and_unconditional(release, std):
    decoder = _decoder(release, std)
    model = _mmgt(decoder)
    sample, cond, audio = _inputs()
    timesteps = torch.tensor([999, 17])
    errors = {}
    with torch.no_grad(), _Float64Default():
        for branch, drop in (("conditional", 0.0), ("unconditional", 1.0)):
            expected = decoder(sample.flatten(2), cond.flatten(1), audio, timesteps, cond_drop_prob=drop)
            actual = model(sample, timesteps, cond, _mmgt_audio(audio), force_uncond=bool(drop)).flatten(2)
            errors[branch] = _relative_error(actual, expected)
        # mmgt's own rotary ("head") with the same weights: the network the release is not.
        per_head = _mmgt(decoder, rotary="head")(sample, timesteps, cond, _mmgt_audio(audio)).flatten(2)
        errors["rotary=head"] = _relative_error(
            per_head, decoder(sample.flatten(2), cond.flatten(1), audio, timesteps)
        )
    print(f"SMGA vs release at weight std {std}: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert errors["conditional"] < 1e-4 and errors["unconditional"] < 1e-4
    if std >= 0.4:
        assert errors["rotary=head"] > 1e-2


def test_dropped_modules_are_never_called(release):
    decoder = _decoder(release, 0.4)
    sample, cond, audio = _inputs()
    args = (sample.flatten(2), cond.flatten(1), audio, torch.tensor([500, 3]))
    _, _, dropped = convert_stage1(decoder.state_dict(), num_heads=HEADS)
    never_called = [line.split(":")[0] for line in dropped if not line.split(":")[0].endswith(".freqs")]
    assert len(never_called) == LAYERS * (4 + 2 * 2 + 2 * 2)
    with torch.no_grad(), _Float64Default():
        before = decoder(*args)
        params = dict(decoder.named_parameters())
        for key in never_called:
            params[key].normal_(0.0, 3.0)
        assert torch.equal(decoder(*args), before)


def test_sampling_loop_gives_the_same_keypoints(release):
    """The release's ddim_sample and mmgt's sample_window from the same seed: the same x_T, step noise and timesteps.

    At weight std 0.4 a random SMGA saturates (99.97 % of x0 clipped to +-1) and the loop is chaotic; at 0.1 it is
    not, so the comparison measures the sampler, not the amplification of float rounding.
    """
    decoder = _decoder(release, 0.1)
    model = _mmgt(decoder)
    _, cond, audio = _inputs(batch=2, seed=2)
    settings = POSE_SAMPLING["released"]
    # LMDM's arguments (src/audio2pose_model/SMGA.py); ddim_sample itself fixes 50 steps and eta 1.
    diffusion = (
        release.GestureDiffusion(
            decoder,
            WINDOW,
            FRAME_DIM,
            schedule="cosine",
            n_timestep=1000,
            predict_epsilon=False,
            loss_type="l2",
            use_p2=False,
            cond_drop_prob=0.25,
            guidance_weight=2,
        )
        .double()
        .eval()
    )
    with _Float64Default():
        torch.manual_seed(123)
        expected = diffusion.ddim_sample((2, WINDOW, FRAME_DIM), cond.flatten(1), audio)
    actual = sample_window(
        model,
        make_stage1_scheduler(),
        cond,
        _mmgt_audio(audio),
        settings.num_inference_steps,
        settings.guidance_scale,
        settings.eta,
        generator=torch.Generator().manual_seed(123),
    ).flatten(2)
    difference = (actual - expected).abs().max().item()
    print(f"sampling loop: max |mmgt - release| = {difference:.2e}, relative {_relative_error(actual, expected):.2e}")
    assert expected.abs().mean() > 0.5 and difference < 1e-4

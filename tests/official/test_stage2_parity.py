"""Stage 2 against the release's own code (T2, opt-in): its modules at the `released_tiny` sizes in float64, every
parameter random, converted by `mmgt.weights.released_stage2`, must give mmgt's outputs.

Runs only when MMGT_OFFICIAL_SRC points at a copy of github.com/SIA-IDE/MMGT; the relative errors are recorded as
test properties (``pytest -rA --junitxml=...`` or ``-s``: they are printed too).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from mmgt.models.attention_inputs import AttnInputs
from mmgt.models.denoising_unet import (
    denoise,
    denoise_with_reference_dropout,
    encode_reference,
    install_stage2_processors,
    set_motion_norm,
)
from mmgt.weights.released_stage2 import build_skeleton, convert_stage2

from .stage2_release import import_release, randomize, release_stage2, requires_release

pytestmark = [pytest.mark.official, requires_release]
PRESET = "released_tiny"
FRAMES, LATENT = 4, 16  # a window of 4 frames of 16 x 16 latents (128 x 128 pixels)
TOLERANCE = 1e-10  # float64: the two networks agree to ~1e-15 when they compute the same thing


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def nets():
    """(the release's wrapper, mmgt's components loaded from its converted state dict), float64, eval mode."""
    release = randomize(release_stage2(PRESET).double(), seed=0).eval()
    states, _, _ = convert_stage2(release.state_dict(), PRESET)
    mmgt = build_skeleton(PRESET)
    for name, module in mmgt.items():
        module.load_state_dict(states[name], strict=True, assign=True)
        module.double().eval()
    install_stage2_processors(mmgt["unet"], mmgt["reference_unet"], mmgt["audio_adapter"])
    return release, mmgt


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    return dict(
        latents=randn(1, 4, FRAMES, LATENT, LATENT),
        reference=randn(1, 4, LATENT, LATENT),
        clip=randn(1, 1, 64),
        pose=torch.rand(1, 3, FRAMES, 8 * LATENT, 8 * LATENT, generator=g, dtype=torch.float64),
        audio=randn(1, FRAMES, 5, 4, 32),  # (B, F, 5 frames, L layers, D) wav2vec2 windows at the tiny sizes
        masks=[torch.rand(FRAMES, 3, s, s, generator=g, dtype=torch.float64) for s in (16, 8, 4, 2)],
        t=torch.tensor(500),
    )


def _release_masks(masks: list[torch.Tensor], copies: int = 1) -> dict[str, list[torch.Tensor]]:
    """mmgt's (F, 3, h, w) levels as the release's full/face/body lists of (F, h*w), one per down depth."""
    names = ("full_mask", "face_mask", "body_mask")  # Official code: attn2_0/1/2 read these (mmgt: BRANCHES order)
    return {n: [torch.cat([m[:, r].flatten(1)] * copies) for m in masks[:3]] for r, n in enumerate(names)}


@torch.no_grad()
def _release_unet(release, x, *, cfg: bool, motion_scale=None) -> torch.Tensor:
    """The release's reference pass (write) and denoising UNet (read), as its long-video pipeline calls them."""
    lib = import_release()
    copies = 2 if cfg else 1
    writer = lib.ReferenceAttentionControl(
        release.reference_unet, mode="write", fusion_blocks="full", do_classifier_free_guidance=cfg
    )
    reader = lib.ReferenceAttentionControl(
        release.denoising_unet, mode="read", fusion_blocks="full", do_classifier_free_guidance=cfg
    )
    clip = torch.cat([torch.zeros_like(x["clip"]), x["clip"]]) if cfg else x["clip"]
    release.reference_unet(
        x["reference"].repeat(copies, 1, 1, 1), torch.zeros_like(x["t"]), encoder_hidden_states=clip, return_dict=False
    )
    reader.update(writer, dtype=torch.float64)
    tokens = release.audioproj(x["audio"])  # (1, F, T, D)
    out = release.denoising_unet(
        x["latents"].repeat(copies, 1, 1, 1, 1),
        x["t"],
        encoder_hidden_states=clip,
        audio_embedding=torch.cat([torch.zeros_like(tokens), tokens]) if cfg else tokens,
        pose_cond_fea=release.pose_guider(x["pose"]).repeat(copies, 1, 1, 1, 1),
        motion_scale=motion_scale,
        return_dict=False,
        **_release_masks(x["masks"], copies),
    )[0]
    writer.clear()
    reader.clear()
    return out


@torch.no_grad()
def _mmgt_inputs(mmgt, x, branch_weights=(1.0, 1.0, 1.0)) -> tuple[torch.Tensor, AttnInputs]:
    """mmgt's pose features and read-mode attention inputs for the same call."""
    features = encode_reference(mmgt["reference_unet"], x["reference"], x["clip"], AttnInputs())
    inputs = AttnInputs(
        mode="read",
        reference_features=features,
        audio_tokens=mmgt["audio_projection"](x["audio"]),
        branch_masks=x["masks"],
        branch_weights=branch_weights,
        num_frames=FRAMES,
    )
    return mmgt["pose_guider"](x["pose"]), inputs


def test_pose_guider_and_audio_projection_are_exact(nets, inputs):
    release, mmgt = nets
    with torch.no_grad():
        theirs = release.pose_guider(inputs["pose"])  # (1, C, F, h, w)
        ours = mmgt["pose_guider"](inputs["pose"])  # (F, C, h, w), b-major
        tokens_theirs, tokens_ours = release.audioproj(inputs["audio"])[0], mmgt["audio_projection"](inputs["audio"])
    assert torch.equal(ours, theirs[0].transpose(0, 1)) and theirs.abs().max() > 0.1
    assert torch.equal(tokens_ours, tokens_theirs)


def test_denoising_unet_matches_the_release(nets, inputs, record_property):
    release, mmgt = nets
    expected = _release_unet(release, inputs, cfg=False)
    pose, attn = _mmgt_inputs(mmgt, inputs)
    with torch.no_grad():
        got = denoise(mmgt["unet"], inputs["latents"], inputs["t"], inputs["clip"], pose, attn)
        # The statistics the release takes per frame, pooled instead: the comparison above can fail.
        set_motion_norm(mmgt["unet"], "pooled")
        pooled = denoise(mmgt["unet"], inputs["latents"], inputs["t"], inputs["clip"], pose, attn)
        set_motion_norm(mmgt["unet"], "per_frame")
    error = _rel(got, expected)
    print(f"stage-2 UNet relative error {error:.2e} (pooled motion norm: {_rel(pooled, expected):.2e})")
    record_property("unet_rel_error", error)
    assert expected.std() > 0.1 and error < TOLERANCE
    assert _rel(pooled, expected) > 1e-3


def test_branch_weights_1_1_2_match_the_release_checkpointing_path(nets, inputs, record_property):
    """Official code: the down blocks pass motion_scale to the audio modules only on their checkpointing path."""
    release, mmgt = nets
    unet = release.denoising_unet
    unet.train()
    for block in unet.down_blocks:
        block.gradient_checkpointing = True
    try:
        expected = _release_unet(release, inputs, cfg=False, motion_scale=[1.0, 1.0, 2.0])
    finally:
        unet.eval()
        for block in unet.down_blocks:
            block.gradient_checkpointing = False
    pose, attn = _mmgt_inputs(mmgt, inputs, branch_weights=(1.0, 1.0, 2.0))
    with torch.no_grad():
        got = denoise(mmgt["unet"], inputs["latents"], inputs["t"], inputs["clip"], pose, attn)
        plain = denoise(
            mmgt["unet"],
            inputs["latents"],
            inputs["t"],
            inputs["clip"],
            pose,
            replace(attn, branch_weights=(1.0, 1.0, 1.0)),
        )
    error = _rel(got, expected)
    print(f"branch weights (1, 1, 2): relative error {error:.2e} ((1, 1, 1) differs by {_rel(plain, expected):.2e})")
    record_property("unet_112_rel_error", error)
    assert error < TOLERANCE and _rel(plain, expected) > 1e-3


def test_unconditional_half_is_the_skip_variant(nets, inputs, record_property):
    """The release recomputes its CFG negative rows without the reference bank: mmgt's uncond_reference="skip"."""
    release, mmgt = nets
    expected = _release_unet(release, inputs, cfg=True)  # (2, C, F, h, w): [uncond; cond]
    pose, attn = _mmgt_inputs(mmgt, inputs)
    clip = torch.cat([torch.zeros_like(inputs["clip"]), inputs["clip"]])
    both = replace(
        attn,
        reference_features={k: torch.cat([v, v]) for k, v in attn.reference_features.items()},
        audio_tokens=torch.cat([torch.zeros_like(attn.audio_tokens), attn.audio_tokens]),
    )
    latents = inputs["latents"].repeat(2, 1, 1, 1, 1)
    with torch.no_grad():
        skip = denoise_with_reference_dropout(
            mmgt["unet"], latents, inputs["t"], clip, pose, both, torch.tensor([False, True])
        )
        zero_clip_features = encode_reference(
            mmgt["reference_unet"], inputs["reference"].repeat(2, 1, 1, 1), clip, AttnInputs()
        )
        zero_clip = denoise_with_reference_dropout(
            mmgt["unet"],
            latents,
            inputs["t"],
            clip,
            pose,
            replace(both, reference_features=zero_clip_features),
            torch.tensor([True, True]),
        )
    uncond, cond, other = _rel(skip[0], expected[0]), _rel(skip[1], expected[1]), _rel(zero_clip[0], expected[0])
    print(f"CFG: unconditional half {uncond:.2e}, conditional half {cond:.2e}, zero_clip {other:.2e}")
    record_property("uncond_skip_rel_error", uncond)
    assert uncond < TOLERANCE and cond < TOLERANCE
    assert other > 1e-3  # the variant the docs once called the release's

"""The two stage-2 pieces training and sampling share: ``denoise_with_reference_dropout`` (rows that drop the image
run without reference attention) and ``build_audio_modules`` (the fresh audio projection and MM-HAA adapter)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from mmgt.errors import MmgtError
from mmgt.models.attention_inputs import AttnInputs
from mmgt.models.audio_attention import audio_layer_names
from mmgt.models.denoising_unet import (
    build_denoising_unet,
    denoise,
    denoise_with_reference_dropout,
    encode_reference,
    install_stage2_processors,
)
from mmgt.models.stage2_presets import build_audio_modules, build_components, preset

B, F = 3, 2


@pytest.fixture(scope="module")
def model():
    """Tiny inflated UNet + ReferenceNet with processors; the zero-initialised outputs given random values."""
    torch.manual_seed(0)
    c = build_components("tiny")
    unet = build_denoising_unet(c["unet"], c["motion_adapter"]).eval()
    install_stage2_processors(unet, c["reference_unet"], c["audio_adapter"])
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in (*unet.parameters(), *c["audio_adapter"].parameters()):
            if not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return unet, c["reference_unet"].eval()


@pytest.fixture(scope="module")
def batch(model):
    """A batch of B samples x F frames at 8x8 latents; per-frame tensors b-major (B*F rows)."""
    g = torch.Generator().manual_seed(2)
    clip = torch.randn(B, 1, 64, generator=g)
    with torch.no_grad():
        features = encode_reference(model[1], torch.randn(B, 4, 8, 8, generator=g), clip, AttnInputs())
    inputs = AttnInputs(
        mode="read",
        reference_features=features,
        audio_tokens=torch.randn(B * F, 8, 64, generator=g),
        branch_masks=[torch.rand(B * F, 3, s, s, generator=g) for s in (8, 4, 2, 1)],
        branch_weights=(1.0, 1.0, 2.0),
        num_frames=F,
    )
    return {
        "latents": torch.randn(B, 4, F, 8, 8, generator=g),
        "timesteps": torch.tensor([100, 500, 900]),
        "clip": clip,
        "pose": torch.randn(B * F, 32, 8, 8, generator=g),
        "inputs": inputs,
    }


def _rows(x: dict, rows: list[int], mode: str) -> tuple:
    """``denoise``'s arguments for the samples ``rows`` alone, in ``mode``."""
    frames = [r * F + f for r in rows for f in range(F)]
    inputs = x["inputs"]
    sub = replace(
        inputs,
        mode=mode,
        reference_features={k: v[rows] for k, v in inputs.reference_features.items()} if mode == "read" else {},
        audio_tokens=inputs.audio_tokens[frames],
        branch_masks=[m[frames] for m in inputs.branch_masks],
    )
    return x["latents"][rows], x["timesteps"][rows], x["clip"][rows], x["pose"][frames], sub


@torch.no_grad()
def test_kept_rows_read_the_reference_and_dropped_rows_run_without_it(model, batch):
    unet = model[0]
    out = denoise_with_reference_dropout(
        unet,
        batch["latents"],
        batch["timesteps"],
        batch["clip"],
        batch["pose"],
        batch["inputs"],
        torch.tensor([True, False, True]),
    )
    assert out.shape == (B, 4, F, 8, 8)
    kept = denoise(unet, *_rows(batch, [0, 2], "read"))
    dropped = denoise(unet, *_rows(batch, [1], "off"))
    torch.testing.assert_close(out[[0, 2]], kept, rtol=1e-5, atol=1e-6)  # batch order restored
    torch.testing.assert_close(out[[1]], dropped, rtol=1e-5, atol=1e-6)
    # The reference matters for the kept rows (so the check above could fail): "off" gives another result.
    assert not torch.allclose(out[[0, 2]], denoise(unet, *_rows(batch, [0, 2], "off")), atol=1e-4)


@torch.no_grad()
def test_a_dropped_row_never_sees_its_reference_features(model, batch):
    unet, keep = model[0], torch.tensor([True, False, True])
    args = (batch["latents"], batch["timesteps"], batch["clip"], batch["pose"])
    out = denoise_with_reference_dropout(unet, *args, batch["inputs"], keep)
    other = {k: v.clone() for k, v in batch["inputs"].reference_features.items()}
    for v in other.values():
        v[1] = 7.0  # row 1 (dropped) and ...
    changed = denoise_with_reference_dropout(unet, *args, replace(batch["inputs"], reference_features=other), keep)
    torch.testing.assert_close(changed[1], out[1], rtol=0, atol=0)
    for v in other.values():
        v[0] = 7.0  # ... row 0 (kept)
    changed = denoise_with_reference_dropout(unet, *args, replace(batch["inputs"], reference_features=other), keep)
    assert not torch.allclose(changed[0], out[0], atol=1e-4)


@torch.no_grad()
def test_shared_per_frame_inputs_and_a_scalar_timestep_as_in_cfg_sampling(model, batch):
    """CFG: one pose/mask tensor of F rows serves every branch; the timestep is one number for all."""
    unet, keep = model[0], torch.tensor([False, True, True])  # the unconditional branch first, as the pipeline
    pose = batch["pose"][:F]
    masks = [m[:F] for m in batch["inputs"].branch_masks]
    shared = replace(batch["inputs"], branch_masks=masks)
    tiled = replace(batch["inputs"], branch_masks=[m.repeat(B, 1, 1, 1) for m in masks])
    args = (batch["latents"], torch.tensor(500), batch["clip"])
    out = denoise_with_reference_dropout(unet, *args, pose, shared, keep)
    expected = denoise_with_reference_dropout(unet, *args, pose.repeat(B, 1, 1, 1), tiled, keep)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_keep_must_have_one_entry_per_sample(model, batch):
    with pytest.raises(MmgtError, match=r"keep must be \(3,\)"):
        denoise_with_reference_dropout(
            model[0],
            batch["latents"],
            batch["timesteps"],
            batch["clip"],
            batch["pose"],
            batch["inputs"],
            torch.tensor([True, False]),
        )


def test_build_audio_modules_sizes_the_projection_from_the_features_and_places_the_adapter():
    torch.manual_seed(0)
    unet = build_components("tiny")["unet"]
    projection, adapter = build_audio_modules("tiny", unet, {"num_layers": 1, "dim": 81}, "down_up_mid")
    assert (projection.config.num_layers, projection.config.input_dim) == (1, 81)
    assert projection.config.output_dim == preset("tiny")["audio_projection"]["output_dim"]
    assert list(adapter.config.layer_names) == audio_layer_names(unet, "down_up_mid")
    assert len(adapter.config.layer_names) > len(audio_layer_names(unet, "down"))
    # Defaults: the preset's sizes and placement; the 2D and the inflated UNet give the same adapter layers.
    projection, adapter = build_audio_modules("tiny", unet)
    assert (projection.config.num_layers, projection.config.input_dim) == (4, 32)
    inflated = build_denoising_unet(unet)
    assert build_audio_modules("tiny", inflated)[1].config.layer_names == adapter.config.layer_names
    assert list(adapter.config.layer_names) == audio_layer_names(unet, "down")

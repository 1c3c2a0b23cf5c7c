from __future__ import annotations

import logging
from contextlib import contextmanager

import pytest
import torch
from diffusers import MotionAdapter, UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from mmgt.errors import MmgtError
from mmgt.models.attention_inputs import AttnInputs
from mmgt.models.denoising_unet import build_denoising_unet, denoise, encode_reference
from mmgt.models.reference_attention import (
    PassThroughAttnProcessor,
    ReferenceReadAttnProcessor,
    ReferenceWriteAttnProcessor,
    install_processors,
    install_reference_readers,
    install_reference_writers,
)
from mmgt.models.stage2_presets import preset

NAME = "down_blocks.0.attentions.0.transformer_blocks.0.attn1"


@pytest.fixture(scope="module")
def unets():
    """(ReferenceNet, denoising UNetMotionModel) of the tiny preset, seeded."""
    cfg = preset("tiny")
    torch.manual_seed(0)
    reference = UNet2DConditionModel(**cfg["unet"]).eval()
    unet = build_denoising_unet(UNet2DConditionModel(**cfg["unet"]), MotionAdapter(**cfg["motion_adapter"])).eval()
    return reference, unet


@pytest.fixture
def attn() -> Attention:
    torch.manual_seed(0)
    return Attention(16, heads=2, dim_head=8)


@contextmanager
def captured_warnings(logger_name: str):
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler, logger = Collect(level=logging.WARNING), logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def _inputs(batch: int = 1, frames: int = 2):
    torch.manual_seed(1)
    return torch.randn(batch, 4, frames, 16, 16), torch.randn(batch, 1, 64)


def test_pass_through_equals_attn_processor_and_silences_the_mmgt_warning(attn):
    x = torch.randn(3, 10, 16)
    expected = AttnProcessor2_0()(attn, x)
    with captured_warnings("diffusers.models.attention_processor") as warnings:
        attn.set_processor(AttnProcessor2_0())
        attn(x, mmgt=AttnInputs())  # the stock processor's **kwargs does not count: diffusers warns
        assert any("['mmgt'] are not expected" in w for w in warnings)
        warnings.clear()
        attn.set_processor(PassThroughAttnProcessor())
        out = attn(x, mmgt=AttnInputs())
        assert warnings == []
    assert torch.equal(out, expected)


def test_writer_stores_its_input_and_computes_plain_self_attention(attn):
    x = torch.randn(2, 6, 16)
    inputs = AttnInputs(mode="write")
    out = ReferenceWriteAttnProcessor(NAME)(attn, x, mmgt=inputs)
    assert torch.equal(out, AttnProcessor2_0()(attn, x))
    assert inputs.reference_features[NAME] is x
    ReferenceWriteAttnProcessor("other")(attn, x, mmgt=AttnInputs(mode="read"))  # not write mode: stores nothing
    assert list(inputs.reference_features) == [NAME]


def test_reader_attends_to_own_and_reference_tokens_per_frame(attn):
    frames = 3
    x = torch.randn(2 * frames, 4, 16)  # (B*F, N, C), b-major
    reference = torch.randn(2, 5, 16)  # (B, N_ref, C)
    inputs = AttnInputs(mode="read", reference_features={NAME: reference}, num_frames=frames)
    out = ReferenceReadAttnProcessor(NAME)(attn, x, mmgt=inputs)
    context = torch.cat([x, reference.repeat_interleave(frames, dim=0)], dim=1)  # K/V = [own, ref of its sample]
    assert torch.equal(out, AttnProcessor2_0()(attn, x, encoder_hidden_states=context))
    # Changing sample 0's reference changes exactly the rows of sample 0's frames.
    changed = ReferenceReadAttnProcessor(NAME)(
        attn,
        x,
        mmgt=AttnInputs(
            mode="read", reference_features={NAME: reference * torch.tensor([[[2.0]], [[1.0]]])}, num_frames=frames
        ),
    )
    differs = (changed != out).flatten(1).any(1)
    assert differs.tolist() == [True] * frames + [False] * frames


def test_reader_without_features_or_outside_read_mode_is_the_default(attn):
    x = torch.randn(4, 6, 16)
    expected = AttnProcessor2_0()(attn, x)
    reader = ReferenceReadAttnProcessor(NAME)
    assert torch.equal(reader(attn, x), expected)
    assert torch.equal(reader(attn, x, mmgt=AttnInputs(mode="read", num_frames=2)), expected)
    ref = {NAME: torch.randn(2, 6, 16)}
    assert torch.equal(reader(attn, x, mmgt=AttnInputs(mode="off", reference_features=ref, num_frames=2)), expected)


def test_cfg_batch_tiles_a_shared_reference_as_whole_groups(attn):
    # CFG: the UNet batch is [uncond (B*F); cond (B*F)]. A ReferenceNet run on B samples is shared by both halves.
    frames = 2
    x = torch.randn(2 * 2 * frames, 4, 16)  # B=2, doubled for CFG
    reference = torch.randn(2, 3, 16)
    shared = ReferenceReadAttnProcessor(NAME)(
        attn, x, mmgt=AttnInputs(mode="read", reference_features={NAME: reference}, num_frames=frames)
    )
    doubled = ReferenceReadAttnProcessor(NAME)(
        attn,
        x,
        mmgt=AttnInputs(mode="read", reference_features={NAME: torch.cat([reference, reference])}, num_frames=frames),
    )
    assert torch.equal(shared, doubled)
    with pytest.raises(MmgtError, match=rf"reference features of {NAME} has batch 3, .* UNet batch 4"):
        ReferenceReadAttnProcessor(NAME)(
            attn, x, mmgt=AttnInputs(mode="read", reference_features={NAME: torch.randn(3, 3, 16)}, num_frames=2)
        )


def test_every_reader_has_a_writer_of_the_same_name(unets):
    reference, unet = unets
    writers = install_reference_writers(reference)
    readers = install_reference_readers(unet)
    assert len(readers) == 7  # tiny: 2 down + 1 mid + 2x2 up transformer blocks
    assert sorted(readers) == sorted(writers)
    assert all(".motion_modules." not in name for name in readers)


@torch.no_grad()
def test_read_with_empty_bank_equals_default_unet_exactly(unets):
    _, unet = unets
    latents, clip = _inputs()
    unet.set_attn_processor(AttnProcessor2_0())
    expected = denoise(unet, latents, 10, clip, None, AttnInputs(num_frames=2))
    install_reference_readers(unet)
    got = denoise(unet, latents, 10, clip, None, AttnInputs(mode="read", num_frames=2))
    assert torch.equal(got, expected)


@torch.no_grad()
def test_write_then_read_changes_the_output(unets):
    reference, unet = unets
    install_reference_writers(reference)
    install_reference_readers(unet)
    latents, clip = _inputs()
    inputs = AttnInputs(mode="read", num_frames=2)
    features = encode_reference(reference, torch.randn(1, 4, 16, 16), clip, inputs)
    assert features is inputs.reference_features and len(features) == 7
    assert features[NAME].shape == (1, 16 * 16, 32)  # (B, N, C) at the first level
    assert features["mid_block.attentions.0.transformer_blocks.0.attn1"].shape == (1, 4 * 4, 64)
    with_reference = denoise(unet, latents, 10, clip, None, inputs)
    without = denoise(unet, latents, 10, clip, None, AttnInputs(mode="read", num_frames=2))
    assert (with_reference - without).abs().max() > 1e-3


def test_install_processors_keeps_motion_modules_and_layers(unets):
    _, unet = unets
    unet.set_attn_processor(AttnProcessor2_0())
    before = unet.attn_processors
    install_reference_readers(unet)
    install_processors(unet, lambda name: None)  # a later call with None keeps the readers
    after = unet.attn_processors
    for key, proc in after.items():
        if ".motion_modules." in key:
            assert proc is before[key]
        elif key.endswith("attn1.processor"):
            assert isinstance(proc, ReferenceReadAttnProcessor) and f"{proc.name}.processor" == key
        else:
            assert type(proc) is PassThroughAttnProcessor


def test_attn_inputs_validate_themselves():
    with pytest.raises(MmgtError, match="mode must be one of"):
        AttnInputs(mode="read_write")
    with pytest.raises(MmgtError, match="num_frames must be >= 1"):
        AttnInputs(num_frames=0)
    with pytest.raises(MmgtError, match=r"branch_masks\[1\] must be \(B\*F, R, h, w\)"):
        AttnInputs(branch_masks=[torch.zeros(1, 3, 2, 2), torch.zeros(3, 2, 2)])

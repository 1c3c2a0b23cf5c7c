"""The lip-sync expert: differentiable head-fixed mouth crops, input checks, embeddings, save/load round trip."""

from __future__ import annotations

import pytest
import torch

from mmgt.errors import MmgtError
from mmgt.models.lipsync import LipSyncExpert, crop_mouths


def _ramp(h: int = 24, w: int = 32) -> torch.Tensor:
    """(1, 3, h, w) image whose value at (y, x) is x + 100 y (all channels)."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return (xs + 100 * ys).expand(1, 3, h, w).clone()


def test_axis_aligned_square_samples_exactly_its_pixels():
    image = _ramp()
    # Centre (20.5, 10.5), half-side 4, 8 output pixels: output pixel j samples x = 17 + j, y = 7 + i exactly.
    square = torch.tensor([[20.5, 10.5, 1.0, 0.0, 0.0, 1.0, 4.0]])
    crop = crop_mouths(image, square, 8)
    torch.testing.assert_close(crop, image[:, :, 7:15, 17:25], atol=1e-3, rtol=0)


def test_square_follows_the_head_axes():
    image = _ramp()
    # Head rotated by 90 degrees: the crop's x axis runs down the image, its y axis runs to the left.
    square = torch.tensor([[20.5, 10.5, 0.0, 1.0, -1.0, 0.0, 4.0]])
    crop = crop_mouths(image, square, 8)
    expected = image[:, :, 7:15, 17:25].transpose(-1, -2).flip(-2)  # out[i, j] = image[7 + j, 24 - i]
    torch.testing.assert_close(crop, expected, atol=1e-3, rtol=0)


def test_a_window_with_its_origin_crops_like_the_whole_frame():
    image = _ramp()
    square = torch.tensor([[14.3, 12.8, 0.96, 0.28, -0.28, 0.96, 3.7]])
    whole = crop_mouths(image, square, 16)
    window = crop_mouths(image[:, :, 4:20, 6:26], square, 16, origin=(6.0, 4.0))
    torch.testing.assert_close(window, whole, atol=1e-3, rtol=0)


def test_crop_gradients_reach_exactly_the_sampled_pixels():
    image = _ramp().requires_grad_(True)
    crop_mouths(image, torch.tensor([[20.5, 10.5, 1.0, 0.0, 0.0, 1.0, 4.0]]), 8).sum().backward()
    touched = image.grad[0, 0] != 0
    assert touched[7:15, 17:25].all() and touched.sum() == 64


def test_bad_squares_fail_in_one_line():
    image = _ramp()
    with pytest.raises(MmgtError, match="squares must be"):
        crop_mouths(image, torch.zeros(1, 6), 8)
    with pytest.raises(MmgtError, match="not finite"):
        crop_mouths(image, torch.full((1, 7), float("nan")), 8)


def test_expert_shapes_unit_embeddings_and_round_trip(tmp_path):
    torch.manual_seed(0)
    expert = LipSyncExpert.from_preset("tiny").eval()
    crops, audio = torch.rand(3, 3, 5, 32, 32) * 2 - 1, torch.randn(3, 5, 81)
    video_emb, audio_emb = expert.video_embedding(crops), expert.audio_embedding(audio)
    assert video_emb.shape == audio_emb.shape == (3, 128)
    torch.testing.assert_close(video_emb.norm(dim=-1), torch.ones(3))
    logits = expert(crops, audio)
    torch.testing.assert_close(logits, expert.logit_scale * (video_emb * audio_emb).sum(-1) + expert.logit_bias)
    expert.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = LipSyncExpert.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded(crops, audio), logits, atol=0, rtol=0)
    with pytest.raises(MmgtError, match="mouth crops must be"):
        expert.video_embedding(torch.zeros(1, 3, 4, 32, 32))
    with pytest.raises(MmgtError, match="audio must be"):
        expert.audio_embedding(torch.zeros(1, 5, 80))
    with pytest.raises(MmgtError, match="unknown lip-sync expert preset"):
        LipSyncExpert.from_preset("huge")

from __future__ import annotations

import pytest
import torch

from mmgt.errors import MmgtError
from mmgt.models.audio_projection import AudioProjection

SMALL = dict(seq_len=5, num_layers=3, input_dim=8, intermediate_dim=16, output_dim=6, num_tokens=4)


def test_default_size_is_the_released_projection():
    # 46,080 -> 512 -> 512 -> 32*768, LayerNorm(768): 36,465,152 parameters (spec: about 36.5 M).
    model = AudioProjection()
    assert sum(p.numel() for p in model.parameters()) == 36_465_152
    assert model.mlp[0].in_features == 5 * 12 * 768


def test_output_is_b_major_layer_normalised_tokens():
    torch.manual_seed(0)
    model = AudioProjection(**SMALL).eval()
    x = torch.randn(2, 3, 5, 3, 8)  # (B, F, 5, L, D)
    tokens = model(x)
    assert tokens.shape == (6, 4, 6)
    # Row b*F + f is frame f of sample b, and frames are projected independently.
    # Batch 6 vs batch 1 matmuls may block their sums differently (per CPU); tokens are ~2, so 5e-6 is ~20 ulps.
    torch.testing.assert_close(tokens[1 * 3 + 0], model(x[1:2, 0:1])[0], rtol=0, atol=5e-6)
    # LayerNorm with its initial affine (1, 0): each token has mean 0 and variance 1.
    torch.testing.assert_close(tokens.mean(-1), torch.zeros(6, 4), rtol=0, atol=1e-5)
    torch.testing.assert_close(tokens.var(-1, unbiased=False), torch.ones(6, 4), rtol=0, atol=1e-3)


def test_known_output_when_only_the_last_bias_is_set():
    model = AudioProjection(**SMALL)
    for p in model.mlp.parameters():
        torch.nn.init.zeros_(p)
    with torch.no_grad():
        model.mlp[4].bias.copy_(torch.tensor([0.0, 0, 0, 0, 0, 6] * 4))  # every token = (0, 0, 0, 0, 0, 6)
    tokens = model(torch.randn(1, 1, 5, 3, 8))
    # LayerNorm of (0,0,0,0,0,6): mean 1, std sqrt(5) -> (-1/sqrt5 x5, 5/sqrt5)
    expected = torch.tensor([-1, -1, -1, -1, -1, 5.0]) / 5**0.5
    torch.testing.assert_close(tokens[0], expected.expand(4, 6), rtol=0, atol=1e-4)


def test_unconditional_tokens_are_zeros_after_projection():
    model = AudioProjection(**SMALL)
    null = model.unconditional_tokens(5)
    assert null.shape == (5, 4, 6) and null.dtype == torch.float32
    assert not null.any()


def test_wrong_window_shape_names_the_expected_layout():
    with pytest.raises(MmgtError, match=r"expects \(B, F, 5, 3, 8\) audio windows, got \(2, 5, 3, 8\)"):
        AudioProjection(**SMALL)(torch.zeros(2, 5, 3, 8))


def test_save_load_round_trip_is_identical(tmp_path):
    torch.manual_seed(0)
    model = AudioProjection(**SMALL)
    model.save_pretrained(tmp_path / "ap")
    loaded = AudioProjection.from_pretrained(tmp_path / "ap")
    x = torch.randn(1, 2, 5, 3, 8)
    assert torch.equal(model(x), loaded(x))

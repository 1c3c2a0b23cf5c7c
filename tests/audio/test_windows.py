"""Frame-grid helpers: padding/trimming, ±k context stacking, window slicing, wave checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmgt.audio.windows import pad_to, stack_context, window_slices
from mmgt.errors import MmgtError
from mmgt.utils.audio_io import check_wave


def test_pad_to_repeats_last_row_or_zeros_and_trims():
    x = np.arange(6, dtype=np.float32).reshape(3, 2)  # rows [0 1] [2 3] [4 5]
    np.testing.assert_array_equal(pad_to(x, 5), [[0, 1], [2, 3], [4, 5], [4, 5], [4, 5]])
    np.testing.assert_array_equal(pad_to(x, 4, mode="zeros"), [[0, 1], [2, 3], [4, 5], [0, 0]])
    np.testing.assert_array_equal(pad_to(x, 2), [[0, 1], [2, 3]])
    assert pad_to(x, 5).dtype == np.float32


def test_pad_to_torch_matches_numpy():
    x = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
    for mode in ("edge", "zeros"):
        out = pad_to(torch.from_numpy(x), 6, mode=mode)
        assert isinstance(out, torch.Tensor)
        np.testing.assert_array_equal(out.numpy(), pad_to(x, 6, mode=mode))


def test_pad_to_rejects_bad_arguments():
    with pytest.raises(MmgtError, match="empty"):
        pad_to(np.zeros((0, 3)), 2)
    with pytest.raises(MmgtError, match="mode"):
        pad_to(np.zeros((1, 3)), 2, mode="reflect")
    np.testing.assert_array_equal(pad_to(np.zeros((0, 3)), 2, mode="zeros"), np.zeros((2, 3)))


def test_stack_context_clamps_at_edges():
    x = np.arange(5, dtype=np.float32)[:, None] * 10  # frame k holds 10 k
    out = stack_context(x, margin=2)
    assert out.shape == (5, 5, 1)
    np.testing.assert_array_equal(
        out[..., 0],
        [
            [0, 0, 0, 10, 20],
            [0, 0, 10, 20, 30],
            [0, 10, 20, 30, 40],
            [10, 20, 30, 40, 40],
            [20, 30, 40, 40, 40],
        ],
    )
    np.testing.assert_array_equal(out[:, 2], x)  # the centre is the frame itself


def test_stack_context_torch_shape_like_stage2():
    feats = torch.randn(7, 3, 4)  # (T, L, D)
    out = stack_context(feats, margin=2)
    assert isinstance(out, torch.Tensor) and out.shape == (7, 5, 3, 4)
    torch.testing.assert_close(out[3], feats[1:6])
    torch.testing.assert_close(out[0, 0], feats[0])
    torch.testing.assert_close(out[6, 4], feats[6])
    assert stack_context(np.zeros((1, 2)), margin=0).shape == (1, 1, 2)


def test_window_slices():
    assert window_slices(200, 80) == [slice(0, 80), slice(80, 160), slice(160, 240)]
    assert window_slices(160, 80) == [slice(0, 80), slice(80, 160)]
    assert window_slices(200, 80, pad_last=False) == [slice(0, 80), slice(80, 160)]
    assert window_slices(100, 80, stride=40) == [slice(0, 80), slice(40, 120)]
    assert window_slices(100, 80, stride=40, pad_last=False) == [slice(0, 80)]
    assert window_slices(5, 80) == [slice(0, 80)]
    assert window_slices(0, 80) == []
    with pytest.raises(MmgtError):
        window_slices(10, 0)


def test_window_slices_cover_every_frame():
    for num_frames in (1, 79, 80, 81, 333):
        covered = np.zeros(num_frames, dtype=int)
        for s in window_slices(num_frames, 80, stride=60):
            covered[s] += 1
        assert covered.min() >= 1


def test_check_wave_errors_name_the_argument():
    assert check_wave([0.0, 0.5], 16000, name="a.wav").dtype == np.float32
    with pytest.raises(MmgtError, match=r"a\.wav: expected a mono"):
        check_wave(np.zeros((2, 10)), 16000, name="a.wav")
    with pytest.raises(MmgtError, match="empty"):
        check_wave(np.zeros(0), 16000)
    with pytest.raises(MmgtError, match="NaN"):
        check_wave(np.array([0.0, np.nan]), 16000)
    with pytest.raises(MmgtError, match="sample rate"):
        check_wave(np.zeros(4), 0)

"""Time-axis helpers shared by the audio features: the 25 fps grid, windows and context stacking.

Every feature in :mod:`mmgt.audio` is aligned to exactly ``T = num_frames_for(len(wave), sample_rate)`` rows
(ceil(duration * 25)); :func:`pad_to` is the one place that pads or trims to that length. The helpers that act on
feature arrays accept numpy arrays and torch tensors alike and return the same type.
"""

from __future__ import annotations

import numpy as np
import torch

from mmgt.errors import MmgtError

Array = np.ndarray | torch.Tensor


# ---------------------------------------------------------------------------------------------------------------------
# The frame grid
# ---------------------------------------------------------------------------------------------------------------------
def pad_to(features: Array, length: int, mode: str = "edge") -> Array:
    """Pad or trim ``features`` along axis 0 to exactly ``length`` rows.

    Args:
        features: (F, ...) numpy array or torch tensor.
        length: the wanted number of rows, >= 0.
        mode: ``"edge"`` repeats the last row (the convention for features aligned to T frames), ``"zeros"``
            appends zero rows.

    Returns:
        (length, ...) array of the same type, dtype and device as ``features``.
    """
    if mode not in ("edge", "zeros"):
        raise MmgtError(f"pad_to: mode must be 'edge' or 'zeros', got {mode!r}")
    if length < 0:
        raise MmgtError(f"pad_to: length must be >= 0, got {length}")
    missing = length - features.shape[0]
    if missing <= 0:
        return features[:length]
    if mode == "edge" and features.shape[0] == 0:
        raise MmgtError("pad_to: cannot repeat the last row of an empty feature array (use mode='zeros')")
    if isinstance(features, torch.Tensor):
        if mode == "edge":
            tail = features[-1:].expand(missing, *features.shape[1:])
        else:
            tail = features.new_zeros((missing, *features.shape[1:]))
        return torch.cat([features, tail], dim=0)
    if mode == "edge":
        tail = np.repeat(features[-1:], missing, axis=0)
    else:
        tail = np.zeros((missing, *features.shape[1:]), dtype=features.dtype)
    return np.concatenate([features, tail], axis=0)


def stack_context(features: Array, margin: int = 2) -> Array:
    """Stack each frame with its ``margin`` neighbours on both sides, clamping at the edges (spec §5.4 step 3).

    Frame k receives frames k - margin ... k + margin; indices outside [0, T) are clamped, so the first frame
    repeats itself ``margin`` times on the left.

    Args:
        features: (T, ...) numpy array or torch tensor, e.g. (T, 12, 768) wav2vec2 hidden states.
        margin: number of neighbours on each side (2 in the official recipe), >= 0.

    Returns:
        (T, 2 * margin + 1, ...) array of the same type; ``out[k, margin]`` is ``features[k]``.
    """
    if margin < 0:
        raise MmgtError(f"stack_context: margin must be >= 0, got {margin}")
    num_frames = features.shape[0]
    offsets = np.arange(-margin, margin + 1)
    index = np.clip(np.arange(num_frames)[:, None] + offsets[None, :], 0, max(num_frames - 1, 0))  # (T, 2m+1)
    if isinstance(features, torch.Tensor):
        return features[torch.as_tensor(index, device=features.device)]
    return features[index]


def window_slices(num_frames: int, window: int, stride: int | None = None, pad_last: bool = True) -> list[slice]:
    """Windows of ``window`` frames starting at 0 and every ``stride`` frames.

    Args:
        num_frames: length T of the sequence to cover.
        window: frames per window (80 for SMGA), >= 1.
        stride: step between window starts; defaults to ``window`` (contiguous, non-overlapping windows).
        pad_last: if True, windows continue until every frame is covered, so the last slice may end past
            ``num_frames`` (the caller zero-pads it); if False, only windows that fit entirely are returned.

    Returns:
        ``slice(start, start + window)`` objects in increasing order; empty when ``num_frames`` is 0.
    """
    stride = window if stride is None else stride
    if window < 1 or stride < 1:
        raise MmgtError(f"window_slices: window and stride must be >= 1, got window={window}, stride={stride}")
    if num_frames < 0:
        raise MmgtError(f"window_slices: num_frames must be >= 0, got {num_frames}")
    if not pad_last:
        return [slice(s, s + window) for s in range(0, num_frames - window + 1, stride)]
    slices = []
    start = 0
    while start < num_frames:
        slices.append(slice(start, start + window))
        if start + window >= num_frames:  # this window already reaches the end
            break
        start += stride
    return slices

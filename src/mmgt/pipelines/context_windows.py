"""Stage II's window machinery: overlapping context windows over a video of any length (spec §5.7), the
timestep-independent conditions of one window, and the all-or-nothing cache that keeps them across timesteps.

Stage II denoises 12-frame windows; a video of any length is covered by windows that overlap by 4 frames, and at
every diffusion step the predictions of overlapping windows are averaged per frame (in the pipeline's ``predict``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mmgt.errors import MmgtError


def context_windows(num_frames: int, window: int = 12, overlap: int = 4, closed_loop: bool = False) -> list[list[int]]:
    """Frame indices of the context windows that cover ``num_frames`` frames.

    Windows start at 0 and every ``window - overlap`` frames. Every frame is in at least one window and no window
    is longer than ``window``.

    * ``closed_loop=False``: windows stay inside the sequence; the last window is aligned to the end (it starts at
      ``num_frames - window``), so it may overlap its predecessor by more than ``overlap`` frames.
    * ``closed_loop=True``: the released "uniform" context scheduler (spec §5.7). Window starts run up to the last
      frame and indices are taken modulo ``num_frames``, so the last window(s) wrap around to the start: the end of
      the video is denoised together with its beginning, as if the video were a loop. Every window has exactly
      ``window`` frames.

    A sequence no longer than ``window`` gives one window of all its frames (both modes).

    Args:
        num_frames: length F of the sequence, >= 1.
        window: frames per window (12 in the release), >= 1.
        overlap: frames shared by consecutive windows (4 in the release), 0 <= overlap < window.
        closed_loop: wrap the last window(s) around to the start instead of aligning to the end.

    Returns:
        One list of frame indices per window, in order.

    Raises:
        MmgtError: a non-positive length or window, or an overlap outside [0, window).

    Example:
        >>> context_windows(20, window=12, overlap=4)
        [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]]
    """
    if num_frames < 1 or window < 1:
        raise MmgtError(f"context_windows: num_frames and window must be >= 1, got {num_frames} and {window}")
    if not 0 <= overlap < window:
        raise MmgtError(f"context_windows: overlap must be in [0, window={window}), got {overlap}")
    if num_frames <= window:
        return [list(range(num_frames))]
    stride = window - overlap
    if closed_loop:
        # Released behaviour: a window starts at every stride below num_frames; indices wrap modulo num_frames.
        return [[(start + i) % num_frames for i in range(window)] for start in range(0, num_frames, stride)]
    # Deviation from the release (spec §10.12, "windows MUST cover every frame"): the last window is pulled back to
    # end exactly at the last frame instead of running past it.
    starts = list(range(0, num_frames - window, stride)) + [num_frames - window]
    return [list(range(start, start + window)) for start in starts]


@dataclass
class WindowConditions:
    """The timestep-independent inputs of one context window (w frames), shared by every guidance branch.

    Attributes:
        pose_features: (w, C0, h, w) PoseGuider output.
        branch_masks: per UNet level (w, R, h_l, w_l) MM-HAA branch masks.
        audio_tokens: (w, N, D) the speech's audio tokens (the unconditional ones without audio).
        silent_tokens: (w, N, D) the unconditional audio tokens, read by the branches without audio.
    """

    pose_features: torch.Tensor
    branch_masks: list[torch.Tensor]
    audio_tokens: torch.Tensor
    silent_tokens: torch.Tensor

    def branch_audio_tokens(self, branches: tuple[str, ...]) -> torch.Tensor:
        """(n * w, N, D) audio tokens of the guidance ``branches``, branch-major: speech in ``"full"`` only."""
        return torch.cat([self.audio_tokens if b == "full" else self.silent_tokens for b in branches])

    @property
    def nbytes(self) -> int:
        tensors = {id(t): t for t in (self.pose_features, self.audio_tokens, self.silent_tokens, *self.branch_masks)}
        return sum(t.numel() * t.element_size() for t in tensors.values())  # without audio the tokens are one tensor


class WindowCache:
    """Window conditions kept across timesteps when all ``num_windows`` of them fit in ``budget`` bytes.

    All or nothing: a short video keeps every window's conditions (the speed-up matters most there, and its memory
    is small), a long one recomputes them at every step, so peak memory does not grow with the length (a partial
    cache filled up to its budget made a 60 s run peak 1.49x a 6 s run). At SD-1.5 size a 12-frame window costs
    about 66 MB in float32, almost all of it pose features (12 x 320 x 64 x 64); masks add 0.8 MB and audio
    tokens 1.2 MB per branch.
    """

    def __init__(self, budget: float, num_windows: int):
        self.budget, self.num_windows, self.used, self.items = budget, num_windows, 0, {}

    def get(self, key: int, make: Callable[[], WindowConditions]) -> WindowConditions:
        if key in self.items:
            return self.items[key]
        value = make()
        if not self.items and value.nbytes * self.num_windows > self.budget:
            self.budget = 0  # the whole video does not fit: cache nothing
        if self.used + value.nbytes <= self.budget:
            self.items[key], self.used = value, self.used + value.nbytes
        return value

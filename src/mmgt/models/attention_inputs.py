"""The one per-call object stage-2 attention processors read: ``cross_attention_kwargs={"mmgt": AttnInputs(...)}``.

diffusers hands every entry of ``cross_attention_kwargs`` to every spatial attention processor whose ``__call__`` names
it, so all per-call tensors travel together under ONE key (STYLE §4.6 rung 2). Processors hold weights and their layer
name only; everything that changes from call to call lives here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from mmgt.errors import MmgtError

MODES = ("write", "read", "off")


@dataclass
class AttnInputs:
    """Per-call inputs of the ReferenceNet and the denoising UNet.

    Attributes:
        mode: ``"write"`` on the ReferenceNet (its self-attention layers store their input), ``"read"`` on the
            denoising UNet (self-attention also attends to the stored features), ``"off"`` for neither.
        reference_features: layer name -> (B_ref, N, C) normalised hidden states stored in write mode. Shared by
            reference: ``dataclasses.replace(inputs, mode="read")`` keeps the same dict.
        audio_tokens: (B*F, T, D) projected audio tokens (T=32, D=768 for SD-1.5), frames b-major; ``None`` turns
            MM-HAA off. Unconditional audio is all-zero tokens, not ``None`` (spec §5.4.5).
        branch_masks: one tensor per UNet level, each (B*F, R, h, w) in [0, 1], one channel per MM-HAA branch in
            the adapter's order (global, face_hands, lips). Each MM-HAA layer picks the level whose h*w equals its
            token count.
        branch_weights: one weight per branch; always applied (spec §5.3 decision: (1, 1, 1) in training, (1, 1, 2)
            at inference).
        num_frames: F, the number of frames per sample in the denoising UNet batch (1 for the ReferenceNet/images).
    """

    mode: Literal["write", "read", "off"] = "off"
    reference_features: dict[str, torch.Tensor] = field(default_factory=dict)
    audio_tokens: torch.Tensor | None = None
    branch_masks: list[torch.Tensor] | None = None
    branch_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    num_frames: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise MmgtError(f"AttnInputs.mode must be one of {MODES}, got {self.mode!r}")
        if int(self.num_frames) < 1:
            raise MmgtError(f"AttnInputs.num_frames must be >= 1, got {self.num_frames}")
        if self.audio_tokens is not None and self.audio_tokens.ndim != 3:
            raise MmgtError(f"AttnInputs.audio_tokens must be (B*F, T, D), got shape {tuple(self.audio_tokens.shape)}")
        for level, mask in enumerate(self.branch_masks or []):
            if mask.ndim != 4:
                raise MmgtError(f"AttnInputs.branch_masks[{level}] must be (B*F, R, h, w), got {tuple(mask.shape)}")


def match_batch(tensor: torch.Tensor, batch: int, what: str) -> torch.Tensor:
    """Tile ``tensor`` (n, ...) along dim 0 to ``batch`` rows, where ``batch`` is a multiple of n.

    Why tiling: under classifier-free guidance the UNet batch is the concatenation [uncond; cond] of two copies of the
    same frames (b-major within each), so inputs shared by both branches (pose features, masks) are given once and
    repeated as whole groups, never interleaved.
    """
    n = tensor.shape[0]
    if n == batch:
        return tensor
    if n == 0 or batch % n != 0:
        raise MmgtError(f"{what} has batch {n}, which does not divide the UNet batch {batch}")
    return tensor.repeat(batch // n, *([1] * (tensor.ndim - 1)))

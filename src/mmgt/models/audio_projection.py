"""Audio projection: a +-2-frame window of all wav2vec2 layers -> per-frame audio tokens A (spec §5.4.4-5)."""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from mmgt.errors import MmgtError


class AudioProjection(ModelMixin, ConfigMixin):
    """Per-frame MLP from stacked wav2vec2 features to ``num_tokens`` audio tokens (official AudioProjModel).

    (B, F, seq_len, num_layers, input_dim) -> flatten per frame -> Linear, ReLU -> Linear, ReLU ->
    Linear(num_tokens * output_dim) -> (B*F, num_tokens, output_dim) -> LayerNorm. About 36.5 M parameters at the
    defaults, almost all in the first and last linear layers.

    Args:
        seq_len: frames per window (5 = frames k-2..k+2).
        num_layers: wav2vec2 hidden states stacked per frame (12 for wav2vec2-base).
        input_dim: wav2vec2 hidden size.
        intermediate_dim: width of the two hidden layers.
        output_dim: token width; equals the audio context dim of MM-HAA.
        num_tokens: audio tokens per frame.
    """

    @register_to_config
    def __init__(
        self,
        seq_len: int = 5,
        num_layers: int = 12,
        input_dim: int = 768,
        intermediate_dim: int = 512,
        output_dim: int = 768,
        num_tokens: int = 32,
    ):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(seq_len * num_layers * input_dim, intermediate_dim),
            nn.ReLU(),
            nn.Linear(intermediate_dim, intermediate_dim),
            nn.ReLU(),
            nn.Linear(intermediate_dim, num_tokens * output_dim),
        )
        self.norm = nn.LayerNorm(output_dim)

    def forward(self, audio_windows: torch.Tensor) -> torch.Tensor:
        """Project audio windows.

        Args:
            audio_windows: (B, F, seq_len, num_layers, input_dim) wav2vec2 features, one window per video frame.

        Returns:
            (B*F, num_tokens, output_dim) audio tokens, frames in b-major order (row b*F + f).
        """
        cfg = self.config
        expected = (cfg.seq_len, cfg.num_layers, cfg.input_dim)
        if audio_windows.ndim != 5 or tuple(audio_windows.shape[2:]) != expected:
            raise MmgtError(
                f"AudioProjection expects (B, F, {', '.join(map(str, expected))}) audio windows, "
                f"got {tuple(audio_windows.shape)}"
            )
        frames = audio_windows.flatten(0, 1).flatten(1)  # (B*F, seq_len * num_layers * input_dim)
        tokens = self.mlp(frames).view(-1, cfg.num_tokens, cfg.output_dim)  # (B*F, T, D)
        return self.norm(tokens)

    def unconditional_tokens(self, num_frames: int) -> torch.Tensor:
        """(num_frames, num_tokens, output_dim) zeros: the "no audio" condition for dropout and CFG.

        Official code: unconditional audio is all-zero tokens AFTER the projection (spec §5.4.5), not the projection
        of zero features (which would be the LayerNorm bias plus whatever the MLP biases produce).
        """
        p = next(self.parameters())
        return torch.zeros(num_frames, self.config.num_tokens, self.config.output_dim, device=p.device, dtype=p.dtype)

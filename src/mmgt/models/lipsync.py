"""A trainable lip-sync expert: mouth crops of 5 frames against the matching 0.2 s of audio (``mmgt train syncnet``).

The family is SyncNet's (Chung & Zisserman 2016) as Wav2Lip's expert and LatentSync's StableSyncNet use it: a lip
tower and an audio tower embed the same 5-frame window, and the cosine of the two embeddings says whether they are in
sync. It works on **pixels**, not VAE latents: at the tiny preset's 128² frames the mouth spans about 9 × 4 pixels,
less than one 8 × 8 latent cell, so latents cannot resolve it; pixels also keep the expert independent of the VAE (one
expert scores real frames, generated videos and the stage-2 video step's decoded x̂0). It is not syncnet_v2 itself:
syncnet_v2 wants 224² face crops and 13 MFCCs, far too large for 20-pixel faces and CPU training, but the interface is
the same (a 5-frame window, one embedding per tower, a distance per audio offset), so Sync-C / Sync-D
(:mod:`mmgt.evaluation.syncnet`'s LSE definitions) apply unchanged to its L2-normalised embeddings.

Inputs:

* video: the **head-fixed mouth square** of each frame (:func:`mmgt.evaluation.video_regions.mouth_squares`: it
  follows the nose and eye corners, not the lips, so the crop does not move when the mouth opens), sampled by
  :func:`crop_mouths` (``grid_sample``, differentiable: the stage-2 video step's sync loss back-propagates through
  it) to ``crop_size``² RGB in [-1, 1]; the 5 frames are stacked on the channel axis (Wav2Lip's layout).
* audio: the project's standardised log-mel features at 25 fps (:func:`mmgt.audio.mel.mel_features`, 80 bands + RMS
  energy) of the same 5 frames, (5, 81).

The sync probability is sigmoid(scale · cos + bias) with a learnt scale and bias (SigLIP's pairwise sigmoid); training
is binary cross-entropy on in-sync windows and windows whose audio is shifted or from another clip.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from torch.nn import functional as F

from mmgt.errors import MmgtError

LIP_FRAMES = 5  # video frames per expert window (SyncNet's)
SQUARE_FIELDS = 7  # a mouth square: centre (2), unit x axis (2), unit y axis (2), half-side, all in pixels

PRESETS: dict[str, dict[str, Any]] = {
    # 32² crops of 5 frames, 128-d embeddings, 0.29 M parameters: 3000 steps x 64 windows take ~6 min of CPU time.
    "tiny": {"crop_size": 32, "embed_dim": 128, "video_channels": (16, 32, 64, 128), "audio_channels": (64, 128)},
}


class _Down(nn.Module):
    """3x3 conv, GroupNorm, SiLU, then a stride-2 3x3 conv, GroupNorm, SiLU: halves H and W."""

    def __init__(self, channels: int, next_channels: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(8, channels),
            nn.SiLU(),
            nn.Conv2d(channels, next_channels, 3, padding=1, stride=2),
            nn.GroupNorm(8, next_channels),
            nn.SiLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class LipSyncExpert(ModelMixin, ConfigMixin):
    """Lip tower + audio tower -> L2-normalised embeddings; their cosine scores sync.

    Args:
        num_frames: video frames per window (5, SyncNet's).
        crop_size: side of the mouth crops in pixels.
        audio_features: audio feature columns per frame (81: 80 log-mel bands + energy, ``mel_features``).
        embed_dim: embedding size of both towers.
        video_channels: lip-tower channels: a 3x3 stem to the first, then one halving step per further entry.
        audio_channels: audio-tower 1-D convolutions over the window's frames (kernel 3, no striding).

    GroupNorm (no running statistics) keeps train and eval mode identical and the frozen expert independent of the
    batch it scores.
    """

    @register_to_config
    def __init__(
        self,
        num_frames: int = LIP_FRAMES,
        crop_size: int = 32,
        audio_features: int = 81,
        embed_dim: int = 128,
        video_channels: tuple[int, ...] = (32, 64, 128, 256),
        audio_channels: tuple[int, ...] = (128, 256),
    ):
        super().__init__()
        video_channels, audio_channels = list(video_channels), list(audio_channels)
        if len(video_channels) < 2 or not audio_channels:
            raise MmgtError("LipSyncExpert needs >= 2 video_channels and >= 1 audio_channels")
        if crop_size % 2 ** (len(video_channels) - 1):
            raise MmgtError(f"crop_size {crop_size} must be divisible by 2^{len(video_channels) - 1}")
        self.video_stem = nn.Sequential(
            nn.Conv2d(3 * num_frames, video_channels[0], 3, padding=1), nn.GroupNorm(8, video_channels[0]), nn.SiLU()
        )
        self.video_down = nn.Sequential(*(_Down(a, b) for a, b in zip(video_channels[:-1], video_channels[1:])))
        self.video_head = nn.Linear(video_channels[-1], embed_dim)
        layers, width = [], audio_features
        for channels in audio_channels:
            layers += [nn.Conv1d(width, channels, 3, padding=1), nn.GroupNorm(8, channels), nn.SiLU()]
            width = channels
        self.audio_convs = nn.Sequential(*layers)
        self.audio_head = nn.Linear(width * num_frames, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(10.0))
        self.logit_bias = nn.Parameter(torch.tensor(-5.0))

    @classmethod
    def from_preset(cls, name: str = "tiny", **overrides: Any) -> LipSyncExpert:
        """A freshly initialised expert from ``PRESETS[name]`` with ``overrides`` applied on top."""
        if name not in PRESETS:
            raise MmgtError(f"unknown lip-sync expert preset {name!r}; expected one of {tuple(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def video_embedding(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, S, S) mouth crops in [-1, 1] (T = num_frames, S = crop_size) -> (N, E) unit vectors."""
        n, c, t, h, w = crops.shape
        if (c, t, h, w) != (3, self.config.num_frames, self.config.crop_size, self.config.crop_size):
            size = self.config.crop_size
            raise MmgtError(f"mouth crops must be (N, 3, {self.config.num_frames}, {size}, {size}), got {crops.shape}")
        x = self.video_down(self.video_stem(crops.reshape(n, c * t, h, w)))  # (N, C, s, s)
        return F.normalize(self.video_head(x.mean(dim=(2, 3))), dim=-1)

    def audio_embedding(self, audio: torch.Tensor) -> torch.Tensor:
        """(N, T, A) audio features of the window's T frames -> (N, E) unit vectors."""
        if tuple(audio.shape[1:]) != (self.config.num_frames, self.config.audio_features):
            raise MmgtError(
                f"audio must be (N, {self.config.num_frames}, {self.config.audio_features}), got {tuple(audio.shape)}"
            )
        x = self.audio_convs(audio.transpose(1, 2))  # (N, C, T)
        return F.normalize(self.audio_head(x.flatten(1)), dim=-1)

    def logits(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Sync logits (N,) of unit embeddings: scale · cos + bias (sigmoid = the sync probability)."""
        return self.logit_scale * (video * audio).sum(-1) + self.logit_bias

    def forward(self, crops: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, S, S) crops and (N, T, A) audio -> (N,) sync logits."""
        return self.logits(self.video_embedding(crops), self.audio_embedding(audio))


def crop_mouths(pixels: torch.Tensor, squares: torch.Tensor, size: int, origin=(0.0, 0.0)) -> torch.Tensor:
    """Sample each image's mouth square to ``size``² pixels (bilinear, borders replicated, differentiable).

    Args:
        pixels: (N, 3, H, W) images (any range; gradients flow to them).
        squares: (N, 7) mouth squares ``(cx, cy, ax, ay, bx, by, half)`` in the pixel coordinates of the full frame
            (:func:`mmgt.evaluation.video_regions.mouth_squares`; pixel centres at integers).
        size: output side.
        origin: (x, y) of ``pixels``' top-left pixel in the full frame, when ``pixels`` is a window of it.

    Returns:
        (N, 3, size, size): output (u, v) in [-1, 1]² samples centre + half · (u · axis_x + v · axis_y).
    """
    if squares.ndim != 2 or squares.shape[-1] != SQUARE_FIELDS or len(squares) != len(pixels):
        raise MmgtError(f"squares must be ({len(pixels)}, {SQUARE_FIELDS}), got {tuple(squares.shape)}")
    if not torch.isfinite(squares).all():
        raise MmgtError("a mouth square is not finite (lips, nose or eye corners not visible in that frame)")
    h, w = pixels.shape[-2:]
    sq = squares.to(pixels.device, torch.float32)
    centre = sq[:, :2] - torch.tensor(origin, dtype=torch.float32, device=pixels.device)
    half = sq[:, 6:7]
    norm = torch.tensor([2.0 / w, 2.0 / h], device=pixels.device)  # pixel -> normalised (align_corners=False)
    theta = torch.stack(
        [
            half * sq[:, 2:4] * norm,  # column for u: half · axis_x
            half * sq[:, 4:6] * norm,  # column for v: half · axis_y
            (centre + 0.5) * norm - 1.0,  # the centre
        ],
        dim=2,
    )  # (N, 2, 3)
    grid = F.affine_grid(theta, [len(pixels), 3, size, size], align_corners=False)
    return F.grid_sample(pixels.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)

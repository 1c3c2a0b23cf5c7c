"""LPIPS (Zhang et al. 2018, v0.1, AlexNet) in plain torch: the perceptual distance of generated to real frames.

LPIPS(x, y) = sum over 5 AlexNet ReLU layers l of mean over pixels of  w_l . (f_l(x) / |f_l(x)| - f_l(y) / |f_l(y)|)^2
with f_l the channel vector at a pixel (unit-normalised over channels) and w_l >= 0 the learned linear weights.

Two files: the AlexNet backbone in torchvision's layout (``alexnet-owt-7be5be79.pth``; the user supplies it) and
the linear layers of the ``lpips`` 0.1.4 wheel (``lpips/weights/v0.1/alex.pth``). Inputs are uint8 RGB frames,
mapped to [-1, 1] and then shifted and scaled by LPIPS's ImageNet-derived constants.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mmgt.errors import MmgtError, ModelFolderError

CHANNELS = (64, 192, 384, 256, 256)  # AlexNet relu1..relu5
# LPIPS's ScalingLayer: inputs in [-1, 1] are shifted and scaled per channel (RGB) before AlexNet.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10  # added to the channel norm, as lpips.normalize_tensor


def alexnet_features() -> nn.Sequential:
    """torchvision's ``AlexNet.features`` layout (indices 0, 3, 6, 8, 10 are the convolutions)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2),
        nn.Conv2d(64, 192, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2),
        nn.Conv2d(192, 384, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2),
    )


# The AlexNet layers after which LPIPS taps the activations (relu1..relu5).
TAPS = (1, 4, 7, 9, 11)


class LPIPS(nn.Module):
    """LPIPS v0.1 with the AlexNet trunk: ``features`` (torchvision names) and ``lins`` (5 x 1x1 conv, no bias)."""

    def __init__(self):
        super().__init__()
        self.features = alexnet_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised (over channels) activations after relu1..relu5."""
        out = []
        x = (x - self.shift) / self.scale
        for i, layer in enumerate(self.features[: TAPS[-1] + 1]):
            x = layer(x)
            if i in TAPS:
                out.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + NORM_EPS))
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) images in [-1, 1] (H, W >= 32) -> (N,) LPIPS distances."""
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for lin, fx, fy in zip(self.lins, self._taps(x), self._taps(y)):
            total = total + lin((fx - fy) ** 2).mean(dim=(1, 2, 3))
        return total


def to_lpips_input(frames: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@torch.no_grad()
def lpips_distances(model: LPIPS, generated: np.ndarray, real: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """(F,) LPIPS of each generated frame to its real frame; both (F, H, W, 3) uint8 of one size."""
    if generated.shape != real.shape:
        raise MmgtError(f"LPIPS: generated {generated.shape} and real {real.shape} frames differ in shape")
    out = [
        model(to_lpips_input(generated[i : i + batch_size]), to_lpips_input(real[i : i + batch_size])).double()
        for i in range(0, len(real), batch_size)
    ]
    return torch.cat(out).numpy() if out else np.zeros(0)


def _read_state(path: Path, what: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle / zip errors of files that are not torch checkpoints
        raise ModelFolderError(f"{path}: cannot read the {what} ({type(e).__name__})") from e
    if not isinstance(state, dict):
        raise ModelFolderError(f"{path}: the {what} must be a state dict, got a {type(state).__name__}")
    return state


def load_lpips(alexnet: str | os.PathLike, linear: str | os.PathLike) -> LPIPS:
    """LPIPS from an AlexNet state dict (torchvision layout; ``classifier.*`` is ignored) and lpips's ``alex.pth``.

    Raises:
        ModelFolderError: unreadable files or a missing, unexpected or misshapen parameter (named).
    """
    model = LPIPS()
    trunk = {k: v for k, v in _read_state(Path(alexnet), "AlexNet weights").items() if not k.startswith("classifier.")}
    lins = _read_state(Path(linear), "LPIPS linear layers")
    state = {f"features.{k.removeprefix('features.')}": v for k, v in trunk.items()}
    for i in range(len(CHANNELS)):
        key = f"lin{i}.model.1.weight"
        if key not in lins:
            raise ModelFolderError(f"{linear}: not the LPIPS linear layers (missing {key!r})")
        state[f"lins.{i}.weight"] = lins[key]
    expected = {k: v.shape for k, v in model.state_dict().items() if k not in ("shift", "scale")}
    for key, shape in expected.items():
        source = alexnet if key.startswith("features.") else linear
        if key not in state:
            raise ModelFolderError(f"{source}: not the AlexNet layout (missing {key!r})")
        if tuple(state[key].shape) != tuple(shape):
            raise ModelFolderError(f"{source}: {key} has shape {tuple(state[key].shape)}, expected {tuple(shape)}")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise ModelFolderError(f"{alexnet}: not the AlexNet layout (unexpected {unexpected[0]!r})")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)  # shift/scale are constants
    return model.eval()

"""Pose guider E_P: rendered pose frames -> a residual added to the UNet's first feature map (spec §5.1, §5.2)."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import torch
from diffusers import ControlNetModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from safetensors import safe_open
from torch import nn
from torch.nn import functional as F

from mmgt.errors import MmgtError, ModelFolderError

CONTROLNET_PREFIX = "controlnet_cond_embedding."
CONTROLNET_WEIGHTS = "diffusion_pytorch_model.safetensors"


class _DownStep(nn.Module):
    """c -> c 3x3, SiLU, c -> c_next 3x3 stride 2, SiLU: one halving of the resolution."""

    def __init__(self, channels: int, next_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.down = nn.Conv2d(channels, next_channels, 3, padding=1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.down(F.silu(self.conv(x))))


class PoseGuider(ModelMixin, ConfigMixin):
    """Pose encoder E_P: (N, 3, H, W) pose images in [0, 1] -> (N, out_channels, H/8, W/8) UNet residual.

    The layout is ControlNet's condition embedding (so it can start from ControlNet-openpose, spec §5.2), with a
    zero-initialised output conv: a fresh guider adds exactly nothing to the UNet input.

    Args:
        conditioning_channels: channels of the pose image (3, RGB rendering).
        block_out_channels: channels after conv_in and after each stride-2 step; len - 1 steps, each halving H and W.
        out_channels: channels of the UNet's conv_in output (320 for SD-1.5).
    """

    @register_to_config
    def __init__(
        self,
        conditioning_channels: int = 3,
        block_out_channels: tuple[int, ...] = (16, 32, 96, 256),
        out_channels: int = 320,
    ):
        super().__init__()
        channels = list(block_out_channels)
        if len(channels) < 2:
            raise MmgtError(f"PoseGuider.block_out_channels needs at least 2 entries, got {channels}")
        self.conv_in = nn.Conv2d(conditioning_channels, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList(_DownStep(c, c_next) for c, c_next in zip(channels[:-1], channels[1:]))
        self.conv_out = nn.Conv2d(channels[-1], out_channels, 3, padding=1)
        # Zero init: training starts from the unconditioned UNet and learns how much pose to add (ControlNet's trick).
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def downsample_factor(self) -> int:
        return 2 ** len(self.blocks)

    def forward(self, pose_images: torch.Tensor) -> torch.Tensor:
        """Encode pose frames.

        Args:
            pose_images: (N, 3, H, W) in [0, 1], or a video (B, 3, F, H, W), which is flattened to N = B*F frames in
                b-major order (frame f of sample b at row b*F + f), the order of UNetMotionModel's internal reshape.

        Returns:
            (N, out_channels, H / 8, W / 8) features (H/2**steps in general).
        """
        if pose_images.ndim == 5:
            b, c, f, h, w = pose_images.shape
            pose_images = pose_images.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)  # (B*F, 3, H, W), b-major
        if pose_images.ndim != 4 or pose_images.shape[1] != self.config.conditioning_channels:
            raise MmgtError(
                f"PoseGuider expects (N, {self.config.conditioning_channels}, H, W) or (B, "
                f"{self.config.conditioning_channels}, F, H, W) pose images, got {tuple(pose_images.shape)}"
            )
        h, w = pose_images.shape[-2:]
        if h % self.downsample_factor or w % self.downsample_factor:
            raise MmgtError(f"PoseGuider input size {h}x{w} is not divisible by {self.downsample_factor}")
        x = F.silu(self.conv_in(pose_images))
        for step in self.blocks:
            x = step(x)
        return self.conv_out(x)  # (N, out_channels, H/8, W/8)

    @classmethod
    def from_controlnet(
        cls, controlnet_folder_or_model: str | os.PathLike | ControlNetModel, out_channels: int | None = None
    ) -> PoseGuider:
        """A guider initialised from a diffusers ControlNet's ``controlnet_cond_embedding`` (all but the output conv).

        Official code: the pose guider starts from ControlNet-v1.1-openpose; its output conv stays zero.

        Args:
            controlnet_folder_or_model: a ``ControlNetModel`` or a local diffusers folder with ``config.json`` and
                ``diffusion_pytorch_model.safetensors`` (only the condition-embedding tensors are read).
            out_channels: output channels; defaults to the ControlNet's ``block_out_channels[0]``.

        Raises:
            ModelFolderError: the folder misses files or holds tensors of unexpected names/shapes.
        """
        config, state = _read_controlnet(controlnet_folder_or_model)
        guider = cls(
            conditioning_channels=config["conditioning_channels"],
            block_out_channels=tuple(config["conditioning_embedding_out_channels"]),
            out_channels=out_channels or config["block_out_channels"][0],
        )
        own = guider.state_dict()
        loaded = {}
        for src, dst in _controlnet_key_map(len(guider.blocks)).items():
            if src not in state:
                raise ModelFolderError(f"{_describe(controlnet_folder_or_model)}: missing tensor {src}")
            if state[src].shape != own[dst].shape:
                raise ModelFolderError(
                    f"{_describe(controlnet_folder_or_model)}: {src} has shape {tuple(state[src].shape)}, "
                    f"expected {tuple(own[dst].shape)} for {dst}"
                )
            loaded[dst] = state[src]
        # Only conv_out is left out: it stays zero so the guider starts as a no-op.
        missing, unexpected = guider.load_state_dict(loaded, strict=False)
        assert not unexpected and set(missing) == {"conv_out.weight", "conv_out.bias"}, (missing, unexpected)
        return guider


def _controlnet_key_map(num_steps: int) -> dict[str, str]:
    """ControlNet key -> PoseGuider key. diffusers keeps the step convs in one flat list: [conv, down] per step."""
    mapping = {}
    for param in ("weight", "bias"):
        mapping[f"{CONTROLNET_PREFIX}conv_in.{param}"] = f"conv_in.{param}"
        for i in range(num_steps):
            mapping[f"{CONTROLNET_PREFIX}blocks.{2 * i}.{param}"] = f"blocks.{i}.conv.{param}"
            mapping[f"{CONTROLNET_PREFIX}blocks.{2 * i + 1}.{param}"] = f"blocks.{i}.down.{param}"
    return mapping


def _read_controlnet(source: str | os.PathLike | ControlNetModel) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, condition-embedding tensors) from a model or a folder, without loading the whole ControlNet."""
    if isinstance(source, ControlNetModel):
        state = {k: v for k, v in source.state_dict().items() if k.startswith(CONTROLNET_PREFIX)}
        return dict(source.config), state
    folder = Path(source)
    missing = [name for name in ("config.json", CONTROLNET_WEIGHTS) if not (folder / name).is_file()]
    if missing:
        raise ModelFolderError(f"{folder}: not a diffusers ControlNet folder (missing {', '.join(missing)})")
    config = json.loads((folder / "config.json").read_text())
    with safe_open(folder / CONTROLNET_WEIGHTS, framework="pt") as weights:  # reads only the tensors asked for
        state = {k: weights.get_tensor(k) for k in weights.keys() if k.startswith(CONTROLNET_PREFIX)}
    # An old config.json may omit keys that equal ControlNetModel's constructor defaults.
    defaults = inspect.signature(ControlNetModel.__init__).parameters
    for key in ("conditioning_channels", "conditioning_embedding_out_channels", "block_out_channels"):
        config.setdefault(key, defaults[key].default)
    return config, state


def _describe(source: object) -> str:
    return type(source).__name__ if isinstance(source, nn.Module) else str(source)

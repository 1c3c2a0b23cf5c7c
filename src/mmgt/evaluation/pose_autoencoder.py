"""FGD: Fréchet Gesture Distance in the latent space of a pose autoencoder that mmgt trains itself (spec §9).

No public gesture autoencoder fits the 134-point DWPose layout, so mmgt ships its own: a small 1-D temporal conv
autoencoder over fixed-length windows of normalised keypoints whose bottleneck is ONE latent vector per window, the
shape of the FGD encoder of Yoon et al. (2020, "Speech gesture generation from the trimodal context"). Because the
decoder rebuilds the whole window from that vector, the vector is exactly what FGD compares. The extractor (this
module) and the metric (:mod:`mmgt.evaluation.frechet`) stay separate.

Deviation: the latent is a linear map of the flattened conv features, not their mean over time. Mean pooling is
(nearly) invariant to shifting the motion in time, so a pooled latent cannot say where in the window a stroke
happens and the decoder can only learn the mean pose; in a test on swaying sinusoids a pooled model never beat the
rest-pose baseline, while the flattened one does.

Keypoints used (``FEATURE_KEYPOINTS``, 124 of 134): the upper body (OpenPose body without knees and ankles), the 68
face landmarks and both 21-point hands. Feet and legs are dropped because spec §2 removes legs from every pose.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from mmgt.constants import FACE, HANDS, NUM_KEYPOINTS, VISIBILITY_THRESHOLD
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError
from mmgt.evaluation.frechet import frechet_distance_from_features
from mmgt.evaluation.keypoint_metrics import UPPER_BODY
from mmgt.pose.normalize import normalize_pose

FEATURE_KEYPOINTS: tuple[int, ...] = UPPER_BODY + FACE + HANDS
# Floor of the per-coordinate std (normalised units, ~5 px on the 512 canvas): a point that never moved in the
# training data (e.g. always undetected, hence 0) must not blow up when it does move in generated data.
MIN_STD = 1e-2


class PoseAutoencoder(ModelMixin, ConfigMixin):
    """Temporal conv autoencoder: (B, F, K, 2) normalised keypoints -> (B, latent_dim) -> (B, F, S, 2) reconstruction.

    The encoder halves time ``num_downsamples`` times and maps the flattened result to one latent per window; the
    decoder expands that latent back to F / 2^n steps and upsamples to F = ``window_frames``. Only ``keypoints``
    (S of the K input points) are encoded and reconstructed. The buffers ``pose_mean`` and ``pose_std`` (S, 2),
    fitted on the training windows and saved with the weights, standardise each coordinate inside the model, so
    callers pass and get back plain normalised keypoints.
    """

    @register_to_config
    def __init__(
        self,
        num_keypoints: int = NUM_KEYPOINTS,
        window_frames: int = 32,
        hidden_dim: int = 128,
        latent_dim: int = 32,
        num_downsamples: int = 2,
        keypoints: tuple[int, ...] = FEATURE_KEYPOINTS,
    ):
        super().__init__()
        if window_frames % 2**num_downsamples:
            raise MmgtError(
                f"window_frames={window_frames} must be divisible by 2**num_downsamples={2**num_downsamples}"
            )
        if not keypoints or min(keypoints) < 0 or max(keypoints) >= num_keypoints:
            raise MmgtError(f"keypoints: indices must lie in [0, {num_keypoints}), got {len(keypoints)} indices")
        self.register_buffer("keypoint_index", torch.tensor(list(keypoints), dtype=torch.long), persistent=False)
        channels = 2 * len(keypoints)  # x and y of every selected point, keypoint-major
        self.register_buffer("pose_mean", torch.zeros(len(keypoints), 2))
        self.register_buffer("pose_std", torch.ones(len(keypoints), 2))
        self.bottom_frames = window_frames // 2**num_downsamples

        down = [nn.Conv1d(channels, hidden_dim, 3, padding=1), nn.SiLU()]
        for _ in range(num_downsamples):  # each halves time: F -> F/2 (kernel 4, stride 2, pad 1)
            down += [nn.Conv1d(hidden_dim, hidden_dim, 4, stride=2, padding=1), nn.SiLU()]
        self.encoder = nn.Sequential(*down)
        self.to_latent = nn.Linear(hidden_dim * self.bottom_frames, latent_dim)

        self.expand = nn.Linear(latent_dim, hidden_dim * self.bottom_frames)
        up = []
        for _ in range(num_downsamples):  # each doubles time: F/2 -> F
            up += [nn.SiLU(), nn.ConvTranspose1d(hidden_dim, hidden_dim, 4, stride=2, padding=1)]
        self.decoder = nn.Sequential(*up, nn.SiLU(), nn.Conv1d(hidden_dim, channels, 3, padding=1))

    def select_keypoints(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, K, 2) -> (B, F, S, 2): the points the model encodes, i.e. the reconstruction target."""
        if x.ndim != 4 or x.shape[2] != self.config.num_keypoints or x.shape[3] != 2:
            raise MmgtError(f"x: expected (B, F, {self.config.num_keypoints}, 2), got {tuple(x.shape)}")
        return x.index_select(2, self.keypoint_index)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, window_frames, K, 2) normalised keypoints -> (B, latent_dim)."""
        s = self.select_keypoints(x)
        if s.shape[1] != self.config.window_frames:
            raise MmgtError(f"x: the model takes {self.config.window_frames}-frame windows, got {s.shape[1]} frames")
        s = (s - self.pose_mean) / self.pose_std  # standardised: motion, not the rest pose, dominates the loss
        h = self.encoder(s.flatten(2).transpose(1, 2))  # (B, S*2, F) -> (B, C, F / 2^n)
        return self.to_latent(h.flatten(1))  # (B, latent)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, window_frames, S, 2)."""
        h = self.expand(z).view(z.shape[0], self.config.hidden_dim, self.bottom_frames)  # (B, C, F / 2^n)
        out = self.decoder(h).transpose(1, 2).unflatten(2, (-1, 2))  # (B, S*2, F) -> (B, F, S, 2)
        return out * self.pose_std + self.pose_mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, window_frames, K, 2) -> (B, window_frames, S, 2) reconstruction of the selected keypoints."""
        return self.decode(self.encode(x))


def normalize_for_autoencoder(pose: PoseSequence, threshold: float = VISIBILITY_THRESHOLD) -> np.ndarray:
    """(F, 134, 2) float32 autoencoder input: spec §2 "fixed" normalisation, invisible points set to 0.

    Use this for both real and generated poses so that missing detections are encoded the same way on both sides.
    """
    xy = normalize_pose(pose, mode="fixed")[..., :2]
    return np.where(pose.visible(threshold)[..., None], xy, 0.0).astype(np.float32)


def _as_array(pose: PoseSequence | np.ndarray, name: str) -> np.ndarray:
    array = normalize_for_autoencoder(pose) if isinstance(pose, PoseSequence) else np.asarray(pose, dtype=np.float32)
    if array.ndim != 3 or array.shape[2] != 2:
        raise MmgtError(f"{name}: expected a PoseSequence or an (F, K, 2) normalised array, got {array.shape}")
    if not np.isfinite(array).all():
        raise MmgtError(f"{name}: contains NaN or infinite values")
    return array


def sliding_windows(poses: Sequence[PoseSequence | np.ndarray], window: int, stride: int) -> np.ndarray:
    """(N, window, K, 2) windows starting at 0, stride, 2 stride, ... of each sequence (a tail shorter is dropped)."""
    if window < 1 or stride < 1:
        raise MmgtError(f"window and stride must be >= 1, got window={window}, stride={stride}")
    if len(poses) == 0:
        raise MmgtError("poses: need at least one pose sequence")
    windows = []
    for i, pose in enumerate(poses):
        array = _as_array(pose, f"poses[{i}]")
        if array.shape[0] < window:
            raise MmgtError(f"poses[{i}]: {array.shape[0]} frames is shorter than one {window}-frame window")
        windows += [array[t : t + window] for t in range(0, array.shape[0] - window + 1, stride)]
    return np.stack(windows)


@torch.no_grad()
def pose_features(
    model: PoseAutoencoder,
    poses: Sequence[PoseSequence | np.ndarray],
    window: int | None = None,
    stride: int = 16,
    batch_size: int = 256,
) -> np.ndarray:
    """Autoencoder latents of all sliding windows of the given sequences.

    Args:
        model: a trained :class:`PoseAutoencoder`.
        poses: sequences as :class:`PoseSequence` (normalised with :func:`normalize_for_autoencoder`) or (F, K, 2)
            arrays already normalised that way; every sequence needs at least ``window`` frames.
        window: window length in frames; must equal ``model.config.window_frames`` (the default).
        stride: step between window starts in frames.
        batch_size: windows per forward pass.

    Returns:
        (N, latent_dim) float64 features, N = total number of windows.
    """
    if window is not None and window != model.config.window_frames:
        raise MmgtError(f"window: the model was built for {model.config.window_frames}-frame windows, got {window}")
    windows = sliding_windows(poses, model.config.window_frames, stride)
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    chunks = [
        model.encode(torch.from_numpy(windows[i : i + batch_size]).to(param.device, param.dtype)).double().cpu()
        for i in range(0, len(windows), batch_size)
    ]
    model.train(was_training)
    return torch.cat(chunks).numpy()


def fgd(
    model: PoseAutoencoder,
    real_poses: Sequence[PoseSequence | np.ndarray],
    generated_poses: Sequence[PoseSequence | np.ndarray],
    window: int | None = None,
    stride: int = 16,
) -> float:
    """Fréchet Gesture Distance: Fréchet distance between Gaussians of real and generated window latents (lower is
    better). Arguments as in :func:`pose_features`; report the autoencoder's checksum, window and stride with it."""
    real = pose_features(model, real_poses, window=window, stride=stride)
    generated = pose_features(model, generated_poses, window=window, stride=stride)
    return frechet_distance_from_features(real, generated)


@torch.no_grad()
def reconstruction_error(model: PoseAutoencoder, windows: np.ndarray, batch_size: int = 256) -> float:
    """Mean squared reconstruction error of (N, window_frames, K, 2) normalised windows (selected points only)."""
    x = torch.as_tensor(np.asarray(windows, dtype=np.float32))
    total = 0.0
    for i in range(0, len(x), batch_size):
        batch = x[i : i + batch_size]
        total += F.mse_loss(model(batch), model.select_keypoints(batch), reduction="sum").item()
    return total / (len(x) * len(model.config.keypoints) * model.config.window_frames * 2)


def train_pose_autoencoder(
    windows: np.ndarray,
    steps: int = 20_000,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    **model_kwargs,
) -> PoseAutoencoder:
    """Train a :class:`PoseAutoencoder` on normalised windows with a plain, deterministic CPU loop (Adam, MSE).

    The per-coordinate mean and std of the windows become the model's ``pose_mean``/``pose_std`` first; the loss is
    the squared error in those standardised units.

    Args:
        windows: (N, F, K, 2) float array of normalised keypoint windows (e.g. :func:`sliding_windows` of
            :func:`normalize_for_autoencoder`); F becomes ``window_frames`` and K ``num_keypoints``.
        steps: optimiser steps; 0 returns the seeded initial model (with its statistics fitted).
        batch_size: windows per step, drawn with replacement.
        lr: Adam learning rate.
        seed: seeds both the weight init and the batch sampling; the same call gives the same weights.
        **model_kwargs: other :class:`PoseAutoencoder` config values (hidden_dim, latent_dim, ...).

    Returns:
        The trained model, in eval mode.
    """
    windows = np.asarray(windows, dtype=np.float32)
    if windows.ndim != 4 or windows.shape[3] != 2 or len(windows) == 0:
        raise MmgtError(f"windows: expected a non-empty (N, F, K, 2) array, got shape {windows.shape}")
    if not np.isfinite(windows).all():
        raise MmgtError("windows: contain NaN or infinite values")
    if steps < 0 or batch_size < 1 or not lr > 0:
        raise MmgtError(f"need steps >= 0, batch_size >= 1 and lr > 0; got {steps}, {batch_size}, {lr}")
    with torch.random.fork_rng(devices=[]):  # seeded init without disturbing the caller's global RNG
        torch.manual_seed(seed)
        model = PoseAutoencoder(num_keypoints=windows.shape[2], window_frames=windows.shape[1], **model_kwargs)
    data = torch.from_numpy(windows)
    with torch.no_grad():
        selected = model.select_keypoints(data)  # (N, F, S, 2)
        model.pose_mean.copy_(selected.mean(dim=(0, 1)))
        model.pose_std.copy_(selected.std(dim=(0, 1)).clamp_min(MIN_STD))
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        batch = data[torch.from_numpy(rng.integers(0, len(data), batch_size))]
        # Error in standardised units, so that every coordinate counts the same whatever its range of motion.
        loss = ((model(batch) - model.select_keypoints(batch)) / model.pose_std).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()

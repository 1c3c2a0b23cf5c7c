"""Sync-C / Sync-D (LSE-C / LSE-D, Prajwal et al. 2020 "Wav2Lip") with SyncNet (Chung & Zisserman 2016), plain torch.

The definitions are those of Wav2Lip's evaluation, which runs ``syncnet_python``'s ``SyncNetInstance.evaluate`` on
face crops:

1. Audio: MFCCs of the 16 kHz mono speech (``python_speech_features.mfcc`` defaults: 25 ms windows every 10 ms,
   13 coefficients, on int16-scaled samples), i.e. 4 MFCC frames per video frame at 25 fps.
2. Video: face crops of 224 x 224 (BGR, 0..255), one per frame.
3. Features: for every video frame t with 5 frames left, SyncNet embeds the 5 frames t..t+4 and the 20 MFCC frames
   4t..4t+19 (1024-d each).
4. Distances: for each frame t and offset k in -15..15, d[t, k] = |v_t - a_(t+k) + 1e-6| (audio features outside
   the clip are zeros), then D[k] = mean over t of d[t, k].
5. **LSE-D** (Sync-D, lower is better) = min over k of D[k]; **LSE-C** (Sync-C, higher is better) =
   median over k of D[k] - min over k of D[k]; the AV offset is the argmin (positive: audio leads).

Face crops follow ``syncnet_python``'s ``run_pipeline``: one box per frame (gaps interpolated), box size and centre
median-filtered over 13 frames, a crop of 1.4x the half-size around the box (more below the centre) from the frame
padded with grey 110, resized to 224. Boxes come from S3FD (``sfd_face.pth``) when supplied, otherwise from
MediaPipe's face detector; results are labelled with the detector, since crops shift the numbers.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F
from scipy.signal import medfilt
from torch import nn

from mmgt.constants import FPS, SAMPLE_RATE
from mmgt.errors import MmgtError, ModelFolderError

VSHIFT = 15  # offsets tried each way (Wav2Lip's LSE setting)
CROP_SIZE = 224
CROP_SCALE = 0.4  # run_pipeline --crop_scale
CROP_PAD_VALUE = 110  # run_pipeline pads frames with this grey before cropping
SMOOTH_FRAMES = 13  # run_pipeline's median filter over box size and centre
LIP_FRAMES = 5  # video frames per SyncNet sample
MFCC_PER_FRAME = 4  # 100 MFCC frames per second / 25 fps
MFCC_WINDOW = LIP_FRAMES * MFCC_PER_FRAME


# ---------------------------------------------------------------------------------------------------------------------
# MFCC: python_speech_features 0.6 ``mfcc`` with its defaults
# ---------------------------------------------------------------------------------------------------------------------
def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


def mel_filterbank(num_filters: int = 26, nfft: int = 512, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(num_filters, nfft // 2 + 1) triangular filters on FFT bins floor((nfft + 1) f / sr), 0 Hz to sr / 2."""
    mels = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), num_filters + 2)
    bins = np.floor((nfft + 1) * _mel_to_hz(mels) / sample_rate).astype(np.int64)
    bank = np.zeros((num_filters, nfft // 2 + 1))
    for j in range(num_filters):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        bank[j, lo:mid] = (np.arange(lo, mid) - lo) / (mid - lo)
        bank[j, mid:hi] = (hi - np.arange(mid, hi)) / (hi - mid)
    return bank


def mfcc(signal: np.ndarray, sample_rate: int = SAMPLE_RATE, num_ceps: int = 13) -> np.ndarray:
    """MFCCs as ``python_speech_features.mfcc(signal, sample_rate)`` computes them (version 0.6, default options).

    Pre-emphasis 0.97; 25 ms rectangular frames every 10 ms, the last zero-padded; 512-point power spectrum / 512;
    26 mel filters; log (zeros replaced by float eps); orthonormal DCT-II, first 13; sinusoidal lifter 22; the first
    coefficient replaced by the log frame energy.

    Args:
        signal: (S,) samples on the scale the caller wants (SyncNet reads int16-scaled speech).
        sample_rate: Hz.
        num_ceps: coefficients kept.

    Returns:
        (N, num_ceps) float64, N = 1 + ceil((S - win) / step) frames (1 if S <= win).
    """
    signal = np.asarray(signal, dtype=np.float64)
    win, step, nfft = round(0.025 * sample_rate), round(0.01 * sample_rate), 512
    emphasised = np.append(signal[:1], signal[1:] - 0.97 * signal[:-1])
    n = 1 if len(emphasised) <= win else 1 + math.ceil((len(emphasised) - win) / step)
    padded = np.pad(emphasised, (0, (n - 1) * step + win - len(emphasised)))
    frames = padded[np.arange(win)[None, :] + step * np.arange(n)[:, None]]  # (n, win)
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft  # (n, 257)
    eps = np.finfo(float).eps
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, eps, energy)
    banks = power @ mel_filterbank(26, nfft, sample_rate).T
    banks = np.where(banks == 0, eps, banks)
    ceps = scipy.fft.dct(np.log(banks), type=2, axis=1, norm="ortho")[:, :num_ceps]
    lifter = 1 + 11.0 * np.sin(np.pi * np.arange(num_ceps) / 22)  # 1 + (L / 2) sin(pi n / L), L = 22
    ceps = ceps * lifter
    ceps[:, 0] = np.log(energy)
    return ceps


def int16_scale(wave: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] -> the int16 values a 16-bit wav holds (what syncnet_python reads)."""
    return np.clip(np.round(np.asarray(wave, dtype=np.float64) * 32768.0), -32768, 32767)


# ---------------------------------------------------------------------------------------------------------------------
# SyncNet (the syncnet_v2 layout of syncnet_python's SyncNetModel.S)
# ---------------------------------------------------------------------------------------------------------------------
def _conv_bn(conv: nn.Module, channels: int, dims: int) -> list[nn.Module]:
    bn = nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm3d(channels)
    return [conv, bn, nn.ReLU()]


class SyncNet(nn.Module):
    """SyncNet v2: a lip tower on 5 face frames and an audio tower on 13 x 20 MFCCs, both to 1024-d.

    Module names and indices are those of ``syncnet_v2.model`` (``netcnnaud``, ``netfcaud``, ``netcnnlip``,
    ``netfclip``), so its state dict loads strictly.
    """

    def __init__(self, embed_dim: int = 1024):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_conv_bn(nn.Conv2d(1, 64, 3, padding=1), 64, 2),
            nn.MaxPool2d(1, stride=1),
            *_conv_bn(nn.Conv2d(64, 192, 3, padding=1), 192, 2),
            nn.MaxPool2d(3, stride=(1, 2)),
            *_conv_bn(nn.Conv2d(192, 384, 3, padding=1), 384, 2),
            *_conv_bn(nn.Conv2d(384, 256, 3, padding=1), 256, 2),
            *_conv_bn(nn.Conv2d(256, 256, 3, padding=1), 256, 2),
            nn.MaxPool2d(3, stride=2),
            *_conv_bn(nn.Conv2d(256, 512, (5, 4)), 512, 2),
        )
        self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed_dim))
        self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed_dim))
        self.netcnnlip = nn.Sequential(
            *_conv_bn(nn.Conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2)), 96, 3),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
            *_conv_bn(nn.Conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), 256, 3),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            *_conv_bn(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, 3),
            *_conv_bn(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, 3),
            *_conv_bn(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, 3),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
            *_conv_bn(nn.Conv3d(256, 512, (1, 6, 6)), 512, 3),
        )
        self.eval()

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 13, 20) MFCC windows -> (N, 1024)."""
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 5, 224, 224) BGR face crops in 0..255 -> (N, 1024)."""
        return self.netfclip(self.netcnnlip(x).flatten(1))


def _strict_state(path: str | os.PathLike, what: str, model: nn.Module) -> nn.Module:
    """Load a state dict file into ``model`` strictly, with one-line errors naming the first mismatch."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling / zip errors
        raise ModelFolderError(f"{path}: cannot read the {what} weights ({type(e).__name__})") from e
    if not isinstance(state, dict):
        raise ModelFolderError(f"{path}: the {what} weights must be a state dict, got a {type(state).__name__}")
    expected = model.state_dict()
    state = {k: v for k, v in state.items() if not (k.endswith("num_batches_tracked") and k not in expected)}
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        what_key = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise ModelFolderError(f"{path}: not the {what} layout ({what_key})")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ModelFolderError(
                f"{path}: {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}"
            )
    for key in expected:
        state.setdefault(key, expected[key])  # num_batches_tracked, absent from old files, is unused in eval mode
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_syncnet(path: str | os.PathLike) -> SyncNet:
    """SyncNet with the weights of ``syncnet_v2.model`` (a state dict in the layout of :class:`SyncNet`)."""
    return _strict_state(path, "SyncNet (syncnet_v2)", SyncNet())


# ---------------------------------------------------------------------------------------------------------------------
# LSE-C / LSE-D
# ---------------------------------------------------------------------------------------------------------------------
def offset_distances(video_features: torch.Tensor, audio_features: torch.Tensor, vshift: int = VSHIFT) -> np.ndarray:
    """d[t, j] = |v_t - a_(t + j - vshift) + 1e-6| over offsets j (syncnet_python's ``calc_pdist``).

    Args:
        video_features, audio_features: (T, D) SyncNet embeddings of the same T windows.
        vshift: largest offset each way.

    Returns:
        (T, 2 vshift + 1) float64; audio features beyond the clip are zeros.
    """
    padded = F.pad(audio_features, (0, 0, vshift, vshift))
    width = 2 * vshift + 1
    rows = [
        F.pairwise_distance(video_features[t : t + 1].expand(width, -1), padded[t : t + width])
        for t in range(len(video_features))
    ]
    return torch.stack(rows).double().numpy()


def lse_from_distances(distances: np.ndarray) -> tuple[float, float, int]:
    """LSE-D, LSE-C and the AV offset of one clip from its (T, 2 vshift + 1) offset distances.

    Returns:
        ``(lse_d, lse_c, offset)``: min_k D[k], median_k D[k] - min_k D[k] (D = mean over t), and vshift - argmin.
    """
    distances = np.asarray(distances, dtype=np.float64)
    if distances.ndim != 2 or distances.shape[0] == 0 or distances.shape[1] % 2 != 1:
        raise MmgtError(f"distances must be (T >= 1, 2 vshift + 1), got shape {distances.shape}")
    mean = torch.from_numpy(distances.mean(axis=0))  # D[k]
    low, index = torch.min(mean, 0)
    # torch.median (the lower middle value for even counts), as syncnet_python; the count is odd here anyway.
    confidence = torch.median(mean) - low
    return float(low), float(confidence), int(distances.shape[1] // 2 - int(index))


@torch.no_grad()
def sync_embeddings(
    model: SyncNet, crops: np.ndarray, wave: np.ndarray, batch_size: int = 20
) -> tuple[torch.Tensor, torch.Tensor]:
    """SyncNet embeddings of every 5-frame window of one clip and of its speech at the same times.

    Window t holds the face crops t..t+4 and the MFCC frames 4t..4t+19 (syncnet_python's ``evaluate``).

    Args:
        model: a loaded :class:`SyncNet` (e.g. :func:`load_syncnet`).
        crops: (F, 224, 224, 3) uint8 RGB face crops at 25 fps (see :func:`face_crops`).
        wave: (S,) float mono speech in [-1, 1] at 16 kHz, aligned with frame 0.
        batch_size: windows per forward pass.

    Returns:
        ``(video, audio)``, each (T, 1024) float32 with T = min(F, S // 640) - 5.

    Raises:
        MmgtError: fewer than 6 frames of video and audio.
    """
    num = min(len(crops), len(wave) // (SAMPLE_RATE // FPS)) - LIP_FRAMES
    if num < 1:
        raise MmgtError(f"Sync-C/D needs at least {LIP_FRAMES + 1} frames of video and audio, got {num + LIP_FRAMES}")
    ceps = torch.from_numpy(mfcc(int16_scale(wave), SAMPLE_RATE).T.copy()).float()  # (13, N)
    bgr = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1])).float().permute(3, 0, 1, 2)  # (3, F, 224, 224)
    video, audio = [], []
    for start in range(0, num, batch_size):
        ts = range(start, min(num, start + batch_size))
        video.append(model.forward_lip(torch.stack([bgr[:, t : t + LIP_FRAMES] for t in ts])))
        windows = [ceps[:, MFCC_PER_FRAME * t : MFCC_PER_FRAME * t + MFCC_WINDOW] for t in ts]
        audio.append(model.forward_aud(torch.stack(windows)[:, None]))
    return torch.cat(video), torch.cat(audio)


def sync_distances(model: SyncNet, crops: np.ndarray, wave: np.ndarray, batch_size: int = 20) -> np.ndarray:
    """Offset distances of one clip: :func:`offset_distances` of its :func:`sync_embeddings` (same arguments).

    Returns:
        (T, 31) float64.
    """
    return offset_distances(*sync_embeddings(model, crops, wave, batch_size))


def lse(model: SyncNet, crops: np.ndarray, wave: np.ndarray) -> tuple[float, float, int]:
    """``(LSE-D, LSE-C, AV offset)`` of one clip's face crops and speech (arguments as :func:`sync_embeddings`)."""
    return lse_from_distances(sync_distances(model, crops, wave))


# ---------------------------------------------------------------------------------------------------------------------
# Face boxes and crops
# ---------------------------------------------------------------------------------------------------------------------
def fill_boxes(boxes: np.ndarray) -> np.ndarray:
    """(F, 4) x1 y1 x2 y2 with NaN rows for frames without a face -> gaps linearly interpolated, ends held.

    Raises:
        MmgtError: no face in any frame.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    found = np.isfinite(boxes).all(axis=1)
    if not found.any():
        raise MmgtError("no face found in any frame: cannot crop faces for Sync-C/D")
    frames = np.arange(len(boxes))
    return np.stack([np.interp(frames, frames[found], boxes[found, i]) for i in range(4)], axis=1)


def face_crops(frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """syncnet_python's face-track crops: (F, H, W, 3) frames and (F, 4) boxes -> (F, 224, 224, 3).

    Box half-size s = max(w, h) / 2 and centre are median-filtered over 13 frames; each crop spans
    [y - s, y + 1.8 s] x [x - 1.4 s, x + 1.4 s] of the frame padded by int(1.8 s) with grey 110.
    """
    boxes = fill_boxes(boxes)
    kernel = min(SMOOTH_FRAMES, len(boxes) if len(boxes) % 2 else len(boxes) - 1)
    half = medfilt(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2, kernel)
    cx = medfilt((boxes[:, 0] + boxes[:, 2]) / 2, kernel)
    cy = medfilt((boxes[:, 1] + boxes[:, 3]) / 2, kernel)
    out = np.empty((len(frames), CROP_SIZE, CROP_SIZE, 3), np.uint8)
    for i, frame in enumerate(frames):
        s = max(float(half[i]), 1.0)
        pad = int(s * (1 + 2 * CROP_SCALE))
        padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), constant_values=CROP_PAD_VALUE)
        my, mx = cy[i] + pad, cx[i] + pad
        rows = slice(int(my - s), int(my + s * (1 + 2 * CROP_SCALE)))
        cols = slice(int(mx - s * (1 + CROP_SCALE)), int(mx + s * (1 + CROP_SCALE)))
        out[i] = cv2.resize(padded[rows, cols], (CROP_SIZE, CROP_SIZE))
    return out


class MediaPipeFaces:
    """MediaPipe's face detector (BlazeFace, full range) as a per-frame box source: the best face or NaNs."""

    label = "MediaPipe face detection"

    def __init__(self, min_confidence: float = 0.5):
        import mediapipe as mp  # lazy: seconds to import

        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_confidence
        )

    def box(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (4,) x1 y1 x2 y2 pixels of the most confident face, NaN if none."""
        result = self._detector.process(frame)
        if not result.detections:
            return np.full(4, np.nan)
        best = max(result.detections, key=lambda d: d.score[0]).location_data.relative_bounding_box
        h, w = frame.shape[:2]
        x, y = best.xmin * w, best.ymin * h
        return np.array([x, y, x + best.width * w, y + best.height * h])

    def close(self) -> None:
        self._detector.close()


# S3FD (Zhang et al. 2017) as syncnet_python ships it (sfd_face.pth): VGG16 + 6 detection heads.
S3FD_STEPS = (4, 8, 16, 32, 64, 128)
S3FD_MEAN_RGB = (123.0, 117.0, 104.0)
S3FD_VARIANCES = (0.1, 0.2)


class _L2Norm(nn.Module):
    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight.view(1, -1, 1, 1) * x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)


class S3FDNet(nn.Module):
    """The S3FD network in ``sfd_face.pth``'s layout: ``vgg`` (indices as saved), L2 norms, ``extras``, heads."""

    # VGG16 convs with their index in the saved ModuleList; "M" = 2x2 max pool, "C" = the ceil-mode pool.
    _VGG = [(3, 64), (64, 64), "M", (64, 128), (128, 128), "M", (128, 256), (256, 256), (256, 256), "C",
            (256, 512), (512, 512), (512, 512), "M", (512, 512), (512, 512), (512, 512), "M"]  # fmt: skip

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        for item in self._VGG:
            if isinstance(item, tuple):
                layers += [nn.Conv2d(*item, 3, padding=1), nn.ReLU()]
            else:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=item == "C"))
        layers += [nn.Conv2d(512, 1024, 3, padding=6, dilation=6), nn.ReLU(), nn.Conv2d(1024, 1024, 1), nn.ReLU()]
        self.vgg = nn.ModuleList(layers)
        self.L2Norm3_3, self.L2Norm4_3, self.L2Norm5_3 = _L2Norm(256, 10), _L2Norm(512, 8), _L2Norm(512, 5)
        self.extras = nn.ModuleList(
            [
                nn.Conv2d(1024, 256, 1),
                nn.Conv2d(256, 512, 3, 2, 1),
                nn.Conv2d(512, 128, 1),
                nn.Conv2d(128, 256, 3, 2, 1),
            ]
        )
        sources = (256, 512, 512, 1024, 512, 256)
        self.loc = nn.ModuleList(nn.Conv2d(c, 4, 3, padding=1) for c in sources)
        self.conf = nn.ModuleList(nn.Conv2d(c, 4 if i == 0 else 2, 3, padding=1) for i, c in enumerate(sources))
        self.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """(1, 3, H, W) mean-subtracted RGB -> loc (P, 4), face probability (P,), feature-map sizes."""
        sources = []
        for k, layer in enumerate(self.vgg):
            x = layer(x)
            if k == 15:
                sources.append(self.L2Norm3_3(x))
            elif k == 22:
                sources.append(self.L2Norm4_3(x))
            elif k == 29:
                sources.append(self.L2Norm5_3(x))
        sources.append(x)
        for k, layer in enumerate(self.extras):
            x = F.relu(layer(x))
            if k % 2 == 1:
                sources.append(x)
        locs, confs, sizes = [], [], []
        for i, src in enumerate(sources):
            conf = self.conf[i](src)
            if i == 0:  # max-out background label over 3 channels (the paper's small-face trick)
                conf = torch.cat([conf[:, :3].amax(dim=1, keepdim=True), conf[:, 3:]], dim=1)
            locs.append(self.loc[i](src).permute(0, 2, 3, 1).reshape(-1, 4))
            confs.append(conf.permute(0, 2, 3, 1).reshape(-1, 2))
            sizes.append(tuple(src.shape[2:]))
        return torch.cat(locs), torch.cat(confs).softmax(dim=-1)[:, 1], sizes


def s3fd_priors(height: int, width: int, sizes: list[tuple[int, int]]) -> np.ndarray:
    """(P, 4) anchors (cx, cy, w, h) relative to the image, one per cell, of size 4 x stride, in row-major order."""
    priors = []
    for (fh, fw), step in zip(sizes, S3FD_STEPS):
        ys, xs = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
        cx, cy = (xs.ravel() + 0.5) * step / width, (ys.ravel() + 0.5) * step / height
        priors.append(np.stack([cx, cy, np.full_like(cx, 4 * step / width), np.full_like(cy, 4 * step / height)], 1))
    return np.concatenate(priors)


class S3FD:
    """S3FD face boxes (syncnet_python's detector) from ``sfd_face.pth``; frames are scaled by ``scale`` first."""

    label = "S3FD"

    def __init__(self, path: str | os.PathLike, scale: float = 0.25, threshold: float = 0.9):
        self.net = _strict_state(path, "S3FD (sfd_face.pth)", S3FDNet())
        self.scale, self.threshold = scale, threshold

    @torch.no_grad()
    def box(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (4,) x1 y1 x2 y2 of the most confident face above the threshold, NaN if none."""
        h, w = frame.shape[:2]
        small = cv2.resize(frame, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(small.astype(np.float32) - np.array(S3FD_MEAN_RGB, np.float32)).permute(2, 0, 1)[None]
        loc, score, sizes = self.net(x)
        priors = s3fd_priors(small.shape[0], small.shape[1], sizes)
        loc, score = loc.double().numpy(), score.double().numpy()
        centre = priors[:, :2] + loc[:, :2] * S3FD_VARIANCES[0] * priors[:, 2:]
        size = priors[:, 2:] * np.exp(loc[:, 2:] * S3FD_VARIANCES[1])
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1) * np.array([w, h, w, h])
        if not (score > self.threshold).any():
            return np.full(4, np.nan)
        return boxes[np.argmax(score)]  # one speaker: the best box (what NMS would keep first)

    def close(self) -> None:
        pass


def detect_face_boxes(detector, frames: np.ndarray) -> np.ndarray:
    """(F, 4) boxes of ``detector`` (:class:`S3FD` or :class:`MediaPipeFaces`) for each frame, NaN where none."""
    return np.stack([detector.box(np.ascontiguousarray(frame)) for frame in frames])


def load_face_detector(s3fd: str | os.PathLike | None):
    """S3FD from ``s3fd`` when given, else MediaPipe's face detector (check the ``label`` of what you got)."""
    return S3FD(Path(s3fd)) if s3fd is not None else MediaPipeFaces()

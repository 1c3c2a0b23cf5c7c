"""Stage-2 training samples: image-step triples and video-step clips (spec §5.5, §5.6).

Pixel conventions: RGB frames in [-1, 1] as (3, H, W); pose images in [0, 1] as (3, H, W); masks from the one mask
function :func:`mmgt.pose.masks.branch_masks`, one float32 array per UNet level of shape (F, 3, h, w) in the branch
order ("global" = 1 - lips, "face_hands", "lips").
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mmgt.audio.features import stage2_audio_features
from mmgt.audio.windows import stack_context
from mmgt.contracts import PoseSequence
from mmgt.data.manifest import ClipRecord, read_manifest
from mmgt.pose.masks import branch_masks, check_mask_variant, face_hand_regions
from mmgt.pose.render import render_pose_sequence
from mmgt.utils.audio_io import load_audio
from mmgt.utils.video_io import read_video_frames

AUDIO_CONTEXT = 2  # ±2 frames of audio per video frame (spec §5.4)


def _to_pixels(frames: np.ndarray) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> (3, F, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def _to_pose_pixels(frames: np.ndarray) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> (3, F, H, W) float32 in [0, 1]."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(255.0)


def random_crop_box(rng: np.random.Generator, height: int, width: int, scale=(0.9, 1.0), ratio=(0.9, 1.0)):
    """A RandomResizedCrop-style box (top, left, h, w): area share in ``scale``, aspect ratio in ``ratio``."""
    area = height * width * rng.uniform(*scale)
    r = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
    w = int(round(min(width, np.sqrt(area * r))))
    h = int(round(min(height, np.sqrt(area / r))))
    return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w


def crop_resize(frames: np.ndarray, box, size: int) -> np.ndarray:
    """Crop (..., H, W, C) uint8 frames (any channel count C) to ``box`` and resize to size x size (bilinear)."""
    import cv2

    top, left, h, w = box
    out = [
        cv2.resize(f[top : top + h, left : left + w], (size, size), interpolation=cv2.INTER_LINEAR)
        for f in frames.reshape(-1, *frames.shape[-3:])
    ]  # cv2 drops a single channel axis; the reshape below restores it
    return np.stack(out).reshape(*frames.shape[:-3], size, size, frames.shape[-1])


CLIP_CACHE_BYTES = 2 * 2**30  # decoded frames kept in memory: all 160 training clips of 4 s at 128 px take 0.8 GB


class ClipStore:
    """Decoded clips in an LRU cache bounded in bytes (decoding an mp4 per sample would dominate the step time:
    with a 16-clip cache over 160 clips, 40 % of a tiny image step went to decoding)."""

    def __init__(self, root: Path, records: list[ClipRecord], max_bytes: int = CLIP_CACHE_BYTES):
        self.root, self.records, self.max_bytes = root, records, max_bytes
        self._frames: OrderedDict[int, np.ndarray] = OrderedDict()
        self._poses: dict[int, PoseSequence] = {}

    def pose(self, clip: int) -> PoseSequence:
        """The clip's keypoints, read on first use (frame-only users such as the VAE never read them)."""
        if clip not in self._poses:
            self._poses[clip] = PoseSequence.load(self.records[clip].path(self.root, "keypoints"))
        return self._poses[clip]

    def frames(self, clip: int) -> np.ndarray:
        """(F, H, W, 3) uint8."""
        if clip in self._frames:
            self._frames.move_to_end(clip)
        else:
            self._frames[clip] = read_video_frames(self.records[clip].path(self.root, "video"))
            while len(self._frames) > 1 and sum(f.nbytes for f in self._frames.values()) > self.max_bytes:
                self._frames.popitem(last=False)
        return self._frames[clip]


class Stage2ImageDataset(Dataset):
    """Image step (II-a): (reference frame, target frame >= ``min_gap`` frames away, target pose image).

    The target frame and its pose image share one random crop; the reference gets its own. Items:
    ``reference`` (3, S, S) in [-1, 1], ``target`` (3, S, S) in [-1, 1], ``pose`` (3, S, S) in [0, 1],
    ``regions`` (1, S, S) in [0, 1] (the target's face and hand boxes, ``face_hand_regions``, cropped alike),
    ``clip_id``.
    Sampling is deterministic given (seed, epoch, index).
    """

    def __init__(
        self,
        dataset_dir,
        split="train",
        size=128,
        min_gap=25,
        crop_scale=(0.9, 1.0),
        crop_ratio=(0.9, 1.0),
        seed=0,
        samples_per_clip=8,
        pose_mouth=True,
    ):
        self.root = Path(dataset_dir)
        self.records = read_manifest(self.root, split)
        if not self.records:
            raise ValueError(f"{self.root}: no clips in split {split!r}")
        self.store = ClipStore(self.root, self.records)
        self.size, self.min_gap, self.seed, self.epoch = size, min_gap, seed, 0
        self.crop_scale, self.crop_ratio, self.samples_per_clip = crop_scale, crop_ratio, samples_per_clip
        self.pose_mouth = pose_mouth

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records) * self.samples_per_clip

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        clip = i % len(self.records)
        frames, pose = self.store.frames(clip), self.store.pose(clip)
        n = len(frames)
        gap = min(self.min_gap, n - 1)  # short clips: as far apart as they allow
        ref = int(rng.integers(0, n))
        far = [k for k in range(n) if abs(k - ref) >= gap]
        tgt = int(rng.choice(far)) if far else ref
        height, width = frames.shape[1:3]
        box = random_crop_box(rng, height, width, self.crop_scale, self.crop_ratio)
        # (1, H, W, 3) at the video size, cropped like the target
        pose_img = render_pose_sequence(pose[tgt], mouth=self.pose_mouth)
        regions = face_hand_regions(pose[tgt], width, height)[..., None].astype(np.uint8) * 255  # (1, H, W, 1)
        ref_box = random_crop_box(rng, height, width, self.crop_scale, self.crop_ratio)
        return {
            "reference": _to_pixels(crop_resize(frames[ref : ref + 1], ref_box, self.size))[:, 0],
            "target": _to_pixels(crop_resize(frames[tgt : tgt + 1], box, self.size))[:, 0],
            "pose": _to_pose_pixels(crop_resize(pose_img, box, self.size))[:, 0],
            "regions": torch.from_numpy(crop_resize(regions, box, self.size)[..., 0]).float() / 255.0,
            "clip_id": self.records[clip].id,
        }


class Stage2VideoDataset(Dataset):
    """Video step (II-b): F consecutive frames with their pose frames, branch masks, audio windows and a reference.

    Items:
        ``frames`` (3, F, S, S) in [-1, 1]; ``poses`` (3, F, S, S) in [0, 1];
        ``masks`` list over UNet levels of (F, 3, S/8/2^l, S/8/2^l) float32 (the one mask function);
        ``audio`` (F, 5, L, D) float32 — ±2-frame windows of the per-frame audio features (all wav2vec2 layers, or
        the mel fallback with L = 1 when no encoder is given);
        ``reference`` (3, S, S) in [-1, 1] — a random frame of the same clip; ``regions`` (F, S, S) float32 in
        {0, 1}, the face and hand boxes (``face_hand_regions``: loss weights, not MM-HAA masks); ``clip_id``,
        ``start``.

    Frames are resized (not cropped) to ``size`` so that keypoints, masks and pixels stay aligned exactly.
    """

    def __init__(
        self,
        dataset_dir,
        split="train",
        size=128,
        num_frames=12,
        encoder=None,
        seed=0,
        samples_per_clip=4,
        pose_mouth=True,
        mask_variant="paper",
    ):
        self.root = Path(dataset_dir)
        self.mask_variant = check_mask_variant(mask_variant)
        self.records = [r for r in read_manifest(self.root, split) if r.num_frames >= num_frames]
        if not self.records:
            raise ValueError(f"{self.root}: no clip in split {split!r} has {num_frames} frames")
        self.store = ClipStore(self.root, self.records)
        self.size, self.num_frames, self.encoder = size, num_frames, encoder
        self.seed, self.epoch, self.samples_per_clip, self.pose_mouth = seed, 0, samples_per_clip, pose_mouth
        self._audio: dict[int, np.ndarray] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records) * self.samples_per_clip

    def audio_features(self, clip: int) -> np.ndarray:
        """(T, L, D) per-frame features of the whole clip (computed once)."""
        if clip not in self._audio:
            rec = self.records[clip]
            wave = load_audio(rec.path(self.root, "audio"), sample_rate=rec.sample_rate)
            feats = stage2_audio_features(wave, rec.sample_rate, self.encoder)  # wav2vec2, or the log-mel fallback
            self._audio[clip] = np.asarray(feats, dtype=np.float32)[: rec.num_frames]
        return self._audio[clip]

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        clip = i % len(self.records)
        frames, pose = self.store.frames(clip), self.store.pose(clip)
        start = int(rng.integers(0, len(frames) - self.num_frames + 1))
        span = slice(start, start + self.num_frames)
        ref = int(rng.integers(0, len(frames)))
        full = (0, 0, *frames.shape[1:3])
        window_pose = pose[span].rescaled(self.size, self.size)
        audio = stack_context(self.audio_features(clip), AUDIO_CONTEXT)[span]  # (F, 5, L, D)
        return {
            "frames": _to_pixels(crop_resize(frames[span], full, self.size)),
            "poses": _to_pose_pixels(render_pose_sequence(window_pose, mouth=self.pose_mouth)),
            "masks": [
                torch.from_numpy(m) for m in branch_masks(window_pose, self.size, self.size, variant=self.mask_variant)
            ],
            "audio": torch.from_numpy(np.ascontiguousarray(audio)),
            "reference": _to_pixels(crop_resize(frames[ref : ref + 1], full, self.size))[:, 0],
            "regions": torch.from_numpy(face_hand_regions(window_pose)).float(),
            "clip_id": self.records[clip].id,
            "start": start,
        }

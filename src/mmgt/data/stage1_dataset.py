"""Stage-1 (SMGA) training windows: keypoints of W frames, the conditioning pose before them, aligned audio features.

Spec §3.3 with the [decision] ``target_offset = 1``: window ``s`` holds target frames s..s+W-1 and is conditioned on
frame s-1, the state just before the window; the audio features are those of the wave span [s/25, (s+W)/25) s,
extracted per window (spec §3.2) exactly as the any-length sampler extracts them at inference.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mmgt.audio.cache import FeatureCache
from mmgt.audio.features import feature_spec, stage1_audio_features
from mmgt.constants import FPS
from mmgt.contracts import PoseSequence
from mmgt.data.manifest import ClipRecord, read_manifest
from mmgt.pose.normalize import normalize_pose
from mmgt.utils.audio_io import load_audio


@dataclass(frozen=True)
class WindowIndex:
    clip: int  # index into the dataset's records
    start: int  # first target frame


def window_starts(num_frames: int, window: int, stride: int, target_offset: int = 1) -> list[int]:
    """First target frames of all full windows of a clip (the conditioning frame start - 1 must exist)."""
    first = target_offset
    return list(range(first, num_frames - window + 1, stride))


class Stage1Dataset(Dataset):
    """Windows for SMGA training.

    Each item is a dict:
        ``motion`` (W, K, 3) float32 normalised keypoints [x, y, score] of frames s..s+W-1;
        ``cond_pose`` (K, 3) float32 normalised keypoints of frame s-1 (frame s with ``target_offset=0``);
        ``audio`` (W, D) float32 audio features of the same span;
        ``clip_id`` str and ``start`` int (first target frame).

    Args:
        dataset_dir: a dataset folder in the mmgt format.
        split: "train", "val" or "test".
        window_frames: W (80 = 3.2 s in the paper).
        stride_frames: distance between window starts (10 = 0.4 s, spec §3.3).
        encoder: a ``mmgt.audio.SpeechEncoder`` (WavLM) or None for the mel fallback.
        cache_dir: optional FeatureCache folder; features are computed once per window and reused.
        target_offset: 1 (mmgt) or 0 (released: the first target frame is the conditioning frame).
        normalize_mode / normalize_scores: passed to :func:`mmgt.pose.normalize.normalize_pose`.
    """

    def __init__(
        self,
        dataset_dir: str | os.PathLike,
        split: str = "train",
        window_frames: int = 80,
        stride_frames: int = 10,
        encoder=None,
        cache_dir: str | os.PathLike | None = None,
        target_offset: int = 1,
        normalize_mode: str = "fixed",
        normalize_scores: bool = True,
    ):
        if target_offset not in (0, 1):
            raise ValueError(f"target_offset must be 0 or 1, got {target_offset}")
        self.root = Path(dataset_dir)
        self.records: list[ClipRecord] = read_manifest(self.root, split)
        self.window_frames, self.stride_frames, self.target_offset = window_frames, stride_frames, target_offset
        self.encoder = encoder
        self.cache = FeatureCache(cache_dir) if cache_dir is not None else None
        self.spec = feature_spec(encoder)
        self.poses = [
            normalize_pose(PoseSequence.load(r.path(self.root, "keypoints")), normalize_mode, normalize_scores)
            for r in self.records
        ]  # each (F, K, 3)
        self.waves: dict[int, np.ndarray] = {}
        self._features: dict[tuple[int, int], np.ndarray] = {}  # (clip, start) -> (W, D), filled lazily
        self.index = [
            WindowIndex(ci, s)
            for ci, pose in enumerate(self.poses)
            for s in window_starts(len(pose), window_frames, stride_frames, target_offset)
        ]
        self.skipped_clips = [r.id for r, p in zip(self.records, self.poses) if len(p) < window_frames + target_offset]
        if not self.index:
            raise ValueError(
                f"{self.root} ({split}): no clip has the {window_frames + target_offset} frames one window needs"
            )

    def __len__(self) -> int:
        return len(self.index)

    def _wave(self, clip: int) -> tuple[np.ndarray, int]:
        if clip not in self.waves:
            rec = self.records[clip]
            self.waves[clip] = load_audio(rec.path(self.root, "audio"), sample_rate=rec.sample_rate)
        return self.waves[clip], self.records[clip].sample_rate

    def audio_window(self, clip: int, start: int) -> np.ndarray:
        """(W, D) features of the wave span of frames start..start+W-1, extracted on that span alone."""
        key = (clip, start)
        if key not in self._features:
            self._features[key] = np.ascontiguousarray(self._extract(clip, start), dtype=np.float32)
        return self._features[key]

    def precompute(self, progress: bool = False) -> None:
        """Extract (or read from the cache) the features of every window once, up front."""
        from tqdm.auto import tqdm

        for w in tqdm(self.index, desc="audio features", disable=not progress):
            self.audio_window(w.clip, w.start)
        self.waves.clear()  # the waves are no longer needed

    def _extract(self, clip: int, start: int) -> np.ndarray:
        wave, sr = self._wave(clip)
        a = start * sr // FPS
        b = (start + self.window_frames) * sr // FPS
        span = np.pad(wave[a:b], (0, max(0, b - a - len(wave[a:b]))))  # zero-pad past the clip end
        if self.cache is None:
            return stage1_audio_features(span, sr, self.encoder)
        return self.cache.get_or_compute(span, sr, self.spec, lambda w, s: stage1_audio_features(w, s, self.encoder))

    def __getitem__(self, i: int) -> dict:
        w = self.index[i]
        pose = self.poses[w.clip]
        cond = pose[w.start - self.target_offset]
        return {
            "motion": torch.from_numpy(pose[w.start : w.start + self.window_frames].copy()),
            "cond_pose": torch.from_numpy(cond.copy()),
            "audio": torch.from_numpy(self.audio_window(w.clip, w.start)),
            "clip_id": self.records[w.clip].id,
            "start": w.start,
        }

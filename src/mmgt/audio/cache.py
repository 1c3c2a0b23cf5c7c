"""A content-addressed on-disk cache for audio features (one ``.npy`` per waveform and configuration)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mmgt.errors import MmgtError
from mmgt.utils.audio_io import check_wave
from mmgt.utils.files import atomic_output

logger = logging.getLogger(__name__)

_KEY = re.compile(r"^[0-9a-f]{64}$")
_KEY_PREFIX = b"mmgt-audio-features-v1\0"  # change it to invalidate every existing cache


class FeatureCache:
    """Feature arrays stored under ``root/<key[:2]>/<key>.npy``.

    The key hashes the exact float32 samples, the sample rate and the configuration (e.g. a
    :func:`mmgt.audio.features.feature_spec` dict), so a changed file, resampling or encoder gives a new key. Files
    are written atomically; an unreadable file (interrupted copy, disk error) counts as a miss and is recomputed.

    Args:
        root: cache folder; created on the first ``put``.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def key(self, wave: np.ndarray, sample_rate: int, spec: dict) -> str:
        """sha256 hex digest of the float32 wave bytes, the sample rate and the canonical JSON of ``spec``."""
        wave = check_wave(wave, sample_rate)
        try:
            spec_json = json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise MmgtError(f"FeatureCache.key: spec is not JSON-serialisable ({e})") from e
        digest = hashlib.sha256(_KEY_PREFIX)
        digest.update(f"{int(sample_rate)}\0".encode())
        digest.update(spec_json.encode())
        digest.update(b"\0")
        digest.update(wave.tobytes())  # contiguous little-endian float32 (check_wave)
        return digest.hexdigest()

    def path(self, key: str) -> Path:
        """Where the array for ``key`` lives."""
        if not _KEY.match(key):
            raise MmgtError(f"FeatureCache: invalid key {key!r} (expected 64 lowercase hex digits)")
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The cached array, or None if it is missing or unreadable."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            # A damaged entry is only a cache miss: say so and let the caller recompute and overwrite it.
            logger.warning("ignoring unreadable feature cache file %s (%s)", path, e)
            return None

    def put(self, key: str, array: np.ndarray) -> Path:
        """Store ``array`` atomically (temporary file in the same folder, then ``os.replace``) and return its path."""
        path = self.path(key)
        with atomic_output(path) as tmp:
            np.save(tmp, np.asarray(array), allow_pickle=False)
        return path

    def get_or_compute(
        self, wave: np.ndarray, sample_rate: int, spec: dict, fn: Callable[[np.ndarray, int], np.ndarray]
    ) -> np.ndarray:
        """Return the cached features for (wave, sample_rate, spec), computing ``fn(wave, sample_rate)`` on a miss.

        Args:
            wave: (N,) mono waveform.
            sample_rate: its rate in Hz.
            spec: JSON-able description of what ``fn`` computes (it must change whenever ``fn``'s output would).
            fn: the feature function, e.g. ``lambda w, sr: stage1_audio_features(w, sr, encoder)``.
        """
        key = self.key(wave, sample_rate, spec)
        cached = self.get(key)
        if cached is not None:
            return cached
        array = np.asarray(fn(wave, sample_rate))
        self.put(key, array)
        return array

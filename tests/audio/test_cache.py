"""FeatureCache: content keys, hits and misses, atomic writes, damaged entries recomputed."""

from __future__ import annotations

import numpy as np
import pytest

from mmgt.audio.cache import FeatureCache
from mmgt.errors import MmgtError

SR = 16000


@pytest.fixture
def wave(rng) -> np.ndarray:
    return rng.uniform(-0.5, 0.5, 800).astype(np.float32)


class Counter:
    """A feature function that counts its calls: (N,) -> (ceil(N / 640), 3) of known values."""

    def __init__(self):
        self.calls = 0

    def __call__(self, wave: np.ndarray, sample_rate: int) -> np.ndarray:
        self.calls += 1
        return np.arange(6, dtype=np.float32).reshape(2, 3) + wave[0]


def test_same_audio_and_config_hits(tmp_path, wave):
    cache, fn = FeatureCache(tmp_path), Counter()
    first = cache.get_or_compute(wave, SR, {"stage": 1, "dim": 116}, fn)
    second = cache.get_or_compute(wave.copy(), SR, {"dim": 116, "stage": 1}, fn)  # key order does not matter
    assert fn.calls == 1
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(second, np.arange(6, dtype=np.float32).reshape(2, 3) + wave[0])


def test_changed_config_audio_or_rate_misses(tmp_path, wave):
    cache, fn = FeatureCache(tmp_path), Counter()
    spec = {"stage": 1, "speech": {"type": "mel"}}
    cache.get_or_compute(wave, SR, spec, fn)
    cache.get_or_compute(wave, SR, {"stage": 1, "speech": {"type": "encoder"}}, fn)
    changed = wave.copy()
    changed[400] += 1e-3
    cache.get_or_compute(changed, SR, spec, fn)
    cache.get_or_compute(wave, 22050, spec, fn)
    assert fn.calls == 4
    keys = {cache.key(wave, SR, spec), cache.key(changed, SR, spec), cache.key(wave, 22050, spec)}
    assert len(keys) == 3 and all(len(k) == 64 for k in keys)
    # float64 input with the same float32 values is the same audio
    assert cache.key(wave.astype(np.float64), SR, spec) == cache.key(wave, SR, spec)


def test_corrupted_file_is_recomputed_not_a_crash(tmp_path, wave):
    cache, fn = FeatureCache(tmp_path), Counter()
    spec = {"stage": 2}
    cache.get_or_compute(wave, SR, spec, fn)
    path = cache.path(cache.key(wave, SR, spec))
    path.write_bytes(b"\x93NUMPY garbage")
    assert cache.get(cache.key(wave, SR, spec)) is None
    again = cache.get_or_compute(wave, SR, spec, fn)
    assert fn.calls == 2
    np.testing.assert_array_equal(again, np.load(path))  # the damaged entry was rewritten


def test_put_is_atomic_and_leaves_no_temporary_files(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    key = "ab" + "0" * 62
    path = cache.put(key, np.ones((3, 4), dtype=np.float32))
    assert path == tmp_path / "cache" / "ab" / f"{key}.npy"
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    np.testing.assert_array_equal(cache.get(key), np.ones((3, 4)))
    assert cache.get("cd" + "0" * 62) is None


def test_bad_keys_and_specs_are_rejected(tmp_path, wave):
    cache = FeatureCache(tmp_path)
    with pytest.raises(MmgtError, match="invalid key"):
        cache.get("../../etc/passwd")
    with pytest.raises(MmgtError, match="JSON"):
        cache.key(wave, SR, {"encoder": object()})

"""The 35-d librosa block of the stage-1 audio condition (spec §3.2 part 2, EDGE's "baseline" music features).

At 12,800 Hz with a hop of 512 samples one librosa frame is exactly one 25 fps video frame, so no interpolation is
needed: frame t is centred on sample 512 t, i.e. on the start of video frame t.
"""

from __future__ import annotations

import numpy as np

from mmgt.audio.windows import pad_to
from mmgt.constants import LIBROSA_HOP, LIBROSA_SAMPLE_RATE, num_frames_for
from mmgt.errors import MmgtError
from mmgt.utils.audio_io import check_wave, resample

NUM_MFCC = 20
NUM_CHROMA = 12
BEAT_TIGHTNESS = 100  # Official code (EDGE): beat_track(..., tightness=100)
# Where beat tracking's starting tempo comes from: "envelope" (mmgt: the same 12.8 kHz onset envelope) or "reload"
# (the release / EDGE: librosa's tempo estimate on the audio reloaded at librosa's default rate, 22,050 Hz). The two
# give different beat columns on about a quarter of 3.2-s speech slices (11 of 40 in tests/official); "reload" is what
# the released SMGA was trained with.
START_TEMPOS = ("envelope", "reload")
_RELOAD_SAMPLE_RATE = 22_050

# Column layout of the (T, 35) block, in the official order.
_WIDTHS = {"onset_envelope": 1, "mfcc": NUM_MFCC, "chroma_cens": NUM_CHROMA, "onset_peak": 1, "beat": 1}
_STARTS = np.cumsum([0, *_WIDTHS.values()])
FEATURE_NAMES: dict[str, slice] = {
    name: slice(int(start), int(start) + width) for (name, width), start in zip(_WIDTHS.items(), _STARTS)
}
LIBROSA_FEATURE_DIM = int(_STARTS[-1])  # 35

# librosa's constant-Q transform halves the signal once per octave; below this many samples its lowest octaves
# are shorter than one FFT frame and it warns. Shorter clips are zero-padded to this length and the result trimmed
# back to T rows. librosa already pads frames at the edges with zeros (pad_mode="constant"), so the frames that
# existed before are unchanged apart from the global tempo estimate.
_MIN_SAMPLES = LIBROSA_HOP * 64


def librosa_features(wave: np.ndarray, sample_rate: int, start_tempo: str = "envelope") -> np.ndarray:
    """Onset envelope, MFCC, chroma-CENS, onset peaks and beats at exactly 25 fps.

    Args:
        wave: (N,) mono waveform in [-1, 1].
        sample_rate: rate of ``wave`` in Hz; it is resampled to 12,800 Hz (``LIBROSA_SAMPLE_RATE``).
        start_tempo: where beat tracking starts from, one of :data:`START_TEMPOS`.

    Returns:
        (T, 35) float32 with T = ceil(N / sample_rate * 25) and columns as in :data:`FEATURE_NAMES`:
        onset-strength envelope (1), MFCC (20), chroma-CENS (12), onset-peak one-hot (1), beat one-hot (1).
        Silence gives a zero envelope, no peaks and no beats.
    """
    import librosa  # heavy import (numba); kept out of `import mmgt.audio`

    wave = check_wave(wave, sample_rate)
    if start_tempo not in START_TEMPOS:
        raise MmgtError(f"start_tempo must be one of {START_TEMPOS}, got {start_tempo!r}")
    num_frames = num_frames_for(len(wave), sample_rate)
    y = resample(wave, sample_rate, LIBROSA_SAMPLE_RATE)
    if len(y) < _MIN_SAMPLES:
        y = np.pad(y, (0, _MIN_SAMPLES - len(y)))
    sr, hop = LIBROSA_SAMPLE_RATE, LIBROSA_HOP

    envelope = librosa.onset.onset_strength(y=y, sr=sr, hop_length=hop)  # (F,)
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=NUM_MFCC, hop_length=hop).T  # (F, 20)
    # Tuning estimation is undefined on digital silence (librosa warns and returns 0); say 0 directly.
    tuning = 0.0 if not np.any(y) else None
    chroma = librosa.feature.chroma_cens(y=y, sr=sr, hop_length=hop, n_chroma=NUM_CHROMA, tuning=tuning).T  # (F, 12)
    peaks = _one_hot(librosa.onset.onset_detect(onset_envelope=envelope, sr=sr, hop_length=hop), len(envelope))
    reloaded = resample(wave, sample_rate, _RELOAD_SAMPLE_RATE) if start_tempo == "reload" else None
    beats = _one_hot(_beat_frames(envelope, reloaded), len(envelope))

    features = np.concatenate([envelope[:, None], mfcc, chroma, peaks[:, None], beats[:, None]], axis=1)
    features = np.nan_to_num(features.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)  # zeros where undefined
    return pad_to(features, num_frames, mode="edge")  # librosa gives T or T + 1 frames (centred frames)


def _beat_frames(envelope: np.ndarray, reloaded: np.ndarray | None = None) -> np.ndarray:
    """Beat frame indices from the onset envelope (empty for a flat envelope).

    The starting tempo comes from ``reloaded`` (the audio at 22,050 Hz, the release's recipe) when given, else from
    ``envelope`` itself.
    """
    import librosa

    if not np.any(envelope):
        return np.zeros(0, dtype=int)
    sr, hop = LIBROSA_SAMPLE_RATE, LIBROSA_HOP
    if reloaded is None:
        # Deviation (start_tempo="envelope"): EDGE and the release estimate the starting tempo on a second, 22.05 kHz
        # load of the file; here it comes from the same envelope, so the feature depends on the 12.8 kHz signal only.
        start_bpm = float(librosa.feature.tempo(onset_envelope=envelope, sr=sr, hop_length=hop)[0])
    else:  # the release: librosa.beat.tempo(y=librosa.load(path)[0]), librosa's defaults (22,050 Hz, hop 512)
        start_bpm = float(librosa.feature.tempo(y=reloaded, sr=_RELOAD_SAMPLE_RATE)[0])
    _, beats = librosa.beat.beat_track(
        onset_envelope=envelope, sr=sr, hop_length=hop, start_bpm=start_bpm, tightness=BEAT_TIGHTNESS
    )
    return np.asarray(beats, dtype=int)


def _one_hot(indices: np.ndarray, length: int) -> np.ndarray:
    """(length,) float32 vector with ones at ``indices``."""
    out = np.zeros(length, dtype=np.float32)
    out[np.asarray(indices, dtype=int)] = 1.0
    return out


def warm_up() -> float:
    """Run the features once on 2 s of noise so that librosa's numba kernels are compiled into their on-disk cache.

    librosa caches its compiled kernels next to its own files (``cache=True``), so the compile happens once per
    installation: a fresh environment's first call takes about 55 s on 2 CPU cores, later processes about 9 s.
    ``make setup`` calls this, so the first ``mmgt demo`` or ``mmgt generate`` does not pay it.

    Returns:
        The seconds the call took.
    """
    import time

    start = time.perf_counter()
    noise = np.random.default_rng(0).standard_normal(2 * LIBROSA_SAMPLE_RATE).astype(np.float32)
    librosa_features(0.1 * noise, LIBROSA_SAMPLE_RATE)
    return time.perf_counter() - start

"""The two audio-condition recipes: stage 1 (librosa ⊕ speech encoder, spec §3.2) and stage 2 (wav2vec2, spec §5.4).

Both return exactly T = ceil(duration * 25) rows. :func:`feature_spec` describes a configuration as a JSON-able dict;
it is what cache keys and saved model configs record, so features computed differently never get mixed up.
"""

from __future__ import annotations

import numpy as np

from mmgt.audio.encoders import SpeechEncoder
from mmgt.audio.librosa_features import LIBROSA_FEATURE_DIM, START_TEMPOS, librosa_features
from mmgt.audio.mel import mel_features
from mmgt.audio.windows import pad_to
from mmgt.constants import FPS, LIBROSA_HOP, LIBROSA_SAMPLE_RATE, num_frames_for
from mmgt.errors import MmgtError
from mmgt.utils.audio_io import check_wave

SPEC_VERSION = 1  # bump when a recipe changes its numbers, so stale caches miss
STAGE1_WINDOW_FRAMES = 80  # 3.2 s SMGA window (spec §3.2)
MEL_BANDS = 80


def stage1_audio_features(
    wave: np.ndarray, sample_rate: int, encoder: SpeechEncoder | None = None, start_tempo: str = "envelope"
) -> np.ndarray:
    """Stage-1 condition for a whole clip in one pass: 35 librosa features ⊕ speech features.

    Args:
        wave: (N,) mono waveform in [-1, 1].
        sample_rate: rate of ``wave`` in Hz.
        encoder: a ``SpeechEncoder`` with ``layers="last"`` and ``interpolate="after"`` (WavLM-Large in the
            release: D = 1024, giving the 1059-d condition). None uses the log-mel fallback of
            :func:`mmgt.audio.mel.mel_features` (D = 81).
        start_tempo: beat tracking's starting tempo (:data:`mmgt.audio.librosa_features.START_TEMPOS`); a recipe's
            value is :func:`librosa_start_tempo` of its spec.

    Returns:
        (T, 35 + D) float32: columns 0..34 as in :data:`mmgt.audio.librosa_features.FEATURE_NAMES`, then the
        speech block.
    """
    wave = check_wave(wave, sample_rate)
    _check_stage1_encoder(encoder)
    music = librosa_features(wave, sample_rate, start_tempo)  # (T, 35)
    if encoder is None:
        speech = mel_features(wave, sample_rate, n_mels=MEL_BANDS)  # (T, 81)
    else:
        speech = encoder.encode(wave, sample_rate)[:, -1]  # (T, D): last layer
    return np.concatenate([music, speech], axis=1).astype(np.float32)


def stage1_audio_features_windowed(
    wave: np.ndarray,
    sample_rate: int,
    window_frames: int = STAGE1_WINDOW_FRAMES,
    encoder: SpeechEncoder | None = None,
    start_tempo: str = "envelope",
) -> np.ndarray:
    """Stage-1 condition extracted per SMGA window, as in training (spec §3.2 "per-window extraction", §6 step 2-3).

    The clip is cut into contiguous windows of ``window_frames`` frames from t = 0; the last one is zero-padded to
    full length. Each window is extracted on its own (beat tracking, WavLM attention and normalisation only see
    that window, exactly like the training slices), then the windows are concatenated and trimmed to T.

    Args:
        wave: (N,) mono waveform in [-1, 1].
        sample_rate: rate of ``wave`` in Hz.
        window_frames: frames per window (80 = 3.2 s).
        encoder, start_tempo: as in :func:`stage1_audio_features`.

    Returns:
        (T, 35 + D) float32.
    """
    wave = check_wave(wave, sample_rate)
    if window_frames < 1:
        raise MmgtError(f"window_frames must be >= 1, got {window_frames}")
    num_frames = num_frames_for(len(wave), sample_rate)
    num_windows = -(-num_frames // window_frames)
    # Window k starts at sample k * W * sr / 25 (integer arithmetic keeps boundaries exact) and lasts
    # ceil(W * sr / 25) samples; samples past the end of the clip are zeros.
    window_len = -(-window_frames * sample_rate // FPS)
    starts = [k * window_frames * sample_rate // FPS for k in range(num_windows)]
    padded = np.pad(wave, (0, max(0, starts[-1] + window_len - len(wave))))
    blocks = [
        pad_to(stage1_audio_features(padded[s : s + window_len], sample_rate, encoder, start_tempo), window_frames)
        for s in starts
    ]
    return pad_to(np.concatenate(blocks, axis=0), num_frames)


def stage2_audio_features(wave: np.ndarray, sample_rate: int, encoder: SpeechEncoder | None = None) -> np.ndarray:
    """Stage-2 audio features at 25 fps: all wav2vec2 hidden states (spec §5.4 step 2), or the log-mel fallback.

    Context stacking (±2 frames, step 3) is left to the consumer: :func:`mmgt.audio.windows.stack_context`.

    Args:
        wave: (N,) mono waveform in [-1, 1], ideally the separated vocals.
        sample_rate: rate of ``wave`` in Hz.
        encoder: a ``SpeechEncoder`` with ``layers="all"`` and ``interpolate="before_transformer"``
            (wav2vec2-base-960h in the release: L = 12, D = 768), or None for the no-weights fallback: the 81-d
            log-mel + energy features of :func:`mmgt.audio.mel.mel_features` as a single "layer" (L = 1, D = 81).

    Returns:
        (T, L, D) float32.
    """
    if encoder is None:
        return mel_features(wave, sample_rate, n_mels=MEL_BANDS)[:, None, :]
    if encoder.layers != "all" or encoder.interpolate != "before_transformer":
        raise MmgtError(
            "stage-2 audio features need an encoder with layers='all' and interpolate='before_transformer', got "
            f"layers={encoder.layers!r}, interpolate={encoder.interpolate!r}"
        )
    return encoder.encode(wave, sample_rate)


def feature_spec(
    encoder: SpeechEncoder | None = None,
    stage: int = 1,
    window_frames: int | None = None,
    start_tempo: str = "envelope",
) -> dict:
    """JSON-able description of a feature configuration (for cache keys and model configs).

    Args:
        encoder: the speech encoder, or None for the log-mel fallback (stage 1: 35 + 81; stage 2: L = 1, D = 81).
        stage: 1 or 2.
        window_frames: for stage 1, the per-window extraction length (None = whole clip in one pass).
        start_tempo: for stage 1, beat tracking's starting tempo; recorded only when it is not the default
            "envelope", so the specs (and cache keys) written before the option existed still describe their recipe.

    Returns:
        A dict with ``stage``, ``fps``, ``version``, ``window_frames``, ``librosa`` (stage 1), ``speech`` and the
        per-frame ``dim`` (stage 1: 35 + D; stage 2: D, with ``num_layers`` L).
    """
    if stage == 2:
        if encoder is None:  # the log-mel fallback as one "layer": (T, 1, 81)
            speech = {"type": "mel", "n_mels": MEL_BANDS, "hidden_size": MEL_BANDS + 1, "num_layers": 1}
        else:
            speech = encoder.config_dict()
        return {
            "stage": 2,
            "fps": FPS,
            "version": SPEC_VERSION,
            "speech": speech,
            "dim": speech["hidden_size"],
            "num_layers": speech["num_layers"],
        }
    if stage != 1:
        raise MmgtError(f"stage must be 1 or 2, got {stage}")
    _check_stage1_encoder(encoder)
    if encoder is None:
        speech = {"type": "mel", "n_mels": MEL_BANDS, "hidden_size": MEL_BANDS + 1}
    else:
        speech = {"type": "encoder", **encoder.config_dict()}
    librosa_spec = {"sample_rate": LIBROSA_SAMPLE_RATE, "hop": LIBROSA_HOP, "dim": LIBROSA_FEATURE_DIM}
    if start_tempo not in START_TEMPOS:
        raise MmgtError(f"start_tempo must be one of {START_TEMPOS}, got {start_tempo!r}")
    if start_tempo != "envelope":
        librosa_spec["start_tempo"] = start_tempo
    return {
        "stage": 1,
        "fps": FPS,
        "version": SPEC_VERSION,
        "window_frames": window_frames,
        "librosa": librosa_spec,
        "speech": speech,
        "dim": LIBROSA_FEATURE_DIM + speech["hidden_size"],
    }


def librosa_start_tempo(spec: dict) -> str:
    """The librosa starting-tempo choice of a stage-1 :func:`feature_spec` ("envelope" when not recorded)."""
    return spec.get("librosa", {}).get("start_tempo", "envelope")


def stage1_feature_dim(encoder_or_spec: SpeechEncoder | dict | None) -> int:
    """Per-frame width of the stage-1 condition: 35 + D (1059 with WavLM-Large, 116 with the mel fallback).

    Args:
        encoder_or_spec: a ``SpeechEncoder``, a stage-1 :func:`feature_spec` dict, or None (mel fallback).
    """
    if isinstance(encoder_or_spec, dict):
        if encoder_or_spec.get("stage") != 1 or "dim" not in encoder_or_spec:
            raise MmgtError(f"stage1_feature_dim: not a stage-1 feature spec: {encoder_or_spec}")
        return int(encoder_or_spec["dim"])
    return int(feature_spec(encoder_or_spec, stage=1)["dim"])


def _check_stage1_encoder(encoder: SpeechEncoder | None) -> None:
    """Stage 1 uses the model's last layer aligned *after* the model (the WavLM recipe)."""
    if encoder is not None and (encoder.layers != "last" or encoder.interpolate != "after"):
        raise MmgtError(
            f"stage-1 audio features need an encoder with layers='last' and interpolate='after', got "
            f"layers={encoder.layers!r}, interpolate={encoder.interpolate!r}"
        )

"""Audio files in and out: decode anything FFmpeg reads to float32 mono at 16 kHz (spec §1), write wav."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import soxr

from mmgt.constants import SAMPLE_RATE
from mmgt.errors import MediaError, MmgtError
from mmgt.utils.files import atomic_output, check_input_file, error_summary

# libsndfile decodes these exactly and faster than FFmpeg; everything else (mp3, aac, ogg, opus, video files)
# goes through PyAV.
_SOUNDFILE_SUFFIXES = {".wav", ".flac"}

# Full scale of integer sample formats: int16 32767 -> ~1.0.
_INT_SCALE = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31, np.dtype(np.int64): 2.0**63}


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, mono: bool = True) -> np.ndarray:
    """Decode an audio file, or the first audio track of a video file, to float32 at ``sample_rate``.

    Reads wav, flac, mp3, m4a/aac, ogg (vorbis, opus) and the audio of mp4/mkv/mov/webm. Channels are averaged
    for mono; resampling uses soxr "HQ". Values are clipped to [-1, 1] (resampling filters can overshoot a
    full-scale input slightly).

    Args:
        path: the file.
        sample_rate: output rate in Hz; defaults to the 16 kHz of both speech encoders.
        mono: average the channels (the default); otherwise keep them.

    Returns:
        (N,) float32 in [-1, 1] if ``mono``, else (C, N).

    Raises:
        MediaError: the file is missing, empty, not decodable, has no audio stream or decodes to no samples. The
            message starts with the path.
    """
    path = check_input_file(path)
    if int(sample_rate) <= 0:
        raise MmgtError(f"sample_rate must be positive, got {sample_rate}")
    wave, file_rate = _decode(path)  # (C, N) float32 at the file's rate
    if wave.shape[1] == 0:
        raise MediaError(f"{path}: audio stream decoded to 0 samples")
    if mono:
        wave = wave.mean(axis=0)
    wave = resample(wave, file_rate, int(sample_rate))
    return np.clip(wave, -1.0, 1.0, out=wave)


def save_audio(
    path: str | os.PathLike, wave: np.ndarray, sample_rate: int = SAMPLE_RATE, float32: bool = False
) -> Path:
    """Write a wav file atomically: 16-bit PCM (values clipped to [-1, 1]) or, with ``float32``, 32-bit float.

    Args:
        path: the output ``.wav`` file; the parent folder is created.
        wave: (N,) mono or (C, N) float samples in [-1, 1].
        sample_rate: rate of ``wave`` in Hz.
        float32: write IEEE float samples instead of 16-bit integers.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    if path.suffix.lower() != ".wav":
        raise MmgtError(f"{path}: save_audio writes .wav files, got suffix {path.suffix!r}")
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim not in (1, 2) or wave.size == 0:
        raise MmgtError(f"{path}: wave must be a non-empty (N,) or (C, N) array, got shape {wave.shape}")
    if not np.isfinite(wave).all():
        raise MmgtError(f"{path}: wave contains NaN or infinite values")
    if int(sample_rate) <= 0:
        raise MmgtError(f"{path}: sample_rate must be positive, got {sample_rate}")
    if not float32:
        # libsndfile converts float to int without clipping by default, so out-of-range values would wrap.
        wave = np.clip(wave, -1.0, 1.0)
    frames = wave.T if wave.ndim == 2 else wave  # soundfile wants (N, C)
    with atomic_output(path) as tmp:
        sf.write(tmp, frames, int(sample_rate), subtype="FLOAT" if float32 else "PCM_16", format="WAV")
    return path


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample (N,) or (C, N) audio with soxr "HQ"; returns float32 (a copy, even when the rates are equal)."""
    if int(orig_sr) <= 0 or int(target_sr) <= 0:
        raise MmgtError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim not in (1, 2):
        raise MmgtError(f"wave must have shape (N,) or (C, N), got {wave.shape}")
    if int(orig_sr) == int(target_sr) or wave.shape[-1] == 0:
        return wave.copy()
    # soxr wants time first: (N,) or (N, C).
    out = soxr.resample(np.ascontiguousarray(wave.T), int(orig_sr), int(target_sr), quality="HQ")
    return np.ascontiguousarray(out.T, dtype=np.float32)


def is_silent(wave: np.ndarray, threshold_db: float = -60.0) -> bool:
    """True when the peak amplitude is below ``threshold_db`` dB relative to full scale (1.0); empty is silent."""
    wave = np.asarray(wave)
    if wave.size == 0:
        return True
    peak = float(np.max(np.abs(wave)))
    return peak < 10.0 ** (threshold_db / 20.0)


# ---------------------------------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------------------------------
def _decode(path: Path) -> tuple[np.ndarray, int]:
    """(C, N) float32 samples and their rate; soundfile for wav/flac, PyAV for everything else."""
    if path.suffix.lower() in _SOUNDFILE_SUFFIXES:
        try:
            data, rate = sf.read(path, dtype="float32", always_2d=True)  # (N, C)
            return np.ascontiguousarray(data.T), int(rate)
        except (sf.LibsndfileError, RuntimeError):
            pass  # e.g. a codec libsndfile lacks: let FFmpeg try, and report its error if it fails too
    try:
        return _decode_with_av(path)
    except av.FFmpegError as e:
        raise MediaError(f"{path}: cannot decode audio ({error_summary(e, path)})") from e


def _decode_with_av(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise MediaError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        chunks: list[np.ndarray] = []
        rate = 0
        last_duration = 0
        for frame in container.decode(stream):
            rate = rate or frame.sample_rate
            chunks.append(_frame_to_float(frame))
            last_duration = _duration_in_samples(frame)
    if not chunks:
        return np.zeros((1, 0), np.float32), rate or 1
    # Encoders pad the last frame (AAC always codes 1024 samples); the container records the real length as that
    # packet's duration, which the decoder does not apply. Trim it so a written clip reads back at its exact length.
    if 0 < last_duration < chunks[-1].shape[1]:
        chunks[-1] = chunks[-1][:, :last_duration]
    channels = min(c.shape[0] for c in chunks)  # a mid-stream layout change keeps the common channels
    return np.concatenate([c[:channels] for c in chunks], axis=1), rate


def _frame_to_float(frame: av.AudioFrame) -> np.ndarray:
    """(C, n) float32 in [-1, 1] from any FFmpeg sample format, planar or interleaved."""
    data = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:
        data = data.reshape(-1, channels).T  # interleaved (1, n*C) -> (C, n)
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128.0) / 128.0
    if data.dtype in _INT_SCALE:
        return (data / _INT_SCALE[data.dtype]).astype(np.float32)
    return data.astype(np.float32, copy=False)


def _duration_in_samples(frame: av.AudioFrame) -> int:
    """The frame's packet duration in samples, or 0 when the container does not say."""
    if not frame.duration or frame.time_base is None:
        return 0
    return round(frame.duration * frame.time_base * frame.sample_rate)

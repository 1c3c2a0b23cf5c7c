"""Audio in and out: the one waveform check, the checked :class:`Audio` that crosses every boundary, file decoding
(anything FFmpeg reads) and wav writing.

A waveform is checked once, where it enters (a file decoded by :meth:`Audio.load`, or samples handed to
:class:`Audio`); everything past that point trusts the type. The models read 16 kHz (spec §1) and the muxed audio
track keeps 48 kHz; both are resampled from the same decoded samples.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import soxr

from mmgt.constants import FPS, SAMPLE_RATE, num_frames_for
from mmgt.errors import MediaError, MmgtError
from mmgt.utils.files import atomic_output, check_input_file, error_summary

# libsndfile decodes these exactly and faster than FFmpeg; everything else (mp3, aac, ogg, opus, video files)
# goes through PyAV.
_SOUNDFILE_SUFFIXES = {".wav", ".flac"}

# Full scale of integer sample formats: int16 32767 -> ~1.0.
_INT_SCALE = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31, np.dtype(np.int64): 2.0**63}


SILENCE_RMS = 1e-4  # RMS below this (about -80 dBFS) is silence: generation allows it, with a warning


def check_wave(wave: np.ndarray, sample_rate: int, name: str = "audio") -> np.ndarray:
    """THE waveform check: a mono waveform as a contiguous float32 array, or a one-line error naming ``name``.

    Args:
        wave: (N,) samples, nominally in [-1, 1] (a numpy array, a torch tensor or a sequence).
        sample_rate: samples per second, a positive integer.
        name: how the waveform is called in error messages (e.g. the file it came from).

    Returns:
        (N,) float32 array (the input itself when it already is one).

    Raises:
        MmgtError: not 1-D, empty, not finite, or a non-positive sample rate.
    """
    if hasattr(wave, "detach"):  # a torch tensor
        wave = wave.detach().cpu().numpy()
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise MmgtError(f"{name}: expected a mono waveform of shape (N,), got shape {wave.shape}")
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
        raise MmgtError(f"{name}: sample rate must be a positive integer, got {sample_rate}")
    if wave.size == 0:
        raise MmgtError(f"{name}: the waveform is empty")
    if not np.isfinite(wave).all():
        raise MmgtError(f"{name}: the waveform contains NaN or infinite samples")
    return wave


@dataclass(frozen=True, eq=False)
class Audio:
    """Mono speech, checked once: ``wave`` (N,) float32, finite, non-empty, at ``sample_rate`` Hz.

    Pipelines, writers and the app take this type and do not check the samples again. :meth:`at` resamples from
    these samples (soxr "HQ", clipped to [-1, 1]) and keeps the result, so a file decoded once serves the 16 kHz
    the models read and the 48 kHz of the output's audio track.

    Example:
        >>> speech = Audio.load("talk.m4a")  # doctest: +SKIP
        >>> speech.at(16000).wave.shape, speech.duration
    """

    wave: np.ndarray
    sample_rate: int
    name: str = "audio"
    _resampled: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "wave", check_wave(self.wave, self.sample_rate, self.name))
        object.__setattr__(self, "sample_rate", int(self.sample_rate))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Audio:
        """Decode ``path`` once, at its own rate (mono); a one-line MediaError names the file and the problem."""
        wave, rate = _decode_mono(check_input_file(path))
        return cls(wave, rate, name=str(path))

    def at(self, sample_rate: int) -> Audio:
        """The same speech at ``sample_rate`` Hz (this object when the rate already matches)."""
        sample_rate = int(sample_rate)
        if sample_rate == self.sample_rate:
            return self
        if sample_rate not in self._resampled:
            wave = resample(self.wave, self.sample_rate, sample_rate)
            self._resampled[sample_rate] = Audio(np.clip(wave, -1.0, 1.0, out=wave), sample_rate, self.name)
        return self._resampled[sample_rate]

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.wave) / self.sample_rate

    @property
    def num_frames(self) -> int:
        """Video frames covering the speech at 25 fps: exactly ceil(duration x 25)."""
        return num_frames_for(len(self.wave), self.sample_rate, FPS)

    def is_silent(self) -> bool:
        """RMS below :data:`SILENCE_RMS` (about -80 dBFS)."""
        return float(np.sqrt(np.mean(self.wave.astype(np.float64) ** 2))) < SILENCE_RMS


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
    if int(sample_rate) <= 0:
        raise MmgtError(f"sample_rate must be positive, got {sample_rate}")
    path = check_input_file(path)
    if mono:
        wave, file_rate = _decode_mono(path)
    else:
        wave, file_rate = _decode(path)  # (C, N) float32 at the file's rate
        if wave.shape[1] == 0:
            raise MediaError(f"{path}: audio stream decoded to 0 samples")
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


# ---------------------------------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------------------------------
def _decode_mono(path: Path) -> tuple[np.ndarray, int]:
    """(N,) float32 mono samples (channels averaged) clipped to [-1, 1], and their rate."""
    wave, rate = _decode(path)
    if wave.shape[1] == 0:
        raise MediaError(f"{path}: audio stream decoded to 0 samples")
    wave = wave.mean(axis=0)
    return np.clip(wave, -1.0, 1.0, out=wave), rate


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

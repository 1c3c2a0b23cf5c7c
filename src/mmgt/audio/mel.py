"""Log-mel speech features: the documented fallback for the stage-1 speech block when no encoder folder is given.

Design (a deviation from the release, which always uses WavLM-Large; spec §3.2):

- **Front end.** 16 kHz mono, Hann window of 400 samples (25 ms), FFT size 400, hop 160 (10 ms, 100 frames/s), 80
  Slaney mel bands from 0 to 8 kHz, power spectrum, converted to dB with a -100 dB floor. These are the usual speech
  front-end settings (Whisper, Kaldi-style 25/10 ms frames), so the features carry the phonetic detail that drives
  lips and beat gestures.
- **25 fps.** 100 Hz frames are averaged in groups of 4 (frames 4t..4t+3 make video frame t; missing frames at the
  end repeat the last one), which matches the 25 fps grid exactly without interpolation.
- **Energy.** One extra column holds the frame RMS energy in dB (mean power over the same 4 frames): loudness is the
  cue most correlated with gesture intensity.
- **Fixed standardisation.** Every dB value x becomes (x - (-40)) / 20. The constants are fixed rather than
  per-clip statistics so that a window seen in training and the same window at test time map to the same numbers
  whatever surrounds them; with them typical speech lands in about [-1, 1.5] and digital silence at -3.
"""

from __future__ import annotations

import numpy as np

from mmgt.audio.windows import pad_to
from mmgt.constants import SAMPLE_RATE, num_frames_for
from mmgt.utils.audio_io import check_wave, resample

N_FFT = 400  # 25 ms at 16 kHz
HOP = 160  # 10 ms: 4 hops per 25 fps frame
FRAMES_PER_VIDEO_FRAME = 4
DB_FLOOR = -100.0  # 10 log10(1e-10)
DB_MEAN = -40.0  # fixed standardisation constants (see the module docstring)
DB_STD = 20.0


def mel_features(wave: np.ndarray, sample_rate: int, n_mels: int = 80) -> np.ndarray:
    """Standardised log-mel bands plus an RMS-energy column at 25 fps.

    Args:
        wave: (N,) mono waveform in [-1, 1].
        sample_rate: rate of ``wave`` in Hz; it is resampled to 16 kHz.
        n_mels: number of mel bands.

    Returns:
        (T, n_mels + 1) float32, T = ceil(N / sample_rate * 25): columns 0..n_mels-1 are the log-mel bands (low to
        high frequency), the last column is the RMS energy; all in standardised dB, (dB + 40) / 20.
    """
    import librosa  # heavy import; kept out of `import mmgt.audio`

    wave = check_wave(wave, sample_rate)
    num_frames = num_frames_for(len(wave), sample_rate)
    y = resample(wave, sample_rate, SAMPLE_RATE)
    if len(y) < N_FFT:  # one full window at least, so librosa does not warn on very short clips
        y = np.pad(y, (0, N_FFT - len(y)))

    mel = librosa.feature.melspectrogram(
        y=y, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, win_length=N_FFT, n_mels=n_mels, fmin=0.0, power=2.0
    ).T  # (F100, n_mels) power
    energy = librosa.feature.rms(y=y, frame_length=N_FFT, hop_length=HOP)[0] ** 2  # (F100,) mean power
    power = np.concatenate([mel, energy[:, None]], axis=1)  # (F100, n_mels + 1)

    # 100 Hz -> 25 fps: average the power (not the dB) of each group of 4 frames.
    power = pad_to(power, num_frames * FRAMES_PER_VIDEO_FRAME, mode="edge")
    power = power.reshape(num_frames, FRAMES_PER_VIDEO_FRAME, -1).mean(axis=1)  # (T, n_mels + 1)
    db = 10.0 * np.log10(np.maximum(power, 10.0 ** (DB_FLOOR / 10.0)))
    return ((db - DB_MEAN) / DB_STD).astype(np.float32)

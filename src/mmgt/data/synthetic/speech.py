"""Procedural speech-like audio with known syllable events, plus an energy-based syllable detector.

The synthetic speaker world needs audio whose structure a tiny model can read: syllables with a clear energy rise,
one louder/longer/higher stressed syllable per word, and pauses. Everything is drawn from a ``numpy`` Generator, so a
seed fixes the waveform bit for bit. :func:`detect_syllables` recovers the events from any waveform (synthetic, TTS or
real); the motion generator uses it, so the couplings are defined on the audio itself.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
from scipy import signal

from mmgt.constants import SAMPLE_RATE
from mmgt.errors import MediaError, MmgtError

PEAK_DBFS = -3.0  # output peak level
STRESS_GAIN_DB = 6.0  # stressed syllables are 6 dB louder ...
STRESS_LENGTH = 1.35  # ... 35 % longer ...
STRESS_PITCH_ST = 2.5  # ... and this many semitones higher (scaled by the voice's f0_range / 4)

# (F1, F2, F3) in Hz of a few vowels for an adult male voice (classic Peterson & Barney averages, rounded).
VOWEL_FORMANTS: dict[str, tuple[float, float, float]] = {
    "a": (730, 1090, 2440),
    "e": (530, 1840, 2480),
    "i": (270, 2290, 3010),
    "o": (570, 840, 2410),
    "u": (300, 870, 2240),
    "ae": (660, 1720, 2410),
    "er": (490, 1350, 1690),
}
FORMANT_BANDWIDTHS = (60.0, 90.0, 150.0)
WORD_LENGTH_P = (0.2, 0.35, 0.3, 0.15)  # P(word has 1, 2, 3, 4 syllables)


@dataclass(frozen=True)
class Voice:
    """Parameters of one procedural voice.

    Attributes:
        f0_hz: mean fundamental frequency.
        f0_range: pitch excursion in semitones (phrase declination span; stress accents scale with it).
        rate_syll_per_s: speaking rate; sets syllable and pause durations.
        formant_shift: multiplies all formant frequencies (1.0 adult male, ~1.15 female, ~1.3 child-like).
        breathiness: 0..1, amount of aspiration noise mixed into vowels.
        burst_prob: probability that a syllable starts with a consonant noise burst.
        name: label used in dataset metadata.
    """

    f0_hz: float = 120.0
    f0_range: float = 4.0
    rate_syll_per_s: float = 4.5
    formant_shift: float = 1.0
    breathiness: float = 0.1
    burst_prob: float = 0.6
    name: str = "custom"


VOICES: dict[str, Voice] = {
    "low_slow": Voice(95.0, 3.0, 3.8, 0.95, 0.05, 0.6, "low_slow"),
    "low_fast": Voice(105.0, 4.0, 5.5, 1.0, 0.10, 0.7, "low_fast"),
    "mid": Voice(140.0, 4.5, 4.5, 1.08, 0.15, 0.6, "mid"),
    "high_slow": Voice(210.0, 5.0, 3.8, 1.18, 0.25, 0.5, "high_slow"),
    "high_fast": Voice(230.0, 5.5, 5.5, 1.22, 0.20, 0.6, "high_fast"),
}


def random_voice(rng: np.random.Generator) -> Voice:
    """A voice with random pitch (85-250 Hz), rate (3.5-6 syll/s) and timbre."""
    f0 = float(np.exp(rng.uniform(np.log(85.0), np.log(250.0))))
    # Higher voices get higher formants, as with real speakers (with some spread).
    shift = float(np.clip(0.9 + 0.35 * (f0 - 85.0) / 165.0 + rng.normal(0, 0.04), 0.88, 1.3))
    return Voice(
        f0_hz=round(f0, 2),
        f0_range=round(float(rng.uniform(3.0, 6.0)), 2),
        rate_syll_per_s=round(float(rng.uniform(3.5, 6.0)), 2),
        formant_shift=round(shift, 3),
        breathiness=round(float(rng.uniform(0.0, 0.3)), 3),
        burst_prob=round(float(rng.uniform(0.4, 0.8)), 3),
        name=f"f0_{f0:.0f}",
    )


@dataclass(frozen=True)
class Syllable:
    """One syllable event. Times in seconds from the start of the clip.

    Attributes:
        onset_s: start of the syllable (consonant burst if any, else the vowel).
        vowel_onset_s: start of the voiced nucleus (the energy rise that drives motion).
        offset_s: end of the vowel.
        stressed: whether this is the stressed syllable of its word.
        loudness: level in dB relative to a nominal unstressed syllable.
    """

    onset_s: float
    vowel_onset_s: float
    offset_s: float
    stressed: bool
    loudness: float

    def to_json(self) -> list:
        return [
            round(self.onset_s, 4),
            round(self.vowel_onset_s, 4),
            round(self.offset_s, 4),
            self.stressed,
            round(self.loudness, 2),
        ]


@dataclass(frozen=True, eq=False)
class SpeechClip:
    """Audio with its syllable events. ``wave`` is (N,) float32 in [-1, 1] at ``sample_rate``."""

    wave: np.ndarray
    sample_rate: int
    syllables: list[Syllable]

    @property
    def stressed_onsets_s(self) -> np.ndarray:
        return np.array([s.vowel_onset_s for s in self.syllables if s.stressed], dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------------------
# Procedural synthesis
# ---------------------------------------------------------------------------------------------------------------------
def _resonance(freq: np.ndarray, formant: float, bandwidth: float) -> np.ndarray:
    """Magnitude response of a second-order resonator (unit gain at DC), as in a cascade formant synthesiser."""
    return formant**2 / np.sqrt((formant**2 - freq**2) ** 2 + (bandwidth * freq) ** 2)


def _vowel(f0: np.ndarray, formants: tuple[float, ...], voice: Voice, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Voiced vowel from a harmonic glottal source shaped by formant resonances; (n,) float64 with unit RMS.

    Args:
        f0: (n,) instantaneous fundamental frequency per sample (the pitch contour).
    """
    n_harm = int(min(5000.0, 0.45 * sr) / f0.min())  # little vowel energy above 5 kHz; saves time
    k = np.arange(1, n_harm + 1)
    phase = 2 * np.pi * np.cumsum(f0) / sr + rng.uniform(0, 2 * np.pi)
    freq = f0[:, None] * k[None, :]  # (n, K) instantaneous harmonic frequencies
    gain = 1.0 / k[None, :]  # glottal source -12 dB/oct + lip radiation +6 dB/oct
    for formant, bw in zip(formants, FORMANT_BANDWIDTHS):
        gain = gain * _resonance(freq, formant, bw * (1 + voice.breathiness))
    gain = np.where(freq < 0.45 * sr, gain, 0.0)  # no aliasing
    wave = (gain * np.sin(phase[:, None] * k[None, :])).sum(axis=1)
    wave /= np.sqrt(np.mean(wave**2)) + 1e-12
    if voice.breathiness > 0:
        noise = signal.sosfilt(
            signal.butter(2, [500, min(6000, 0.45 * sr)], "bandpass", fs=sr, output="sos"),
            rng.standard_normal(len(f0)),
        )
        wave += 0.5 * voice.breathiness * noise / (np.sqrt(np.mean(noise**2)) + 1e-12)
    return wave / (np.sqrt(np.mean(wave**2)) + 1e-12)


def _envelope(n: int, sr: int, attack_s: float = 0.02, release_s: float = 0.035) -> np.ndarray:
    """Raised-cosine attack and release around a flat sustain; the dip between syllables is what detectors see."""
    env = np.ones(n)
    a, r = min(int(attack_s * sr), n // 2), min(int(release_s * sr), n // 2)
    env[:a] = 0.5 - 0.5 * np.cos(np.pi * np.arange(a) / max(a, 1))
    env[n - r :] = 0.5 + 0.5 * np.cos(np.pi * np.arange(r) / max(r, 1))
    return env


def _burst(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Consonant: 20-60 ms of band-pass noise with a Hann envelope, unit peak envelope."""
    n = int(rng.uniform(0.02, 0.06) * sr)
    centre = rng.uniform(2500, min(5500, 0.35 * sr))  # fricative-like: above the vowel band the detector uses
    sos = signal.butter(2, [centre / 1.3, min(centre * 1.3, 0.45 * sr)], "bandpass", fs=sr, output="sos")
    noise = signal.sosfilt(sos, rng.standard_normal(n))
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12) * np.hanning(n)


def _syllable_f0(n: int, base_hz: float, stressed: bool, voice: Voice, rng: np.random.Generator) -> np.ndarray:
    """Pitch contour of one vowel: a rise-fall accent on stressed syllables, a slight fall otherwise."""
    u = np.linspace(0.0, 1.0, n)
    scale = voice.f0_range / 4.0
    if stressed:
        st = STRESS_PITCH_ST * scale * (1.0 + 0.5 * np.sin(np.pi * np.clip(u * 1.4, 0, 1)))  # peak early
    else:
        st = -1.0 * scale * u
    st = st + rng.normal(0.0, 0.3)
    return base_hz * 2.0 ** (st / 12.0)


def synthesize_speech(seconds: float, rng: np.random.Generator, voice: Voice | None = None) -> SpeechClip:
    """Speech-like audio: phrases of words of 1-4 syllables, one stressed syllable per word, pauses between.

    Args:
        seconds: duration; the wave has exactly ``round(seconds * 16000)`` samples.
        rng: the only source of randomness (same generator state -> identical wave).
        voice: the voice; a random one when None.

    Returns:
        A :class:`SpeechClip` at 16 kHz, peak-normalised to -3 dBFS, with every syllable whose vowel starts
        inside the clip.
    """
    if not seconds > 0:
        raise MmgtError(f"seconds must be positive, got {seconds}")
    voice = voice or random_voice(rng)
    sr = SAMPLE_RATE
    n_total = int(round(seconds * sr))
    out = np.zeros(n_total + sr, dtype=np.float64)  # one spare second: the last syllable may run over the end
    syllables: list[Syllable] = []
    d0 = 1.0 / voice.rate_syll_per_s  # nominal syllable period
    t = float(rng.uniform(0.05, 0.4))  # leading silence
    while t < seconds:
        n_words, phrase_gain = int(rng.integers(2, 7)), float(rng.uniform(-1.5, 1.5))
        for w in range(n_words):
            if t >= seconds:
                break
            n_syll = int(rng.choice(4, p=WORD_LENGTH_P)) + 1
            stress_at = int(rng.integers(n_syll))
            for s in range(n_syll):
                if t >= seconds:
                    break
                progress = (w + s / n_syll) / n_words  # position in the phrase, for pitch declination
                t, syl = _place_syllable(out, t, s == stress_at, progress, phrase_gain, d0, voice, sr, rng)
                if syl.vowel_onset_s < seconds - 0.02:
                    syllables.append(syl)
                t += float(rng.uniform(0.0, 0.02))  # small gap inside words
            t += float(rng.uniform(0.06, 0.2))  # pause between words
        t += float(rng.uniform(0.3, 0.9))  # pause between phrases
    wave = out[:n_total]
    peak = np.abs(wave).max()
    if peak > 0:
        wave = wave * (10 ** (PEAK_DBFS / 20) / peak)
    return SpeechClip(wave.astype(np.float32), sr, syllables)


def _place_syllable(out, t, stressed, progress, phrase_gain, d0, voice, sr, rng) -> tuple[float, Syllable]:
    """Add one syllable (optional burst + vowel) into ``out`` at time ``t``; return the end time and the event."""
    onset = t
    if rng.random() < voice.burst_prob:
        burst = _burst(sr, rng)
        i = int(t * sr)
        out[i : i + len(burst)] += burst * 10 ** ((phrase_gain - 15.0) / 20)  # consonants ~15 dB below vowels
        t += len(burst) / sr
    dur = d0 * rng.uniform(0.55, 0.8) * (STRESS_LENGTH if stressed else 1.0)
    n = int(np.clip(dur, 0.08, 0.25) * sr)
    base = voice.f0_hz * 2 ** (voice.f0_range * (0.5 - progress) / 12)  # declination over the phrase
    formants = tuple(f * voice.formant_shift for f in VOWEL_FORMANTS[rng.choice(list(VOWEL_FORMANTS))])
    vowel = _vowel(_syllable_f0(n, base, stressed, voice, rng), formants, voice, sr, rng)
    loudness = phrase_gain + float(rng.uniform(-0.75, 0.75)) + (STRESS_GAIN_DB if stressed else 0.0)
    i = int(t * sr)
    out[i : i + n] += vowel * _envelope(n, sr) * 10 ** (loudness / 20)
    return t + n / sr, Syllable(onset, t, t + n / sr, stressed, loudness)


# ---------------------------------------------------------------------------------------------------------------------
# Syllable-nucleus detection (works on any audio)
# ---------------------------------------------------------------------------------------------------------------------
DETECT_HOP_S = 0.01
DETECT_DIP_DB = 4.0  # two nuclei need an energy dip of at least this much between them
DETECT_RISE_DB = 12.0  # onset = where the energy is this far below the nucleus peak
STRESS_THRESHOLD_DB = 3.0  # a nucleus this much louder than its neighbourhood is stressed
STRESS_CONTEXT_S = 2.0
STRESS_REFERENCE_PCT = 20  # percentile of nearby peaks taken as the unstressed level


def _frame_energy_db(wave: np.ndarray, sr: int) -> np.ndarray:
    """Band-limited (200-2500 Hz, where vowel energy lives) energy in dB, 30 ms windows every 10 ms."""
    sos = signal.butter(2, [200, min(2500, 0.45 * sr)], "bandpass", fs=sr, output="sos")
    x = signal.sosfiltfilt(sos, wave.astype(np.float64))
    hop, win = int(round(DETECT_HOP_S * sr)), int(round(0.03 * sr))
    csum = np.concatenate([[0.0], np.cumsum(x**2)])
    centres = np.arange(0, len(x), hop)
    lo, hi = np.clip(centres - win // 2, 0, len(x)), np.clip(centres + win // 2, 0, len(x))
    power = (csum[hi] - csum[lo]) / np.maximum(hi - lo, 1)
    return 10 * np.log10(power + 1e-10)


def _crossing(db: np.ndarray, start: int, level: float, step: int, stop: int) -> float:
    """Fractional frame index where ``db`` first falls below ``level`` walking from ``start`` towards ``stop``."""
    i = start
    while i != stop and db[i + step] >= level:
        i += step
    if i == stop:
        return float(i)
    j = i + step  # db[i] >= level > db[j]: interpolate linearly between the two frames
    return i + step * (db[i] - level) / max(db[i] - db[j], 1e-9)


def _separated_peaks(db: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Merge neighbouring peaks not separated by a dip of DETECT_DIP_DB (keeping the higher): one per nucleus.

    (scipy's prominence is not used: two exactly equal maxima on one plateau would both count as prominent.)
    """
    kept: list[int] = []
    for p in peaks:
        if kept and db[kept[-1] : p + 1].min() > min(db[kept[-1]], db[p]) - DETECT_DIP_DB:
            if db[p] > db[kept[-1]]:
                kept[-1] = int(p)
            continue
        kept.append(int(p))
    return np.array(kept, dtype=np.int64)


def detect_syllables(wave: np.ndarray, sr: int) -> list[Syllable]:
    """Syllable nuclei from energy peaks of the band-limited envelope; stress from loudness relative to context.

    Args:
        wave: (N,) mono audio, any level.
        sr: its sample rate.

    Returns:
        Syllables sorted by time. ``onset_s == vowel_onset_s`` is the energy rise (12 dB below the peak);
        ``loudness`` is the peak level relative to the 20th percentile of peaks within 2 s; ``stressed`` is
        ``loudness >= 3 dB``.
    """
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise MediaError(f"detect_syllables: expected mono (N,) audio, got shape {wave.shape}")
    if sr <= 0:
        raise MmgtError(f"detect_syllables: sample rate must be positive, got {sr}")
    if len(wave) < int(0.1 * sr) or not np.any(wave):
        return []
    db = _frame_energy_db(wave, sr)
    floor = max(db.max() - 30.0, np.percentile(db, 10) + 10.0)
    peaks = _separated_peaks(db, signal.find_peaks(db, height=floor, distance=max(1, int(0.07 / DETECT_HOP_S)))[0])
    if len(peaks) == 0:
        return []
    times = peaks * DETECT_HOP_S
    out = []
    for i, p in enumerate(peaks):
        left = peaks[i - 1] if i > 0 else 0
        right = peaks[i + 1] if i + 1 < len(peaks) else len(db) - 1
        level = db[p] - DETECT_RISE_DB
        on = _crossing(db, p, level, -1, left) * DETECT_HOP_S
        off = _crossing(db, p, level, +1, right) * DETECT_HOP_S
        near = db[peaks[np.abs(times - times[i]) <= STRESS_CONTEXT_S]]
        rel = float(db[p] - np.percentile(near, STRESS_REFERENCE_PCT))
        out.append(Syllable(on, on, off, rel >= STRESS_THRESHOLD_DB, rel))
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Optional real text-to-speech (espeak-ng)
# ---------------------------------------------------------------------------------------------------------------------
TTS_WORDS = (
    "we know that the people here want a better way to think about what happens next and why it matters so much "
    "today every story begins with a simple question about time money family and the world around us"
).split()


def espeak_available() -> bool:
    """Whether the ``espeak-ng`` binary is on PATH."""
    return shutil.which("espeak-ng") is not None


def espeak_speech(text: str, voice: str = "en", rate: int = 160, pitch: int = 50) -> np.ndarray:
    """Speak ``text`` with the ``espeak-ng`` binary; (N,) float32 at 16 kHz.

    Args:
        text: what to say.
        voice: espeak-ng voice name (``espeak-ng --voices``), e.g. "en", "en-us", "en+f3".
        rate: words per minute.
        pitch: 0-99.
    """
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise MmgtError("espeak-ng not found on PATH: install it (e.g. apt install espeak-ng) or turn TTS off")
    proc = subprocess.run(
        [exe, "-v", voice, "-s", str(int(rate)), "-p", str(int(pitch)), "--stdout", text],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout:
        raise MediaError(f"espeak-ng failed for voice {voice!r}: {proc.stderr.decode(errors='replace').strip()}")
    import soundfile
    import soxr

    data, file_sr = soundfile.read(io.BytesIO(proc.stdout), dtype="float32")
    if data.ndim > 1:
        data = data.mean(axis=1)
    return soxr.resample(data, file_sr, SAMPLE_RATE).astype(np.float32)


def mix_tts(seconds: float, rng: np.random.Generator, voice: str = "en") -> SpeechClip:
    """Real TTS speech (espeak-ng) of random sentences filling ``seconds``, events from :func:`detect_syllables`.

    Used by the dataset writer for a fraction of clips when TTS is switched on (off by default), so models also see
    natural phonetics; the motion is driven by the detected events exactly as for procedural speech.
    """
    if not seconds > 0:
        raise MmgtError(f"seconds must be positive, got {seconds}")
    n_total = int(round(seconds * SAMPLE_RATE))
    parts, n = [np.zeros(int(rng.uniform(0.05, 0.4) * SAMPLE_RATE), np.float32)], 0
    while n < n_total:
        words = rng.choice(TTS_WORDS, size=int(rng.integers(3, 9)))
        speech = espeak_speech(
            " ".join(words), voice, rate=int(rng.integers(140, 200)), pitch=int(rng.integers(30, 70))
        )
        parts += [speech, np.zeros(int(rng.uniform(0.3, 0.9) * SAMPLE_RATE), np.float32)]
        n = sum(len(p) for p in parts)
    wave = np.concatenate(parts)[:n_total].astype(np.float64)
    peak = np.abs(wave).max()
    wave = (wave * (10 ** (PEAK_DBFS / 20) / peak) if peak > 0 else wave).astype(np.float32)
    return SpeechClip(wave, SAMPLE_RATE, detect_syllables(wave, SAMPLE_RATE))

"""mmgt.utils.audio_io: every supported container decodes to a 16 kHz mono tone of the right length and pitch."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from mmgt.errors import MediaError, MmgtError
from mmgt.utils.audio_io import Audio, load_audio, resample, save_audio

SRC_RATE = 44_100
DURATION = 2.0
TONE_HZ = 440.0


def _tone(rate: int = SRC_RATE, duration: float = DURATION, amp: float = 0.5) -> np.ndarray:
    """(N,) float32 sine at 440 Hz."""
    t = np.arange(round(rate * duration)) / rate
    return (amp * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


def _encode(path: Path, codec: str, wave: np.ndarray, rate: int, with_video: bool = False) -> Path:
    """Encode (C, N) float audio with PyAV (optionally next to a short H.264 track); returns ``path``."""
    layout = {1: "mono", 2: "stereo"}[wave.shape[0]]
    with av.open(str(path), "w") as container:
        if with_video:
            video = container.add_stream("libx264", rate=25)
            video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        stream = container.add_stream(codec, rate=rate, layout=layout)
        if with_video:
            for i in range(int(DURATION * 25)):
                frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 100, np.uint8), format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, 25)
                container.mux(video.encode(frame))
            container.mux(video.encode(None))
        if not stream.codec_context.is_open:  # muxing the video already opened every encoder
            stream.codec_context.open()
        step = stream.codec_context.frame_size or 1024
        for start in range(0, wave.shape[1], step):
            chunk = np.ascontiguousarray(wave[:, start : start + step])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _dominant_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spectrum) * rate / len(wave))


def _write_fixture(tmp_path: Path, kind: str) -> Path:
    stereo = np.stack([_tone(), _tone()])  # the same 0.5-amplitude tone on both channels
    if kind in ("wav", "flac"):
        path = tmp_path / f"tone.{kind}"
        sf.write(path, stereo.T, SRC_RATE)
        return path
    if kind == "ogg":  # Vorbis via libsndfile (FFmpeg's own Vorbis encoder is experimental)
        path = tmp_path / "tone.ogg"
        sf.write(path, stereo.T, SRC_RATE, format="OGG", subtype="VORBIS")
        return path
    if kind == "opus":  # Opus codes 48 kHz only
        return _encode(tmp_path / "tone.opus", "libopus", np.stack([_tone(48_000), _tone(48_000)]), 48_000)
    codec, with_video = {"mp3": ("libmp3lame", False), "m4a": ("aac", False), "mp4": ("aac", True)}[kind]
    return _encode(tmp_path / f"tone.{kind}", codec, stereo, SRC_RATE, with_video=with_video)


# Samples (at 16 kHz) of encoder delay/padding tolerated. Lossless formats are exact; the lossy ones are exact too with
# the bundled FFmpeg (priming and end padding are trimmed from container metadata), and 160 samples (10 ms) is well
# below one untrimmed priming frame (1024 samples at 44.1 kHz = 372 at 16 kHz).
TOLERANCE = {"wav": 0, "flac": 0, "ogg": 160, "opus": 160, "mp3": 160, "m4a": 160, "mp4": 160}


@pytest.mark.parametrize("kind", list(TOLERANCE))
def test_load_audio_decodes_every_format_to_16k_mono_tone(tmp_path: Path, kind: str) -> None:
    wave = load_audio(_write_fixture(tmp_path, kind))

    expected = round(DURATION * 16_000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - expected) <= TOLERANCE[kind], (len(wave), expected)
    assert abs(_dominant_hz(wave, 16_000) - TONE_HZ) < 1.0
    assert np.max(np.abs(wave)) <= 1.0
    # Both channels carry amplitude 0.5: the mono average keeps it (lossy codecs within 10%).
    assert abs(np.percentile(np.abs(wave[4000:-4000]), 99.9) - 0.5) < 0.05


def test_load_audio_averages_channels_and_keeps_them_with_mono_false(tmp_path: Path) -> None:
    path = tmp_path / "lr.wav"
    left, right = _tone(16_000, 1.0, 0.6), _tone(16_000, 1.0, 0.2)
    sf.write(path, np.stack([left, right]).T, 16_000, subtype="FLOAT")

    np.testing.assert_allclose(load_audio(path), (left + right) / 2, atol=1e-6)
    both = load_audio(path, mono=False)
    assert both.shape == (2, 16_000)
    np.testing.assert_allclose(both[1], right, atol=1e-6)
    # Opposite channels cancel: the mono mix is silence.
    sf.write(path, np.stack([left, -left]).T, 16_000, subtype="FLOAT")
    assert Audio.load(path).is_silent()


def test_load_audio_resamples_to_the_requested_rate(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    sf.write(path, _tone(), SRC_RATE)
    wave = load_audio(path, sample_rate=8_000)
    assert len(wave) == 16_000
    assert abs(_dominant_hz(wave, 8_000) - TONE_HZ) < 1.0


def test_load_audio_trims_the_aac_end_padding(tmp_path: Path) -> None:
    # 0.5 s at 16 kHz = 8000 samples = 7.8 AAC frames: the container's last packet duration marks the real end.
    path = _encode(tmp_path / "short.m4a", "aac", _tone(16_000, 0.5)[None], 16_000)
    assert len(load_audio(path)) == 8_000


def test_load_audio_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="nothere.wav: file not found"):
        load_audio(tmp_path / "nothere.wav")
    with pytest.raises(MediaError, match=f"{tmp_path.name}: not a file"):
        load_audio(tmp_path)
    (tmp_path / "empty.mp3").write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty.mp3: file is empty \(0 bytes\)"):
        load_audio(tmp_path / "empty.mp3")
    for name in ("notes.wav", "notes.mp3"):
        (tmp_path / name).write_text("these are not audio samples\n" * 20)
        with pytest.raises(MediaError, match=rf"^{tmp_path}/{name}: cannot decode audio \([^\n]+\)$"):
            load_audio(tmp_path / name)
    # FFmpeg opens a .txt file as "tty" text-art video, so the problem it reports is the missing audio.
    (tmp_path / "notes.txt").write_text("these are not audio samples\n" * 20)
    with pytest.raises(MediaError, match=rf"^{tmp_path}/notes.txt: no audio stream$"):
        load_audio(tmp_path / "notes.txt")


def test_load_audio_of_a_header_only_wav(tmp_path: Path) -> None:
    path = tmp_path / "nothing.wav"
    sf.write(path, np.zeros((0, 1), np.float32), 16_000)  # a valid 44-byte header and no samples
    with pytest.raises(MediaError, match="nothing.wav: audio stream decoded to 0 samples"):
        load_audio(path)


def test_load_audio_of_video_without_audio_track(tmp_path: Path) -> None:
    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    with pytest.raises(MediaError, match="silent.mp4: no audio stream"):
        load_audio(path)


def test_load_audio_of_truncated_mp4_raises(tmp_path: Path) -> None:
    path = _write_fixture(tmp_path, "mp4")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # no faststart: the index at the end is cut off
    with pytest.raises(MediaError, match="tone.mp4: cannot decode audio"):
        load_audio(path)
    path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    with pytest.raises(MediaError, match="tone.mp4: cannot decode audio"):
        load_audio(path)


def test_save_audio_round_trips(tmp_path: Path) -> None:
    wave = _tone(16_000, 0.25, 0.9)
    pcm = save_audio(tmp_path / "out" / "pcm.wav", wave, 16_000)
    info = sf.info(pcm)
    assert (info.subtype, info.samplerate, info.channels, info.frames) == ("PCM_16", 16_000, 1, 4000)
    np.testing.assert_allclose(load_audio(pcm), wave, atol=1 / 32768 + 1e-7)

    flt = save_audio(tmp_path / "flt.wav", wave * 2, 16_000, float32=True)  # float keeps values above 1
    assert sf.info(flt).subtype == "FLOAT"
    np.testing.assert_array_equal(sf.read(flt, dtype="float32")[0], wave * 2)
    # 16-bit clips instead of wrapping around.
    clipped = sf.read(save_audio(tmp_path / "clip.wav", np.array([2.0, -2.0, 0.5]), 16_000), dtype="int16")[0]
    np.testing.assert_array_equal(clipped, [32767, -32768, 16384])

    stereo = save_audio(tmp_path / "st.wav", np.stack([wave, -wave]), 16_000)
    assert sf.info(stereo).channels == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.wav", "flt.wav", "out", "st.wav"]  # no temp files


def test_save_audio_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(MmgtError, match=r"out.mp3: save_audio writes .wav files"):
        save_audio(tmp_path / "out.mp3", np.zeros(10), 16_000)
    with pytest.raises(MmgtError, match="NaN"):
        save_audio(tmp_path / "out.wav", np.array([0.0, np.nan]), 16_000)
    with pytest.raises(MmgtError, match=r"shape \(0,\)"):
        save_audio(tmp_path / "out.wav", np.zeros(0), 16_000)
    assert list(tmp_path.iterdir()) == []


def test_resample() -> None:
    wave = _tone(48_000, 1.0)
    same = resample(wave, 48_000, 48_000)
    np.testing.assert_array_equal(same, wave)
    assert same is not wave
    down = resample(wave, 48_000, 16_000)
    assert down.dtype == np.float32 and down.shape == (16_000,)
    # A 440 Hz tone is far inside the band: the resampled signal matches the analytic one.
    np.testing.assert_allclose(down[100:-100], _tone(16_000, 1.0)[100:-100], atol=2e-3)
    assert resample(np.stack([wave, wave]), 48_000, 16_000).shape == (2, 16_000)
    with pytest.raises(MmgtError, match="positive"):
        resample(wave, 0, 16_000)


def test_silence_is_an_rms_below_minus_80_dbfs() -> None:
    assert Audio(np.zeros(100), 16000).is_silent()
    assert Audio(np.full(10, 5e-5), 16000).is_silent()  # -86 dBFS
    assert not Audio(np.full(10, 5e-4), 16000).is_silent()  # -66 dBFS: quiet speech, not silence
    assert not Audio(np.full(10, 1e-2), 16000).is_silent()


def test_audio_checks_once_and_resamples_from_the_same_samples(tmp_path) -> None:
    wave = (0.5 * np.sin(2 * np.pi * 440 * np.arange(44100) / 44100)).astype(np.float32)
    path = save_audio(tmp_path / "a.wav", wave, 44100)
    speech = Audio.load(path)
    assert speech.sample_rate == 44100 and speech.name == str(path)
    assert speech.at(44100) is speech
    assert speech.at(16000) is speech.at(16000)  # resampled once, kept
    # The same samples as decoding the file at each rate.
    np.testing.assert_array_equal(speech.at(16000).wave, load_audio(path, 16000))
    np.testing.assert_array_equal(speech.at(48000).wave, load_audio(path, 48000))
    assert speech.num_frames == 25 and speech.duration == 1.0
    for bad, message in ((np.zeros((2, 4)), "mono"), (np.zeros(0), "empty"), (np.array([0.0, np.inf]), "NaN")):
        with pytest.raises(MmgtError, match=message):
            Audio(bad, 16000, name="x.wav")
    with pytest.raises(MmgtError, match="sample rate"):
        Audio(np.zeros(4), 0)

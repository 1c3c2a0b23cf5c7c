"""mmgt.utils.video_io and video_writer: exact frame counts and timestamps, audio muxing, fps resampling, failures."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from builders import assert_same_pictures
from mmgt.errors import MediaError, MmgtError
from mmgt.utils.audio_io import Audio, load_audio
from mmgt.utils.image_io import read_image
from mmgt.utils.video_io import VIDEO_SUFFIXES, VideoInfo, iter_video_frames, probe_video, read_video_frames
from mmgt.utils.video_writer import VideoWriter, save_video

SR = 16_000


def _smooth_frames(n: int, size: int = 64) -> np.ndarray:
    """(n, size, size, 3) uint8 gradients that drift by 3 levels per frame: easy for H.264, distinct per frame."""
    yy, xx = np.mgrid[0:size, 0:size]
    frames = [np.stack([(xx * 2 + 3 * i) % 256, yy * 2, np.full_like(xx, 128)], axis=-1) for i in range(n)]
    return np.stack(frames).astype(np.uint8)


def _flat_frames(n: int, size: int = 32) -> np.ndarray:
    """(n, size, size, 3) uint8 flat grey frames; frame i has level 10 + 6 i, so a decoded frame names its index."""
    return np.stack([np.full((size, size, 3), 10 + 6 * i, np.uint8) for i in range(n)])


def _source_indices(frames: np.ndarray) -> list[int]:
    return [round((float(f.mean()) - 10) / 6) for f in frames]


def _tone(seconds: float, hz: float = 440.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(round(seconds * SR)) / SR)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("audio_seconds", [0.8, 1.3, 0.5], ids=["exact", "longer", "shorter"])
def test_mp4_round_trip_with_audio(tmp_path: Path, audio_seconds: float) -> None:
    frames = _smooth_frames(20)  # 20 frames at 25 fps = 0.8 s
    path = save_video(tmp_path / "out.mp4", frames, fps=25, audio=_tone(audio_seconds), sample_rate=SR)

    info = probe_video(path)
    assert info.num_frames == 20 and info.fps == 25.0 and (info.width, info.height) == (64, 64)
    assert info.duration_s == pytest.approx(0.8, abs=1e-3)
    assert info.has_audio and info.audio_duration_s == pytest.approx(0.8, abs=0.04)
    decoded = read_video_frames(path)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - frames).mean() < 3

    audio = load_audio(path)
    assert len(audio) == pytest.approx(0.8 * SR, abs=0.04 * SR)
    tone_part = audio[: int(min(audio_seconds, 0.8) * SR) - 1600]
    assert np.abs(tone_part).max() > 0.4  # the tone survives AAC
    if audio_seconds < 0.8:  # padded with silence after the audio ends
        assert np.abs(audio[int(audio_seconds * SR) + 1600 :]).max() < 0.02


def test_video_timestamps_are_frame_indices(tmp_path: Path) -> None:
    path = save_video(tmp_path / "ts.mp4", _flat_frames(5), fps=25)
    with av.open(str(path)) as container:
        times = [frame.pts * frame.time_base for frame in container.decode(video=0)]
    assert times == [Fraction(i, 25) for i in range(5)]


def test_streaming_writer_matches_one_batch(tmp_path: Path) -> None:
    frames, audio = _smooth_frames(20), _tone(1.0)
    batch = save_video(tmp_path / "batch.mp4", frames, audio=audio)
    with VideoWriter(tmp_path / "chunks.mp4", audio=audio) as writer:
        writer.write(frames[0])
        writer.write(frames[1:6])
        writer.write(frames[6:])
        assert writer.num_frames == 20
    chunks = tmp_path / "chunks.mp4"

    assert probe_video(chunks) == probe_video(batch)
    # The same frames reach x264 either way. Its output is not always byte-identical run to run in one process (seen
    # under load after an earlier decode: a few levels on some pixels), so the decoded pictures are compared.
    assert_same_pictures(read_video_frames(chunks), read_video_frames(batch))


def test_save_video_accepts_an_iterable_of_frames_and_batches(tmp_path: Path) -> None:
    frames = _flat_frames(6)
    path = save_video(tmp_path / "it.mkv", iter([frames[0], frames[1:4], frames[4], frames[5:]]), fps=10)
    info = probe_video(path)
    assert (info.num_frames, info.fps, info.has_audio, info.audio_duration_s) == (6, 10.0, False, None)
    assert info.duration_s == pytest.approx(0.6, abs=1e-3)
    assert _source_indices(read_video_frames(path)) == [0, 1, 2, 3, 4, 5]


def test_odd_sizes_are_padded_by_edge_replication(tmp_path: Path) -> None:
    frame = np.zeros((31, 45, 3), np.uint8)
    frame[:, -1] = 200  # the last column, which the padding repeats
    with VideoWriter(tmp_path / "odd.mp4") as writer:
        writer.write(np.stack([frame, frame]))
        assert writer.size == (46, 32)
    decoded = read_video_frames(tmp_path / "odd.mp4")
    assert decoded.shape == (2, 32, 46, 3)
    assert np.abs(decoded[0, :, -2:].astype(int) - 200).mean() < 8  # the padded column repeats its neighbour
    assert np.abs(decoded[0, :, :40].astype(int)).mean() < 3


def test_audio_at_a_rate_aac_cannot_code_is_resampled(tmp_path: Path) -> None:
    audio = (0.5 * np.sin(2 * np.pi * 440 * np.arange(10_000) / 10_000)).astype(np.float32)  # 1 s at 10 kHz
    path = save_video(tmp_path / "r.mp4", _flat_frames(25), audio=audio, sample_rate=10_000)
    with av.open(str(path)) as container:
        assert container.streams.audio[0].sample_rate == 48_000
    assert probe_video(path).audio_duration_s == pytest.approx(1.0, abs=0.04)


def test_a_checked_audio_brings_its_own_rate(tmp_path: Path) -> None:
    wave = (0.5 * np.sin(2 * np.pi * 440 * np.arange(44_100) / 44_100)).astype(np.float32)
    path = save_video(tmp_path / "a.mp4", _flat_frames(25), audio=Audio(wave, 44_100), sample_rate=16_000)
    with av.open(str(path)) as container:
        assert container.streams.audio[0].sample_rate == 44_100  # the Audio's rate, not the sample_rate argument
    assert probe_video(path).audio_duration_s == pytest.approx(1.0, abs=0.04)


# A codec per container of VIDEO_SUFFIXES (the writer only makes H.264 files); all come with FFmpeg.
_CODECS = {".avi": ("mpeg4", "yuv420p"), ".webm": ("libvpx", "yuv420p"), ".gif": ("gif", "rgb8")}


@pytest.mark.parametrize("suffix", sorted(VIDEO_SUFFIXES))
def test_every_video_suffix_is_readable(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"v{suffix}"
    codec, pix_fmt = _CODECS.get(suffix, ("libx264", "yuv420p"))
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, pix_fmt
        for frame in _flat_frames(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    info = probe_video(path)
    assert (info.num_frames, info.fps, info.width, info.height) == (3, 10.0, 32, 32)
    assert _source_indices(read_video_frames(path)) == [0, 1, 2]


# ---------------------------------------------------------------------------------------------------------------------
# Frame-rate resampling
# ---------------------------------------------------------------------------------------------------------------------
def test_fps_resampling_drops_frames(tmp_path: Path) -> None:
    path = save_video(tmp_path / "v50.mp4", _flat_frames(40), fps=50)
    out = read_video_frames(path, fps=25)
    assert out.shape == (20, 32, 32, 3)
    assert _source_indices(out) == list(range(0, 40, 2))  # output k at k/25 s shows source frame 2k


def test_fps_resampling_repeats_frames(tmp_path: Path) -> None:
    path = save_video(tmp_path / "v10.mp4", _flat_frames(7), fps=10)  # 0.7 s -> round(17.5) = 18 frames
    out = list(iter_video_frames(path, fps=25))
    assert len(out) == 18
    # Output k at k/25 s lies in source frame floor(k * 10 / 25).
    assert _source_indices(np.stack(out)) == [k * 10 // 25 for k in range(18)]
    out[0][:] = 0  # repeats are separate arrays
    assert out[1].mean() > 5


def test_read_video_frames_max_frames_and_same_rate(tmp_path: Path) -> None:
    path = save_video(tmp_path / "v.mp4", _flat_frames(10), fps=25)
    assert _source_indices(read_video_frames(path, max_frames=4)) == [0, 1, 2, 3]
    assert _source_indices(read_video_frames(path, fps=25)) == list(range(10))
    with pytest.raises(MmgtError, match="max_frames"):
        read_video_frames(path, max_frames=0)
    with pytest.raises(MmgtError, match="fps must be a positive number"):
        iter_video_frames(path, fps=-1)


# ---------------------------------------------------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reader", [probe_video, read_video_frames, iter_video_frames, read_image])
def test_missing_empty_and_text_files_raise_media_error(tmp_path: Path, reader) -> None:
    with pytest.raises(MediaError, match="nothere.mp4: file not found"):
        reader(tmp_path / "nothere.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty.mp4: file is empty \(0 bytes\)"):
        reader(str(tmp_path / "empty.mp4"))
    for name in ("notes.png", "notes.txt", "notes.mp4"):
        (tmp_path / name).write_text("not pixels\n" * 50)
        with pytest.raises(MediaError, match=f"{name}: "):
            reader(tmp_path / name)


def test_corrupt_videos_raise_media_error(tmp_path: Path) -> None:
    good = save_video(tmp_path / "good.mp4", _smooth_frames(20), audio=_tone(0.8)).read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(good[: len(good) // 2])  # index up front (faststart), half the frame data missing
    with pytest.raises(MediaError, match=r"half.mp4: truncated file \(container lists 20 frames"):
        probe_video(half)
    with pytest.raises(MediaError, match="half.mp4: truncated"):
        read_video_frames(half)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(len(good)))
    for reader in (probe_video, read_video_frames):
        with pytest.raises(MediaError, match="garbage.mp4: cannot read video"):
            reader(garbage)


def test_audio_only_file_is_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "a.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=SR, layout="mono")
        frame = av.AudioFrame.from_ndarray(_tone(0.064)[None, :1024], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = SR, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(MediaError, match="a.m4a: no video stream"):
        probe_video(path)


def test_failed_writer_leaves_no_output_and_no_temp_file(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(out, audio=_tone(1.0)) as writer:
            writer.write(_smooth_frames(5))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []

    # An existing file is only replaced by a successful close.
    out.write_bytes(b"previous")
    with pytest.raises(MmgtError, match=r"out.mp4: frame 2 is 16x16, but the video is 64x64"):
        with VideoWriter(out) as writer:
            writer.write(_smooth_frames(2))
            writer.write(np.zeros((16, 16, 3), np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"] and out.read_bytes() == b"previous"


def test_writer_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="empty.mp4: no frames were written"):
        with VideoWriter(tmp_path / "empty.mp4"):
            pass
    with pytest.raises(MmgtError, match=r"f.mp4: frames must be uint8 \(H, W, 3\) or \(N, H, W, 3\), got float32"):
        save_video(tmp_path / "f.mp4", np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(MmgtError, match=r"a.mp4: audio: expected a mono waveform of shape \(N,\), got shape \(2, 100"):
        VideoWriter(tmp_path / "a.mp4", audio=np.zeros((2, 100), np.float32))
    with pytest.raises(MmgtError, match=r"x.avi: unsupported video container '.avi'"):
        VideoWriter(tmp_path / "x.avi")
    with pytest.raises(MmgtError, match="fps must be a positive number"):
        VideoWriter(tmp_path / "z.mp4", fps=0)
    with pytest.raises(MmgtError, match=r"z.mp4: need 0 <= crf <= 51 and preset in .*, got 18, 'quick'"):
        VideoWriter(tmp_path / "z.mp4", preset="quick")
    assert list(tmp_path.iterdir()) == []


def test_probe_video_info_is_a_frozen_dataclass(tmp_path: Path) -> None:
    info = probe_video(save_video(tmp_path / "v.mp4", _flat_frames(3), fps=30))
    assert info == VideoInfo(3, 30.0, 32, 32, pytest.approx(0.1, abs=1e-3), False, None)
    with pytest.raises(AttributeError):
        info.num_frames = 4

"""Writing videos: RGB frames -> H.264 + AAC mp4, streamed, frame-exact and atomic.

The writer implements spec §6 step 10: exactly T frames at 25 fps with exact timestamps (pts = frame index in a
1/fps time base), muxed with the original audio trimmed or zero-padded to T / fps seconds.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from mmgt.constants import FPS, MUX_SAMPLE_RATE, SAMPLE_RATE
from mmgt.errors import MediaError, MmgtError
from mmgt.utils.audio_io import Audio, check_wave, resample
from mmgt.utils.files import error_summary, temp_path_for
from mmgt.utils.video_io import exact_rate

# Containers the writer accepts (all hold H.264 + AAC); mp4-family files get the index up front for web playback.
_WRITE_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv"}
_FASTSTART_SUFFIXES = {".mp4", ".m4v", ".mov"}
# Sample rates AAC can code; other rates are resampled to 48 kHz before encoding.
_AAC_RATES = {7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000}
_X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
_BT709 = 1  # FFmpeg's code for BT.709 primaries and transfer (the same value in both enums)
_AAC_FRAME = 1024  # samples per AAC-LC frame: the encoder accepts only full frames, except the last


class VideoWriter:
    """Stream RGB frames into an H.264 (libx264, yuv420p, BT.709) video, optionally muxed with AAC audio.

    Frames are encoded as they arrive, so memory does not grow with the length. Audio is encoded alongside the
    video, interleaved, and on close is trimmed or zero-padded to exactly ``num_frames / fps`` seconds. The file
    is written to a hidden temporary name and renamed onto ``path`` only by a successful :meth:`close`; an
    exception inside the ``with`` block removes it, leaving no output.

    yuv420p needs even sizes: an odd width or height is padded by one pixel that repeats the last column or row
    (so 63x63 frames give a 64x64 video).

    Example:
        >>> with VideoWriter("out.mp4", fps=25, audio=wave, sample_rate=16000) as writer:  # doctest: +SKIP
        ...     for chunk in chunks:  # each (N, H, W, 3) uint8
        ...         writer.write(chunk)

    Args:
        path: output file (.mp4, .m4v, .mov or .mkv); the parent folder is created.
        fps: frame rate; the video time base is 1/fps and frame i has pts i.
        audio: an :class:`~mmgt.utils.audio_io.Audio` (its own rate), an (N,) float32 mono waveform in [-1, 1] at
            ``sample_rate``, or None for a silent video.
        sample_rate: rate of an ``audio`` array in Hz; rates AAC cannot code are resampled to 48 kHz.
        crf: x264 constant rate factor (0 lossless, 18 visually lossless, 23 x264's default).
        preset: x264 speed preset ("ultrafast" ... "veryslow").
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float = FPS,
        audio: Audio | np.ndarray | None = None,
        sample_rate: int = SAMPLE_RATE,
        crf: int = 18,
        preset: str = "medium",
    ) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in _WRITE_SUFFIXES:
            raise MmgtError(f"{self.path}: unsupported video container {self.path.suffix!r} (use .mp4)")
        self.fps = exact_rate(fps)
        self._audio, self._audio_rate = _prepare_audio(audio, sample_rate, self.path)
        if not 0 <= int(crf) <= 51 or preset not in _X264_PRESETS:
            raise MmgtError(f"{self.path}: need 0 <= crf <= 51 and preset in {_X264_PRESETS}, got {crf}, {preset!r}")
        self._codec_options = {"crf": str(int(crf)), "preset": preset}
        self._tmp: Path | None = None
        self._container: av.container.OutputContainer | None = None
        self._video_stream = None
        self._audio_stream = None
        self._frame_shape: tuple[int, int] | None = None  # (H, W) of the input frames
        self._num_frames = 0
        self._audio_pos = 0  # samples of audio encoded so far
        self._closed = False

    @property
    def num_frames(self) -> int:
        """Frames written so far."""
        return self._num_frames

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of the encoded video (after padding to even sizes); None before the first frame."""
        if self._video_stream is None:
            return None
        return self._video_stream.width, self._video_stream.height

    def write(self, frames: np.ndarray) -> None:
        """Encode one (H, W, 3) uint8 RGB frame or a batch (N, H, W, 3)."""
        if self._closed:
            raise MmgtError(f"{self.path}: write() on a closed VideoWriter")
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or frames.shape[-1] != 3:
            raise MmgtError(
                f"{self.path}: frames must be uint8 (H, W, 3) or (N, H, W, 3), got {frames.dtype} {frames.shape}"
            )
        for frame in frames[None] if frames.ndim == 3 else frames:
            self._write_frame(frame)

    def close(self) -> Path:
        """Flush the encoders, finish the audio and move the file into place; returns ``path``.

        Raises:
            MediaError: no frame was written (nothing is left on disk).
        """
        if self._closed:
            return self.path
        if self._num_frames == 0:
            self.abort()
            raise MediaError(f"{self.path}: no frames were written")
        try:
            self._mux(self._video_stream.encode(None))
            if self._audio_stream is not None:
                self._encode_audio(until=self._audio_samples_for(self._num_frames), final=True)
            self._container.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Stop writing and delete the temporary file; ``path`` is left as it was."""
        self._closed = True
        if self._container is not None:
            # Cleanup after an earlier failure: a half-initialised muxer may fail to write its trailer, and that
            # error must not hide the original one. The file is deleted either way.
            with contextlib.suppress(av.FFmpegError, OSError):
                self._container.close()
            self._container = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- internals ----------------------------------------------------------------------------------------------------
    def _open(self, height: int, width: int) -> None:
        """Create the temporary file and its streams; the size is fixed by the first frame."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temp_path_for(self.path)
        options = {"movflags": "+faststart"} if self.path.suffix.lower() in _FASTSTART_SUFFIXES else {}
        try:
            self._container = av.open(str(self._tmp), "w", options=options)
        except av.FFmpegError as e:
            raise MediaError(f"{self.path}: cannot create video file ({error_summary(e, self._tmp)})") from e
        video = self._container.add_stream("libx264", rate=self.fps, options=self._codec_options)
        video.width, video.height = width + width % 2, height + height % 2
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = 1 / self.fps
        # Tag what _write_frame converts with, so players and our reader apply the same YUV->RGB matrix.
        video.codec_context.colorspace = Colorspace.ITU709
        video.codec_context.color_primaries = _BT709  # AVCOL_PRI_BT709
        video.codec_context.color_trc = _BT709  # AVCOL_TRC_BT709
        video.codec_context.color_range = ColorRange.MPEG
        self._video_stream = video
        if self._audio is not None:
            self._audio_stream = self._container.add_stream("aac", rate=self._audio_rate, layout="mono")
        self._frame_shape = (height, width)

    def _write_frame(self, rgb: np.ndarray) -> None:
        if self._container is None:
            self._open(*rgb.shape[:2])
        if rgb.shape[:2] != self._frame_shape:
            raise MmgtError(
                f"{self.path}: frame {self._num_frames} is {rgb.shape[1]}x{rgb.shape[0]}, but the video is "
                f"{self._frame_shape[1]}x{self._frame_shape[0]}"
            )
        pad_h, pad_w = rgb.shape[0] % 2, rgb.shape[1] % 2
        if pad_h or pad_w:
            rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame = frame.reformat(format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG)
        frame.pts, frame.time_base = self._num_frames, 1 / self.fps
        self._mux(self._video_stream.encode(frame))
        self._num_frames += 1
        if self._audio_stream is not None:
            self._encode_audio(until=self._audio_samples_for(self._num_frames), final=False)

    def _audio_samples_for(self, num_frames: int) -> int:
        """Audio samples spanning ``num_frames`` video frames (rounded to the nearest sample)."""
        return math.floor(num_frames / self.fps * self._audio_rate + Fraction(1, 2))

    def _encode_audio(self, until: int, final: bool) -> None:
        """Encode audio up to sample ``until``: whole AAC frames only, unless ``final`` (then flush)."""
        stream = self._audio_stream
        while self._audio_pos < until and (final or self._audio_pos + _AAC_FRAME <= until):
            stop = min(self._audio_pos + _AAC_FRAME, until)
            chunk = np.zeros(stop - self._audio_pos, np.float32)  # zero-padding past the end of the waveform
            available = self._audio[self._audio_pos : stop]
            chunk[: len(available)] = available
            frame = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = (
                self._audio_rate,
                self._audio_pos,
                Fraction(1, self._audio_rate),
            )
            self._mux(stream.encode(frame))
            self._audio_pos = stop
        if final:
            self._mux(stream.encode(None))

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self._container.mux(packet)


def save_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float = FPS,
    audio: Audio | np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
    **kwargs,
) -> Path:
    """Write frames to an H.264 mp4 with :class:`VideoWriter`; returns ``path``.

    Args:
        path: output file.
        frames: a (F, H, W, 3) uint8 array, or an iterable of (H, W, 3) frames and/or (N, H, W, 3) batches.
        fps, audio, sample_rate, kwargs: as for :class:`VideoWriter` (``crf``, ``preset``).
    """
    with VideoWriter(path, fps=fps, audio=audio, sample_rate=sample_rate, **kwargs) as writer:
        if isinstance(frames, np.ndarray):
            writer.write(frames)
        else:
            for chunk in frames:
                writer.write(chunk)
    return writer.path


def _prepare_audio(audio: Audio | np.ndarray | None, sample_rate: int, path: Path) -> tuple[np.ndarray | None, int]:
    """The waveform (checked, unless it comes as a checked :class:`Audio`) at a rate AAC can code."""
    if audio is None:
        return None, int(sample_rate)
    if isinstance(audio, Audio):
        wave, sample_rate = audio.wave, audio.sample_rate
    else:
        wave = check_wave(audio, sample_rate, name=f"{path}: audio")
    if int(sample_rate) not in _AAC_RATES:
        return resample(wave, int(sample_rate), MUX_SAMPLE_RATE), MUX_SAMPLE_RATE
    return wave, int(sample_rate)

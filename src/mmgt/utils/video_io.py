"""Video and image files: probe, stream frames (optionally resampled to a frame rate), write H.264 + AAC mp4.

The writer implements spec §6 step 10: exactly T frames at 25 fps with exact timestamps (pts = frame index in a
1/fps time base), muxed with the original audio trimmed or zero-padded to T / fps seconds.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import numbers
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace
from PIL import Image, ImageOps, UnidentifiedImageError

from mmgt.constants import FPS, MUX_SAMPLE_RATE, SAMPLE_RATE
from mmgt.errors import MediaError, MmgtError
from mmgt.utils.audio_io import check_wave, resample
from mmgt.utils.files import check_input_file, error_summary, temp_path_for

# Containers the writer accepts (all hold H.264 + AAC); mp4-family files get the index up front for web playback.
_WRITE_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv"}
_FASTSTART_SUFFIXES = {".mp4", ".m4v", ".mov"}
# Sample rates AAC can code; other rates are resampled to 48 kHz before encoding.
_AAC_RATES = {7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000}
_X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
_BT709 = 1  # FFmpeg's code for BT.709 primaries and transfer (the same value in both enums)
_AAC_FRAME = 1024  # samples per AAC-LC frame: the encoder accepts only full frames, except the last
_PIL_16BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_PIL_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` reports about a file.

    Attributes:
        num_frames: frames that a decoder presents, counted exactly by demuxing.
        fps: average frame rate.
        width, height: coded picture size in pixels.
        duration_s: first frame's timestamp to the end of the last frame.
        has_audio: the file has an audio stream.
        audio_duration_s: length of the first audio stream, or None without audio.
    """

    num_frames: int
    fps: float
    width: int
    height: int
    duration_s: float
    has_audio: bool
    audio_duration_s: float | None


@dataclass(frozen=True)
class _Scan:
    """Exact timing of the first video stream (times are Fractions of a second)."""

    num_frames: int
    rate: Fraction
    width: int
    height: int
    start: Fraction
    duration: Fraction
    audio_duration: Fraction | None


# ---------------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------------
def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count, rate, size and durations of a video file.

    The frame count comes from demuxing every packet (no decoding), because the container's own count is missing
    in mkv/webm and, in mp4, includes samples that an edit list discards.

    Raises:
        MediaError: the file is missing, empty, not a video, truncated or corrupt. The message starts with the path.
    """
    scan = _scan(check_input_file(path))
    return VideoInfo(
        num_frames=scan.num_frames,
        fps=float(scan.rate),
        width=scan.width,
        height=scan.height,
        duration_s=float(scan.duration),
        has_audio=scan.audio_duration is not None,
        audio_duration_s=None if scan.audio_duration is None else float(scan.audio_duration),
    )


def iter_video_frames(path: str | os.PathLike, fps: float | None = None) -> Iterator[np.ndarray]:
    """Decode a video one frame at a time (constant memory), optionally resampled to ``fps``.

    With ``fps``, output frame k shows the source frame whose presentation interval contains ``t0 + k / fps``
    (t0 = the first frame's timestamp), so source frames are dropped or repeated; there are
    ``round(duration * fps)`` output frames (halves round up), ``duration`` being :attr:`VideoInfo.duration_s`.

    The file is checked before this returns; decoding errors surface during iteration.

    Args:
        path: the video file.
        fps: output frame rate, or None for the frames as stored.

    Yields:
        (H, W, 3) uint8 RGB frames.

    Raises:
        MediaError: the file is missing or not a readable video (the message starts with the path).
    """
    path = check_input_file(path)
    scan = _scan(path)
    if fps is None:
        return (_to_rgb(frame) for _, frame in _decode(path, scan))
    rate = _as_rate(fps, "fps")
    num_out = math.floor(scan.duration * rate + Fraction(1, 2))
    return _resample_by_time(_decode(path, scan), rate, num_out)


def read_video_frames(path: str | os.PathLike, fps: float | None = None, max_frames: int | None = None) -> np.ndarray:
    """All frames of a video (or the first ``max_frames``) as one (F, H, W, 3) uint8 RGB array.

    See :func:`iter_video_frames` for ``fps``.
    """
    if max_frames is not None and int(max_frames) < 1:
        raise MmgtError(f"max_frames must be at least 1, got {max_frames}")
    with contextlib.closing(iter_video_frames(path, fps)) as frames:
        stack = list(itertools.islice(frames, max_frames))
    if not stack:
        raise MediaError(f"{path}: no frames could be decoded")
    return np.stack(stack)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB.

    EXIF orientation is applied. Grayscale is repeated to three channels; 16-bit images are scaled to 8 bits
    (65535 -> 255); images with transparency (RGBA, LA, P with a transparent colour) are composited onto white.

    Raises:
        MediaError: the file is missing, empty, truncated or not an image PIL can decode.
    """
    path = check_input_file(path)
    try:
        with Image.open(path) as image:
            image.load()  # PIL opens lazily: decode now so a truncated file fails here
            return _image_to_rgb(ImageOps.exif_transpose(image))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
        problem = "truncated image" if "truncated" in str(e) else "not an image"
        raise MediaError(f"{path}: {problem} ({error_summary(e, path)})") from e


def _scan(path: Path) -> _Scan:
    """Demux every packet of the first video (and audio) stream to get exact counts and times."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video or container.format.name == "tty":  # FFmpeg shows text files as video
                raise MediaError(f"{path}: no video stream")
            video = container.streams.video[0]
            audio = container.streams.audio[0] if container.streams.audio else None
            rate = video.average_rate or video.guessed_rate
            span, audio_span, total = _Span(), _Span(), 0
            for packet in container.demux([s for s in (video, audio) if s is not None]):
                if packet.size == 0:
                    continue  # the demuxer's end-of-stream marker
                if packet.stream.type == "video":
                    total += 1
                    if not packet.is_discard:  # an mp4 edit list hides this frame
                        span.add(packet, Fraction(1, 1) / rate if rate else Fraction(0))
                elif not packet.is_discard:  # e.g. AAC priming samples
                    audio_span.add(packet, Fraction(0))
            width, height, expected = video.codec_context.width, video.codec_context.height, video.frames
    except av.FFmpegError as e:
        raise MediaError(f"{path}: cannot read video ({error_summary(e, path)})") from e
    if span.count == 0:
        raise MediaError(f"{path}: video stream has no frames")
    if width <= 0 or height <= 0:  # e.g. a non-image file named .png, which FFmpeg's image demuxer accepts
        raise MediaError(f"{path}: cannot read video (stream has no picture size)")
    if expected and total < expected:
        raise MediaError(f"{path}: truncated file (container lists {expected} frames, only {total} are present)")
    duration = span.duration()
    if not rate:
        rate = Fraction(span.count) / duration if duration else Fraction(FPS)
    if duration == 0:
        duration = span.count / Fraction(rate)  # no timestamps: assume a constant rate
    audio_duration = None if audio is None else audio_span.duration()
    return _Scan(span.count, Fraction(rate), width, height, span.start or Fraction(0), duration, audio_duration)


class _Span:
    """Running count, first timestamp and end time (timestamp + duration) of a stream's packets."""

    def __init__(self) -> None:
        self.count = 0
        self.start: Fraction | None = None
        self.end: Fraction | None = None

    def add(self, packet: av.Packet, default_duration: Fraction) -> None:
        self.count += 1
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is None or packet.time_base is None:
            return
        start = ts * packet.time_base
        end = start + (packet.duration * packet.time_base if packet.duration else default_duration)
        self.start = start if self.start is None else min(self.start, start)
        self.end = end if self.end is None else max(self.end, end)

    def duration(self) -> Fraction:
        return Fraction(0) if self.start is None else self.end - self.start


def _decode(path: Path, scan: _Scan) -> Iterator[tuple[Fraction, av.VideoFrame]]:
    """(presentation time in seconds, frame) in presentation order."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame + slice threads; output order is unchanged
            for i, frame in enumerate(container.decode(stream)):
                if frame.pts is not None and frame.time_base is not None:
                    yield frame.pts * frame.time_base, frame
                else:
                    yield scan.start + i / scan.rate, frame
    except av.FFmpegError as e:
        raise MediaError(f"{path}: cannot decode video ({error_summary(e, path)})") from e


def _resample_by_time(
    frames: Iterator[tuple[Fraction, av.VideoFrame]], rate: Fraction, num_out: int
) -> Iterator[np.ndarray]:
    """Sample-and-hold: output k is the latest source frame whose timestamp is <= t0 + k / rate."""
    k, t0, held = 0, None, None  # held = (frame, its RGB array once converted)
    for t, frame in frames:
        if t0 is None:
            t0 = t
        # Every output time before this frame's timestamp falls in the held frame's interval [t_held, t).
        while held is not None and k < num_out and t0 + k / rate < t:
            held = _converted(held)
            yield held[1].copy()  # a fresh array per output, so repeats never alias each other
            k += 1
        if k >= num_out:
            return
        held = (frame, None)
    while held is not None and k < num_out:  # the last frame lasts until the end of the video
        held = _converted(held)
        yield held[1].copy()
        k += 1


def _converted(held: tuple[av.VideoFrame, np.ndarray | None]) -> tuple[av.VideoFrame, np.ndarray]:
    frame, rgb = held
    return (frame, _to_rgb(frame) if rgb is None else rgb)


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """(H, W, 3) uint8 RGB; the YUV->RGB matrix follows the frame's colour tags."""
    return frame.to_ndarray(format="rgb24")


def _image_to_rgb(image: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from any PIL mode."""
    if image.mode in _PIL_16BIT_MODES:
        # 16-bit grayscale (PIL opens 16-bit PNG/TIFF as "I;16" or "I"): 65535 -> 255.
        gray = np.clip(np.rint(np.asarray(image, dtype=np.float64) / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode == "F":
        # Float images follow PIL's own convert("L"): values are taken as 0..255.
        gray = np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode in _PIL_ALPHA_MODES or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint32)
        alpha = rgba[..., 3:]
        # Composite onto white in integers: rgb * a + 255 * (1 - a), rounded.
        return ((rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------------
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
        audio: (N,) float32 mono waveform in [-1, 1], or None for a silent video.
        sample_rate: rate of ``audio`` in Hz; rates AAC cannot code are resampled to 48 kHz.
        crf: x264 constant rate factor (0 lossless, 18 visually lossless, 23 x264's default).
        preset: x264 speed preset ("ultrafast" ... "veryslow").
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float = FPS,
        audio: np.ndarray | None = None,
        sample_rate: int = SAMPLE_RATE,
        crf: int = 18,
        preset: str = "medium",
    ) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in _WRITE_SUFFIXES:
            raise MmgtError(f"{self.path}: unsupported video container {self.path.suffix!r} (use .mp4)")
        self.fps = _as_rate(fps, "fps")
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
    audio: np.ndarray | None = None,
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


def _as_rate(fps: float | Fraction, name: str) -> Fraction:
    """A frame rate as an exact Fraction; floats such as 29.97 become 2997/100, 30000/1001 stays exact."""
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or not fps > 0:
        raise MmgtError(f"{name} must be a positive number, got {fps!r}")
    return Fraction(fps).limit_denominator(1001)


def _prepare_audio(audio: np.ndarray | None, sample_rate: int, path: Path) -> tuple[np.ndarray | None, int]:
    """Check the waveform and bring it to a rate AAC can code."""
    if audio is None:
        return None, int(sample_rate)
    audio = check_wave(audio, sample_rate, name=f"{path}: audio")
    if int(sample_rate) not in _AAC_RATES:
        return resample(audio, int(sample_rate), MUX_SAMPLE_RATE), MUX_SAMPLE_RATE
    return audio, int(sample_rate)

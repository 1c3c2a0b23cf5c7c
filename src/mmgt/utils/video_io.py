"""Reading video files: exact frame counts and timing, and frames streamed one at a time (optionally resampled).

Writing is :mod:`mmgt.utils.video_writer`; still images are :mod:`mmgt.utils.image_io`.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import numbers
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from mmgt.constants import FPS
from mmgt.errors import MediaError, MmgtError
from mmgt.utils.files import check_input_file, error_summary

# The suffixes (lower case) that mark a file as a video, wherever mmgt looks for videos; all decode with this reader.
# GIFs carry no audio, so `mmgt data preprocess` reports them as failed videos.
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".gif"})


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
    rate = exact_rate(fps)
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


def exact_rate(fps: float | Fraction) -> Fraction:
    """A frame rate as an exact Fraction (for the reader and the writer); 29.97 becomes 2997/100, 30000/1001 stays.

    Raises:
        MmgtError: ``fps`` is not a positive finite number.
    """
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or not fps > 0:
        raise MmgtError(f"fps must be a positive number, got {fps!r}")
    return Fraction(fps).limit_denominator(1001)

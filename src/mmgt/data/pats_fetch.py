"""``mmgt data fetch-pats``: download the source videos of the requested PATS intervals, politely and resumably.

The download itself is a :class:`Downloader`: :class:`YtDlpDownloader` (the optional extra ``mmgt[pats]``) or any
object with the same method (the tests use a fake one; this module is not run against the network in mmgt's tests).
Each video is written under the name that ``mmgt data pats`` looks for (:func:`~mmgt.data.pats.source_name`), first
to a hidden temporary name, then renamed: a stopped run leaves no partial video. Videos already there are skipped.

``VIDEOS_DIR/fetch_report.json`` lists the downloaded, present and failed links (with the reason) after every video;
``mmgt data pats`` adds the reason to the availability report of each interval whose video is missing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mmgt.data.pats import FETCH_REPORT_NAME, Interval, check_video_name, find_source, source_name
from mmgt.errors import MmgtError
from mmgt.utils.files import atomic_output, make_output_dir, temp_path_for
from mmgt.utils.video_io import VIDEO_SUFFIXES

# Words in a downloader's message that mean the video is gone for good: retrying will not help.
_GONE = ("unavailable", "private", "removed", "terminated", "deleted", "copyright", "does not exist")


class DownloadFailed(Exception):
    """A :class:`Downloader` could not fetch a link.

    Attributes:
        permanent: the video is gone (removed, private, ...): no retry.
    """

    def __init__(self, reason: str, permanent: bool = False):
        super().__init__(reason)
        self.permanent = permanent


class Downloader(Protocol):
    """What :func:`fetch_sources` needs from a download library."""

    def download(self, url: str, stem: Path) -> Path:
        """Download ``url`` to ``stem`` plus a suffix of the downloader's choice and return that file.

        Raises:
            DownloadFailed: the link could not be fetched (``permanent`` when the video is gone).
        """
        ...


@dataclass
class FetchReport:
    """Outcome of :func:`fetch_sources`: links downloaded now, already present, and failed (link -> reason)."""

    downloaded: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"downloaded {len(self.downloaded)} video(s), {len(self.present)} already present, "
            f"{len(self.failed)} failed"
        ]
        lines += [f"failed {link}: {reason}" for link, reason in sorted(self.failed.items())]
        return "\n".join(lines)


class YtDlpDownloader:
    """:class:`Downloader` backed by yt-dlp (``pip install 'mmgt[pats]'``): best mp4 video + m4a audio, merged.

    Raises:
        MmgtError: yt-dlp is not installed.
    """

    def __init__(self, format: str = "bv*[ext=mp4]+ba[ext=m4a]/b[ext=mp4]/bv*+ba/b"):
        try:
            import yt_dlp
        except ImportError:
            raise MmgtError("mmgt data fetch-pats needs yt-dlp: pip install 'mmgt[pats]'") from None
        self._yt_dlp = yt_dlp
        self.format = format

    def download(self, url: str, stem: Path) -> Path:
        options = {
            "format": self.format,
            "outtmpl": f"{stem}.%(ext)s",
            "merge_output_format": "mp4",
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "retries": 0,  # fetch_sources retries, with its own pauses
        }
        try:
            with self._yt_dlp.YoutubeDL(options) as ydl:
                ydl.download([url])
        except self._yt_dlp.utils.DownloadError as e:
            reason = " ".join(str(e).split()).removeprefix("ERROR: ")
            raise DownloadFailed(reason, permanent=any(word in reason.lower() for word in _GONE)) from None
        files = [p for p in stem.parent.glob(f"{stem.name}.*") if p.suffix.lower() in VIDEO_SUFFIXES]
        if len(files) != 1:
            raise DownloadFailed(f"expected one video file from yt-dlp, found {len(files)}")
        return files[0]


def fetch_sources(
    intervals: Sequence[Interval],
    videos_dir: str | os.PathLike,
    downloader: Downloader,
    video_name: str,
    min_interval_s: float = 5.0,
    retries: int = 2,
    backoff_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    progress: bool = True,
) -> FetchReport:
    """Download the source video of every interval (each link once) into ``videos_dir``.

    Args:
        intervals: the intervals whose videos are wanted (:func:`~mmgt.data.pats.requested_intervals`).
        videos_dir: the videos folder of ``mmgt data pats`` (created).
        downloader: a :class:`Downloader`.
        video_name: the naming template (:data:`~mmgt.data.pats.DEFAULT_VIDEO_NAME`).
        min_interval_s: at least this long between the starts of two downloads (rate limit).
        retries: further attempts after a failure that is not permanent.
        backoff_s: pause before the first retry; it doubles for each further one.
        sleep, clock: time functions (replaced in tests).
        progress: show a progress bar over videos.

    Returns:
        A :class:`FetchReport`, also written to ``videos_dir/fetch_report.json``.
    """
    from tqdm.auto import tqdm

    check_video_name(video_name)
    for name, value in (("min_interval_s", min_interval_s), ("retries", retries), ("backoff_s", backoff_s)):
        if not value >= 0:
            raise MmgtError(f"{name} must be >= 0, got {value}")
    root = make_output_dir(videos_dir)
    sources: dict[str, str] = {}  # link -> name, in table order
    for interval in intervals:
        sources.setdefault(interval.video_link, source_name(interval, video_name))
    report, last_start = FetchReport(), None
    for link, name in tqdm(sources.items(), desc="videos", unit="video", disable=not progress):
        if find_source(root, name):
            report.present.append(link)
            continue
        for attempt in range(retries + 1):
            if attempt:
                sleep(backoff_s * 2 ** (attempt - 1))
            if last_start is not None:
                sleep(max(0.0, last_start + min_interval_s - clock()))
            last_start = clock()
            try:
                _download(downloader, link, root / name)
            except DownloadFailed as e:
                report.failed[link] = str(e)
                if e.permanent:
                    break
            else:
                report.failed.pop(link, None)
                report.downloaded.append(link)
                break
        _write_report(root, report)
    _write_report(root, report)
    return report


def _download(downloader: Downloader, link: str, target: Path) -> None:
    """Download to a hidden name next to ``target``, then rename it to ``target`` (+ the file's suffix when the
    template gives none)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    stem = temp_path_for(target, suffix="")
    try:
        file = Path(downloader.download(link, stem))
        final = target if target.suffix.lower() in VIDEO_SUFFIXES else Path(f"{target}{file.suffix.lower()}")
        os.replace(file, final)
    finally:
        for leftover in stem.parent.glob(f"{stem.name}*"):  # the downloader's partial files
            leftover.unlink(missing_ok=True)


def _write_report(root: Path, report: FetchReport) -> None:
    data = {"downloaded": report.downloaded, "present": report.present, "failed": report.failed}
    with atomic_output(root / FETCH_REPORT_NAME) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")

"""Turn a folder of talking-person videos into an mmgt dataset (``mmgt data preprocess``, spec §8.2-8.3).

Per video: read at 25 fps, choose one square crop (:mod:`mmgt.data.crop`), crop and resize every frame, cut into
clips of at most ``max_seconds``, detect keypoints per clip (MediaPipe Holistic in tracking mode, then smoothed),
attach the 16 kHz audio and write each clip with :func:`~mmgt.data.manifest.write_clip`.

Resuming and sharding work through ``DATASET/records/`` (:mod:`mmgt.data.preprocess_records`): what is done,
rejected or failed, from which the manifest and ``preprocess_report.json`` are rebuilt at the end of every run.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import math
import multiprocessing
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from mmgt.constants import FPS, SAMPLE_RATE
from mmgt.data.check import MIN_PERSON_SHARE, person_share
from mmgt.data.crop import CropBox, auto_crop, fixed_crop
from mmgt.data.manifest import SPLITS, ClipRecord, write_clip
from mmgt.data.preprocess_records import (
    clip_origin,
    mark_done,
    mark_rejected,
    open_dataset_dir,
    previous_outcome,
    rebuild_outputs,
    set_failure,
)
from mmgt.errors import MediaError, MmgtError
from mmgt.pose.detect import MediaPipeDetector, extract_poses
from mmgt.utils.audio_io import load_audio
from mmgt.utils.files import error_summary
from mmgt.utils.video_io import VIDEO_SUFFIXES, iter_video_frames, probe_video

CROP_SAMPLES = 10  # frames per video, evenly spaced, on which the crop is measured
SETTINGS_VERSION = 1  # bump when the processing changes, so that old records are redone


@dataclass
class PreprocessReport:
    """Outcome of :func:`preprocess_videos`.

    Attributes:
        processed: clips written by this run.
        skipped: clips already done by an earlier run (record and files present, checksums match), including
            clips rejected earlier.
        failed: (video path relative to the input folder, reason) for videos that could not be processed.
        rejected: (clip id or video path, reason) for clips dropped for their content (no person, too short).
        records: every clip record of the rebuilt manifest (all shards and earlier runs).
    """

    processed: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    records: list[ClipRecord] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for the terminal: counts, then one line per failed video and rejected clip."""
        lines = [
            f"processed {self.processed} clip(s), skipped {self.skipped} (already done), rejected "
            f"{len(self.rejected)}, failed {len(self.failed)} video(s); manifest has {len(self.records)} clip(s)"
        ]
        lines += [f"failed {path}: {reason}" for path, reason in self.failed]
        lines += [f"rejected {name}: {reason}" for name, reason in self.rejected]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Job:
    """Everything a worker needs for one video (picklable)."""

    path: str  # absolute input path
    rel: str  # path relative to the input folder (POSIX), the video's identity in records
    stem: str  # clip ids are f"{stem}-{piece:03d}"
    speaker: str
    split: str
    out_dir: str
    settings: dict


@dataclass
class _Result:
    processed: int = 0
    skipped: int = 0
    failure: str | None = None
    rejected: list[tuple[str, str]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------------
# Inputs: files, ids, speakers, splits, pieces
# ---------------------------------------------------------------------------------------------------------------------
def find_videos(videos_dir: str | os.PathLike) -> list[Path]:
    """Every file under ``videos_dir`` (recursively) with a suffix in :data:`~mmgt.utils.video_io.VIDEO_SUFFIXES`,
    sorted by path."""
    root = Path(videos_dir)
    if not root.is_dir():
        raise MediaError(f"{root}: videos folder not found" if not root.exists() else f"{root}: not a folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def clip_stems(rel_paths: Sequence[str]) -> dict[str, str]:
    """Clip-id stem per relative video path: the file stem, made unique by its folders (then suffix) if shared.

    Characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``, so ids are safe file names.
    """

    def clean(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]", "_", text)

    stems = {rel: clean(Path(rel).stem) for rel in rel_paths}
    for level in (lambda r: str(Path(r).with_suffix("")), lambda r: r):  # folders first, then the suffix too
        counts: dict[str, int] = {}
        for stem in stems.values():
            counts[stem] = counts.get(stem, 0) + 1
        stems = {rel: clean(level(rel).replace("/", "_")) if counts[s] > 1 else s for rel, s in stems.items()}
    return stems


def speaker_of(rel_path: str, videos_dir: Path, speaker_from: str = "dirname") -> str:
    """The speaker name: the video's parent folder name (PATS-style ``<speaker>/<clip>.mp4``) or its file stem."""
    if speaker_from == "filename":
        return Path(rel_path).stem
    if speaker_from == "dirname":
        parent = Path(rel_path).parent
        return parent.name if parent.name else videos_dir.resolve().name
    raise MmgtError(f"speaker_from must be 'dirname' or 'filename', got {speaker_from!r}")


def assign_split(rel_path: str, ratios: Sequence[float] = (0.9, 0.05, 0.05)) -> str:
    """Deterministic split of a video from the SHA-256 of its relative path, so all its clips share one split."""
    digest = hashlib.sha256(rel_path.encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64  # uniform in [0, 1)
    edges = np.cumsum(ratios)
    return SPLITS[min(int(np.searchsorted(edges, u, side="right")), len(SPLITS) - 1)]


def plan_pieces(num_frames: int, max_frames: int | None, min_frames: int) -> list[tuple[int, int]]:
    """[start, stop) frame ranges of the clips: consecutive pieces of ``max_frames`` (None: one piece); a final
    piece shorter than ``min_frames`` is dropped (so is the only piece of a too-short video)."""
    step = max_frames or max(num_frames, 1)
    pieces = [(start, min(start + step, num_frames)) for start in range(0, num_frames, step)]
    if pieces and pieces[-1][1] - pieces[-1][0] < min_frames:
        pieces.pop()
    return pieces


def _check_arguments(
    size: int,
    max_seconds: float | None,
    min_seconds: float,
    workers: int,
    shard: tuple[int, int],
    crop_left: float | None,
    split_ratios: tuple[float, ...],
) -> None:
    if size < 32 or size % 2:
        raise MmgtError(f"size must be an even number of pixels >= 32 (H.264 4:2:0), got {size}")
    if max_seconds is not None and not max_seconds * FPS >= 1:
        raise MmgtError(f"max_seconds must be at least one frame (1/{FPS} s) or None, got {max_seconds}")
    if not min_seconds >= 0:
        raise MmgtError(f"min_seconds must be >= 0, got {min_seconds}")
    if workers < 1:
        raise MmgtError(f"workers must be >= 1, got {workers}")
    if len(shard) != 2 or not 0 <= shard[0] < shard[1]:
        raise MmgtError(f"shard must be (i, n) with 0 <= i < n, got {tuple(shard)}")
    if crop_left is not None and not 0.0 <= crop_left <= 1.0:
        raise MmgtError(f"crop_left must be a fraction of the width in [0, 1], got {crop_left}")
    if len(split_ratios) != len(SPLITS) or min(split_ratios) < 0 or abs(sum(split_ratios) - 1.0) > 1e-6:
        raise MmgtError(
            f"split_ratios must be {len(SPLITS)} non-negative numbers ({'/'.join(SPLITS)}) summing to 1, "
            f"got {split_ratios}"
        )


# ---------------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------------
def preprocess_videos(
    videos_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    size: int = 512,
    max_seconds: float | None = 15.0,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    crop_left: float | None = None,
    split_ratios: Sequence[float] = (0.9, 0.05, 0.05),
    smooth: bool = True,
    progress: bool = True,
    speaker_from: str = "dirname",
    min_seconds: float = 2.0,
) -> PreprocessReport:
    """Preprocess every video under ``videos_dir`` into the dataset ``out_dir`` (docs/data.md).

    Args:
        videos_dir: folder searched recursively for :data:`~mmgt.utils.video_io.VIDEO_SUFFIXES` files.
        out_dir: dataset folder (created); finished clips found there are skipped.
        size: side of the square output frames in pixels (even).
        max_seconds: longest clip; longer videos are cut into consecutive clips ``<stem>-000``, ``<stem>-001``, ...
            (None: one clip per video).
        workers: parallel processes (each with its own detector).
        shard: (i, n): process only the videos whose index in the sorted list is i modulo n.
        crop_left: fixed crop with this left edge (fraction of the width) and side = frame height; None: automatic
            crop from the detected upper body.
        split_ratios: train/val/test shares; a video's split is fixed by the hash of its relative path.
        smooth: smooth the keypoints over time (:func:`~mmgt.pose.smoothing.smooth_poses`).
        progress: show a progress bar over videos.
        speaker_from: ``"dirname"`` (parent folder name) or ``"filename"`` (file stem).
        min_seconds: a final piece shorter than this is dropped (stage 1 trains on 3.2-s windows).

    Returns:
        A :class:`PreprocessReport`; the manifest and ``preprocess_report.json`` are written to ``out_dir``.

    Raises:
        MmgtError: before anything is written: a bad argument, no videos under ``videos_dir`` (or no such folder),
            or an ``out_dir`` that cannot be written or holds something other than a preprocessed dataset. Videos
            that fail later are listed in the report instead.
    """
    split_ratios = tuple(float(r) for r in split_ratios)
    _check_arguments(size, max_seconds, min_seconds, workers, shard, crop_left, split_ratios)
    root, out = Path(videos_dir), Path(out_dir)
    # A dataset written inside the videos folder must not become input on the next run.
    videos = [p for p in find_videos(root) if not p.resolve().is_relative_to(out.resolve())]
    if not videos:
        raise MediaError(f"{root}: no videos in this folder or below (looked for {', '.join(sorted(VIDEO_SUFFIXES))})")
    rels = [p.relative_to(root).as_posix() for p in videos]
    stems = clip_stems(rels)
    settings = _settings(size, max_seconds, min_seconds, crop_left, smooth)
    jobs = [
        _Job(
            path=str(path.resolve()),
            rel=rel,
            stem=stems[rel],
            speaker=speaker_of(rel, root, speaker_from),
            split=assign_split(rel, split_ratios),
            out_dir=str(out),
            settings=settings,
        )
        for index, (path, rel) in enumerate(zip(videos, rels))
        if index % shard[1] == shard[0]  # the shard is taken from the full sorted list: shards never overlap
    ]
    open_dataset_dir(out)
    report = PreprocessReport()
    for job, result in _run_jobs(jobs, workers, progress):
        report.processed += result.processed
        report.skipped += result.skipped
        report.rejected += result.rejected
        set_failure(out, job.stem, job.rel, result.failure)
        if result.failure is not None:
            report.failed.append((job.rel, result.failure))
    report.records = rebuild_outputs(out, set(rels), settings)
    report.failed.sort()
    report.rejected.sort()
    return report


def _settings(size: int, max_seconds: float | None, min_seconds: float, crop_left: float | None, smooth: bool) -> dict:
    """What the clip files depend on; a record made with other settings is redone."""
    return {
        "version": SETTINGS_VERSION,
        "size": int(size),
        "max_seconds": None if max_seconds is None else float(max_seconds),
        "min_seconds": float(min_seconds),
        "crop": "auto" if crop_left is None else float(crop_left),
        "smooth": bool(smooth),
        "detector": "mediapipe-holistic",
    }


def _run_jobs(jobs: list[_Job], workers: int, progress: bool) -> Iterator[tuple[_Job, _Result]]:
    """Yield (job, result) as videos finish; in-process for one worker, else a spawn process pool."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="videos", unit="video", disable=not progress)
    with bar:
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                yield job, _process_video(job)
                bar.update()
            return
        # spawn, not fork: MediaPipe graphs and decoder threads do not survive a fork safely.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {pool.submit(_process_video, job): job for job in jobs}
            for future in concurrent.futures.as_completed(futures):
                yield futures[future], future.result()
                bar.update()


# ---------------------------------------------------------------------------------------------------------------------
# One video
# ---------------------------------------------------------------------------------------------------------------------
def _process_video(job: _Job) -> _Result:
    """Process one video; errors of a bad input file are caught and returned as the failure reason."""
    result = _Result()
    try:
        _process(job, result)
    except (MmgtError, av.FFmpegError) as e:
        # Our messages start with the path, which the report already names.
        result.failure = error_summary(e, job.path).removeprefix(f"{job.path}: ")
    return result


def _process(job: _Job, result: _Result) -> None:
    settings, out = job.settings, Path(job.out_dir)
    info = probe_video(job.path)
    num_frames = _frames_at_fps(info.duration_s)
    max_frames = None if settings["max_seconds"] is None else int(settings["max_seconds"] * FPS)
    pieces = plan_pieces(num_frames, max_frames, math.ceil(settings["min_seconds"] * FPS - 1e-9))
    if not pieces:
        reason = f"video lasts {num_frames / FPS:.2f} s, shorter than the {settings['min_seconds']:g} s minimum"
        _reject(job, job.stem, 0, reason, result)
        return
    todo = {}
    for index, span in enumerate(pieces):
        clip_id = f"{job.stem}-{index:03d}"
        done, reason = previous_outcome(
            out, clip_id, clip_origin(job.rel, span[0], settings), span[1] - span[0], job.split, job.speaker
        )
        if done:
            result.skipped += 1
            if reason is not None:
                result.rejected.append((clip_id, reason))
        else:
            todo[index] = (clip_id, span)
    if not todo:
        return
    wave = load_audio(job.path, SAMPLE_RATE)  # before the slow part: a video without audio fails early
    if settings["crop"] == "auto":
        box = auto_crop(_sample_poses(job.path, num_frames), info.width, info.height)
    else:
        box = fixed_crop(info.width, info.height, settings["crop"])
    for clip_id, span, frames in _stream_pieces(job.path, box, settings["size"], max_frames, todo):
        _finish_clip(job, clip_id, span[0], frames, wave, box, result)


def _frames_at_fps(duration_s: float) -> int:
    """Frames that ``iter_video_frames(path, fps=25)`` yields: round(duration * 25), halves up."""
    # Container durations are exact fractions; recover one from the float so that halves round like the reader.
    return math.floor(Fraction(duration_s).limit_denominator(10**6) * FPS + Fraction(1, 2))


def _sample_poses(path: str, num_frames: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Keypoints of :data:`CROP_SAMPLES` evenly spaced full frames (static detection)."""
    wanted = set(np.linspace(0, num_frames - 1, min(CROP_SAMPLES, num_frames)).round().astype(int).tolist())
    poses = []
    with MediaPipeDetector(static_image_mode=True) as detector:
        frames = iter_video_frames(path, fps=FPS)
        try:
            for index, frame in enumerate(frames):
                if index in wanted:
                    poses.append(detector.detect(frame))
                if index >= max(wanted):
                    break
        finally:
            frames.close()
    return poses


def _stream_pieces(
    path: str, box: CropBox, size: int, max_frames: int | None, todo: dict
) -> Iterator[tuple[str, tuple[int, int], np.ndarray]]:
    """Yield (clip id, (start, stop), (F, size, size, 3) frames) for the pieces in ``todo``, decoding once.

    Only one piece is held in memory; frames of pieces that are not needed are decoded but not cropped.
    """
    buffer: list[np.ndarray] = []
    frames = iter_video_frames(path, fps=FPS)
    try:
        for index, frame in enumerate(frames):
            piece = index // max_frames if max_frames else 0
            if piece not in todo:
                continue
            clip_id, (start, stop) = todo[piece]
            if index >= stop:
                continue  # past a dropped final piece
            buffer.append(box.apply(frame, size))
            if index == stop - 1:
                yield clip_id, (start, stop), np.stack(buffer)
                buffer = []
                del todo[piece]
                if not todo:
                    return
    finally:
        frames.close()
    if todo:
        # The decoder gave fewer frames than the container promised: the file is damaged.
        raise MediaError(f"{path}: decoding ended early (clips {sorted(c for c, _ in todo.values())} incomplete)")


def _finish_clip(
    job: _Job, clip_id: str, start: int, frames: np.ndarray, wave: np.ndarray, box: CropBox, result: _Result
) -> None:
    """Detect keypoints on a cropped piece; write the clip and its record, or a rejection marker."""
    out = Path(job.out_dir)
    # A fresh tracker per clip: a clip's keypoints then do not depend on which other clips were (re)done.
    with MediaPipeDetector(static_image_mode=False) as detector:
        pose = extract_poses(frames, detector, fps=FPS, smooth=job.settings["smooth"])
    share = person_share(pose)
    if share < MIN_PERSON_SHARE:
        reason = f"only {share:.0%} of frames show a face or both shoulders (need {MIN_PERSON_SHARE:.0%})"
        _reject(job, clip_id, start, reason, result)
        return
    # Audio sample i belongs to video frame floor(i * FPS / SAMPLE_RATE): the piece's samples start at its frame.
    first = round(start * SAMPLE_RATE / FPS)
    stop = start + len(frames)
    record = write_clip(
        out,
        clip_id,
        frames=frames,
        wave=wave[first : first + round(len(frames) * SAMPLE_RATE / FPS)],
        sample_rate=SAMPLE_RATE,
        pose=pose,
        split=job.split,
        speaker=job.speaker,
        source=f"{job.rel}#t={start / FPS:.2f},{stop / FPS:.2f}",
        meta={**clip_origin(job.rel, start, job.settings), "crop": box.to_list()},
    )
    mark_done(out, record)
    result.processed += 1


def _reject(job: _Job, name: str, start: int, reason: str, result: _Result) -> None:
    """Record why a clip (or a whole too-short video, ``name`` = its stem) yields no clip."""
    mark_rejected(Path(job.out_dir), name, clip_origin(job.rel, start, job.settings), reason)
    result.rejected.append((name, reason))

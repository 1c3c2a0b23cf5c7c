"""Turn a folder of talking-person videos into an mmgt dataset (``mmgt data preprocess``, spec §8.2-8.3).

Per video: read at 25 fps, choose one square crop (:mod:`mmgt.data.crop`), crop and resize every frame, cut into
clips of at most ``max_seconds``, detect keypoints per clip (MediaPipe Holistic in tracking mode, then smoothed),
attach the 16 kHz audio and write each clip with :func:`~mmgt.data.manifest.write_clip`.

The same machinery cuts clips at given times instead (``mmgt data pats``, :mod:`mmgt.data.pats`): a
:class:`VideoJob` given a list of :class:`Cut` makes one clip per cut, with the cut's own split, and
:func:`run_video_jobs` runs any list of jobs with the same workers, shards and resuming.

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
from collections.abc import Collection, Iterator, Sequence
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
    NO_PERSON,
    PAST_END,
    TOO_SHORT,
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
class Cut:
    """A span of a source video to write as one clip, at most ``max_seconds`` long (see :func:`cut_frames`).

    Attributes:
        clip_id: the clip's id in the dataset.
        start_s, end_s: the span in seconds from the video's first frame (exact fractions, as the table wrote them).
        split: the clip's split.
        meta: extra fields for the clip record's ``meta`` (e.g. the table row it comes from).
    """

    clip_id: str
    start_s: Fraction
    end_s: Fraction
    split: str
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class VideoJob:
    """Everything a worker needs for one source video (picklable).

    Attributes:
        path: absolute input path.
        rel: the video's identity in the records: its path relative to the input folder (POSIX).
        stem: names the video's failure record; without ``cuts`` the clip ids are ``f"{stem}-{piece:03d}"``.
        speaker: speaker of all its clips.
        split: split of its consecutive pieces (``cuts`` carry their own).
        out_dir: the dataset folder.
        settings: what the clip files depend on (:func:`clip_settings`); other settings redo the clips.
        cuts: the clips to cut, or None for consecutive pieces of ``settings["max_seconds"]`` over the whole video.
    """

    path: str
    rel: str
    stem: str
    speaker: str
    split: str
    out_dir: str
    settings: dict
    cuts: tuple[Cut, ...] | None = None


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: the meta dict is not hashable
class _Piece:
    """One clip planned from a video: 25-fps frames [start, stop)."""

    clip_id: str
    start: int
    stop: int
    split: str
    meta: dict


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


def cut_frames(start_s: Fraction, end_s: Fraction, max_frames: int | None) -> tuple[int, int]:
    """[start, stop) frames at 25 fps of the span ``start_s``-``end_s`` (seconds from the video's first frame).

    The first frame is the one whose 1/25-s slot holds ``start_s`` (in a 25-fps source: the source frame shown at
    ``start_s``); the span lasts ``round((end_s - start_s) * 25)`` frames (halves up), at most ``max_frames``.
    Audio is cut at the first frame's time, so sound and picture keep the source's alignment.
    """
    start = math.floor(Fraction(start_s) * FPS)
    count = math.floor((Fraction(end_s) - Fraction(start_s)) * FPS + Fraction(1, 2))
    return start, start + (min(count, max_frames) if max_frames else count)


def plan_pieces(num_frames: int, max_frames: int | None, min_frames: int) -> list[tuple[int, int]]:
    """[start, stop) frame ranges of the clips: consecutive pieces of ``max_frames`` (None: one piece); a final
    piece shorter than ``min_frames`` is dropped (so is the only piece of a too-short video)."""
    step = max_frames or max(num_frames, 1)
    pieces = [(start, min(start + step, num_frames)) for start in range(0, num_frames, step)]
    if pieces and pieces[-1][1] - pieces[-1][0] < min_frames:
        pieces.pop()
    return pieces


def check_run_arguments(
    size: int, max_seconds: float | None, min_seconds: float, workers: int, shard: tuple[int, int]
) -> None:
    """The arguments every run of :func:`run_video_jobs` shares; raises :class:`MmgtError` naming the bad one."""
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


def _check_arguments(
    size: int,
    max_seconds: float | None,
    min_seconds: float,
    workers: int,
    shard: tuple[int, int],
    crop_left: float | None,
    split_ratios: tuple[float, ...],
) -> None:
    check_run_arguments(size, max_seconds, min_seconds, workers, shard)
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
    settings = clip_settings(size, max_seconds, min_seconds, crop_left, smooth)
    jobs = [
        VideoJob(
            path=str(path.resolve()),
            rel=rel,
            stem=stems[rel],
            speaker=speaker_of(rel, root, speaker_from),
            split=assign_split(rel, split_ratios),
            out_dir=str(out),
            settings=settings,
        )
        for path, rel in zip(videos, rels)
    ]
    return run_video_jobs(jobs, out, shard=shard, workers=workers, progress=progress)


def run_video_jobs(
    jobs: Sequence[VideoJob],
    out_dir: str | os.PathLike,
    shard: tuple[int, int] = (0, 1),
    workers: int = 1,
    progress: bool = True,
    clip_ids: Collection[str] | None = None,
) -> PreprocessReport:
    """Process the jobs of one shard into ``out_dir``, then rebuild its manifest from the records of all ``jobs``.

    Args:
        jobs: every source video of the dataset, in a fixed order (the shards are taken from it).
        out_dir: the dataset folder, created or resumed (:func:`~mmgt.data.preprocess_records.open_dataset_dir`).
        shard: (i, n): process only the jobs whose index is i modulo n; shards never overlap.
        workers: parallel processes.
        progress: show a progress bar over videos.
        clip_ids: when given, the manifest holds only these clips (the others' records stay on disk).

    Returns:
        The :class:`PreprocessReport` of this run; its ``records`` are the rebuilt manifest's.
    """
    out = Path(out_dir)
    open_dataset_dir(out)
    report = PreprocessReport()
    for job, result in _run_jobs(list(jobs)[shard[0] :: shard[1]], workers, progress):
        report.processed += result.processed
        report.skipped += result.skipped
        report.rejected += result.rejected
        set_failure(out, job.stem, job.rel, result.failure)
        if result.failure is not None:
            report.failed.append((job.rel, result.failure))
    report.records = rebuild_outputs(out, {job.rel: job.settings for job in jobs}, clip_ids)
    report.failed.sort()
    report.rejected.sort()
    return report


def clip_settings(
    size: int, max_seconds: float | None, min_seconds: float, crop_left: float | None, smooth: bool
) -> dict:
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


def _run_jobs(jobs: list[VideoJob], workers: int, progress: bool) -> Iterator[tuple[VideoJob, _Result]]:
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
def _process_video(job: VideoJob) -> _Result:
    """Process one video; errors of a bad input file are caught and returned as the failure reason."""
    result = _Result()
    try:
        _process(job, result)
    except (MmgtError, av.FFmpegError) as e:
        # Our messages start with the path, which the report already names.
        result.failure = error_summary(e, job.path).removeprefix(f"{job.path}: ")
    return result


def _process(job: VideoJob, result: _Result) -> None:
    settings, out = job.settings, Path(job.out_dir)
    info = probe_video(job.path)
    num_frames = _frames_at_fps(info.duration_s)
    todo = []
    for piece in _plan(job, num_frames, result):
        origin = clip_origin(job.rel, piece.start, settings)
        done, reason = previous_outcome(out, piece.clip_id, origin, piece.stop - piece.start, piece.split, job.speaker)
        if done:
            result.skipped += 1
            if reason is not None:
                result.rejected.append((piece.clip_id, reason))
        else:
            todo.append(piece)
    if not todo:
        return
    wave = load_audio(job.path, SAMPLE_RATE)  # before the slow part: a video without audio fails early
    if settings["crop"] == "auto":
        box = auto_crop(_sample_poses(job.path, num_frames), info.width, info.height)
    else:
        box = fixed_crop(info.width, info.height, settings["crop"])
    for piece, frames in _stream_pieces(job.path, box, settings["size"], todo):
        _finish_clip(job, piece, frames, wave, box, result)


def _plan(job: VideoJob, num_frames: int, result: _Result) -> list[_Piece]:
    """The clips of a video of ``num_frames`` frames at 25 fps; spans that yield no clip are rejected (again on
    every run: they depend on the video's length and the settings, not on the frames)."""
    settings = job.settings
    max_frames = None if settings["max_seconds"] is None else int(settings["max_seconds"] * FPS)
    min_frames = math.ceil(settings["min_seconds"] * FPS - 1e-9)
    if job.cuts is None:
        spans = plan_pieces(num_frames, max_frames, min_frames)
        if not spans:
            reason = f"video lasts {num_frames / FPS:.2f} s, shorter than the {settings['min_seconds']:g} s minimum"
            _reject(job, job.stem, 0, reason, TOO_SHORT, result)
        return [_Piece(f"{job.stem}-{i:03d}", start, stop, job.split, {}) for i, (start, stop) in enumerate(spans)]
    pieces = []
    for cut in job.cuts:
        start, stop = cut_frames(cut.start_s, cut.end_s, max_frames)
        if stop - start < max(min_frames, 1):
            reason = f"interval lasts {float(cut.end_s - cut.start_s):.2f} s, shorter than "
            reason += f"{max(min_frames, 1)} frame(s) ({settings['min_seconds']:g} s minimum)"
            _reject(job, cut.clip_id, start, reason, TOO_SHORT, result)
        elif stop > num_frames:
            reason = f"interval needs the video up to {stop / FPS:.2f} s, past its end ({num_frames / FPS:.2f} s)"
            _reject(job, cut.clip_id, start, reason, PAST_END, result)
        else:
            pieces.append(_Piece(cut.clip_id, start, stop, cut.split, cut.meta))
    return pieces


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


def _stream_pieces(path: str, box: CropBox, size: int, pieces: list[_Piece]) -> Iterator[tuple[_Piece, np.ndarray]]:
    """Yield (piece, (F, size, size, 3) frames) for each piece as its last frame is decoded, decoding once.

    Pieces may overlap. Only the pieces under way are held in memory; frames that no piece needs are decoded but
    not cropped, and decoding stops after the last piece.
    """
    waiting = sorted(pieces, key=lambda p: (p.start, p.stop, p.clip_id))[::-1]  # next piece to start at the end
    active: dict[_Piece, list[np.ndarray]] = {}
    frames = iter_video_frames(path, fps=FPS)
    try:
        for index, frame in enumerate(frames):
            while waiting and waiting[-1].start <= index:
                active[waiting.pop()] = []
            if not active:
                continue
            cropped = box.apply(frame, size)
            for piece in list(active):
                active[piece].append(cropped)
                if index == piece.stop - 1:
                    yield piece, np.stack(active.pop(piece))
            if not active and not waiting:
                return
    finally:
        frames.close()
    # The decoder gave fewer frames than the container promised: the file is damaged.
    incomplete = sorted(p.clip_id for p in [*active, *waiting])
    raise MediaError(f"{path}: decoding ended early (clips {incomplete} incomplete)")


def _finish_clip(
    job: VideoJob, piece: _Piece, frames: np.ndarray, wave: np.ndarray, box: CropBox, result: _Result
) -> None:
    """Detect keypoints on a cropped piece; write the clip and its record, or a rejection marker."""
    out, start, stop = Path(job.out_dir), piece.start, piece.stop
    # A fresh tracker per clip: a clip's keypoints then do not depend on which other clips were (re)done.
    with MediaPipeDetector(static_image_mode=False) as detector:
        pose = extract_poses(frames, detector, fps=FPS, smooth=job.settings["smooth"])
    share = person_share(pose)
    if share < MIN_PERSON_SHARE:
        reason = f"only {share:.0%} of frames show a face or both shoulders (need {MIN_PERSON_SHARE:.0%})"
        _reject(job, piece.clip_id, start, reason, NO_PERSON, result)
        return
    # Audio sample i belongs to video frame floor(i * FPS / SAMPLE_RATE): the piece's samples start at its frame.
    first = round(start * SAMPLE_RATE / FPS)
    record = write_clip(
        out,
        piece.clip_id,
        frames=frames,
        wave=wave[first : first + round(len(frames) * SAMPLE_RATE / FPS)],
        sample_rate=SAMPLE_RATE,
        pose=pose,
        split=piece.split,
        speaker=job.speaker,
        source=f"{job.rel}#t={start / FPS:.2f},{stop / FPS:.2f}",
        meta={**clip_origin(job.rel, start, job.settings), "crop": box.to_list(), **piece.meta},
    )
    mark_done(out, record)
    result.processed += 1


def _reject(job: VideoJob, name: str, start: int, reason: str, kind: str, result: _Result) -> None:
    """Record why a clip (or a whole too-short video, ``name`` = its stem) yields no clip."""
    mark_rejected(Path(job.out_dir), name, clip_origin(job.rel, start, job.settings), reason, kind)
    result.rejected.append((name, reason))

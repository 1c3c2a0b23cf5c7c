"""The video metrics of a folder of generated videos against their real clips, from Python: :func:`score_videos`
(the numbers) and :func:`video_report` (the whole report ``mmgt eval video`` writes).

The real clips are an mmgt dataset folder (one split of its ``manifest.jsonl``) or a plain folder of videos (see
:func:`mmgt.evaluation.video_eval.folder_clips`); generated videos are named ``<clip id>.<suffix>``. This module lives
in the training layer because it reads dataset manifests (``mmgt.data``), which the evaluation layer may not.

Example (a faster pipeline checking that its output still scores the same)::

    from mmgt.evaluation.video_eval import VideoEvalOptions
    from mmgt.training.validate_video import score_videos

    metrics = score_videos("data/synth", "out/fast", num_clips=16, options=VideoEvalOptions(fid_stride=4))
    metrics["fid"], metrics["fvd"], metrics["psnr"]
"""

from __future__ import annotations

import os
from pathlib import Path

from mmgt.data.id_list import read_test_ids, select_listed
from mmgt.data.manifest import read_manifest
from mmgt.errors import MmgtError
from mmgt.evaluation.report import Report
from mmgt.evaluation.video_eval import (
    VideoEvalOptions,
    check_generated_ids,
    check_weights,
    evaluate_videos,
    folder_clips,
    pair_clips,
)


def is_dataset(real: str | os.PathLike) -> bool:
    """Whether ``real`` is an mmgt dataset folder (it has a ``manifest.jsonl``)."""
    return (Path(real) / "manifest.jsonl").is_file()


def real_clips(
    real: str | os.PathLike, split: str = "test", key: str = "real", ids: str | os.PathLike | None = None
) -> list[tuple[str, Path, Path]]:
    """(clip id, video, audio) of every real clip: a dataset's ``split`` in manifest order, or a folder's videos.

    Args:
        real: an mmgt dataset folder or a folder of videos.
        split: the dataset split (ignored for a plain folder).
        key: how errors name the argument (e.g. ``--real``).
        ids: an id list (``test_ids.txt`` of ``mmgt data pats``): only its clips, all of which must be in the split
            with the listed frame counts (a dataset only).

    Raises:
        MmgtError: the folder is missing, the split has no clips, the folder holds no video, an id list is given for
            a plain folder, or a listed clip is absent or cut differently.
    """
    real = Path(real)
    if not real.is_dir():
        raise MmgtError(f"{key} {real}: folder not found")
    if not is_dataset(real):
        if ids is not None:
            raise MmgtError(f"an id list needs {key} to be an mmgt dataset folder (manifest.jsonl), got {real}")
        return folder_clips(real)
    records = read_manifest(real, split)
    if not records:
        raise MmgtError(f"{key} {real}: no clips in split {split!r}")
    if ids is not None:
        records = select_listed(records, read_test_ids(ids), f"the {split} split of {real}")
    return [(r.id, r.path(real, "video"), r.path(real, "audio")) for r in records]


def video_report(
    real: str | os.PathLike,
    generated: str | os.PathLike,
    *,
    split: str = "test",
    num_clips: int | None = None,
    ids: str | os.PathLike | None = None,
    options: VideoEvalOptions | None = None,
    inputs: dict | None = None,
) -> Report:
    """Score the generated videos against the first ``num_clips`` real clips and return the full report (nothing is
    written; :func:`mmgt.evaluation.report.write_report` writes it).

    Args:
        real: an mmgt dataset folder (its ``split``) or a folder of real videos.
        generated: a folder of ``<clip id>.mp4`` (every selected real clip needs one).
        split: the dataset split.
        num_clips: only the first N real clips (None: all).
        ids: only the clips of this id list (:func:`real_clips`).
        options: stages, weight files, protocol (default: every stage, packaged weights, progress bars).
        inputs: more facts to record among the report's inputs (e.g. the model that generated the videos).

    Raises:
        MmgtError: bad input (no clips, ids that do not match, unreadable videos, different fps or sizes) or a weight
            file with the wrong checksum or layout; checked before the long work where possible.
    """
    options = options or VideoEvalOptions()
    if num_clips is not None and num_clips < 1:
        raise MmgtError(f"num_clips must be >= 1, got {num_clips}")
    reals = real_clips(real, split)
    check_generated_ids(reals, generated)  # against the whole split: an id list may pick a part of a generated set
    listed = None if ids is None else {clip_id for clip_id, _, _ in real_clips(real, split, ids=ids)}
    check_weights(options)
    recorded = {"real": str(real), "generated": str(generated), **(inputs or {})}
    if is_dataset(real):
        recorded["split"] = split
    if ids is not None:
        recorded["ids"] = str(ids)
    return evaluate_videos(pair_clips(reals, generated, num_clips, listed), options, recorded)


def score_videos(
    real: str | os.PathLike,
    generated: str | os.PathLike,
    *,
    split: str = "test",
    num_clips: int | None = None,
    ids: str | os.PathLike | None = None,
    options: VideoEvalOptions | None = None,
) -> dict[str, float]:
    """The generated set's value of every metric that ran, by key (``fid``, ``fvd``, ``psnr``, ``ssim``, ``lpips``,
    ``sync_c``, ``sync_d``, ``hkc``, ``hkv``, ``lip_sync``, ``beat_align``, ``diversity``, ``fgd``; the keys of
    :data:`mmgt.evaluation.report.METRICS`). Skipped metrics (missing weight files) are absent.

    Arguments and errors as :func:`video_report`, whose :class:`~mmgt.evaluation.report.Report` also holds the real
    set's self-reference, per-clip values, weight checksums and timings.
    """
    report = video_report(real, generated, split=split, num_clips=num_clips, ids=ids, options=options)
    return {m.key: m.values["generated"] for m in report.metrics}

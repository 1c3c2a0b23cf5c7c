"""Validation of a dataset folder (``mmgt data check``)."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from mmgt.constants import VISIBILITY_THRESHOLD
from mmgt.contracts import PoseSequence
from mmgt.data.manifest import ClipRecord, read_manifest
from mmgt.errors import MediaError
from mmgt.pose.detect import person_visible
from mmgt.utils.files import sha256_file
from mmgt.utils.video_io import probe_video

# A clip fails (and `mmgt data preprocess` rejects it) if fewer than this share of its frames show a person.
MIN_PERSON_SHARE = 0.5


@dataclass
class CheckReport:
    """Per-clip problems and dataset totals."""

    records: list[ClipRecord]
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        """A plain-text summary table: clips, frames and hours per split; speakers; problems."""
        rows = [("split", "clips", "frames", "hours", "speakers", "bad clips")]
        for split in sorted({r.split for r in self.records}):
            recs = [r for r in self.records if r.split == split]
            bad = sum(1 for r in recs if r.id in self.problems)
            frames = sum(r.num_frames for r in recs)
            hours = sum(r.duration_s for r in recs) / 3600
            rows.append((split, len(recs), frames, f"{hours:.3f}", len({r.speaker for r in recs}), bad))
        total_frames = sum(r.num_frames for r in self.records)
        rows.append(
            (
                "all",
                len(self.records),
                total_frames,
                f"{sum(r.duration_s for r in self.records) / 3600:.3f}",
                len({r.speaker for r in self.records}),
                len(self.problems),
            )
        )
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(str(v).rjust(w) for v, w in zip(row, widths)) for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        sizes = Counter(f"{r.width}x{r.height}@{r.fps:g}" for r in self.records)
        lines.append("sizes: " + ", ".join(f"{k} ({v})" for k, v in sizes.most_common()))
        for clip_id, msgs in sorted(self.problems.items()):
            lines.extend(f"{clip_id}: {m}" for m in msgs)
        return "\n".join(lines)


def person_share(pose: PoseSequence) -> float:
    """Share of frames showing a person (:func:`mmgt.pose.detect.person_visible`); 0 for no frames."""
    return float(np.mean(person_visible(pose))) if pose.num_frames else 0.0


def _check_keypoints(root: Path, rec: ClipRecord, out: list[str]) -> None:
    try:
        pose = PoseSequence.load(rec.path(root, "keypoints"))
    except MediaError as e:
        out.append(str(e))
        return
    if pose.num_frames != rec.num_frames:
        out.append(f"keypoints have {pose.num_frames} frames, record says {rec.num_frames}")
    if (pose.width, pose.height) != (rec.width, rec.height):
        out.append(f"keypoints are for {pose.width}x{pose.height}, video is {rec.width}x{rec.height}")
    share = person_share(pose)
    if share < MIN_PERSON_SHARE:
        out.append(f"only {share:.0%} of frames show a person (a shoulder or half of the face)")
    xy = pose.keypoints[pose.visible(VISIBILITY_THRESHOLD)]
    margin = 0.25 * max(rec.width, rec.height)  # detections may sit slightly off-canvas; far away means bad data
    if len(xy) and (xy.min() < -margin or xy[:, 0].max() > rec.width + margin or xy[:, 1].max() > rec.height + margin):
        out.append("visible keypoints lie far outside the image")


def check_clip(root: str | os.PathLike, rec: ClipRecord, checksums: bool = True) -> list[str]:
    """Problems of one clip (empty list = valid)."""
    root, out = Path(root), []
    for kind in ("video", "audio", "keypoints"):
        path = rec.path(root, kind)
        if not path.is_file():
            out.append(f"missing {kind} file {getattr(rec, kind)}")
        elif checksums and kind in rec.sha256 and sha256_file(path) != rec.sha256[kind]:
            out.append(f"{kind} checksum mismatch ({getattr(rec, kind)})")
    if out:
        return out
    frame_s = 1.0 / rec.fps
    try:
        info = probe_video(rec.path(root, "video"))
        if info.num_frames != rec.num_frames:
            out.append(f"video has {info.num_frames} frames, record says {rec.num_frames}")
        if (info.width, info.height) != (rec.width, rec.height):
            out.append(f"video is {info.width}x{info.height}, record says {rec.width}x{rec.height}")
        if abs(info.fps - rec.fps) > 1e-3:
            out.append(f"video is {info.fps:g} fps, record says {rec.fps:g}")
    except MediaError as e:
        out.append(str(e))
    try:
        audio = sf.info(str(rec.path(root, "audio")))
        if audio.samplerate != rec.sample_rate or audio.channels != 1:
            out.append(f"audio is {audio.samplerate} Hz x {audio.channels} ch, expected {rec.sample_rate} Hz mono")
        if abs(audio.frames / audio.samplerate - rec.num_frames * frame_s) > frame_s:
            out.append(f"audio lasts {audio.frames / audio.samplerate:.3f} s, video {rec.num_frames * frame_s:.3f} s")
    except RuntimeError as e:
        out.append(f"unreadable audio {rec.audio} ({str(e).splitlines()[0]})")
    _check_keypoints(root, rec, out)
    return out


def check_dataset(dataset_dir: str | os.PathLike, checksums: bool = True) -> CheckReport:
    """Validate every clip of a dataset: files present, checksums, frame/audio lengths, keypoint sanity."""
    records = read_manifest(dataset_dir)
    report = CheckReport(records)
    if not records:
        report.problems["<dataset>"].append("manifest has no clips")
    for rec in records:
        problems = check_clip(dataset_dir, rec, checksums=checksums)
        if problems:
            report.problems[rec.id].extend(problems)
    return report

"""The mmgt dataset format: one folder, a ``manifest.jsonl`` of clip records, and per-clip files.

Layout (documented in ``docs/data.md``)::

    DATASET/
      manifest.jsonl          one JSON record per clip (ClipRecord), sorted by id
      clips/<id>.mp4          H.264 video, 25 fps, square
      clips/<id>.wav          16 kHz mono PCM
      clips/<id>.npz          keypoints in the 134 layout (PoseSequence schema)
      features/...            optional cached features (FeatureCache)

Masks are never stored: they are derived from the keypoints by :func:`mmgt.pose.masks.branch_masks`.
"""

from __future__ import annotations

import functools
import json
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from mmgt.constants import FPS, SAMPLE_RATE
from mmgt.contracts import PoseSequence
from mmgt.errors import MediaError
from mmgt.utils.audio_io import save_audio
from mmgt.utils.files import atomic_output, sha256_file
from mmgt.utils.video_writer import save_video

MANIFEST_NAME = "manifest.jsonl"
MANIFEST_VERSION = 1
SPLITS = ("train", "val", "test")


@dataclass
class ClipRecord:
    """One clip of a dataset. Paths are relative to the dataset folder.

    Every field is checked against its annotation when a record is made (a ValueError names the field), so a
    hand-edited manifest fails on reading, not later.
    """

    id: str
    split: str
    speaker: str
    fps: float
    num_frames: int
    duration_s: float
    width: int
    height: int
    sample_rate: int
    video: str
    audio: str
    keypoints: str
    sha256: dict[str, str] = field(default_factory=dict)
    features: dict[str, str] = field(default_factory=dict)
    source: str | None = None
    meta: dict = field(default_factory=dict)
    version: int = MANIFEST_VERSION

    def __post_init__(self) -> None:
        hints = _field_types()
        for name in (f.name for f in fields(self)):
            value = getattr(self, name)
            if not _matches(value, hints[name]):
                kind = getattr(hints[name], "__name__", str(hints[name]))
                raise ValueError(f"clip {self.id}: {name} must be {kind}, got {type(value).__name__} {value!r}")
        if self.split not in SPLITS:
            raise ValueError(f"clip {self.id}: split must be one of {SPLITS}, got {self.split!r}")

    def path(self, root: str | os.PathLike, kind: str) -> Path:
        """Absolute path of this clip's ``kind`` file ("video", "audio" or "keypoints")."""
        return Path(root) / getattr(self, kind)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> ClipRecord:
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"clip record {d.get('id', '?')}: unknown fields {sorted(unknown)}")
        return cls(**d)


@functools.cache
def _field_types() -> dict:
    return typing.get_type_hints(ClipRecord)


def _matches(value, hint) -> bool:
    """``isinstance`` for :class:`ClipRecord`'s annotations (``str``, ``int``, ``float``, ``dict[...]``, ``X | None``);
    an int is a float too, a bool is neither."""
    if isinstance(hint, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    kind = typing.get_origin(hint) or hint
    if kind in (int, float) and isinstance(value, bool):
        return False
    return isinstance(value, (int, float) if kind is float else kind)


def clip_paths(clip_id: str) -> dict[str, str]:
    """Relative file paths of a clip, by kind."""
    return {"video": f"clips/{clip_id}.mp4", "audio": f"clips/{clip_id}.wav", "keypoints": f"clips/{clip_id}.npz"}


def write_clip(
    dataset_dir: str | os.PathLike,
    clip_id: str,
    *,
    frames: np.ndarray,
    wave: np.ndarray,
    sample_rate: int,
    pose: PoseSequence,
    split: str,
    speaker: str,
    fps: float = FPS,
    source: str | None = None,
    meta: dict | None = None,
    video_options: dict | None = None,
) -> ClipRecord:
    """Write one clip's files atomically and return its record (the manifest is written separately).

    Args:
        frames: (F, H, W, 3) uint8 RGB video frames.
        wave: (N,) float32 mono audio at ``sample_rate`` (resampled to 16 kHz when different).
        pose: keypoints for the same F frames, in pixels of the video size.
        video_options: extra :class:`mmgt.utils.video_writer.VideoWriter` settings (e.g. ``{"preset": "veryfast"}``).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"clip {clip_id}: frames must be (F, H, W, 3), got {frames.shape}")
    if pose.num_frames != len(frames):
        raise ValueError(f"clip {clip_id}: {len(frames)} video frames but {pose.num_frames} pose frames")
    root = Path(dataset_dir)
    rel = clip_paths(clip_id)
    if sample_rate != SAMPLE_RATE:
        from mmgt.utils.audio_io import resample

        wave, sample_rate = resample(wave, sample_rate, SAMPLE_RATE), SAMPLE_RATE
    # Audio length is made frame-exact: N frames <-> N / fps seconds.
    num_samples = round(len(frames) * sample_rate / fps)
    wave = np.pad(np.asarray(wave, np.float32)[:num_samples], (0, max(0, num_samples - len(wave))))
    save_video(root / rel["video"], frames, fps=fps, audio=wave, sample_rate=sample_rate, **(video_options or {}))
    save_audio(root / rel["audio"], wave, sample_rate)
    pose.save(root / rel["keypoints"])
    height, width = frames.shape[1:3]
    return ClipRecord(
        id=clip_id,
        split=split,
        speaker=speaker,
        fps=float(fps),
        num_frames=len(frames),
        duration_s=len(frames) / fps,
        width=int(width),
        height=int(height),
        sample_rate=int(sample_rate),
        sha256={kind: sha256_file(root / p) for kind, p in rel.items()},
        source=source,
        meta=dict(meta or {}),
        **rel,
    )


def write_manifest(dataset_dir: str | os.PathLike, records: list[ClipRecord]) -> Path:
    """Write ``manifest.jsonl`` atomically, one record per line, sorted by id; duplicate ids raise."""
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"duplicate clip ids in manifest: {dupes[:5]}")
    path = Path(dataset_dir) / MANIFEST_NAME
    with atomic_output(path) as tmp:
        tmp.write_text("".join(r.to_json() + "\n" for r in sorted(records, key=lambda r: r.id)))
    return path


def read_manifest(dataset_dir: str | os.PathLike, split: str | None = None) -> list[ClipRecord]:
    """Records of a dataset (optionally one split). Raises :class:`MediaError` naming the file and line on errors."""
    path = Path(dataset_dir) / MANIFEST_NAME
    if not path.is_file():
        raise MediaError(f"{path}: dataset manifest not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise MediaError(f"{path}: not a UTF-8 text file (byte {e.start} cannot be decoded)") from e
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(ClipRecord.from_dict(json.loads(line)))
        except (json.JSONDecodeError, TypeError, ValueError) as e:
            raise MediaError(f"{path}:{lineno}: bad clip record ({e})") from e
    if split is not None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        records = [r for r in records if r.split == split]
    return records

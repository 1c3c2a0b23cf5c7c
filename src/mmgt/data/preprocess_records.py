"""The resumable state of ``mmgt data preprocess``: what is done, rejected or failed, kept in ``DATASET/records/``.

- ``records/<id>.json``: the clip record of a finished clip, written after its files;
- ``records/rejected/<name>.json``: why a clip (or a whole too-short video) yields no clip, and the kind of reason
  (:data:`NO_PERSON` is not retried; :data:`TOO_SHORT` and :data:`PAST_END` are decided again on every run);
- ``records/failed/<stem>.json``: why a video could not be read; retried on every run.

Earlier work counts only for the same *origin*: source video, first frame and processing settings
(:func:`clip_origin`). The manifest and ``preprocess_report.json`` are rebuilt from this folder at the end of every
run (:func:`rebuild_outputs`), so interrupted runs and shards writing into one folder merge.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import asdict, replace
from pathlib import Path

from mmgt.data.manifest import MANIFEST_NAME, ClipRecord, write_manifest
from mmgt.errors import MmgtError
from mmgt.utils.files import atomic_output, make_output_dir, sha256_file

RECORDS_DIR = "records"
REPORT_NAME = "preprocess_report.json"

# Kinds of rejection. Only a content rejection is reused by later runs: the other two follow from the video's length
# and the settings, which every run checks before it looks at earlier work.
NO_PERSON = "no_person"  # too few frames show a person
TOO_SHORT = "too_short"  # the video (or the table's interval) is shorter than the minimum
PAST_END = "past_end"  # the table's interval reaches past the end of the video
_DECIDED_EACH_RUN = {TOO_SHORT, PAST_END}


def open_dataset_dir(out: Path) -> None:
    """Create the dataset folder ``out`` (and its records folder), or check that an existing one can be resumed.

    Raises:
        MmgtError: ``out`` holds files but no ``records/`` folder (another dataset, e.g. a synthetic one, or unrelated
            files), or it cannot be created or written.
    """
    if out.is_dir() and any(out.iterdir()) and not (out / RECORDS_DIR).is_dir():
        what = "a dataset not made by `mmgt data preprocess`" if (out / MANIFEST_NAME).exists() else "other files"
        raise MmgtError(f"{out}: folder holds {what} (no {RECORDS_DIR}/ folder); choose a new or empty folder")
    make_output_dir(out)
    (out / RECORDS_DIR).mkdir(exist_ok=True)  # marks the folder as ours from the start (see above)


def clip_origin(source_path: str, start_frame: int, settings: dict) -> dict:
    """Where a clip comes from: kept in its record's ``meta`` and in its rejection marker, compared on resume.

    Args:
        source_path: the video's path relative to the input folder (POSIX).
        start_frame: the clip's first frame at 25 fps.
        settings: what the clip files depend on (size, crop, ...); other settings redo the clip.
    """
    return {"source_path": source_path, "start_frame": start_frame, "preprocess": settings}


def previous_outcome(
    out: Path, clip_id: str, origin: dict, num_frames: int, split: str, speaker: str
) -> tuple[bool, str | None]:
    """(done, rejection reason) of a clip: done if a record of the same origin with intact files, or a rejection of
    the same origin, exists. A done clip whose split or speaker changed gets its record rewritten (files unchanged).
    """
    record = _read_record(_record_path(out, clip_id))
    if record is not None and _record_is_current(out, record, origin, num_frames):
        if (record.split, record.speaker) != (split, speaker):
            # Split ratios or speaker naming changed: only the record changes, not the files.
            _write_json(_record_path(out, clip_id), asdict(replace(record, split=split, speaker=speaker)))
        return True, None
    marker = _read_json(_rejected_path(out, clip_id))
    if marker is not None and marker.get("kind") not in _DECIDED_EACH_RUN and _same_origin(marker, origin):
        return True, str(marker.get("reason"))
    return False, None


def mark_done(out: Path, record: ClipRecord) -> None:
    """Record a clip whose files are written: from here on it counts as done."""
    _write_json(_record_path(out, record.id), json.loads(record.to_json()))
    _rejected_path(out, record.id).unlink(missing_ok=True)


def mark_rejected(out: Path, name: str, origin: dict, reason: str, kind: str = NO_PERSON) -> None:
    """Record why a clip (or a whole too-short video, ``name`` = its stem) yields no clip, and the ``kind`` of
    reason (:data:`NO_PERSON`, :data:`TOO_SHORT` or :data:`PAST_END`)."""
    _write_json(_rejected_path(out, name), {**origin, "reason": reason, "kind": kind})


def set_failure(out: Path, stem: str, source_path: str, failure: str | None) -> None:
    """Remember why a video failed (for the merged report), or forget an old failure once it succeeds."""
    if failure is None:
        _failed_path(out, stem).unlink(missing_ok=True)
    else:
        _write_json(_failed_path(out, stem), {"source_path": source_path, "reason": failure})


def rebuild_outputs(
    out: Path, current: Mapping[str, dict], clip_ids: Collection[str] | None = None
) -> list[ClipRecord]:
    """Write the manifest and the report from every record and marker of the current inputs and settings.

    Args:
        out: the dataset folder.
        current: relative path of each current input video -> the settings its clips must have been made with
            (records and markers of other videos or settings are ignored).
        clip_ids: when given, only these clips (and their rejection markers) count.

    Returns:
        The manifest's clip records, sorted by id.
    """

    def wanted(name: str, origin: dict) -> bool:
        source = origin.get("source_path")
        named = clip_ids is None or name in clip_ids
        return named and source in current and origin.get("preprocess") == current[source]

    records = []
    for path in sorted((out / RECORDS_DIR).glob("*.json")):
        record = _read_record(path)
        if record is not None and wanted(record.id, record.meta):
            records.append(record)
    write_manifest(out, records)
    failed = [_read_json(p) for p in sorted((out / RECORDS_DIR / "failed").glob("*.json"))]
    rejected = [(p.stem, _read_json(p)) for p in sorted((out / RECORDS_DIR / "rejected").glob("*.json"))]
    distinct = [json.loads(text) for text in sorted({json.dumps(s, sort_keys=True) for s in current.values()})]
    report = {
        "clips": len(records),
        "settings": distinct[0] if len(distinct) == 1 else distinct,
        "failed": [{"path": d["source_path"], "reason": d["reason"]} for d in failed if _current(d, current)],
        "rejected": [
            {"clip": name, "path": d["source_path"], "reason": d["reason"], "kind": d.get("kind", NO_PERSON)}
            for name, d in rejected
            if _current(d, current) and wanted(name, d)
        ],
    }
    _write_json(out / REPORT_NAME, report)
    return sorted(records, key=lambda r: r.id)


def _record_path(out: Path, clip_id: str) -> Path:
    return out / RECORDS_DIR / f"{clip_id}.json"


def _rejected_path(out: Path, name: str) -> Path:
    return out / RECORDS_DIR / "rejected" / f"{name}.json"


def _failed_path(out: Path, stem: str) -> Path:
    return out / RECORDS_DIR / "failed" / f"{stem}.json"


def _write_json(path: Path, data: dict) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, sort_keys=True, indent=1) + "\n")


def _read_json(path: Path) -> dict | None:
    """The JSON object in ``path``, or None if the file is missing or unreadable (then the work is redone)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_record(path: Path) -> ClipRecord | None:
    """The clip record in ``path``, or None if it is missing or not a valid record."""
    data = _read_json(path)
    try:
        return ClipRecord.from_dict(data) if data is not None else None
    except (TypeError, ValueError):
        return None


def _same_origin(data: dict, origin: dict) -> bool:
    """``data`` (record meta or rejection marker) has this :func:`clip_origin`."""
    return all(data.get(key) == value for key, value in origin.items())


def _record_is_current(out: Path, record: ClipRecord, origin: dict, num_frames: int) -> bool:
    """The record has this origin and length, and all its files match their checksums."""
    if not _same_origin(record.meta, origin) or record.num_frames != num_frames:
        return False
    for kind in ("video", "audio", "keypoints"):
        path = record.path(out, kind)
        if kind not in record.sha256 or not path.is_file() or sha256_file(path) != record.sha256[kind]:
            return False
    return True


def _current(marker: dict | None, source_paths: Collection[str]) -> bool:
    """A marker that names one of the current input videos (markers of removed videos are ignored)."""
    return marker is not None and marker.get("source_path") in source_paths and "reason" in marker

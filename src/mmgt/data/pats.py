"""PATS the way the papers use it (``mmgt data pats``, spec §8.1-8.2): interval table -> clips with the table's
split, an availability report and the frozen list of test clips.

Inputs (docs/data.md, "PATS"):

* ``cmu_intervals_df.csv`` from PATS's release: one row per interval with the columns ``interval_id``, ``speaker``,
  ``video_link``, ``start_time``, ``end_time`` and ``dataset`` (train / dev / test); other columns are ignored.
* optionally ``filtered_intervals.json`` from S2G-MDDiffusion's repository: ``{"train": [ids], "test": [ids]}``, the
  interval ids the papers use and their split (it then decides the split, not the csv).
* a folder of source videos, found by a naming template (:data:`DEFAULT_VIDEO_NAME`).

Each requested interval becomes a :class:`~mmgt.data.preprocess.Cut` of its source video, and the source videos
run through :func:`~mmgt.data.preprocess.run_video_jobs`: cutting, the crop, keypoints, resuming, workers, shards
and the handling of bad files are those of ``mmgt data preprocess``.
"""

from __future__ import annotations

import json
import os
import re
import string
import urllib.parse
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

from mmgt.data.id_list import write_test_ids
from mmgt.data.manifest import SPLITS, ClipRecord
from mmgt.data.preprocess import (
    Cut,
    PreprocessReport,
    VideoJob,
    check_run_arguments,
    clip_settings,
    clip_stems,
    run_video_jobs,
)
from mmgt.data.preprocess_records import PAST_END, REPORT_NAME
from mmgt.errors import MediaError, MmgtError
from mmgt.utils.files import atomic_output, sha256_file
from mmgt.utils.video_io import VIDEO_SUFFIXES

# The four speakers of S2G-MDDiffusion and MMGT (spec §8.2).
PAPER_SPEAKERS = ("chemistry", "oliver", "jon", "seth")
# The square crop's left edge as a fraction of the frame width (spec §8.2; 1 = right-aligned). Other speakers get
# the automatic crop of `mmgt data preprocess` unless --crop-left names them.
CROP_LEFT = {"seth": 0.395, "oliver": 0.38, "chemistry": 0.031, "jon": 1.0}
# Where a source video lies under the videos folder, without its suffix (any of VIDEO_SUFFIXES is found).
# Placeholders: {speaker}, {video_id} (see video_id()), {video_fn} (the csv's video_fn without its suffix).
DEFAULT_VIDEO_NAME = "{speaker}/{video_id}"
AVAILABILITY_NAME = "availability.json"
TEST_IDS_NAME = "test_ids.txt"
FETCH_REPORT_NAME = "fetch_report.json"  # written into the videos folder by `mmgt data fetch-pats`

# Availability of a requested interval, in the order of the report's columns.
FOUND = "found"
NO_SOURCE = "no_source"  # no source video under the videos folder
PAST_THE_END = "past_end"  # the interval reaches past the end of its source video
UNREADABLE = "unreadable"  # the source video could not be read (or several files could be it)
REJECTED = "rejected"  # cut, but dropped for its content (no person) or too short
PENDING = "pending"  # the source video is there but no run has processed it yet (another shard)
NOT_IN_TABLE = "not_in_table"  # in the ids file but not in the interval table
STATUSES = (FOUND, NO_SOURCE, PAST_THE_END, UNREADABLE, REJECTED, PENDING, NOT_IN_TABLE)
UNKNOWN_SPEAKER = "?"  # the speaker of an id that is not in the table

_CSV_SPLITS = {"train": "train", "dev": "val", "val": "val", "test": "test"}  # PATS calls its validation set "dev"
_REQUIRED_COLUMNS = ("interval_id", "speaker", "video_link", "start_time", "end_time")
_TIME = re.compile(
    r"(?:(?P<days>\d+) days? )?"  # pandas' timedelta text
    r"(?:\d{4}-\d{2}-\d{2}[ T])?"  # a date-time: the time of day is the offset
    r"(?:(?P<hours>\d+):)?(?P<minutes>\d+):(?P<seconds>\d+(?:\.\d*)?)"
)


@dataclass(frozen=True)
class Interval:
    """One row of the interval table.

    Attributes:
        interval_id: PATS's id (a string; S2G-MDDiffusion writes the numeric ones as JSON numbers).
        speaker: PATS's speaker name.
        video_link: the source video's link.
        start_s, end_s: the interval in seconds from the start of the source video, exactly as written.
        split: ``train``, ``val`` or ``test`` (PATS's ``dev`` is ``val``); None if the table has no split column.
        video_fn: the table's ``video_fn`` (may be empty).
    """

    interval_id: str
    speaker: str
    video_link: str
    start_s: Fraction
    end_s: Fraction
    split: str | None
    video_fn: str = ""

    @property
    def clip_id(self) -> str:
        """The clip's id in the dataset: ``<speaker>-<interval_id>``, made safe for file names."""
        return re.sub(r"[^A-Za-z0-9._-]", "_", f"{self.speaker}-{self.interval_id}")


@dataclass
class PatsReport:
    """Outcome of :func:`build_pats_dataset`.

    Attributes:
        run: what this run processed (:class:`~mmgt.data.preprocess.PreprocessReport`; its records are the manifest).
        availability: the content of ``availability.json``.
        test_ids: the test clips present, as written to ``test_ids.txt``.
    """

    run: PreprocessReport
    availability: dict
    test_ids: list[ClipRecord] = field(default_factory=list)

    def table(self) -> str:
        """The availability per speaker and split as a plain-text table (the last row sums all)."""
        return availability_table(self.availability)


# ---------------------------------------------------------------------------------------------------------------------
# The two tables
# ---------------------------------------------------------------------------------------------------------------------
def parse_time(text: str) -> Fraction:
    """Seconds in a time stamp of the interval table, as an exact fraction.

    Accepts ``H:MM:SS.ffffff`` (and ``MM:SS``), a date-time whose time of day is the offset
    (``2016-01-01 00:01:23.45``), pandas' timedelta text (``0 days 00:01:23.45``) and plain seconds (``83.45``).

    Raises:
        MmgtError: none of these forms.
    """
    text = text.strip()
    if re.fullmatch(r"\d+(?:\.\d*)?", text):
        return Fraction(text)
    match = _TIME.fullmatch(text)
    if match is None:
        raise MmgtError(f"not a time stamp: {text!r} (expected e.g. 0:01:23.45 or 83.45)")
    days, hours = int(match["days"] or 0), int(match["hours"] or 0)
    return ((days * 24 + hours) * 60 + int(match["minutes"])) * 60 + Fraction(match["seconds"])


def read_intervals(path: str | os.PathLike) -> list[Interval]:
    """The rows of PATS's ``cmu_intervals_df.csv`` (or any csv with the same columns), in file order.

    Raises:
        MediaError: the file is missing or unreadable.
        MmgtError: a required column is missing, or a row has a bad time, an end before its start, an unknown
            split or a repeated interval id (the message names the line).
    """
    import csv

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: interval table not found" if not path.exists() else f"{path}: not a file")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
            columns = set(rows[0]) if rows else set()
    except (UnicodeDecodeError, csv.Error) as e:
        raise MediaError(f"{path}: not a readable csv file ({e})") from e
    missing = [c for c in _REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise MmgtError(f"{path}: no column(s) {', '.join(missing)} (expected PATS's cmu_intervals_df.csv layout)")
    intervals, seen = [], set()
    for lineno, row in enumerate(rows, 2):  # line 1 is the header
        where = f"{path}:{lineno}"
        try:
            start, end = parse_time(row["start_time"]), parse_time(row["end_time"])
        except MmgtError as e:
            raise MmgtError(f"{where}: {e}") from None
        if end < start:
            raise MmgtError(f"{where}: end_time {row['end_time']} is before start_time {row['start_time']}")
        split = None
        if "dataset" in columns:
            split = _CSV_SPLITS.get(row["dataset"].strip())
            if split is None:
                raise MmgtError(f"{where}: dataset must be one of {sorted(_CSV_SPLITS)}, got {row['dataset']!r}")
        interval_id = row["interval_id"].strip()
        if interval_id in seen:
            raise MmgtError(f"{where}: interval {interval_id} appears twice")
        seen.add(interval_id)
        intervals.append(
            Interval(
                interval_id=interval_id,
                speaker=row["speaker"].strip(),
                video_link=row["video_link"].strip(),
                start_s=start,
                end_s=end,
                split=split,
                video_fn=(row.get("video_fn") or "").strip(),
            )
        )
    return intervals


def read_ids(path: str | os.PathLike) -> dict[str, str]:
    """Interval id -> split from S2G-MDDiffusion's ``filtered_intervals.json`` (``{"train": [...], "test": [...]}``;
    ``val`` or ``dev`` may appear too).

    Raises:
        MediaError: the file is missing or not JSON.
        MmgtError: not an object of id lists, an unknown split, or an id in two splits.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: ids file not found" if not path.exists() else f"{path}: not a file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise MediaError(f"{path}: not a JSON file ({e})") from e
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise MmgtError(f'{path}: expected {{"train": [ids], "test": [ids]}} (S2G-MDDiffusion\'s layout)')
    ids: dict[str, str] = {}
    for key, values in data.items():
        split = _CSV_SPLITS.get(key)
        if split is None:
            raise MmgtError(f"{path}: unknown split {key!r} (expected {', '.join(sorted(_CSV_SPLITS))})")
        for value in values:
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise MmgtError(f"{path}: {key}: interval ids must be numbers or strings, got {value!r}")
            interval_id = str(value).strip()
            if ids.setdefault(interval_id, split) != split:
                raise MmgtError(f"{path}: interval {interval_id} is in both {ids[interval_id]} and {split}")
    return ids


def video_id(link: str) -> str:
    """The source video's id in its link: YouTube's 11-character id (``watch?v=``, ``youtu.be/``, ``embed/``,
    ``shorts/``), else the link's last path segment."""
    url = urllib.parse.urlsplit(link.strip())
    host = url.netloc.lower().removeprefix("www.").removeprefix("m.")
    segments = [s for s in url.path.split("/") if s]
    if host == "youtu.be" and segments:
        return segments[0]
    if host.endswith("youtube.com"):
        query = urllib.parse.parse_qs(url.query).get("v")
        if query:
            return query[0]
        if len(segments) > 1 and segments[0] in ("embed", "v", "shorts", "live"):
            return segments[1]
    return segments[-1] if segments else link.strip()


def check_video_name(template: str) -> None:
    """Raise :class:`MmgtError` unless ``template`` uses only the placeholders of :data:`DEFAULT_VIDEO_NAME`."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as e:
        raise MmgtError(f"video name template {template!r}: {e}") from None
    unknown = names - {"speaker", "video_id", "video_fn"}
    if unknown or "{}" in template:
        raise MmgtError(
            f"video name template {template!r}: unknown placeholder(s) {sorted(unknown) or ['{}']}; "
            "use {speaker}, {video_id}, {video_fn}"
        )


def source_name(interval: Interval, template: str = DEFAULT_VIDEO_NAME) -> str:
    """The interval's source video path under the videos folder, without a suffix unless the template has one."""
    return template.format(
        speaker=interval.speaker, video_id=video_id(interval.video_link), video_fn=Path(interval.video_fn).stem
    )


def find_source(videos_dir: Path, name: str) -> list[Path]:
    """Files that may be the source video ``name`` (:func:`source_name`): the file itself if ``name`` ends in a video
    suffix, else ``name`` plus any suffix of :data:`~mmgt.utils.video_io.VIDEO_SUFFIXES` (any case)."""
    path = videos_dir / name
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return [path] if path.is_file() else []
    if not path.parent.is_dir():
        return []
    prefix = path.name + "."
    return sorted(
        p
        for p in path.parent.iterdir()
        if p.name.startswith(prefix) and p.suffix.lower() in VIDEO_SUFFIXES and p.stem == path.name and p.is_file()
    )


def requested_intervals(
    table: Sequence[Interval], ids: Mapping[str, str] | None, speakers: Sequence[str] | None
) -> tuple[list[Interval], list[tuple[str, str]]]:
    """The intervals to cut, with their split, and the (id, split) pairs of ``ids`` that the table lacks.

    Args:
        table: the interval table.
        ids: interval id -> split (:func:`read_ids`); None: every interval of the speakers, with the table's split.
        speakers: keep these speakers (None: all).

    Raises:
        MmgtError: no ``ids`` and the table has no split column.
    """
    wanted = None if speakers is None else set(speakers)
    rows = [r for r in table if wanted is None or r.speaker in wanted]
    if ids is None:
        if rows and rows[0].split is None:
            raise MmgtError("the interval table has no 'dataset' column: give the split with an ids file (--ids)")
        return rows, []
    chosen = [replace(r, split=ids[r.interval_id]) for r in rows if r.interval_id in ids]
    known = {r.interval_id for r in table}
    return chosen, [(i, split) for i, split in ids.items() if i not in known]


# ---------------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------------
def build_pats_dataset(
    intervals_csv: str | os.PathLike,
    videos_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    ids_json: str | os.PathLike | None = None,
    speakers: Sequence[str] | None = PAPER_SPEAKERS,
    size: int = 512,
    max_seconds: float | None = 15.0,
    min_seconds: float = 0.0,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    crop_left: Mapping[str, float | None] | None = None,
    smooth: bool = True,
    progress: bool = True,
    video_name: str = DEFAULT_VIDEO_NAME,
) -> PatsReport:
    """Cut the requested PATS intervals out of their source videos into the dataset ``out_dir`` (docs/data.md).

    Args:
        intervals_csv: PATS's ``cmu_intervals_df.csv``.
        videos_dir: the folder of source videos (:func:`source_name` gives each one's path).
        out_dir: the dataset folder: new, empty, or an earlier output of this command to resume or add a shard to.
        ids_json: S2G-MDDiffusion's ``filtered_intervals.json``; it chooses the intervals and their split. None: all
            intervals of ``speakers`` with the table's split.
        speakers: the speakers to keep (None: all of the table's).
        size: side of the square output frames in pixels (even).
        max_seconds: keep at most the first ``max_seconds`` of each interval (15 s = 375 frames); None: all.
        min_seconds: intervals shorter than this are rejected (an interval always needs one frame).
        workers: parallel processes.
        shard: (i, n): process only the source videos whose index in the sorted list is i modulo n.
        crop_left: per speaker, the crop's left edge as a fraction of the width (None: the automatic crop); added to
            :data:`CROP_LEFT`. Speakers in neither get the automatic crop.
        smooth: smooth the keypoints over time.
        progress: show a progress bar over source videos.
        video_name: the naming template of the source videos (:data:`DEFAULT_VIDEO_NAME`).

    Returns:
        A :class:`PatsReport`. ``out_dir`` gets the dataset, ``preprocess_report.json``, ``availability.json`` and
        ``test_ids.txt``.

    Raises:
        MmgtError: before anything is written: a bad argument or template, an unreadable table, or no videos
            folder. Source videos that are missing or fail later appear in the availability report instead.
    """
    check_run_arguments(size, max_seconds, min_seconds, workers, shard)
    check_video_name(video_name)
    crops = {**CROP_LEFT, **(crop_left or {})}
    for speaker, left in crops.items():
        if left is not None and not 0.0 <= left <= 1.0:
            raise MmgtError(f"crop_left of {speaker} must be a fraction of the width in [0, 1], got {left}")
    table = read_intervals(intervals_csv)
    ids = None if ids_json is None else read_ids(ids_json)
    root, out = Path(videos_dir), Path(out_dir)
    if not root.is_dir():
        raise MediaError(f"{root}: videos folder not found" if not root.exists() else f"{root}: not a folder")
    intervals, not_in_table = requested_intervals(table, ids, speakers)

    # Find each interval's source video; group the intervals by source.
    by_source: dict[str, list[Interval]] = {}
    absent: dict[str, tuple[str, str]] = {}  # clip id -> (status, reason)
    for interval in intervals:
        name = source_name(interval, video_name)
        files = find_source(root, name)
        if not files:
            absent[interval.clip_id] = (NO_SOURCE, f"no video {name}.* in {root}")
        elif len(files) > 1:
            shown = ", ".join(p.name for p in files)
            absent[interval.clip_id] = (UNREADABLE, f"{len(files)} files could be the source ({shown}); keep one")
        else:
            by_source.setdefault(files[0].relative_to(root).as_posix(), []).append(interval)
    stems = clip_stems(sorted(by_source))
    jobs = []
    for rel in sorted(by_source):
        speakers_of_source = {i.speaker for i in by_source[rel]}
        if len(speakers_of_source) > 1:
            raise MmgtError(f"{root / rel}: source of intervals of several speakers {sorted(speakers_of_source)}")
        speaker = speakers_of_source.pop()
        cuts = tuple(
            Cut(i.clip_id, i.start_s, i.end_s, i.split, {"pats": _row_meta(i)})
            for i in sorted(by_source[rel], key=lambda i: (i.start_s, i.clip_id))
        )
        settings = clip_settings(size, max_seconds, min_seconds, crops.get(speaker), smooth)
        jobs.append(VideoJob(str((root / rel).resolve()), rel, stems[rel], speaker, "train", str(out), settings, cuts))

    run = run_video_jobs(jobs, out, shard=shard, workers=workers, progress=progress, clip_ids=_clip_ids(intervals))
    fetch_failures = _fetch_failures(root)
    outcomes = json.loads((out / REPORT_NAME).read_text())
    entries = _availability_entries(intervals, by_source, absent, run.records, outcomes, fetch_failures)
    for interval_id, split in not_in_table:
        entries.append(_entry(None, UNKNOWN_SPEAKER, interval_id, split, NOT_IN_TABLE, "not in the interval table"))
    test_records = [r for r in run.records if r.split == "test"]
    write_test_ids(out / TEST_IDS_NAME, test_records, comment=f"test clips of {out.name} (mmgt data pats)")
    availability = {
        "intervals_csv": {"name": Path(intervals_csv).name, "sha256": sha256_file(intervals_csv)},
        "ids_json": None if ids_json is None else {"name": Path(ids_json).name, "sha256": sha256_file(ids_json)},
        "speakers": sorted({i.speaker for i in intervals}) if speakers is None else list(speakers),
        "counts": _counts(entries),
        "missing": [e for e in entries if e["status"] != FOUND],
        "test_ids": {"file": TEST_IDS_NAME, "clips": len(test_records), "sha256": sha256_file(out / TEST_IDS_NAME)},
    }
    with atomic_output(out / AVAILABILITY_NAME) as tmp:
        tmp.write_text(json.dumps(availability, indent=1) + "\n")
    return PatsReport(run, availability, sorted(test_records, key=lambda r: r.id))


def _clip_ids(intervals: Sequence[Interval]) -> set[str]:
    counts = Counter(i.clip_id for i in intervals)
    twice = sorted(c for c, n in counts.items() if n > 1)
    if twice:
        raise MmgtError(f"interval ids that give the same clip id: {', '.join(twice[:5])}")
    return set(counts)


def _row_meta(interval: Interval) -> dict:
    """The table row kept in the clip record's ``meta.pats``."""
    return {
        "interval_id": interval.interval_id,
        "video_link": interval.video_link,
        "start_s": str(interval.start_s),  # exact fractions, e.g. "1669/20"
        "end_s": str(interval.end_s),
    }


def _fetch_failures(videos_dir: Path) -> dict[str, str]:
    """Link -> why `mmgt data fetch-pats` could not download it (empty without a fetch report)."""
    path = videos_dir / FETCH_REPORT_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise MediaError(f"{path}: not a JSON file ({e})") from e
    failed = data.get("failed", {}) if isinstance(data, dict) else {}
    return {str(k): str(v) for k, v in failed.items()} if isinstance(failed, dict) else {}


def _entry(interval: Interval | None, speaker: str, interval_id: str, split: str, status: str, reason: str) -> dict:
    entry = {"interval_id": interval_id, "speaker": speaker, "split": split, "status": status, "reason": reason}
    if interval is not None:
        entry["clip"], entry["video_link"] = interval.clip_id, interval.video_link
    return entry


def _availability_entries(
    intervals: Sequence[Interval],
    by_source: Mapping[str, list[Interval]],
    absent: Mapping[str, tuple[str, str]],
    records: Sequence[ClipRecord],
    outcomes: dict,
    fetch_failures: Mapping[str, str],
) -> list[dict]:
    """One entry per requested interval: its status and, when it is missing, why."""
    found = {r.id for r in records}
    failed = {d["path"]: d["reason"] for d in outcomes["failed"]}
    rejected = {d["clip"]: d for d in outcomes["rejected"]}
    source_of = {i.clip_id: rel for rel, rows in by_source.items() for i in rows}
    entries = []
    for interval in intervals:
        clip = interval.clip_id
        if clip in found:
            status, reason = FOUND, ""
        elif clip in absent:
            status, reason = absent[clip]
            if status == NO_SOURCE and interval.video_link in fetch_failures:
                reason += f"; download failed: {fetch_failures[interval.video_link]}"
        elif source_of[clip] in failed:
            status, reason = UNREADABLE, f"{source_of[clip]}: {failed[source_of[clip]]}"
        elif clip in rejected:
            status = PAST_THE_END if rejected[clip]["kind"] == PAST_END else REJECTED
            reason = rejected[clip]["reason"]
        else:
            status, reason = PENDING, f"{source_of[clip]} not processed yet (run the other shards)"
        entries.append(_entry(interval, interval.speaker, interval.interval_id, interval.split, status, reason))
    return entries


def _counts(entries: Sequence[dict]) -> dict:
    """speaker -> split -> {"requested": n, status: n, ...} for the splits that have requested intervals."""
    counts: dict = {}
    empty = {"requested": 0, **dict.fromkeys(STATUSES, 0)}
    for e in entries:
        row = counts.setdefault(e["speaker"], {}).setdefault(e["split"], dict(empty))
        row["requested"] += 1
        row[e["status"]] += 1
    order = sorted(counts, key=lambda s: (s == UNKNOWN_SPEAKER, s))  # ids missing from the table come last
    return {s: {split: counts[s][split] for split in SPLITS if split in counts[s]} for s in order}


def availability_table(availability: dict) -> str:
    """``availability.json``'s counts as a plain-text table: one row per speaker and split, then the totals."""
    header = ("speaker", "split", "requested", *(s.replace("_", " ") for s in STATUSES))
    rows, total = [], Counter()
    for speaker, splits in availability["counts"].items():
        for split, row in splits.items():
            rows.append((speaker, split, row["requested"], *(row[s] for s in STATUSES)))
            total.update(row)
    rows.append(("all", "", total["requested"], *(total[s] for s in STATUSES)))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(v).ljust(w) if i < 2 else str(v).rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)

"""Frozen lists of clip ids (``test_ids.txt``): which clips an evaluation ran on, with a checksum of each.

Published numbers on PATS are not comparable when every group evaluates on a different surviving subset (spec §9).
``mmgt data pats`` writes the test clips it could make to ``test_ids.txt``; ``mmgt eval ... --ids test_ids.txt``
evaluates exactly those clips and fails if one is missing. Two users compare their files to tell whether they
evaluated on the same subset (the ids) made from the same source files (the checksums).

Format: UTF-8 text, one clip per line, ``#`` starts a comment line, fields separated by whitespace::

    # clip_id  frames  video_sha256  audio_sha256
    oliver-103577  375  9f2c...  41d0...

A line may also hold the clip id alone (a hand-written list).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mmgt.data.manifest import ClipRecord
from mmgt.errors import MediaError, MmgtError
from mmgt.utils.files import atomic_output

logger = logging.getLogger(__name__)

HEADER = "# clip_id\tframes\tvideo_sha256\taudio_sha256"


@dataclass(frozen=True)
class ListedClip:
    """One line of an id list: the clip id and, when the list was written by mmgt, its length and checksums."""

    id: str
    num_frames: int | None = None
    video_sha256: str | None = None
    audio_sha256: str | None = None


def write_test_ids(path: str | os.PathLike, records: Sequence[ClipRecord], comment: str = "") -> Path:
    """Write the clips ``records`` as an id list (sorted by id), atomically.

    Args:
        path: the ``.txt`` file.
        records: the clips (their ``sha256`` must hold ``video`` and ``audio``).
        comment: an optional first line (without the ``#``), e.g. where the list comes from.
    """
    lines = [f"# {comment}"] if comment else []
    lines.append(HEADER)
    for rec in sorted(records, key=lambda r: r.id):
        lines.append(f"{rec.id}\t{rec.num_frames}\t{rec.sha256['video']}\t{rec.sha256['audio']}")
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_test_ids(path: str | os.PathLike) -> list[ListedClip]:
    """The clips of an id list, in file order.

    Raises:
        MediaError: the file is missing or not UTF-8 text.
        MmgtError: a line has 2-3 or more than 4 fields, a frame count that is not a positive integer, a clip listed
            twice, or the list is empty. The message names the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: id list not found" if not path.exists() else f"{path}: not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise MediaError(f"{path}: not a UTF-8 text file (byte {e.start} cannot be decoded)") from e
    clips: list[ListedClip] = []
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) not in (1, 4):
            raise MmgtError(f"{path}:{lineno}: expected a clip id, or id, frames, video and audio sha256")
        if fields[0] in seen:
            raise MmgtError(f"{path}:{lineno}: clip {fields[0]} is listed twice")
        seen.add(fields[0])
        if len(fields) == 1:
            clips.append(ListedClip(fields[0]))
            continue
        if not fields[1].isdigit() or int(fields[1]) < 1:
            raise MmgtError(f"{path}:{lineno}: frames must be a positive integer, got {fields[1]!r}")
        clips.append(ListedClip(fields[0], int(fields[1]), fields[2], fields[3]))
    if not clips:
        raise MmgtError(f"{path}: the id list names no clip")
    return clips


def select_listed(records: Sequence[ClipRecord], listed: Sequence[ListedClip] | None, where: str) -> list[ClipRecord]:
    """The records of the listed clips, in ``records``' order; all of ``records`` when ``listed`` is None.

    A listed clip whose checksums differ from the record's is kept with a warning: the same clip cut from another
    download of the source video, or encoded by another FFmpeg build.

    Args:
        records: the clips to choose from (e.g. one split of a manifest).
        listed: the id list (:func:`read_test_ids`), or None.
        where: names ``records`` in messages (e.g. "the test split of data/pats").

    Raises:
        MmgtError: a listed clip is not among ``records``, or has another frame count (another cut).
    """
    if listed is None:
        return list(records)
    by_id = {rec.id: rec for rec in records}
    absent = [clip.id for clip in listed if clip.id not in by_id]
    if absent:
        shown = ", ".join(absent[:5]) + (", ..." if len(absent) > 5 else "")
        raise MmgtError(f"{len(absent)} of {len(listed)} listed clip(s) are not in {where}: {shown}")
    recut = [c.id for c in listed if c.num_frames is not None and c.num_frames != by_id[c.id].num_frames]
    if recut:
        raise MmgtError(f"{len(recut)} listed clip(s) have another frame count in {where}: {', '.join(recut[:5])}")
    changed = [
        c.id
        for c in listed
        if c.video_sha256 is not None
        and (c.video_sha256, c.audio_sha256) != (by_id[c.id].sha256.get("video"), by_id[c.id].sha256.get("audio"))
    ]
    if changed:
        logger.warning(
            "%d listed clip(s) differ in content from the list's checksums (another download or FFmpeg build): %s",
            len(changed),
            ", ".join(changed[:5]),
        )
    wanted = {clip.id for clip in listed}
    return [rec for rec in records if rec.id in wanted]

"""A small PATS look-alike built in code: long source videos of a synthetic speaker with a burned-in frame counter and
audio clicks at known times, an interval table in PATS's column layout and an ids file in S2G-MDDiffusion's.

Each source frame m shows m in binary in the bottom band of the speaker's crop square (2 rows x 6 cells, white = 1),
so a clip frame tells which source frame it came from. A click (1 ms at 0.95 full scale, over speech at 0.3) sounds
at every multiple of :data:`CLICK_EVERY_S`, a time at which a new frame starts at both 25 and 30 fps.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction
from pathlib import Path

import numpy as np

from mmgt.data.crop import fixed_crop
from mmgt.data.synthetic import generate_clip, make_identities
from mmgt.utils.video_writer import VideoWriter

WIDTH, HEIGHT = 320, 180  # 16:9 sources; the crop square is 180 px
SAMPLE_RATE = 16_000
CLICK_EVERY_S = Fraction(4, 5)  # 0.8 s = 20 frames at 25 fps, 24 at 30 fps
CLICK_SAMPLES, CLICK_LEVEL, SPEECH_PEAK = 16, 0.95, 0.3
BITS = 12  # counter cells: 2 rows x 6


@dataclass(frozen=True)
class Source:
    """A source video of the look-alike; ``file`` None: its link is dead (no file), ``broken``: a truncated file."""

    speaker: str
    link: str
    seconds: float
    fps: int
    crop_left: float
    file: str | None  # path under the videos folder
    broken: bool = False


# The speakers' crops are the recipe's (spec §8.2), so `mmgt data pats` must cut exactly the drawn squares.
SOURCES = {
    "A": Source("oliver", "https://www.youtube.com/watch?v=oliverAAAAA", 24.0, 25, 0.38, "oliver/oliverAAAAA.mp4"),
    "B": Source("oliver", "https://youtu.be/oliverBBBBB", 16.0, 30, 0.38, "oliver/oliverBBBBB.mp4"),
    "C": Source("seth", "https://www.youtube.com/watch?v=sethCCCCCCC&t=5s", 12.0, 25, 0.395, "seth/sethCCCCCCC.mp4"),
    "D": Source("chemistry", "https://www.youtube.com/watch?v=chemDDDDDDD", 10.0, 25, 0.031, None),
    "E": Source("jon", "http://www.cc.com/video-clips/jonEEE", 4.0, 25, 1.0, "jon/jonEEE.mp4", broken=True),
    "F": Source("conan", "https://www.youtube.com/watch?v=conanFFFFFF", 4.0, 25, 0.5, None),
}

# interval id -> (source, start, end, the csv's `dataset`)
INTERVALS = {
    "100": ("A", "1.13", "4.5", "train"),
    "101": ("A", "5.0", "21.5", "test"),  # 16.5 s: only the first 15 s (375 frames) are kept
    "102": ("A", "21.0", "26.0", "train"),  # needs the video up to 26 s: past its end (24 s)
    "103": ("A", "3.97", "6.43", "dev"),  # overlaps 100 and 101; the ids file puts it in test
    "110": ("B", "0.52", "3.31", "test"),  # a 30-fps source
    "111": ("B", "7.05", "10.0", "test"),
    "120": ("C", "2.0", "6.0", "train"),
    "121": ("C", "6.5", "9.7", "test"),
    "122": ("C", "10.0", "11.5", "dev"),  # not in the ids file
    "130": ("D", "1.0", "4.0", "train"),  # no source video
    "131": ("D", "5.0", "9.0", "test"),
    "140": ("E", "1.0", "3.0", "test"),  # an unreadable source video
    "150": ("F", "1.0", "3.0", "train"),  # a speaker the papers do not use
    "160": ("A", "10.0", "12.0", "train"),  # not in the ids file
}
IDS = {"train": [100, 102, 120, 130, 150], "test": [101, 103, 110, 111, 121, 131, 140, 999]}  # 999: not in the csv


def pats_time(seconds: str) -> str:
    """A time stamp written like the interval table's (``H:MM:SS.ffffff``)."""
    return str(timedelta(seconds=float(seconds)))  # e.g. 0:00:01.130000, or 0:00:05 for whole seconds


def counter_cells(side: float) -> list[tuple[float, float, float, float]]:
    """(x0, y0, x1, y1) of each counter bit in a square of ``side`` px, bit 0 first."""
    band_top, cell_w, cell_h = side * 5 / 6, side / 6, side / 12
    return [
        (c * cell_w, band_top + r * cell_h, (c + 1) * cell_w, band_top + (r + 1) * cell_h)
        for r in range(2)
        for c in range(6)
    ]


def read_counter(frame: np.ndarray) -> int:
    """The source frame number burned into a square (S, S, 3) clip frame."""
    side = frame.shape[0]
    value = 0
    for bit, (x0, y0, x1, y1) in enumerate(counter_cells(side)):
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        patch = frame[int(cy) - 1 : int(cy) + 2, int(cx) - 2 : int(cx) + 3]
        value |= int(patch.mean() > 127) << bit
    return value


def click_times(seconds: float) -> list[Fraction]:
    """Times (s) of the clicks in a source of this length."""
    count = math.floor((Fraction(seconds) - Fraction(1, 10)) / CLICK_EVERY_S)
    return [CLICK_EVERY_S * j for j in range(1, count + 1)]


def find_clicks(wave: np.ndarray) -> list[int]:
    """First sample of each click in a 16-kHz wave (speech stays below 0.6)."""
    loud = np.flatnonzero(np.abs(wave) > 0.6)
    return [int(i) for k, i in enumerate(loud) if k == 0 or i - loud[k - 1] > SAMPLE_RATE // 20]


def write_source(path: Path, source: Source, seed: int) -> None:
    """Render the source video: the synthetic speaker in the speaker's crop square, the counter, speech and clicks."""
    box = fixed_crop(WIDTH, HEIGHT, source.crop_left)
    clip = generate_clip(seed=seed, seconds=source.seconds, size=box.side, identity=make_identities(1, seed)[0])
    wave = clip.wave * (SPEECH_PEAK / max(float(np.abs(clip.wave).max()), 1e-6))
    for t in click_times(source.seconds):
        first = int(t * SAMPLE_RATE)
        wave[first : first + CLICK_SAMPLES] = CLICK_LEVEL
    num_frames = round(source.seconds * source.fps)
    cells = [tuple(round(v) for v in cell) for cell in counter_cells(box.side)]
    with VideoWriter(path, fps=source.fps, audio=wave, sample_rate=SAMPLE_RATE, preset="ultrafast") as writer:
        for m in range(num_frames):
            frame = np.full((HEIGHT, WIDTH, 3), 70, np.uint8)
            square = frame[box.y : box.y + box.side, box.x : box.x + box.side]
            square[:] = clip.frames[min(m * 25 // source.fps, len(clip.frames) - 1)]
            for bit, (x0, y0, x1, y1) in enumerate(cells):
                square[y0:y1, x0:x1] = 255 if (m >> bit) & 1 else 0
            writer.write(frame)


def build_lookalike(root: Path) -> dict[str, Path]:
    """Write ``root/videos/`` (the sources that exist), ``root/cmu_intervals_df.csv`` and
    ``root/filtered_intervals.json``; returns their paths by name ("videos", "intervals", "ids")."""
    videos = root / "videos"
    for seed, source in enumerate(SOURCES.values()):
        if source.file is None:
            continue
        path = videos / source.file
        path.parent.mkdir(parents=True, exist_ok=True)
        write_source(path, source, seed)
        if source.broken:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
    intervals = root / "cmu_intervals_df.csv"
    with intervals.open("w", newline="") as f:
        writer = csv.writer(f)
        # PATS's columns, with the unnamed index column pandas writes first.
        writer.writerow(
            ["", "dataset", "delta_time", "end_time", "interval_id", "speaker", "start_time", "video_fn", "video_link"]
        )
        for row, (interval_id, (key, start, end, split)) in enumerate(INTERVALS.items()):
            source = SOURCES[key]
            delta = float(Fraction(end) - Fraction(start))
            writer.writerow(
                [
                    row,
                    split,
                    delta,
                    pats_time(end),
                    interval_id,
                    source.speaker,
                    pats_time(start),
                    f"{key}.mp4",
                    source.link,
                ]
            )
    ids = root / "filtered_intervals.json"
    ids.write_text(json.dumps(IDS))
    return {"videos": videos, "intervals": intervals, "ids": ids}

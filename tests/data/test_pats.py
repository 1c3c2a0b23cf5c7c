"""`mmgt data pats` on a PATS look-alike built in code (tests/data/pats_lookalike.py): frame-exact cuts, audio in step,
the table's split, the availability report and test list, resuming, shards; the tables' parsers; fetch-pats."""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmgt.cli import main
from mmgt.constants import BODY_INDEX, FACE, NUM_KEYPOINTS
from mmgt.data import preprocess
from mmgt.data.check import check_dataset
from mmgt.data.id_list import read_test_ids
from mmgt.data.manifest import read_manifest
from mmgt.data.pats import (
    AVAILABILITY_NAME,
    TEST_IDS_NAME,
    build_pats_dataset,
    parse_time,
    read_ids,
    read_intervals,
    requested_intervals,
    video_id,
)
from mmgt.data.pats_fetch import DownloadFailed, fetch_sources
from mmgt.data.preprocess import cut_frames
from mmgt.errors import MmgtError
from mmgt.utils.audio_io import load_audio
from mmgt.utils.video_io import read_video_frames
from mmgt.utils.video_writer import save_video

from .pats_lookalike import INTERVALS, SOURCES, build_lookalike, click_times, find_clicks, read_counter

SIZE = 128
SECOND_PER_SAMPLE = Fraction(1, 16_000)


class _FakeDetector:
    """Sees the same upper body in every frame (MediaPipe would take minutes here; the cut is what is tested)."""

    def __init__(self, static_image_mode: bool = True):
        pass

    def detect(self, image):
        h, w = image.shape[:2]
        kp, sc = np.zeros((NUM_KEYPOINTS, 2), np.float32), np.zeros(NUM_KEYPOINTS, np.float32)
        for name, x in (("right_shoulder", 0.3), ("left_shoulder", 0.7)):
            kp[BODY_INDEX[name]], sc[BODY_INDEX[name]] = (x * w, 0.7 * h), 0.9
        t = np.linspace(0, 1, len(FACE))
        kp[list(FACE)], sc[list(FACE)] = np.stack([w * (0.4 + 0.2 * t), h * (0.2 + 0.25 * t)], axis=1), 0.9
        return kp, sc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


@pytest.fixture(scope="module")
def fake_detector():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(preprocess, "MediaPipeDetector", _FakeDetector)
        yield


@pytest.fixture(scope="module")
def lookalike(tmp_path_factory) -> dict[str, Path]:
    return build_lookalike(tmp_path_factory.mktemp("pats"))


def _pats_argv(lookalike: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "data", "pats", "--intervals", str(lookalike["intervals"]), "--ids", str(lookalike["ids"]),
        "--videos", str(lookalike["videos"]), "-o", str(out), "--size", str(SIZE), "--no-progress", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def built(lookalike, fake_detector, tmp_path_factory) -> tuple[Path, str, float]:
    """One `mmgt data pats` run over the look-alike: (dataset, what it printed, seconds per source-video minute)."""
    out = tmp_path_factory.mktemp("built") / "pats"
    printed = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        assert main(_pats_argv(lookalike, out)) == 0
    elapsed = time.perf_counter() - start
    minutes = sum(s.seconds for s in SOURCES.values() if s.file and not s.broken) / 60
    return out, printed.getvalue(), elapsed / minutes


# ---------------------------------------------------------------------------------------------------------------------
# The tables
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0:01:23.450000", Fraction(8345, 100)),
        ("0:01:23", Fraction(83)),
        ("01:23.45", Fraction(8345, 100)),
        ("2016-03-09 00:01:23.45", Fraction(8345, 100)),
        ("0 days 01:00:00.5", Fraction(7201, 2)),
        ("1 day 00:00:01", Fraction(86401)),
        (" 83.45 ", Fraction(8345, 100)),
    ],
)
def test_parse_time_reads_the_tables_forms_exactly(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["", "1:2:3:4", "abc", "-0:00:01", "0:01:2x"])
def test_parse_time_rejects_other_text(text):
    with pytest.raises(MmgtError, match="not a time stamp"):
        parse_time(text)


def test_video_id_from_the_links():
    assert video_id("https://www.youtube.com/watch?v=oliverAAAAA") == "oliverAAAAA"
    assert video_id("https://www.youtube.com/watch?feature=share&v=sethCCCCCCC&t=5s") == "sethCCCCCCC"
    assert video_id("http://youtu.be/oliverBBBBB?t=3") == "oliverBBBBB"
    assert video_id("https://m.youtube.com/embed/abcdefghijk") == "abcdefghijk"
    assert video_id("https://youtube.com/shorts/abcdefghijk") == "abcdefghijk"
    assert video_id("http://www.cc.com/video-clips/jonEEE/") == "jonEEE"  # not YouTube: the last path segment


def test_read_intervals_and_ids(lookalike):
    table = read_intervals(lookalike["intervals"])
    assert [i.interval_id for i in table] == list(INTERVALS)
    first = table[0]
    assert (first.speaker, first.start_s, first.end_s) == ("oliver", Fraction(113, 100), Fraction(9, 2))
    assert first.split == "train"
    assert {i.interval_id: i.split for i in table}["103"] == "val"  # PATS's "dev"
    ids = read_ids(lookalike["ids"])
    assert ids["103"] == "test" and ids["999"] == "test" and ids["100"] == "train" and len(ids) == 13

    chosen, not_in_table = requested_intervals(table, ids, ["oliver", "seth", "jon", "chemistry"])
    assert {i.interval_id: i.split for i in chosen} == {
        "100": "train", "101": "test", "102": "train", "103": "test", "110": "test", "111": "test",
        "120": "train", "121": "test", "130": "train", "131": "test", "140": "test",
    }  # fmt: skip
    assert not_in_table == [("999", "test")]
    everything, _ = requested_intervals(table, None, None)  # no ids: every row, the csv's split
    assert len(everything) == len(INTERVALS) and everything[2].split == "train" and everything[3].split == "val"


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("interval_id,speaker,start_time,end_time\n1,a,0:00:01,0:00:02\n", "no column.s. video_link"),
        ("interval_id,speaker,video_link,start_time,end_time\n1,a,l,0:00:03,0:00:02\n", ":2: end_time .* before"),
        ("interval_id,speaker,video_link,start_time,end_time\n1,a,l,1,2\n1,a,l,3,4\n", ":3: interval 1 appears twice"),
        ("interval_id,speaker,video_link,start_time,end_time,dataset\n1,a,l,1,2,holdout\n", ":2: dataset must be"),
        ("interval_id,speaker,video_link,start_time,end_time\n1,a,l,soon,2\n", ":2: not a time stamp: 'soon'"),
    ],
)
def test_bad_interval_tables_name_the_line(tmp_path, csv_text, message):
    path = tmp_path / "t.csv"
    path.write_text(csv_text)
    with pytest.raises(MmgtError, match=message):
        read_intervals(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "expected"),
        ({"train": [1], "holdout": [2]}, "unknown split 'holdout'"),
        ({"train": [1], "test": ["1"]}, "interval 1 is in both train and test"),
        ({"train": [1.5]}, "must be numbers or strings"),
    ],
)
def test_bad_ids_files(tmp_path, data, message):
    path = tmp_path / "ids.json"
    path.write_text(json.dumps(data))
    with pytest.raises(MmgtError, match=message):
        read_ids(path)


def test_without_a_split_column_the_ids_are_needed(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("interval_id,speaker,video_link,start_time,end_time\n1,a,l,1,2\n")
    with pytest.raises(MmgtError, match="no 'dataset' column"):
        requested_intervals(read_intervals(path), None, None)


def test_cut_frames():
    assert cut_frames(Fraction(113, 100), Fraction(9, 2), 375) == (28, 112)  # frame 28 holds 1.13 s; 3.37 s = 84
    assert cut_frames(Fraction(5), Fraction(43, 2), 375) == (125, 500)  # 16.5 s: the first 375 frames
    assert cut_frames(Fraction(5), Fraction(43, 2), None) == (125, 538)  # round(412.5) = 413, halves up
    assert cut_frames(Fraction(1, 25), Fraction(1, 25), 375) == (1, 1)  # an empty interval


# ---------------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------------
def test_every_clip_starts_on_the_source_frame_at_start_and_its_clicks_line_up(built):
    out = built[0]
    records = read_manifest(out)
    assert records
    for rec in records:
        source_key, start_text, end_text, _ = INTERVALS[rec.meta["pats"]["interval_id"]]
        source, start, end = SOURCES[source_key], Fraction(start_text), Fraction(end_text)
        first = math.floor(start * 25)
        assert rec.num_frames == min(math.floor((end - start) * 25 + Fraction(1, 2)), 375)

        counters = [read_counter(frame) for frame in read_video_frames(rec.path(out, "video"))]
        # Frame 0 is the source frame shown at `start`; frame k the one shown at (first + k) / 25 s.
        assert counters[0] == math.floor(start * source.fps), rec.id
        assert counters == [(first + k) * source.fps // 25 for k in range(rec.num_frames)], rec.id

        # Each click falls on the frame that starts at the click's time in the source, in the wav and in the mp4.
        window = [t - Fraction(first, 25) for t in click_times(source.seconds)]
        expected = [t for t in window if 0 <= t <= Fraction(rec.num_frames, 25) - Fraction(1, 1000)]  # 1-ms clicks
        assert len(expected) >= 2, rec.id
        wave, rate = sf.read(rec.path(out, "audio"), dtype="float32")
        muxed = load_audio(rec.path(out, "video"), rate)
        for track in (wave, muxed):
            found = [s * SECOND_PER_SAMPLE for s in find_clicks(track)]
            assert len(found) == len(expected), rec.id
            for click, want in zip(found, expected):
                assert abs(click - want) <= Fraction(1, 100), (rec.id, float(click), float(want))
                frame = round(want * 25)  # the clip frame that starts at the click
                assert counters[frame] == (first + frame) * source.fps // 25
                assert counters[frame] * Fraction(1, source.fps) == want + Fraction(first, 25)  # the click's frame


def test_the_dataset_has_the_ids_files_split_and_passes_data_check(built, capsys):
    out = built[0]
    records = {r.id: r for r in read_manifest(out)}
    # oliver-103 is "dev" in the csv: the ids file decides.
    assert {i: r.split for i, r in records.items()} == {
        "oliver-100": "train", "oliver-101": "test", "oliver-103": "test", "oliver-110": "test",
        "oliver-111": "test", "seth-120": "train", "seth-121": "test",
    }  # fmt: skip
    assert records["oliver-110"].speaker == "oliver" and records["seth-121"].speaker == "seth"
    assert records["oliver-100"].meta["crop"] == [122, 0, 180]  # oliver's left edge 0.38 of 320 px
    assert records["seth-121"].meta["pats"]["video_link"] == SOURCES["C"].link
    assert all((r.width, r.height, r.fps) == (SIZE, SIZE, 25.0) for r in records.values())
    assert check_dataset(out).ok
    assert main(["data", "check", str(out)]) == 0 and "OK" in capsys.readouterr().out


EXPECTED_TABLE = """\
speaker    split  requested  found  no source  past end  unreadable  rejected  pending  not in table
---------  -----  ---------  -----  ---------  --------  ----------  --------  -------  ------------
chemistry  train          1      0          1         0           0         0        0             0
chemistry  test           1      0          1         0           0         0        0             0
jon        test           1      0          0         0           1         0        0             0
oliver     train          2      1          0         1           0         0        0             0
oliver     test           4      4          0         0           0         0        0             0
seth       train          1      1          0         0           0         0        0             0
seth       test           1      1          0         0           0         0        0             0
?          test           1      0          0         0           0         0        0             1
all                      12      7          2         1           1         0        0             1"""


def test_availability_report_and_test_list(built, lookalike):
    out, printed, seconds_per_minute = built
    print(f"\n{printed}{seconds_per_minute:.1f} s per source-video minute (stand-in detector)")  # for `pytest -s`
    assert EXPECTED_TABLE in printed
    report = json.loads((out / AVAILABILITY_NAME).read_text())
    assert report["counts"]["oliver"]["test"] == {
        "requested": 4, "found": 4, "no_source": 0, "past_end": 0, "unreadable": 0, "rejected": 0, "pending": 0,
        "not_in_table": 0,
    }  # fmt: skip
    missing = {e["interval_id"]: e for e in report["missing"]}
    assert sorted(missing) == ["102", "130", "131", "140", "999"]
    assert missing["102"]["status"] == "past_end"
    assert "up to 26.00 s, past its end (24.00 s)" in missing["102"]["reason"]
    assert missing["130"]["status"] == "no_source" and "chemistry/chemDDDDDDD.*" in missing["130"]["reason"]
    assert missing["140"]["status"] == "unreadable" and "jon/jonEEE.mp4: truncated file" in missing["140"]["reason"]
    assert missing["999"] == {
        "interval_id": "999", "speaker": "?", "split": "test", "status": "not_in_table",
        "reason": "not in the interval table",
    }  # fmt: skip
    assert report["ids_json"]["name"] == "filtered_intervals.json" and len(report["ids_json"]["sha256"]) == 64

    listed = read_test_ids(out / TEST_IDS_NAME)
    tests = sorted((r for r in read_manifest(out) if r.split == "test"), key=lambda r: r.id)
    expected_ids = ["oliver-101", "oliver-103", "oliver-110", "oliver-111", "seth-121"]
    assert [c.id for c in listed] == [r.id for r in tests] == expected_ids
    for clip, rec in zip(listed, tests):
        assert (clip.num_frames, clip.video_sha256, clip.audio_sha256) == (
            rec.num_frames,
            rec.sha256["video"],
            rec.sha256["audio"],
        )
    assert report["test_ids"]["clips"] == 5


def test_a_rerun_skips_everything_and_changes_nothing(built, lookalike, fake_detector):
    out = built[0]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    report = build_pats_dataset(
        lookalike["intervals"], lookalike["videos"], out, ids_json=lookalike["ids"], size=SIZE, progress=False
    )
    assert (report.run.processed, report.run.skipped) == (0, 7)
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == {p: content for p, (content, _) in before.items()}
    assert all(p.stat().st_mtime_ns == before[p][1] for p in before if p.parent.name == "clips")


def test_without_ids_the_csvs_split(lookalike, fake_detector, tmp_path):
    report = build_pats_dataset(
        lookalike["intervals"], lookalike["videos"], tmp_path / "seth", speakers=["seth"], size=64, progress=False
    )
    splits = [(r.id, r.split) for r in report.run.records]
    assert splits == [("seth-120", "train"), ("seth-121", "test"), ("seth-122", "val")]
    assert report.table().splitlines()[-1].split()[:3] == ["all", "3", "3"]


def test_shards_report_pending_videos_then_merge(built, lookalike, fake_detector, tmp_path):
    out = tmp_path / "sharded"
    # Sorted sources: jon/jonEEE, oliver/oliverAAAAA, oliver/oliverBBBBB, seth/sethCCCCCCC; shard 1/2 has A and C.
    kw = dict(ids_json=lookalike["ids"], size=SIZE, progress=False)
    first = build_pats_dataset(lookalike["intervals"], lookalike["videos"], out, shard=(0, 2), **kw)
    pending = sorted(e["interval_id"] for e in first.availability["missing"] if e["status"] == "pending")
    assert pending == ["100", "101", "102", "103", "120", "121"]
    assert [r.id for r in first.run.records] == ["oliver-110", "oliver-111"]
    second = build_pats_dataset(lookalike["intervals"], lookalike["videos"], out, shard=(1, 2), **kw)
    single = json.loads((built[0] / AVAILABILITY_NAME).read_text())
    assert second.availability["counts"] == single["counts"]
    assert [r.id for r in second.run.records] == [r.id for r in read_manifest(built[0])]
    assert check_dataset(out).ok


# ---------------------------------------------------------------------------------------------------------------------
# fetch-pats against a fake download library (mmgt's tests never reach the network)
# ---------------------------------------------------------------------------------------------------------------------
class _FakeDownloader:
    """Serves ``videos`` (link -> file to copy); "gone" links are removed videos, "flaky" ones fail once. Every call
    takes one second of the fake clock ``now``."""

    def __init__(self, videos: dict[str, Path], now: list[float]):
        self.videos, self.calls, self.now = videos, [], now

    def download(self, url: str, stem: Path) -> Path:
        self.calls.append(url)
        self.now[0] += 1.0
        if "gone" in url:
            raise DownloadFailed("Video unavailable. This video has been removed by the uploader", permanent=True)
        if "flaky" in url and self.calls.count(url) == 1:
            Path(f"{stem}.part").write_bytes(b"half")  # a partial file, which must not survive
            raise DownloadFailed("HTTP Error 503: Service Unavailable")
        target = Path(f"{stem}.mp4")
        shutil.copy(self.videos[url], target)
        return target


def test_fetch_pats_then_data_pats_reports_what_failed(tmp_path, fake_detector):
    clip = tmp_path / "tiny.mp4"
    wave = np.sin(np.linspace(0, 400, 32_000)).astype(np.float32) * 0.3
    save_video(clip, np.full((50, 36, 64, 3), 120, np.uint8), fps=25, audio=wave, sample_rate=16_000)
    links = {
        "ok": "https://www.youtube.com/watch?v=okokokokoko",
        "gone": "https://www.youtube.com/watch?v=gonegonegon",
        "flaky": "https://youtu.be/flakyflaky1",
    }
    table = tmp_path / "cmu_intervals_df.csv"
    rows = [f"{i},alice,{link},0:00:00.2,0:00:01.4,test" for i, link in enumerate(links.values())]
    rows.append("9,alice,https://youtu.be/okokokokoko,0:00:00.5,0:00:01.0,train")  # a second interval, same video
    table.write_text("interval_id,speaker,video_link,start_time,end_time,dataset\n" + "\n".join(rows) + "\n")
    intervals, _ = requested_intervals(read_intervals(table), None, None)

    now, sleeps = [0.0], []
    downloader = _FakeDownloader({links["ok"]: clip, links["flaky"]: clip}, now)

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    videos = tmp_path / "videos"
    kw = dict(min_interval_s=5.0, retries=2, backoff_s=30.0, sleep=sleep, clock=lambda: now[0], progress=False)
    report = fetch_sources(intervals, videos, downloader, "{speaker}/{video_id}", **kw)
    files = sorted(p.relative_to(videos).as_posix() for p in videos.rglob("*") if p.is_file())
    assert files == ["alice/flakyflaky1.mp4", "alice/okokokokoko.mp4", "fetch_report.json"]  # no partial file
    assert report.downloaded == [links["ok"], links["flaky"]]
    assert report.present == ["https://youtu.be/okokokokoko"]  # the same video id, fetched a moment before
    assert report.failed == {links["gone"]: "Video unavailable. This video has been removed by the uploader"}
    assert downloader.calls == [links["ok"], links["gone"], links["flaky"], links["flaky"]]  # gone: no retry
    # The rate limit keeps 5 s between download starts (each takes 1 s); the retry first waits the 30-s back-off.
    assert sleeps == [4.0, 4.0, 30.0, 0.0]
    saved = json.loads((videos / "fetch_report.json").read_text())
    assert saved["failed"] == report.failed

    again = fetch_sources(intervals, videos, downloader, "{speaker}/{video_id}", **kw)
    assert (again.downloaded, len(again.present), len(downloader.calls)) == ([], 3, 5)  # only "gone" is tried again

    built = build_pats_dataset(
        table, videos, tmp_path / "ds", speakers=None, size=32, crop_left={"alice": 0.0}, progress=False
    )
    assert [r.id for r in built.run.records] == ["alice-0", "alice-2", "alice-9"]
    (gone,) = built.availability["missing"]
    assert gone["status"] == "no_source" and gone["reason"].endswith(
        "; download failed: Video unavailable. This video has been removed by the uploader"
    )


def test_fetch_pats_without_yt_dlp_says_how_to_install(lookalike, tmp_path, capsys):
    try:
        import yt_dlp  # noqa: F401

        pytest.skip("yt-dlp is installed")
    except ImportError:
        pass
    argv = ["data", "fetch-pats", "--intervals", str(lookalike["intervals"]), "-o", str(tmp_path / "raw")]
    assert main(argv) == 1
    expected = "mmgt: error: mmgt data fetch-pats needs yt-dlp: pip install 'mmgt[pats]'"
    assert capsys.readouterr().err.strip() == expected
    assert not (tmp_path / "raw").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Errors of the command: one line, nothing written
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--video-name", "{speaker}/{title}"], "unknown placeholder.s. .'title'."),
        (["--crop-left", "jon=1.5"], "crop_left of jon must be a fraction of the width in .0, 1., got 1.5"),
        (["--size", "33"], "size must be an even number"),
        (["--shard", "3/2"], r"shard must be \(i, n\)"),
    ],
)
def test_bad_arguments_stop_before_anything_is_written(lookalike, tmp_path, capsys, extra, message):
    import re

    out = tmp_path / "ds"
    assert main(_pats_argv(lookalike, out, *extra)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmgt: error: ") and len(err.splitlines()) == 1 and re.search(message, err), err
    assert not out.exists()


def test_missing_tables_are_one_line_errors(lookalike, tmp_path, capsys):
    argv = _pats_argv(lookalike, tmp_path / "ds")
    argv[argv.index("--intervals") + 1] = str(tmp_path / "nope.csv")
    assert main(argv) == 1
    assert capsys.readouterr().err.strip() == f"mmgt: error: {tmp_path / 'nope.csv'}: interval table not found"
    with pytest.raises(SystemExit):
        main(_pats_argv(lookalike, tmp_path / "ds", "--crop-left", "jon"))
    assert "expected SPEAKER=FRAC or SPEAKER=auto" in capsys.readouterr().err

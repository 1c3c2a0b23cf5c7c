"""`mmgt data preprocess`: crop rules, planning, splits, and full runs on pan-and-zoom videos of a real photo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from skimage import data as skdata

from builders import assert_same_pictures
from mmgt.cli import main
from mmgt.constants import BODY_INDEX, FACE, NUM_KEYPOINTS
from mmgt.contracts import PoseSequence
from mmgt.data import preprocess
from mmgt.data.check import check_dataset
from mmgt.data.crop import CropBox, auto_crop, fixed_crop
from mmgt.data.manifest import read_manifest
from mmgt.data.preprocess import (
    assign_split,
    clip_stems,
    find_videos,
    plan_pieces,
    preprocess_videos,
    speaker_of,
)
from mmgt.data.preprocess_records import REPORT_NAME
from mmgt.data.synthetic.speech import synthesize_speech
from mmgt.errors import MediaError, MmgtError, NoPersonError
from mmgt.utils.audio_io import load_audio
from mmgt.utils.video_io import probe_video, read_video_frames
from mmgt.utils.video_writer import VideoWriter

R_SH, L_SH = BODY_INDEX["right_shoulder"], BODY_INDEX["left_shoulder"]


# ---------------------------------------------------------------------------------------------------------------------
# Crop rules
# ---------------------------------------------------------------------------------------------------------------------
def _upper_body(shoulders=((400, 300), (600, 300)), face_box=(450, 150, 550, 250), wrists=()) -> tuple:
    """Keypoints with both shoulders, a face whose landmarks span ``face_box`` and optional visible wrists."""
    kp, sc = np.zeros((NUM_KEYPOINTS, 2), np.float32), np.zeros(NUM_KEYPOINTS, np.float32)
    if shoulders is not None:
        kp[[R_SH, L_SH]], sc[[R_SH, L_SH]] = shoulders, 0.9
    if face_box is not None:
        x0, y0, x1, y1 = face_box
        t = np.linspace(0, 1, len(FACE))
        kp[list(FACE)] = np.stack([x0 + (x1 - x0) * t, y0 + (y1 - y0) * t[::-1]], axis=1)
        sc[list(FACE)] = 0.9
    for name, xy in wrists:
        kp[BODY_INDEX[name]], sc[BODY_INDEX[name]] = xy, 0.9
    return kp, sc


def test_fixed_crop_follows_the_pats_recipe():
    assert fixed_crop(1280, 720, 0.395) == CropBox(x=506, y=0, side=720)  # seth
    assert fixed_crop(1280, 720, 0.0) == CropBox(0, 0, 720)
    assert fixed_crop(1280, 720, 1.0) == CropBox(560, 0, 720)  # jon: right-aligned
    assert fixed_crop(480, 640, 0.5) == CropBox(0, 0, 480)  # portrait: keep the head rows
    with pytest.raises(MmgtError, match="crop_left .* got 1.5"):
        fixed_crop(1280, 720, 1.5)


def test_auto_crop_from_shoulders_and_face():
    # Shoulder width 200 -> side 480; head top = 150 - 0.6 * 100 = 90; top = 90 - 0.08 * 480 = 51.6.
    assert auto_crop([_upper_body()] * 3, 1280, 720) == CropBox(x=260, y=52, side=480)
    # Face only (close-up): shoulder width = 2 x face width 100 = 200; centred on the face.
    assert auto_crop([_upper_body(shoulders=None)], 1280, 720) == CropBox(x=260, y=52, side=480)
    # Shoulders only: head top = 300 - 1.1 * 200 = 80 -> top 41.6.
    assert auto_crop([_upper_body(face_box=None)], 1280, 720) == CropBox(x=260, y=42, side=480)


def test_auto_crop_uses_medians_and_ignores_empty_frames():
    empty = (np.zeros((NUM_KEYPOINTS, 2)), np.zeros(NUM_KEYPOINTS))
    shifted = _upper_body(shoulders=((420, 300), (620, 300)))  # one outlier frame moved right
    poses = [_upper_body(), _upper_body(), shifted, empty, empty]
    assert auto_crop(poses, 1280, 720) == CropBox(x=260, y=52, side=480)


def test_auto_crop_covers_the_hands_and_clamps_to_the_frame():
    wrist = _upper_body(wrists=[("left_wrist", (900, 400))])
    # Half-width 400 -> side 800 / 0.9 = 889, capped at the frame height 720; shifted to stay inside.
    assert auto_crop([wrist], 1280, 720) == CropBox(x=140, y=0, side=720)
    low = _upper_body(wrists=[("right_wrist", (500, 600))])
    # Lowest hand 600 below the top 51.6 -> side (600 - 51.6) / 0.95 = 577.3; x = 500 - 577 / 2 = 211.5.
    assert auto_crop([low], 1280, 720) == CropBox(x=212, y=52, side=577)
    left_edge = _upper_body(shoulders=((0, 300), (200, 300)), face_box=(50, 150, 150, 250))
    assert auto_crop([left_edge], 1280, 720).x == 0


def test_auto_crop_without_a_person_raises():
    empty = (np.zeros((NUM_KEYPOINTS, 2)), np.zeros(NUM_KEYPOINTS))
    with pytest.raises(NoPersonError, match="in 2 sampled frames"):
        auto_crop([empty, empty], 640, 480)


def test_crop_box_apply_resizes_the_window():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[10:60, 30:80] = 200
    out = CropBox(30, 10, 50).apply(frame, 32)
    assert out.shape == (32, 32, 3) and (out == 200).all()
    with pytest.raises(MmgtError, match="does not fit a 200x100 frame"):
        CropBox(180, 0, 50).apply(frame, 32)


# ---------------------------------------------------------------------------------------------------------------------
# Planning: pieces, ids, speakers, splits, inputs, arguments
# ---------------------------------------------------------------------------------------------------------------------
def test_plan_pieces():
    assert plan_pieces(60, 25, 13) == [(0, 25), (25, 50)]  # final 10 frames < 13: dropped
    assert plan_pieces(60, 25, 10) == [(0, 25), (25, 50), (50, 60)]
    assert plan_pieces(375, 375, 50) == [(0, 375)]
    assert plan_pieces(800, None, 50) == [(0, 800)]
    assert plan_pieces(30, 375, 50) == []  # a video shorter than the minimum gives nothing


def test_clip_stems_are_unique_and_safe():
    rels = ["a/x.mp4", "b/x.mp4", "c/y.mp4", "c/y.mov", "d/z w.mp4", "solo.mp4"]
    assert clip_stems(rels) == {
        "a/x.mp4": "a_x",
        "b/x.mp4": "b_x",
        "c/y.mp4": "c_y.mp4",
        "c/y.mov": "c_y.mov",
        "d/z w.mp4": "z_w",
        "solo.mp4": "solo",
    }


def test_speaker_of(tmp_path):
    assert speaker_of("oliver/clip1.mp4", tmp_path) == "oliver"
    assert speaker_of("oliver/clip1.mp4", tmp_path, "filename") == "clip1"
    assert speaker_of("clip1.mp4", tmp_path / "myshow") == "myshow"  # top-level files: the folder's own name
    with pytest.raises(MmgtError, match="speaker_from"):
        speaker_of("a.mp4", tmp_path, "folder")


def test_assign_split_is_deterministic_and_follows_the_ratios():
    names = [f"spk/video_{i}.mp4" for i in range(4000)]
    splits = [assign_split(n) for n in names]
    assert splits == [assign_split(n) for n in names]
    share = {s: splits.count(s) / len(names) for s in ("train", "val", "test")}
    assert share["train"] == pytest.approx(0.9, abs=0.02) and share["val"] == pytest.approx(0.05, abs=0.015)
    assert {assign_split(n, (0.0, 0.0, 1.0)) for n in names[:50]} == {"test"}
    assert {assign_split(n, (1.0, 0.0, 0.0)) for n in names[:50]} == {"train"}


def test_find_videos_recursive_sorted_by_suffix(tmp_path):
    for rel in ("b/2.MP4", "a/1.webm", "a/notes.txt", "c/d/3.mkv", "4.avi", "5.m4v", "6.mov"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in find_videos(tmp_path)]
    assert found == ["4.avi", "5.m4v", "6.mov", "a/1.webm", "b/2.MP4", "c/d/3.mkv"]
    with pytest.raises(MediaError, match="missing: videos folder not found"):
        find_videos(tmp_path / "missing")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 101}, "size must be an even number"),
        ({"split_ratios": (0.5, 0.2, 0.2)}, r"split_ratios .* summing to 1, got \(0.5, 0.2, 0.2\)"),
        ({"shard": (2, 2)}, r"shard must be \(i, n\)"),
        ({"crop_left": -0.1}, "crop_left"),
        ({"workers": 0}, "workers must be >= 1"),
        ({"max_seconds": 0.01}, "max_seconds"),
    ],
)
def test_bad_arguments_raise(tmp_path, kwargs, message):
    with pytest.raises(MmgtError, match=message):
        preprocess_videos(tmp_path, tmp_path / "out", **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# Test videos: pan and zoom over a real photo, with speech-like audio
# ---------------------------------------------------------------------------------------------------------------------
def _pan_zoom(num_frames: int, width: int, height: int, person_frames: int | None = None) -> np.ndarray:
    """(F, height, width, 3) frames: a window over skimage's astronaut that shrinks and drifts right and down.

    Frames from ``person_frames`` on are flat grey (nobody in view).
    """
    import cv2

    photo = skdata.astronaut()  # 512 x 512, a person from the waist up
    frames = []
    for k in range(num_frames):
        t = k / max(num_frames - 1, 1)
        win_h = int(400 - 60 * t)
        win_w = min(int(win_h * width / height), 512)
        x, y = int(10 + 40 * t), int(5 + 30 * t)
        frames.append(cv2.resize(photo[y : y + win_h, x : x + win_w], (width, height), interpolation=cv2.INTER_AREA))
    frames = np.stack(frames)
    if person_frames is not None:
        frames[person_frames:] = 128
    return frames


def _write_video(path: Path, seconds: float, fps: int, width: int, height: int, seed: int, **kw) -> np.ndarray:
    """Write a test video with speech-like audio; returns the 16 kHz audio."""
    wave = synthesize_speech(seconds, np.random.default_rng(seed)).wave
    with VideoWriter(path, fps=fps, audio=wave, sample_rate=16_000, preset="ultrafast") as writer:
        writer.write(_pan_zoom(round(seconds * fps), width, height, **kw))
    return wave


def _truncate(src: Path, dst: Path) -> None:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """astro/talk.mp4 (2.0 s, 25 fps, 320x240), guest/zoom.mkv (2.4 s, 30 fps, 256x256), guest/broken.mp4."""
    root = tmp_path_factory.mktemp("videos")
    _write_video(root / "astro" / "talk.mp4", 2.0, 25, 320, 240, seed=1)
    _write_video(root / "guest" / "zoom.mkv", 2.4, 30, 256, 256, seed=2)
    _truncate(root / "astro" / "talk.mp4", root / "guest" / "broken.mp4")
    (root / "guest" / "readme.txt").write_text("not a video")
    return root


RUN = dict(size=128, max_seconds=1.0, min_seconds=0.5, progress=False)


@pytest.fixture(scope="module")
def dataset(videos, tmp_path_factory):
    """One real (MediaPipe) run over ``videos``: (dataset folder, report)."""
    out = tmp_path_factory.mktemp("dataset")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(preprocess, "CROP_SAMPLES", 4)  # fewer static detections: the test's time goes to MediaPipe
        return out, preprocess_videos(videos, out, **RUN)


def test_truncated_file_is_really_broken(videos):
    with pytest.raises(MediaError, match="truncated|cannot read"):
        probe_video(videos / "guest" / "broken.mp4")


def test_run_writes_valid_clips_and_reports_the_broken_file(dataset):
    out, report = dataset
    # talk: 50 frames -> 2 clips of 25; zoom: round(2.4 * 25) = 60 frames -> 25 + 25 (+ 10 < 0.5 s, dropped).
    assert [r.id for r in report.records] == ["talk-000", "talk-001", "zoom-000", "zoom-001"]
    assert (report.processed, report.skipped, report.rejected) == (4, 0, [])
    assert len(report.failed) == 1 and report.failed[0][0] == "guest/broken.mp4"
    assert "truncated" in report.failed[0][1] or "cannot" in report.failed[0][1]
    saved = json.loads((out / REPORT_NAME).read_text())
    assert saved["failed"] == [{"path": "guest/broken.mp4", "reason": report.failed[0][1]}]
    assert saved["clips"] == 4 and saved["rejected"] == []
    assert "failed guest/broken.mp4: " in report.summary()

    check = check_dataset(out)
    assert check.ok, check.table()
    records = {r.id: r for r in read_manifest(out)}
    assert {r.speaker for r in records.values()} == {"astro", "guest"}
    assert records["talk-000"].split == records["talk-001"].split == assign_split("astro/talk.mp4")
    assert [(r.meta["start_frame"], r.num_frames) for r in records.values()] == [(0, 25), (25, 25), (0, 25), (25, 25)]
    assert records["zoom-001"].source == "guest/zoom.mkv#t=1.00,2.00"
    for rec in records.values():
        assert (rec.width, rec.height, rec.fps) == (128, 128, 25.0)
        pose = PoseSequence.load(rec.path(out, "keypoints"))
        visible = pose.visible()
        # Face and both shoulders on every frame, inside the 128 x 128 frame (wrists may sit just below it).
        upper = [R_SH, L_SH, *FACE]
        assert visible[:, [R_SH, L_SH]].all() and (visible[:, list(FACE)].mean(axis=1) > 0.9).all()
        assert pose.keypoints[:, upper][visible[:, upper]].min() > 0
        assert pose.keypoints[:, upper][visible[:, upper]].max() < 128


def test_clip_audio_is_the_matching_piece_of_the_source(dataset, videos):
    out, report = dataset
    source = load_audio(videos / "astro" / "talk.mp4")
    rec = next(r for r in report.records if r.id == "talk-001")
    clip, rate = sf.read(rec.path(out, "audio"), dtype="float32")
    assert rate == 16_000 and len(clip) == 16_000  # 25 frames = 1 s
    expected = source[16_000:32_000]
    assert np.corrcoef(clip, expected)[0, 1] > 0.99
    assert np.corrcoef(clip, source[:16_000])[0, 1] < 0.5  # not the first second


def test_clip_video_shows_the_cropped_source(dataset, videos):
    out, report = dataset
    rec = next(r for r in report.records if r.id == "zoom-000")
    frames = read_video_frames(rec.path(out, "video"))
    source = read_video_frames(videos / "guest" / "zoom.mkv", fps=25)
    x, y, side = rec.meta["crop"]
    expected = CropBox(x, y, side).apply(source[10], 128)
    assert frames.shape == (25, 128, 128, 3)
    assert np.abs(frames[10].astype(int) - expected).mean() < 6  # H.264 round trip


def test_second_run_skips_everything_and_changes_nothing(dataset, videos):
    out, first = dataset
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    report = preprocess_videos(videos, out, **RUN)
    assert (report.processed, report.skipped) == (0, 4)
    assert report.records == first.records and report.failed == first.failed
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == {p: content for p, (content, _) in before.items()}
    clip_files = [p for p in before if p.parent.name == "clips"]
    assert all(p.stat().st_mtime_ns == before[p][1] for p in clip_files)  # not even rewritten


def test_changed_split_ratios_update_records_without_redoing_clips(dataset, videos, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(dataset[0], out)
    report = preprocess_videos(videos, out, split_ratios=(0.0, 0.0, 1.0), **RUN)
    assert (report.processed, report.skipped) == (0, 4)
    assert {r.split for r in read_manifest(out)} == {"test"}
    assert check_dataset(out).ok


# ---------------------------------------------------------------------------------------------------------------------
# Fast runs with a stand-in detector: rejection, resume after damage, shards, CLI
# ---------------------------------------------------------------------------------------------------------------------
class _FakeDetector:
    """Sees a fixed upper body in any frame that is not flat (the grey frames of ``_pan_zoom``)."""

    def __init__(self, static_image_mode: bool = True):
        pass

    def detect(self, image):
        h, w = image.shape[:2]
        if image.std() < 1:
            return np.zeros((NUM_KEYPOINTS, 2), np.float32), np.zeros(NUM_KEYPOINTS, np.float32)
        shoulders = ((0.3 * w, 0.7 * h), (0.7 * w, 0.7 * h))
        return _upper_body(shoulders=shoulders, face_box=(0.4 * w, 0.2 * h, 0.6 * w, 0.45 * h))

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


@pytest.fixture
def fake_detector(monkeypatch):
    monkeypatch.setattr(preprocess, "MediaPipeDetector", _FakeDetector)


@pytest.fixture(scope="module")
def small_videos(tmp_path_factory) -> Path:
    """a/one.mp4, a/two.mp4, b/ghost.mp4 (a person on the first 30 frames only), all 2 s; b/short.mp4 (0.4 s)."""
    root = tmp_path_factory.mktemp("small")
    _write_video(root / "a" / "one.mp4", 2.0, 25, 96, 64, seed=3)
    _write_video(root / "a" / "two.mp4", 2.0, 25, 64, 96, seed=4)
    _write_video(root / "b" / "ghost.mp4", 2.0, 25, 64, 64, seed=5, person_frames=30)
    _write_video(root / "b" / "short.mp4", 0.4, 25, 64, 64, seed=6)
    return root


FAST = dict(size=64, max_seconds=1.0, min_seconds=0.5, progress=False)


def test_rejected_clips_are_reported_and_not_redone(small_videos, tmp_path, fake_detector):
    out = tmp_path / "ds"
    report = preprocess_videos(small_videos, out, **FAST)
    assert [r.id for r in report.records] == ["ghost-000", "one-000", "one-001", "two-000", "two-001"]
    assert report.rejected == [
        ("ghost-001", "only 20% of frames show a face or both shoulders (need 50%)"),
        ("short", "video lasts 0.40 s, shorter than the 0.5 s minimum"),
    ]
    saved = json.loads((out / REPORT_NAME).read_text())
    assert [(r["clip"], r["path"]) for r in saved["rejected"]] == [
        ("ghost-001", "b/ghost.mp4"),
        ("short", "b/short.mp4"),
    ]
    assert check_dataset(out).ok
    again = preprocess_videos(small_videos, out, **FAST)
    assert (again.processed, again.skipped) == (0, 6)  # 5 clips + the rejected ghost-001
    assert again.rejected == report.rejected


def test_damaged_clip_is_redone(small_videos, tmp_path, fake_detector):
    out = tmp_path / "ds"
    preprocess_videos(small_videos, out, **FAST)
    (out / "clips" / "one-001.wav").write_bytes(b"garbage")
    (out / "records" / "two-000.json").unlink()  # interrupted after the files, before the record
    report = preprocess_videos(small_videos, out, **FAST)
    assert (report.processed, report.skipped) == (2, 4)
    assert check_dataset(out).ok


def test_dataset_inside_the_videos_folder_is_not_input(small_videos, tmp_path, fake_detector):
    import shutil

    videos = tmp_path / "videos"
    shutil.copytree(small_videos / "a", videos / "a")
    first = preprocess_videos(videos, videos / "dataset", **FAST)
    again = preprocess_videos(videos, videos / "dataset", **FAST)
    assert (first.processed, again.processed, again.skipped) == (4, 0, 4)
    assert [r.id for r in again.records] == ["one-000", "one-001", "two-000", "two-001"]


def test_shards_merge_into_the_single_run_manifest(small_videos, tmp_path, fake_detector):
    single = preprocess_videos(small_videos, tmp_path / "single", **FAST)
    first = preprocess_videos(small_videos, tmp_path / "sharded", shard=(0, 2), **FAST)
    second = preprocess_videos(small_videos, tmp_path / "sharded", shard=(1, 2), **FAST)
    assert {r.id for r in first.records} < {r.id for r in single.records}
    _assert_same_records(second.records, single.records, tmp_path / "sharded", tmp_path / "single")
    assert read_manifest(tmp_path / "sharded") == second.records


def _assert_same_records(records, expected, root, expected_root):
    """Identical records except two file hashes, compared by content instead: the keypoint npz (zip entries carry a
    timestamp) and the video (x264 is not always byte-identical run to run under load; the decoded pictures are)."""
    assert [r.id for r in records] == [r.id for r in expected]
    for rec, exp in zip(records, expected):
        assert {**rec.sha256, "keypoints": "", "video": ""} == {**exp.sha256, "keypoints": "", "video": ""}
        assert_same_pictures(
            read_video_frames(rec.path(root, "video")), read_video_frames(exp.path(expected_root, "video"))
        )
        assert (rec.split, rec.speaker, rec.num_frames, rec.source, rec.meta) == (
            exp.split,
            exp.speaker,
            exp.num_frames,
            exp.source,
            exp.meta,
        )
        a, b = PoseSequence.load(rec.path(root, "keypoints")), PoseSequence.load(exp.path(expected_root, "keypoints"))
        np.testing.assert_array_equal(a.keypoints, b.keypoints)


def test_cli_preprocess(small_videos, tmp_path, fake_detector, capsys):
    out = tmp_path / "ds"
    args = ["data", "preprocess", str(small_videos), "-o", str(out), "--size", "64", "--max-seconds", "0"]
    code = main([*args, "--crop-left", "0", "--split-ratios", "0,1,0", "--speaker-from", "filename", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0 and "processed 3 clip(s), skipped 0 (already done), rejected 1, failed 0" in printed
    records = read_manifest(out)
    assert [(r.id, r.num_frames, r.split, r.speaker) for r in records] == [
        ("ghost-000", 50, "val", "ghost"),
        ("one-000", 50, "val", "one"),
        ("two-000", 50, "val", "two"),
    ]
    assert records[1].meta["crop"] == [0, 0, 64]  # --crop-left 0 on a 96 x 64 video
    assert records[2].meta["crop"] == [0, 0, 64]  # portrait 64 x 96: the top rows


def test_cli_rejects_malformed_shard_and_ratios(capsys):
    # Values of the right form but out of range (--shard 2/2) are library errors: tests/data/test_cli_data_errors.py.
    for bad in (["--shard", "x"], ["--split-ratios", "a,b,c"]):
        with pytest.raises(SystemExit):
            main(["data", "preprocess", "in", "-o", "out", *bad])
    assert "I/N" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------------
# Slow: real detector in worker processes
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_workers_and_shards_match_a_single_run(videos, tmp_path):
    out = tmp_path / "single"
    single = preprocess_videos(videos, out, **RUN)
    pooled = preprocess_videos(videos, tmp_path / "pooled", workers=2, **RUN)
    _assert_same_records(pooled.records, single.records, tmp_path / "pooled", out)
    first = preprocess_videos(videos, tmp_path / "sharded", shard=(0, 2), **RUN)  # talk.mp4, zoom.mkv
    second = preprocess_videos(videos, tmp_path / "sharded", shard=(1, 2), **RUN)  # broken.mp4
    assert (first.processed, first.failed, second.processed) == (4, [], 0)
    _assert_same_records(second.records, single.records, tmp_path / "sharded", out)
    saved = json.loads((tmp_path / "sharded" / REPORT_NAME).read_text())
    assert saved == json.loads((out / REPORT_NAME).read_text())

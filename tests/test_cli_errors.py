"""Bad input files: a one-line error naming the file and the problem, exit status 1, and no output file."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mmgt.utils.video_writer import save_video


def _run(*argv):
    return subprocess.run([sys.executable, "-m", "mmgt", *argv], capture_output=True, text=True)


@pytest.fixture
def bad_files(tmp_path):
    good = save_video(tmp_path / "good.mp4", np.full((10, 32, 32, 3), 128, np.uint8))
    files = {"missing": tmp_path / "missing.wav", "empty": tmp_path / "empty.wav", "corrupt": tmp_path / "corrupt.mp4"}
    files["empty"].write_bytes(b"")
    files["corrupt"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # truncated mid-stream
    return files


@pytest.mark.parametrize("kind, problem", [("missing", "not found"), ("empty", "empty"), ("corrupt", "")])
def test_audio_features_bad_input(bad_files, tmp_path, kind, problem):
    out = tmp_path / "feats.npz"
    res = _run("audio", "features", str(bad_files[kind]), "-o", str(out))
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("mmgt: error:")]
    assert len(lines) == 1 and bad_files[kind].name in lines[0] and problem in lines[0]
    assert not out.exists() and not any(p.name.startswith(".feats") for p in tmp_path.iterdir())


@pytest.mark.parametrize("kind", ["missing", "empty", "corrupt"])
def test_pose_extract_bad_video(bad_files, tmp_path, kind):
    path = bad_files[kind].with_suffix(".mp4")
    if kind != "corrupt":
        bad_files[kind].rename(path) if bad_files[kind].exists() else None
    out = tmp_path / "poses.npz"
    res = _run("pose", "extract", str(path), "-o", str(out))
    assert res.returncode == 1
    error = [ln for ln in res.stderr.splitlines() if ln.startswith("mmgt: error:")]
    assert len(error) == 1 and path.name in error[0]
    assert not out.exists()


def test_pose_render_missing_pose_file(tmp_path):
    res = _run("pose", "render", str(tmp_path / "nope.npz"), "-o", str(tmp_path / "p.mp4"))
    assert res.returncode == 1 and "nope.npz: pose file not found" in res.stderr
    assert not (tmp_path / "p.mp4").exists()


def test_pose_render_writes_exactly_n_frames(tmp_path):
    from mmgt.constants import NUM_KEYPOINTS
    from mmgt.contracts import PoseSequence
    from mmgt.utils.video_io import probe_video

    rng = np.random.default_rng(0)
    PoseSequence(rng.uniform(100, 400, (37, NUM_KEYPOINTS, 2)), np.ones((37, NUM_KEYPOINTS)), 512, 512).save(
        tmp_path / "p.npz"
    )
    res = _run(
        "pose",
        "render",
        str(tmp_path / "p.npz"),
        "-o",
        str(tmp_path / "pose.mp4"),
        "--masks-dir",
        str(tmp_path / "masks"),
        "--size",
        "128",
    )
    assert res.returncode == 0, res.stderr
    for video in [tmp_path / "pose.mp4", *(tmp_path / "masks" / f"{n}.mp4" for n in ("lips", "face_hands", "hands"))]:
        info = probe_video(video)
        assert (info.num_frames, info.width, info.height) == (37, 128, 128)

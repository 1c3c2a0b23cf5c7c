"""The dataset format: write_clip -> manifest -> check, and what check catches."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from mmgt.constants import BODY_INDEX, FACE, NUM_KEYPOINTS
from mmgt.contracts import PoseSequence
from mmgt.data.check import check_dataset
from mmgt.data.manifest import ClipRecord, read_manifest, write_clip, write_manifest
from mmgt.errors import MediaError


def _clip(num_frames: int = 10, size: int = 32, visible: bool = True):
    frames = np.zeros((num_frames, size, size, 3), np.uint8)
    frames[:, :, :, 0] = np.linspace(0, 255, num_frames, dtype=np.uint8)[:, None, None]
    kp = np.full((num_frames, NUM_KEYPOINTS, 2), size / 2, np.float32)
    scores = np.zeros((num_frames, NUM_KEYPOINTS), np.float32)
    if visible:
        scores[:, [BODY_INDEX["right_shoulder"], BODY_INDEX["left_shoulder"], *FACE]] = 1.0
    wave = (0.1 * np.sin(np.arange(num_frames * 640) / 5)).astype(np.float32)
    return frames, wave, PoseSequence(kp, scores, size, size)


def _dataset(tmp_path, n=3):
    records = []
    for i in range(n):
        frames, wave, pose = _clip()
        split = ("train", "val", "test")[i % 3]
        records.append(
            write_clip(
                tmp_path,
                f"c{i}",
                frames=frames,
                wave=wave,
                sample_rate=16000,
                pose=pose,
                split=split,
                speaker=f"s{i % 2}",
            )
        )
    write_manifest(tmp_path, records)
    return records


def test_write_clip_files_and_record(tmp_path):
    rec = _dataset(tmp_path, 1)[0]
    assert (rec.num_frames, rec.width, rec.fps, rec.duration_s) == (10, 32, 25.0, 0.4)
    assert sf.info(str(tmp_path / rec.audio)).frames == 6400  # frame-exact: 10 frames = 0.4 s at 16 kHz
    assert set(rec.sha256) == {"video", "audio", "keypoints"}
    assert read_manifest(tmp_path) == [rec]


def test_manifest_roundtrip_split_filter_and_errors(tmp_path):
    records = _dataset(tmp_path)
    assert [r.id for r in read_manifest(tmp_path, "val")] == ["c1"]
    with pytest.raises(ValueError, match="duplicate"):
        write_manifest(tmp_path, records + records[:1])
    (tmp_path / "manifest.jsonl").write_text(records[0].to_json() + "\n{not json\n")
    with pytest.raises(MediaError, match="manifest.jsonl:2"):
        read_manifest(tmp_path)
    with pytest.raises(ValueError, match="split"):
        ClipRecord.from_dict({**json.loads(records[0].to_json()), "split": "dev"})


def test_check_passes_on_valid_dataset(tmp_path):
    _dataset(tmp_path)
    report = check_dataset(tmp_path)
    assert report.ok, report.table()
    table = report.table()
    assert "train" in table and "all" in table and "32x32@25" in table


def test_check_catches_each_problem(tmp_path):
    records = _dataset(tmp_path)
    (tmp_path / records[0].video).unlink()  # missing file
    sf.write(tmp_path / records[1].audio, np.zeros(16000, np.float32), 16000)  # 1 s audio for 0.4 s of video
    frames, wave, pose = _clip(visible=False)
    pose.save(tmp_path / records[2].keypoints)  # nobody visible
    report = check_dataset(tmp_path, checksums=False)
    assert not report.ok
    assert any("missing video" in p for p in report.problems["c0"])
    assert any("audio lasts 1.000 s" in p for p in report.problems["c1"])
    assert any("0% of frames" in p for p in report.problems["c2"])
    assert any("checksum" in p for p in check_dataset(tmp_path).problems["c1"])


def test_check_cli_exit_codes(tmp_path, capsys):
    from mmgt.cli import main

    _dataset(tmp_path)
    assert main(["data", "check", str(tmp_path)]) == 0
    assert "OK" in capsys.readouterr().out
    (tmp_path / "clips" / "c0.npz").unlink()
    assert main(["data", "check", str(tmp_path)]) == 1
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 1
    assert "manifest not found" in capsys.readouterr().err

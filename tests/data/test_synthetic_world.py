"""Clips, identities, the dataset writer (determinism across runs and worker counts) and ``mmgt synth``."""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import pytest

from mmgt.constants import BODY_INDEX, FACE_OFFSET, num_frames_for
from mmgt.data.synthetic.world import (
    clip_seed,
    clip_split,
    generate_clip,
    make_identities,
    reference_image,
    write_synthetic_dataset,
)
from mmgt.errors import MmgtError


def test_generate_clip_is_deterministic_and_consistent():
    person = make_identities(1, seed=3)[0]
    a = generate_clip(11, 1.3, 64, person)
    b = generate_clip(11, 1.3, 64, person)
    np.testing.assert_array_equal(a.wave, b.wave)
    np.testing.assert_array_equal(a.pose.keypoints, b.pose.keypoints)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.events == b.events
    assert len(a.wave) == round(1.3 * 16000) and a.sample_rate == 16000
    assert a.frames.shape == (num_frames_for(len(a.wave), 16000), 64, 64, 3) == (33, 64, 64, 3)
    assert a.pose.num_frames == 33 and a.pose.width == 64
    json.dumps(a.events)  # metadata must be JSON-serialisable
    assert len(a.events["gestures"]) == len(a.events["drive_stressed_s"])
    c = generate_clip(12, 1.3, 64, person)
    assert not np.array_equal(a.wave, c.wave)


def test_decoupled_body_keeps_the_mouth_on_the_speech_and_moves_the_body_to_another_utterance():
    person = make_identities(1, seed=3)[0]
    coupled = generate_clip(11, 4.0, 128, person)
    decoupled = generate_clip(11, 4.0, 128, person, decoupled_body=True)
    np.testing.assert_array_equal(coupled.wave, decoupled.wave)  # the same speech
    assert decoupled.events["drive_stressed_s"] == coupled.events["drive_stressed_s"]
    body = decoupled.events["body_stressed_s"]
    assert body and body != coupled.events["drive_stressed_s"]
    # The beat gestures (and nods) sit on the unheard utterance's stressed onsets, not on this clip's.
    assert [g["onset_s"] for g in decoupled.events["gestures"]] == body
    assert [g["onset_s"] for g in coupled.events["gestures"]] == coupled.events["drive_stressed_s"]

    def lip_gap(clip):  # inner lips, top and bottom middle points (face 62, 66), in pixels
        kp = clip.pose.keypoints
        return np.linalg.norm(kp[:, FACE_OFFSET + 66] - kp[:, FACE_OFFSET + 62], axis=1)

    # The mouth opens with the clip's own speech either way (head rotation only changes the projection a little) ...
    assert np.corrcoef(lip_gap(coupled), lip_gap(decoupled))[0, 1] > 0.95
    assert np.abs(lip_gap(decoupled) - lip_gap(coupled)).max() < 0.5
    # ... while the wrists follow different gestures.
    wrists = [BODY_INDEX["right_wrist"], BODY_INDEX["left_wrist"]]
    assert np.abs(decoupled.pose.keypoints[:, wrists] - coupled.pose.keypoints[:, wrists]).max() > 5.0


def test_identities_are_deterministic_prefix_stable_and_distinct():
    three = make_identities(3, seed=0)
    assert make_identities(3, seed=0) == three
    assert make_identities(2, seed=0) == three[:2]  # adding identities keeps the earlier ones
    assert [p.name for p in three] == ["speaker00", "speaker01", "speaker02"]
    shirts = np.array([p.appearance.shirt for p in three], dtype=int)
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(shirts[i] - shirts[j]).sum() > 60
    assert make_identities(1, seed=1)[0] != three[0]
    with pytest.raises(MmgtError, match="identities"):
        make_identities(0, seed=0)


def test_splits_and_seeds():
    assert [clip_split(i) for i in range(12)] == ["test"] + ["train"] * 4 + ["val"] + ["train"] * 4 + ["test", "train"]
    # With 4 identities (clip i -> identity i % 4) every identity gets 10 % test and 10 % val clips.
    for identity in range(4):
        splits = [clip_split(i, 4) for i in range(identity, 200, 4)]
        assert (splits.count("test"), splits.count("val"), splits.count("train")) == (5, 5, 40)
    assert clip_seed(0, 1) == clip_seed(0, 1) != clip_seed(0, 2) != clip_seed(1, 2)


def test_dataset_is_byte_identical_across_runs_and_worker_counts(tmp_path):
    manifest = pytest.importorskip("mmgt.data.manifest")
    a = write_synthetic_dataset(
        tmp_path / "a", clips=2, seconds=0.8, size=64, seed=5, identities=2, workers=1, progress=False
    )
    b = write_synthetic_dataset(
        tmp_path / "b", clips=2, seconds=0.8, size=64, seed=5, identities=2, workers=2, progress=False
    )
    assert [r.id for r in a] == ["synth_00000", "synth_00001"]
    assert [r.split for r in a] == ["test", "train"] and [r.speaker for r in a] == ["speaker00", "speaker01"]
    for ra, rb in zip(a, b):
        for kind in ("audio", "keypoints"):
            assert ra.path(tmp_path / "a", kind).read_bytes() == rb.path(tmp_path / "b", kind).read_bytes()
    assert (tmp_path / "a/manifest.jsonl").read_bytes() == (tmp_path / "b/manifest.jsonl").read_bytes()
    records = manifest.read_manifest(tmp_path / "a")
    assert [r.num_frames for r in records] == [20, 20] and records[0].meta["identity"] == "speaker00"
    config = json.loads((tmp_path / "a/synth_config.json").read_text())
    assert config["seed"] == 5 and config["clips"] == 2 and len(config["identities"]) == 2
    still = cv2.cvtColor(cv2.imread(str(tmp_path / "a/identities/speaker01.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(still, reference_image(make_identities(2, seed=5)[1], 64))
    # The stored keypoints are those of the clip the generator makes for that seed.
    from mmgt.contracts import PoseSequence

    clip = generate_clip(records[1].meta["seed"], 0.8, 64, make_identities(2, seed=5)[1])
    np.testing.assert_array_equal(
        PoseSequence.load(records[1].path(tmp_path / "a", "keypoints")).keypoints, clip.pose.keypoints
    )


def test_bad_arguments(tmp_path):
    with pytest.raises(MmgtError, match="clips"):
        write_synthetic_dataset(tmp_path, clips=0, seconds=1.0, size=64, seed=0, progress=False)
    with pytest.raises(MmgtError, match="size"):
        generate_clip(0, 1.0, 8, make_identities(1, 0)[0])


def test_cli_synth(tmp_path, capsys):
    pytest.importorskip("mmgt.data.manifest")
    from mmgt.cli import synth

    parser = argparse.ArgumentParser(prog="mmgt")
    synth.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "synth",
            "--out",
            str(tmp_path / "ds"),
            "--clips",
            "1",
            "--seconds",
            "0.4",
            "--size",
            "64",
            "--seed",
            "2",
            "--identities",
            "1",
            "--quiet",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("wrote 1 clips (0 train / 0 val / 1 test) of 0.4 s at 64px") and out.endswith(" s")
    assert (tmp_path / "ds/clips/synth_00000.mp4").is_file() and (tmp_path / "ds/manifest.jsonl").is_file()


def test_cli_synth_decoupled_body_is_recorded_and_changes_only_the_motion(tmp_path):
    from mmgt.cli import synth
    from mmgt.data.manifest import read_manifest

    parser = argparse.ArgumentParser(prog="mmgt")
    synth.register(parser.add_subparsers())
    common = ["--clips", "1", "--seconds", "2", "--size", "64", "--identities", "1", "--quiet"]
    for name, extra in (("plain", []), ("decoupled", ["--decoupled-body"])):
        args = parser.parse_args(["synth", "--out", str(tmp_path / name), *common, *extra])
        assert args.func(args) == 0
    config = {n: json.loads((tmp_path / n / "synth_config.json").read_text()) for n in ("plain", "decoupled")}
    assert "decoupled_body" not in config["plain"] and config["decoupled"]["decoupled_body"] is True
    plain, decoupled = (read_manifest(tmp_path / n)[0] for n in ("plain", "decoupled"))
    assert (tmp_path / "plain" / plain.audio).read_bytes() == (tmp_path / "decoupled" / decoupled.audio).read_bytes()
    assert (tmp_path / "plain" / plain.keypoints).read_bytes() != (
        tmp_path / "decoupled" / decoupled.keypoints
    ).read_bytes()

"""Frozen id lists (test_ids.txt): reading, writing, choosing the listed clips, and `mmgt eval ... --ids`."""

from __future__ import annotations

import json
import logging

import pytest

from builders import tiny_stage1, tiny_stage2
from mmgt.cli import main
from mmgt.data.id_list import ListedClip, read_test_ids, select_listed, write_test_ids
from mmgt.data.manifest import read_manifest
from mmgt.errors import MediaError, MmgtError
from mmgt.training.validate_stage2 import evaluate_stage2


def test_write_then_read_round_trips_sorted_with_checksums(synth_dataset, tmp_path):
    records = read_manifest(synth_dataset, "test")
    path = write_test_ids(tmp_path / "ids.txt", records[::-1], comment="from the synthetic set")
    lines = path.read_text().splitlines()
    assert lines[:2] == ["# from the synthetic set", "# clip_id\tframes\tvideo_sha256\taudio_sha256"]
    listed = read_test_ids(path)
    assert listed == [ListedClip(r.id, r.num_frames, r.sha256["video"], r.sha256["audio"]) for r in records]


def test_a_hand_written_list_of_ids(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("# my subset\n\nclip-b\n  clip-a  \n")
    assert read_test_ids(path) == [ListedClip("clip-b"), ListedClip("clip-a")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a 10 x\n", ":1: expected a clip id, or id, frames, video and audio sha256"),
        ("a\nb\na\n", ":3: clip a is listed twice"),
        ("a 0 x y\n", ":1: frames must be a positive integer, got '0'"),
        ("# nothing\n", "the id list names no clip"),
    ],
)
def test_bad_lists_name_the_line(tmp_path, text, message):
    path = tmp_path / "ids.txt"
    path.write_text(text)
    with pytest.raises(MmgtError, match=message):
        read_test_ids(path)


def test_missing_list(tmp_path):
    with pytest.raises(MediaError, match="nope.txt: id list not found"):
        read_test_ids(tmp_path / "nope.txt")


def test_select_listed_keeps_the_records_order_and_checks_the_clips(synth_dataset, caplog):
    records = read_manifest(synth_dataset, "train")
    a, b = records[1], records[4]
    exact = [ListedClip(b.id, b.num_frames, b.sha256["video"], b.sha256["audio"]), ListedClip(a.id)]
    assert select_listed(records, exact, "train") == [a, b]
    assert select_listed(records, None, "train") == records
    with pytest.raises(MmgtError, match=r"1 of 2 listed clip\(s\) are not in the train split: nope"):
        select_listed(records, [ListedClip(a.id), ListedClip("nope")], "the train split")
    with pytest.raises(MmgtError, match=f"1 listed clip.s. have another frame count in train: {a.id}"):
        select_listed(records, [ListedClip(a.id, a.num_frames + 1, "x", "y")], "train")
    with caplog.at_level(logging.WARNING):
        assert select_listed(records, [ListedClip(a.id, a.num_frames, "0" * 64, a.sha256["audio"])], "train") == [a]
    warning = "1 listed clip(s) differ in content from the list's checksums (another download or FFmpeg build)"
    assert f"{warning}: {a.id}" in caplog.text


@pytest.fixture(scope="module")
def stage1_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("s1") / "model"
    tiny_stage1(window=16).save_pretrained(path)
    return path


def test_eval_stage1_evaluates_exactly_the_listed_clips(synth_dataset, stage1_model, tmp_path, capsys):
    second = read_manifest(synth_dataset, "test")[1]
    ids = write_test_ids(tmp_path / "test_ids.txt", [second])
    out = tmp_path / "m.json"
    argv = ["eval", "stage1", "--model", str(stage1_model), "--data", str(synth_dataset), "--steps", "1"]
    assert main([*argv, "--conditions", "model", "--ids", str(ids), "-o", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["clips"] == [second.id] and payload["ids"] == str(ids)
    assert capsys.readouterr().out.startswith(f"1 clips of {synth_dataset} (test)")

    (tmp_path / "other.txt").write_text(f"{second.id}\nnot-a-clip\n")
    assert main([*argv, "--ids", str(tmp_path / "other.txt")]) == 1
    err = capsys.readouterr().err.strip()  # one line, before the model is loaded (no progress bar)
    assert err == f"mmgt: error: 1 of 2 listed clip(s) are not in the test split of {synth_dataset}: not-a-clip"
    (tmp_path / "bad.txt").write_text("a 1 2\n")
    assert main([*argv, "--ids", str(tmp_path / "bad.txt")]) == 1
    expected = f"mmgt: error: {tmp_path / 'bad.txt'}:1: expected a clip id, or id, frames, video and audio sha256"
    assert capsys.readouterr().err.strip() == expected


def test_eval_stage2_takes_the_list_too(synth_dataset):
    second = read_manifest(synth_dataset, "test")[1]
    listed = [ListedClip(second.id)]
    kw = dict(num_frames=2, size=32, conditions=("audio",), num_inference_steps=1)
    assert evaluate_stage2(tiny_stage2(), synth_dataset, "test", ids=listed, **kw)["clips"] == [second.id]
    with pytest.raises(MmgtError, match="not in the val split"):
        evaluate_stage2(tiny_stage2(), synth_dataset, "val", ids=listed, **kw)

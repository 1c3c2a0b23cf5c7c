"""`mmgt train ...` and `mmgt eval ...` answer bad input before any work: one `mmgt: error:` line, a non-zero exit and
no run folder; a dataset without a val split trains with one warning (an evaluation of that split stops)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import torch

from builders import tiny_stage1, tiny_stage2
from mmgt.cli import main
from mmgt.errors import DEBUG_ENV, ConfigError
from mmgt.models.stage2_presets import build_components

TRAIN_COMMANDS = ("stage1", "pose-ae", "vae", "stage2-image", "stage2-video")
EVAL_COMMANDS = ("eval-stage1", "eval-stage2")
EXPORTED = {  # a file that only a complete export holds
    "stage1": "stage1/stage1/final/model_index.json",
    "pose-ae": "ae/training_report.json",
    "vae": "vae/tiny/final/config.json",
    "stage2-image": "stage2/tiny_image/final/unet/config.json",
    "stage2-video": "stage2/tiny_video/final/model_index.json",
}
CASES = ("misspelt_key", "wrong_type", "missing_dataset", "no_val_split", "unwritable_output")


@pytest.fixture(scope="module")
def inputs(synth_dataset, tmp_path_factory):
    """Datasets (the synthetic one, and the same without its val clip), model folders and a file in the way."""
    root = tmp_path_factory.mktemp("cli_inputs")
    no_val = root / "no_val"
    no_val.mkdir()
    (no_val / "clips").symlink_to(synth_dataset / "clips")
    rows = (synth_dataset / "manifest.jsonl").read_text().splitlines()
    kept = [r for r in rows if r.strip() and json.loads(r)["split"] != "val"]
    assert len(kept) < len(rows)
    (no_val / "manifest.jsonl").write_text("\n".join(kept) + "\n")
    torch.manual_seed(0)
    parts = build_components("tiny")
    image_export = root / "image_export"  # random weights laid out as `mmgt train stage2 --step image` exports them
    for name in ("unet", "reference_unet", "pose_guider", "vae", "image_encoder"):
        parts[name].save_pretrained(image_export / name)
    tiny_stage1(window=16).save_pretrained(root / "stage1_model")
    tiny_stage2().save_pretrained(root / "stage2_model")
    (root / "a_file").write_text("not a folder")
    return {"data": synth_dataset, "no_val": no_val, "root": root, "image_export": image_export}


def _argv(command: str, data, out, inputs) -> list[str]:
    """A tiny, fast run of ``command`` on dataset ``data`` writing under ``out``."""
    run = [f"data.root={data}", f"output_root={out}", "max_steps=1", "checkpoint_every=1", "validation.every=1"]
    stage2 = [*run, "data.size=64", "batch_size=1", "validation.num_frames=2", "validation.num_inference_steps=1"]
    eval_common = ["--data", str(data), "--split", "val", "--clips", "1", "--steps", "1", "-o", str(out / "m.json")]
    return {
        "stage1": [
            "train", "stage1", *run, "batch_size=2", "data.window_frames=16", "validation.num_clips=1",
            "validation.num_inference_steps=1", "model.overrides.hidden_dim=32", "model.overrides.num_layers=1",
            "model.overrides.num_heads=2", "model.overrides.ff_dim=64",
        ],
        "pose-ae": ["train", "pose-ae", str(data), "-o", str(out / "ae"), "--steps", "2", "--batch-size", "4"],
        "vae": [
            "train", "vae", "--config", "configs/vae/tiny.yaml", *run, "batch_size=1", "data.size=64",
            "validation.num_frames=2", "scaling_frames=2",
        ],
        "stage2-image": [
            "train", "stage2", "--step", "image", "--config", "configs/stage2/tiny_image.yaml", *stage2,
            f"vae={inputs['image_export'] / 'vae'}", "data.min_gap=5", "data.samples_per_clip=1",
        ],
        "stage2-video": [
            "train", "stage2", "--step", "video", "--config", "configs/stage2/tiny_video.yaml", *stage2,
            f"init_from={inputs['image_export']}", "data.num_frames=4", "data.samples_per_clip=1",
        ],
        "eval-stage1": ["eval", "stage1", "--model", str(inputs["root"] / "stage1_model"), *eval_common,
                        "--conditions", "model"],
        "eval-stage2": ["eval", "stage2", "--model", str(inputs["root"] / "stage2_model"), *eval_common,
                        "--frames", "2", "--size", "64", "--conditions", "audio"],
    }[command]  # fmt: skip


def _mistake(argv: list[str], case: str, inputs, tmp_path) -> list[str]:
    """``argv`` with one mistake of kind ``case``."""
    options = argv[1] == "pose-ae" or argv[0] == "eval"  # argparse options instead of key=value overrides
    if case == "misspelt_key":
        return [*argv, "--stepz", "1"] if options else [*argv, "max_stepz=1"]
    if case == "wrong_type":
        return [*argv, "--steps", "abc"] if options else [*argv, "max_steps=abc"]
    if case == "missing_dataset":
        return [a.replace(str(inputs["data"]), str(tmp_path / "no_such_dataset")) for a in argv]
    if case == "no_val_split":
        return [a.replace(str(inputs["data"]), str(inputs["no_val"])) for a in argv]
    blocked = inputs["root"] / "a_file" / "out"  # unwritable: a regular file where a parent folder must go
    return [a.replace(str(tmp_path / "out"), str(blocked)) for a in argv]


def _run(argv: list[str], capsys) -> tuple[int, list[str]]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse mistakes
        code = e.code
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("mmgt: error:")]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("command", TRAIN_COMMANDS + EVAL_COMMANDS)
def test_bad_input_fails_in_one_line_before_any_work(command, case, inputs, tmp_path, capsys, caplog):
    out = tmp_path / "out"
    argv = _mistake(_argv(command, inputs["data"], out, inputs), case, inputs, tmp_path)
    with caplog.at_level(logging.WARNING):
        code, errors = _run(argv, capsys)
    warnings = [r for r in caplog.records if r.name.startswith("mmgt") and r.levelno >= logging.WARNING]
    if case == "no_val_split" and command in TRAIN_COMMANDS:
        # Trains, exports, and says once that the split is missing (pose-ae: its report lacks the val error).
        assert (code, errors) == (0, [])
        assert len(warnings) == 1 and "no clips in split 'val'" in warnings[0].getMessage()
        assert (out / EXPORTED[command]).is_file()
        return
    assert code not in (0, None) and len(errors) == 1, errors
    assert not warnings
    if case == "misspelt_key":
        assert "stepz" in errors[0]
    if case == "wrong_type":
        assert "abc" in errors[0]
    if case == "missing_dataset":
        assert "no_such_dataset" in errors[0]
    if case == "unwritable_output":
        assert "a_file" in errors[0] and "is a file" in errors[0]
    assert not out.exists()  # no partial run folder (nor a metrics file)


def test_the_real_command_prints_one_line_and_debug_reraises(tmp_path):
    """End to end through `python -m mmgt`: exactly one stderr line; --debug (anywhere) lets the exception through."""
    argv = ["train", "stage1", f"output_root={tmp_path}", "max_stepz=2"]
    res = subprocess.run([sys.executable, "-m", "mmgt", *argv], capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        "mmgt: error: override 'max_stepz=2': Key 'max_stepz' not in 'Stage1Train'. Did you mean: 'max_steps'?"
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(DEBUG_ENV, "0")  # restored (unset) afterwards, although main sets it
        with pytest.raises(ConfigError, match="max_stepz"):
            main([*argv, "--debug"])  # the traceback shows (the exception leaves main)
        assert os.environ[DEBUG_ENV] == "1"  # library code sees it too
    assert not any(tmp_path.iterdir())

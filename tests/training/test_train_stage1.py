"""`mmgt train stage1` end to end on a tiny synthetic dataset: checkpoints, export, and exact resume on CPU."""

from __future__ import annotations

import csv

import numpy as np

from mmgt.config import Stage1Train, load_config
from mmgt.pipelines.audio_to_pose import AudioToPosePipeline
from mmgt.training.common import latest_checkpoint
from mmgt.training.train_stage1 import main

TINY = [
    "model.overrides.hidden_dim=32",
    "model.overrides.num_layers=1",
    "model.overrides.num_heads=2",
    "model.overrides.ff_dim=64",
    "data.window_frames=16",
    "batch_size=4",
    "log_every=1",
    "checkpoint_every=2",
    "validation.every=0",
    "optim.warmup_steps=2",
]


def _cfg(root, out, name, steps, extra=()):
    return load_config(
        Stage1Train,
        overrides=[*TINY, f"data.root={root}", f"output_root={out}", f"name={name}", f"max_steps={steps}", *extra],
    )


def _losses(run_dir):
    with (run_dir / "train_log.csv").open() as f:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(f)}


def test_train_export_and_exact_resume(synth_dataset, tmp_path):
    validation = ["validation.every=4", "validation.num_clips=1", "validation.num_inference_steps=2"]
    final = main(_cfg(synth_dataset, tmp_path, "straight", 4, validation))
    straight = _losses(tmp_path / "stage1" / "straight")
    with (tmp_path / "stage1" / "straight" / "val_log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["4"] and {"lip_sync", "beat_align", "kp_l2", "pck"} <= set(rows[0])
    assert list((tmp_path / "stage1" / "straight" / "validation" / "step-0000004").glob("*_gt_vs_generated.mp4"))
    assert sorted(straight) == [1, 2, 3, 4] and all(np.isfinite(v) for v in straight.values())
    assert latest_checkpoint(tmp_path / "stage1" / "straight")[1] == 4
    assert (tmp_path / "stage1" / "straight" / "config.yaml").is_file()

    # Interrupted after 2 steps, then resumed to 4: the loss curve continues exactly.
    main(_cfg(synth_dataset, tmp_path, "resumed", 2))
    main(_cfg(synth_dataset, tmp_path, "resumed", 4), resume=True)
    resumed = _losses(tmp_path / "stage1" / "resumed")
    assert resumed == straight

    # The export is a self-describing pipeline that samples any length.
    pipe = AudioToPosePipeline.from_pretrained(final)
    assert pipe.denoiser.config.window_frames == 16 and pipe.config.audio_features["speech"]["type"] == "mel"
    from mmgt.contracts import PoseSequence
    from mmgt.data.manifest import read_manifest
    from mmgt.utils.audio_io import Audio

    rec = read_manifest(synth_dataset, "val")[0]
    ref = PoseSequence.load(synth_dataset / rec.keypoints)[0]
    out = pipe(Audio(np.zeros(16000 + 7, np.float32), 16000), ref, num_inference_steps=2, progress=False)
    assert out.poses.num_frames == 26


def test_new_run_refuses_to_overwrite_checkpoints(synth_dataset, tmp_path):
    import pytest

    main(_cfg(synth_dataset, tmp_path, "once", 2))
    with pytest.raises(ValueError, match="already holds checkpoints"):
        main(_cfg(synth_dataset, tmp_path, "once", 2))

"""What a run checks before its first step (values, outputs, disk space), and that the final export comes before the
final validation, whose failure is a warning."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import tempfile
from collections import namedtuple

import pytest
import torch
from accelerate import Accelerator
from diffusers import AutoencoderKL
from torch import nn

from mmgt.config import Stage1Train, Stage2Train, VaeTrain, load_config
from mmgt.errors import ConfigError, MmgtError
from mmgt.pipelines.audio_to_pose import AudioToPosePipeline
from mmgt.training import common, preflight, train_stage1, train_vae
from mmgt.training.common import checkpoint_size, start_run
from mmgt.utils.files import atomic_folder

STAGE1_TINY = [
    "model.overrides.hidden_dim=32",
    "model.overrides.num_layers=1",
    "model.overrides.num_heads=2",
    "model.overrides.ff_dim=64",
    "data.window_frames=16",
    "batch_size=2",
    "validation.num_clips=1",
    "validation.num_inference_steps=1",
]


@pytest.mark.parametrize(
    "schema, check, override, message",
    [
        (Stage1Train, preflight.check_stage1, "max_steps=-3", "max_steps must be > 0, got -3"),
        (Stage1Train, preflight.check_stage1, "optim.name=adam", "optim.name must be one of"),
        (Stage1Train, preflight.check_stage1, "model.preset=tinny", "did you mean 'tiny'"),
        (Stage1Train, preflight.check_stage1, "model.overrides.hiden_dim=8", "hiden_dim: not a GestureDenoiser"),
        (Stage1Train, preflight.check_stage1, "model.overrides.audio_dim=8", "audio_dim: set from the data"),
        (Stage1Train, preflight.check_stage1, "ema_decay=1.5", "ema_decay must be in [0.0, 1.0]"),
        (Stage1Train, preflight.check_stage1, "mixed_precision=fp8", "mixed_precision must be one of"),
        (VaeTrain, preflight.check_vae, "data.size=100", "data.size must be a multiple of 8"),
        (VaeTrain, preflight.check_vae, "validation.split=valid", "validation.split must be one of"),
        (VaeTrain, preflight.check_vae, "data.crop_scale=[0.5,1.5]", "data.crop_scale must be [low, high]"),
        (Stage2Train, preflight.check_stage2, "step=imag", "step must be one of ('image', 'video'), got 'imag'"),
        (Stage2Train, preflight.check_stage2, "preset=sd21", "preset must be one of"),
        (Stage2Train, preflight.check_stage2, "audio_placement=up", "audio_placement must be one of"),
        (Stage2Train, preflight.check_stage2, "objective.image_drop_prob=2", "image_drop_prob must be in"),
    ],
)
def test_bad_values_fail_in_one_line_naming_the_key(schema, check, override, message, tmp_path):
    cfg = load_config(schema, overrides=[override, f"output_root={tmp_path}", "data.root=/no/dataset"])
    with pytest.raises(ConfigError) as err:  # the values are checked before the (missing) dataset
        check(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_model_folders_are_named_before_the_data(tmp_path):
    cfg = load_config(Stage2Train, overrides=["step=video", f"init_from={tmp_path}", "data.root=/no/dataset"])
    with pytest.raises(MmgtError, match=r"init_from \(an image-step export\): missing .*unet \(folder not found\)"):
        preflight.check_stage2(cfg)
    cfg = load_config(Stage2Train, overrides=["step=image", "vae=null"])
    with pytest.raises(MmgtError, match=r"vae \(the <run>/final folder of `mmgt train vae`\): no folder given"):
        preflight.check_stage2(cfg)


def test_output_folders_that_cannot_be_written(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(MmgtError, match=f"output_root {blocker}/runs/x: cannot be created, {blocker} is a file"):
        preflight.check_writable(blocker / "runs" / "x", "output_root")
    preflight.check_writable(tmp_path / "new" / "deeper", "output_root")  # creatable: fine, and nothing is made
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]

    def refuse(*args, **kwargs):  # a read-only folder (chmod does not stop root, so the probe is replaced)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(MmgtError, match=f"cannot write in {tmp_path} \\(Permission denied\\)"):
        preflight.check_writable(tmp_path / "runs", "output_root")


def test_checkpoint_size_counts_the_state_and_adamw_moments():
    layer = nn.Linear(10, 10)  # 110 float32 parameters = 440 bytes
    assert checkpoint_size(layer) == 440 + 3 * 440  # state + 2 AdamW moments + the export
    assert checkpoint_size(layer, extra_copies=1) == 440 + 4 * 440  # + an EMA
    layer.weight.requires_grad_(False)
    assert checkpoint_size(layer) == 440 + 3 * 40  # frozen weights are saved once, with no optimiser state


def test_start_run_refuses_when_the_checkpoints_do_not_fit(tmp_path, monkeypatch):
    cfg = load_config(Stage1Train, overrides=[f"output_root={tmp_path}", "name=run", "max_steps=10"])
    cfg.checkpoint_every, cfg.checkpoints_total_limit = 2, 3  # 5 saves, at most 4 on disk at once
    needed = (4 + 1) * 1000  # the kept checkpoints + the export
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 0, needed - 1))
    with pytest.raises(MmgtError, match=r"4 checkpoints and the export need about .* GiB, but only .* GiB is free"):
        start_run(Accelerator(cpu=True), cfg, "stage1", False, checkpoint_bytes=1000)
    assert not any(tmp_path.iterdir())  # refused before the run folder exists
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 0, needed))
    start = start_run(Accelerator(cpu=True), cfg, "stage1", False, checkpoint_bytes=1000)
    assert start.step == 0 and (tmp_path / "stage1" / "run" / "config.yaml").is_file()


def test_a_missing_validation_split_is_one_warning_and_no_validation(synth_dataset, tmp_path, caplog):
    (tmp_path / "ds").mkdir()
    rows = (synth_dataset / "manifest.jsonl").read_text().splitlines()
    (tmp_path / "ds" / "manifest.jsonl").write_text("".join(f"{r}\n" for r in rows if json.loads(r)["split"] != "val"))
    overrides = [f"data.root={tmp_path / 'ds'}", f"output_root={tmp_path}", "validation.every=5"]
    with caplog.at_level(logging.WARNING):
        plan = preflight.check_stage1(load_config(Stage1Train, overrides=overrides))
    assert not plan.validate and plan.run_dir == tmp_path / "stage1" / "stage1"
    assert [r.getMessage() for r in caplog.records] == [
        f"stage1: {tmp_path / 'ds'} has no clips in split 'val': validation is skipped (the run still trains and "
        "exports)"
    ]
    plan = preflight.check_stage1(load_config(Stage1Train, overrides=[*overrides[:2], "validation.every=0"]))
    assert plan.validate is False
    assert len(caplog.records) == 1  # validation off: no split needed, no warning
    plan = preflight.check_stage1(load_config(Stage1Train, overrides=[f"data.root={synth_dataset}", overrides[1]]))
    assert plan.validate


def test_export_folder_is_complete_or_absent(tmp_path):
    final = tmp_path / "run" / "final"
    with pytest.raises(RuntimeError), atomic_folder(final) as tmp:
        (tmp / "half").mkdir(parents=True)
        raise RuntimeError("disk full")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())  # no partial export, no temp
    with atomic_folder(final) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("1")
    with atomic_folder(final) as tmp:  # a second export replaces the first whole
        tmp.mkdir()
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in final.iterdir()) == ["b"] and sorted(p.name for p in final.parent.iterdir()) == [
        "final"
    ]


def _fail(*args, **kwargs):
    raise RuntimeError("validation broke")


def test_stage1_validation_failures_are_warnings_and_the_export_is_complete(
    synth_dataset, tmp_path, monkeypatch, caplog
):
    exported_before = []

    def fail(pipe, dataset_root, out_dir, **kwargs):  # records whether the export was already complete
        exported_before.append((out_dir.parents[1] / "final" / "model_index.json").is_file())
        _fail()

    monkeypatch.setattr(train_stage1, "validate_stage1", fail)
    overrides = [*STAGE1_TINY, f"data.root={synth_dataset}", f"output_root={tmp_path}", "max_steps=2"]
    cfg = load_config(Stage1Train, overrides=[*overrides, "validation.every=1", "checkpoint_every=1", "log_every=1"])
    with caplog.at_level(logging.WARNING, logger="mmgt"):
        final = train_stage1.main(cfg)
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("mmgt")]
    assert warnings == [
        f"stage1 validation at step {step} failed (the run goes on): RuntimeError: validation broke" for step in (1, 2)
    ]  # the periodic one (step 1) and the final one
    assert exported_before == [False, True]  # the final validation ran after the export
    pipe = AudioToPosePipeline.from_pretrained(final)  # complete and loadable
    assert pipe.denoiser.config.window_frames == 16
    with (final.parent / "train_log.csv").open() as f:
        assert [row["step"] for row in csv.DictReader(f)] == ["1", "2"]  # training went on after step 1
    assert not (final.parent / "val_log.csv").exists()


def test_vae_final_validation_failure_keeps_the_export(synth_dataset, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(train_vae, "reconstructions", _fail)
    overrides = ["batch_size=1", "data.size=64", "validation.num_frames=2", "scaling_frames=2", "max_steps=1"]
    cfg = load_config(VaeTrain, overrides=[*overrides, f"data.root={synth_dataset}", f"output_root={tmp_path}"])
    with caplog.at_level(logging.WARNING, logger="mmgt"):
        final = train_vae.main(cfg)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("mmgt")] == [
        "vae validation at step 1 failed (the run goes on): RuntimeError: validation broke"
    ]
    vae = AutoencoderKL.from_pretrained(final)
    assert vae.config.scaling_factor != AutoencoderKL().config.scaling_factor  # the measured one was exported
    assert torch.isfinite(torch.tensor(vae.config.scaling_factor))


def test_resume_without_a_checkpoint_and_a_second_new_run_stop_before_any_work(synth_dataset, tmp_path):
    cfg = load_config(Stage1Train, overrides=[f"data.root={synth_dataset}", f"output_root={tmp_path}"])
    with pytest.raises(MmgtError, match="--resume: .* has no complete checkpoint"):
        preflight.check_stage1(cfg, resume=True)
    (tmp_path / "stage1" / "stage1" / common.CHECKPOINT_DIR / "step-0000001").mkdir(parents=True)
    with pytest.raises(MmgtError, match="already holds checkpoints; pass --resume"):
        preflight.check_stage1(cfg)

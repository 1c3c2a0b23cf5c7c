"""Training in 2 synchronised CPU processes through ``accelerate launch`` (slow: several process start-ups)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.slow
SRC = Path(__file__).resolve().parents[2] / "src"
TINY = [  # the tiny SMGA of test_train_stage1, without model dropout (a per-process draw)
    "model.overrides.hidden_dim=32",
    "model.overrides.num_layers=1",
    "model.overrides.num_heads=2",
    "model.overrides.ff_dim=64",
    "model.overrides.dropout=0",
    "data.window_frames=16",
    "log_every=1",
    "checkpoint_every=2",
    "validation.every=0",
]


def _launch(processes: int, overrides: list[str], resume: bool = False) -> None:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no"]
    cmd += ["--dynamo_backend", "no", "--num_processes", str(processes), *(["--multi_gpu"] if processes > 1 else [])]
    cmd += ["-m", "mmgt", "train", "stage1", *overrides, *(["--resume"] if resume else [])]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def _losses(run: Path) -> dict[int, float]:
    with (run / "train_log.csv").open() as f:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(f)}


def test_two_processes_train_like_one_with_the_same_global_batch(synth_dataset, tmp_path):
    """2 processes x batch 2 = 1 process x batch 4, through the warm-up; a 2-process checkpoint resumes in 1."""
    base = [*TINY, f"data.root={synth_dataset}", f"output_root={tmp_path}"]
    base += ["optim.warmup_steps=3", f"data.cache_dir={tmp_path / 'features'}"]
    _launch(1, [*base, "name=one", "max_steps=4", "batch_size=4"])
    _launch(2, [*base, "name=two", "max_steps=4", "batch_size=2"])
    _launch(2, [*base, "name=cross", "max_steps=2", "batch_size=2"])
    _launch(1, [*base, "name=cross", "max_steps=4", "batch_size=4"], resume=True)
    one, two, cross = (_losses(tmp_path / "stage1" / name) for name in ("one", "two", "cross"))
    assert sorted(two) == sorted(cross) == sorted(one) == [1, 2, 3, 4]
    # Float summation order (gradient all-reduce) is the only difference: observed <= 3e-5 relative over 40 steps.
    for curve in (two, cross):
        np.testing.assert_allclose([curve[s] for s in one], list(one.values()), rtol=1e-4, atol=1e-6)
    assert len(set(one.values())) == 4  # the model trains (the comparison is not between constant curves)
    weights = {
        n: load_file(tmp_path / "stage1" / n / "checkpoints" / "step-0000004" / "model.safetensors")
        for n in ("one", "two", "cross")
    }
    for name in ("two", "cross"):
        for key, value in weights["one"].items():
            np.testing.assert_allclose(weights[name][key].numpy(), value.numpy(), rtol=1e-4, atol=1e-5)

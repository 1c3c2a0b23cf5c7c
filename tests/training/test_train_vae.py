"""`mmgt train vae` on the synthetic dataset: steps, exact resume, export with a measured scaling factor."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from mmgt.config import VaeTrain, load_config
from mmgt.data.manifest import read_manifest
from mmgt.errors import MmgtError
from mmgt.training.common import latest_checkpoint
from mmgt.training.train_vae import FrameSource, latent_scaling_factor, main, reconstruction_psnr, to_pixels

TINY = [
    "batch_size=2",
    "data.size=64",
    "log_every=1",
    "checkpoint_every=2",
    "validation.every=2",
    "validation.num_frames=3",
    "scaling_frames=4",
    "optim.warmup_steps=1",
    "optim.lr=1e-3",
]


def _split(root) -> str:
    """A held-out split that the fixture has (val, else test)."""
    return next(s for s in ("val", "test") if read_manifest(root, s))


def _cfg(root, out, name, steps, extra=()):
    return load_config(
        VaeTrain,
        "configs/vae/tiny.yaml",
        [
            *TINY,
            f"data.root={root}",
            f"output_root={out}",
            f"name={name}",
            f"max_steps={steps}",
            f"validation.split={_split(root)}",
            *extra,
        ],
    )


def _csv(path):
    with path.open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_train_resume_and_export(synth_dataset, tmp_path):
    final = main(_cfg(synth_dataset, tmp_path, "straight", 3))
    run = tmp_path / "vae" / "straight"
    straight = _csv(run / "train_log.csv")
    assert [r["step"] for r in straight] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in straight)
    for r in straight:  # the logged total is the documented weighted sum (weights 1, 1, 1e-6)
        assert r["loss"] == pytest.approx(r["l1"] + r["mse"] + 1e-6 * r["kl"], rel=1e-6)
    assert latest_checkpoint(run)[1] == 3
    assert (run / "checkpoints" / "step-0000002" / "vae" / "config.json").is_file()
    val = _csv(run / "val_log.csv")
    assert [r["step"] for r in val] == [2, 3] and all(5 < r["val_psnr"] < 60 for r in val)

    # Interrupted after 2 steps, resumed to 3: identical losses (exact resume on CPU).
    main(_cfg(synth_dataset, tmp_path, "resumed", 2))
    main(_cfg(synth_dataset, tmp_path, "resumed", 3), resume=True)
    assert _csv(tmp_path / "vae" / "resumed" / "train_log.csv") == straight

    # The export is an AutoencoderKL folder whose scaling factor makes the latents unit-variance.
    vae = AutoencoderKL.from_pretrained(final).eval()
    scale = vae.config.scaling_factor
    assert scale != 0.18215 and 0.01 < scale < 100
    frames = FrameSource(synth_dataset, "train").spread_frames(4, 64)
    with torch.no_grad():
        latents = vae.encode(to_pixels(frames)).latent_dist.sample(generator=torch.Generator().manual_seed(0))
    assert latents.shape == (4, 4, 8, 8)  # 8x down-sampling
    assert (latents * scale).std().item() == pytest.approx(1.0, rel=0.2)  # other frames than the estimate's
    # The final PSNR row is what the exported weights give on the same val frames.
    val_frames = FrameSource(synth_dataset, _split(synth_dataset)).spread_frames(3, 64)
    assert reconstruction_psnr(vae, val_frames) == pytest.approx(val[-1]["val_psnr"], abs=1e-4)


def test_scaling_factor_is_inverse_latent_std():
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=[8], norm_num_groups=4, latent_channels=4).eval()  # 1x, tiny
    pixels = torch.rand(3, 3, 8, 8) * 2 - 1
    scale = latent_scaling_factor(vae, pixels, torch.Generator().manual_seed(1))
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.sample(generator=torch.Generator().manual_seed(1))
    assert scale == pytest.approx(1.0 / latents.std().item(), rel=1e-6)


def test_bad_size_and_missing_split_fail_loudly(synth_dataset, tmp_path):
    with pytest.raises(MmgtError, match="multiple of 8"):
        main(_cfg(synth_dataset, tmp_path, "odd", 1, ["data.size=60"]))
    train_only = tmp_path / "train_only"  # the same clips, with the held-out records removed from the manifest
    train_only.mkdir()
    lines = (synth_dataset / "manifest.jsonl").read_text().splitlines()
    (train_only / "manifest.jsonl").write_text("\n".join(ln for ln in lines if '"split": "train"' in ln) + "\n")
    assert len(FrameSource(train_only, "train").records) == len(read_manifest(synth_dataset, "train"))
    with pytest.raises(MmgtError, match=f"{train_only}: no clips in split 'val'"):
        FrameSource(train_only, "val")
    with pytest.raises(ValueError, match="split must be one of"):
        FrameSource(synth_dataset, "nope")

"""`mmgt train vae` on the synthetic dataset: steps, exact resume, export with a measured scaling factor."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from mmgt.config import VaeTrain, load_config
from mmgt.constants import LIPS
from mmgt.data.manifest import read_manifest
from mmgt.errors import MmgtError
from mmgt.evaluation.image_quality import psnr
from mmgt.training.common import latest_checkpoint
from mmgt.training.train_vae import (
    FrameSource,
    latent_scaling_factor,
    main,
    reconstructions,
    to_pixels,
    vae_losses,
)

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
    assert all(5 < r["val_region_psnr"] < 60 for r in val)  # the face and hand boxes alone

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
    assert psnr(reconstructions(vae, val_frames), val_frames) == pytest.approx(val[-1]["val_psnr"], abs=1e-4)


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


def test_region_weight_weighs_the_boxes_and_keeps_the_loss_scale():
    pixels = torch.zeros(1, 3, 2, 2)
    reconstruction = torch.zeros(1, 3, 2, 2)
    reconstruction[0, :, 0, 0] = 1.0  # error 1 in one pixel of four, every channel
    regions = torch.zeros(1, 1, 2, 2)
    regions[0, 0, 0, 0] = 1.0  # ... and that pixel is in a face box
    kl = torch.zeros(1)
    plain = vae_losses(reconstruction, pixels, kl, 1.0, 1.0, 0.0)
    assert plain["l1"].item() == pytest.approx(0.25) and plain["mse"].item() == pytest.approx(0.25)
    assert vae_losses(reconstruction, pixels, kl, 1.0, 1.0, 0.0, regions, 0.0)["l1"].item() == pytest.approx(0.25)
    # Weights (4, 1, 1, 1) normalised by their mean 1.75: the boxed pixel's error counts 4 / 1.75.
    weighted = vae_losses(reconstruction, pixels, kl, 1.0, 1.0, 0.0, regions, 3.0)
    assert weighted["l1"].item() == pytest.approx(4 / 1.75 / 4, rel=1e-6)
    assert weighted["loss"].item() == pytest.approx(2 * 4 / 1.75 / 4, rel=1e-6)
    # An error outside the boxes now counts less than unweighted (1 / 1.75 of it).
    reconstruction = torch.zeros(1, 3, 2, 2)
    reconstruction[0, :, 1, 1] = 1.0
    assert vae_losses(reconstruction, pixels, kl, 1.0, 1.0, 0.0, regions, 3.0)["l1"].item() == pytest.approx(
        1 / 1.75 / 4, rel=1e-6
    )


def test_region_crops_follow_the_pixels(synth_dataset):
    source = FrameSource(synth_dataset, "train")
    whole, mask = source.random_crops(np.random.default_rng(5), 3, 64, (1.0, 1.0), hflip=False, regions=True)
    assert mask.shape == (3, 1, 64, 64) and 0 <= mask.min() and mask.max() <= 1
    # Whole frames: the mask is the frame's face and hand boxes, resized like the frame.
    rng = np.random.default_rng(5)
    clip = int(rng.integers(len(source.records)))
    index = int(rng.integers(source.records[clip].num_frames))
    boxes = source.regions(clip, index)  # (H, W) in {0, 255}
    assert 0 < (boxes > 0).mean() < 0.5  # a face and two hands, not the whole frame
    resized = cv2.resize(boxes, (64, 64), interpolation=cv2.INTER_LINEAR) / 255.0
    np.testing.assert_allclose(mask[0, 0].numpy(), resized, atol=1 / 255 + 1e-6)
    # The face box holds the mouth keypoints' pixels.
    pose = source.store.pose(clip)
    frame_h, frame_w = source.frame(clip, index).shape[:2]
    mouth = pose.keypoints[index, list(LIPS)] * [frame_w / pose.width, frame_h / pose.height]
    assert all(boxes[int(y), int(x)] == 255 for x, y in mouth)
    # Flips move the mask with the pixels (the first sample's frame is the same; later draws shift with the coin).
    flips = 0
    for seed in range(6):
        ref, ref_mask = source.random_crops(np.random.default_rng(seed), 1, 64, (1.0, 1.0), False, regions=True)
        out, out_mask = source.random_crops(np.random.default_rng(seed), 1, 64, (1.0, 1.0), True, regions=True)
        flipped = not torch.equal(out, ref)
        flips += flipped
        if flipped:
            ref, ref_mask = ref.flip(-1), ref_mask.flip(-1)
        assert torch.equal(out, ref) and torch.equal(out_mask, ref_mask)
    assert 0 < flips < 6
    # Without regions nothing else changes: same pixels, no mask.
    plain, none = source.random_crops(np.random.default_rng(5), 3, 64, (1.0, 1.0), hflip=False)
    assert none is None and torch.equal(plain, whole)


def test_spread_regions_match_spread_frames(synth_dataset):
    source = FrameSource(synth_dataset, "train")
    frames, regions = source.spread_frames(4, 64), source.spread_regions(4, 64)
    assert regions.shape == (4, 64, 64) and regions.dtype == bool
    # The boxes cover the skin-coloured face: boxed pixels differ in colour from the rest of the frame.
    assert all(0 < r.mean() < 0.5 for r in regions)
    inside = np.stack([f[r].mean(axis=0) for f, r in zip(frames, regions)])
    outside = np.stack([f[~r].mean(axis=0) for f, r in zip(frames, regions)])
    assert np.abs(inside - outside).sum(axis=1).min() > 10

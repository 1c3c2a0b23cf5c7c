"""``mmgt train pose-ae``: the pose autoencoder whose latent space defines FGD, trained on a dataset's train split."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mmgt.contracts import PoseSequence
from mmgt.data.manifest import read_manifest
from mmgt.errors import MmgtError
from mmgt.evaluation.pose_autoencoder import reconstruction_error, sliding_windows, train_pose_autoencoder
from mmgt.training.preflight import REPORT, check_pose_ae
from mmgt.utils.files import atomic_folder, sha256_file


def main(
    dataset_dir: str | os.PathLike,
    output: str | os.PathLike,
    steps: int = 2000,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    window_frames: int = 32,
    stride: int = 8,
) -> Path:
    """Train on sliding windows of the train split, report train/val reconstruction error, save the model.

    The output folder is written whole or not at all; without val clips the report has no validation error (one
    warning).
    """
    root, output = Path(dataset_dir), Path(output)
    positive = dict(steps=steps, batch_size=batch_size, lr=lr, window_frames=window_frames, stride=stride)
    has_val = check_pose_ae(root, output, **positive)
    splits = {
        s: [PoseSequence.load(r.path(root, "keypoints")) for r in read_manifest(root, s)]
        for s in ("train", "val")
        if s == "train" or has_val
    }
    splits = {s: [p for p in poses if p.num_frames >= window_frames] for s, poses in splits.items()}
    if not splits["train"]:
        raise MmgtError(f"{root}: no training clip has {window_frames} frames")
    train = sliding_windows(splits["train"], window_frames, stride)
    model = train_pose_autoencoder(train, steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    report = {"train_windows": len(train), "train_mse": reconstruction_error(model, train), "steps": steps}
    if splits.get("val"):
        val = sliding_windows(splits["val"], window_frames, stride)
        mean_pose = np.broadcast_to(train.mean(axis=(0, 1)), val.shape)  # a "predict the mean pose" baseline
        report |= {
            "val_windows": len(val),
            "val_mse": reconstruction_error(model, val),
            "val_mse_mean_pose": float(np.mean((val - mean_pose)[:, :, list(model.config.keypoints)] ** 2)),
        }
    with atomic_folder(output) as tmp:
        model.save_pretrained(tmp)
        report["sha256"] = sha256_file(next(tmp.glob("*.safetensors")))
        (tmp / REPORT).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return output

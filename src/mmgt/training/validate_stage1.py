"""Stage-1 validation and evaluation: generate poses for held-out clips and score them against the audio and GT.

Used by ``mmgt train stage1`` (periodic validation) and ``mmgt eval stage1`` (the acceptance comparison against the
two controls: the reference pose held still, and the model driven by another clip's audio).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from mmgt.contracts import PoseSequence
from mmgt.data.id_list import ListedClip, select_listed
from mmgt.data.manifest import read_manifest
from mmgt.errors import MmgtError
from mmgt.evaluation import beat_alignment_score, fgd, keypoint_l2, lip_sync_score, pck
from mmgt.evaluation.pose_autoencoder import PoseAutoencoder
from mmgt.evaluation.report import IMPLEMENTATION, Metric, Report
from mmgt.pipelines.audio_to_pose import AudioToPosePipeline
from mmgt.pose.render import render_pose_sequence
from mmgt.utils.audio_io import Audio, load_audio
from mmgt.utils.video_writer import save_video

CONDITIONS = ("model", "still_reference", "other_audio")


def _lip_sync_or_zero(pred: PoseSequence, wave: np.ndarray, sr: int) -> float:
    """Lip-sync score; a pose whose lips are not visible has no lip sync (0) rather than failing the evaluation."""
    try:
        return lip_sync_score(pred, wave, sr)
    except MmgtError:
        return 0.0


def _score(pred: PoseSequence, gt: PoseSequence, wave: np.ndarray, sr: int) -> dict[str, float]:
    n = min(pred.num_frames, gt.num_frames)
    pred, gt = pred[:n], gt[:n]
    return {
        "lip_sync": _lip_sync_or_zero(pred, wave, sr),
        "beat_align": beat_alignment_score(pred, wave, sr),
        "kp_l2": keypoint_l2(pred, gt),
        "pck": pck(pred, gt),
    }


def generate_for_clips(
    pipe: AudioToPosePipeline,
    dataset_root: str | os.PathLike,
    split: str = "val",
    num_clips: int | None = None,
    conditions=("model",),
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    seed: int = 0,
    ids: list[ListedClip] | None = None,
) -> dict:
    """Poses per condition for the first ``num_clips`` clips of ``split`` (of the clips ``ids`` lists, if given).

    Returns ``{"clips": [ids], "gt": [PoseSequence], "waves": [...], "sample_rate": sr, condition: [PoseSequence]}``.
    Sampling settings left at None are the model's. Every clip is driven from its own first frame (the reference).
    ``other_audio`` uses the audio of the next clip (cyclically), trimmed or zero-padded to this clip's length;
    ``still_reference`` repeats the reference pose.
    """
    root = Path(dataset_root)
    records = select_listed(read_manifest(root, split), ids, f"the {split} split of {root}")[:num_clips]
    if not records:
        raise ValueError(f"{root}: no clips in split {split!r}")
    gts = [PoseSequence.load(r.path(root, "keypoints")) for r in records]
    waves = [load_audio(r.path(root, "audio"), sample_rate=r.sample_rate) for r in records]
    sr = records[0].sample_rate
    out: dict = {"clips": [r.id for r in records], "gt": gts, "waves": waves, "sample_rate": sr}
    for cond in conditions:
        out[cond] = []
        for i, (gt, wave) in enumerate(zip(gts, waves)):
            ref = gt[0]
            if cond == "still_reference":
                out[cond].append(PoseSequence.concatenate([ref] * gt.num_frames))
                continue
            drive = wave
            if cond == "other_audio":
                other = waves[(i + 1) % len(waves)]
                drive = np.pad(other[: len(wave)], (0, max(0, len(wave) - len(other))))
            gen = torch.Generator().manual_seed(seed + i)
            res = pipe(
                Audio(drive, sr),
                ref,
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                generator=gen,
                progress=False,
            )
            out[cond].append(res.poses)
    return out


def score_clips(generated: dict, conditions) -> dict[str, list[dict[str, float]]]:
    """Per-clip metrics per condition, always scored against the clip's TRUE audio and GT poses."""
    sr = generated["sample_rate"]
    return {
        cond: [_score(p, g, w, sr) for p, g, w in zip(generated[cond], generated["gt"], generated["waves"])]
        for cond in conditions
    }


def mean_scores(rows: dict, generated: dict, pose_autoencoder: PoseAutoencoder | None = None) -> dict:
    """Means over clips of :func:`score_clips` rows, plus FGD (a set-level metric) with an autoencoder."""
    results = {}
    for cond, clip_rows in rows.items():
        results[cond] = {k: float(np.mean([r[k] for r in clip_rows])) for k in clip_rows[0]}
        if pose_autoencoder is not None:
            results[cond]["fgd"] = float(fgd(pose_autoencoder, generated["gt"], generated[cond]))
    return results


def score_conditions(generated: dict, conditions, pose_autoencoder: PoseAutoencoder | None = None) -> dict:
    """Mean metrics per condition, always scored against the clip's TRUE audio and GT poses."""
    return mean_scores(score_clips(generated, conditions), generated, pose_autoencoder)


STAGE1_POSES = "stage-1 keypoints; lip sync 0 where the lips are not visible"


def stage1_report(
    generated: dict, rows: dict, results: dict, inputs: dict, pose_autoencoder: PoseAutoencoder | None = None
) -> Report:
    """The ``mmgt eval stage1`` results as an evaluation :class:`Report` (conditions as columns).

    The reference column scores the ground-truth poses themselves (lip sync, beat alignment): the ceiling a model
    can reach on these clips.
    """
    conditions = list(rows)
    sr = generated["sample_rate"]
    reference = {
        "lip_sync": [_lip_sync_or_zero(g, w, sr) for g, w in zip(generated["gt"], generated["waves"])],
        "beat_align": [beat_alignment_score(g, w, sr) for g, w in zip(generated["gt"], generated["waves"])],
    }
    report = Report("stage1", "mmgt eval stage1", inputs, list(generated["clips"]), conditions)
    window = pose_autoencoder.config.window_frames if pose_autoencoder is not None else None
    for key in results[conditions[0]]:
        per_clip = None
        if key in rows[conditions[0]][0]:
            per_clip = {c: dict(zip(generated["clips"], (r[key] for r in rows[c]))) for c in conditions}
        ref = reference.get(key)
        report.add(
            Metric(
                key,
                IMPLEMENTATION[key].format(detector=STAGE1_POSES, window=window),
                {c: results[c][key] for c in conditions},
                reference=None if ref is None else float(np.mean(ref)),
                reference_note=None if ref is None else "the ground-truth poses scored the same way",
                per_clip=per_clip,
                reference_per_clip=None if ref is None else dict(zip(generated["clips"], ref)),
            )
        )
    return report


def validate_stage1(
    pipe: AudioToPosePipeline,
    dataset_root,
    out_dir: Path,
    num_clips: int = 4,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    pose_autoencoder: str | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Generate the first ``num_clips`` validation clips, score them, render the first one as a pose video."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ae = PoseAutoencoder.from_pretrained(pose_autoencoder) if pose_autoencoder else None
    generated = generate_for_clips(
        pipe, dataset_root, "val", num_clips, ("model",), num_inference_steps, guidance_scale, seed
    )
    metrics = score_conditions(generated, ("model",), ae)["model"]
    first, gt = generated["model"][0], generated["gt"][0]
    side = np.concatenate([render_pose_sequence(gt[: first.num_frames]), render_pose_sequence(first)], axis=2)
    save_video(
        out_dir / f"{generated['clips'][0]}_gt_vs_generated.mp4",
        side,
        audio=generated["waves"][0],
        sample_rate=generated["sample_rate"],
    )
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics

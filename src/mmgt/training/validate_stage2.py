"""Stage-2 validation during training (:func:`validate_stage2`) and evaluation on held-out clips driven by their
ground-truth poses and audio (:func:`evaluate_stage2`, ``mmgt eval stage2``).

Each evaluated clip is regenerated from its own last frame (the reference image), its ground-truth keypoints and its
audio, and scored against the real frames:

* ``psnr`` / ``ssim`` — frame fidelity against the ground truth;
* ``colour_error`` / ``identity_ok`` — the clothing colour of the output against the reference image's, and whether
  the clip's own reference is the nearest of all the evaluated references (identity kept);
* ``mouth_r`` — Pearson r (best lag within ±2 frames) between the mouth-region pixel change and the envelope of the
  clip's own speech;
* ``hand_psnr`` — PSNR inside the hand boxes (:func:`mmgt.evaluation.video_regions.hand_psnr`).

Conditions: ``audio`` (the clip's own speech), ``no_audio`` (zero audio tokens, the model's unconditional audio and
its pose-only mode, which training teaches by dropping the audio while the target mouth still moves),
``silent_audio`` (a zeroed waveform of the clip's length through the audio encoder: what a user who mutes the speech
gets) and ``other_audio`` (the next evaluated clip's speech, cut or padded to this clip's length), so
the audio's own contribution to the mouth shows as the drop from the first to the others; ``other_audio`` also
reports ``mouth_r_driving``, the r against the speech that drove it. The real frames are scored the same way
(``ground_truth``) as the ceiling.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from mmgt.constants import FPS
from mmgt.contracts import PoseSequence
from mmgt.data.id_list import ListedClip, select_listed
from mmgt.data.manifest import read_manifest
from mmgt.data.stage2_dataset import crop_resize
from mmgt.errors import MmgtError
from mmgt.evaluation.image_quality import psnr, ssim
from mmgt.evaluation.report import IMPLEMENTATION, Metric, Report
from mmgt.evaluation.sync import audio_envelope, best_lag_correlation
from mmgt.evaluation.video_regions import hand_psnr, mouth_activity, torso_colour
from mmgt.pipelines.pose_to_video import PoseToVideoPipeline
from mmgt.utils.audio_io import Audio, load_audio
from mmgt.utils.video_io import read_video_frames
from mmgt.utils.video_writer import save_video

CONDITIONS = ("audio", "no_audio", "silent_audio", "other_audio")
DEFAULT_CONDITIONS = ("audio", "no_audio")  # other_audio costs a third generation pass: asked for by name
SAME_COLOUR = 12.0  # references closer than this (RGB units) are taken as the same identity's clothing


@torch.no_grad()
def validate_stage2(
    pipe: PoseToVideoPipeline,
    dataset_root: str | os.PathLike,
    split: str,
    video_path: str | os.PathLike,
    size: int,
    num_frames: int,
    with_audio: bool,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    branch_weights: tuple[float, ...] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Generate the first frames of the first clip of ``split`` (reference: the clip's last frame) and score them.

    Args:
        pipe: the pipeline around the training modules.
        video_path: where the side-by-side video (real | generated, with the clip's audio) is written.
        size: the square training size; the real frames are resized as the video dataset resizes them.
        num_frames: how many frames to generate from the clip's start.
        with_audio: drive MM-HAA with the clip's audio (the video step; the image step has no audio modules).
        num_inference_steps, guidance_scale, branch_weights: sampling (None: the pipeline's defaults).

    Returns:
        ``{"val_psnr": dB, "val_ssim": ...}`` of the generated frames against the real ones.
    """
    records = read_manifest(dataset_root, split)
    if not records:
        raise MmgtError(f"{dataset_root}: no clips in validation split {split!r}")
    rec = records[0]
    frames = read_video_frames(rec.path(dataset_root, "video"))
    n = min(num_frames, len(frames))
    real = crop_resize(frames, (0, 0, *frames.shape[1:3]), size)  # (F, S, S, 3), resized like the video dataset
    poses = PoseSequence.load(rec.path(dataset_root, "keypoints"))[:n]
    wave = load_audio(rec.path(dataset_root, "audio"), sample_rate=rec.sample_rate)
    wave = wave[: -(-n * rec.sample_rate // FPS)] if with_audio else None
    out = pipe(
        real[-1],
        poses,
        None if wave is None else Audio(wave, rec.sample_rate, name=str(rec.id)),
        height=size,
        width=size,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        branch_weights=branch_weights,
        generator=torch.Generator().manual_seed(seed),
        progress=False,
    )
    side_by_side = np.concatenate([real[:n], out.frames], axis=2)  # (n, S, 2S, 3)
    Path(video_path).parent.mkdir(parents=True, exist_ok=True)
    save_video(video_path, side_by_side, fps=FPS, audio=wave, sample_rate=rec.sample_rate)
    return {"val_psnr": psnr(out.frames, real[:n]), "val_ssim": ssim(out.frames, real[:n])}


def _mouth_r(frames: np.ndarray, poses: PoseSequence, wave: np.ndarray, sr: int) -> float:
    activity = mouth_activity(frames, poses)
    best = best_lag_correlation(activity, audio_envelope(wave, sr, len(frames)))
    return 0.0 if best is None else best[0]


def evaluate_stage2(
    pipe: PoseToVideoPipeline,
    dataset_root: str | os.PathLike,
    split: str = "test",
    num_clips: int | None = None,
    num_frames: int | None = None,
    size: int = 128,
    conditions: tuple[str, ...] = DEFAULT_CONDITIONS,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    seed: int = 0,
    videos_dir: str | os.PathLike | None = None,
    ids: list[ListedClip] | None = None,
) -> dict:
    """Regenerate held-out clips and score them (see the module docstring).

    Args:
        pipe: a stage-2 pipeline (mel or wav2vec2 audio recipe; an encoder must be attached for the latter).
        dataset_root: an mmgt dataset folder; ``split``: which clips; ``num_clips``: the first N of them.
        num_frames: score only the first N frames of each clip (None: all).
        size: output size (square); the real frames are resized the same way as in training.
        conditions: any of ``audio``, ``no_audio``, ``silent_audio``, ``other_audio`` (needs two clips or more).
        num_inference_steps, guidance_scale: sampling (None: the model's).
        videos_dir: if set, writes ``<clip>.mp4`` per clip: real | each condition, side by side, with the audio,
            and ``<condition>/<clip>.mp4``: that condition's frames alone with the clip's own audio, the layout
            ``mmgt eval video --generated`` reads (FID, FVD, Sync-C/D of each condition).
        ids: only the clips of this id list (:func:`~mmgt.data.id_list.read_test_ids`); all must be in ``split``.

    Returns:
        ``{"clips": [...], "per_clip": {condition: [row, ...]}, "mean": {condition: {metric: value}}}`` with the
        ``ground_truth`` condition holding the real frames' ``mouth_r``.
    """
    unknown = set(conditions) - set(CONDITIONS)
    if unknown:
        raise MmgtError(f"unknown stage-2 evaluation condition(s) {sorted(unknown)}; choose from {CONDITIONS}")
    root = Path(dataset_root)
    records = select_listed(read_manifest(root, split), ids, f"the {split} split of {root}")[:num_clips]
    if not records:
        raise MmgtError(f"{root}: no clips in split {split!r}")
    if "other_audio" in conditions and len(records) < 2:
        raise MmgtError("the other_audio condition needs at least 2 clips (each takes the next clip's speech)")

    def speech(rec, n: int) -> np.ndarray:  # the clip's wave, padded or cut to n frames
        wave = load_audio(rec.path(root, "audio"), sample_rate=rec.sample_rate)
        samples = -(-n * rec.sample_rate // FPS)
        return np.pad(wave, (0, max(0, samples - len(wave))))[:samples]

    clips, rows = [], {c: [] for c in ("ground_truth", *conditions)}
    references = []
    for i, rec in enumerate(records):
        video = read_video_frames(rec.path(root, "video"))
        real_all = crop_resize(video, (0, 0, *video.shape[1:3]), size)  # (F, S, S, 3), as the datasets resize
        poses_all = PoseSequence.load(rec.path(root, "keypoints"))
        n = min(len(real_all), poses_all.num_frames, num_frames or len(real_all))
        real, poses = real_all[:n], poses_all[:n]
        wave = speech(rec, n)
        reference, ref_pose = real_all[-1], poses_all[poses_all.num_frames - 1 : poses_all.num_frames]
        ref_colour = torso_colour(reference[None], ref_pose)
        references.append(ref_colour)
        clips.append(rec.id)
        rows["ground_truth"].append({"mouth_r": _mouth_r(real, poses, wave, rec.sample_rate)})
        outputs = [real]
        for cond in conditions:
            driving = (wave, rec) if cond == "audio" else None  # (speech, the clip it belongs to); None: zero tokens
            if cond == "silent_audio":
                driving = (np.zeros_like(wave), rec)
            if cond == "other_audio":
                other = records[(i + 1) % len(records)]
                if other.sample_rate != rec.sample_rate:
                    raise MmgtError(f"other_audio: clips {rec.id} and {other.id} have different sample rates")
                driving = (speech(other, n), other)
            out = pipe(
                reference,
                poses,
                None if driving is None else Audio(driving[0], rec.sample_rate, name=str(driving[1].id)),
                height=size,
                width=size,
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                generator=torch.Generator().manual_seed(seed + i),
                progress=False,
            ).frames
            outputs.append(out)
            colour = torso_colour(out, poses)
            row = {
                "psnr": psnr(out, real),
                "ssim": ssim(out, real),
                "mouth_r": _mouth_r(out, poses, wave, rec.sample_rate),
                "hand_psnr": hand_psnr(out, real, poses),
                "colour_error": float(np.linalg.norm(colour - ref_colour)),
                "colour": colour,
            }
            if cond == "other_audio":
                row["mouth_r_driving"] = _mouth_r(out, poses, driving[0], rec.sample_rate)
            rows[cond].append(row)
        if videos_dir is not None:
            named = [(Path(videos_dir) / f"{rec.id}.mp4", np.concatenate(outputs, axis=2))]
            named += [(Path(videos_dir) / c / f"{rec.id}.mp4", out) for c, out in zip(conditions, outputs[1:])]
            for path, frames in named:
                path.parent.mkdir(parents=True, exist_ok=True)
                save_video(path, frames, fps=FPS, audio=wave, sample_rate=rec.sample_rate)

    # Identity: the output's clothing colour is nearest to its own reference (or one of the same colour).
    refs = np.stack(references)  # (N, 3)
    for cond in conditions:
        for i, row in enumerate(rows[cond]):
            dist = np.linalg.norm(refs - row.pop("colour"), axis=1)  # (N,)
            same = np.linalg.norm(refs - refs[i], axis=1) < SAME_COLOUR
            row["identity_ok"] = float(dist[same].min() < dist[~same].min()) if (~same).any() else 1.0
    mean = {c: {k: _mean([r[k] for r in rs]) for k in rs[0]} for c, rs in rows.items()}
    return {"clips": clips, "per_clip": rows, "mean": mean}


def _mean(values: list[float]) -> float:
    """Mean over the clips where the value is defined (NaN: e.g. no hand seen in the clip); NaN if none is."""
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


STAGE2_METRICS = ("psnr", "ssim", "colour_error", "identity_ok", "mouth_r", "hand_psnr")


def stage2_report(result: dict, inputs: dict) -> Report:
    """The :func:`evaluate_stage2` result as an evaluation :class:`Report` (conditions as columns).

    The reference column is the real frames' own ``mouth_r`` (the ``ground_truth`` condition), the ceiling.
    """
    conditions = [c for c in result["mean"] if c != "ground_truth"]
    clips = list(result["clips"])
    report = Report("stage2", "mmgt eval stage2", inputs, clips, conditions)
    truth = {row_clip: row["mouth_r"] for row_clip, row in zip(clips, result["per_clip"]["ground_truth"])}
    for key in STAGE2_METRICS:
        if conditions and key not in result["mean"][conditions[0]]:
            continue
        per_clip = {c: {cid: row[key] for cid, row in zip(clips, result["per_clip"][c])} for c in conditions}
        is_mouth = key == "mouth_r"
        report.add(
            Metric(
                key,
                IMPLEMENTATION[key],
                {c: result["mean"][c][key] for c in conditions},
                reference=result["mean"]["ground_truth"]["mouth_r"] if is_mouth else None,
                reference_note="the real frames scored the same way" if is_mouth else None,
                per_clip=per_clip,
                reference_per_clip=truth if is_mouth else None,
            )
        )
    return report

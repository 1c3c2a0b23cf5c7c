"""The video metrics of a generated set against its real clips, paired by clip id (``mmgt eval video``, spec §9).

Stages, each with its own progress bar, each reading the videos again (decoding is cheap next to the networks):

* ``fid`` — FID on Inception pool features of real vs generated frames;
* ``fvd`` — FVD on I3D features of 16-frame clips (TF-Hub I3D; StyleGAN-V's I3D too when supplied);
* ``fidelity`` — PSNR and SSIM of each generated frame against its real frame;
* ``lpips`` — LPIPS (AlexNet) of each generated frame against its real frame;
* ``sync`` — Sync-C / Sync-D (LSE-C / LSE-D) with SyncNet on face crops and the real clip's audio;
* ``pose`` — a keypoint detector on both sets: HKC, HKV, lip sync (mouth opening vs audio envelope), beat
  alignment, L1 diversity and, with a pose autoencoder, FGD.

The real set scored the same way is the reference column: for distribution metrics (FID, FVD, FGD) the distance
between two halves of its clips (a fixed random split), for per-clip metrics the real clips' own values. A metric
whose weight file is missing is listed under ``skipped`` with the file it needs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmgt.constants import SAMPLE_RATE
from mmgt.contracts import PoseSequence
from mmgt.errors import MediaError, MmgtError
from mmgt.evaluation import weight_files as wf
from mmgt.evaluation.beat_align import beat_alignment_score
from mmgt.evaluation.diversity import pose_diversity
from mmgt.evaluation.frechet import frechet_distance_from_features
from mmgt.evaluation.hands import hand_confidence, hand_variance
from mmgt.evaluation.image_quality import psnr, ssim
from mmgt.evaluation.report import IMPLEMENTATION, Metric, Report, nanmean
from mmgt.evaluation.sync import audio_envelope, lip_sync, mouth_opening
from mmgt.utils.audio_io import load_audio
from mmgt.utils.video_io import VIDEO_SUFFIXES, probe_video, read_video_frames

GROUPS = ("fid", "fvd", "fidelity", "lpips", "sync", "pose")
AUDIO_GROUPS = ("sync", "pose")
MAX_FRAME_DIFFERENCE = 1  # generated and real frame counts may differ by a rounding frame; more is an error
CONTACT_CLIPS, CONTACT_FRAMES = 4, 6


@dataclass(frozen=True)
class ClipPair:
    """One evaluated clip: the real video, its speech, and the generated video of the same id."""

    id: str
    real: Path
    generated: Path
    audio: Path


@dataclass
class VideoEvalOptions:
    """What to compute and with which files (None: the packaged default, or skipped when there is none).

    Attributes:
        groups: stages to run, any of :data:`GROUPS`.
        inception, i3d, i3d_styleganv, lpips_alexnet, lpips_linear, syncnet, s3fd: weight files.
        dwpose: (detector, pose) ONNX files; MediaPipe Holistic otherwise.
        pose_ae: a pose-autoencoder folder for FGD.
        fid_stride: use every n-th frame for FID (1: all frames).
        fvd_frames: frames per FVD clip.
        progress: progress bars.
        sync_expert: Sync-C/D's scorer when no syncnet_v2.model is found, e.g. a trained lip-sync expert
            (``mmgt.training.lipsync_data.ExpertSyncScorer``): called with (clip id, (F, H, W, 3) uint8 frames, 16 kHz
            speech), it returns (LSE-D, LSE-C, AV offset); its ``label`` names it in the report, since its numbers
            are on its own scale, not syncnet_v2's.
    """

    groups: tuple[str, ...] = GROUPS
    inception: Path | None = None
    i3d: Path | None = None
    i3d_styleganv: Path | None = None
    lpips_alexnet: Path | None = None
    lpips_linear: Path | None = None
    syncnet: Path | None = None
    s3fd: Path | None = None
    dwpose: tuple[Path, Path] | None = None
    pose_ae: Path | None = None
    fid_stride: int = 1
    fvd_frames: int = 16
    progress: bool = True
    sync_expert: Callable[[str, np.ndarray, np.ndarray], tuple[float, float, int]] | None = None


# ---------------------------------------------------------------------------------------------------------------------
# Finding and checking the clips
# ---------------------------------------------------------------------------------------------------------------------
def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith(".")


def videos_in(folder: str | os.PathLike, what: str) -> dict[str, Path]:
    """Clip id (file stem) -> video file, for the videos directly in ``folder``.

    Raises:
        MmgtError: the folder is missing, holds no video, or two videos share a stem.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MmgtError(f"{folder}: {what} folder not found")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if _is_video(path):
            if path.stem in found:
                names = f"{found[path.stem].name}, {path.name}"
                raise MmgtError(f"{folder}: two {what} videos for clip {path.stem!r} ({names})")
            found[path.stem] = path
    if not found:
        raise MmgtError(f"{folder}: no {what} videos ({', '.join(sorted(VIDEO_SUFFIXES))}) in this folder")
    return found


def folder_clips(folder: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """(id, video, audio) of the real videos of a plain folder; the audio is ``<id>.wav`` beside the video when
    present, else the video's own track. (Datasets are listed by the caller from their manifest.)"""
    clips = []
    for cid, path in videos_in(folder, "real").items():
        wav = path.with_suffix(".wav")
        clips.append((cid, path, wav if wav.is_file() else path))
    return clips


def _listed(ids: list[str]) -> str:
    return ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")


def check_generated_ids(reals: list[tuple[str, Path, Path]], folder: str | os.PathLike) -> None:
    """Refuse a folder holding generated videos whose id is no real clip's (made for another set); a missing or
    empty folder passes (``--model`` fills it)."""
    folder = Path(folder)
    stems = {p.stem for p in folder.iterdir() if _is_video(p)} if folder.is_dir() else set()
    unknown = sorted(stems - {cid for cid, _, _ in reals})
    if unknown:
        raise MmgtError(f"{folder}: {len(unknown)} generated video(s) match no real clip id: {_listed(unknown)}")


def check_weights(options: VideoEvalOptions) -> None:
    """Check every weight file the selected stages will read (exists, published checksum) before any long work."""
    given = {
        "fid": [(wf.INCEPTION, options.inception)],
        "fvd": [(wf.I3D_TFHUB, options.i3d), (wf.I3D_STYLEGANV, options.i3d_styleganv)],
        "lpips": [(wf.LPIPS_ALEXNET, options.lpips_alexnet), (wf.LPIPS_LINEAR, options.lpips_linear)],
        "sync": [(wf.SYNCNET, options.syncnet), (wf.S3FD, options.s3fd)],
        "pose": list(zip((wf.DWPOSE_DET, wf.DWPOSE_POSE), options.dwpose or (None, None))),
    }
    for group in options.groups:
        for spec, path in given.get(group, []):
            found = wf.locate(spec, path)
            if found is not None:
                wf.verify(spec, found)
    if "pose" in options.groups and options.pose_ae is not None and not Path(options.pose_ae).is_dir():
        raise MmgtError(f"{options.pose_ae}: pose autoencoder folder not found")


def pair_clips(
    reals: list[tuple[str, Path, Path]],
    generated: str | os.PathLike,
    num_clips: int | None = None,
    ids: Collection[str] | None = None,
) -> list[ClipPair]:
    """Pair the first ``num_clips`` real clips (of ``ids``, if given) with the generated videos of the same ids.

    Args:
        reals: (id, video, audio) of every real clip of the set (e.g. a dataset split, or :func:`folder_clips`).
        generated: the folder of generated videos, named ``<id>.<suffix>``.
        num_clips: evaluate only the first N real clips (generated videos of the others are ignored).
        ids: evaluate only these clips (e.g. an id list's; generated videos of the others are ignored).

    Raises:
        MmgtError: a generated video whose id is no real clip's, or a selected real clip without a generated video.
    """
    if not reals:
        raise MmgtError("no real clips to evaluate")
    check_generated_ids(reals, generated)
    generated_videos = videos_in(generated, "generated")
    selected = [clip for clip in reals if ids is None or clip[0] in ids][:num_clips]
    absent = [cid for cid, _, _ in selected if cid not in generated_videos]
    if absent:
        count = f"{len(absent)} of {len(selected)}"
        raise MmgtError(f"{generated}: no generated video for {count} real clips: {_listed(absent)}")
    return [ClipPair(cid, Path(video), generated_videos[cid], Path(audio)) for cid, video, audio in selected]


def check_clips(pairs: list[ClipPair], need_audio: bool) -> dict:
    """Probe every video; the set must share one fps and one size and each pair one frame count (within 1).

    Returns:
        ``{"fps", "width", "height", "frames": {id: [real, generated, used]}, "total_frames"}``.

    Raises:
        MediaError / MmgtError: an unreadable video or audio, or a mismatch (one line naming clip and problem).
    """
    if not pairs:
        raise MmgtError("no clips to evaluate")
    facts: dict = {"frames": {}}
    for pair in pairs:
        real, gen = probe_video(pair.real), probe_video(pair.generated)
        for info, path in ((real, pair.real), (gen, pair.generated)):
            fps, size = facts.setdefault("fps", info.fps), facts.setdefault("size", (info.width, info.height))
            if abs(info.fps - fps) > 1e-3:
                raise MmgtError(f"{path}: {info.fps:g} fps, but the other videos have {fps:g} fps")
            if (info.width, info.height) != size:
                raise MmgtError(f"{path}: {info.width}x{info.height} px, but the other videos are {size[0]}x{size[1]}")
        if abs(real.num_frames - gen.num_frames) > MAX_FRAME_DIFFERENCE:
            raise MmgtError(f"clip {pair.id}: {real.num_frames} real frames but {gen.num_frames} generated")
        facts["frames"][pair.id] = [real.num_frames, gen.num_frames, min(real.num_frames, gen.num_frames)]
        if need_audio and pair.audio == pair.real and not real.has_audio:
            raise MediaError(f"{pair.audio}: clip {pair.id} has no audio track (Sync-C/D and lip sync need it)")
    width, height = facts.pop("size")
    return {**facts, "width": width, "height": height, "total_frames": sum(f[2] for f in facts["frames"].values())}


# ---------------------------------------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------------------------------------
HALVES_NOTE = (
    "two random halves of the real clips (seed 0; half-size sets: a noise floor somewhat above what two full-size "
    "real sets would give)"
)
SAME_WAY_NOTE = "the real clips scored the same way"


def _bar(items, desc: str, enabled: bool):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="clip")


def _frames(pairs: list[ClipPair], facts: dict, desc: str, progress: bool) -> Iterator[tuple]:
    """(pair, real frames, generated frames) per clip, both (n, H, W, 3) uint8 cut to the pair's common length."""
    for pair in _bar(pairs, desc, progress):
        n = facts["frames"][pair.id][2]
        yield pair, read_video_frames(pair.real, max_frames=n), read_video_frames(pair.generated, max_frames=n)


def _halves(per_clip: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """Features of two halves of the clips (the self-reference split), None with fewer than 2 clips.

    The halves are a fixed random split of the clip ids in sorted order (seed 0), not even/odd positions: datasets made
    round-robin (the synthetic world gives clip i speaker i mod 4) would put different people in each half, and the
    "noise floor" would measure the people instead (FID 145 against 9 for two random real sets, measured).
    """
    ids = sorted(per_clip)
    if len(ids) < 2:
        return None
    order = np.random.default_rng(0).permutation(len(ids))
    first, second = order[: len(ids) // 2], order[len(ids) // 2 :]
    return np.concatenate([per_clip[ids[i]] for i in first]), np.concatenate([per_clip[ids[i]] for i in second])


def frechet_metric(key: str, real: dict, generated: dict, **fields) -> Metric:
    """A Fréchet-distance metric from per-clip (n_i, D) feature sets, with the real set's two-halves self-reference.

    Args:
        key: the metric (a key of :data:`~mmgt.evaluation.report.METRICS`).
        real, generated: clip -> (n_i, D) features.
        fields: more :class:`Metric` fields (implementation, weights, details).
    """
    real_all, gen_all = np.concatenate(list(real.values())), np.concatenate(list(generated.values()))
    for name, feats in (("real", real_all), ("generated", gen_all)):
        if len(feats) < 2:
            raise MmgtError(f"{key}: only {len(feats)} {name} sample(s); need at least 2 (more clips or frames)")
    halves = _halves(real)
    reference = None
    if halves is not None and min(len(h) for h in halves) >= 2:
        reference = frechet_distance_from_features(*halves)
    details = {**fields.pop("details", {}), "samples": {"real": len(real_all), "generated": len(gen_all)}}
    value = frechet_distance_from_features(real_all, gen_all)
    return Metric(
        key,
        values={"generated": value},
        reference=reference,
        reference_note=HALVES_NOTE,
        details=details,
        **fields,
    )


def clip_metric(key: str, generated: dict, real: dict | None = None, **fields) -> Metric:
    """A metric averaged over clips (NaN clips left out), with the real clips' own mean as reference when given."""
    return Metric(
        key,
        values={"generated": nanmean(generated.values())},
        reference=None if real is None else nanmean(real.values()),
        reference_note=None if real is None else SAME_WAY_NOTE,
        per_clip={"generated": generated},
        reference_per_clip=real,
        **fields,
    )


def _fid(report: Report, pairs, facts, options: VideoEvalOptions) -> None:
    from mmgt.evaluation.inception import inception_features, load_inception

    path = wf.locate(wf.INCEPTION, options.inception)
    if path is None:
        report.skip("FID", wf.missing(wf.INCEPTION))
        return
    record = wf.verify(wf.INCEPTION, path)
    model = load_inception(path)
    real, gen = {}, {}
    for pair, r, g in _frames(pairs, facts, "FID (Inception)", options.progress):
        real[pair.id] = inception_features(model, r[:: options.fid_stride])
        gen[pair.id] = inception_features(model, g[:: options.fid_stride])
    frames = "all frames" if options.fid_stride == 1 else f"every {options.fid_stride}th frame"
    implementation = f"{IMPLEMENTATION['fid']}; {frames}"
    details = {"frame_stride": options.fid_stride}
    report.add(frechet_metric("fid", real, gen, implementation=implementation, weights=[record], details=details))


def _fvd_networks(report: Report, options: VideoEvalOptions) -> list[tuple]:
    """(key, label, weight record, network) of the FVD networks whose files are there; the others are skipped."""
    from mmgt.evaluation.i3d import StyleGANVI3D, load_i3d

    networks = []
    for key, label, spec, given, load in (
        ("fvd", "FVD (TF-Hub I3D)", wf.I3D_TFHUB, options.i3d, load_i3d),
        ("fvd_styleganv", "FVD (StyleGAN-V I3D)", wf.I3D_STYLEGANV, options.i3d_styleganv, StyleGANVI3D),
    ):
        path = wf.locate(spec, given)
        if path is None:
            report.skip(label, wf.missing(spec))
        else:
            networks.append((key, label, wf.verify(spec, path), load(path)))
    return networks


def _fvd(report: Report, pairs, facts, options: VideoEvalOptions) -> None:
    from mmgt.evaluation.i3d import i3d_features, video_clips

    networks = _fvd_networks(report, options)
    if not networks:
        return
    real = {key: {} for key, *_ in networks}
    gen = {key: {} for key, *_ in networks}
    for pair, r, g in _frames(pairs, facts, "FVD (I3D)", options.progress):
        for key, _, _, model in networks:
            real[key][pair.id] = i3d_features(model, video_clips(r, options.fvd_frames))
            gen[key][pair.id] = i3d_features(model, video_clips(g, options.fvd_frames))
    details = {"clip_frames": options.fvd_frames, "clip_stride": options.fvd_frames, "fps": facts["fps"]}
    for key, _, record, _ in networks:
        implementation = IMPLEMENTATION[key].replace("16-frame", f"{options.fvd_frames}-frame")
        report.add(
            frechet_metric(key, real[key], gen[key], implementation=implementation, weights=[record], details=details)
        )


def _fidelity(report: Report, pairs, facts, options: VideoEvalOptions) -> None:
    rows = {"psnr": {}, "ssim": {}}
    for pair, r, g in _frames(pairs, facts, "PSNR / SSIM", options.progress):
        rows["psnr"][pair.id], rows["ssim"][pair.id] = psnr(g, r), ssim(g, r)
    report.add(clip_metric("psnr", rows["psnr"], implementation=IMPLEMENTATION["psnr"]))
    report.add(clip_metric("ssim", rows["ssim"], implementation=IMPLEMENTATION["ssim"]))


def _lpips(report: Report, pairs, facts, options: VideoEvalOptions) -> None:
    from mmgt.evaluation.lpips import load_lpips, lpips_distances

    alexnet = wf.locate(wf.LPIPS_ALEXNET, options.lpips_alexnet)
    linear = wf.locate(wf.LPIPS_LINEAR, options.lpips_linear)
    for spec, path in ((wf.LPIPS_ALEXNET, alexnet), (wf.LPIPS_LINEAR, linear)):
        if path is None:
            report.skip("LPIPS", wf.missing(spec))
            return
    records = [wf.verify(wf.LPIPS_ALEXNET, alexnet), wf.verify(wf.LPIPS_LINEAR, linear)]
    model = load_lpips(alexnet, linear)
    per_clip = {}
    for pair, r, g in _frames(pairs, facts, "LPIPS (AlexNet)", options.progress):
        per_clip[pair.id] = float(lpips_distances(model, g, r).mean())
    report.add(clip_metric("lpips", per_clip, implementation=IMPLEMENTATION["lpips"], weights=records))


def _speech(pair: ClipPair, num_frames: int, fps: float) -> np.ndarray:
    """The clip's speech at 16 kHz, cut or zero-padded to ``num_frames`` frames."""
    wave = load_audio(pair.audio, sample_rate=SAMPLE_RATE)
    n = int(round(num_frames * SAMPLE_RATE / fps))
    return np.pad(wave[:n], (0, max(0, n - len(wave))))


def _sync(report: Report, pairs, facts, options: VideoEvalOptions) -> None:
    from mmgt.evaluation import syncnet as sn

    path = wf.locate(wf.SYNCNET, options.syncnet)
    if path is None and options.sync_expert is not None:
        _sync_with_expert(report, pairs, facts, options)
        return
    if path is None:
        for label in ("Sync-C", "Sync-D"):
            report.skip(label, wf.missing(wf.SYNCNET))
        return
    records = [wf.verify(wf.SYNCNET, path)] + ([wf.verify(wf.S3FD, options.s3fd)] if options.s3fd else [])
    model, faces = sn.load_syncnet(path), sn.load_face_detector(options.s3fd)
    rows = {name: {} for name in ("c", "d", "c_real", "d_real", "offset")}
    no_face = []
    try:
        for pair, r, g in _frames(pairs, facts, "Sync-C/D (SyncNet)", options.progress):
            wave = _speech(pair, len(r), facts["fps"])
            for frames, suffix in ((g, ""), (r, "_real")):
                boxes = sn.detect_face_boxes(faces, frames)
                if not np.isfinite(boxes).all(axis=1).any():  # no face in the whole video: no number for it
                    rows["c" + suffix][pair.id] = rows["d" + suffix][pair.id] = float("nan")
                    no_face.append(f"{pair.id} ({'real' if suffix else 'generated'})")
                    continue
                d, c, offset = sn.lse(model, sn.face_crops(frames, boxes), wave)
                rows["c" + suffix][pair.id], rows["d" + suffix][pair.id] = c, d
                if not suffix:
                    rows["offset"][pair.id] = offset
    finally:
        faces.close()
    if no_face:
        report.notes.append(f"Sync-C/D: no face found by {faces.label} in {', '.join(no_face)}; left out of the means")
    common = {
        "implementation": IMPLEMENTATION["sync"].format(faces=faces.label),
        "weights": records,
        "details": {"face_detector": faces.label, "av_offset_frames": rows["offset"], "no_face": no_face},
    }
    report.add(clip_metric("sync_c", rows["c"], rows["c_real"], **common))
    report.add(clip_metric("sync_d", rows["d"], rows["d_real"], **common))


def _sync_with_expert(report: Report, pairs, facts, options: VideoEvalOptions) -> None:
    """Sync-C/D with ``options.sync_expert`` (no syncnet_v2.model): the same definitions, the expert's own scale."""
    scorer = options.sync_expert
    rows = {name: {} for name in ("c", "d", "c_real", "d_real", "offset")}
    for pair, r, g in _frames(pairs, facts, "Sync-C/D (lip-sync expert)", options.progress):
        wave = _speech(pair, len(r), facts["fps"])
        for frames, suffix in ((g, ""), (r, "_real")):
            d, c, offset = scorer(pair.id, frames, wave)
            rows["c" + suffix][pair.id], rows["d" + suffix][pair.id] = c, d
            if not suffix:
                rows["offset"][pair.id] = offset
    label = getattr(scorer, "label", "a lip-sync expert")
    report.notes.append(f"Sync-C/D: no syncnet_v2.model given; scored with {label}, not comparable to published ones")
    common = {"implementation": label, "weights": [], "details": {"av_offset_frames": rows["offset"]}}
    report.add(clip_metric("sync_c", rows["c"], rows["c_real"], **common))
    report.add(clip_metric("sync_d", rows["d"], rows["d_real"], **common))


def _lip_r(pose: PoseSequence, wave: np.ndarray) -> float:
    """Keypoint lip sync of one clip; NaN when its lips are never seen."""
    try:
        return lip_sync(pose, wave, SAMPLE_RATE)[0]
    except MmgtError:
        return float("nan")


def _pose(report: Report, pairs, facts, options: VideoEvalOptions) -> None:
    from mmgt.pose.detect import DWPoseDetector, extract_poses

    dwpose, label, records = None, "MediaPipe Holistic", []
    if options.dwpose is not None:
        records = [wf.verify(wf.DWPOSE_DET, options.dwpose[0]), wf.verify(wf.DWPOSE_POSE, options.dwpose[1])]
        dwpose, label = DWPoseDetector(*options.dwpose), "DWPose"
    poses: dict[str, dict[str, PoseSequence]] = {"generated": {}, "real": {}}
    waves = {}
    try:
        for pair, r, g in _frames(pairs, facts, f"keypoints ({label})", options.progress):
            waves[pair.id] = _speech(pair, len(r), facts["fps"])
            for frames, which in ((g, "generated"), (r, "real")):
                # MediaPipe: a fresh tracker per video (detector=None); DWPose is stateless and shared.
                poses[which][pair.id] = extract_poses(frames, dwpose, fps=facts["fps"])
    finally:
        if dwpose is not None:
            dwpose.close()
    by = {"detector": f"keypoints by {label}"}

    def per_clip(fn) -> tuple[dict, dict]:
        return tuple({cid: fn(p, waves[cid]) for cid, p in poses[w].items()} for w in ("generated", "real"))

    for key, fn in (
        ("hkc", lambda p, w: hand_confidence(p)),
        ("hkv", lambda p, w: hand_variance(p)),
        ("lip_sync", _lip_r),
        ("beat_align", lambda p, w: beat_alignment_score(p, w, SAMPLE_RATE)),
    ):
        gen, real = per_clip(fn)
        report.add(clip_metric(key, gen, real, implementation=IMPLEMENTATION[key].format(**by), weights=records))
        if key == "lip_sync":
            report.curve_scores.update(gen)
    diversity = {w: pose_diversity(list(poses[w].values())) for w in ("generated", "real")}
    report.add(
        Metric(
            "diversity",
            IMPLEMENTATION["diversity"].format(**by),
            {"generated": diversity["generated"]},
            reference=diversity["real"],
            reference_note="the real clips' L1Div",
            weights=records,
        )
    )
    if options.pose_ae is not None:
        _fgd(report, poses, options, by, records)
    else:
        report.skip(
            "FGD",
            {
                "needs": "a pose autoencoder folder",
                "what": "FGD's feature network",
                "how": "train one (`mmgt train pose-ae`) and pass --pose-ae DIR",
            },
        )
    for cid, pose in poses["generated"].items():
        report.curves[cid] = {
            "generated mouth opening": mouth_opening(pose),
            "real mouth opening": mouth_opening(poses["real"][cid]),
            "audio envelope": audio_envelope(waves[cid], SAMPLE_RATE, pose.num_frames, facts["fps"]),
        }


def _fgd(report: Report, poses, options: VideoEvalOptions, by: dict, records: list[dict]) -> None:
    from mmgt.evaluation.pose_autoencoder import PoseAutoencoder, pose_features

    model = PoseAutoencoder.from_pretrained(options.pose_ae)
    real = {cid: pose_features(model, [p]) for cid, p in poses["real"].items()}
    gen = {cid: pose_features(model, [p]) for cid, p in poses["generated"].items()}
    implementation = IMPLEMENTATION["fgd"].format(window=model.config.window_frames, **by)
    report.add(
        frechet_metric(
            "fgd",
            real,
            gen,
            implementation=f"{implementation}; autoencoder {options.pose_ae}",
            weights=records,
            details={"autoencoder": str(options.pose_ae)},
        )
    )


def _contact_sheet(report: Report, pairs, facts) -> None:
    """Real and generated frames of up to 4 clips (best and worst lip sync first, when known), 6 times each."""
    order = [p.id for p in pairs]
    scored = {c: s for c, s in report.curve_scores.items() if np.isfinite(s)}
    if scored:
        ranked = sorted(scored, key=scored.get)
        order = list(dict.fromkeys([ranked[-1], ranked[0], *order]))
    by_id = {p.id: p for p in pairs}
    rows = []
    for cid in order[:CONTACT_CLIPS]:
        pair, n = by_id[cid], facts["frames"][cid][2]
        idx = np.linspace(0, n - 1, CONTACT_FRAMES).round().astype(int)
        rows.append((f"{cid}\nreal", read_video_frames(pair.real, max_frames=n)[idx]))
        rows.append((f"{cid}\ngenerated", read_video_frames(pair.generated, max_frames=n)[idx]))
    report.contact_sheet = {"rows": rows}


STAGES = {"fid": _fid, "fvd": _fvd, "fidelity": _fidelity, "lpips": _lpips, "sync": _sync, "pose": _pose}


def evaluate_videos(pairs: list[ClipPair], options: VideoEvalOptions, inputs: dict | None = None) -> Report:
    """Run the selected stages on paired clips and collect a :class:`Report` (nothing is written here).

    Args:
        pairs: from :func:`pair_clips`.
        options: stages, weight files and protocol settings.
        inputs: what to record as the inputs (paths, split, model).

    Raises:
        MmgtError: bad input (see :func:`check_clips`) or a weight file with the wrong checksum or layout.
    """
    unknown = sorted(set(options.groups) - set(GROUPS))
    if unknown:
        raise MmgtError(f"unknown metric group(s) {unknown}; choose from {', '.join(GROUPS)}")
    if options.fid_stride < 1 or options.fvd_frames < 9:
        raise MmgtError("fid_stride must be >= 1 and fvd_frames >= 9 (I3D's temporal pooling needs 9 frames)")
    facts = check_clips(pairs, need_audio=any(g in options.groups for g in AUDIO_GROUPS))
    report = Report(
        kind="video",
        title="mmgt eval video",
        inputs=dict(inputs or {}),
        clips=[p.id for p in pairs],
        conditions=["generated"],
        video={k: facts[k] for k in ("fps", "width", "height", "total_frames", "frames")},
    )
    for group in GROUPS:
        if group in options.groups:
            start = time.perf_counter()
            STAGES[group](report, pairs, facts, options)
            report.timings_s[group] = time.perf_counter() - start
    start = time.perf_counter()
    _contact_sheet(report, pairs, facts)
    report.timings_s["contact sheet"] = time.perf_counter() - start
    return report

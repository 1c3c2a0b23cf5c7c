"""File-to-file generation: an image file and an audio file in, an mp4 with the audio (and extras) out.

Used by ``mmgt generate``, ``mmgt demo`` and the Gradio app, so all three prepare inputs, check them and write
outputs the same way. Every output file is written under a temporary name and renamed when complete: a failure
leaves no partial mp4.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from mmgt.constants import FPS, MUX_SAMPLE_RATE, SAMPLE_RATE
from mmgt.contracts import PoseSequence
from mmgt.pipelines.mmgt_pipeline import MMGTPipeline
from mmgt.pipelines.reference import load_image
from mmgt.pose.masks import motion_masks
from mmgt.pose.render import render_pose_sequence
from mmgt.utils.audio_io import load_audio
from mmgt.utils.files import atomic_output
from mmgt.utils.video_writer import VideoWriter

logger = logging.getLogger(__name__)

MASK_COLOURS = {"lips": (255, 64, 64), "face_hands": (64, 200, 64), "hands": (64, 128, 255)}  # preview overlay


@dataclass
class Inputs:
    """A loaded reference image and speech: ``image`` (H, W, 3) uint8; ``wave`` (N,) at 16 kHz for the models;
    ``mux`` (M,) at 48 kHz for the output's audio track."""

    image: np.ndarray
    wave: np.ndarray
    mux: np.ndarray


def load_inputs(image: str | os.PathLike, audio: str | os.PathLike) -> Inputs:
    """Read and convert the two input files, or raise a one-line MediaError naming the file and the problem."""
    picture = load_image(image)
    wave = load_audio(audio, sample_rate=SAMPLE_RATE)
    return Inputs(picture, wave, load_audio(audio, sample_rate=MUX_SAMPLE_RATE))


@dataclass
class GenerateResult:
    """Paths and facts of one generation."""

    output: Path
    num_frames: int
    duration_s: float
    preview: Path | None = None
    intermediates: list[Path] = field(default_factory=list)


def mask_overlay(poses: PoseSequence) -> np.ndarray:
    """(F, H, W, 3) uint8 picture of the motion masks: face+hands green, hands blue, lips red (drawn in that order)."""
    masks = motion_masks(poses)
    out = np.zeros((poses.num_frames, poses.height, poses.width, 3), np.uint8)
    for name in ("face_hands", "hands", "lips"):
        out[getattr(masks, name)] = MASK_COLOURS[name]
    return out


def preview_frames(reference: np.ndarray, poses: PoseSequence, frames: np.ndarray) -> np.ndarray:
    """Side-by-side preview: reference | pose | masks | output.

    Args:
        reference: (S, S, 3) uint8 prepared reference image.
        poses: the n poses of these frames (S x S pixels).
        frames: (n, S, S, 3) uint8 generated frames.

    Returns:
        (n, S, 4 S, 3) uint8.
    """
    n = len(frames)
    tiles = [np.broadcast_to(reference, frames.shape), render_pose_sequence(poses), mask_overlay(poses), frames]
    return np.concatenate(tiles, axis=2)[:n]


def generate_files(
    pipe: MMGTPipeline,
    inputs: Inputs,
    output: str | os.PathLike,
    *,
    preview: str | os.PathLike | None = None,
    intermediates: str | os.PathLike | None = None,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    pose_steps: int | None = None,
    size: int | None = None,
    max_seconds: float | None = None,
    reference_pose: PoseSequence | None = None,
    progress: bool = True,
) -> GenerateResult:
    """Generate ``output`` (.mp4, with the audio) from a reference photo and speech.

    Args:
        pipe: the loaded end-to-end pipeline.
        inputs: from :func:`load_inputs` (any common image and audio format; any length up to ``max_seconds``).
        output: the mp4 to write: ceil(duration x 25) frames and the audio, durations equal within a frame.
        preview: also write a side-by-side video (reference | pose | masks | output) with the audio.
        intermediates: also write into this folder ``reference.png``, ``poses.npz``, ``pose.mp4`` and
            ``masks/{lips,face_hands,hands}.mp4``.
        seed, steps, guidance, pose_steps, size, max_seconds, reference_pose: see :meth:`MMGTPipeline.__call__`.
        progress: progress bars per stage.

    Raises:
        MmgtError (MediaError, NoPersonError, ...): one line naming the input and the problem; nothing is written.
    """
    picture, wave, mux = inputs.image, inputs.wave, inputs.mux
    pipe.check_audio(wave, SAMPLE_RATE, max_seconds)  # before any model runs
    output = Path(output)
    state: dict = {"done": 0}

    writers = [VideoWriter(output, fps=FPS, audio=mux, sample_rate=MUX_SAMPLE_RATE)]
    if preview is not None:
        writers.append(VideoWriter(Path(preview), fps=FPS, audio=mux, sample_rate=MUX_SAMPLE_RATE))

    def on_poses(poses: PoseSequence, reference: np.ndarray) -> None:
        state.update(poses=poses, reference=reference)

    def on_frames(chunk: np.ndarray) -> None:
        writers[0].write(chunk)
        if preview is not None:
            start = state["done"]
            writers[1].write(preview_frames(state["reference"], state["poses"][start : start + len(chunk)], chunk))
        state["done"] += len(chunk)

    try:
        result = pipe(
            picture,
            wave,
            SAMPLE_RATE,
            reference_pose=reference_pose,
            size=size,
            seed=seed,
            num_inference_steps=steps,
            guidance_scale=guidance,
            pose_steps=pose_steps,
            max_seconds=max_seconds,
            frame_callback=on_frames,
            pose_callback=on_poses,
            return_masks=False,
            progress=progress,
        )
        paths = [w.close() for w in writers]
    except BaseException:
        for w in writers:
            w.abort()
        raise
    extra = _write_intermediates(Path(intermediates), result, wave) if intermediates is not None else []
    return GenerateResult(
        paths[0], state["done"], state["done"] / FPS, paths[1] if preview is not None else None, extra
    )


def _write_intermediates(folder: Path, result, wave: np.ndarray) -> list[Path]:
    """reference.png, poses.npz, pose.mp4 (with the audio) and the three mask videos."""
    from mmgt.cli.pose import render_outputs  # the one streamed pose/mask-video writer

    folder.mkdir(parents=True, exist_ok=True)
    with atomic_output(folder / "reference.png") as tmp:
        Image.fromarray(result.reference).save(tmp, format="PNG")
    poses_path = result.poses.save(folder / "poses.npz")
    render_outputs(result.poses, folder / "pose.mp4", folder / "masks", result.poses.width, wave, quiet=True)
    masks = [folder / "masks" / f"{n}.mp4" for n in ("lips", "face_hands", "hands")]
    return [folder / "reference.png", poses_path, folder / "pose.mp4", *masks]

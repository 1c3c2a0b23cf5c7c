"""File-to-file generation: an image file and an audio file in, an mp4 with the audio (and extras) out.

Used by ``mmgt generate``, ``mmgt demo`` and the Gradio app, so all three prepare inputs, check them and write
outputs the same way. Every output file is written under a temporary name and renamed when complete: a failure
leaves no partial mp4.
"""

from __future__ import annotations

import os
import shutil
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from mmgt.constants import FPS, MOTION_MASKS, MUX_SAMPLE_RATE
from mmgt.contracts import PoseSequence
from mmgt.pipelines.mmgt_pipeline import MMGTOutput, MMGTPipeline
from mmgt.pipelines.reference import load_image
from mmgt.pose.masks import MotionMasks, motion_masks
from mmgt.pose.render import render_pose_sequence
from mmgt.pose.videos import PoseVideos, mask_overlay
from mmgt.utils.audio_io import Audio
from mmgt.utils.files import atomic_output
from mmgt.utils.video_io import VideoWriter


@dataclass
class Inputs:
    """A loaded reference image, (H, W, 3) uint8, and the speech, decoded once at its own rate."""

    image: np.ndarray
    audio: Audio


def load_inputs(image: str | os.PathLike, audio: str | os.PathLike) -> Inputs:
    """Read and convert the two input files, or raise a one-line MediaError naming the file and the problem."""
    return Inputs(load_image(image), Audio.load(audio))


@dataclass
class GenerateResult:
    """Paths and facts of one generation."""

    output: Path
    num_frames: int
    duration_s: float
    preview: Path | None = None
    intermediates: list[Path] = field(default_factory=list)


def preview_frames(reference: np.ndarray, rendered: np.ndarray, masks: MotionMasks, frames: np.ndarray) -> np.ndarray:
    """Side-by-side preview: reference | pose | masks | output.

    Args:
        reference: (S, S, 3) uint8 prepared reference image.
        rendered: (n, S, S, 3) uint8 pose frames; masks: their motion masks (S x S).
        frames: (n, S, S, 3) uint8 generated frames.

    Returns:
        (n, S, 4 S, 3) uint8.
    """
    return np.concatenate([np.broadcast_to(reference, frames.shape), rendered, mask_overlay(masks), frames], axis=2)


def generate_files(
    pipe: MMGTPipeline,
    inputs: Inputs,
    output: str | os.PathLike,
    *,
    preview: str | os.PathLike | None = None,
    intermediates: str | os.PathLike | None = None,
    **options,
) -> GenerateResult:
    """Generate ``output`` (.mp4, with the audio) from a reference photo and speech.

    The extras are written while the video is generated, chunk by chunk: each chunk's pose frames and motion masks
    are made once and serve both the preview and the intermediates.

    Args:
        pipe: the loaded end-to-end pipeline.
        inputs: from :func:`load_inputs` (any common image and audio format; any length up to ``max_seconds``).
        output: the mp4 to write: ceil(duration x 25) frames and the audio, durations equal within a frame.
        preview: also write a side-by-side video (reference | pose | masks | output) with the audio.
        intermediates: also write into this folder ``reference.png``, ``poses.npz``, ``pose.mp4`` (with the audio)
            and ``masks/{lips,face_hands,hands}.mp4``.
        options: :meth:`MMGTPipeline.__call__` arguments (``seed``, ``size``, ``max_seconds``, ``reference_pose``,
            ``stage1``/``stage2`` sampling overrides, ``progress``), passed on unchanged.

    Raises:
        MmgtError (MediaError, NoPersonError, ...): one line naming the input and the problem; nothing is written.
    """
    mux = inputs.audio.at(MUX_SAMPLE_RATE)  # the output's audio track, resampled from the decoded samples
    track = {"fps": FPS, "audio": mux.wave, "sample_rate": mux.sample_rate}
    folder = None if intermediates is None else Path(intermediates)
    new_folder = folder is not None and not folder.exists()
    try:
        with ExitStack() as files:  # every file appears only if the whole generation succeeds
            video = files.enter_context(VideoWriter(output, **track))
            side = files.enter_context(VideoWriter(preview, **track)) if preview is not None else None
            extras = None
            if folder is not None:
                extras = files.enter_context(PoseVideos(folder / "pose.mp4", folder / "masks", FPS, inputs.audio))
            state: dict = {"done": 0}

            def on_poses(poses: PoseSequence, reference: np.ndarray) -> None:
                state.update(poses=poses, reference=reference)

            def on_frames(chunk: np.ndarray) -> None:
                video.write(chunk)
                if side is not None or extras is not None:
                    poses = state["poses"][state["done"] : state["done"] + len(chunk)]
                    if extras is not None:
                        rendered, masks = extras.write(poses)
                    else:
                        rendered, masks = render_pose_sequence(poses), motion_masks(poses)
                    if side is not None:
                        side.write(preview_frames(state["reference"], rendered, masks, chunk))
                state["done"] += len(chunk)

            result = pipe(
                inputs.image,
                inputs.audio,
                frame_callback=on_frames,
                pose_callback=on_poses,
                return_masks=False,  # the chunks' masks are made above; the whole video's would not fit long audio
                **options,
            )
    except BaseException:
        if new_folder:  # the writers removed their files; leave no empty folders behind either
            shutil.rmtree(folder, ignore_errors=True)
        raise
    extra = _write_still_intermediates(folder, result) if folder is not None else []
    num = state["done"]
    return GenerateResult(video.path, num, num / FPS, side.path if side is not None else None, extra)


def _write_still_intermediates(folder: Path, result: MMGTOutput) -> list[Path]:
    """reference.png and poses.npz beside the pose and mask videos written during generation; all the paths."""
    with atomic_output(folder / "reference.png") as tmp:
        Image.fromarray(result.reference).save(tmp, format="PNG")
    poses_path = result.poses.save(folder / "poses.npz")
    masks = [folder / "masks" / f"{n}.mp4" for n in MOTION_MASKS]
    return [folder / "reference.png", poses_path, folder / "pose.mp4", *masks]

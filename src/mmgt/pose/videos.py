"""Pose and motion-mask pictures and videos, streamed chunk by chunk so memory does not grow with the length.

Used by ``mmgt pose render``, ``mmgt audio2pose --render``, the intermediates of ``mmgt generate`` and the app; the
masks come from :func:`mmgt.pose.masks.motion_masks`, once per chunk.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import numpy as np

from mmgt.constants import MOTION_MASKS
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError
from mmgt.pose.masks import MotionMasks, mask_frames_to_uint8, motion_masks
from mmgt.pose.render import render_pose_sequence
from mmgt.utils.audio_io import Audio
from mmgt.utils.video_io import VideoWriter

RENDER_CHUNK = 64  # frames rendered per batch: memory stays constant for any length
# The preview overlay: face+hands green, hands blue, lips red (drawn in this order, so lips and hands stay visible).
MASK_COLOURS = {"face_hands": (64, 200, 64), "hands": (64, 128, 255), "lips": (255, 64, 64)}


def mask_overlay(masks: MotionMasks) -> np.ndarray:
    """(F, H, W, 3) uint8 picture of the three motion masks in :data:`MASK_COLOURS` on black."""
    out = np.zeros((masks.num_frames, masks.height, masks.width, 3), np.uint8)
    for name, colour in MASK_COLOURS.items():
        out[getattr(masks, name)] = colour
    return out


def write_pose_videos(
    pose: PoseSequence,
    pose_video: str | Path | None = None,
    masks_dir: str | Path | None = None,
    size: int | None = None,
    audio: Audio | None = None,
) -> list[Path]:
    """Stream the pose video (with ``audio`` muxed) and the mask videos ``masks_dir/{lips,face_hands,hands}.mp4``.

    Args:
        pose: the pose sequence; every video has exactly one frame per pose frame, at the pose's fps.
        pose_video: the pose video to write (None: none).
        masks_dir: folder for the three mask videos (white inside the region, black outside; None: none).
        size: square side in pixels (even, >= 16); default the pose's larger side.
        audio: muxed into the pose video.

    Returns:
        The written paths, pose video first. Each file appears only when complete.
    """
    size = size or max(pose.width, pose.height)
    if size < 16 or size % 2:
        raise MmgtError(f"video size must be an even number >= 16, got {size}")
    pose = pose.rescaled(size, size)
    track = {} if audio is None else {"audio": audio.wave, "sample_rate": audio.sample_rate}
    with ExitStack() as stack:
        writers = {}
        if pose_video is not None:
            writers["pose"] = stack.enter_context(VideoWriter(pose_video, fps=pose.fps, **track))
        if masks_dir is not None:
            for name in MOTION_MASKS:
                writers[name] = stack.enter_context(VideoWriter(Path(masks_dir) / f"{name}.mp4", fps=pose.fps))
        for start in range(0, pose.num_frames, RENDER_CHUNK):
            chunk = pose[start : start + RENDER_CHUNK]
            if "pose" in writers:
                writers["pose"].write(render_pose_sequence(chunk))
            if masks_dir is not None:
                masks = motion_masks(chunk)
                for name in MOTION_MASKS:
                    writers[name].write(mask_frames_to_uint8(getattr(masks, name)))
    return [w.path for w in writers.values()]

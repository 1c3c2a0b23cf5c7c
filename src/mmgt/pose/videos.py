"""Pose and motion-mask pictures and videos, streamed chunk by chunk so memory does not grow with the length.

Used by ``mmgt pose render``, ``mmgt audio2pose --render``, the intermediates and preview of ``mmgt generate`` and
the app. Each chunk is rendered once and its masks come from :func:`mmgt.pose.masks.motion_masks` once; a caller
that also draws a preview reuses both.
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


class PoseVideos:
    """The pose video (with the audio) and the three mask videos ``{lips,face_hands,hands}.mp4``, fed in chunks.

    Use as a context manager: the files appear only when the block ends without an error.

    Args:
        pose_video: the pose video to write (None: none).
        masks_dir: folder for the mask videos (white inside the mask, black outside; None: none).
        fps: frame rate of the poses.
        audio: muxed into the pose video.
    """

    def __init__(
        self,
        pose_video: str | Path | None,
        masks_dir: str | Path | None,
        fps: float,
        audio: Audio | None = None,
    ):
        track = {} if audio is None else {"audio": audio.wave, "sample_rate": audio.sample_rate}
        self._stack = ExitStack()
        self.writers: dict[str, VideoWriter] = {}
        if pose_video is not None:
            self.writers["pose"] = VideoWriter(pose_video, fps=fps, **track)
        if masks_dir is not None:
            self.writers.update({n: VideoWriter(Path(masks_dir) / f"{n}.mp4", fps=fps) for n in MOTION_MASKS})

    def __enter__(self) -> PoseVideos:
        for writer in self.writers.values():
            self._stack.enter_context(writer)
        return self

    def __exit__(self, *exc) -> None:
        self._stack.__exit__(*exc)

    def write(self, chunk: PoseSequence) -> tuple[np.ndarray, MotionMasks]:
        """Render ``chunk`` and its masks, write them; returns the (n, H, W, 3) pose frames and the masks."""
        rendered, masks = render_pose_sequence(chunk), motion_masks(chunk)
        if "pose" in self.writers:
            self.writers["pose"].write(rendered)
        for name in MOTION_MASKS:
            if name in self.writers:
                self.writers[name].write(mask_frames_to_uint8(getattr(masks, name)))
        return rendered, masks

    @property
    def paths(self) -> list[Path]:
        return [w.path for w in self.writers.values()]


def write_pose_videos(
    pose: PoseSequence,
    pose_video: str | Path | None = None,
    masks_dir: str | Path | None = None,
    size: int | None = None,
    audio: Audio | None = None,
) -> list[Path]:
    """Stream a whole pose sequence into :class:`PoseVideos` (one frame per pose frame, at the pose's fps).

    Args:
        size: square side in pixels (even, >= 16); default the pose's larger side.

    Returns:
        The written paths, pose video first.
    """
    size = size or max(pose.width, pose.height)
    if size < 16 or size % 2:
        raise MmgtError(f"video size must be an even number >= 16, got {size}")
    pose = pose.rescaled(size, size)
    with PoseVideos(pose_video, masks_dir, pose.fps, audio) as videos:
        for start in range(0, pose.num_frames, RENDER_CHUNK):
            videos.write(pose[start : start + RENDER_CHUNK])
    return videos.paths

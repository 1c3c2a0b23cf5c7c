"""The end-to-end MMGT pipeline: speech + one image -> a talking, gesturing video (spec §6).

Stage 1 (:class:`AudioToPosePipeline`) turns the speech into a whole-body pose sequence that starts from the person's
detected pose; stage 2 (:class:`PoseToVideoPipeline`) renders the person following those poses, with the motion masks
gating the audio attention. Each stage stays usable on its own; this class only composes them. One folder holds
everything (:mod:`mmgt.pipelines.model_folder`).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers.utils import logging as dlogging

from mmgt.audio.encoders import SpeechEncoder
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError, ModelFolderError
from mmgt.pipelines.audio_to_pose import AudioToPosePipeline
from mmgt.pipelines.model_folder import (
    STAGES,
    check_settings,
    encoder_folder,
    needs_encoder,
    read_model_config,
    stage_folder,
    write_model_config,
)
from mmgt.pipelines.pose_to_video import PoseToVideoPipeline
from mmgt.pipelines.reference import fit_image, prepare_reference
from mmgt.pose.masks import MotionMasks, motion_masks
from mmgt.utils.audio_io import Audio
from mmgt.utils.files import atomic_folder

logger = logging.getLogger(__name__)


@dataclass
class MMGTOutput:
    """What one generation produced.

    Attributes:
        frames: (F, S, S, 3) uint8 video, or None when streamed to ``frame_callback``; F = ceil(duration x 25).
        audio: the input speech as given: mux it with the frames.
        poses: the F stage-1 poses in pixels of the S x S output.
        masks: the motion masks (lips, face_hands, hands: (F, S, S) bool each), or None if not requested.
        reference: (S, S, 3) uint8 the prepared reference image (cropped/padded and resized).
        reference_pose: the 1-frame pose detected in ``reference`` (stage 1 starts from it).
    """

    frames: np.ndarray | None
    audio: Audio
    poses: PoseSequence
    masks: MotionMasks | None
    reference: np.ndarray
    reference_pose: PoseSequence


class MMGTPipeline:
    """Stage 1 then stage 2, with the end-to-end settings of one model folder (output size, audio length limit).

    Sampling defaults live in each stage's own config (``pipe.stage1.sampling``, ``pipe.stage2.sampling``).

    Example:
        >>> pipe = MMGTPipeline.from_pretrained("models/demo")  # doctest: +SKIP
        >>> out = pipe(load_image("me.png"), Audio.load("me.wav"), seed=0)
        >>> save_video("me.mp4", out.frames, audio=out.audio.wave, sample_rate=out.audio.sample_rate)
    """

    def __init__(self, stage1: AudioToPosePipeline, stage2: PoseToVideoPipeline, **settings):
        try:
            self.config = check_settings(settings)
        except ModelFolderError as e:
            raise MmgtError(str(e)) from None
        self.stage1, self.stage2 = stage1, stage2
        factor = stage2.vae_scale_factor
        if self.config["size"] % factor:
            raise MmgtError(f"size must be a multiple of {factor}, got {self.config['size']}")

    # -----------------------------------------------------------------------------------------------------------------
    # Folders
    # -----------------------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike, encoders: dict[str, str | os.PathLike] | None = None
    ) -> MMGTPipeline:
        """Load ``folder`` (:mod:`mmgt.pipelines.model_folder`); ``encoders`` overrides ``encoders/stage1|stage2``.

        Raises:
            ModelFolderError: naming the folder and the missing or mismatched part.
        """
        root = Path(folder)
        config = read_model_config(root)
        stages = {}
        for name, cls_ in zip(STAGES, (AudioToPosePipeline, PoseToVideoPipeline)):
            sub = stage_folder(root, name)
            if not (sub / "model_index.json").is_file():
                raise ModelFolderError(f"{root}: {name}/ is missing or incomplete (no {name}/model_index.json)")
            stages[name] = _quiet_load(cls_, sub)
            stages[name].set_sampling(**config.sampling.get(name, {}))  # a version-1 mmgt.json's sampling values
        pipe = cls(stages["stage1"], stages["stage2"], **config.settings)
        pipe._attach_encoders(root, encoders or {})
        return pipe

    def _attach_encoders(self, root: Path, overrides: dict) -> None:
        """Attach the speech encoders that the stages' audio recipes name (mel recipes need none)."""
        for number, (name, stage) in enumerate(zip(STAGES, (self.stage1, self.stage2)), start=1):
            recipe = stage.config.audio_features
            if not needs_encoder(recipe):
                continue
            folder = Path(overrides.get(name) or encoder_folder(root, name))
            if not (folder / "config.json").is_file():
                raise ModelFolderError(
                    f"{name} reads speech-encoder features ({recipe['speech'].get('folder', '?')}): no "
                    f"encoder folder at {folder}"
                )
            stage.set_audio_encoder(SpeechEncoder.for_stage(folder, number))

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write the folder (both stages, ``mmgt.json``); built beside it and renamed, so it appears whole or not."""
        target = Path(folder)
        with atomic_folder(target) as tmp:
            for name, stage in zip(STAGES, (self.stage1, self.stage2)):
                stage.save_pretrained(stage_folder(tmp, name))
                if stage.audio_encoder is not None:
                    shutil.copytree(stage.audio_encoder.folder, encoder_folder(tmp, name))
            write_model_config(tmp, self.config)
        return target

    def to(self, device: str | torch.device) -> MMGTPipeline:
        self.stage1.to(device)
        self.stage2.to(device)
        return self

    # -----------------------------------------------------------------------------------------------------------------
    # Generation
    # -----------------------------------------------------------------------------------------------------------------
    def check_audio(self, audio: Audio, max_seconds: float | None = None) -> None:
        """The model's policy for speech: a length limit (an MmgtError); silence only warns."""
        if not isinstance(audio, Audio):
            raise MmgtError(f"audio must be an mmgt.utils.audio_io.Audio, got {type(audio).__name__}")
        limit = self.config["max_audio_seconds"] if max_seconds is None else max_seconds
        if limit and audio.duration > limit:
            raise MmgtError(
                f"{audio.name}: {audio.duration:.1f} s is longer than the maximum of {limit:g} s (raise max_seconds)"
            )
        if audio.is_silent():
            logger.warning(f"{audio.name}: the audio is silent; the person will not speak")

    @torch.no_grad()
    def __call__(
        self,
        image: np.ndarray,
        audio: Audio,
        *,
        reference_pose: PoseSequence | None = None,
        size: int | None = None,
        seed: int = 0,
        stage1: dict | None = None,
        stage2: dict | None = None,
        max_seconds: float | None = None,
        frame_callback=None,
        pose_callback=None,
        return_masks: bool = True,
        detector=None,
        progress: bool = True,
    ) -> MMGTOutput:
        """Generate ceil(duration x 25) frames of the person in ``image`` speaking ``audio``.

        Args:
            image: (H, W, 3) uint8 RGB photo of the person (see :func:`mmgt.pipelines.reference.load_image` for
                files); it is cropped to a square upper-body shot (or padded) and resized to ``size``.
            audio: the speech, any length up to ``max_seconds``.
            reference_pose: the person's pose in ``image`` pixels, if known (skips detection; the image is then only
                resized, so give a square image).
            size: output size S (a multiple of 8); default ``config["size"]``.
            seed: seeds both stages.
            stage1, stage2: sampling overrides for each stage, by the stages' own call names, e.g.
                ``stage2={"num_inference_steps": 20, "guidance_scale": 3.0}``; a value of None or a missing key
                keeps the model's default (``self.stage1.sampling``, ``self.stage2.sampling``).
            max_seconds: refuse longer audio (default ``config["max_audio_seconds"]``; 0 = no limit).
            frame_callback: receives (n, S, S, 3) uint8 chunks as they are decoded; ``frames`` is then None and memory
                does not grow with the length.
            pose_callback: called as ``pose_callback(poses, reference)`` with the F stage-1 poses (S x S pixels) and
                the (S, S, 3) prepared reference before stage 2 starts.
            return_masks: compute the motion masks for the output (F x S x S x 3 bytes).
            detector: a pose detector for the reference (default MediaPipe).
            progress: progress bars per stage.

        Returns:
            :class:`MMGTOutput`.
        """
        size = int(size or self.config["size"])
        self.check_audio(audio, max_seconds)

        # 1. Reference: a square person crop at the output size and its pose.
        if reference_pose is None:
            prepared = prepare_reference(image, size, detector=detector)
            reference, ref_pose = prepared.image, prepared.pose
        else:
            reference, ref_pose = _resized_reference(image, reference_pose, size)

        # 2. Stage 1: speech -> poses (exactly ceil(duration x 25) of them), in pixels of the S x S reference.
        generator = torch.Generator().manual_seed(seed)
        poses = self.stage1(audio, ref_pose, generator=generator, progress=progress, **(stage1 or {})).poses
        if poses.num_frames != audio.num_frames:  # the frame-count contract
            raise MmgtError(f"stage 1 produced {poses.num_frames} frames for {audio.duration:.2f} s of audio")
        if pose_callback is not None:
            pose_callback(poses, reference)

        # 3. Stage 2: reference + poses + speech -> frames (masks are made inside, from the same poses).
        frames = self.stage2(
            reference,
            poses,
            audio,
            height=size,
            width=size,
            generator=torch.Generator().manual_seed(seed),
            frame_callback=frame_callback,
            progress=progress,
            **(stage2 or {}),
        ).frames
        masks = motion_masks(poses) if return_masks else None
        return MMGTOutput(frames, audio, poses, masks, reference, ref_pose)


def assemble_model(
    stage1: str | os.PathLike,
    stage2: str | os.PathLike,
    output: str | os.PathLike,
    settings: dict | None = None,
    encoders: dict[str, str | os.PathLike | None] | None = None,
    sampling: dict[str, dict] | None = None,
) -> Path:
    """Combine the two stages' exported pipeline folders (and their speech-encoder folders) into one model folder.

    ``settings``: end-to-end settings (``size``, ``max_audio_seconds``); ``sampling``: per stage (``"stage1"``,
    ``"stage2"``), sampling defaults to save over the exported ones (None values keep them).
    """
    parts = {}
    for name, cls, folder in (("stage1", AudioToPosePipeline, stage1), ("stage2", PoseToVideoPipeline, stage2)):
        if not (Path(folder) / "model_index.json").is_file():
            raise ModelFolderError(f"{name}: {folder} is not an exported pipeline folder (no model_index.json)")
        parts[name] = _quiet_load(cls, Path(folder))
        parts[name].set_sampling(**(sampling or {}).get(name, {}))
    pipe = MMGTPipeline(parts["stage1"], parts["stage2"], **(settings or {}))
    pipe._attach_encoders(Path(output), {k: v for k, v in (encoders or {}).items() if v})
    return pipe.save_pretrained(output)


def _quiet_load(cls, folder: Path):
    """``cls.from_pretrained(folder)`` without diffusers' per-component loading bar (generation has its own bars).

    Raises:
        ModelFolderError: the folder cannot be loaded (missing weights, shape mismatch, bad config), named.
    """
    dlogging.disable_progress_bar()
    try:
        return cls.from_pretrained(folder)
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFolderError(f"{folder}: cannot load ({first})") from e
    finally:
        dlogging.enable_progress_bar()


def _resized_reference(image: np.ndarray, pose: PoseSequence, size: int) -> tuple[np.ndarray, PoseSequence]:
    """Resize a (square) image and its known pose to ``size``."""
    h, w = image.shape[:2]
    if abs(w / h - 1) > 0.01:
        raise MmgtError(f"reference_pose given: the image must be square, got {w}x{h}")
    return fit_image(image, size, size), pose[:1].rescaled(size, size)

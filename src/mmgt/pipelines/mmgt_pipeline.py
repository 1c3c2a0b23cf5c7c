"""The end-to-end MMGT pipeline: speech + one image -> a talking, gesturing video (spec §6).

Stage 1 (:class:`AudioToPosePipeline`) turns the speech into a whole-body pose sequence that starts from the person's
detected pose; stage 2 (:class:`PoseToVideoPipeline`) renders the person following those poses, with the motion masks
gating the audio attention. Each stage stays usable on its own; this class only composes them.

One model folder holds everything::

    model/
      mmgt.json            format, version, output size, sampling defaults, maximum audio length
      stage1/              AudioToPosePipeline (model_index.json, denoiser/, scheduler/; its audio-feature recipe)
      stage2/              PoseToVideoPipeline (vae/, image_encoder/, reference_unet/, unet/, pose_guider/,
                           audio_projection/, audio_adapter/, scheduler/; its audio-feature recipe)
      encoders/stage1/     speech encoder folder (WavLM), only when stage 1's recipe names one
      encoders/stage2/     speech encoder folder (wav2vec2), only when stage 2's recipe names one
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers.utils import logging as dlogging

from mmgt.audio.encoders import SpeechEncoder
from mmgt.constants import FPS, SAMPLE_RATE, num_frames_for
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError, ModelFolderError
from mmgt.pipelines.audio_to_pose import AudioToPosePipeline
from mmgt.pipelines.pose_to_video import PoseToVideoPipeline
from mmgt.pipelines.reference import prepare_reference
from mmgt.pose.masks import MotionMasks, motion_masks
from mmgt.utils.audio_io import check_wave, resample

logger = logging.getLogger(__name__)

CONFIG_NAME = "mmgt.json"
FORMAT, VERSION = "mmgt-pipeline", 1
SILENCE_RMS = 1e-4  # quieter than this (about -80 dBFS) is treated as silence: allowed, with a warning
DEFAULTS = {
    "size": 512,  # output width and height (spec §5.7: 512²)
    "pose_steps": 50,  # stage-1 DDIM steps (spec §3.6)
    "pose_guidance": 2.0,  # stage-1 CFG scale (spec §3.6)
    "steps": 30,  # stage-2 DDIM steps (spec §5.7)
    "guidance": 3.5,  # stage-2 CFG scale (spec §5.7)
    "max_audio_seconds": 600.0,  # longer audio is refused (a 10-minute talk; raise it for longer)
}


@dataclass
class MMGTOutput:
    """What one generation produced.

    Attributes:
        frames: (F, S, S, 3) uint8 video, or None when streamed to ``frame_callback``; F = ceil(duration x 25).
        wave: (N,) float32 the input speech as given (mono), at ``sample_rate``: mux it with the frames.
        sample_rate: rate of ``wave`` in Hz.
        poses: the F stage-1 poses in pixels of the S x S output.
        masks: the motion masks (lips, face_hands, hands: (F, S, S) bool each), or None if not requested.
        reference: (S, S, 3) uint8 the prepared reference image (cropped/padded and resized).
        reference_pose: the 1-frame pose detected in ``reference`` (stage 1 starts from it).
    """

    frames: np.ndarray | None
    wave: np.ndarray
    sample_rate: int
    poses: PoseSequence
    masks: MotionMasks | None
    reference: np.ndarray
    reference_pose: PoseSequence


class MMGTPipeline:
    """Stage 1 then stage 2, with the shared settings of one model folder.

    Example:
        >>> pipe = MMGTPipeline.from_pretrained("models/demo")  # doctest: +SKIP
        >>> out = pipe(read_image("me.png"), wave, 16000, seed=0)
        >>> save_video("me.mp4", out.frames, audio=out.wave, sample_rate=out.sample_rate)
    """

    def __init__(self, stage1: AudioToPosePipeline, stage2: PoseToVideoPipeline, **config):
        unknown = set(config) - set(DEFAULTS)
        if unknown:
            raise MmgtError(f"unknown MMGTPipeline setting(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        self.stage1, self.stage2 = stage1, stage2
        self.config = {**DEFAULTS, **config}
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
        """Load ``folder`` (layout in the module docstring); ``encoders`` overrides ``encoders/stage1|stage2``.

        Raises:
            ModelFolderError: naming the folder and the missing or mismatched part.
        """
        root = Path(folder)
        if not root.is_dir():
            raise ModelFolderError(f"model folder {root} not found")
        config_file = root / CONFIG_NAME
        if not config_file.is_file():
            raise ModelFolderError(f"{root}: no {CONFIG_NAME} (not an mmgt model folder; see `mmgt weights check`)")
        meta = json.loads(config_file.read_text())
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ModelFolderError(
                f"{config_file}: format {meta.get('format')!r} v{meta.get('version')} is not {FORMAT!r} v{VERSION}"
            )
        stages = {}
        for name, cls_ in (("stage1", AudioToPosePipeline), ("stage2", PoseToVideoPipeline)):
            sub = root / name
            if not (sub / "model_index.json").is_file():
                raise ModelFolderError(f"{root}: {name}/ is missing or incomplete (no {name}/model_index.json)")
            try:
                stages[name] = _quiet_load(cls_, sub)
            except (OSError, ValueError, RuntimeError, KeyError) as e:  # missing weights, shape mismatch, bad config
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ModelFolderError(f"{sub}: cannot load ({first})") from e
        pipe = cls(stages["stage1"], stages["stage2"], **meta.get("config", {}))
        pipe._attach_encoders(root, encoders or {})
        return pipe

    def _attach_encoders(self, root: Path, overrides: dict) -> None:
        """Attach the speech encoders that the stages' audio recipes name (mel recipes need none)."""
        for name, stage in (("stage1", self.stage1), ("stage2", self.stage2)):
            speech = stage.config.audio_features["speech"]
            if speech.get("type") == "mel":
                continue
            folder = Path(overrides.get(name) or root / "encoders" / name)
            if not (folder / "config.json").is_file():
                raise ModelFolderError(
                    f"{name} reads speech-encoder features ({speech.get('folder', '?')}): no "
                    f"encoder folder at {folder}"
                )
            if name == "stage1":
                stage.set_audio_encoder(SpeechEncoder.from_pretrained(folder, layers="last"))
            else:
                stage.set_audio_encoder(
                    SpeechEncoder.from_pretrained(folder, layers="all", interpolate="before_transformer")
                )

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write the folder (both stages, ``mmgt.json``); built beside it and renamed, so it appears whole or not."""
        target = Path(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            self.stage1.save_pretrained(tmp / "stage1")
            self.stage2.save_pretrained(tmp / "stage2")
            for name, stage in (("stage1", self.stage1), ("stage2", self.stage2)):
                encoder = getattr(stage, "audio_encoder", None)
                if encoder is not None:
                    shutil.copytree(encoder.folder, tmp / "encoders" / name)
            meta = {"format": FORMAT, "version": VERSION, "config": self.config}
            (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    def to(self, device: str | torch.device) -> MMGTPipeline:
        self.stage1.to(device)
        self.stage2.to(device)
        return self

    # -----------------------------------------------------------------------------------------------------------------
    # Generation
    # -----------------------------------------------------------------------------------------------------------------
    def check_audio(self, wave: np.ndarray, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
        """(N,) float32 mono speech, or an MmgtError naming the problem; silent audio only warns."""
        wave = check_wave(np.asarray(wave, dtype=np.float32), sample_rate, name="audio")
        limit = self.config["max_audio_seconds"] if max_seconds is None else max_seconds
        duration = len(wave) / sample_rate
        if limit and duration > limit:
            raise MmgtError(f"audio: {duration:.1f} s is longer than the maximum of {limit:g} s (raise max_seconds)")
        if np.sqrt(np.mean(wave.astype(np.float64) ** 2)) < SILENCE_RMS:
            logger.warning("audio: the audio is silent; the person will not speak")
        return wave

    @torch.no_grad()
    def __call__(
        self,
        image: np.ndarray,
        audio: np.ndarray,
        sample_rate: int = SAMPLE_RATE,
        *,
        reference_pose: PoseSequence | None = None,
        size: int | None = None,
        seed: int = 0,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        pose_steps: int | None = None,
        pose_guidance: float | None = None,
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
            audio: (N,) mono speech at ``sample_rate`` Hz, any length up to ``max_seconds``.
            reference_pose: the person's pose in ``image`` pixels, if known (skips detection; the image is then only
                resized, so give a square image).
            size: output size S (a multiple of 8); default ``config["size"]``.
            seed: seeds both stages.
            num_inference_steps, guidance_scale: stage-2 sampling (defaults from the config).
            pose_steps, pose_guidance: stage-1 sampling (defaults from the config).
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
        wave = self.check_audio(audio, sample_rate, max_seconds)
        speech = wave if sample_rate == SAMPLE_RATE else resample(wave, sample_rate, SAMPLE_RATE)  # what models read
        num_frames = num_frames_for(len(wave), sample_rate)

        # 1. Reference: a square person crop at the output size and its pose.
        if reference_pose is None:
            prepared = prepare_reference(image, size, detector=detector)
            reference, ref_pose = prepared.image, prepared.pose
        else:
            reference, ref_pose = _resized_reference(image, reference_pose, size)

        # 2. Stage 1: speech -> poses (exactly num_frames of them), in pixels of the S x S reference.
        generator = torch.Generator().manual_seed(seed)
        poses = self.stage1(
            speech,
            SAMPLE_RATE,
            ref_pose,
            num_inference_steps=pose_steps or self.config["pose_steps"],
            guidance_scale=self.config["pose_guidance"] if pose_guidance is None else pose_guidance,
            generator=generator,
            progress=progress,
        ).poses
        poses = _exact_frames(poses, num_frames)
        if pose_callback is not None:
            pose_callback(poses, reference)

        # 3. Stage 2: reference + poses + speech -> frames (masks are made inside, from the same poses).
        frames = self.stage2(
            reference,
            poses,
            audio=speech,
            sample_rate=SAMPLE_RATE,
            height=size,
            width=size,
            num_inference_steps=num_inference_steps or self.config["steps"],
            guidance_scale=self.config["guidance"] if guidance_scale is None else guidance_scale,
            generator=torch.Generator().manual_seed(seed),
            frame_callback=frame_callback,
            progress=progress,
        ).frames
        masks = motion_masks(poses) if return_masks else None
        return MMGTOutput(frames, wave, sample_rate, poses, masks, reference, ref_pose)


def assemble_model(
    stage1: str | os.PathLike,
    stage2: str | os.PathLike,
    output: str | os.PathLike,
    settings: dict | None = None,
    encoders: dict[str, str | os.PathLike | None] | None = None,
) -> Path:
    """Combine the two stages' exported pipeline folders (and their speech-encoder folders) into one model folder."""
    parts = {}
    for name, cls, folder in (("stage1", AudioToPosePipeline, stage1), ("stage2", PoseToVideoPipeline, stage2)):
        if not (Path(folder) / "model_index.json").is_file():
            raise ModelFolderError(f"{name}: {folder} is not an exported pipeline folder (no model_index.json)")
        parts[name] = _quiet_load(cls, Path(folder))
    pipe = MMGTPipeline(parts["stage1"], parts["stage2"], **(settings or {}))
    pipe._attach_encoders(Path(output), {k: v for k, v in (encoders or {}).items() if v})
    return pipe.save_pretrained(output)


def _quiet_load(cls, folder: Path):
    """``cls.from_pretrained(folder)`` without diffusers' per-component loading bar (generation has its own bars)."""
    dlogging.disable_progress_bar()
    try:
        return cls.from_pretrained(folder)
    finally:
        dlogging.enable_progress_bar()


def _resized_reference(image: np.ndarray, pose: PoseSequence, size: int) -> tuple[np.ndarray, PoseSequence]:
    """Resize a (square) image and its known pose to ``size``."""
    import cv2

    h, w = image.shape[:2]
    if abs(w / h - 1) > 0.01:
        raise MmgtError(f"reference_pose given: the image must be square, got {w}x{h}")
    interpolation = cv2.INTER_AREA if size < w else cv2.INTER_CUBIC
    resized = cv2.resize(np.ascontiguousarray(image), (size, size), interpolation=interpolation)
    return resized, pose[:1].rescaled(size, size)


def _exact_frames(poses: PoseSequence, num_frames: int) -> PoseSequence:
    """Guard the frame-count contract: stage 1 must give exactly ceil(duration x 25) frames."""
    if poses.num_frames != num_frames:
        raise MmgtError(f"stage 1 produced {poses.num_frames} frames for {num_frames / FPS:.2f} s of audio")
    return poses

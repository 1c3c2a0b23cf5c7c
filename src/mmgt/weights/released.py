"""``mmgt weights convert-released``: the authors' released checkpoints -> an mmgt model folder (docs/weights.md).

Reads the release's files safely (``torch.load(weights_only=True)``, memory-mapped when possible), converts them by
the explicit rules of :mod:`mmgt.weights.released_stage2` and :mod:`mmgt.weights.released_stage1`, loads every
component strictly and writes a normal model folder (or one stage's pipeline folder) with the released sampling
settings. The folder is built beside the output and renamed into place, so an error leaves no output behind.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch
from diffusers import DDIMScheduler

from mmgt.errors import ModelFolderError
from mmgt.utils.files import atomic_folder, error_summary

RELEASED_SIZE = 512  # spec §5.7: the release generates 512 x 512
STAGE1_ENTRY = "ema_state_dict"  # spec §7: stage-1 inference reads the EMA weights
STAGE_CHOICES = ("stage1", "stage2")
# Stage-2 base parts the converted folder takes from the user's base-weights folder (docs/weights.md).
STAGE_BASE_PARTS = {"stage1": ("wavlm",), "stage2": ("vae", "image_encoder", "wav2vec2")}


def read_checkpoint(path: str | os.PathLike, entry: str | None = None) -> dict[str, torch.Tensor]:
    """A released ``.pth``/``.pt`` file as a flat state dict, loaded with ``torch.load(weights_only=True)``.

    Args:
        path: the checkpoint file.
        entry: the key of the state dict inside a dict of several (stage 1: ``ema_state_dict``); None = the file
            is the state dict.

    Returns:
        key -> tensor on the CPU (memory-mapped for zip-format files), a leading ``module.`` removed from the keys.

    Raises:
        ModelFolderError: one line: the file is missing, truncated or not a PyTorch file, holds Python objects
            (refused by ``weights_only``), is not a plain state dict, or lacks ``entry``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFolderError(f"{path}: not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower():
            raise ModelFolderError(
                f"{path}: holds Python objects, not only tensors (refused by torch.load(weights_only=True))"
            ) from None
        raise ModelFolderError(f"{path}: not a PyTorch checkpoint ({error_summary(e)})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        reason = error_summary(e)
        raise ModelFolderError(f"{path}: cannot be read, truncated or not a PyTorch checkpoint ({reason})") from None
    if entry is not None:
        if not isinstance(obj, dict) or entry not in obj:
            keys = sorted(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
            raise ModelFolderError(f"{path}: no {entry!r} in the checkpoint (found {keys})")
        obj = obj[entry]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        got = type(obj).__name__ if not isinstance(obj, dict) else "a dict that is not only tensors"
        raise ModelFolderError(f"{path}: not a plain state dict (key -> tensor); got {got}")
    state = {str(k).removeprefix("module."): v for k, v in obj.items()}
    if len(state) != len(obj):
        raise ModelFolderError(f"{path}: keys repeat once their 'module.' prefix is removed")
    return state


def released_scheduler() -> DDIMScheduler:
    """The release's inference scheduler: mmgt's stage-2 DDIM (v, zero-SNR, trailing) with LINEAR betas (spec §5.7).

    Official code: ``beta_schedule: linear`` and ``steps_offset: 1`` at inference, although training used
    scaled_linear (spec §5.7); trailing spacing ignores ``steps_offset``, kept so the config reads as released.
    """
    from mmgt.diffusion.stage2 import make_stage2_scheduler

    return DDIMScheduler.from_config(make_stage2_scheduler().config, beta_schedule="linear", steps_offset=1)


def convert_released(
    release: str | os.PathLike,
    base: str | os.PathLike,
    output: str | os.PathLike,
    stages: tuple[str, ...] = STAGE_CHOICES,
    stage2_preset: str = "released",
    size: int = RELEASED_SIZE,
) -> tuple[Path, list[str]]:
    """Convert the release in ``release`` (its ``stage_1/``, ``stage_2/`` layout) into ``output``.

    Args:
        release: the downloaded release folder (``addtime/MMGT_pretrained``).
        base: the base-weights folder (docs/weights.md): ``vae/``, ``image_encoder/``, ``wav2vec2/`` (stage 2),
            ``wavlm/`` (stage 1).
        output: the folder to write; it must not exist yet.
        stages: both stages: a model folder (``mmgt generate --model``); one stage: that stage's pipeline folder
            (``mmgt audio2pose`` / ``mmgt pose2video --model``, or ``mmgt weights assemble``).
        stage2_preset: ``released`` (the checkpoint's sizes); ``released_tiny`` for the same network at test sizes.
        size: the output size written into ``mmgt.json``.

    Returns:
        (the written folder, the dropped keys of the release as "key: reason").

    Raises:
        ModelFolderError: a missing file or base part, an unreadable checkpoint, a key or shape the rules do not
            know, a documented key that is missing; nothing is written then.
    """
    from mmgt.pipelines.mmgt_pipeline import MMGTPipeline

    release, base, output = Path(release), Path(base), Path(output)
    if not stages or any(s not in STAGE_CHOICES for s in stages):
        raise ModelFolderError(f"stages must be a non-empty subset of {STAGE_CHOICES}, got {stages}")
    if output.exists():
        raise ModelFolderError(f"{output}: already exists (choose a new output folder)")
    _check_inputs(release, base, stages)
    dropped: list[str] = []
    pipes = {}
    if "stage1" in stages:
        pipes["stage1"] = _stage1_pipeline(release, base, dropped)
    if "stage2" in stages:
        pipes["stage2"] = _stage2_pipeline(release, base, stage2_preset, dropped)
    if len(pipes) == 2:
        return MMGTPipeline(pipes["stage1"], pipes["stage2"], size=size).save_pretrained(output), dropped
    return _save_stage(next(iter(pipes.values())), output), dropped


def _check_inputs(release: Path, base: Path, stages: tuple[str, ...]) -> None:
    """Every release file and base part the conversion needs, named at once before anything loads."""
    from mmgt.weights.released_stage2 import STAGE2_CHECKPOINT

    problems = []
    if not release.is_dir():
        raise ModelFolderError(f"{release}: release folder not found")
    if not base.is_dir():
        raise ModelFolderError(f"{base}: base-weights folder not found")
    files = {"stage2": STAGE2_CHECKPOINT}
    if "stage1" in stages:
        from mmgt.weights.released_stage1 import STAGE1_CHECKPOINT

        files["stage1"] = STAGE1_CHECKPOINT
    for stage in stages:
        if not (release / files[stage]).is_file():
            problems.append(f"release file {files[stage]} missing")
        parts = STAGE_BASE_PARTS[stage]
        problems += [f"base part {p}/ missing" for p in parts if not (base / p / "config.json").is_file()]
    if problems:
        raise ModelFolderError(f"cannot convert {release} with {base}: {'; '.join(problems)}")


def _stage1_pipeline(release: Path, base: Path, dropped: list[str]):
    """The AudioToPosePipeline of the released SMGA: EMA weights, WavLM-Large recipe, target offset 0."""
    from mmgt.audio.encoders import SpeechEncoder
    from mmgt.audio.features import feature_spec
    from mmgt.diffusion.stage1 import make_stage1_scheduler
    from mmgt.models.gesture_denoiser import GestureDenoiser
    from mmgt.pipelines.audio_to_pose import AudioToPosePipeline
    from mmgt.pipelines.sampling_defaults import pose_sampling
    from mmgt.weights.released_stage1 import STAGE1_CHECKPOINT, convert_stage1

    state, config, stage_dropped = convert_stage1(read_checkpoint(release / STAGE1_CHECKPOINT, STAGE1_ENTRY))
    dropped += [f"{STAGE1_CHECKPOINT}: {d}" for d in stage_dropped]
    denoiser = GestureDenoiser(**config)
    _load_strictly(denoiser, state, "stage-1 denoiser")
    encoder = SpeechEncoder.for_stage(base / "wavlm", 1)
    pipe = AudioToPosePipeline(
        denoiser.eval(),
        make_stage1_scheduler(),
        feature_spec(encoder, stage=1),
        normalize_scores=True,  # spec §7: pose.normalize_scores true
        target_offset=0,  # spec §7: smga.target_offset 0 (the release)
        **pose_sampling("released").to_dict(),
    )
    pipe.set_audio_encoder(encoder)
    return pipe


def _stage2_pipeline(release: Path, base: Path, preset_name: str, dropped: list[str]):
    """The PoseToVideoPipeline of the release: converted UNets, guider, audio modules; base VAE, CLIP, wav2vec2."""
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionModelWithProjection

    from mmgt.audio.encoders import SpeechEncoder
    from mmgt.audio.features import feature_spec
    from mmgt.pipelines.pose_to_video import PoseToVideoPipeline
    from mmgt.pipelines.sampling_defaults import video_sampling
    from mmgt.weights.released_stage2 import STAGE2_CHECKPOINT, build_skeleton, convert_stage2

    skeleton = build_skeleton(preset_name)
    states, _, stage_dropped = convert_stage2(read_checkpoint(release / STAGE2_CHECKPOINT), preset_name, skeleton)
    dropped += [f"{STAGE2_CHECKPOINT}: {d}" for d in stage_dropped]
    for name, module in skeleton.items():
        _load_strictly(module, states[name], name)
        module.eval()
    encoder = SpeechEncoder.for_stage(base / "wav2vec2", 2)
    clip = CLIPVisionModelWithProjection.from_pretrained(base / "image_encoder", local_files_only=True)
    pipe = PoseToVideoPipeline(
        vae=AutoencoderKL.from_pretrained(base / "vae", local_files_only=True).eval(),
        image_encoder=clip.eval(),
        scheduler=released_scheduler(),
        audio_features=feature_spec(encoder, stage=2),
        pose_mouth=True,  # Official code: the pose video draws all 68 face landmarks, lips included
        motion_norm=None,  # what the skeleton has: the preset's (per frame for the release)
        **skeleton,
        **video_sampling("released").to_dict(),
    )
    pipe.set_audio_encoder(encoder)
    return pipe


def _load_strictly(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True, assign=True)`` in float32: the meta skeleton takes the tensors as they are."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise ModelFolderError(f"{what}: the converted weights do not load ({error_summary(e)})") from None


def _save_stage(pipe, output: Path) -> Path:
    """One stage's pipeline folder, built beside ``output`` and renamed (it appears whole or not at all)."""
    with atomic_folder(output) as tmp:
        pipe.save_pretrained(tmp)
    return output

"""The MMGT model folder: both stages in one folder. The one definition of its format, shared by
:class:`~mmgt.pipelines.mmgt_pipeline.MMGTPipeline` (load, save) and ``mmgt weights check``::

    model/
      mmgt.json            {"format": "mmgt-pipeline", "version": 2, "config": {"size": ..., "max_audio_seconds": ...}}
      stage1/              AudioToPosePipeline (model_index.json, denoiser/, scheduler/): its audio recipe and its
                           sampling defaults live in its model_index.json
      stage2/              PoseToVideoPipeline (vae/, image_encoder/, reference_unet/, unet/, pose_guider/,
                           audio_projection/, audio_adapter/, scheduler/): likewise
      encoders/stage1/     speech encoder folder (WavLM), only when stage 1's recipe names one
      encoders/stage2/     speech encoder folder (wav2vec2), only when stage 2's recipe names one

Version 1 (mmgt 0.1) kept the sampling defaults (``pose_steps``, ``pose_guidance``, ``steps``, ``guidance``) in
``mmgt.json``; they are read as overrides of the stages' settings, so those folders load unchanged.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from mmgt.errors import ModelFolderError

CONFIG_NAME = "mmgt.json"
FORMAT = "mmgt-pipeline"
VERSION = 2
STAGES = ("stage1", "stage2")
SETTINGS = {
    "size": 512,  # output width and height (spec §5.7: 512²)
    "max_audio_seconds": 600.0,  # longer audio is refused (a 10-minute talk; raise it for longer)
}
# Version 1 names -> (stage, pipeline sampling setting).
V1_SAMPLING = {
    "pose_steps": ("stage1", "num_inference_steps"),
    "pose_guidance": ("stage1", "guidance_scale"),
    "steps": ("stage2", "num_inference_steps"),
    "guidance": ("stage2", "guidance_scale"),
}


@dataclass
class ModelConfig:
    """What ``mmgt.json`` holds.

    Attributes:
        settings: the end-to-end settings (:data:`SETTINGS` keys).
        sampling: per stage, sampling settings a version-1 file set (applied over the stage's own).
        version: the file's format version.
    """

    settings: dict = field(default_factory=lambda: dict(SETTINGS))
    sampling: dict[str, dict] = field(default_factory=dict)
    version: int = VERSION


def check_settings(settings: dict) -> dict:
    """``SETTINGS`` updated with ``settings``, or a ModelFolderError naming unknown keys."""
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise ModelFolderError(f"unknown model setting(s) {sorted(unknown)}; known: {sorted(SETTINGS)}")
    return {**SETTINGS, **settings}


def read_model_config(folder: str | os.PathLike) -> ModelConfig:
    """Read and check ``folder/mmgt.json`` (version 1 or 2).

    Raises:
        ModelFolderError: no folder, no file, not JSON, another format or version, unknown settings.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ModelFolderError(f"model folder {root} not found")
    path = root / CONFIG_NAME
    if not path.is_file():
        raise ModelFolderError(f"{root}: no {CONFIG_NAME} (not an mmgt model folder; see `mmgt weights check`)")
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFolderError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") not in (1, VERSION):
        got = (meta.get("format"), meta.get("version")) if isinstance(meta, dict) else type(meta).__name__
        raise ModelFolderError(f"{path}: {got} is not {FORMAT!r} version 1 or {VERSION}")
    values = dict(meta.get("config") or {})
    sampling: dict[str, dict] = {}
    if meta["version"] == 1:
        for old, (stage, name) in V1_SAMPLING.items():
            if values.get(old) is not None:
                sampling.setdefault(stage, {})[name] = values[old]
            values.pop(old, None)
    return ModelConfig(check_settings(values), sampling, meta["version"])


def write_model_config(folder: str | os.PathLike, settings: dict) -> Path:
    """Write ``folder/mmgt.json`` (current version) for ``settings``."""
    path = Path(folder) / CONFIG_NAME
    meta = {"format": FORMAT, "version": VERSION, "config": check_settings(settings)}
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path


def stage_folder(folder: str | os.PathLike, stage: str) -> Path:
    return Path(folder) / stage


def encoder_folder(folder: str | os.PathLike, stage: str) -> Path:
    return Path(folder) / "encoders" / stage


def needs_encoder(recipe: dict) -> bool:
    """Whether an audio-feature recipe (a pipeline's ``audio_features``) reads a speech encoder (not log-mel)."""
    return recipe.get("speech", {}).get("type") != "mel"

"""The trained MMGT model folder (:mod:`mmgt.pipelines.model_folder`): its check, part by part.

``mmgt.json`` is read by the same function ``MMGTPipeline.from_pretrained`` uses, so the check and the loader agree on
the format.
"""

from __future__ import annotations

import inspect
import os

from mmgt.errors import ModelFolderError
from mmgt.pipelines.model_folder import CONFIG_NAME, FORMAT, STAGES, read_model_config
from mmgt.weights.base import check_speech
from mmgt.weights.report import Part, PartStatus, check_files, existing_folder, fmt, read_json, weight_files

# The trained model folder (what `mmgt generate --model DIR` loads; written by MMGTPipeline.save_pretrained).
MODEL_PARTS = (CONFIG_NAME, *STAGES, *(f"encoders/{s}" for s in STAGES))


def check_model_folder(folder: str | os.PathLike) -> list[PartStatus]:
    """Check a trained MMGT model folder (:data:`MODEL_PARTS`).

    ``encoders/stageN`` is required when stage N's ``model_index.json`` recipe (``audio_features.speech``) names a
    speech encoder rather than the log-mel fallback; its config must give the recipe's layers and width.

    Raises:
        ModelFolderError: ``folder`` does not exist.
    """
    from mmgt.pipelines.audio_to_pose import AudioToPosePipeline
    from mmgt.pipelines.pose_to_video import PoseToVideoPipeline

    root = existing_folder(folder)
    top = Part(CONFIG_NAME, root / CONFIG_NAME)
    if not top.path.is_file():
        top.add("missing", "not found (the top-level config)")
    else:
        try:
            config = read_model_config(root)  # the one reader of the format, as from_pretrained uses it
            top.info = f"{FORMAT} v{config.version}"
        except ModelFolderError as e:
            top.add("mismatched", str(e).removeprefix(f"{top.path}: "))
    results = [top.result()]
    recipes = {}
    for stage, pipeline in ((1, AudioToPosePipeline), (2, PoseToVideoPipeline)):
        part = Part(f"stage{stage}", root / f"stage{stage}")
        recipes[stage] = _check_stage(part, pipeline, stage)
        results.append(part.result())
    for stage in (1, 2):
        speech = (recipes[stage] or {}).get("speech", {})
        needed = bool(speech) and speech.get("type") != "mel"
        part = Part(f"encoders/stage{stage}", root / "encoders" / f"stage{stage}", required=needed)
        if needed:
            layers = speech.get("num_layers") if stage == 2 else None  # stage 1 reads the last layer only
            check_speech(part, speech.get("hidden_size"), layers, speech.get("model_type"))
        elif part.path.is_dir():
            check_speech(part)
            part.info = f"present but unused: stage {stage} reads log-mel features"
        else:
            part.add("missing", f"not needed: stage {stage} reads log-mel features" if speech else "not checked")
        results.append(part.result())
    return results


def _check_stage(part: Part, pipeline: type, stage: int) -> dict | None:
    """A saved pipeline folder: model_index.json, one loadable folder per component, consistent sizes.

    Returns its ``audio_features`` recipe (None if unreadable).
    """
    if not part.path.is_dir():
        part.add("missing", "folder not found")
        return None
    index = read_json(part, part.path / "model_index.json")
    if not isinstance(index, dict):
        return None
    if index.get("_class_name") != pipeline.__name__:
        part.add("mismatched", f"model_index.json describes a {index.get('_class_name')}, not {pipeline.__name__}")
    params = inspect.signature(pipeline.__init__).parameters.values()
    configs = {}
    for name in (p.name for p in params if p.name != "self" and p.default is inspect.Parameter.empty):
        library = (index.get(name) or [None])[0]
        sub = Part(name, part.path / name)
        if library is None:
            sub.add("incomplete", "not listed in model_index.json")
        elif name == "scheduler":
            check_files(sub, (), config="scheduler_config.json")
        elif check_files(sub, weight_files("transformers" if library == "transformers" else "diffusers")):
            configs[name] = read_json(sub, sub.path / "config.json")
        part.problems += [(s, f"{name}/: {m}") for s, m in sub.problems]
    recipe = index.get("audio_features")
    if not isinstance(recipe, dict):
        part.add("incomplete", "model_index.json has no audio_features recipe")
        return None
    if not part.problems:  # sizes are compared only when every component config could be read
        for message in _stage_mismatches(stage, configs, recipe):
            part.add("mismatched", message)
    speech = recipe.get("speech", {})
    audio = "log-mel" if speech.get("type") == "mel" else speech.get("model_type", "speech encoder")
    size = f"{recipe.get('dim')}-d" if stage == 1 else f"{recipe.get('num_layers')} x {recipe.get('dim')}"
    part.info = f"{pipeline.__name__}, audio: {audio} ({size})"
    return recipe


def _stage_mismatches(stage: int, cfg: dict[str, dict], recipe: dict) -> list[str]:
    """Sizes that must agree between a stage's component configs and its audio recipe."""
    if stage == 1:
        pairs = [("denoiser audio_dim", cfg["denoiser"].get("audio_dim"), "audio_features dim", recipe.get("dim"))]
    else:
        proj, unet = cfg["audio_projection"], cfg["unet"]
        pairs = [
            (
                "audio_projection num_layers x input_dim",
                (proj.get("num_layers"), proj.get("input_dim")),
                "audio_features num_layers x dim",
                (recipe.get("num_layers"), recipe.get("dim")),
            ),
            (
                "unet cross_attention_dim",
                unet.get("cross_attention_dim"),
                "image_encoder projection_dim",
                cfg["image_encoder"].get("projection_dim"),
            ),
            (
                "reference_unet cross_attention_dim",
                cfg["reference_unet"].get("cross_attention_dim"),
                "image_encoder projection_dim",
                cfg["image_encoder"].get("projection_dim"),
            ),
            ("vae latent_channels", cfg["vae"].get("latent_channels"), "unet in_channels", unet.get("in_channels")),
            (
                "pose_guider out_channels",
                cfg["pose_guider"].get("out_channels"),
                "unet block_out_channels[0]",
                (unet.get("block_out_channels") or [None])[0],
            ),
            (
                "audio_adapter audio_dim",
                cfg["audio_adapter"].get("audio_dim"),
                "audio_projection output_dim",
                proj.get("output_dim"),
            ),
        ]
    return [f"{a} {fmt(va)} does not match {b} {fmt(vb)}" for a, va, b, vb in pairs if va != vb]

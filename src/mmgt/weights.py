"""Checks for local weight folders: the base-weights folder the full-size stage 2 starts from, and trained models.

Only config files and file headers are read: no weights are loaded and nothing is downloaded. Heavy libraries are
imported inside the functions, so ``mmgt --help`` (which lists :data:`BASE_LAYOUT`) stays fast. docs/weights.md
explains how to assemble a base folder.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path

from mmgt.errors import ModelFolderError

STATUSES = ("ok", "mismatched", "incomplete", "missing")  # in order of severity


@dataclass(frozen=True)
class BasePart:
    """One subfolder of the base-weights folder and the public repository it is copied from."""

    name: str  # subfolder name
    repository: str  # Hugging Face Hub repository
    subfolder: str | None  # inside ``repository``; None = the repository root
    files: str  # accepted weight files: "diffusers", "transformers", "speech" or "controlnet"
    role: str
    alternative: str | None = None  # another public source with the same layout
    required: bool = True
    loader_key: str | None = None  # key in the ``folders`` dict of ``load_sd15_components``


BASE_LAYOUT: tuple[BasePart, ...] = (
    # spec §5.2/§7: the release initialised both UNets from sd-image-variations (already tuned to CLIP image
    # embeddings); the SD-1.5 UNet has the same shapes.
    BasePart(
        "unet",
        "lambdalabs/sd-image-variations-diffusers",
        "unet",
        "diffusers",
        "UNet2DConditionModel: initialises the denoising UNet and the ReferenceNet",
        "stable-diffusion-v1-5/stable-diffusion-v1-5 (unet/)",
        loader_key="unet",
    ),
    BasePart("vae", "stabilityai/sd-vae-ft-mse", None, "diffusers", "AutoencoderKL (frozen)", loader_key="vae"),
    BasePart(
        "image_encoder",
        "lambdalabs/sd-image-variations-diffusers",
        "image_encoder",
        "transformers",
        "CLIP ViT-L/14 vision with the 768-d projection (frozen)",
        "openai/clip-vit-large-patch14",
        loader_key="image_encoder",
    ),
    BasePart(
        "motion_adapter",
        "guoyww/animatediff-motion-adapter-v1-5-2",
        None,
        "diffusers",
        "AnimateDiff v2 MotionAdapter (video step)",
        loader_key="motion_adapter",
    ),
    BasePart("wav2vec2", "facebook/wav2vec2-base-960h", None, "speech", "stage-2 audio features (video step)"),
    BasePart("wavlm", "microsoft/wavlm-large", None, "speech", "stage-1 audio features"),
    BasePart(
        "controlnet_openpose",
        "lllyasviel/control_v11p_sd15_openpose",
        None,
        "controlnet",
        "ControlNetModel: initialises the pose guider",
        required=False,
        loader_key="controlnet",
    ),
)

# Diffusers class each diffusers base part's config.json must describe (its defaults fill keys an old config omits).
_BASE_CLASSES = {
    "unet": "UNet2DConditionModel",
    "vae": "AutoencoderKL",
    "motion_adapter": "MotionAdapter",
    "controlnet_openpose": "ControlNetModel",
}
# The trained model folder (what `mmgt generate --model DIR` loads; written by MMGTPipeline.save_pretrained).
MODEL_PARTS = ("mmgt.json", "stage1", "stage2", "encoders/stage1", "encoders/stage2")


@dataclass
class PartStatus:
    """The verdict on one part of a folder.

    Attributes:
        name: the part (``unet``, ``stage2``, ``encoders/stage2``, ...).
        path: where it was looked for.
        status: ``ok``, ``missing``, ``incomplete`` (files absent, empty or truncated) or ``mismatched`` (config
            values that do not fit together).
        detail: what is wrong, or a one-line description when ok.
        source: the public repository of a base part (None for trained-model parts).
        required: False for optional parts; an absent optional part does not fail the check.
    """

    name: str
    path: str
    status: str
    detail: str = ""
    source: str | None = None
    required: bool = True

    @property
    def acceptable(self) -> bool:
        """ok, or an optional part that is simply absent."""
        return self.status == "ok" or (not self.required and self.status == "missing")


class _Part:
    """Collects the problems found for one part; ``result()`` keeps the most severe status."""

    def __init__(self, name: str, path: Path, required: bool = True, source: str | None = None):
        self.name, self.path, self.required, self.source = name, path, required, source
        self.problems: list[tuple[str, str]] = []
        self.info = ""

    def add(self, status: str, message: str) -> None:
        self.problems.append((status, message))

    def result(self) -> PartStatus:
        status = max((s for s, _ in self.problems), key=STATUSES.index, default="ok")
        detail = "; ".join(m for _, m in self.problems) or self.info
        return PartStatus(self.name, str(self.path), status, detail, self.source, self.required)


# ---------------------------------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------------------------------
def folder_kind(folder: str | os.PathLike) -> str:
    """``"model"`` for a trained MMGT model folder (mmgt.json, stage1/ or stage2/ present), else ``"base"``."""
    root = Path(folder)
    model = (root / MODEL_PARTS[0]).is_file() or any((root / s).is_dir() for s in ("stage1", "stage2"))
    return "model" if model else "base"


def check_folder(folder: str | os.PathLike, preset: str = "sd15") -> list[PartStatus]:
    """:func:`check_model_folder` or :func:`check_base_folder`, whichever :func:`folder_kind` says ``folder`` is."""
    if folder_kind(_existing(folder)) == "model":
        return check_model_folder(folder)
    return check_base_folder(folder, preset)


def check_base_folder(folder: str | os.PathLike, preset: str = "sd15") -> list[PartStatus]:
    """Check a base-weights folder against :data:`BASE_LAYOUT`.

    Args:
        folder: the base-weights folder.
        preset: stage-2 preset (``mmgt.models.stage2_presets.PRESETS``) whose audio projection the wav2vec2 recipe
            (all hidden states, L x D per frame) must fit; it also decides which part is blamed for a mismatch.

    Returns:
        One :class:`PartStatus` per entry of :data:`BASE_LAYOUT`, in that order.

    Raises:
        ModelFolderError: ``folder`` does not exist.
    """
    from mmgt.models.stage2_presets import preset as load_preset

    root, expect = _existing(folder), load_preset(preset)
    parts = {p.name: _Part(p.name, root / p.name, p.required, p.repository) for p in BASE_LAYOUT}
    configs = {p.name: _check_base_part(parts[p.name], p) for p in BASE_LAYOUT}
    unet, vae, clip, motion, w2v, control = (
        configs[k] for k in ("unet", "vae", "image_encoder", "motion_adapter", "wav2vec2", "controlnet_openpose")
    )
    if unet and clip:
        _compare(parts, ("unet", "cross_attention_dim", unet), ("image_encoder", "projection_dim", clip), expect)
    if unet and motion:
        _compare(parts, ("motion_adapter", "block_out_channels", motion), ("unet", "block_out_channels", unet), expect)
    if unet and vae:
        _compare(parts, ("vae", "latent_channels", vae), ("unet", "in_channels", unet), expect)
    if control and vae:
        embedding, latents = (
            2 ** (len(c) - 1) for c in (control["conditioning_embedding_out_channels"], vae["block_out_channels"])
        )
        if embedding != latents:
            parts["controlnet_openpose"].add(
                "mismatched", f"its pose embedding downsamples by {embedding}, the VAE by {latents}"
            )
    pose_channels = expect["pose_guider"]["conditioning_channels"]  # rendered RGB pose frames
    if control and control["conditioning_channels"] != pose_channels:
        parts["controlnet_openpose"].add(
            "mismatched",
            f"conditioning_channels {control['conditioning_channels']}, the pose images have {pose_channels}",
        )
    want = (expect["audio_projection"]["num_layers"], expect["audio_projection"]["input_dim"])
    if w2v and (w2v["num_layers"], w2v["dim"]) != want:
        got = f"{w2v['num_layers']} layers x {w2v['dim']}"
        parts["wav2vec2"].add("mismatched", f"gives {got} per frame, the {preset} recipe reads {want[0]} x {want[1]}")
    return [parts[p.name].result() for p in BASE_LAYOUT]


def check_model_folder(folder: str | os.PathLike) -> list[PartStatus]:
    """Check a trained MMGT model folder (:data:`MODEL_PARTS`).

    ``encoders/stageN`` is required when stage N's ``model_index.json`` recipe (``audio_features.speech``) names a
    speech encoder rather than the log-mel fallback; its config must give the recipe's layers and width.

    Raises:
        ModelFolderError: ``folder`` does not exist.
    """
    from mmgt.pipelines.audio_to_pose import AudioToPosePipeline
    from mmgt.pipelines.model_folder import CONFIG_NAME, FORMAT, read_model_config
    from mmgt.pipelines.pose_to_video import PoseToVideoPipeline

    root = _existing(folder)
    top = _Part(CONFIG_NAME, root / CONFIG_NAME)
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
        part = _Part(f"stage{stage}", root / f"stage{stage}")
        recipes[stage] = _check_stage(part, pipeline, stage)
        results.append(part.result())
    for stage in (1, 2):
        speech = (recipes[stage] or {}).get("speech", {})
        needed = bool(speech) and speech.get("type") != "mel"
        part = _Part(f"encoders/stage{stage}", root / "encoders" / f"stage{stage}", required=needed)
        if needed:
            layers = speech.get("num_layers") if stage == 2 else None  # stage 1 reads the last layer only
            _check_speech(part, speech.get("hidden_size"), layers, speech.get("model_type"))
        elif part.path.is_dir():
            _check_speech(part)
            part.info = f"present but unused: stage {stage} reads log-mel features"
        else:
            part.add("missing", f"not needed: stage {stage} reads log-mel features" if speech else "not checked")
        results.append(part.result())
    return results


def base_folders(folder: str | os.PathLike) -> dict[str, str]:
    """The ``folders`` dict of ``load_sd15_components`` for a base-weights folder (``controlnet`` only if present).

    Raises:
        ModelFolderError: ``folder`` does not exist (the parts themselves are checked by the loader).
    """
    root = _existing(folder)
    return {
        p.loader_key: str(root / p.name)
        for p in BASE_LAYOUT
        if p.loader_key and (p.required or (root / p.name).is_dir())
    }


def summarize(parts: list[PartStatus]) -> str:
    """One line: ``all 6 required parts ok`` or ``3 of 7 parts missing: unet, vae, wavlm``."""
    failing = [p for p in parts if not p.acceptable]
    if not failing:
        absent = [p.name for p in parts if not p.required and p.status == "missing"]
        extra = f" (optional, not present: {', '.join(absent)})" if absent else ""
        return f"all {sum(p.required for p in parts)} required parts ok{extra}"
    groups = [(s, names) for s in reversed(STATUSES[1:]) if (names := [p.name for p in failing if p.status == s])]
    head = f"{len(failing)} of {len(parts)} parts"
    if len(groups) == 1:
        return f"{head} {groups[0][0]}: {', '.join(groups[0][1])}"
    return f"{head} not ready: " + "; ".join(f"{len(names)} {s}: {', '.join(names)}" for s, names in groups)


# ---------------------------------------------------------------------------------------------------------------------
# Base parts
# ---------------------------------------------------------------------------------------------------------------------
def _check_base_part(part: _Part, spec: BasePart) -> dict | None:
    """Files and the config of one base part; returns the config values the cross-checks use (None if unusable)."""
    if spec.files == "speech":
        return _check_speech(part)
    if not _check_files(part, _weight_files(spec.files)):
        return None
    if spec.files == "transformers":
        return _clip_config(part)
    cfg = _diffusers_config(part, _BASE_CLASSES[spec.name])
    if cfg is not None:
        part.info = _describe(spec.name, cfg)
    return cfg


def _describe(name: str, cfg: dict) -> str:
    """One line about a diffusers base part, shown when it is ok."""
    channels = "/".join(map(str, cfg["block_out_channels"]))
    if name == "unet":
        return f"channels {channels}, cross-attention {cfg['cross_attention_dim']}, in {cfg['in_channels']}"
    if name == "vae":
        return f"{cfg['latent_channels']} latent channels, {2 ** (len(cfg['block_out_channels']) - 1)}x downsampling"
    if name == "motion_adapter":
        return f"channels {channels}, up to {cfg['motion_max_seq_length']} frames"
    return f"pose embedding {'/'.join(map(str, cfg['conditioning_embedding_out_channels']))}"


def _compare(parts: dict[str, _Part], a: tuple[str, str, dict], b: tuple[str, str, dict], expect: dict) -> None:
    """Mark a mismatch of ``a``'s and ``b``'s values; blame the side(s) that differ from the preset (else both)."""
    values = {name: cfg[key] for name, key, cfg in (a, b)}
    if values[a[0]] == values[b[0]]:
        return
    sides = [a, b]
    blamed = [s for s in sides if values[s[0]] != expect[s[0]][s[1]]] or sides
    for name, key, _ in blamed:
        other_name, other_key, _ = b if name == a[0] else a
        parts[name].add(
            "mismatched", f"{key} {values[name]} does not match {other_name} {other_key} {values[other_name]}"
        )


def _diffusers_config(part: _Part, class_name: str) -> dict | None:
    """config.json over the diffusers class's constructor defaults; a config of another class is a mismatch."""
    import diffusers

    raw = _read_json(part, part.path / "config.json")
    if not isinstance(raw, dict):
        return None
    if raw.get("_class_name", class_name) != class_name:
        part.add("mismatched", f"config.json describes a {raw['_class_name']}, expected a {class_name}")
        return None
    params = inspect.signature(getattr(diffusers, class_name).__init__).parameters.values()
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in {**defaults, **raw}.items()}


def _clip_config(part: _Part) -> dict | None:
    """CLIP vision config as ``CLIPVisionModelWithProjection`` reads it (the vision half of a full CLIP config)."""
    from transformers import CLIPVisionConfig

    raw = _read_json(part, part.path / "config.json")
    if not isinstance(raw, dict):
        return None
    if raw.get("model_type") not in ("clip", "clip_vision_model"):
        part.add("mismatched", f"config.json describes a {raw.get('model_type')!r} model, expected CLIP vision")
        return None
    cfg = CLIPVisionConfig.from_pretrained(part.path, local_files_only=True)
    if raw["model_type"] == "clip" and raw.get("projection_dim", cfg.projection_dim) != cfg.projection_dim:
        part.add(
            "mismatched",
            f"vision_config.projection_dim {cfg.projection_dim} (what the vision model builds) "
            f"differs from the checkpoint's projection_dim {raw['projection_dim']}",
        )
    part.info = f"CLIP vision {cfg.num_hidden_layers} layers x {cfg.hidden_size}, projection {cfg.projection_dim}"
    return {"projection_dim": cfg.projection_dim}


def _check_speech(
    part: _Part, hidden: int | None = None, layers: int | None = None, model_type: str | None = None
) -> dict | None:
    """A wav2vec2-style transformers speech encoder, optionally of a given type and size.

    Returns:
        ``{"num_layers", "dim"}``: the size of its stage-2 features (hidden states 1..L, spec §5.4), or None.
    """
    from transformers import AutoConfig

    if not _check_files(part, _weight_files("speech")):
        return None
    try:
        cfg = AutoConfig.from_pretrained(part.path, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:  # invalid JSON, unknown model_type
        part.add("incomplete", f"config.json unreadable ({str(e).splitlines()[0]})")
        return None
    if not all(hasattr(cfg, k) for k in ("conv_stride", "conv_kernel", "num_hidden_layers")):
        part.add("mismatched", f"model_type {cfg.model_type!r} is not a wav2vec2-style speech encoder")
        return None
    if getattr(cfg, "add_adapter", False):
        part.add("mismatched", "models with an output adapter are not supported")
    got = {"model_type": cfg.model_type, "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_hidden_layers}
    for key, want in (("model_type", model_type), ("hidden_size", hidden), ("num_hidden_layers", layers)):
        if want is not None and got[key] != want:
            part.add("mismatched", f"{key} {got[key]}, the model was trained with {want}")
    part.info = f"{cfg.model_type}, {cfg.num_hidden_layers} layers x {cfg.hidden_size}"
    return {"num_layers": cfg.num_hidden_layers, "dim": cfg.hidden_size}


# ---------------------------------------------------------------------------------------------------------------------
# Trained model parts
# ---------------------------------------------------------------------------------------------------------------------
def _check_stage(part: _Part, pipeline: type, stage: int) -> dict | None:
    """A saved pipeline folder: model_index.json, one loadable folder per component, consistent sizes.

    Returns its ``audio_features`` recipe (None if unreadable).
    """
    if not part.path.is_dir():
        part.add("missing", "folder not found")
        return None
    index = _read_json(part, part.path / "model_index.json")
    if not isinstance(index, dict):
        return None
    if index.get("_class_name") != pipeline.__name__:
        part.add("mismatched", f"model_index.json describes a {index.get('_class_name')}, not {pipeline.__name__}")
    params = inspect.signature(pipeline.__init__).parameters.values()
    configs = {}
    for name in (p.name for p in params if p.name != "self" and p.default is inspect.Parameter.empty):
        library = (index.get(name) or [None])[0]
        sub = _Part(name, part.path / name)
        if library is None:
            sub.add("incomplete", "not listed in model_index.json")
        elif name == "scheduler":
            _check_files(sub, (), config="scheduler_config.json")
        elif _check_files(sub, _weight_files("transformers" if library == "transformers" else "diffusers")):
            configs[name] = _read_json(sub, sub.path / "config.json")
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
    return [f"{a} {_fmt(va)} does not match {b} {_fmt(vb)}" for a, va, b, vb in pairs if va != vb]


# ---------------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------------
def _existing(folder: str | os.PathLike) -> Path:
    root = Path(folder)
    if not root.is_dir():
        raise ModelFolderError(f"weights folder {root} not found" if not root.exists() else f"{root} is not a folder")
    return root


def _weight_files(kind: str) -> tuple[str, ...]:
    """File names the loader of a part reads, in its order of preference (defined next to each loader)."""
    if kind == "speech":
        from mmgt.audio.encoders import WEIGHT_FILES

        return WEIGHT_FILES
    if kind == "controlnet":
        from mmgt.models.pose_guider import CONTROLNET_WEIGHTS

        return (CONTROLNET_WEIGHTS,)
    from mmgt.models.stage2_presets import _WEIGHTS

    return _WEIGHTS[kind]


def _check_files(part: _Part, weights: tuple[str, ...], config: str = "config.json") -> bool:
    """Folder, config file and the first present weights file; returns whether the config file is there."""
    folder = part.path
    if not folder.is_dir():
        part.add("missing", "folder not found")
        return False
    if not (folder / config).is_file():
        hint = ""
        if (folder / folder.name / config).is_file():  # e.g. `--include "unet/*" --local-dir base/unet`
            hint = f": it is one level down, in {folder / folder.name}; move that folder's contents up"
        elif (folder / "model_index.json").is_file():
            hint = ": this is a whole pipeline (model_index.json); use its subfolder"
        part.add("incomplete", f"no {config}{hint}")
        return False
    if weights:
        present = [name for name in weights if (folder / name).is_file()]
        if not present:
            others = sorted(p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
            found = f" (found only {', '.join(others)})" if others else ""
            part.add("incomplete", f"no weights: expected {' or '.join(weights)}{found}")
        elif problem := _weights_problem(folder / present[0]):
            part.add("incomplete", problem)
    return True


def _weights_problem(path: Path) -> str | None:
    """Cheap integrity check: empty files, Git LFS pointers, truncated safetensors, missing shards."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if size == 0 or head.startswith(b"version "):
            return f"{path.name} is {'empty' if size == 0 else 'a Git LFS pointer (run git lfs pull)'}"
        if path.name.endswith(".index.json"):
            try:
                shards = set(json.loads(head + f.read())["weight_map"].values())
            except (ValueError, KeyError, TypeError):
                return f"{path.name} is not a shard index"
            missing = sorted(s for s in shards if not (path.parent / s).is_file())
            return f"shards missing: {', '.join(missing)}" if missing else None
        if path.suffix == ".safetensors":
            length = int.from_bytes(head, "little")
            try:
                header = json.loads(f.read(length)) if 8 + length <= size else None
                end = (
                    8
                    + length
                    + max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
                )
            except (ValueError, KeyError, TypeError, AttributeError):
                return f"{path.name} is not a safetensors file"
            if end != size:
                return f"{path.name} is truncated or damaged ({size:,} bytes, its header describes {end:,})"
    return None


def _read_json(part: _Part, path: Path):
    """Parsed JSON, or None with an ``incomplete`` problem recorded."""
    if not path.is_file():
        part.add("incomplete", f"no {path.name}")
        return None
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        part.add("incomplete", f"{path.name} is not valid JSON ({e})")
        return None


def _fmt(value) -> str:
    return " x ".join(map(str, value)) if isinstance(value, tuple) else str(value)

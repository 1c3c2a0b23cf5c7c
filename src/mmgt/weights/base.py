"""The base-weights folder the full-size stage 2 starts from (docs/weights.md): its layout and its check.

Heavy libraries are imported inside the functions, so ``mmgt --help`` (which lists :data:`BASE_LAYOUT`) stays fast.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

from mmgt.weights.report import Part, PartStatus, check_files, existing_folder, read_json, weight_files


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

    root, expect = existing_folder(folder), load_preset(preset)
    parts = {p.name: Part(p.name, root / p.name, p.required, p.repository) for p in BASE_LAYOUT}
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


def base_folders(folder: str | os.PathLike) -> dict[str, str]:
    """The ``folders`` dict of ``load_sd15_components`` for a base-weights folder (``controlnet`` only if present).

    Raises:
        ModelFolderError: ``folder`` does not exist (the parts themselves are checked by the loader).
    """
    root = existing_folder(folder)
    return {
        p.loader_key: str(root / p.name)
        for p in BASE_LAYOUT
        if p.loader_key and (p.required or (root / p.name).is_dir())
    }


def _check_base_part(part: Part, spec: BasePart) -> dict | None:
    """Files and the config of one base part; returns the config values the cross-checks use (None if unusable)."""
    if spec.files == "speech":
        return check_speech(part)
    if not check_files(part, weight_files(spec.files)):
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


def _compare(parts: dict[str, Part], a: tuple[str, str, dict], b: tuple[str, str, dict], expect: dict) -> None:
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


def _diffusers_config(part: Part, class_name: str) -> dict | None:
    """config.json over the diffusers class's constructor defaults; a config of another class is a mismatch."""
    import diffusers

    raw = read_json(part, part.path / "config.json")
    if not isinstance(raw, dict):
        return None
    if raw.get("_class_name", class_name) != class_name:
        part.add("mismatched", f"config.json describes a {raw['_class_name']}, expected a {class_name}")
        return None
    params = inspect.signature(getattr(diffusers, class_name).__init__).parameters.values()
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in {**defaults, **raw}.items()}


def _clip_config(part: Part) -> dict | None:
    """CLIP vision config as ``CLIPVisionModelWithProjection`` reads it (the vision half of a full CLIP config)."""
    from transformers import CLIPVisionConfig

    raw = read_json(part, part.path / "config.json")
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


def check_speech(
    part: Part, hidden: int | None = None, layers: int | None = None, model_type: str | None = None
) -> dict | None:
    """A wav2vec2-style transformers speech encoder, optionally of a given type and size.

    Returns:
        ``{"num_layers", "dim"}``: the size of its stage-2 features (hidden states 1..L, spec §5.4), or None.
    """
    from transformers import AutoConfig

    if not check_files(part, weight_files("speech")):
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

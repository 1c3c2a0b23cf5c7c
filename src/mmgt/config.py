"""Run configuration: typed dataclass schemas merged with OmegaConf (defaults <- YAML <- ``key=value`` overrides).

Library functions and models never receive a config object; entry points unpack the resolved dataclass into keyword
arguments (STYLE §4.5). Unknown keys raise, so a typo in a YAML file or on the command line fails loudly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mmgt.errors import ConfigError  # defined with the other errors; importable from here too

T = TypeVar("T")


def load_config(schema: type[T], path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> T:
    """Build a ``schema`` instance from its defaults, an optional YAML file and dotlist overrides.

    Args:
        schema: a dataclass type whose fields (and nested dataclass fields) define every valid key and its type.
        path: a YAML file holding only the values that differ from the defaults.
        overrides: ``["optim.lr=1e-4", "data.root=synth-data"]`` style strings, applied last.

    Returns:
        A fully typed ``schema`` instance.

    Raises:
        ConfigError: one line naming the source (the file or the override), the key and the problem, with OmegaConf's
            "Did you mean" suggestion for a misspelt key.
    """
    cfg = OmegaConf.structured(schema)
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"{path}: config file not found")
        cfg = _merged(cfg, str(path), lambda: _renamed(OmegaConf.load(path)))
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got {bad}")
    for override in overrides:  # one at a time, so an error names the override that caused it
        cfg = _merged(cfg, f"override {override!r}", lambda o=override: _renamed(OmegaConf.from_dotlist([o])))
    try:
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(_one_line(schema.__name__, e)) from e


# Keys renamed since mmgt 0.1 (old name -> new name): run folders and YAML files written before still load.
RENAMED_KEYS = {
    "objective.region_scales": "objective.branch_weights",
    "validation.region_scales": "validation.branch_weights",
}


def _renamed(values):
    """``values`` (a loaded config) with the keys of :data:`RENAMED_KEYS` moved to their new names."""
    for old, new in RENAMED_KEYS.items():
        section, key = old.split(".")
        if OmegaConf.is_dict(values) and OmegaConf.is_dict(values.get(section)) and key in values[section]:
            values[section][new.split(".")[1]] = values[section].pop(key)
    return values


def _merged(cfg, source: str, load):
    """``cfg`` merged with ``load()``; an OmegaConf error becomes a one-line ConfigError naming ``source``."""
    try:
        return OmegaConf.merge(cfg, load())
    except OmegaConfBaseException as e:
        raise ConfigError(_one_line(source, e)) from e
    except (OSError, ValueError, yaml.YAMLError) as e:  # an unreadable file or malformed YAML
        raise ConfigError(f"{source}: {' '.join(str(e).split())}") from e


def _one_line(source: str, e: OmegaConfBaseException) -> str:
    """OmegaConf messages span several lines; keep the problem and the full key."""
    lines = str(e).splitlines()
    key = next((ln.split(":", 1)[1].strip() for ln in lines if ln.strip().startswith("full_key:")), "")
    where = f" (key {key})" if key and key not in lines[0] else ""
    return f"{source}: {lines[0]}{where}"


def save_config(cfg, path: str | os.PathLike) -> Path:
    """Write a resolved config (a dataclass instance) as YAML."""
    if not is_dataclass(cfg):
        raise TypeError(f"expected a dataclass instance, got {type(cfg).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(asdict(cfg))))
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Schemas (defaults live here once; YAML files under configs/ hold only what differs)
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class ModelSection:
    """A preset name from the model module's PRESETS plus constructor overrides."""

    preset: str = "tiny"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimSection:
    name: str = "adamw"  # adamw | adan | adamw8bit
    lr: float = 2e-4  # Official code: SMGA lr 2e-4 (Adan)
    weight_decay: float = 0.02
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    grad_clip: float = 1.0


@dataclass
class Stage1Data:
    root: str = "synth-data"
    window_frames: int = 80  # 3.2 s (spec §3.3)
    stride_frames: int = 10  # 0.4 s (spec §3.3)
    encoder: str | None = None  # local WavLM (or any transformers speech encoder) folder; None = mel fallback
    cache_dir: str | None = None  # feature cache; default <root>/features
    target_offset: int = 1  # spec [decision]; 0 reproduces the release
    normalize_scores: bool = True  # spec [decision] pose.normalize_scores


@dataclass
class Stage1Validation:
    every: int = 500  # steps; 0 disables
    num_clips: int = 4
    num_inference_steps: int | None = None  # None: the model's sampling defaults (mmgt.pipelines.sampling_defaults)
    guidance_scale: float | None = None
    pose_autoencoder: str | None = None  # folder of a PoseAutoencoder for FGD; None skips FGD


@dataclass
class Stage1Train:
    """``mmgt train stage1`` (SMGA)."""

    name: str = "stage1"
    output_root: str = "runs"
    seed: int = 0
    max_steps: int = 2000
    batch_size: int = 32
    ema_decay: float = 0.999  # Official code: 0.9999 over 3400 epochs; short CPU runs need a faster average
    face_weight: float = 3.0  # spec §3.5: ×3 face terms
    mixed_precision: str = "no"  # no | fp16 | bf16 (GPU)
    checkpoint_every: int = 500
    checkpoints_total_limit: int = 3
    log_every: int = 10
    data: Stage1Data = field(default_factory=Stage1Data)
    model: ModelSection = field(default_factory=ModelSection)
    optim: OptimSection = field(default_factory=OptimSection)
    validation: Stage1Validation = field(default_factory=Stage1Validation)


# ---------------------------------------------------------------------------------------------------------------------
# Stage 2: the tiny VAE (`mmgt train vae`) and the two training steps (`mmgt train stage2 --step image|video`)
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class VaeData:
    root: str = "synth-data"
    size: int = 128  # square training crop side in pixels; the 8x VAE gives size/8 latents
    crop_scale: tuple[float, float] = (0.5, 1.0)  # RandomResizedCrop area share; (1.0, 1.0) = whole frames
    hflip: bool = True  # random horizontal flips (a VAE has no notion of left and right)


@dataclass
class VaeValidation:
    every: int = 500  # steps; 0 disables (the final PSNR is always computed)
    split: str = "val"  # dataset split whose frames are reconstructed
    num_frames: int = 16  # val frames, spread evenly over the val split


@dataclass
class VaeTrain:
    """``mmgt train vae``: the tiny preset's AutoencoderKL, trained from scratch on dataset frames."""

    name: str = "vae"
    output_root: str = "runs"
    seed: int = 0
    max_steps: int = 5000
    batch_size: int = 16
    mixed_precision: str = "no"  # no | fp16 | bf16 (GPU)
    checkpoint_every: int = 500
    checkpoints_total_limit: int = 3
    log_every: int = 10
    # loss = l1_weight * L1 + mse_weight * MSE (per pixel, in [-1, 1]) + kl_weight * KL (per latent element).
    # LDM's autoencoders use kl_weight 1e-6 on sums; on per-element means this keeps the prior just as weak.
    l1_weight: float = 1.0
    mse_weight: float = 1.0
    kl_weight: float = 1e-6
    # L1 and MSE of the face and hand boxes' pixels weigh 1 + region_weight (normalised to mean 1 per batch); 0 = all
    # pixels alike. The tiny demo VAE needs it: unweighted, the 128 px face decodes without eyes or mouth.
    region_weight: float = 0.0
    scaling_frames: int = 64  # train frames whose latent std sets vae.config.scaling_factor
    data: VaeData = field(default_factory=VaeData)
    model: ModelSection = field(default_factory=ModelSection)  # stage-2 preset; overrides apply to its "vae" section
    optim: OptimSection = field(default_factory=lambda: OptimSection(lr=1e-4, weight_decay=0.0, warmup_steps=100))
    validation: VaeValidation = field(default_factory=VaeValidation)


@dataclass
class Stage2Data:
    root: str = "synth-data"
    size: int = 512  # square training side (spec §5.5 decision: 512); the tiny configs use 128
    num_frames: int = 12  # video step: consecutive frames per sample (spec §5.6)
    min_gap: int = 25  # image step: frames between reference and target (spec §5.5)
    crop_scale: tuple[float, float] = (0.9, 1.0)  # image step RandomResizedCrop (spec §5.5)
    crop_ratio: tuple[float, float] = (0.9, 1.0)
    samples_per_clip: int = 8  # dataset items per clip and epoch
    encoder: str | None = None  # local wav2vec2 folder (all layers, spec §5.4); None = the mel fallback (L=1, D=81)
    # Draw the jaw-line and lip landmarks in the pose images (spec §4.1: all 68 face points). false: the mouth must
    # come from the audio through MM-HAA (the lip mask still comes from the lip keypoints); saved into the model.
    pose_mouth: bool = True
    # Video step: how the MM-HAA branch masks are built (mmgt.pose.masks.MASK_VARIANTS), saved into the model.
    # "paper" is the method; "ungated" (every mask 1) with objective.branch_weights [1, 0, 0] is the ablation's plain
    # audio cross-attention (docs/ablations.md).
    mask_variant: str = "paper"


@dataclass
class Stage2Folders:
    """Local diffusers/transformers folders for ``preset: sd15`` (nothing is downloaded)."""

    unet: str | None = None  # SD-1.5 or sd-image-variations UNet
    vae: str | None = None  # sd-vae-ft-mse
    image_encoder: str | None = None  # CLIP vision with projection (sd-image-variations image_encoder)
    motion_adapter: str | None = None  # AnimateDiff mm_sd_v15_v2
    controlnet: str | None = None  # optional ControlNet-openpose: initialises the pose guider


@dataclass
class Stage2Objective:
    noise_offset: float = 0.05  # spec §5.5
    snr_gamma: float = 5.0  # spec §5.5: min-SNR gamma
    image_drop_prob: float = 0.1  # spec §5.5/5.6: zero the CLIP embedding and skip the ReferenceNet
    audio_drop_prob: float = 0.05  # spec §5.6: zero audio tokens (video step)
    branch_weights: tuple[float, ...] = (1.0, 1.0, 1.0)  # spec §5.3 decision: MM-HAA (1, 1, 1) in training
    # Video step: the loss weight of latent pixels inside the lip mask is 1 + this (0 = the spec's plain loss). The
    # mouth covers a few latent pixels, so its share of the loss is tiny (tried on tiny: docs/stage2.md).
    lip_loss_weight: float = 0.0
    # Both steps: latent pixels weigh 1 + this x their area share inside the face and hand boxes (mmgt.pose.masks.
    # face_hand_regions); 0 = the spec's plain loss. At 128 px the face is a few latent pixels (docs/ablations.md).
    region_loss_weight: float = 0.0
    # Video step, beyond the paper (docs/stage2.md): a frozen lip-sync expert (`mmgt train syncnet` export) scores
    # the decoded one-step x0 prediction's mouth crops against the window's audio; its loss, weighted by
    # alpha_bar_t, is added with this weight (0 = off, the spec).
    sync_loss_weight: float = 0.0
    sync_expert: str | None = None  # the expert folder (<run>/final of `mmgt train syncnet`)


@dataclass
class Stage2Validation:
    every: int = 0  # steps; 0 disables
    split: str = "val"  # the first clip of this split is generated
    num_frames: int = 12  # frames generated from the start of that clip
    # None: the model's sampling defaults (mmgt.pipelines.sampling_defaults), which the export carries too.
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    branch_weights: tuple[float, ...] | None = None


@dataclass
class Stage2Train:
    """``mmgt train stage2 --step image|video`` (spec §5.5, §5.6)."""

    name: str = "stage2"
    output_root: str = "runs"
    step: str = "image"  # image (II-a) | video (II-b)
    seed: int = 0
    max_steps: int = 30000  # spec §5.5 (image); the video step ran 32,500
    batch_size: int = 4  # spec: 4 (image), 1 (video)
    mixed_precision: str = "no"  # no | fp16 | bf16 (GPU); the release trained in fp16
    gradient_checkpointing: bool = False  # memory for compute; the maths is unchanged
    checkpoint_every: int = 500
    checkpoints_total_limit: int = 3
    log_every: int = 10
    preset: str = "tiny"  # tiny: random init + `vae`; sd15: `folders`
    vae: str | None = None  # tiny: the <run>/final folder of `mmgt train vae`
    folders: Stage2Folders = field(default_factory=Stage2Folders)
    init_from: str | None = None  # video step: the image step's <run>/final folder
    motion_adapter: str | None = None  # video step: an AnimateDiff MotionAdapter folder; None = fresh (identity) ones
    audio_placement: str = "down"  # spec §5.3: down (release) | down_up_mid (figure)
    # Video step: the learning rate of the audio projection and MM-HAA adapters (None = optim.lr, the spec's one LR).
    # The lip and face/hand branches see gradient only from a few latent pixels; tried on tiny in docs/stage2.md.
    audio_lr: float | None = None
    data: Stage2Data = field(default_factory=Stage2Data)
    objective: Stage2Objective = field(default_factory=Stage2Objective)
    optim: OptimSection = field(
        default_factory=lambda: OptimSection(lr=1e-5, weight_decay=1e-2, warmup_steps=1, grad_clip=1.0)
    )  # spec §5.5: AdamW 1e-5, wd 1e-2, constant LR; the video step used adamw8bit
    validation: Stage2Validation = field(default_factory=Stage2Validation)


# ---------------------------------------------------------------------------------------------------------------------
# The lip-sync expert (`mmgt train syncnet`) and its use in the stage-2 video step
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class SyncNetData:
    root: str = "synth-data"
    # Negatives: the window's audio shifted by min_shift..max_shift frames either way, or (this share of them) a
    # window of another clip. Positives are half of each batch.
    min_shift: int = 2
    max_shift: int = 15
    other_clip_prob: float = 0.25
    jitter: int = 3  # random shift of the mouth crop, up to this many crop pixels each way
    gain: float = 0.1  # random contrast x (1 +- gain) and brightness +- gain / 2 (pixels in [-1, 1])
    # The stage-2 model's VAE folder: the expert also trains on mouths of frames passed through it (encode -> decode),
    # the domain the video step's sync loss scores (decoded x0 predictions). An expert trained on raw pixels only
    # rejects even in-sync VAE reconstructions (docs/lipsync.md). None: raw frames only.
    vae: str | None = None
    vae_prob: float = 0.5  # share of the windows (positives and negatives alike) drawn from the VAE's frames


@dataclass
class SyncNetValidation:
    every: int = 500  # steps; 0 disables (the final validation always runs)
    split: str = "val"  # sync accuracy (in-sync vs audio shifted by >= 5 frames) and AV-offset accuracy of its clips


@dataclass
class SyncNetTrain:
    """``mmgt train syncnet``: the lip-sync expert (``mmgt.models.lipsync``) on a dataset's mouth crops and audio."""

    name: str = "syncnet"
    output_root: str = "runs"
    seed: int = 0
    max_steps: int = 3000
    batch_size: int = 64
    mixed_precision: str = "no"  # no | fp16 | bf16 (GPU)
    checkpoint_every: int = 500
    checkpoints_total_limit: int = 3
    log_every: int = 10
    data: SyncNetData = field(default_factory=SyncNetData)
    model: ModelSection = field(default_factory=ModelSection)  # mmgt.models.lipsync.PRESETS + LipSyncExpert args
    optim: OptimSection = field(default_factory=lambda: OptimSection(lr=1e-3, weight_decay=1e-4, warmup_steps=100))
    validation: SyncNetValidation = field(default_factory=SyncNetValidation)

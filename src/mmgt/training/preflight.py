"""Everything a training run or an evaluation will need, checked before anything is written or trained.

The policy (docs/stage1.md and docs/stage2.md, "Before the first step"):

* a bad config value, a missing dataset, split or model folder, or an output folder that cannot be written stops the
  command at once with one line (an :class:`~mmgt.errors.MmgtError`), before any run folder exists;
* a validation split that is missing or empty does not stop a training run: validation is skipped with one warning
  naming the split, and the run trains and exports as usual (an evaluation, whose whole point is its split, stops);
* free disk space for the checkpoints is checked by :func:`mmgt.training.common.start_run`, once the model's size is
  known (still before the run folder is created).

One ``check_*`` function per command; each returns a :class:`RunPlan` (or a flag) that the entry point follows.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import logging
import os
import tempfile
from operator import attrgetter
from pathlib import Path
from typing import NamedTuple

from accelerate.utils import get_int_from_env
from diffusers import AutoencoderKL

from mmgt.data.manifest import SPLITS, read_manifest
from mmgt.errors import ConfigError, MmgtError, ModelFolderError
from mmgt.models.audio_attention import PLACEMENTS
from mmgt.models.gesture_denoiser import PRESETS as STAGE1_PRESETS
from mmgt.models.gesture_denoiser import GestureDenoiser
from mmgt.models.lipsync import LIP_FRAMES, LipSyncExpert
from mmgt.models.lipsync import PRESETS as LIPSYNC_PRESETS
from mmgt.models.stage2_presets import PRESETS as STAGE2_PRESETS
from mmgt.models.stage2_presets import check_sd15_folders
from mmgt.pose.masks import MASK_VARIANTS
from mmgt.training.common import MIXED_PRECISION, OPTIMIZERS, check_run_folder, run_folder
from mmgt.training.stage2_components import IMAGE_EXPORTS, STEPS
from mmgt.utils.model_folders import missing_parts, require_pipeline_folder

logger = logging.getLogger(__name__)
REPORT = "training_report.json"  # written by `mmgt train pose-ae` into its output folder
_OPTIMIZER_PACKAGES = {"adan": ("adan_pytorch", "adan-pytorch"), "adamw8bit": ("bitsandbytes", "bitsandbytes")}


class RunPlan(NamedTuple):
    """What the checks decided for a training run."""

    run_dir: Path  # <output_root>/<stage>/<name>, not created yet
    validate: bool  # False: validation is off, or its split is missing or empty (warned once)


# ---------------------------------------------------------------------------------------------------------------------
# One check per command
# ---------------------------------------------------------------------------------------------------------------------
def check_stage1(cfg, resume: bool = False) -> RunPlan:
    """``mmgt train stage1`` (a ``Stage1Train``)."""
    _check_run_values(cfg)
    _positive(cfg, "data.window_frames", "data.stride_frames")
    _within(cfg, "ema_decay", 0.0, 1.0)
    _non_negative(cfg, "face_weight")
    _choice(cfg, "data.target_offset", (0, 1))
    _choice(cfg, "model.preset", tuple(STAGE1_PRESETS))
    _overrides(cfg, GestureDenoiser, set_by_data=("audio_dim", "window_frames"))
    if cfg.validation.every:
        _positive(cfg, "validation.num_clips", "validation.num_inference_steps")
        if cfg.validation.pose_autoencoder:
            require_component_folder(cfg.validation.pose_autoencoder, "validation.pose_autoencoder")
    if cfg.data.encoder:
        require_component_folder(cfg.data.encoder, "data.encoder")
    require_split(cfg.data.root, "train", "data.root")
    check_writable(Path(cfg.data.cache_dir or Path(cfg.data.root) / "features"), "data.cache_dir (feature cache)")
    run_dir = _check_output(cfg, "stage1", resume)
    return RunPlan(run_dir, bool(cfg.validation.every) and validation_split_ok(cfg.data.root, "val", "stage1"))


def check_vae(cfg, resume: bool = False) -> RunPlan:
    """``mmgt train vae`` (a ``VaeTrain``); its validation also measures the final PSNR, even with ``every: 0``."""
    _check_run_values(cfg)
    _positive(cfg, "data.size", "scaling_frames", "validation.num_frames")
    _multiple_of_8(cfg, "data.size")
    _fraction_range(cfg, "data.crop_scale")
    _non_negative(cfg, "l1_weight", "mse_weight", "kl_weight", "region_weight")
    _choice(cfg, "model.preset", tuple(STAGE2_PRESETS))
    _overrides(cfg, AutoencoderKL)
    _choice(cfg, "validation.split", SPLITS)
    require_split(cfg.data.root, "train", "data.root")
    run_dir = _check_output(cfg, "vae", resume)
    return RunPlan(run_dir, validation_split_ok(cfg.data.root, cfg.validation.split, "vae"))


def check_stage2(cfg, resume: bool = False) -> RunPlan:
    """``mmgt train stage2 --step image|video`` (a ``Stage2Train``)."""
    _check_run_values(cfg)
    _choice(cfg, "step", STEPS)
    _choice(cfg, "preset", tuple(STAGE2_PRESETS))
    _choice(cfg, "audio_placement", tuple(PLACEMENTS))
    _choice(cfg, "data.mask_variant", tuple(MASK_VARIANTS))
    _positive(cfg, "data.size", "data.num_frames", "data.samples_per_clip", "objective.snr_gamma")
    _multiple_of_8(cfg, "data.size")
    _non_negative(cfg, "data.min_gap", "objective.noise_offset", "objective.lip_loss_weight")
    _non_negative(cfg, "objective.region_loss_weight", "objective.sync_loss_weight")
    if cfg.objective.sync_loss_weight > 0:
        if cfg.step != "video":
            raise ConfigError("objective.sync_loss_weight applies to the video step only (step=video)")
        if cfg.data.num_frames < LIP_FRAMES:
            frames = cfg.data.num_frames
            raise ConfigError(f"objective.sync_loss_weight needs data.num_frames >= {LIP_FRAMES}, got {frames}")
        require_component_folder(cfg.objective.sync_expert, "objective.sync_expert", "an `mmgt train syncnet` export")
    _fraction_range(cfg, "data.crop_scale")
    for key in ("objective.image_drop_prob", "objective.audio_drop_prob"):
        _within(cfg, key, 0.0, 1.0)
    if cfg.audio_lr is not None:
        _positive(cfg, "audio_lr")
    if cfg.validation.every:
        _positive(cfg, "validation.num_frames", "validation.num_inference_steps")
        _choice(cfg, "validation.split", SPLITS)
    if cfg.step == "image" and cfg.preset == "sd15":
        check_sd15_folders({k: v for k, v in vars(cfg.folders).items() if v})
    elif cfg.step == "image":
        require_component_folder(cfg.vae, "vae", "the <run>/final folder of `mmgt train vae`")
    else:
        if not cfg.init_from:
            raise ConfigError("video step: init_from must name the image step's <run>/final folder")
        for name in IMAGE_EXPORTS:
            require_component_folder(Path(cfg.init_from) / name, "init_from", "an image-step export")
        if cfg.motion_adapter:
            require_component_folder(cfg.motion_adapter, "motion_adapter")
        if cfg.data.encoder:
            require_component_folder(cfg.data.encoder, "data.encoder")
    require_split(cfg.data.root, "train", "data.root")
    run_dir = _check_output(cfg, "stage2", resume)
    validate = bool(cfg.validation.every) and validation_split_ok(cfg.data.root, cfg.validation.split, "stage2")
    return RunPlan(run_dir, validate)


def check_syncnet(cfg, resume: bool = False) -> RunPlan:
    """``mmgt train syncnet`` (a ``SyncNetTrain``); its validation runs once at the end even with ``every: 0``."""
    _check_run_values(cfg)
    _choice(cfg, "model.preset", tuple(LIPSYNC_PRESETS))
    _overrides(cfg, LipSyncExpert)
    _positive(cfg, "data.min_shift", "data.max_shift")
    _non_negative(cfg, "data.jitter", "data.gain")
    _within(cfg, "data.other_clip_prob", 0.0, 1.0)
    _within(cfg, "data.vae_prob", 0.0, 1.0)
    if cfg.data.vae is not None:
        require_component_folder(cfg.data.vae, "data.vae", "the stage-2 model's VAE")
    if cfg.data.min_shift > cfg.data.max_shift:
        raise ConfigError(f"data.min_shift {cfg.data.min_shift} must be <= data.max_shift {cfg.data.max_shift}")
    _choice(cfg, "validation.split", SPLITS)
    require_split(cfg.data.root, "train", "data.root")
    run_dir = _check_output(cfg, "syncnet", resume)
    return RunPlan(run_dir, validation_split_ok(cfg.data.root, cfg.validation.split, "syncnet"))


def check_pose_ae(dataset: str | os.PathLike, output: str | os.PathLike, **positive: float) -> bool:
    """``mmgt train pose-ae``: the numbers in ``positive`` (name -> value), the dataset and the output folder.

    Returns:
        Whether the dataset has val clips (without them the report has no validation error; warned once).
    """
    for name, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{name} must be > 0, got {value}")
    require_split(dataset, "train", "dataset")
    output = Path(output)
    check_writable(output, "output folder")
    if output.is_dir() and any(output.iterdir()) and not (output / REPORT).is_file():
        raise MmgtError(f"output folder {output} holds other files; the export replaces it whole: choose a new folder")
    return validation_split_ok(dataset, "val", "pose-ae", consequence="the report has no validation error")


def check_eval(
    model: str | os.PathLike,
    dataset: str | os.PathLike,
    split: str,
    what: str,
    outputs: dict[str, str | os.PathLike | None],
    folders: dict[str, str | os.PathLike | None],
    conditions: tuple[tuple[str, ...], tuple[str, ...]],
    positive: dict[str, float | None],
) -> None:
    """``mmgt eval stage1|stage2``: everything the evaluation reads or writes, before any clip is generated.

    Args:
        model: the pipeline folder; ``what`` names it in messages (e.g. "stage-1 model").
        dataset, split: the clips to evaluate; the split must have some (an evaluation cannot skip it).
        outputs: option -> a file (``--output``) or folder (``--videos``) written at the end, or None.
        folders: option -> a component folder it loads (``--pose-ae``, ``--encoder``), or None.
        conditions: (the requested conditions, the known ones).
        positive: option -> a number that must be > 0, or None (unset).
    """
    for option, value in positive.items():
        if value is not None and not value > 0:
            raise ConfigError(f"{option} must be > 0, got {value}")
    requested, known = conditions
    unknown = sorted(set(requested) - set(known))
    if unknown:
        raise ConfigError(f"--conditions: unknown {unknown}; choose from {known}")
    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {SPLITS}, got {split!r}")
    require_pipeline_folder(model, what)
    for option, folder in folders.items():
        if folder is not None:
            require_component_folder(folder, option)
    require_split(dataset, split, "--data")
    for option, path in outputs.items():
        if path is not None:
            check_writable(Path(path), option)


# ---------------------------------------------------------------------------------------------------------------------
# Data, folders, outputs
# ---------------------------------------------------------------------------------------------------------------------
def require_split(root: str | os.PathLike, split: str, key: str) -> list:
    """The clip records of ``split``, or one error naming the dataset option and what is missing."""
    if not Path(root).is_dir():
        raise MmgtError(f"{key} {root}: dataset folder not found")
    records = read_manifest(root, split)
    if not records:
        raise MmgtError(f"{key} {root}: no clips in split {split!r}")
    return records


def validation_split_ok(
    root: str | os.PathLike, split: str, run: str, consequence: str = "validation is skipped"
) -> bool:
    """Whether ``split`` has clips; if not, one warning naming the split (the run goes on without validation)."""
    if read_manifest(root, split):
        return True
    if _rank() == 0:  # one warning, not one per process
        logger.warning(
            "%s: %s has no clips in split %r: %s (the run still trains and exports)", run, root, split, consequence
        )
    return False


def require_component_folder(folder: str | os.PathLike | None, key: str, what: str = "") -> Path:
    """A local diffusers/transformers component folder (``config.json`` + weights), or one error naming ``key``."""
    label = f"{key} ({what})" if what else key
    if not folder:
        raise ModelFolderError(f"{label}: no folder given")
    missing = missing_parts(folder)
    if missing:
        raise ModelFolderError(f"{label}: missing {', '.join(missing)}")
    return Path(folder)


def check_writable(path: Path, what: str) -> None:
    """Raise unless ``path`` (a folder or file, existing or to be created) can be written.

    Its nearest existing ancestor must be a folder in which a file can be created; the probe is a temporary file,
    removed at once (``os.access`` is no test when running as root).
    """
    existing = path
    while not existing.exists():  # ends at the root or "."
        existing = existing.parent
    if existing != path and not existing.is_dir():
        raise MmgtError(f"{what} {path}: cannot be created, {existing} is a file")
    folder = existing if existing.is_dir() else existing.parent
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise MmgtError(f"{what} {path}: cannot write in {folder} ({e.strerror or e})") from e


def _rank() -> int:
    """This process's rank from the launcher's environment (0 for a single process).

    Why not ``PartialState().process_index``: the accelerate state does not exist yet, and creating it here would fix
    its device type before the Accelerator reads ``ACCELERATE_USE_CPU`` (multi-process CPU runs would not be
    distributed).
    """
    return get_int_from_env(["RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"], 0)


def _check_output(cfg, stage: str, resume: bool) -> Path:
    run_dir = run_folder(cfg.output_root, stage, cfg.name)
    check_writable(run_dir, "output_root")
    check_run_folder(run_dir, resume)
    return run_dir


# ---------------------------------------------------------------------------------------------------------------------
# Config values: one line naming the key, the value and the rule
# ---------------------------------------------------------------------------------------------------------------------
def _check_run_values(cfg) -> None:
    """The keys every training schema shares: steps, batch, checkpoints, logging, precision, optimiser."""
    _positive(cfg, "max_steps", "batch_size", "checkpoint_every", "log_every", "optim.lr")
    _non_negative(cfg, "checkpoints_total_limit", "validation.every", "optim.weight_decay", "optim.warmup_steps")
    _non_negative(cfg, "optim.grad_clip")  # 0 disables clipping
    _choice(cfg, "mixed_precision", MIXED_PRECISION)
    _choice(cfg, "optim.name", OPTIMIZERS)
    for i, beta in enumerate(cfg.optim.betas):
        if not 0 <= beta < 1:
            raise ConfigError(f"optim.betas[{i}] must be in [0, 1), got {beta}")
    if cfg.optim.name in _OPTIMIZER_PACKAGES:
        module, package = _OPTIMIZER_PACKAGES[cfg.optim.name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"optim.name {cfg.optim.name!r} needs the {package} package: pip install {package}")


def _positive(cfg, *keys: str) -> None:
    """Each key's value is > 0 (None: unset, e.g. a sampling setting left to the model, passes)."""
    for key in keys:
        if attrgetter(key)(cfg) is not None and not attrgetter(key)(cfg) > 0:
            raise ConfigError(f"{key} must be > 0, got {attrgetter(key)(cfg)}")


def _non_negative(cfg, *keys: str) -> None:
    for key in keys:
        if attrgetter(key)(cfg) is not None and not attrgetter(key)(cfg) >= 0:
            raise ConfigError(f"{key} must be >= 0, got {attrgetter(key)(cfg)}")


def _within(cfg, key: str, low: float, high: float) -> None:
    if not low <= attrgetter(key)(cfg) <= high:
        raise ConfigError(f"{key} must be in [{low}, {high}], got {attrgetter(key)(cfg)}")


def _multiple_of_8(cfg, key: str) -> None:
    if attrgetter(key)(cfg) % 8:
        raise ConfigError(f"{key} must be a multiple of 8 (the VAE downsamples 8x), got {attrgetter(key)(cfg)}")


def _fraction_range(cfg, key: str) -> None:
    low, high = attrgetter(key)(cfg)
    if not 0 < low <= high <= 1:
        raise ConfigError(f"{key} must be [low, high] with 0 < low <= high <= 1, got [{low}, {high}]")


def _choice(cfg, key: str, choices: tuple) -> None:
    value = attrgetter(key)(cfg)
    if value not in choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{key} must be one of {choices}, got {value!r}{hint}")


def _overrides(cfg, model_cls: type, set_by_data: tuple[str, ...] = ()) -> None:
    """``model.overrides`` keys must be constructor arguments of ``model_cls`` (and not ones the data sets)."""
    allowed = [p for p in inspect.signature(model_cls.__init__).parameters if p != "self"]
    for key in cfg.model.overrides:
        if key in set_by_data:
            raise ConfigError(f"model.overrides.{key}: set from the data, not overridable")
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"model.overrides.{key}: not a {model_cls.__name__} argument{hint}")

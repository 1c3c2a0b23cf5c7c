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

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or override is invalid (unknown key, wrong type, unreadable file)."""


def load_config(schema: type[T], path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> T:
    """Build a ``schema`` instance from its defaults, an optional YAML file and dotlist overrides.

    Args:
        schema: a dataclass type whose fields (and nested dataclass fields) define every valid key and its type.
        path: a YAML file holding only the values that differ from the defaults.
        overrides: ``["optim.lr=1e-4", "data.root=synth-data"]`` style strings, applied last.

    Returns:
        A fully typed ``schema`` instance.
    """
    try:
        cfg = OmegaConf.structured(schema)
        if path is not None:
            if not Path(path).is_file():
                raise ConfigError(f"{path}: config file not found")
            cfg = OmegaConf.merge(cfg, OmegaConf.load(path))
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"overrides must look like key=value, got {bad}")
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        # OmegaConf messages span several lines; keep one line: the problem and the full key.
        lines = str(e).splitlines()
        key = next((ln.split(":", 1)[1].strip() for ln in lines if ln.strip().startswith("full_key:")), "")
        where = f" (key {key})" if key and key not in lines[0] else ""
        raise ConfigError(f"{path or schema.__name__}: {lines[0]}{where}") from e


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
    num_inference_steps: int = 25
    guidance_scale: float = 2.0
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

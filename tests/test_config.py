from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mmgt.config import ConfigError, Stage1Train, Stage2Train, SyncNetTrain, VaeTrain, load_config, save_config


@dataclass
class Optim:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Run:
    name: str = "run"
    steps: int = 10
    optim: Optim = field(default_factory=Optim)


def test_defaults_yaml_and_overrides_merge_in_order(tmp_path):
    yaml = tmp_path / "c.yaml"
    yaml.write_text("steps: 20\noptim:\n  lr: 0.001\n")
    cfg = load_config(Run, yaml, ["optim.lr=0.5", "name=x"])
    assert isinstance(cfg, Run) and isinstance(cfg.optim, Optim)
    assert (cfg.name, cfg.steps, cfg.optim.lr, cfg.optim.betas) == ("x", 20, 0.5, (0.9, 0.999))


def test_unknown_key_and_wrong_type_raise(tmp_path):
    with pytest.raises(ConfigError, match="stepz"):
        load_config(Run, overrides=["stepz=3"])
    with pytest.raises(ConfigError, match="steps"):
        load_config(Run, overrides=["steps=many"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(Run, tmp_path / "missing.yaml")


def test_save_then_load_round_trip(tmp_path):
    cfg = load_config(Run, overrides=["steps=7"])
    path = save_config(cfg, tmp_path / "out" / "config.yaml")
    assert load_config(Run, path) == cfg


TRAINING_CONFIGS = [p for p in Path(__file__).parents[1].glob("configs/*/*.yaml") if p.parent.name != "accelerate"]


@pytest.mark.parametrize("path", sorted(TRAINING_CONFIGS), ids=lambda p: p.name)
def test_every_shipped_config_loads_into_its_schema(path):
    schema = {"stage1": Stage1Train, "stage2": Stage2Train, "vae": VaeTrain, "syncnet": SyncNetTrain}[path.parent.name]
    cfg = load_config(schema, path)  # unknown keys and wrong types raise
    assert cfg.name == path.stem  # runs land in runs/<stage>/<config name>


def test_keys_renamed_since_0_1_still_load(tmp_path):
    """Run folders written by mmgt 0.1 say region_scales; they load as branch_weights (files and overrides)."""
    old = tmp_path / "config.yaml"
    old.write_text("objective:\n  region_scales: [1.0, 0.5, 0.5]\nvalidation:\n  region_scales: [1.0, 1.0, 3.0]\n")
    cfg = load_config(Stage2Train, old)
    assert cfg.objective.branch_weights == (1.0, 0.5, 0.5) and cfg.validation.branch_weights == (1.0, 1.0, 3.0)
    cfg = load_config(Stage2Train, overrides=["objective.region_scales=[2.0,1.0,1.0]"])
    assert cfg.objective.branch_weights == (2.0, 1.0, 1.0)
    assert load_config(Stage2Train).validation.branch_weights is None  # None: the model's own (1, 1, 2)

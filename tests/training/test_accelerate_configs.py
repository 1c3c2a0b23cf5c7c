"""The shipped accelerate launch configs (configs/accelerate) parse as accelerate's own config files."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "accelerate").glob("*.yaml"))


def test_the_three_setups_are_shipped():
    assert [p.name for p in CONFIGS] == ["ddp_1node.yaml", "fsdp_sd15.yaml", "multinode_ddp.yaml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses_as_an_accelerate_cluster_config(path):
    cfg = load_config_from_file(str(path))
    expected = {"ddp_1node.yaml": ("MULTI_GPU", 1), "fsdp_sd15.yaml": ("FSDP", 1)}
    expected["multinode_ddp.yaml"] = ("MULTI_GPU", 2)
    assert (str(cfg.distributed_type).split(".")[-1], cfg.num_machines) == expected[path.name]
    assert cfg.mixed_precision == "no"  # the training config's mixed_precision decides (docs/training.md)
    if path.name == "fsdp_sd15.yaml":
        assert cfg.fsdp_config["fsdp_use_orig_params"] is True  # frozen and trained parameters in one trainee

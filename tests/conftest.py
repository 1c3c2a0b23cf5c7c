"""Shared test set-up: offline hub, deterministic seeds, small generated fixtures (nothing is downloaded)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models run faster on one thread than two on the 2-core CI machine (less contention)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory):
    """A small synthetic dataset (12 clips of 2.4 s at 64 px, 2 identities): train 9 / val 1 / test 2 clips."""
    from mmgt.data.synthetic.world import write_synthetic_dataset

    root = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(root, clips=12, seconds=2.4, size=64, seed=0, identities=2, workers=1, progress=False)
    return root

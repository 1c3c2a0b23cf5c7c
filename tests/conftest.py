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


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Seed torch's global RNG before each test and its fixtures (model inits draw from it), so no test depends on
    which tests ran before it; pytest-randomly does the same for ``random`` and ``numpy.random``."""
    import torch

    torch.manual_seed(0)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """Print pytest-randomly's seed at the end even under ``-q`` (which hides the report header)."""
    if config.pluginmanager.has_plugin("randomly"):
        seed = config.getoption("randomly_seed")
        terminalreporter.write_line(f"Using --randomly-seed={seed} (pass it again to replay this test order)")


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

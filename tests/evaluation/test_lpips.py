"""LPIPS: mmgt's plain-torch LPIPS equals the lpips package's own forward (its torchvision backbone stubbed)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from mmgt.errors import ModelFolderError
from mmgt.evaluation import weight_files as wf
from mmgt.evaluation.lpips import alexnet_features, load_lpips, lpips_distances

LINEAR = wf.packaged_path(wf.LPIPS_LINEAR)
needs_lpips = pytest.mark.skipif(LINEAR is None, reason="the lpips wheel is not installed (make setup)")


def _random_alexnet(seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    features = alexnet_features()
    for module in features:
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=0.05)
            torch.nn.init.uniform_(module.bias, -0.1, 0.1)
    return features


@pytest.fixture
def stubbed_lpips(monkeypatch):
    """The lpips package, importing a stand-in torchvision whose alexnet() has the given random features."""
    features = _random_alexnet()
    models = types.ModuleType("torchvision.models")
    models.alexnet = lambda pretrained=True, **_: types.SimpleNamespace(features=features)
    vision = types.ModuleType("torchvision")
    vision.models = models
    monkeypatch.setitem(sys.modules, "torchvision", vision)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        monkeypatch.delitem(sys.modules, name)
    import lpips

    yield lpips.LPIPS(net="alex", version="0.1", verbose=False), features
    for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        del sys.modules[name]  # the package was imported against the stand-in torchvision: forget it


@needs_lpips
def test_equals_the_lpips_package_forward_with_the_same_backbone(stubbed_lpips, tmp_path):
    reference, features = stubbed_lpips
    alexnet = tmp_path / "alexnet.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, alexnet)
    ours = load_lpips(alexnet, LINEAR)
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.uniform(-1, 1, (3, 3, 64, 96))).float()
    b = (a + torch.from_numpy(rng.normal(0, 0.3, a.shape)).float()).clamp(-1, 1)
    with torch.no_grad():
        expected = reference(a, b).flatten()
        got = ours(a, b)
    assert expected.min() > 0  # different images: a positive distance
    assert (got - expected).abs().max().item() < 1e-6
    with torch.no_grad():
        assert ours(a, a).abs().max().item() < 1e-6  # identical images: zero


@needs_lpips
def test_frame_distances_and_layout_errors(tmp_path):
    alexnet = tmp_path / "alexnet-owt-7be5be79.pth"
    state = {f"features.{k}": v for k, v in _random_alexnet().state_dict().items()}
    torch.save({**state, "classifier.1.weight": torch.zeros(4096, 9216)}, alexnet)  # the classifier is ignored
    model = load_lpips(alexnet, LINEAR)
    frames = np.random.default_rng(1).integers(0, 256, (5, 48, 48, 3), dtype=np.uint8)
    d = lpips_distances(model, frames, frames[::-1].copy())
    assert d.shape == (5,) and d[2] == pytest.approx(0.0, abs=1e-6) and d[0] > 0  # frame 2 is its own mirror
    del state["features.10.bias"]
    torch.save(state, alexnet)
    with pytest.raises(ModelFolderError, match="missing 'features.10.bias'"):
        load_lpips(alexnet, LINEAR)
    with pytest.raises(ModelFolderError, match="not the LPIPS linear layers"):
        load_lpips(tmp_path / "alexnet-owt-7be5be79.pth", alexnet)

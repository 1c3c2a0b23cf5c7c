"""Builders of tiny random-weight pipelines shared by the tests (import as ``from builders import ...``)."""

from __future__ import annotations

import numpy as np
import torch

from mmgt.audio.features import feature_spec, stage1_feature_dim
from mmgt.diffusion.stage1 import make_stage1_scheduler
from mmgt.diffusion.stage2 import make_stage2_scheduler
from mmgt.models.audio_projection import AudioProjection
from mmgt.models.denoising_unet import build_denoising_unet
from mmgt.models.gesture_denoiser import GestureDenoiser
from mmgt.models.stage2_presets import build_components, preset
from mmgt.pipelines.audio_to_pose import AudioToPosePipeline
from mmgt.pipelines.pose_to_video import PoseToVideoPipeline

# A tiny speech encoder's config (wav2vec2 / WavLM, with num_hidden_layers added): 50 Hz like the real models (hop
# 5 * 8 * 8 = 320 samples), receptive field 325 samples, 32-d.
TINY_SPEECH = dict(
    hidden_size=32,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16, 16, 16),
    conv_stride=(5, 8, 8),
    conv_kernel=(10, 8, 8),
    num_conv_pos_embeddings=8,
    num_conv_pos_embedding_groups=2,
)


def tiny_stage1(window: int = 8, seed: int = 0) -> AudioToPosePipeline:
    """A 1-layer SMGA on the mel fallback (random weights, eval mode)."""
    torch.manual_seed(seed)
    model = GestureDenoiser.from_preset(
        "tiny",
        hidden_dim=32,
        num_layers=1,
        num_heads=2,
        ff_dim=64,
        audio_dim=stage1_feature_dim(None),
        window_frames=window,
    ).eval()
    pipe = AudioToPosePipeline(model, make_stage1_scheduler(), feature_spec(None))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_stage2(perturb: tuple[str, ...] = (), seed: int = 0, spec: dict | None = None) -> PoseToVideoPipeline:
    """Tiny pipeline; ``perturb`` names zero-initialised parts given random weights ("adapter", "pose", "motion")."""
    torch.manual_seed(seed)
    parts = build_components("tiny")
    spec = spec or feature_spec(None, stage=2)  # default: the mel fallback, (T, 1, 81)
    projection = AudioProjection(
        **{**preset("tiny")["audio_projection"], "num_layers": spec["num_layers"], "input_dim": spec["dim"]}
    )
    unet = build_denoising_unet(parts["unet"], parts["motion_adapter"])
    g = torch.Generator().manual_seed(seed + 1)
    targets = {
        "adapter": parts["audio_adapter"].named_parameters(),
        "pose": parts["pose_guider"].named_parameters(),
        "motion": ((n, p) for n, p in unet.named_parameters() if "motion_modules" in n and "proj_out" in n),
    }
    with torch.no_grad():
        for name in perturb:
            for _, param in targets[name]:
                param.add_(0.2 * torch.randn(param.shape, generator=g))
    pipe = PoseToVideoPipeline(
        vae=parts["vae"],
        image_encoder=parts["image_encoder"],
        reference_unet=parts["reference_unet"],
        unet=unet,
        pose_guider=parts["pose_guider"],
        audio_projection=projection,
        audio_adapter=parts["audio_adapter"],
        scheduler=make_stage2_scheduler(),
        audio_features=spec,
    )
    pipe.set_progress_bar_config(disable=True)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()  # as from_pretrained leaves them (train-mode VAE decoding differs in the last bits)
    return pipe


def assert_same_pictures(a: np.ndarray, b: np.ndarray) -> None:
    """Two encodes of the same frames: same shape, decoded pixels within x264's run-to-run wobble."""
    assert a.shape == b.shape
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert diff.mean() < 1.0 and diff.max() <= 16, (diff.mean(), diff.max())


def random_stage1_release(layout: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict in the release's stage-1 layout (``released_stage1.release_layout``/``load_manifest``): random
    values, and the rotary ``freqs`` buffers the release computes (rotary-embedding-torch's formula, written here
    independently of ``mmgt.models.rotary``)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith(".freqs"):
            width = 2 * shape[0]
            state[key] = 1.0 / (10_000 ** (torch.arange(0, width, 2).float() / width))
        else:
            state[key] = torch.randn(shape, generator=g)
    return state

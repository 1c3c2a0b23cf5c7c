"""`mmgt train stage2` on the synthetic dataset: image step export, video step exact resume and pipeline export,
the freeze policy of each step, condition dropout and gradient checkpointing (tiny preset, 64 px, CPU)."""

from __future__ import annotations

import csv
import logging

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from mmgt.config import Stage2Train, load_config
from mmgt.contracts import PoseSequence
from mmgt.data.manifest import read_manifest
from mmgt.diffusion.stage2 import make_stage2_scheduler
from mmgt.errors import ConfigError, MmgtError, ModelFolderError
from mmgt.models.audio_projection import AudioProjection
from mmgt.models.denoising_unet import build_denoising_unet
from mmgt.models.lipsync import LipSyncExpert
from mmgt.models.stage2_presets import build_components
from mmgt.pipelines.pose_to_video import PoseToVideoPipeline
from mmgt.training.common import build_optimizer, latest_checkpoint
from mmgt.training.stage2_components import (
    build_trainee,
    check_video_freeze,
    parameter_groups,
    trainable_counts,
    video_step_components,
)
from mmgt.training.stage2_objective import (
    SyncTerm,
    latent_loss_weights,
    lip_loss_weights,
    region_loss_weights,
    stage2_loss,
)
from mmgt.training.train_stage2 import main
from mmgt.utils.audio_io import Audio

TINY = [
    "data.size=64",
    "data.min_gap=5",
    "data.samples_per_clip=2",
    "log_every=1",
    "checkpoint_every=1",
    "validation.every=0",
    "optim.lr=1e-4",
]
MEL_SPEC = {"num_layers": 1, "dim": 81}


def _cfg(root, out, step, name, steps, extra=()):
    path = f"configs/stage2/tiny_{step}.yaml"
    return load_config(
        Stage2Train,
        path,
        [*TINY, f"data.root={root}", f"output_root={out}", f"name={name}", f"max_steps={steps}", *extra],
    )


def _losses(run_dir):
    with (run_dir / "train_log.csv").open() as f:
        return {int(r["step"]): (float(r["loss"]), float(r["mse"])) for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory):
    """A random tiny VAE folder with a made-up scaling factor (stands in for `mmgt train vae`'s export)."""
    torch.manual_seed(0)
    vae = build_components("tiny")["vae"]
    vae.register_to_config(scaling_factor=0.7)
    folder = tmp_path_factory.mktemp("vae")
    vae.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def image_export(synth_dataset, tiny_vae, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    # Plain loss (the config's region weighting off), so the logged loss is min-SNR weights x the plain MSE.
    extra = ["batch_size=2", f"vae={tiny_vae}", "data.pose_mouth=true", "objective.region_loss_weight=0"]
    final = main(_cfg(synth_dataset, out, "image", "img", 2, extra))
    return out, final


def test_image_step_trains_and_exports_its_components(image_export, tiny_vae):
    out, final = image_export
    run = out / "stage2" / "img"
    losses = _losses(run)
    assert sorted(losses) == [1, 2] and all(np.isfinite(v) for pair in losses.values() for v in pair)
    assert all(loss <= mse for loss, mse in losses.values())  # min-SNR weights are <= 1
    assert latest_checkpoint(run)[1] == 2 and (run / "checkpoints" / "step-0000002" / "pose_guider").is_dir()
    # The export holds the trained modules plus the frozen encoders, each loadable on its own.
    unet = UNet2DConditionModel.from_pretrained(final / "unet")
    torch.manual_seed(0)
    fresh = build_components("tiny")["unet"]  # same seed as the run: training moved the weights
    assert not torch.equal(unet.conv_in.weight, fresh.conv_in.weight)
    vae = AutoencoderKL.from_pretrained(final / "vae")
    assert vae.config.scaling_factor == 0.7  # the frozen VAE (and its scale) passes through unchanged
    source = AutoencoderKL.from_pretrained(tiny_vae)
    assert all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(), source.state_dict().values()))


def test_video_step_resumes_exactly_and_exports_a_pipeline(synth_dataset, image_export, caplog):
    out, image_final = image_export
    init = [f"init_from={image_final}", "data.num_frames=8", "data.pose_mouth=false"]
    with caplog.at_level(logging.WARNING, logger="mmgt.training.stage2_components"):
        final = main(_cfg(synth_dataset, out, "video", "straight", 2, init))
    assert "trained with pose_mouth=True" in caplog.text  # the image step drew the mouth, this step does not
    straight = _losses(out / "stage2" / "straight")
    assert sorted(straight) == [1, 2] and all(np.isfinite(v) for pair in straight.values() for v in pair)
    main(_cfg(synth_dataset, out, "video", "resumed", 1, init))
    main(_cfg(synth_dataset, out, "video", "resumed", 2, init), resume=True)
    assert _losses(out / "stage2" / "resumed") == straight  # exact, to the last bit

    # The export is a PoseToVideoPipeline folder on the training schedule, with the mel audio recipe.
    pipe = PoseToVideoPipeline.from_pretrained(final)
    assert pipe.scheduler.config.prediction_type == "v_prediction" and pipe.scheduler.config.rescale_betas_zero_snr
    saved = DDIMScheduler.from_pretrained(final / "scheduler")
    assert torch.equal(saved.alphas_cumprod, make_stage2_scheduler().alphas_cumprod)
    assert pipe.config.audio_features["speech"]["type"] == "mel" and pipe.audio_projection.config.input_dim == 81
    assert pipe.config.pose_mouth is False  # inference draws the pose images as this step's training did
    # Checkpoint motion-module export == the final UNet's motion modules.
    from diffusers import MotionAdapter

    adapter = MotionAdapter.from_pretrained(
        out / "stage2" / "straight" / "checkpoints" / "step-0000002" / "motion_adapter"
    )
    unet_state = pipe.unet.state_dict()
    assert all(torch.equal(v, unet_state[k]) for k, v in adapter.state_dict().items())
    # ... and it generates.
    rec = read_manifest(synth_dataset, "train")[0]
    poses = PoseSequence.load(rec.path(synth_dataset, "keypoints"))[:3]
    ref = np.full((64, 64, 3), 128, np.uint8)
    frames = pipe(
        ref,
        poses,
        Audio(np.zeros(16000 * 3 // 25, np.float32), 16000),
        height=64,
        width=64,
        num_inference_steps=2,
        progress=False,
    ).frames
    assert frames.shape == (3, 64, 64, 3) and frames.dtype == np.uint8


@pytest.mark.parametrize(
    ("variant", "extra", "moved"),
    [
        ("plain", ["data.mask_variant=ungated", "objective.branch_weights=[1,0,0]"], {"global"}),
        ("no_audio", ["objective.branch_weights=[0,0,0]"], set()),
    ],
)
def test_ablation_variants_train_only_their_audio_branches(synth_dataset, image_export, variant, extra, moved):
    out, image_final = image_export
    init = [f"init_from={image_final}", "data.num_frames=4", *extra]
    final = main(_cfg(synth_dataset, out, "video", variant, 2, init))
    pipe = PoseToVideoPipeline.from_pretrained(final)
    assert pipe.config.mask_variant == ("ungated" if variant == "plain" else "paper")  # inference builds the same
    changed = {
        name
        for layer in pipe.audio_adapter.layers
        for name, branch in layer.branches.items()
        if branch.adapter.weight.abs().sum() > 0
    }
    assert changed == moved  # the other adapters stay exactly zero: they add nothing at inference either


def _video_parts(seed: int = 0):
    torch.manual_seed(seed)
    parts = build_components("tiny")
    parts["motion_adapter_obj"] = parts["motion_adapter"]
    parts["unet"] = build_denoising_unet(parts["unet"], parts["motion_adapter"])
    parts["audio_projection"] = AudioProjection(
        seq_len=5, num_layers=1, input_dim=81, intermediate_dim=16, output_dim=64, num_tokens=4
    )
    return parts


def _count(module, predicate=lambda name: True):
    return sum(p.numel() for name, p in module.named_parameters() if predicate(name))


def test_freeze_policy_of_each_step():
    image_cfg = load_config(Stage2Train, overrides=["step=image"])
    torch.manual_seed(0)
    parts = build_components("tiny")
    counts = trainable_counts(build_trainee(image_cfg, parts))
    ref = parts["reference_unet"]
    last_up = f"up_blocks.{len(ref.up_blocks) - 1}."
    assert counts == {
        "unet": _count(parts["unet"]),  # every 2D weight
        "reference_unet": _count(ref, lambda n: not n.startswith((last_up, "conv_norm_out.", "conv_out."))),
        "pose_guider": _count(parts["pose_guider"]),
    }
    assert not any(p.requires_grad for name in ("vae", "image_encoder") for p in parts[name].parameters())

    video_cfg = load_config(Stage2Train, overrides=["step=video"])
    parts = _video_parts()
    trainee = build_trainee(video_cfg, parts)
    counts = trainable_counts(trainee)
    assert counts == {
        "unet": _count(parts["motion_adapter_obj"]),  # exactly the AnimateDiff motion modules
        "reference_unet": 0,
        "pose_guider": 0,
        "audio_projection": _count(parts["audio_projection"]),
        "audio_adapter": _count(parts["audio_adapter"]),
    }
    trainee.pose_guider.conv_in.weight.requires_grad_(True)
    with pytest.raises(MmgtError, match="1 parameters trainable that should be frozen"):
        check_video_freeze(trainee)


def test_audio_lr_puts_exactly_the_audio_modules_in_their_own_group():
    video_cfg = load_config(Stage2Train, overrides=["step=video"])
    trainee = build_trainee(video_cfg, _video_parts())
    groups = build_optimizer(parameter_groups(trainee, 1e-3), "adamw", 1e-4).param_groups
    audio = {id(p) for m in (trainee.audio_projection, trainee.audio_adapter) for p in m.parameters()}
    assert [g["lr"] for g in groups] == [1e-4, 1e-3]
    assert {id(p) for p in groups[1]["params"]} == audio
    rest = {id(p) for p in groups[0]["params"]}
    assert rest.isdisjoint(audio) and rest == {id(p) for p in trainee.parameters() if p.requires_grad} - audio
    assert len(rest) > 0  # the motion modules
    # Unset: one group at the base LR (the spec).
    single = build_optimizer(parameter_groups(trainee, None), "adamw", 1e-4).param_groups
    assert len(single) == 1 and single[0]["lr"] == 1e-4
    assert sum(p.numel() for p in single[0]["params"]) == sum(p.numel() for g in groups for p in g["params"])


def _video_inputs(seed: int = 3, b: int = 2, f: int = 3):
    g = torch.Generator().manual_seed(seed)
    masks = [torch.rand(b * f, 3, s, s, generator=g) for s in (8, 4, 2, 1)]
    return {
        "latents": torch.randn(b, 4, f, 8, 8, generator=g),
        "ref_latents": torch.randn(b, 4, 8, 8, generator=g),
        "clip_embeds": torch.randn(b, 1, 64, generator=g),
        "pose_images": torch.rand(b * f, 3, 64, 64, generator=g),
        "audio": torch.randn(b, f, 5, 1, 81, generator=g),
        "branch_masks": masks,
    }


def _nonzero_adapters(trainee, seed: int = 5):
    """Give the zero-initialised temporal/audio outputs random values so they affect (and are tested by) the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (*trainee.audio_adapter.parameters(), *trainee.unet.parameters()):
            if p.requires_grad and not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


def _count_forwards(module, calls: list, tag: int) -> None:
    """Record every run of ``module.forward`` (forward hooks do not fire when checkpointing recomputes)."""
    forward = module.forward
    module.forward = lambda *args, **kwargs: calls.append(tag) or forward(*args, **kwargs)


def test_gradient_checkpointing_changes_nothing():
    results = []
    for flag in (False, True):
        cfg = load_config(
            Stage2Train, overrides=["step=video", f"gradient_checkpointing={flag}", "objective.image_drop_prob=0.3"]
        )
        # With generator seed 1 the dropout draws are (0.19, 0.42): sample 0 dropped, sample 1 kept (both paths).
        trainee = build_trainee(cfg, _video_parts())
        _nonzero_adapters(trainee)
        trainee.train()
        calls = []
        _count_forwards(trainee.unet.up_blocks[-1].resnets[0], calls, 1)
        _count_forwards(trainee.reference_unet.up_blocks[0].resnets[0], calls, 2)
        losses = stage2_loss(
            trainee,
            make_stage2_scheduler(),
            _video_inputs(),
            torch.Generator().manual_seed(1),
            cfg,
            torch.device("cpu"),
        )
        losses["loss"].backward()
        grads = {n: p.grad.clone() for n, p in trainee.named_parameters() if p.requires_grad}
        results.append((losses["loss"].item(), grads, calls.count(1), calls.count(2)))
    (loss_a, grads_a, unet_a, ref_a), (loss_b, grads_b, unet_b, ref_b) = results
    # Checkpointing is really on: a UNet block after the motion modules runs again in backward (the frozen
    # ReferenceNet, with nothing to differentiate, need not).
    assert unet_b == 2 * unet_a and ref_a == ref_b == 1
    assert loss_a == loss_b
    assert grads_a.keys() == grads_b.keys() and any(g.abs().sum() > 0 for g in grads_a.values())
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-5, atol=1e-7, msg=name)


@torch.no_grad()
def test_condition_dropout_removes_exactly_the_dropped_conditions():
    cfg = load_config(Stage2Train, overrides=["step=video"])
    trainee = build_trainee(cfg, _video_parts()).eval()
    _nonzero_adapters(trainee)
    x = _video_inputs()
    noisy, t = x["latents"], torch.tensor([300, 700])

    def run(inputs, keep_image, keep_audio):
        keep_image, keep_audio = torch.tensor(keep_image), torch.tensor(keep_audio)
        return trainee(
            noisy,
            t,
            inputs["ref_latents"],
            inputs["clip_embeds"],
            keep_image,
            inputs["pose_images"],
            inputs["audio"],
            keep_audio,
            inputs["branch_masks"],
        )

    other = {
        **x,
        "ref_latents": torch.randn(2, 4, 8, 8),
        "clip_embeds": torch.randn(2, 1, 64),
        "audio": torch.randn(2, 3, 5, 1, 81),
    }
    both = run(x, [True, False], [True, False])
    # Sample 1 dropped image and audio: its prediction ignores its reference, CLIP and audio entirely...
    torch.testing.assert_close(both[1], run(other, [True, False], [True, False])[1], rtol=0, atol=0)
    # ... while sample 0 (kept) depends on them.
    assert not torch.allclose(both[0], run(other, [True, False], [True, False])[0])
    # Splitting the batch by dropout keeps every sample's own result and order.
    all_kept = run(x, [True, True], [True, False])
    torch.testing.assert_close(both[0], all_kept[0], rtol=1e-5, atol=1e-6)
    none_kept = run(x, [False, False], [True, False])
    torch.testing.assert_close(both[1], none_kept[1], rtol=1e-5, atol=1e-6)


def test_missing_inputs_fail_with_the_folder_named(synth_dataset, tmp_path, image_export):
    with pytest.raises(ModelFolderError, match=r"vae \(the <run>/final folder of `mmgt train vae`\)"):
        main(_cfg(synth_dataset, tmp_path, "image", "novae", 1, ["vae=null"]))
    with pytest.raises(MmgtError, match="init_from must name the image step"):
        video_step_components(_cfg(synth_dataset, tmp_path, "video", "noinit", 1, ["init_from=null"]), MEL_SPEC)
    with pytest.raises(ModelFolderError, match=f"{tmp_path}: not an image-step export, missing unet, reference_unet"):
        video_step_components(_cfg(synth_dataset, tmp_path, "video", "bad", 1, [f"init_from={tmp_path}"]), MEL_SPEC)
    with pytest.raises(MmgtError, match="step must be one of"):
        main(_cfg(synth_dataset, tmp_path, "image", "badstep", 1, ["step=audio"]))


def test_lip_loss_weights_upweight_exactly_the_lip_mask():
    b, f, h, w = 2, 3, 4, 4
    lips = torch.zeros(b * f, h, w)
    lips[4, 1, 2] = 1.0  # sample 1, frame 1 (b-major rows), one latent pixel
    lips[0, 0, 0] = 0.5
    masks = [torch.stack([1 - lips, torch.zeros_like(lips), lips], dim=1), torch.zeros(b * f, 3, 2, 2)]
    weights = lip_loss_weights(masks, torch.Size((b, 4, f, h, w)), 9.0)
    assert weights.shape == (b, 1, f, h, w)
    assert weights[1, 0, 1, 1, 2] == 10.0 and weights[0, 0, 0, 0, 0] == 5.5
    assert weights.sum() == b * f * h * w + 9.0 * 1.5  # 1 everywhere else
    assert lip_loss_weights(masks, torch.Size((b, 4, f, h, w)), 0.0) is None
    assert lip_loss_weights(None, torch.Size((b, 4, f, h, w)), 9.0) is None
    with pytest.raises(MmgtError, match="lip mask"):
        lip_loss_weights(masks, torch.Size((b, 4, f, 8, 8)), 9.0)


def test_region_loss_weights_are_area_shares_of_the_boxes():
    b, f, h, w = 1, 2, 2, 2
    regions = torch.zeros(b, f, 8, 8)  # pixels; latents are 4x smaller here
    regions[0, 1, :4, :4] = 1.0  # frame 1: the whole top-left latent pixel
    regions[0, 1, 4:6, 4:8] = 1.0  # ... and half of the bottom-right one
    weights = region_loss_weights(regions, torch.Size((b, 4, f, h, w)), 4.0)
    assert weights.shape == (b, 1, f, h, w)
    assert torch.equal(weights[0, 0, 0], torch.ones(2, 2))
    assert torch.equal(weights[0, 0, 1], torch.tensor([[5.0, 1.0], [1.0, 3.0]]))
    assert region_loss_weights(regions, torch.Size((b, 4, f, h, w)), 0.0) is None
    assert region_loss_weights(None, torch.Size((b, 4, f, h, w)), 4.0) is None
    with pytest.raises(MmgtError, match="do not fit"):
        region_loss_weights(regions, torch.Size((b, 4, f, 3, 3)), 4.0)


def test_lip_and_region_weights_add_their_extras():
    b, f, h, w = 1, 1, 2, 2
    lips = torch.zeros(b * f, h, w)
    lips[0, 0, 0] = 1.0  # the top-left latent pixel is lips ...
    masks = [torch.stack([1 - lips, torch.zeros_like(lips), lips], dim=1)]
    regions = torch.zeros(b, f, 8, 8)
    regions[0, 0, :4, :8] = 1.0  # ... and the whole top row is inside a face box
    shape = torch.Size((b, 4, f, h, w))
    weights = latent_loss_weights(masks, regions, shape, 9.0, 4.0)
    assert torch.equal(weights[0, 0, 0], torch.tensor([[14.0, 5.0], [1.0, 1.0]]))  # 1 + 9 + 4, 1 + 4, 1, 1
    assert torch.equal(latent_loss_weights(masks, regions, shape, 9.0, 0.0), lip_loss_weights(masks, shape, 9.0))
    assert torch.equal(latent_loss_weights(masks, regions, shape, 0.0, 4.0), region_loss_weights(regions, shape, 4.0))
    assert latent_loss_weights(masks, regions, shape, 0.0, 0.0) is None
    assert latent_loss_weights(None, None, shape, 9.0, 4.0) is None


def test_region_loss_weight_reweights_the_mse_and_is_off_at_0():
    scheduler, cpu = make_stage2_scheduler(), torch.device("cpu")
    parts = _video_parts()
    inputs = _video_inputs(b=2, f=3)
    inputs["regions"] = torch.zeros(2, 3, 64, 64)
    inputs["regions"][:, :, 16:40, 24:40] = 1.0  # a face box
    losses = {}
    for weight in (0.0, 9.0):
        cfg = load_config(Stage2Train, overrides=["step=video", f"objective.region_loss_weight={weight}"])
        trainee = build_trainee(cfg, parts)
        _nonzero_adapters(trainee)
        losses[weight] = stage2_loss(trainee, scheduler, inputs, torch.Generator().manual_seed(1), cfg, cpu)
    without = {k: v for k, v in inputs.items() if k != "regions"}
    cfg0 = load_config(Stage2Train, overrides=["step=video"])
    trainee = build_trainee(cfg0, parts)
    _nonzero_adapters(trainee)
    plain = stage2_loss(trainee, scheduler, without, torch.Generator().manual_seed(1), cfg0, cpu)
    assert losses[0.0]["loss"] == plain["loss"]  # weight 0: exactly the spec's loss, regions or not
    assert losses[9.0]["mse"] == plain["mse"]  # the logged MSE stays the plain one ...
    assert not torch.isclose(losses[9.0]["loss"], plain["loss"], rtol=1e-4)  # ... the optimised loss is reweighted


# ---------------------------------------------------------------------------------------------------------------------
# The lip-sync term of the video step (objective.sync_loss_weight, beyond the paper)
# ---------------------------------------------------------------------------------------------------------------------
def _sync_setup(weight: float, f: int = 6):
    """A video-step trainee, its inputs at 64 px with mouth squares and expert audio, and a frozen random expert."""
    cfg = load_config(
        Stage2Train, overrides=["step=video", f"objective.sync_loss_weight={weight}", "objective.audio_drop_prob=0"]
    )
    parts = _video_parts()
    trainee = build_trainee(cfg, parts)
    _nonzero_adapters(trainee)
    torch.manual_seed(1)
    expert = LipSyncExpert.from_preset("tiny")
    sync = SyncTerm(expert, parts["vae"], clips=None, size=64)
    inputs = _video_inputs(b=1, f=f)
    g = torch.Generator().manual_seed(4)
    square = torch.tensor([30.0, 40.0, 0.98, 0.2, -0.2, 0.98, 6.0])  # a slightly rolled head
    inputs["sync_squares"] = (square + torch.randn(f, 7, generator=g) * 0.05).unsqueeze(0)  # (1, F, 7)
    inputs["sync_audio"] = torch.randn(1, f, 81, generator=g)
    return cfg, trainee, sync, inputs


def test_sync_term_is_off_at_weight_0_and_alpha_bar_weighted_otherwise():
    scheduler, cpu = make_stage2_scheduler(), torch.device("cpu")
    cfg, trainee, sync, inputs = _sync_setup(0.0)
    plain = stage2_loss(trainee, scheduler, inputs, torch.Generator().manual_seed(1), cfg, cpu)
    off = stage2_loss(trainee, scheduler, inputs, torch.Generator().manual_seed(1), cfg, cpu, sync=sync)
    assert off.keys() == plain.keys() == {"loss", "mse"} and off["loss"] == plain["loss"]  # exactly the spec's

    cfg_on, *_ = _sync_setup(0.5)
    on = stage2_loss(trainee, scheduler, inputs, torch.Generator().manual_seed(1), cfg_on, cpu, sync=sync)
    t = torch.randint(0, 1000, (1,), generator=torch.Generator().manual_seed(1))  # the step's first draw
    alpha_bar = float(scheduler.alphas_cumprod[t])
    assert on["mse"] == plain["mse"] and on["sync"] > 0
    torch.testing.assert_close(on["loss"], plain["loss"] + 0.5 * alpha_bar * on["sync"], rtol=1e-5, atol=1e-7)


def test_sync_gradient_reaches_the_unet_and_the_expert_stays_frozen():
    scheduler, cpu = make_stage2_scheduler(), torch.device("cpu")
    cfg, trainee, sync, inputs = _sync_setup(1.0)
    before = {k: v.clone() for k, v in sync.expert.state_dict().items()}
    trainee.train()
    with_sync = stage2_loss(trainee, scheduler, inputs, torch.Generator().manual_seed(2), cfg, cpu, sync=sync)
    plain = stage2_loss(trainee, scheduler, inputs, torch.Generator().manual_seed(2), cfg, cpu)
    (with_sync["loss"] - plain["loss"]).backward()  # the sync term's gradient alone
    grads = {n: p.grad for n, p in trainee.named_parameters() if p.requires_grad}
    motion = [g for n, g in grads.items() if "motion_modules" in n and g is not None]
    audio = [g for n, g in grads.items() if n.startswith(("audio_adapter", "audio_projection")) and g is not None]
    assert motion and any(g.abs().sum() > 0 for g in motion)  # reaches the temporal layers of the UNet ...
    assert audio and any(g.abs().sum() > 0 for g in audio)  # ... and the audio path
    assert all(p.grad is None and not p.requires_grad for p in sync.expert.parameters())  # the expert is frozen
    assert all(p.grad is None for p in sync.vae.parameters())
    assert not sync.expert.training
    assert all(torch.equal(v, sync.expert.state_dict()[k]) for k, v in before.items())


def test_video_step_with_the_sync_loss_resumes_exactly(synth_dataset, image_export, tmp_path):
    out, image_final = image_export
    torch.manual_seed(0)
    LipSyncExpert.from_preset("tiny").save_pretrained(tmp_path / "expert")
    extra = [
        f"init_from={image_final}",
        "data.num_frames=6",
        "objective.sync_loss_weight=0.5",
        f"objective.sync_expert={tmp_path / 'expert'}",
    ]
    main(_cfg(synth_dataset, out, "video", "sync_straight", 2, extra))
    with (out / "stage2" / "sync_straight" / "train_log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2] and all(0 < float(r["sync"]) < 20 for r in rows)
    main(_cfg(synth_dataset, out, "video", "sync_resumed", 1, extra))
    main(_cfg(synth_dataset, out, "video", "sync_resumed", 2, extra), resume=True)
    assert _losses(out / "stage2" / "sync_resumed") == _losses(out / "stage2" / "sync_straight")
    with pytest.raises(MmgtError, match="objective.sync_expert"):
        main(_cfg(synth_dataset, out, "video", "sync_bad", 1, [*extra[:3], "objective.sync_expert=null"]))
    with pytest.raises(ConfigError, match="video step only"):
        main(_cfg(synth_dataset, out, "image", "sync_img", 1, [*extra[1:3], f"vae={image_final / 'vae'}"]))

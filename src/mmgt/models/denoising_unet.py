"""The stage-2 denoising UNet assembled from diffusers parts, plus the per-call wiring (spec §5.1-5.6).

Construction composes: SD-1.5 ``UNet2DConditionModel`` + AnimateDiff ``MotionAdapter`` -> ``UNetMotionModel``
(``from_unet2d``). mmgt's additions enter through the extension ladder of STYLE §4.6: reference and MM-HAA as attention
processors (the released MM-HAA placement: forward hooks on the spatial transformers, see
:mod:`mmgt.models.audio_attention`), the pose residual as a forward hook on ``conv_in`` that lives for one call,
per-frame motion-module statistics as a GroupNorm subclass holding the same parameters (:func:`set_motion_norm`).

Frame order everywhere is b-major: row ``b * F + f`` of a (B*F, ...) tensor is frame f of sample b, which is how
``UNetMotionModel.forward`` flattens (B, C, F, H, W) before ``conv_in``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Literal

import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from torch import nn

from mmgt.errors import MmgtError
from mmgt.models.attention_inputs import AttnInputs, match_batch
from mmgt.models.audio_attention import AudioAttentionAdapter, install_audio_processors
from mmgt.models.reference_attention import install_reference_readers, install_reference_writers

MOTION = "motion_modules"
MOTION_NORMS = ("pooled", "per_frame")  # motion-module GroupNorm statistics (set_motion_norm)


def build_denoising_unet(
    unet2d: UNet2DConditionModel, motion_adapter: MotionAdapter | None = None, motion_norm: str = "pooled"
) -> UNetMotionModel:
    """Inflate a 2D SD UNet with AnimateDiff motion modules (every 2D weight is copied unchanged).

    Args:
        unet2d: the image-step denoising UNet (SD-1.5 layout).
        motion_adapter: AnimateDiff motion modules; ``None`` creates fresh ones that start as an exact identity.
        motion_norm: the motion modules' input GroupNorm statistics (:func:`set_motion_norm`).
    """
    if motion_adapter is not None and motion_adapter.config.motion_norm_num_groups != unet2d.config.norm_num_groups:
        # from_unet2d builds the temporal GroupNorms with the UNet's group count; a different count in the adapter
        # would load without error (same shapes) and silently change the maths.
        raise MmgtError(
            f"motion adapter uses {motion_adapter.config.motion_norm_num_groups} norm groups, the UNet "
            f"{unet2d.config.norm_num_groups}"
        )
    unet = UNetMotionModel.from_unet2d(unet2d, motion_adapter)
    if motion_adapter is None:
        zero_init_motion_modules(unet)
    set_motion_norm(unet, motion_norm)
    return unet


def zero_init_motion_modules(model: nn.Module) -> nn.Module:
    """Zero every temporal transformer's ``proj_out`` so it returns its input (AnimateDiff's init, not diffusers')."""
    for module in model.modules():
        if isinstance(module, AnimateDiffTransformer3D):
            nn.init.zeros_(module.proj_out.weight)
            nn.init.zeros_(module.proj_out.bias)
    return model


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics are taken per frame of a (B, C, F, H, W) input; other inputs as nn.GroupNorm.

    Official code: the AnimateDiff motion module (and the release) normalises each frame on its own before the
    temporal attention; diffusers' ``AnimateDiffTransformer3D`` calls its ``norm`` on the whole (B, C, F, H, W)
    window, which pools the statistics over the frames (about 0.75 % different at SD-1.5's first motion module).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            return super().forward(x)
        b, c, f, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * f, c, h, w)  # (B*F, C, H, W)
        return super().forward(frames).reshape(b, f, c, h, w).transpose(1, 2)


def set_motion_norm(unet: nn.Module, norm: str) -> nn.Module:
    """Choose how every motion module's input GroupNorm takes its statistics: ``"pooled"`` or ``"per_frame"``.

    ``"pooled"``: over all frames of the window (diffusers' behaviour; the bundled demo and mmgt folders saved before
    this option were trained so). ``"per_frame"``: each frame alone (AnimateDiff's original and the release). The norm
    module is swapped for one of the other class holding the SAME parameters, so the state dict, the optimiser's
    parameters and the saved files are unchanged; only the statistics differ.
    """
    if norm not in MOTION_NORMS:
        raise MmgtError(f"motion_norm must be one of {MOTION_NORMS}, got {norm!r}")
    cls = FrameGroupNorm if norm == "per_frame" else nn.GroupNorm
    for module in unet.modules():
        if isinstance(module, AnimateDiffTransformer3D) and type(module.norm) is not cls:
            old = module.norm
            new = cls(old.num_groups, old.num_channels, eps=old.eps, affine=old.affine, device="meta")
            new.weight, new.bias = old.weight, old.bias  # the same Parameter objects
            new.train(old.training)
            module.norm = new
    return unet


def motion_norm(unet: nn.Module) -> str:
    """``"per_frame"`` or ``"pooled"``: what :func:`set_motion_norm` set on ``unet`` (``"pooled"`` without motion)."""
    kinds = {
        "per_frame" if isinstance(m.norm, FrameGroupNorm) else "pooled"
        for m in unet.modules()
        if isinstance(m, AnimateDiffTransformer3D)
    }
    if len(kinds) > 1:
        raise MmgtError("the UNet mixes pooled and per-frame motion-module norms; call set_motion_norm")
    return kinds.pop() if kinds else "pooled"


def install_stage2_processors(
    unet: nn.Module, reference_unet: nn.Module | None = None, audio_adapter: AudioAttentionAdapter | None = None
) -> None:
    """Reference writers on the ReferenceNet; reference readers (+ MM-HAA on the adapter's layers) on the denoiser.

    Raises:
        MmgtError: a reader has no writer of the same name (the two UNets differ in architecture).
    """
    readers = install_reference_readers(unet)
    if reference_unet is not None:
        writers = set(install_reference_writers(reference_unet))
        orphans = [name for name in readers if name not in writers]
        if orphans:
            raise MmgtError(f"ReferenceNet lacks {len(orphans)} self-attention layers of the UNet, e.g. {orphans[0]}")
    if audio_adapter is not None:
        install_audio_processors(unet, audio_adapter)


@contextmanager
def pose_residual(unet: nn.Module, pose_features: torch.Tensor | None) -> Iterator[None]:
    """Add pose-guider features to ``unet.conv_in``'s output for the calls made inside this block (ladder rung 3).

    Args:
        unet: the denoising UNet.
        pose_features: (B*F, C, h, w) PoseGuider output, frames b-major; under CFG the UNet batch may be a multiple
            of B*F (the features are shared by both branches and tiled as whole groups). ``None`` adds nothing.
    """
    if pose_features is None:
        yield
        return

    def add(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        features = match_batch(pose_features, output.shape[0], "pose features")
        if features.shape[1:] != output.shape[1:]:
            raise MmgtError(
                f"pose features {tuple(pose_features.shape)} do not match conv_in output {tuple(output.shape)}"
            )
        return output + features.to(output.dtype)  # Paper figure: E_P(V_P) is added to the noisy latent's features

    handle = unet.conv_in.register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()


def denoise(
    unet: UNetMotionModel | UNet2DConditionModel,
    latents: torch.Tensor,
    timestep: torch.Tensor | int,
    clip_embeds: torch.Tensor,
    pose_features: torch.Tensor | None,
    attn_inputs: AttnInputs,
) -> torch.Tensor:
    """One denoising-UNet call with the pose residual and the per-call attention inputs wired in.

    Args:
        unet: a UNetMotionModel (video step, inference) or a 2D UNet (image step; frames run independently).
        latents: (B, C, F, H, W) noisy latents.
        timestep: a scalar or (B,) diffusion timesteps.
        clip_embeds: (B, 1, D) CLIP image embeddings (zeros for the unconditional branch).
        pose_features: (B*F, C0, H, W) PoseGuider output, or ``None``.
        attn_inputs: reference features (mode "read"), audio tokens, masks, scales; ``num_frames`` must equal F.

    Returns:
        (B, C, F, H, W) the UNet prediction (v under the spec's v-prediction).
    """
    b, c, f, h, w = latents.shape
    if attn_inputs.num_frames != f:
        raise MmgtError(f"attn_inputs.num_frames={attn_inputs.num_frames} but the latents have {f} frames")
    context = clip_embeds.repeat_interleave(f, dim=0)  # (B*F, 1, D): UNetMotionModel does not repeat the context
    kwargs = {"mmgt": attn_inputs}
    with pose_residual(unet, pose_features):
        if isinstance(unet, UNetMotionModel):
            return unet(latents, timestep, encoder_hidden_states=context, cross_attention_kwargs=kwargs).sample
        frames = latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)  # (B*F, C, H, W), b-major
        if torch.is_tensor(timestep) and timestep.ndim == 1:
            timestep = timestep.repeat_interleave(f)
        out = unet(frames, timestep, encoder_hidden_states=context, cross_attention_kwargs=kwargs).sample
        return out.reshape(b, f, -1, h, w).permute(0, 2, 1, 3, 4)


def denoise_with_reference_dropout(
    unet: UNetMotionModel | UNet2DConditionModel,
    latents: torch.Tensor,
    timesteps: torch.Tensor | int,
    clip_embeds: torch.Tensor,
    pose_features: torch.Tensor | None,
    inputs: AttnInputs,
    keep: torch.Tensor,
) -> torch.Tensor:
    """:func:`denoise` where the samples with ``keep`` False skip the reference ("skip the ReferenceNet", spec §5.5).

    The kept samples run in ``"read"`` mode on their rows of ``inputs.reference_features``; the others run as a
    group of their own in ``"off"`` mode, so no reference feature reaches them. The UNet treats samples independently,
    so splitting the batch changes nothing else. Training uses it for image dropout; CFG sampling for the
    unconditional branch (its row of ``keep`` False).

    Args:
        unet: as for :func:`denoise`.
        latents: (B, C, F, h, w) noisy latents.
        timesteps: a scalar, or (B,) timesteps (split with the batch).
        clip_embeds: (B, 1, D) CLIP embeddings (zeros where the image is dropped, if the caller wants that).
        pose_features: (B*F, C0, h, w) PoseGuider output, frames b-major (row ``b * F + f``), or (F, C0, h, w)
            shared by every sample, or ``None``.
        inputs: the attention inputs of the whole batch: ``reference_features`` layer -> (B, N, C) (rows of dropped
            samples are never read), ``audio_tokens`` (B*F, T, D) b-major, ``branch_masks`` per level (B*F, R, h, w)
            b-major; a per-frame tensor with F rows instead of B*F is shared by every sample. ``mode`` is ignored
            (each group sets its own); ``branch_weights`` and ``num_frames`` (= F) apply to both groups.
        keep: (B,) bool, True = the sample reads the reference.

    Returns:
        (B, C, F, h, w) the UNet prediction, in batch order.
    """
    b, f = latents.shape[0], latents.shape[2]
    if keep.shape != (b,):
        raise MmgtError(f"keep must be ({b},) for a batch of {b}, got {tuple(keep.shape)}")

    def frame_rows(tensor: torch.Tensor | None, frames: torch.Tensor) -> torch.Tensor | None:
        return tensor[frames] if tensor is not None and tensor.shape[0] == b * f else tensor  # else shared or None

    per_sample_t = torch.is_tensor(timesteps) and timesteps.ndim == 1
    preds, order = [], []
    for group_keeps in (True, False):
        rows = torch.nonzero(keep == group_keeps).flatten()
        if len(rows) == 0:
            continue
        frames = (rows[:, None] * f + torch.arange(f, device=rows.device)).flatten()  # rows of (B*F) tensors
        group = replace(
            inputs,
            mode="read" if group_keeps else "off",
            reference_features={k: v[rows] for k, v in inputs.reference_features.items()} if group_keeps else {},
            audio_tokens=frame_rows(inputs.audio_tokens, frames),
            branch_masks=None if inputs.branch_masks is None else [frame_rows(m, frames) for m in inputs.branch_masks],
        )
        t = timesteps[rows] if per_sample_t else timesteps
        preds.append(denoise(unet, latents[rows], t, clip_embeds[rows], frame_rows(pose_features, frames), group))
        order.append(rows)
    return torch.cat(preds)[torch.argsort(torch.cat(order))]  # back to batch order, (B, C, F, h, w)


def encode_reference(
    reference_unet: UNet2DConditionModel,
    ref_latents: torch.Tensor,
    clip_embeds: torch.Tensor,
    attn_inputs: AttnInputs,
) -> dict[str, torch.Tensor]:
    """Run the ReferenceNet once, at timestep 0, in write mode; fills ``attn_inputs.reference_features``.

    Args:
        reference_unet: the ReferenceNet with writer processors installed.
        ref_latents: (B_ref, C, H, W) VAE latents of the reference image (already scaled).
        clip_embeds: (B_ref, 1, D) CLIP embeddings (for CFG run [zeros; embeds] with B_ref = 2B).
        attn_inputs: its ``reference_features`` dict receives one (B_ref, N, C) tensor per self-attention layer.

    Returns:
        The filled ``reference_features`` dict (the same object as ``attn_inputs.reference_features``).
    """
    write = replace(attn_inputs, mode="write", num_frames=1)  # shares the reference_features dict
    timestep = torch.zeros(ref_latents.shape[0], dtype=torch.long, device=ref_latents.device)
    reference_unet(ref_latents, timestep, encoder_hidden_states=clip_embeds, cross_attention_kwargs={"mmgt": write})
    return write.reference_features


def freeze_for_step(
    unet: nn.Module,
    reference_unet: nn.Module | None,
    pose_guider: nn.Module | None,
    audio_adapter: nn.Module | None,
    audio_projection: nn.Module | None,
    step: Literal["image", "video"],
) -> None:
    """Set ``requires_grad`` for a stage-2 training step (spec §5.5, §5.6); the VAE and CLIP stay frozen elsewhere.

    image: denoising-UNet spatial weights (not motion modules), ReferenceNet except its last up block and output
    head, pose guider. video: motion modules, audio adapter, audio projection. Everything else is frozen.
    """
    if step not in ("image", "video"):
        raise MmgtError(f"step must be 'image' or 'video', got {step!r}")
    for module in (unet, reference_unet, pose_guider, audio_adapter, audio_projection):
        if module is not None:
            module.requires_grad_(False)
    for name, param in unet.named_parameters():
        is_motion = MOTION in name.split(".")
        param.requires_grad_(is_motion if step == "video" else not is_motion)
    if step == "video":
        for module in (audio_adapter, audio_projection):
            if module is not None:
                module.requires_grad_(True)
        return
    if pose_guider is not None:
        pose_guider.requires_grad_(True)
    if reference_unet is not None:
        # Official code: the ReferenceNet's last up block (up_blocks.3 in SD-1.5) stays frozen in the image step.
        # mmgt also freezes conv_norm_out/conv_out: the ReferenceNet output is never used, so they get no gradient.
        last_up = f"up_blocks.{len(reference_unet.up_blocks) - 1}."
        for name, param in reference_unet.named_parameters():
            param.requires_grad_(not name.startswith((last_up, "conv_norm_out.", "conv_out.")))

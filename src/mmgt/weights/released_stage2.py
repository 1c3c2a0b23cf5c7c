"""The authors' released stage-2 checkpoint (``net-32500.pth``) -> mmgt's stage-2 components, by explicit rules.

The checkpoint is the release's whole training wrapper (spec §7): keys ``reference_unet.*``, ``denoising_unet.*``
(its 2D part, the AnimateDiff "Vanilla" motion modules and the audio modules ``down_blocks.i.audio_modules.j``),
``pose_guider.*`` and ``audioproj.*``. Every key is mapped by one of the rules below, or the conversion fails; every
tensor's shape is compared with the mmgt component built from the ``released`` preset (on the meta device, so nothing
is allocated); every mmgt tensor must receive a value, except the two documented fills. Positional encodings, which
mmgt recomputes, are compared with the recomputed values instead of being dropped unseen.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from accelerate import init_empty_weights
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
from torch import nn

from mmgt.constants import BRANCHES
from mmgt.errors import ModelFolderError
from mmgt.models.audio_attention import AudioAttentionAdapter
from mmgt.models.audio_projection import AudioProjection
from mmgt.models.denoising_unet import set_motion_norm
from mmgt.models.pose_guider import PoseGuider
from mmgt.models.stage2_presets import preset

STAGE2_CHECKPOINT = "stage_2/process_2/net-32500.pth"
COMPONENTS = ("reference_unet", "unet", "pose_guider", "audio_projection", "audio_adapter")
PREFIXES = {  # release wrapper prefix -> mmgt component (audio modules are split off the denoising UNet below)
    "reference_unet.": "reference_unet",
    "denoising_unet.": "unet",
    "pose_guider.": "pose_guider",
    "audioproj.": "audio_projection",
}
PE_TOLERANCE = 1e-3  # stored vs recomputed sinusoids in [-1, 1]: passes fp16 storage (error <= 4.9e-4), not a mistake
# The release's ReferenceNet has no output head (its forward never computes one); mmgt's UNet2DConditionModel does
# and runs it (the output is discarded), so it takes the denoising UNet's, the same SD-1.5-shaped layers.
REFERENCE_HEAD = ("conv_norm_out.weight", "conv_norm_out.bias", "conv_out.weight", "conv_out.bias")

Rule = tuple[re.Pattern, str, str]  # (source pattern, target template, kind)
_AUDIO = r"down_blocks\.(\d+)\.audio_modules\.(\d+)\."
_BRANCH_OF = {"full": BRANCHES[0], "face": BRANCHES[1], "lip": BRANCHES[2]}  # zero_conv_<name> -> branch


def _rules() -> dict[str, list[Rule]]:
    """Per component: (pattern on the key after its prefix, target key template, kind); the first match wins.

    Kinds: ``copy`` (same tensor), ``conv1x1`` ((C_out, C_in, 1, 1) conv -> (C_out, C_in) linear), ``pe`` (a
    positional encoding: compared with mmgt's recomputed buffer, not copied).
    """
    mm = r"((?:down_blocks|up_blocks)\.\d+|mid_block)\.motion_modules\.(\d+)\.temporal_transformer\."
    tb = mm + r"transformer_blocks\.(\d+)\."
    audio = [  # -> audio_adapter "layers.<k>." (k: the layer of down_blocks.i.attentions.j); {2}, {3}: after i, j
        (_AUDIO + r"norm\.(weight|bias)$", "norm_in.{2}", "copy"),
        (_AUDIO + r"(proj_in|proj_out)\.weight$", "{2}.weight", "conv1x1"),
        (_AUDIO + r"(proj_in|proj_out)\.bias$", "{2}.bias", "copy"),
        (_AUDIO + r"transformer_blocks\.0\.attn1\.(.+)$", "self_attn.{2}", "copy"),
        (_AUDIO + r"transformer_blocks\.0\.(norm[123])\.(weight|bias)$", "{2}.{3}", "copy"),
        (_AUDIO + r"transformer_blocks\.0\.ff\.(.+)$", "ff.{2}", "copy"),
        # Official code: attn2_0 / attn2_1 / attn2_2 read the full / face / lip ("body") masks = mmgt's branches.
        *(
            (_AUDIO + rf"transformer_blocks\.0\.attn2_{i}\.(.+)$", f"branches.{branch}.attn.{{2}}", "copy")
            for i, branch in enumerate(BRANCHES)
        ),
        *(
            (_AUDIO + rf"transformer_blocks\.0\.zero_conv_{name}\.weight$", f"branches.{b}.adapter.weight", "conv1x1")
            for name, b in _BRANCH_OF.items()
        ),
        *(
            (_AUDIO + rf"transformer_blocks\.0\.zero_conv_{name}\.bias$", f"branches.{b}.adapter.bias", "copy")
            for name, b in _BRANCH_OF.items()
        ),
    ]
    out = "{0}.motion_modules.{1}.transformer_blocks.{2}."  # the diffusers block of a release block
    motion = [  # AnimateDiff "Vanilla" names -> diffusers' AnimateDiffTransformer3D names
        (mm + r"(norm|proj_in|proj_out)\.(weight|bias)$", "{0}.motion_modules.{1}.{2}.{3}", "copy"),
        (tb + r"attention_blocks\.[01]\.pos_encoder\.pe$", out + "pos_embed.pe", "pe"),  # one per attention
        (tb + r"attention_blocks\.0\.(.+)$", out + "attn1.{3}", "copy"),
        (tb + r"attention_blocks\.1\.(.+)$", out + "attn2.{3}", "copy"),
        (tb + r"norms\.0\.(weight|bias)$", out + "norm1.{3}", "copy"),
        (tb + r"norms\.1\.(weight|bias)$", out + "norm2.{3}", "copy"),
        (tb + r"ff_norm\.(weight|bias)$", out + "norm3.{3}", "copy"),
        (tb + r"ff\.(.+)$", out + "ff.{3}", "copy"),
    ]
    same = [(r"(.+)$", "{0}", "copy")]  # diffusers names as they are (spec §7, verified)
    return {
        "audio_adapter": [(re.compile(p), t, k) for p, t, k in audio],
        "unet": [(re.compile(p), t, k) for p, t, k in motion + same],
        "reference_unet": [(re.compile(p), t, k) for p, t, k in same],
        "pose_guider": [
            (re.compile(p), t, k)
            for p, t, k in [
                (r"(conv_in|conv_out)\.(weight|bias)$", "{0}.{1}", "copy"),
                # Official code: blocks is one flat list [conv, strided conv] per stage; mmgt names the pair.
                (r"blocks\.(\d+)\.(weight|bias)$", "blocks.{half}.{parity}.{1}", "copy"),
            ]
        ],
        "audio_projection": [
            (re.compile(p), t, k)
            for p, t, k in [
                (r"proj1\.(weight|bias)$", "mlp.0.{0}", "copy"),
                (r"proj2\.(weight|bias)$", "mlp.2.{0}", "copy"),
                (r"proj3\.(weight|bias)$", "mlp.4.{0}", "copy"),
                (r"norm\.(weight|bias)$", "norm.{0}", "copy"),
            ]
        ],
    }


RULES = _rules()


def build_skeleton(preset_name: str = "released") -> dict[str, nn.Module]:
    """The stage-2 components of a preset on the meta device (buffers real), without their weights.

    ``unet`` is the inflated UNetMotionModel with the preset's motion-module norm; ``audio_adapter`` sits on it.
    """
    cfg = preset(preset_name)
    with init_empty_weights(include_buffers=False):
        unet2d = UNet2DConditionModel(**cfg["unet"])
        unet = UNetMotionModel.from_unet2d(unet2d, MotionAdapter(**cfg["motion_adapter"]), load_weights=False)
        set_motion_norm(unet, cfg["denoising_unet"]["motion_norm"])
        modules = {
            "reference_unet": UNet2DConditionModel(**cfg["unet"]),
            "unet": unet,
            "pose_guider": PoseGuider(**{**cfg["pose_guider"], "out_channels": cfg["unet"]["block_out_channels"][0]}),
            "audio_projection": AudioProjection(**cfg["audio_projection"]),
            "audio_adapter": AudioAttentionAdapter.for_unet(unet, **cfg["audio_adapter"]),
        }
    return modules


def convert_stage2(
    state_dict: dict[str, torch.Tensor], preset_name: str = "released", skeleton: dict[str, nn.Module] | None = None
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, dict], list[str]]:
    """Convert the release's stage-2 wrapper state dict.

    Args:
        state_dict: ``net-32500.pth`` as :func:`mmgt.weights.released.read_checkpoint` returns it (no ``module.``).
        preset_name: the mmgt stage-2 preset whose components receive the weights (``released``; ``released_tiny``
            for the same network at test sizes).
        skeleton: :func:`build_skeleton` of that preset, if already built.

    Returns:
        (component -> mmgt state dict, component -> its config (``dict(module.config)``), dropped keys as
        "key: reason"). The state dicts load strictly into the preset's components.

    Raises:
        ModelFolderError: one line naming the unknown keys, wrong shapes and missing keys (counts and examples).
    """
    skeleton = skeleton or build_skeleton(preset_name)
    targets = {name: module.state_dict() for name, module in skeleton.items()}
    layers = {name: k for k, name in enumerate(skeleton["audio_adapter"].config.layer_names)}
    out: dict[str, dict[str, torch.Tensor]] = {name: {} for name in COMPONENTS}
    unknown, shapes, values, dropped, reported, encodings = [], [], [], [], set(), 0
    for key, value in state_dict.items():
        found = _map_key(key, layers)
        if found is None:
            unknown.append(key)
            continue
        component, target, kind = found
        want = targets[component].get(target)
        if want is None:
            unknown.append(key)
            continue
        tensor = _TRANSFORMS[kind](value, tuple(want.shape))
        if tensor is None:
            shapes.append(f"{key} {tuple(value.shape)} (mmgt {component}.{target} {tuple(want.shape)})")
            reported.add((component, target))  # named once, as a wrong shape, not again as missing
        elif kind == "pe":
            if not torch.allclose(tensor.float(), want.float(), rtol=0, atol=PE_TOLERANCE):
                values.append(f"{key} differs from the recomputed positional encoding")
            encodings += 1
        else:
            out[component][target] = tensor
    if encodings:
        dropped.append(
            f"denoising_unet.*.pos_encoder.pe ({encodings} buffers): the sinusoidal positional encodings mmgt "
            "recomputes (each compared with the recomputed values)"
        )
    _fill_recomputed(out, targets, dropped)
    missing = [f"{c}.{k}" for c in COMPONENTS for k in targets[c] if k not in out[c] and (c, k) not in reported]
    _raise_problems(unknown, shapes, values, missing)
    configs = {name: dict(module.config) for name, module in skeleton.items()}
    return out, configs, dropped


def _map_key(key: str, layers: dict[str, int]) -> tuple[str, str, str] | None:
    """(component, mmgt key, kind) for one release key, or None when no rule knows it."""
    prefix = next((p for p in PREFIXES if key.startswith(p)), None)
    if prefix is None:
        return None
    component, rest = PREFIXES[prefix], key[len(prefix) :]
    if component == "unet" and re.match(_AUDIO, rest):
        match = re.match(_AUDIO, rest)
        layer = layers.get(f"down_blocks.{match[1]}.attentions.{match[2]}")
        found = _apply(RULES["audio_adapter"], rest)
        if layer is None or found is None:
            return None
        return "audio_adapter", f"layers.{layer}.{found[0]}", found[1]
    found = _apply(RULES[component], rest)
    return None if found is None else (component, *found)


def _apply(rules: list[Rule], key: str) -> tuple[str, str] | None:
    """The first rule matching ``key``: (target key, kind)."""
    for pattern, template, kind in rules:
        match = pattern.match(key)
        if match:
            groups = match.groups()
            if "{half}" in template:  # pose guider: flat block n -> pair n // 2, conv (even) or down (odd)
                n = int(groups[0])
                return template.format(*groups, half=n // 2, parity="down" if n % 2 else "conv"), kind
            return template.format(*groups), kind
    return None


# kind -> (release tensor, mmgt shape) -> the tensor in mmgt's layout, or None when its shape does not fit.
_TRANSFORMS: dict[str, Callable[[torch.Tensor, tuple], torch.Tensor | None]] = {
    "copy": lambda t, shape: t if tuple(t.shape) == shape else None,
    "pe": lambda t, shape: t if tuple(t.shape) == shape else None,
    "conv1x1": lambda t, shape: t.flatten(1) if t.shape[2:] == (1, 1) and t.shape[:2] == shape else None,
}


def _fill_recomputed(out: dict, targets: dict, dropped: list[str]) -> None:
    """mmgt tensors the release does not store: recomputed encodings and the ReferenceNet's unused output head."""
    for key, value in targets["unet"].items():
        if key.endswith(".pos_embed.pe") and key not in out["unet"]:
            out["unet"][key] = value  # a real buffer of the skeleton: the recomputed sinusoids
    filled = [k for k in REFERENCE_HEAD if k not in out["reference_unet"] and k in out["unet"]]
    for key in filled:
        out["reference_unet"][key] = out["unet"][key]
    if filled:
        dropped.append(
            "reference_unet.conv_norm_out/conv_out: not in the release (its ReferenceNet has no output head); "
            "filled with the denoising UNet's, computed by mmgt and discarded"
        )


def _raise_problems(unknown: list[str], shapes: list[str], values: list[str], missing: list[str]) -> None:
    """One line naming every kind of problem (count and the first examples)."""
    parts = []
    kinds = (("unknown key", unknown), ("wrong shape", shapes), ("wrong value", values), ("missing key", missing))
    for what, items in kinds:
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            parts.append(f"{len(items)} {what}{'s' if len(items) > 1 else ''} ({', '.join(items[:3])}{more})")
    if parts:
        raise ModelFolderError(f"not the released MMGT stage-2 layout: {'; '.join(parts)}")

"""MM-HAA: motion-mask gated hierarchical audio attention (spec §5.1, §5.3), in two placements.

Figure flow (``position="attn2"``, mmgt's default), per selected transformer block (h: the block's normalised tokens,
CA: its CLIP cross-attention ``attn2``, A: audio tokens, m_r: branch r's mask at this layer's resolution, w_r: its
branch weight):

    out = CA(h, clip) + sum_r  w_r * Adapter_r( CrossAttn_r(CA(h, clip), A) * m_r )

The block adds ``out`` to its residual stream, as it does with any ``attn2`` output. The branches
(:data:`mmgt.constants.BRANCHES`) are ``global`` (mask 1 - lips), ``face_hands`` and ``lips``; each has its own
cross-attention (query dim C, context dim 768, ``num_heads`` heads) and its own zero-initialised C -> C adapter (a 1x1
conv on the h x w map = a linear on tokens). The mask scales the attention OUTPUT; there is no attention mask.

Released placement (``position="transformer_output"``, the ``released`` preset): a separate residual module on the
OUTPUT x of each spatial transformer ``down_blocks.i.attentions.j`` (after its self-attention, CLIP cross-attention
and FFN), before the motion module: x + proj_out(block(proj_in(GroupNorm(x)))), where the block is SA, the masked
branches and a GEGLU FFN at an inner width C_a (the block's INPUT width in the first module of a down block).

Weights live once, in :class:`AudioAttentionAdapter` (a MotionAdapter-like container saved with save_pretrained); the
processors and hooks only reference its modules, so ``unet.state_dict()`` keeps the plain UNetMotionModel keys.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from mmgt.constants import BRANCHES
from mmgt.errors import MmgtError
from mmgt.models.attention_inputs import AttnInputs, match_batch
from mmgt.models.reference_attention import PROCESSOR_SUFFIX, PassThroughAttnProcessor, install_processors

PLACEMENTS = {"down": ("down_blocks.",), "down_up_mid": ("down_blocks.", "mid_block.", "up_blocks.")}
POSITIONS = ("attn2", "transformer_output")  # inside the CLIP cross-attention | after the spatial transformer
INNER_WIDTHS = ("same", "block_input")  # C_a = C | C_a = the input width of the block's resnet j (released)
_ATTN2 = ".transformer_blocks.0.attn2"


class _AudioBranch(nn.Module):
    """One branch r at one layer: o_r = Adapter_r(CrossAttn_r(x, A) * m_r)."""

    def __init__(self, channels: int, audio_dim: int, num_heads: int, bias: bool):
        super().__init__()
        self.attn = Attention(channels, cross_attention_dim=audio_dim, heads=num_heads, dim_head=channels // num_heads)
        # Official code: the 1x1 adapter has a bias (bias=True, the released layout). Deviation (bias=False, mmgt's
        # own presets): a bias would leak a constant into pixels where the mask is 0, so a zero mask would not switch
        # the branch off; without it Adapter(x * m) == Adapter(x) * m.
        self.adapter = nn.Linear(channels, channels, bias=bias)
        nn.init.zeros_(self.adapter.weight)  # zero init: a fresh MM-HAA leaves the UNet output unchanged
        if bias:
            nn.init.zeros_(self.adapter.bias)

    def forward(self, x: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(N, HW, C) tokens, (N, T, D) audio, (N, HW) mask -> (N, HW, C)."""
        return self.adapter(self.attn(x, encoder_hidden_states=audio) * mask.unsqueeze(-1))


class _AudioLayer(nn.Module):
    """All branches of one layer, plus (optionally) the released block's GroupNorm/proj_in, SA, FFN and proj_out.

    Args:
        channels: C, the width of the tokens the layer reads and returns.
        inner_channels: C_a, the width the branches (and SA/FFN) run at; must equal C without ``released_block``.
    """

    def __init__(
        self,
        channels: int,
        inner_channels: int,
        audio_dim: int,
        num_heads: int,
        branches: Sequence[str],
        released_block: bool,
        groups: int,
        adapter_bias: bool,
    ):
        super().__init__()
        inner = inner_channels
        self.branches = nn.ModuleDict({r: _AudioBranch(inner, audio_dim, num_heads, adapter_bias) for r in branches})
        self.released_block = released_block
        if released_block:
            # Official code: GroupNorm -> 1x1 proj_in (C -> C_a) -> [SA, masked CAs, GEGLU FFN] -> 1x1 proj_out
            # (C_a -> C) -> residual (spec §5.3); a 1x1 conv on the h x w map is a linear on the tokens.
            self.norm_in = nn.GroupNorm(groups, channels, eps=1e-6)
            self.proj_in = nn.Linear(channels, inner)
            self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(inner) for _ in range(3))
            self.self_attn = Attention(inner, heads=num_heads, dim_head=inner // num_heads)
            self.ff = FeedForward(inner, mult=4, activation_fn="geglu")  # C_a -> 2*4C_a -> C_a
            # Deviation: zero-initialised proj_out (released: default init) so a fresh adapter is an exact no-op.
            self.proj_out = nn.Linear(inner, channels)
            nn.init.zeros_(self.proj_out.weight)
            nn.init.zeros_(self.proj_out.bias)

    def forward(
        self, x: torch.Tensor, audio: torch.Tensor, masks: torch.Tensor, scales: Sequence[float]
    ) -> torch.Tensor:
        """MM-HAA on one layer.

        Args:
            x: (N, HW, C) tokens, N = B*F: the CLIP cross-attention output (``attn2`` position) or the spatial
                transformer's output (``transformer_output`` position).
            audio: (N, T, D) audio tokens.
            masks: (N, R, HW) branch masks in [0, 1], in the adapter's branch order.
            scales: R branch weights w_r.

        Returns:
            (N, HW, C): x plus the layer's audio residual.
        """
        if not self.released_block:
            return x + self._branches(x, audio, masks, scales)
        h = self.proj_in(self.norm_in(x.transpose(1, 2)).transpose(1, 2))  # GroupNorm over channels, per frame
        h = h + self.self_attn(self.norm1(h))  # h1 = h + SA(LN1(h))
        h = h + self._branches(self.norm2(h), audio, masks, scales)  # h2 = h1 + sum_r w_r o_r
        h = h + self.ff(self.norm3(h))  # h3 = h2 + FFN(LN3(h2))
        return x + self.proj_out(h)

    def _branches(
        self, x: torch.Tensor, audio: torch.Tensor, masks: torch.Tensor, scales: Sequence[float]
    ) -> torch.Tensor:
        """sum_r w_r * Adapter_r(CrossAttn_r(x, A) * m_r); a branch with w_r == 0 is skipped (it adds exactly 0)."""
        out = torch.zeros_like(x)
        for i, (branch, weight) in enumerate(zip(self.branches.values(), scales)):
            if weight != 0:
                out = out + weight * branch(x, audio, masks[:, i])
        return out


class AudioAttentionAdapter(ModelMixin, ConfigMixin):
    """Weight container for MM-HAA (modelled on diffusers' MotionAdapter): one branch per (layer, branch name).

    It has no forward of its own: :func:`install_audio_processors` puts a :class:`MaskedAudioAttnProcessor` on each
    listed ``attn2`` layer of a UNet, or a :class:`TransformerOutputAudioHook` on each listed spatial transformer,
    pointing at this adapter's modules. Train it, move it (``.to``) and save it separately from the UNet.

    Args:
        layer_names: ``attn2`` position: dotted ``attn2`` module names, e.g.
            ``down_blocks.0.attentions.0.transformer_blocks.0.attn2``; ``transformer_output`` position: spatial
            transformer names, e.g. ``down_blocks.0.attentions.0`` (see :func:`audio_layer_names`).
        layer_channels: C of each layer (320/640/1280 for SD-1.5).
        audio_dim: audio token width D (768).
        num_heads: heads of every audio attention (8; head size C_a/8).
        branches: branch names in mask-channel order (:data:`~mmgt.constants.BRANCHES`); called ``regions`` in
            folders saved before mmgt 0.2, which load as they are (:meth:`extract_init_dict`).
        released_block: also build the released audio block's GroupNorm/proj_in, self-attention, GEGLU FFN and
            proj_out around the masked cross-attentions.
        norm_num_groups: GroupNorm groups of ``released_block`` (32 for SD-1.5).
        position: ``"attn2"`` (the figure's flow, on the CLIP cross-attention output) or ``"transformer_output"``
            (the release: on the spatial transformer's output, before the motion module; needs ``released_block``).
        inner_channels: C_a of each layer (``None``: C_a = C); differs from C only with ``released_block``.
        adapter_bias: the 1x1 adapters have a bias (the released layout).
    """

    @register_to_config
    def __init__(
        self,
        layer_names: list[str],
        layer_channels: list[int],
        audio_dim: int = 768,
        num_heads: int = 8,
        branches: tuple[str, ...] = BRANCHES,
        released_block: bool = False,
        norm_num_groups: int = 32,
        position: str = "attn2",
        inner_channels: list[int] | None = None,
        adapter_bias: bool = False,
    ):
        super().__init__()
        inner = list(layer_channels) if inner_channels is None else list(inner_channels)
        _check_adapter_config(layer_names, layer_channels, inner, num_heads, branches, released_block, position)
        self.layers = nn.ModuleList(
            _AudioLayer(c, c_a, audio_dim, num_heads, branches, released_block, norm_num_groups, adapter_bias)
            for c, c_a in zip(layer_channels, inner)
        )
        self._index = {name: i for i, name in enumerate(layer_names)}

    @classmethod
    def extract_init_dict(cls, config_dict: dict, **kwargs):
        """diffusers' config reader, with the pre-0.2 key ``regions`` read as ``branches``."""
        if "regions" in config_dict:
            config_dict = {k: v for k, v in config_dict.items() if k != "regions"} | {
                "branches": config_dict["regions"]
            }
        return super().extract_init_dict(config_dict, **kwargs)

    def layer(self, name: str) -> _AudioLayer:
        """The branches of layer ``name``."""
        if name not in self._index:
            raise MmgtError(f"audio adapter has no layer {name!r}")
        return self.layers[self._index[name]]

    @classmethod
    def for_unet(
        cls,
        unet: nn.Module,
        placement: str = "down",
        position: str = "attn2",
        inner_width: str = "same",
        **kwargs,
    ) -> AudioAttentionAdapter:
        """A fresh adapter for the layers of ``unet`` picked by ``placement`` and ``position``.

        Args:
            unet: a UNet2DConditionModel or UNetMotionModel (spatial layer names are identical in both).
            placement: which blocks (:func:`audio_layer_names`).
            position: see the class arguments.
            inner_width: ``"same"`` (C_a = C) or ``"block_input"`` (the release: C_a = the input width of the
                block's resnet j, so 320/640 in the first module of down blocks 1/2; down blocks only).
            kwargs: the other constructor arguments.
        """
        names = audio_layer_names(unet, placement, position)
        channels = [_layer_width(unet, name) for name in names]
        if inner_width not in INNER_WIDTHS:
            raise MmgtError(f"inner_width must be one of {INNER_WIDTHS}, got {inner_width!r}")
        inner = None if inner_width == "same" else [_block_input_width(unet, name) for name in names]
        return cls(layer_names=names, layer_channels=channels, position=position, inner_channels=inner, **kwargs)


def _check_adapter_config(names, channels, inner, num_heads, branches, released_block, position) -> None:
    """One-line errors for adapter configurations that cannot be built."""
    if len(names) != len(channels) or len(inner) != len(channels):
        raise MmgtError(
            f"got {len(names)} layer_names but {len(channels)} layer_channels and {len(inner)} inner_channels"
        )
    if len(set(branches)) != len(branches) or not branches:
        raise MmgtError(f"branches must be distinct and non-empty, got {branches}")
    bad = [c for c in inner if c % num_heads]
    if bad:
        raise MmgtError(f"layer channels {bad} are not divisible by num_heads={num_heads}")
    if position not in POSITIONS:
        raise MmgtError(f"position must be one of {POSITIONS}, got {position!r}")
    if not released_block and (inner != list(channels) or position != "attn2"):
        raise MmgtError("inner_channels != layer_channels and position 'transformer_output' need released_block")


# Deviation (position="attn2", mmgt's presets): the figure's flow (STYLE §4.12 open point 1): the branches read the
# CLIP cross-attention output inside attn2, so the transformer's FFN comes after the audio. The released network
# (position="transformer_output") is TransformerOutputAudioHook below; docs/stage2.md compares the two.
class MaskedAudioAttnProcessor(PassThroughAttnProcessor):
    """MM-HAA processor for one ``attn2`` layer: the CLIP cross-attention, then the mask-gated audio branches.

    The processor holds no weights of its own (it is not an ``nn.Module``): ``layer`` belongs to the adapter, so the
    UNet's state dict and ``parameters()`` do not include the audio weights.

    Args:
        name: the ``attn2`` module name, used in error messages.
        layer: the adapter's layer module for ``name`` (``adapter.layer(name)``).
    """

    def __init__(self, name: str, layer: _AudioLayer):
        super().__init__()
        self.name = name
        self.layer = layer

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        mmgt: AttnInputs | None = None,
    ) -> torch.Tensor:
        ca = super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)  # (N, HW, C)
        if mmgt is None or mmgt.audio_tokens is None:
            return ca  # MM-HAA off (unconditional audio is zero tokens, not None)
        return _apply_layer(self.name, self.layer, ca, mmgt)


class TransformerOutputAudioHook:
    """MM-HAA on the output of one spatial transformer (the released placement), as a module forward hook.

    Why a hook: the released audio module runs between ``down_blocks.i.attentions.j`` and the motion module, a point
    no attention processor sees. diffusers calls every spatial transformer with ``cross_attention_kwargs=...`` as a
    keyword, so a ``register_forward_hook(..., with_kwargs=True)`` hook reads the call's :class:`AttnInputs` from it
    and returns the transformer's output plus the audio residual; the UNet's own code and weights stay untouched.
    Like the processors, the hook holds no weights (``layer`` belongs to the adapter).

    Args:
        name: the transformer's module name (e.g. ``down_blocks.1.attentions.0``), used in error messages.
        layer: the adapter's layer module for ``name``.
    """

    def __init__(self, name: str, layer: _AudioLayer):
        self.name = name
        self.layer = layer

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict, output):
        mmgt = (kwargs.get("cross_attention_kwargs") or {}).get("mmgt")
        if mmgt is None or mmgt.audio_tokens is None:
            return None  # MM-HAA off: the output stays as it is
        sample = output[0] if isinstance(output, tuple) else output.sample  # (N, C, h, w)
        n, c, h, w = sample.shape
        tokens = _apply_layer(self.name, self.layer, sample.flatten(2).transpose(1, 2), mmgt)  # (N, hw, C)
        sample = tokens.transpose(1, 2).reshape(n, c, h, w)
        return (sample, *output[1:]) if isinstance(output, tuple) else type(output)(sample=sample)


def _apply_layer(name: str, layer: _AudioLayer, x: torch.Tensor, mmgt: AttnInputs) -> torch.Tensor:
    """The layer on (N, HW, C) tokens with this call's audio tokens, masks and branch weights."""
    if len(mmgt.branch_weights) != len(layer.branches):
        raise MmgtError(f"{name}: {len(mmgt.branch_weights)} branch_weights for {len(layer.branches)} branches")
    audio = match_batch(mmgt.audio_tokens, x.shape[0], f"audio tokens at {name}")  # (N, T, D)
    masks = _masks(name, len(layer.branches), mmgt, x.shape[0], x.shape[1])  # (N, R, HW)
    return layer(x, audio.to(x.dtype), masks.to(x.dtype), mmgt.branch_weights)


def _masks(name: str, branches: int, mmgt: AttnInputs, batch: int, tokens: int) -> torch.Tensor:
    """The mask level whose h*w equals this layer's token count, as (N, R, HW) (row-major, like the tokens)."""
    if not mmgt.branch_masks:
        raise MmgtError(f"{name}: audio_tokens were given without branch_masks")
    for mask in mmgt.branch_masks:
        if mask.shape[-2] * mask.shape[-1] == tokens:
            break
    else:
        sizes = [tuple(m.shape[-2:]) for m in mmgt.branch_masks]
        raise MmgtError(f"{name}: no branch mask level has {tokens} pixels (levels: {sizes})")
    if mask.shape[1] != branches:
        raise MmgtError(f"{name}: masks have {mask.shape[1]} branches, the adapter has {branches}")
    return match_batch(mask.flatten(2), batch, f"branch masks at {name}")


def audio_layer_names(unet: nn.Module, placement: str = "down", position: str = "attn2") -> list[str]:
    """The layers that get MM-HAA: spatial cross-attentions (``attn2``) or spatial transformers.

    Args:
        unet: a UNet2DConditionModel or UNetMotionModel (spatial layer names are identical in both).
        placement: ``"down"`` = every transformer block of the down blocks (released: depths 0-2, two each for
            SD-1.5); ``"down_up_mid"`` adds the mid block and the up blocks (the figure and Hallo).
        position: ``"attn2"``: the ``...transformer_blocks.0.attn2`` names; ``"transformer_output"``: their spatial
            transformers (``down_blocks.i.attentions.j``).
    """
    if placement not in PLACEMENTS:
        raise MmgtError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    if position not in POSITIONS:
        raise MmgtError(f"position must be one of {POSITIONS}, got {position!r}")
    names = [key.removesuffix(PROCESSOR_SUFFIX) for key in unet.attn_processors]
    attn2 = [
        n
        for n in names
        if n.endswith(".attn2") and ".motion_modules." not in n and n.startswith(PLACEMENTS[placement])
    ]
    if position == "attn2":
        return attn2
    return [n.removesuffix(_ATTN2) for n in attn2 if n.endswith(_ATTN2)]


def _layer_width(unet: nn.Module, name: str) -> int:
    """C of a layer: the query width of an ``attn2`` or the input width of a spatial transformer."""
    module = unet.get_submodule(name)
    return module.query_dim if isinstance(module, Attention) else module.config.in_channels


def _block_input_width(unet: nn.Module, name: str) -> int:
    """The input width of resnet j of down block i, for layer ``down_blocks.i.attentions.j`` (the release's C_a)."""
    parts = name.split(".")
    if parts[0] != "down_blocks" or parts[2] != "attentions":
        raise MmgtError(f"inner_width='block_input' is defined for down-block layers only (the release's), got {name}")
    return unet.down_blocks[int(parts[1])].resnets[int(parts[3])].in_channels


# Spatial transformer -> the handle of its TransformerOutputAudioHook; weak keys: a dropped UNet takes its entries.
_HOOKS: weakref.WeakKeyDictionary[nn.Module, torch.utils.hooks.RemovableHandle] = weakref.WeakKeyDictionary()


def install_audio_processors(unet: nn.Module, adapter: AudioAttentionAdapter) -> None:
    """Attach ``adapter`` to ``unet``: processors on its ``attn2`` layers or hooks on its spatial transformers.

    Whatever an earlier call attached (either position) is removed first, so calling it again, or with another
    adapter, never stacks two audio modules on a layer. Other layers keep their processors.
    """
    cfg = adapter.config
    available = {key.removesuffix(PROCESSOR_SUFFIX) for key in unet.attn_processors}
    if cfg.position == "transformer_output":
        available = {n.removesuffix(_ATTN2) for n in available if n.endswith(_ATTN2)}
    missing = sorted(set(cfg.layer_names) - available)
    if missing:
        raise MmgtError(
            f"the UNet has no {'attention layers' if cfg.position == 'attn2' else 'transformers'} named {missing}"
        )
    for name, channels in zip(cfg.layer_names, cfg.layer_channels):
        if _layer_width(unet, name) != channels:
            raise MmgtError(f"{name}: UNet has {_layer_width(unet, name)} channels, adapter {channels}")
    detach_audio_modules(unet)
    if cfg.position == "attn2":
        names = set(cfg.layer_names)
        install_processors(
            unet, lambda name: MaskedAudioAttnProcessor(name, adapter.layer(name)) if name in names else None
        )
        return
    for name in cfg.layer_names:
        module = unet.get_submodule(name)
        hook = TransformerOutputAudioHook(name, adapter.layer(name))
        _HOOKS[module] = module.register_forward_hook(hook, with_kwargs=True)


def detach_audio_modules(unet: nn.Module) -> None:
    """Remove the audio hooks and processors any earlier :func:`install_audio_processors` put on ``unet``."""
    for module in unet.modules():
        handle = _HOOKS.pop(module, None)
        if handle is not None:
            handle.remove()
    stale = {
        key.removesuffix(PROCESSOR_SUFFIX)
        for key, processor in unet.attn_processors.items()
        if isinstance(processor, MaskedAudioAttnProcessor)
    }
    if stale:
        install_processors(unet, lambda name: PassThroughAttnProcessor() if name in stale else None)

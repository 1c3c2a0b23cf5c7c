"""MM-HAA: motion-mask gated hierarchical audio attention on the UNet's cross-attention layers (spec §5.1, §5.3).

Figure flow, per selected transformer block (h: the block's normalised tokens, CA: its CLIP cross-attention ``attn2``,
A: audio tokens, m_r: branch r's mask at this layer's resolution, w_r: its branch weight):

    out = CA(h, clip) + sum_r  w_r * Adapter_r( CrossAttn_r(CA(h, clip), A) * m_r )

The block adds ``out`` to its residual stream, as it does with any ``attn2`` output. The branches
(:data:`mmgt.constants.BRANCHES`) are ``global`` (mask 1 - lips), ``face_hands`` and ``lips``; each has its own
cross-attention (query dim C, context dim 768, ``num_heads`` heads) and its own zero-initialised C -> C adapter (a 1x1
conv on the h x w map = a linear on tokens). The mask scales the attention OUTPUT; there is no attention mask.

Weights live once, in :class:`AudioAttentionAdapter` (a MotionAdapter-like container saved with save_pretrained); the
processors only reference its modules, so ``unet.state_dict()`` keeps the plain UNetMotionModel keys.
"""

from __future__ import annotations

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
from mmgt.models.reference_attention import PassThroughAttnProcessor, install_processors

PLACEMENTS = {"down": ("down_blocks.",), "down_up_mid": ("down_blocks.", "mid_block.", "up_blocks.")}


class _AudioBranch(nn.Module):
    """One branch r at one layer: o_r = Adapter_r(CrossAttn_r(x, A) * m_r)."""

    def __init__(self, channels: int, audio_dim: int, num_heads: int):
        super().__init__()
        self.attn = Attention(channels, cross_attention_dim=audio_dim, heads=num_heads, dim_head=channels // num_heads)
        # Deviation: bias-free (the released 1x1 conv has a bias). A bias would leak a constant into pixels where the
        # mask is 0, so a zero mask would not switch the branch off; without it Adapter(x * m) == Adapter(x) * m.
        self.adapter = nn.Linear(channels, channels, bias=False)
        nn.init.zeros_(self.adapter.weight)  # zero init: a fresh MM-HAA leaves the UNet output unchanged

    def forward(self, x: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(N, HW, C) tokens, (N, T, D) audio, (N, HW) mask -> (N, HW, C)."""
        return self.adapter(self.attn(x, encoder_hidden_states=audio) * mask.unsqueeze(-1))


class _AudioLayer(nn.Module):
    """All branches of one ``attn2`` layer, plus (optionally) the released block's extra SA/FFN."""

    def __init__(
        self, channels: int, audio_dim: int, num_heads: int, branches: Sequence[str], released_block: bool, groups: int
    ):
        super().__init__()
        self.branches = nn.ModuleDict({r: _AudioBranch(channels, audio_dim, num_heads) for r in branches})
        self.released_block = released_block
        if released_block:
            # Official code: GroupNorm -> proj_in -> [SA, masked CAs, GEGLU FFN] -> proj_out -> residual (spec §5.3).
            self.norm_in = nn.GroupNorm(groups, channels, eps=1e-6)
            self.proj_in = nn.Linear(channels, channels)
            self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(channels) for _ in range(3))
            self.self_attn = Attention(channels, heads=num_heads, dim_head=channels // num_heads)
            self.ff = FeedForward(channels, mult=4, activation_fn="geglu")  # C -> 2*4C -> C
            # Deviation: zero-initialised proj_out (released: default init) so a fresh adapter is an exact no-op.
            self.proj_out = nn.Linear(channels, channels)
            nn.init.zeros_(self.proj_out.weight)
            nn.init.zeros_(self.proj_out.bias)

    def forward(
        self, ca: torch.Tensor, audio: torch.Tensor, masks: torch.Tensor, scales: Sequence[float]
    ) -> torch.Tensor:
        """MM-HAA on one layer.

        Args:
            ca: (N, HW, C) output of the block's CLIP cross-attention, N = B*F.
            audio: (N, T, D) audio tokens.
            masks: (N, R, HW) branch masks in [0, 1], in the adapter's branch order.
            scales: R branch weights w_r.

        Returns:
            (N, HW, C) the new ``attn2`` output.
        """
        if not self.released_block:
            return ca + self._branches(ca, audio, masks, scales)
        x = self.proj_in(self.norm_in(ca.transpose(1, 2)).transpose(1, 2))  # GroupNorm over channels, per frame
        x = x + self.self_attn(self.norm1(x))  # h1 = h + SA(LN1(h))
        x = x + self._branches(self.norm2(x), audio, masks, scales)  # h2 = h1 + sum_r w_r o_r
        x = x + self.ff(self.norm3(x))  # h3 = h2 + FFN(LN3(h2))
        return ca + self.proj_out(x)

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
    listed ``attn2`` layer of a UNet, pointing at this adapter's modules. Train it, move it (``.to``) and save it
    separately from the UNet.

    Args:
        layer_names: dotted ``attn2`` module names, e.g. ``down_blocks.0.attentions.0.transformer_blocks.0.attn2``
            (see :func:`audio_layer_names`).
        layer_channels: C of each layer (320/640/1280 for SD-1.5).
        audio_dim: audio token width D (768).
        num_heads: heads of every audio cross-attention (8; head size C/8).
        branches: branch names in mask-channel order (:data:`~mmgt.constants.BRANCHES`); called ``regions`` in
            folders saved before mmgt 0.2, which load as they are (:meth:`extract_init_dict`).
        released_block: also build the released audio block's GroupNorm/proj_in, self-attention, GEGLU FFN and
            proj_out around the masked cross-attentions (see :class:`MaskedAudioAttnProcessor`).
        norm_num_groups: GroupNorm groups of ``released_block`` (32 for SD-1.5).
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
    ):
        super().__init__()
        if len(layer_names) != len(layer_channels):
            raise MmgtError(f"got {len(layer_names)} layer_names but {len(layer_channels)} layer_channels")
        if len(set(branches)) != len(branches) or not branches:
            raise MmgtError(f"branches must be distinct and non-empty, got {branches}")
        bad = [c for c in layer_channels if c % num_heads]
        if bad:
            raise MmgtError(f"layer channels {bad} are not divisible by num_heads={num_heads}")
        self.layers = nn.ModuleList(
            _AudioLayer(c, audio_dim, num_heads, branches, released_block, norm_num_groups) for c in layer_channels
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
    def for_unet(cls, unet: nn.Module, placement: str = "down", **kwargs) -> AudioAttentionAdapter:
        """A fresh adapter for the ``attn2`` layers of ``unet`` picked by ``placement`` (:func:`audio_layer_names`)."""
        names = audio_layer_names(unet, placement)
        channels = [unet.get_submodule(name).query_dim for name in names]
        return cls(layer_names=names, layer_channels=channels, **kwargs)


# Official code: the released "audio module after the spatial transformer" runs GroupNorm -> proj_in -> (its own
# self-attention, the masked audio cross-attentions, a GEGLU FFN) -> proj_out -> residual on the transformer's OUTPUT.
# Deviation: mmgt follows the figure's flow (STYLE §4.12 open point 1): the branches read the CA output inside attn2.
# By default (released_block=False) only the masked cross-attentions and adapters exist; released_block=True adds the
# GroupNorm/proj_in/SA/FFN/proj_out, but on the CA output (a processor never sees the block's post-FFN tokens), so
# released weights do not map 1:1 either way; a converter would need a hook on the Transformer2DModel output.
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
        if len(mmgt.branch_weights) != len(self.layer.branches):
            raise MmgtError(
                f"{self.name}: {len(mmgt.branch_weights)} branch_weights for {len(self.layer.branches)} branches"
            )
        audio = match_batch(mmgt.audio_tokens, ca.shape[0], f"audio tokens at {self.name}")  # (N, T, D)
        masks = self._masks(mmgt, ca.shape[0], ca.shape[1])  # (N, R, HW)
        return self.layer(ca, audio.to(ca.dtype), masks.to(ca.dtype), mmgt.branch_weights)

    def _masks(self, mmgt: AttnInputs, batch: int, tokens: int) -> torch.Tensor:
        """The mask level whose h*w equals this layer's token count, as (N, R, HW) (row-major, like the tokens)."""
        if not mmgt.branch_masks:
            raise MmgtError(f"{self.name}: audio_tokens were given without branch_masks")
        for mask in mmgt.branch_masks:
            if mask.shape[-2] * mask.shape[-1] == tokens:
                break
        else:
            sizes = [tuple(m.shape[-2:]) for m in mmgt.branch_masks]
            raise MmgtError(f"{self.name}: no branch mask level has {tokens} pixels (levels: {sizes})")
        if mask.shape[1] != len(self.layer.branches):
            raise MmgtError(
                f"{self.name}: masks have {mask.shape[1]} branches, the adapter has {len(self.layer.branches)}"
            )
        return match_batch(mask.flatten(2), batch, f"branch masks at {self.name}")


def audio_layer_names(unet: nn.Module, placement: str = "down") -> list[str]:
    """The spatial cross-attention (``attn2``) layers that get MM-HAA.

    Args:
        unet: a UNet2DConditionModel or UNetMotionModel (spatial layer names are identical in both).
        placement: ``"down"`` = every transformer block of the down blocks (released: depths 0-2, two each for
            SD-1.5); ``"down_up_mid"`` adds the mid block and the up blocks (the figure and Hallo).
    """
    if placement not in PLACEMENTS:
        raise MmgtError(f"placement must be one of {tuple(PLACEMENTS)}, got {placement!r}")
    names = [key.removesuffix(".processor") for key in unet.attn_processors]
    return [
        n
        for n in names
        if n.endswith(".attn2") and ".motion_modules." not in n and n.startswith(PLACEMENTS[placement])
    ]


def install_audio_processors(unet: nn.Module, adapter: AudioAttentionAdapter) -> None:
    """Put a :class:`MaskedAudioAttnProcessor` on every layer of ``adapter``; other layers keep their processors."""
    names = set(adapter.config.layer_names)
    available = {key.removesuffix(".processor") for key in unet.attn_processors}
    missing = sorted(names - available)
    if missing:
        raise MmgtError(f"the UNet has no attention layers named {missing}")
    for name, channels in zip(adapter.config.layer_names, adapter.config.layer_channels):
        if unet.get_submodule(name).query_dim != channels:
            raise MmgtError(f"{name}: UNet has {unet.get_submodule(name).query_dim} channels, adapter {channels}")
    install_processors(
        unet, lambda name: MaskedAudioAttnProcessor(name, adapter.layer(name)) if name in names else None
    )

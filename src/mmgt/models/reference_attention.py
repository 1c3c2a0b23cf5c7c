"""ReferenceNet injection as attention processors: write on the ReferenceNet, read on the denoising UNet (spec §5.2).

"Full" fusion: each ReferenceNet transformer self-attention stores its normalised input; the denoising UNet's
self-attention at the same layer name uses K/V = concat[own tokens, stored tokens], per frame. No ``forward`` is
patched and no ``bank`` attribute lives on a module: the stored tensors travel in the per-call :class:`AttnInputs`.

Classifier-free guidance: the denoising UNet batch is ``(B_total * F)`` with samples b-major. The stored features have
batch ``B_ref`` and are mapped to the UNet batch in two steps: (1) whole-group tiling when ``B_total`` is a multiple of
``B_ref`` (CFG with one ReferenceNet pass shared by both branches: [ref; ref] lines up with [uncond; cond]); (2)
``repeat_interleave(F)`` so every frame of sample b attends to reference b. Running the ReferenceNet on the doubled
batch ([zero CLIP; CLIP], as the spec's unconditional branch asks) gives ``B_ref == B_total`` and step (1) is a no-op.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from mmgt.errors import MmgtError
from mmgt.models.attention_inputs import AttnInputs, match_batch

PROCESSOR_SUFFIX = ".processor"


class PassThroughAttnProcessor(AttnProcessor2_0):
    """``AttnProcessor2_0`` that accepts and ignores ``mmgt``.

    diffusers compares ``cross_attention_kwargs`` keys with the processor's ``__call__`` signature and logs a warning
    for every unknown key on every call (``**kwargs`` does not count), so every spatial layer must name ``mmgt``.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        mmgt: AttnInputs | None = None,
    ) -> torch.Tensor:
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class ReferenceWriteAttnProcessor(PassThroughAttnProcessor):
    """On a ReferenceNet ``attn1``: in write mode, store the (already normalised) input, then do self-attention.

    Args:
        name: the attention module's dotted name, e.g. ``down_blocks.0.attentions.0.transformer_blocks.0.attn1``;
            the denoising UNet's reader of the same name picks the stored tensor up.
    """

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        mmgt: AttnInputs | None = None,
    ) -> torch.Tensor:
        if mmgt is not None and mmgt.mode == "write":
            # Not detached: in the image step the ReferenceNet trains through the denoiser's loss.
            mmgt.reference_features[self.name] = hidden_states  # (B_ref, N, C)
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class ReferenceReadAttnProcessor(PassThroughAttnProcessor):
    """On a denoising-UNet ``attn1``: in read mode, keys/values also cover the stored reference tokens.

    Without stored features for its name (or outside read mode) it is exactly ``AttnProcessor2_0``.

    Args:
        name: the attention module's dotted name; must equal the writer's name in the ReferenceNet.
    """

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        mmgt: AttnInputs | None = None,
    ) -> torch.Tensor:
        reference = None if mmgt is None or mmgt.mode != "read" else mmgt.reference_features.get(self.name)
        if reference is None:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if attention_mask is not None:
            raise MmgtError(f"{self.name}: an attention mask cannot be combined with reference features")
        reference = self._per_frame(reference, hidden_states.shape[0], mmgt.num_frames)  # (B*F, N_ref, C)
        # Queries stay the frame's own tokens; keys/values see [own tokens, reference tokens] ("full" fusion).
        context = torch.cat([hidden_states, reference.to(hidden_states.dtype)], dim=1)
        return super().__call__(attn, hidden_states, context, None, temb)

    def _per_frame(self, reference: torch.Tensor, batch_frames: int, num_frames: int) -> torch.Tensor:
        """(B_ref, N, C) -> (B_total*F, N, C): tile whole groups (CFG), then repeat each sample over its F frames."""
        if batch_frames % num_frames:
            raise MmgtError(f"{self.name}: UNet batch {batch_frames} is not a multiple of num_frames={num_frames}")
        reference = match_batch(reference, batch_frames // num_frames, f"reference features of {self.name}")
        return reference.repeat_interleave(num_frames, dim=0)  # b-major, as UNetMotionModel's reshape


def accepts_mmgt(processor: object) -> bool:
    """Whether ``processor.__call__`` names the ``mmgt`` keyword (diffusers would otherwise drop it with a warning)."""
    return "mmgt" in inspect.signature(processor.__call__).parameters


def install_processors(unet: torch.nn.Module, make_processor: Callable[[str], object | None]) -> None:
    """Replace attention processors by name, keeping every layer able to receive ``mmgt``.

    Args:
        unet: any diffusers model with ``attn_processors``/``set_attn_processor`` (UNet2DConditionModel,
            UNetMotionModel).
        make_processor: attention module name (without ``.processor``) -> a processor, or ``None`` to keep the
            current one. Kept spatial processors that do not accept ``mmgt`` become ``PassThroughAttnProcessor``;
            motion modules are left alone (UNetMotionModel never passes them ``cross_attention_kwargs``). Calls can
            be layered: a later call with ``None`` keeps the processors an earlier call installed.
    """
    processors = dict(unet.attn_processors)  # diffusers needs an entry for every attention layer
    for key, current in processors.items():
        custom = make_processor(key.removesuffix(PROCESSOR_SUFFIX))
        if custom is not None:
            processors[key] = custom
        elif ".motion_modules." not in key and not accepts_mmgt(current):
            processors[key] = PassThroughAttnProcessor()
    unet.set_attn_processor(processors)


def is_reference_layer(name: str) -> bool:
    """Spatial transformer self-attention layers: the ones that write (ReferenceNet) and read (denoising UNet)."""
    return name.endswith(".attn1") and ".motion_modules." not in name and ".attentions." in name


def install_reference_writers(reference_unet: torch.nn.Module) -> list[str]:
    """Put a :class:`ReferenceWriteAttnProcessor` on every spatial ``attn1`` of the ReferenceNet; returns the names."""
    names = []

    def make(name: str) -> object | None:
        if is_reference_layer(name):
            names.append(name)
            return ReferenceWriteAttnProcessor(name)
        return None

    install_processors(reference_unet, make)
    return names


def install_reference_readers(unet: torch.nn.Module) -> list[str]:
    """Put a :class:`ReferenceReadAttnProcessor` on every spatial ``attn1`` of the denoiser; returns the names."""
    names = []

    def make(name: str) -> object | None:
        if is_reference_layer(name):
            names.append(name)
            return ReferenceReadAttnProcessor(name)
        return None

    install_processors(unet, make)
    return names

"""Classifier-free guidance (Ho & Salimans 2022) for both stages: one rule for when it is on, one combination.

Stage 1 guides the x0 prediction (spec §3.6), stage 2 the v-prediction (spec §5.7); both use :func:`cfg_combine`, and
both skip the unconditional pass exactly when it cannot change the result (:func:`guidance_enabled`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def guidance_enabled(scale: float) -> bool:
    """THE rule for both stages: guidance runs unless ``scale`` is 1, where ``u + 1 (c - u)`` is exactly ``c``.

    A scale below 1 (0 = the unconditional prediction) is a valid interpolation and runs both branches.
    """
    return float(scale) != 1.0


def cfg_combine(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    """uncond + scale * (cond - uncond): scale 1 gives ``cond``, 0 gives ``uncond``, > 1 extrapolates (SMGA: 2)."""
    return uncond + scale * (cond - uncond)


@dataclass(frozen=True)
class Guidance:
    """Stage 2: which conditioning branches make up the UNet batch and how their outputs combine (spec §5.7).

    Branches: ``uncond`` (zero CLIP embedding, no reference, zero audio tokens), ``image`` (CLIP and reference, zero
    audio), ``full`` (CLIP, reference and audio). Pose features and masks are shared by all branches.

    * ``audio_guidance_scale`` None: (uncond, full) combined as u + s (c - u), the released CFG; (full,) alone when
      guidance is off (:func:`guidance_enabled`).
    * ``audio_guidance_scale`` set: (uncond, image, full) combined as u + s (i - u) + s_a (c - i): image guidance,
      then audio guidance on top of it (the compositional form of InstructPix2Pix). With s_a == s it equals the
      two-branch form.
    """

    guidance_scale: float
    audio_guidance_scale: float | None = None

    @property
    def branches(self) -> tuple[str, ...]:
        if self.audio_guidance_scale is not None:
            return ("uncond", "image", "full")
        return ("uncond", "full") if guidance_enabled(self.guidance_scale) else ("full",)

    def combine(self, out: torch.Tensor) -> torch.Tensor:
        """(n_branches, C, F, h, w) UNet outputs in :attr:`branches` order -> (1, C, F, h, w) guided output."""
        if out.shape[0] == 1:
            return out
        if out.shape[0] == 2:
            return cfg_combine(out[:1], out[1:], self.guidance_scale)
        uncond, image, full = out[:1], out[1:2], out[2:]
        return cfg_combine(uncond, image, self.guidance_scale) + self.audio_guidance_scale * (full - image)

"""diffusion layer: guidance for both stages; stage 1 (schedule, loss, sampler) and stage 2 (schedule, v-target)."""

from mmgt.diffusion.guidance import cfg_combine
from mmgt.diffusion.stage1 import (
    cosine_alphas_cumprod,
    make_stage1_dpm_scheduler,
    make_stage1_scheduler,
    sample_window,
    select_motion,
    smga_loss,
    use_float64_schedule,
)

__all__ = [
    "cfg_combine",
    "cosine_alphas_cumprod",
    "make_stage1_dpm_scheduler",
    "make_stage1_scheduler",
    "sample_window",
    "select_motion",
    "smga_loss",
    "use_float64_schedule",
]

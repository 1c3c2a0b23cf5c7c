"""diffusion layer: schedules, losses, guidance and the stage-1 window sampler."""

from mmgt.diffusion.guidance import cfg_combine
from mmgt.diffusion.losses import smga_loss
from mmgt.diffusion.sampling import sample_window, select_motion
from mmgt.diffusion.schedulers import (
    cosine_alphas_cumprod,
    make_stage1_dpm_scheduler,
    make_stage1_scheduler,
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

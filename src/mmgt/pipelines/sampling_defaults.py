"""Sampling defaults: the one place where each preset's steps, guidance, branch weights, sampler and windows are set.

A pipeline saves its settings in its own config (``model_index.json``), so a model folder carries the values it is
meant to be sampled with; ``from_pretrained`` reads them back, and every caller (the CLI, the app, evaluation,
:class:`~mmgt.pipelines.mmgt_pipeline.MMGTPipeline`) passes ``None`` for "the model's value" and a number only to
override it. Training exports take the preset's settings from :func:`pose_sampling` / :func:`video_sampling`.

The names are the pipelines' call arguments (``num_inference_steps``, ``guidance_scale``, ...), unchanged from the
command line down to the sampler.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from mmgt.errors import MmgtError

SAMPLERS = ("ddim", "dpm")  # stage 1: the saved DDIM scheduler, or DPM-Solver++ built from its config
UNCOND_REFERENCE = ("skip", "zero_clip")  # what the unconditional CFG branch of stage 2 sees of the reference


class _Settings:
    """Shared behaviour of the two settings dataclasses."""

    def override(self, **changes):
        """A copy with the given fields replaced; ``None`` keeps the current value (the model's default)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise MmgtError(f"unknown {type(self).__name__} setting(s) {sorted(unknown)}")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        """JSON-ready values (tuples as lists), keyed by the pipeline config names."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def values_in(cls, mapping) -> dict:
        """The entries of ``mapping`` (a config, or a call's ``locals()``) that are settings of this class."""
        return {f.name: mapping[f.name] for f in fields(cls) if f.name in mapping}

    @classmethod
    def from_config(cls, config) -> _Settings:
        """The settings stored in a pipeline config (missing keys: the class defaults)."""
        return cls(**cls.values_in(config))


@dataclass(frozen=True)
class PoseSampling(_Settings):
    """Stage-1 (SMGA) sampling (spec §3.6)."""

    num_inference_steps: int = 50  # spec §3.6: DDIM 50
    guidance_scale: float = 2.0  # spec §3.6: CFG w = 2 on x0
    eta: float = 1.0  # spec §3.6: DDIM eta 1
    sampler: str = "ddim"  # ddim | dpm (DPM-Solver++ from the same schedule)

    def __post_init__(self) -> None:
        if int(self.num_inference_steps) != self.num_inference_steps or self.num_inference_steps < 1:
            raise MmgtError(f"num_inference_steps must be a positive integer, got {self.num_inference_steps}")
        if self.sampler not in SAMPLERS:
            raise MmgtError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.eta < 0:
            raise MmgtError(f"eta must be >= 0, got {self.eta}")


@dataclass(frozen=True)
class VideoSampling(_Settings):
    """Stage-2 sampling (spec §5.7); the sampler is the scheduler saved in the pipeline folder."""

    num_inference_steps: int = 30  # spec §5.7: DDIM 30
    guidance_scale: float = 3.5  # spec §5.7: CFG 3.5 on v
    audio_guidance_scale: float | None = None  # None: one scale for image and audio together, as released
    branch_weights: tuple[float, ...] = (1.0, 1.0, 2.0)  # spec §5.3 decision: MM-HAA (global, face_hands, lips)
    uncond_reference: str = "skip"  # the unconditional branch without reference features (spec §5.7, verified)
    window_frames: int = 12  # spec §5.7: context windows of 12 frames ...
    overlap: int = 4  # ... overlapping by 4
    closed_loop: bool = True  # spec §5.7: the released "uniform" context scheduler wraps around

    def __post_init__(self) -> None:
        object.__setattr__(self, "branch_weights", tuple(float(w) for w in self.branch_weights))
        if int(self.num_inference_steps) != self.num_inference_steps or self.num_inference_steps < 1:
            raise MmgtError(f"num_inference_steps must be a positive integer, got {self.num_inference_steps}")
        if self.uncond_reference not in UNCOND_REFERENCE:
            raise MmgtError(f"uncond_reference must be one of {UNCOND_REFERENCE}, got {self.uncond_reference!r}")
        if not 0 <= self.overlap < self.window_frames:
            raise MmgtError(f"need 0 <= overlap < window_frames, got {self.overlap} and {self.window_frames}")


# Per preset (the stage-1 and stage-2 model presets of mmgt.models). Only what differs from the spec is written.
POSE_SAMPLING: dict[str, PoseSampling] = {
    "paper": PoseSampling(),
    "released": PoseSampling(),
    "tiny": PoseSampling(num_inference_steps=25),  # the bundled demo: fast on a laptop CPU
}
VIDEO_SAMPLING: dict[str, VideoSampling] = {
    "sd15": VideoSampling(),
    "released": VideoSampling(),  # the authors' demo: DDIM 30, CFG 3.5, (1, 1, 2), no reference in CFG's negative
    "tiny": VideoSampling(num_inference_steps=12),  # the bundled demo: fast on a laptop CPU
}


def pose_sampling(preset: str) -> PoseSampling:
    """The stage-1 sampling defaults of a model preset (the spec's for presets not listed)."""
    return POSE_SAMPLING.get(preset, PoseSampling())


def video_sampling(preset: str, window_frames: int | None = None) -> VideoSampling:
    """The stage-2 sampling defaults of a model preset; ``window_frames``: the window the motion modules trained on.

    The overlap keeps the spec's ratio (12 / 4): a third of the window.
    """
    settings = VIDEO_SAMPLING.get(preset, VideoSampling())
    if window_frames is None:
        return settings
    return settings.override(window_frames=window_frames, overlap=window_frames // 3)

"""Stage II inference: reference image + pose sequence (+ speech) -> a video of any length (spec §5.7, §6 steps 7-10).

The video is denoised in overlapping context windows (:mod:`mmgt.pipelines.context_windows`); at every diffusion step
each window is run through the UNet and the predictions of overlapping windows are averaged per frame before ONE
scheduler step on the whole latent sequence. The ReferenceNet runs once per video.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, SchedulerMixin, UNet2DConditionModel, UNetMotionModel
from diffusers.utils import BaseOutput, logging
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from tqdm.auto import tqdm
from transformers import CLIPVisionModelWithProjection

from mmgt.audio.encoders import SpeechEncoder
from mmgt.audio.features import feature_spec, stage2_audio_features
from mmgt.audio.windows import pad_to, stack_context
from mmgt.constants import FPS, SAMPLE_RATE
from mmgt.contracts import PoseSequence
from mmgt.diffusion.guidance import Guidance
from mmgt.errors import MmgtError
from mmgt.models.attention_inputs import AttnInputs
from mmgt.models.audio_attention import AudioAttentionAdapter
from mmgt.models.audio_projection import AudioProjection
from mmgt.models.denoising_unet import (
    denoise_with_reference_dropout,
    encode_reference,
    install_stage2_processors,
    set_motion_norm,
)
from mmgt.models.denoising_unet import motion_norm as current_motion_norm
from mmgt.models.pose_guider import PoseGuider
from mmgt.pipelines.context_windows import WindowCache, WindowConditions, context_windows
from mmgt.pipelines.reference import clip_pixels, fit_image
from mmgt.pipelines.sampling_defaults import VideoSampling
from mmgt.pose.masks import branch_masks
from mmgt.pose.render import pose_at_size, render_pose_sequence
from mmgt.utils.audio_io import Audio

logger = logging.get_logger(__name__)

OUTPUT_TYPES = ("np", "latent")


@dataclass
class PoseToVideoPipelineOutput(BaseOutput):
    """``frames``: (F, H, W, 3) uint8 RGB; ``None`` when the frames were streamed to ``frame_callback``; the
    (1, C, F, h, w) latents for ``output_type="latent"``."""

    frames: np.ndarray | torch.Tensor | None


class PoseToVideoPipeline(DiffusionPipeline):
    """MMGT stage II for any length: reference image + pose sequence (+ speech) -> video frames.

    Components: ``vae``, ``image_encoder`` (CLIP vision with projection), ``reference_unet`` (ReferenceNet, 2D),
    ``unet`` (UNetMotionModel), ``pose_guider``, ``audio_projection``, ``audio_adapter`` (MM-HAA weights, its own
    folder), ``scheduler`` (saved by training with ``make_stage2_scheduler``; the sampler). The reference/MM-HAA
    attention processors are installed in ``__init__``, so ``from_pretrained`` returns a working pipeline.

    Config: ``audio_features`` (the stage-2 :func:`mmgt.audio.features.feature_spec` the audio projection was
    trained on), ``pose_mouth`` (whether the pose images show the jaw-line and lip landmarks, as the model was
    trained: ``data.pose_mouth``; without them the mouth comes from the audio alone), ``motion_norm`` (the motion
    modules' GroupNorm statistics, ``"pooled"`` | ``"per_frame"``: :func:`~mmgt.models.denoising_unet.set_motion_norm`;
    ``None`` keeps what the UNet has, ``"pooled"`` for folders saved before the option) and the sampling defaults of
    :class:`~mmgt.pipelines.sampling_defaults.VideoSampling` (steps, guidance, MM-HAA branch weights, context windows,
    ``uncond_reference``), which every call argument left at ``None`` takes. ``uncond_reference`` is what the
    unconditional CFG branch sees of the reference: ``"skip"`` (default) no ReferenceNet features, exactly what
    training's image dropout shows the model (spec §5.5) and what the release's sampler does (spec §5.7, verified);
    ``"zero_clip"``: the ReferenceNet run with a zero CLIP embedding, a branch training never produces.

    Modules run in whatever train/eval mode they are in (``from_pretrained`` gives eval mode); call ``.eval()`` on
    modules taken from a training loop before sampling.

    Example:
        >>> pipe = PoseToVideoPipeline.from_pretrained("runs/stage2/video/final")  # doctest: +SKIP
        >>> out = pipe(read_image("ref.png"), PoseSequence.load("poses.npz"), Audio.load("speech.wav"))
        >>> save_video("out.mp4", out.frames)
    """

    _defaults = VideoSampling()

    def __init__(
        self,
        vae: AutoencoderKL,
        image_encoder: CLIPVisionModelWithProjection,
        reference_unet: UNet2DConditionModel,
        unet: UNetMotionModel,
        pose_guider: PoseGuider,
        audio_projection: AudioProjection,
        audio_adapter: AudioAttentionAdapter,
        scheduler: SchedulerMixin,
        audio_features: dict | None = None,
        pose_mouth: bool = True,
        motion_norm: str | None = None,
        num_inference_steps: int = _defaults.num_inference_steps,
        guidance_scale: float = _defaults.guidance_scale,
        audio_guidance_scale: float | None = _defaults.audio_guidance_scale,
        branch_weights: list[float] | tuple[float, ...] = _defaults.branch_weights,
        uncond_reference: str = _defaults.uncond_reference,
        window_frames: int = _defaults.window_frames,
        overlap: int = _defaults.overlap,
        closed_loop: bool = _defaults.closed_loop,
        region_scales: list[float] | None = None,  # the name of branch_weights in folders saved before 0.2
    ):
        super().__init__()
        audio_features = audio_features or feature_spec(None, stage=2)
        _check_audio_projection(audio_projection, audio_features)
        arguments = locals() if region_scales is None else {**locals(), "branch_weights": region_scales}
        sampling = VideoSampling.from_config(arguments)  # the sampling arguments above, checked
        self.register_modules(
            vae=vae,
            image_encoder=image_encoder,
            reference_unet=reference_unet,
            unet=unet,
            pose_guider=pose_guider,
            audio_projection=audio_projection,
            audio_adapter=audio_adapter,
            scheduler=scheduler,
        )
        motion_norm = motion_norm or current_motion_norm(unet)  # None (folders saved before the option): the UNet's
        set_motion_norm(unet, motion_norm)
        self.register_to_config(
            audio_features=audio_features, pose_mouth=bool(pose_mouth), motion_norm=motion_norm, **sampling.to_dict()
        )
        install_stage2_processors(unet, reference_unet, audio_adapter)  # processors and hooks are never saved
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.audio_encoder: SpeechEncoder | None = None

    @property
    def sampling(self) -> VideoSampling:
        """The sampling defaults saved with this pipeline."""
        return VideoSampling.from_config(self.config)

    def set_sampling(self, **changes) -> None:
        """Change the saved sampling defaults (``None`` keeps a value); they are written by ``save_pretrained``."""
        self.register_to_config(**self.sampling.override(**changes).to_dict())

    def set_audio_encoder(self, encoder: SpeechEncoder) -> None:
        """Attach the wav2vec2 encoder that ``config.audio_features`` names (not needed for the mel fallback)."""
        spec = self.config.audio_features
        if (encoder.hidden_size, encoder.num_layers) != (spec["dim"], spec["num_layers"]):
            raise MmgtError(
                f"speech encoder {encoder.folder} gives {encoder.num_layers} layers x {encoder.hidden_size}, the "
                f"model was trained on {spec['num_layers']} x {spec['dim']}"
            )
        if spec["speech"].get("fingerprint") not in (None, encoder.config_dict()["fingerprint"]):
            logger.warning(f"speech encoder {encoder.folder} differs from the one the model was trained with")
        self.audio_encoder = encoder

    # -----------------------------------------------------------------------------------------------------------------
    # Steps of __call__
    # -----------------------------------------------------------------------------------------------------------------
    def check_inputs(
        self,
        poses: PoseSequence,
        audio: Audio | None,
        height: int | None,
        width: int | None,
        sampling: VideoSampling,
        decode_chunk_size: int,
        output_type: str,
        frame_callback: Callable | None,
    ) -> tuple[int, int]:
        """Raise :class:`MmgtError` (a ValueError) naming the argument and the problem; returns (height, width)."""
        if not isinstance(poses, PoseSequence) or poses.num_frames == 0:
            got = f"{poses.num_frames} frames" if isinstance(poses, PoseSequence) else type(poses).__name__
            raise MmgtError(f"poses must be a non-empty PoseSequence, got {got}")
        if round(poses.fps, 3) != FPS:
            raise MmgtError(f"poses run at {poses.fps:g} fps; stage II works at {FPS} fps")
        if audio is not None and not isinstance(audio, Audio):
            raise MmgtError(f"audio must be an mmgt.utils.audio_io.Audio (or None), got {type(audio).__name__}")
        height = poses.height if height is None else height  # default: the pose canvas
        width = poses.width if width is None else width
        factor = max(self.vae_scale_factor, self.pose_guider.downsample_factor)
        for name, value in (("height", height), ("width", width)):
            if int(value) != value or value <= 0 or value % factor:
                raise MmgtError(f"{name} must be a positive multiple of {factor} (the VAE factor), got {value}")
        if decode_chunk_size < 1:
            raise MmgtError(f"decode_chunk_size must be >= 1, got {decode_chunk_size}")
        branches = len(self.audio_adapter.config.branches)
        if len(sampling.branch_weights) != branches:
            raise MmgtError(
                f"branch_weights needs {branches} values (one per MM-HAA branch), got {sampling.branch_weights}"
            )
        if sampling.window_frames > self.unet.config.motion_max_seq_length:  # the temporal position encoding's length
            raise MmgtError(
                f"window_frames must be <= {self.unet.config.motion_max_seq_length}, got {sampling.window_frames}"
            )
        if output_type not in OUTPUT_TYPES or (output_type == "latent" and frame_callback is not None):
            raise MmgtError(
                f"output_type must be one of {OUTPUT_TYPES} (no frame_callback with 'latent'), got {output_type!r}"
            )
        speech = self.config.audio_features["speech"]
        if audio is not None and speech.get("type") != "mel" and self.audio_encoder is None:
            raise MmgtError(
                f"this model reads wav2vec2 features ({speech.get('folder')}); attach the encoder with "
                "set_audio_encoder()"
            )
        return int(height), int(width)

    def encode_reference_image(
        self, image: np.ndarray, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(H, W, 3) uint8 -> the VAE latent (1, C, h, w) (posterior mode, scaled) and the CLIP embedding (1, 1, D)."""
        pixels = torch.tensor(image).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)  # (1, 3, H, W)
        latent = self.vae.encode(pixels.to(device, self.vae.dtype)).latent_dist.mode()
        latent = latent * self.vae.config.scaling_factor  # (1, C, h, w)
        clip_in = clip_pixels(pixels, self.image_encoder.config.image_size).to(device, self.image_encoder.dtype)
        clip_embeds = self.image_encoder(clip_in).image_embeds[:, None]  # (1, 1, D)
        return latent.to(dtype), clip_embeds.to(dtype)

    def prepare_reference_features(
        self, ref_latents: torch.Tensor, clip_embeds: torch.Tensor, branches: tuple[str, ...]
    ) -> dict[str, torch.Tensor]:
        """Run the ReferenceNet once (write mode, timestep 0); returns layer -> (n_branches, N, C) features.

        The unconditional branch's row is the ReferenceNet run with a zero CLIP embedding, read only with
        ``uncond_reference="zero_clip"`` (with "skip", the default and the release's behaviour, it is never read); the
        other branches share the conditional features.
        """
        has_uncond = "uncond" in branches
        embeds = torch.cat([torch.zeros_like(clip_embeds), clip_embeds]) if has_uncond else clip_embeds  # (R, 1, D)
        latents = ref_latents.expand(embeds.shape[0], -1, -1, -1)
        features = encode_reference(self.reference_unet, latents, embeds, AttnInputs())
        rows = [0 if b == "uncond" else int(has_uncond) for b in branches]
        if rows == list(range(embeds.shape[0])):
            return features
        return {name: value[rows] for name, value in features.items()}

    def prepare_audio_features(self, audio: Audio | None, num_frames: int) -> np.ndarray | None:
        """(F, L, D) per-frame audio features for exactly ``num_frames`` frames, or None without audio.

        The waveform (at the models' 16 kHz) is first cut or zero-padded to the video's duration: audio past the
        last frame is not encoded, and frames past the end of the audio hear silence (the writer pads the muxed
        audio the same way).
        """
        if audio is None:
            return None
        speech = audio.at(SAMPLE_RATE)
        samples = -(-num_frames * SAMPLE_RATE // FPS)  # ceil(F / 25 s * sr)
        if abs(len(speech.wave) - samples) > SAMPLE_RATE // FPS:
            logger.warning(
                f"audio lasts {speech.duration:.2f} s but the poses {num_frames / FPS:.2f} s; "
                "the audio is cut or padded with silence"
            )
        wave = np.pad(speech.wave[:samples], (0, max(0, samples - len(speech.wave))))
        features = stage2_audio_features(wave, SAMPLE_RATE, self.audio_encoder)  # (F, L, D), as the dataset
        return pad_to(np.asarray(features, dtype=np.float32), num_frames)

    def prepare_window(
        self,
        poses: PoseSequence,
        frames: list[int],
        audio_features: np.ndarray | None,
        branches: tuple[str, ...],
    ) -> WindowConditions:
        """Pose features, branch masks and audio tokens of one window (``poses`` in pixels of the output)."""
        device, dtype = self._execution_device, self.unet.dtype
        window = poses.replace(keypoints=poses.keypoints[frames], scores=poses.scores[frames])
        rendered = render_pose_sequence(window, mouth=self.config.pose_mouth)  # (w, H, W, 3) uint8
        rendered = torch.from_numpy(rendered).permute(0, 3, 1, 2)  # (w, 3, H, W)
        pose_features = self.pose_guider(rendered.to(device, self.pose_guider.dtype) / 255.0).to(dtype)
        masks = [torch.from_numpy(m).to(device, dtype) for m in branch_masks(window, poses.height, poses.width)]
        zeros = self.audio_projection.unconditional_tokens(len(frames)).to(dtype)  # (w, N, D)
        tokens = zeros
        if audio_features is not None:
            # Frame k reads frames k-2..k+2 of the whole sequence (clamped at its ends), as in training.
            context = stack_context(np.arange(len(audio_features)), self.audio_projection.config.seq_len // 2)
            stacked = torch.from_numpy(audio_features[context[frames]])[None]  # (1, w, 5, L, D)
            tokens = self.audio_projection(stacked.to(device, self.audio_projection.dtype)).to(dtype)  # (w, N, D)
        audio_tokens = torch.cat([tokens if b == "full" else zeros for b in branches])  # (n * w, N, D)
        return WindowConditions(pose_features, masks, audio_tokens)

    def prepare_latents(
        self, num_frames: int, height: int, width: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        """(1, C, F, h, w) initial noise, scaled by the scheduler's ``init_noise_sigma``."""
        shape = (
            1,
            self.unet.config.in_channels,
            num_frames,
            height // self.vae_scale_factor,
            width // self.vae_scale_factor,
        )
        latents = randn_tensor(shape, generator=generator, device=self._execution_device, dtype=self.unet.dtype)
        return latents * self.scheduler.init_noise_sigma

    def predict(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        windows: list[list[int]],
        conditions: Callable[[int], WindowConditions],
        clip_embeds: torch.Tensor,
        attn_inputs: AttnInputs,
        guidance: Guidance,
        uncond_reference: str,
        on_window: Callable[[], object],
    ) -> torch.Tensor:
        """The guided model output for the whole sequence: each window's prediction, averaged where windows overlap.

        Args:
            latents: (1, C, F, h, w) scheduler-scaled model input.
            clip_embeds: (n_branches, 1, D) per-branch CLIP embeddings.
            attn_inputs: read-mode inputs holding the reference features; audio/masks are set per window.
            uncond_reference: ``"skip"``: the unconditional branch runs without reference attention.

        Returns:
            (1, C, F, h, w).
        """
        total = torch.zeros_like(latents)
        counts = torch.zeros(latents.shape[2], device=latents.device, dtype=latents.dtype)
        n = len(guidance.branches)
        # "skip": the unconditional branch runs without reference attention, exactly as training's image dropout.
        keep = torch.tensor([not (b == "uncond" and uncond_reference == "skip") for b in guidance.branches])
        for k, frames in enumerate(windows):
            cond = conditions(k)
            index = torch.tensor(frames, device=latents.device)
            inputs = replace(  # shares the reference-feature dict
                attn_inputs, audio_tokens=cond.audio_tokens, branch_masks=cond.branch_masks, num_frames=len(frames)
            )
            window = latents[:, :, index].repeat(n, 1, 1, 1, 1)  # (n, C, w, h, w): one copy per branch
            out = denoise_with_reference_dropout(
                self.unet, window, timestep, clip_embeds, cond.pose_features, inputs, keep
            )  # (n, C, w, h, w)
            total.index_add_(2, index, guidance.combine(out))
            counts.index_add_(0, index, torch.ones_like(index, dtype=counts.dtype))
            on_window()
        return total / counts.view(1, 1, -1, 1, 1)  # every frame is in >= 1 window

    def iter_decoded(self, latents: torch.Tensor, chunk_size: int) -> Iterator[np.ndarray]:
        """Decode (1, C, F, h, w) latents ``chunk_size`` frames at a time; yields (n, H, W, 3) uint8 chunks."""
        latents = latents / self.vae.config.scaling_factor
        for start in range(0, latents.shape[2], chunk_size):
            chunk = latents[0, :, start : start + chunk_size].permute(1, 0, 2, 3)  # (n, C, h, w)
            pixels = self.vae.decode(chunk.to(self.vae.dtype)).sample.float()  # (n, 3, H, W) in [-1, 1]
            pixels = (pixels / 2 + 0.5).clamp(0, 1).mul(255).round().to(torch.uint8)
            yield pixels.permute(0, 2, 3, 1).cpu().numpy()

    def _extra_step_kwargs(self, generator: torch.Generator | None) -> dict:
        """``generator`` for the schedulers whose ``step`` draws noise (e.g. Euler ancestral); DDIM uses eta = 0."""
        return {"generator": generator} if "generator" in inspect.signature(self.scheduler.step).parameters else {}

    # -----------------------------------------------------------------------------------------------------------------
    # Sampling
    # -----------------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        reference_image: np.ndarray | Image.Image,
        poses: PoseSequence,
        audio: Audio | None = None,
        *,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        audio_guidance_scale: float | None = None,
        branch_weights: tuple[float, ...] | None = None,
        uncond_reference: str | None = None,
        window_frames: int | None = None,
        overlap: int | None = None,
        closed_loop: bool | None = None,
        generator: torch.Generator | None = None,
        decode_chunk_size: int = 8,
        frame_callback: Callable[[np.ndarray], None] | None = None,
        output_type: str = "np",
        progress: bool = True,
        condition_cache_mb: float = 16.0,
    ) -> PoseToVideoPipelineOutput:
        """Generate one video frame per pose frame.

        Every sampling argument left at ``None`` takes the value saved with the model (:attr:`sampling`).

        Args:
            reference_image: (H0, W0, 3) uint8 RGB or a PIL image of the person; fitted to the output size by
                :func:`~mmgt.pipelines.reference.fit_image` (give it the aspect ratio of the pose canvas: poses are
                rescaled per axis).
            poses: the pose sequence at 25 fps (pixels of ``poses.width`` x ``poses.height``); F frames.
            audio: the speech, or None for pose-only mode (zero audio tokens, spec §5.7).
            height, width: output size, multiples of 8; default: the pose canvas size.
            num_inference_steps: scheduler steps (spec: 30).
            guidance_scale: CFG scale s on the v-output (spec: 3.5); 1 turns CFG off.
            audio_guidance_scale: separate audio scale s_a (three-branch CFG, see
                :class:`~mmgt.diffusion.guidance.Guidance`); None in the model = one scale for image and audio.
            branch_weights: MM-HAA branch weights (w_global, w_face_hands, w_lips) (spec §5.3: (1, 1, 2)).
            uncond_reference: ``"skip"`` or ``"zero_clip"`` (see the class docstring).
            window_frames, overlap, closed_loop: the context windows (spec §5.7: 12, 4, wrapped).
            generator: seeds the initial noise (and stochastic schedulers).
            decode_chunk_size: frames per VAE decode call.
            frame_callback: receives the decoded frames in chunks of ``decode_chunk_size`` (N, H, W, 3) uint8; they
                are then not kept (``frames`` is None), so memory does not grow with the video length.
            output_type: ``"np"`` (uint8 frames) or ``"latent"`` (the final latents, undecoded).
            progress: show a progress bar (one tick per window per step).
            condition_cache_mb: memory for per-window pose features, masks and audio tokens kept across steps;
                used only when every window fits (short videos), so peak memory stays flat in the video length;
                0 never caches.

        Returns:
            :class:`PoseToVideoPipelineOutput` with ``frames`` (F, H, W, 3) uint8, or None when streamed.
        """
        sampling = self.sampling.override(**VideoSampling.values_in(locals()))  # None: the saved value
        height, width = self.check_inputs(
            poses, audio, height, width, sampling, decode_chunk_size, output_type, frame_callback
        )
        windows = context_windows(poses.num_frames, sampling.window_frames, sampling.overlap, sampling.closed_loop)
        # Without audio the image and full branches would be identical: plain CFG.
        guidance = Guidance(sampling.guidance_scale, None if audio is None else sampling.audio_guidance_scale)
        branches, dtype = guidance.branches, self.unet.dtype
        image = fit_image(reference_image, height, width)
        if abs(poses.width / poses.height - width / height) > 0.01 * width / height:
            logger.warning(f"poses are {poses.width}x{poses.height}, the output {width}x{height}: poses are stretched")
        poses = pose_at_size(poses, width, height)  # once: windows, renders and masks use these pixels

        # 1. Reference: VAE latent and CLIP image embedding.
        ref_latents, clip_embeds = self.encode_reference_image(image, self._execution_device, dtype)
        # 2. ReferenceNet once per video (write mode), for the conditional and the zero-CLIP branch.
        reference = AttnInputs(
            mode="read",
            reference_features=self.prepare_reference_features(ref_latents, clip_embeds, branches),
            branch_weights=sampling.branch_weights,
        )
        branch_embeds = torch.cat([torch.zeros_like(clip_embeds) if b == "uncond" else clip_embeds for b in branches])
        # 3. Audio features for all F frames (projected per window in step 5).
        audio_features = self.prepare_audio_features(audio, poses.num_frames)
        # 4. Timesteps and initial noise for the whole sequence.
        self.scheduler.set_timesteps(sampling.num_inference_steps, device=self._execution_device)
        latents = self.prepare_latents(poses.num_frames, height, width, generator)
        extra_step_kwargs = self._extra_step_kwargs(generator)

        # 5. Denoise: per timestep, every window (cached conditions), averaged on overlaps, one scheduler step.
        cache = WindowCache(condition_cache_mb * 2**20, len(windows))

        def conditions(k: int) -> WindowConditions:
            return cache.get(k, lambda: self.prepare_window(poses, windows[k], audio_features, branches))

        total = len(self.scheduler.timesteps) * len(windows)
        with self.progress_bar(total=total) if progress else tqdm(total=total, disable=True) as bar:
            for t in self.scheduler.timesteps:
                model_input = self.scheduler.scale_model_input(latents, t)
                prediction = self.predict(
                    model_input,
                    t,
                    windows,
                    conditions,
                    branch_embeds,
                    reference,
                    guidance,
                    sampling.uncond_reference,
                    bar.update,
                )
                latents = self.scheduler.step(prediction, t, latents, **extra_step_kwargs).prev_sample

        # 6. Decode in chunks: streamed to the callback, or collected.
        if output_type == "latent":
            return PoseToVideoPipelineOutput(frames=latents)
        frames = None if frame_callback else np.zeros((poses.num_frames, height, width, 3), np.uint8)
        start = 0
        for chunk in self.iter_decoded(latents, decode_chunk_size):
            if frame_callback:
                frame_callback(chunk)
            else:
                frames[start : start + len(chunk)] = chunk
            start += len(chunk)
        self.maybe_free_model_hooks()
        return PoseToVideoPipelineOutput(frames=frames)


def _check_audio_projection(projection: AudioProjection, spec: dict) -> None:
    """The projection must read what the feature recipe produces: (L, D) per frame, an odd context window."""
    cfg = projection.config
    if (cfg.num_layers, cfg.input_dim) != (spec["num_layers"], spec["dim"]):
        raise MmgtError(
            f"audio_projection expects {cfg.num_layers} layers x {cfg.input_dim} per frame, but audio_features "
            f"({spec['speech'].get('type', spec['speech'].get('folder'))}) gives {spec['num_layers']} x {spec['dim']}"
        )
    if cfg.seq_len % 2 != 1:
        raise MmgtError(f"audio_projection.seq_len must be odd (frames k-m..k+m), got {cfg.seq_len}")

"""Stage II inference: reference image + pose sequence (+ speech) -> a video of any length (spec §5.7, §6 steps 7-10).

The video is denoised in overlapping context windows (:func:`~mmgt.pipelines.sliding_window.context_windows`); at
every diffusion step each window is run through the UNet and the predictions of overlapping windows are averaged per
frame before ONE scheduler step on the whole latent sequence. The ReferenceNet runs once per video.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DiffusionPipeline, SchedulerMixin, UNet2DConditionModel, UNetMotionModel
from diffusers.utils import BaseOutput, logging
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from tqdm.auto import tqdm
from transformers import CLIPVisionModelWithProjection

from mmgt.audio.encoders import SpeechEncoder
from mmgt.audio.features import feature_spec, stage2_audio_features
from mmgt.audio.windows import pad_to, stack_context
from mmgt.constants import FPS
from mmgt.contracts import PoseSequence
from mmgt.diffusion.guidance import cfg_combine
from mmgt.errors import MmgtError
from mmgt.models.attention_inputs import AttnInputs
from mmgt.models.audio_attention import AudioAttentionAdapter
from mmgt.models.audio_projection import AudioProjection
from mmgt.models.denoising_unet import denoise, encode_reference, install_stage2_processors
from mmgt.models.pose_guider import PoseGuider
from mmgt.pipelines.sliding_window import context_windows
from mmgt.pose.masks import branch_masks
from mmgt.pose.render import pose_at_size, render_pose_sequence
from mmgt.utils.audio_io import check_wave

logger = logging.get_logger(__name__)

# OpenAI CLIP's preprocessing constants (the feature extractor of sd-image-variations-diffusers).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
OUTPUT_TYPES = ("np", "latent")
UNCOND_REFERENCE = ("skip", "zero_clip")  # what the unconditional CFG branch sees of the reference


def fit_reference(image: np.ndarray | Image.Image, height: int, width: int) -> np.ndarray:
    """Resize ``image`` to cover ``height`` x ``width`` (aspect ratio kept), then centre-crop to exactly that size.

    Returns:
        (height, width, 3) uint8 RGB.
    """
    image = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
        raise MmgtError(f"reference_image must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}")
    h0, w0 = image.shape[:2]
    if (h0, w0) == (height, width):
        return image
    scale = max(height / h0, width / w0)
    size = (max(width, round(w0 * scale)), max(height, round(h0 * scale)))  # cv2 wants (w, h)
    # Area averaging when shrinking (no aliasing), bilinear when enlarging.
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (size[1] - height) // 2, (size[0] - width) // 2
    return np.ascontiguousarray(resized[top : top + height, left : left + width])


def clip_pixels(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """CLIP image preprocessing in torch, for training batches and inference alike.

    As ``CLIPImageProcessor`` does: bicubic resize of the short side to ``image_size``, centre crop, CLIP mean/std.

    Args:
        images: (B, 3, H, W) RGB in [-1, 1] (the VAE's input range).
        image_size: the vision model's ``config.image_size`` (224 for ViT-L/14).

    Returns:
        (B, 3, image_size, image_size) normalised pixel values.
    """
    h, w = images.shape[-2:]
    scale = image_size / min(h, w)
    size = (max(image_size, round(h * scale)), max(image_size, round(w * scale)))
    x = F.interpolate((images.float() + 1) / 2, size=size, mode="bicubic", antialias=True, align_corners=False)
    top, left = (size[0] - image_size) // 2, (size[1] - image_size) // 2
    x = x[..., top : top + image_size, left : left + image_size].clamp(0, 1)
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


@dataclass
class PoseToVideoPipelineOutput(BaseOutput):
    """``frames``: (F, H, W, 3) uint8 RGB; ``None`` when the frames were streamed to ``frame_callback``; the
    (1, C, F, h, w) latents for ``output_type="latent"``."""

    frames: np.ndarray | torch.Tensor | None


@dataclass(frozen=True)
class Guidance:
    """Which conditioning branches make up the UNet batch and how their predictions combine (spec §5.7).

    Branches: ``uncond`` (zero CLIP embedding in ReferenceNet and UNet, zero audio tokens), ``image`` (CLIP, zero
    audio), ``full`` (CLIP and audio). Pose features and masks are shared by all branches.

    * ``audio_scale`` None, ``scale`` > 1: (uncond, full), u + s (c - u), the released CFG.
    * ``audio_scale`` set: (uncond, image, full), u + s (i - u) + s_a (c - i): image guidance, then audio guidance on
      top of it (the compositional form of InstructPix2Pix). With s_a == s it equals the two-branch form.
    * otherwise: (full,) alone, no guidance.
    """

    scale: float
    audio_scale: float | None = None

    @property
    def branches(self) -> tuple[str, ...]:
        if self.audio_scale is not None:
            return ("uncond", "image", "full")
        return ("uncond", "full") if self.scale > 1.0 else ("full",)

    def combine(self, out: torch.Tensor) -> torch.Tensor:
        """(n_branches, C, F, h, w) UNet outputs -> (1, C, F, h, w) guided prediction (on the v-output)."""
        if out.shape[0] == 1:
            return out
        if out.shape[0] == 2:
            return cfg_combine(out[:1], out[1:], self.scale)
        uncond, image, full = out[:1], out[1:2], out[2:]
        return cfg_combine(uncond, image, self.scale) + self.audio_scale * (full - image)


@dataclass
class WindowConditions:
    """The timestep-independent inputs of one context window (w frames, n guidance branches).

    Attributes:
        pose_features: (w, C0, h, w) PoseGuider output, shared by the branches.
        region_masks: per UNet level (w, 3, h_l, w_l) MM-HAA branch masks, shared by the branches.
        audio_tokens: (n * w, N, D) audio tokens, branch-major (zeros in the branches without audio).
    """

    pose_features: torch.Tensor
    region_masks: list[torch.Tensor]
    audio_tokens: torch.Tensor

    @property
    def nbytes(self) -> int:
        tensors = [self.pose_features, self.audio_tokens, *self.region_masks]
        return sum(t.numel() * t.element_size() for t in tensors)


class _WindowCache:
    """Window conditions kept across timesteps when all ``num_windows`` of them fit in ``budget`` bytes.

    All or nothing: a short video keeps every window's conditions (the speed-up matters most there, and its memory
    is small), a long one recomputes them at every step, so peak memory does not grow with the length (a partial
    cache filled up to its budget made a 60 s run peak 1.49x a 6 s run). At SD-1.5 size a 12-frame window costs
    about 66 MB in float32, almost all of it pose features (12 x 320 x 64 x 64); masks add 0.8 MB and audio
    tokens 1.2 MB per branch.
    """

    def __init__(self, budget: float, num_windows: int):
        self.budget, self.num_windows, self.used, self.items = budget, num_windows, 0, {}

    def get(self, key: int, make: Callable[[], WindowConditions]) -> WindowConditions:
        if key in self.items:
            return self.items[key]
        value = make()
        if not self.items and value.nbytes * self.num_windows > self.budget:
            self.budget = 0  # the whole video does not fit: cache nothing
        if self.used + value.nbytes <= self.budget:
            self.items[key], self.used = value, self.used + value.nbytes
        return value


class PoseToVideoPipeline(DiffusionPipeline):
    """MMGT stage II for any length: reference image + pose sequence (+ speech) -> video frames.

    Components: ``vae``, ``image_encoder`` (CLIP vision with projection), ``reference_unet`` (ReferenceNet, 2D),
    ``unet`` (UNetMotionModel), ``pose_guider``, ``audio_projection``, ``audio_adapter`` (MM-HAA weights, its own
    folder), ``scheduler`` (saved by training with ``make_stage2_scheduler``). The reference/MM-HAA attention
    processors are installed in ``__init__``, so ``from_pretrained`` returns a working pipeline.

    Config: ``audio_features`` (the stage-2 :func:`mmgt.audio.features.feature_spec` the audio projection was
    trained on),
    ``region_scales`` (MM-HAA branch weights at inference, spec §5.3: (1, 1, 2)), ``window_frames``/``overlap``
    (context windows, spec §5.7: 12/4), ``closed_loop`` (wrap the last window to the start, as released) and
    ``uncond_reference``: what the unconditional CFG branch sees of the reference. ``"skip"`` (default, our decision):
    no ReferenceNet features, exactly what training's image dropout shows the model ("zero the CLIP embedding and
    skip ReferenceNet", spec §5.5), so the branch CFG extrapolates from is one the model was trained on.
    ``"zero_clip"``: the released sampler's ReferenceNet run with a zero CLIP embedding (spec §5.7), a branch
    training never produces; kept to reproduce the release. ``pose_mouth``: whether the pose images show the
    jaw-line and lip landmarks, as the model was trained (``data.pose_mouth``); without them the mouth comes from the
    audio alone.

    Modules run in whatever train/eval mode they are in (``from_pretrained`` gives eval mode); call ``.eval()`` on
    modules taken from a training loop before sampling.

    Example:
        >>> pipe = PoseToVideoPipeline.from_pretrained("runs/stage2/video/final")  # doctest: +SKIP
        >>> out = pipe(read_image("ref.png"), PoseSequence.load("poses.npz"), audio=wave, sample_rate=16000)
        >>> save_video("out.mp4", out.frames, audio=wave, sample_rate=16000)
    """

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
        region_scales: list[float] | tuple[float, ...] = (1.0, 1.0, 2.0),
        window_frames: int = 12,
        overlap: int = 4,
        closed_loop: bool = True,
        uncond_reference: str = "skip",
        pose_mouth: bool = True,
    ):
        super().__init__()
        audio_features = audio_features or feature_spec(None, stage=2)
        _check_audio_projection(audio_projection, audio_features)
        context_windows(1, window_frames, overlap)  # validates window/overlap
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
        self.register_to_config(
            audio_features=audio_features,
            region_scales=[float(s) for s in region_scales],
            window_frames=int(window_frames),
            overlap=int(overlap),
            closed_loop=bool(closed_loop),
            uncond_reference=str(uncond_reference),
            pose_mouth=bool(pose_mouth),
        )
        if uncond_reference not in UNCOND_REFERENCE:
            raise MmgtError(f"uncond_reference must be one of {UNCOND_REFERENCE}, got {uncond_reference!r}")
        install_stage2_processors(unet, reference_unet, audio_adapter)  # processors are never saved
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.audio_encoder: SpeechEncoder | None = None

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
        audio: np.ndarray | None,
        sample_rate: int,
        height: int | None,
        width: int | None,
        num_inference_steps: int,
        region_scales: tuple[float, ...],
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
        height = poses.height if height is None else height  # default: the pose canvas
        width = poses.width if width is None else width
        factor = max(self.vae_scale_factor, self.pose_guider.downsample_factor)
        for name, value in (("height", height), ("width", width)):
            if int(value) != value or value <= 0 or value % factor:
                raise MmgtError(f"{name} must be a positive multiple of {factor} (the VAE factor), got {value}")
        if num_inference_steps < 1 or decode_chunk_size < 1:
            raise MmgtError(
                f"num_inference_steps and decode_chunk_size must be >= 1, got {num_inference_steps}, "
                f"{decode_chunk_size}"
            )
        regions = len(self.audio_adapter.config.regions)
        if len(region_scales) != regions:
            raise MmgtError(f"region_scales needs {regions} values (one per MM-HAA branch), got {region_scales}")
        if output_type not in OUTPUT_TYPES or (output_type == "latent" and frame_callback is not None):
            raise MmgtError(
                f"output_type must be one of {OUTPUT_TYPES} (no frame_callback with 'latent'), got {output_type!r}"
            )
        if audio is not None:
            check_wave(audio, sample_rate, name="audio")
            speech = self.config.audio_features["speech"]
            if speech.get("type") != "mel" and self.audio_encoder is None:
                raise MmgtError(
                    f"this model reads wav2vec2 features ({speech.get('folder')}); attach the encoder "
                    "with set_audio_encoder()"
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

        Spec §5.7: the unconditional branch runs the ReferenceNet with a zero CLIP embedding (``uncond_reference``
        "zero_clip"; with "skip" its row is computed but not read); the other branches share the conditional features.
        """
        has_uncond = "uncond" in branches
        embeds = torch.cat([torch.zeros_like(clip_embeds), clip_embeds]) if has_uncond else clip_embeds  # (R, 1, D)
        latents = ref_latents.expand(embeds.shape[0], -1, -1, -1)
        features = encode_reference(self.reference_unet, latents, embeds, AttnInputs())
        rows = [0 if b == "uncond" else int(has_uncond) for b in branches]
        if rows == list(range(embeds.shape[0])):
            return features
        return {name: value[rows] for name, value in features.items()}

    def prepare_audio_features(self, audio: np.ndarray | None, sample_rate: int, num_frames: int) -> np.ndarray | None:
        """(F, L, D) per-frame audio features for exactly ``num_frames`` frames, or None without audio.

        The waveform is first cut or zero-padded to the video's duration: audio past the last frame is not encoded,
        and frames past the end of the audio hear silence (the writer pads the muxed audio the same way).
        """
        if audio is None:
            return None
        wave = check_wave(audio, sample_rate, name="audio")
        samples = -(-num_frames * int(sample_rate) // FPS)  # ceil(F / 25 s * sr)
        if abs(len(wave) - samples) > sample_rate // FPS:
            logger.warning(
                f"audio lasts {len(wave) / sample_rate:.2f} s but the poses {num_frames / FPS:.2f} s; "
                "the audio is cut or padded with silence"
            )
        wave = np.pad(wave[:samples], (0, max(0, samples - len(wave))))
        features = stage2_audio_features(wave, sample_rate, self.audio_encoder)  # (F, L, D), as the dataset
        return pad_to(np.asarray(features, dtype=np.float32), num_frames)

    def prepare_window(
        self,
        poses: PoseSequence,
        frames: list[int],
        audio_features: np.ndarray | None,
        branches: tuple[str, ...],
    ) -> WindowConditions:
        """Pose features, branch masks and audio tokens of one window (``poses`` already at the output size)."""
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
        on_window: Callable[[], object],
    ) -> torch.Tensor:
        """The guided model output for the whole sequence: each window's prediction, averaged where windows overlap.

        Args:
            latents: (1, C, F, h, w) scheduler-scaled model input.
            clip_embeds: (n_branches, 1, D) per-branch CLIP embeddings.
            attn_inputs: read-mode inputs holding the reference features; audio/masks are set per window.

        Returns:
            (1, C, F, h, w).
        """
        total = torch.zeros_like(latents)
        counts = torch.zeros(latents.shape[2], device=latents.device, dtype=latents.dtype)
        n = len(guidance.branches)
        for k, frames in enumerate(windows):
            cond = conditions(k)
            index = torch.tensor(frames, device=latents.device)
            inputs = replace(  # shares the reference-feature dict
                attn_inputs, audio_tokens=cond.audio_tokens, region_masks=cond.region_masks, num_frames=len(frames)
            )
            window = latents[:, :, index].repeat(n, 1, 1, 1, 1)  # (n, C, w, h, w): one copy per branch
            if self.config.uncond_reference == "skip" and guidance.branches[0] == "uncond":
                # The unconditional branch runs alone without reference attention, the rest read the features.
                w = len(frames)
                off = replace(inputs, mode="off", reference_features={}, audio_tokens=cond.audio_tokens[:w])
                on = replace(
                    inputs,
                    audio_tokens=cond.audio_tokens[w:],
                    reference_features={k: v[1:] for k, v in inputs.reference_features.items()},
                )
                out = torch.cat(
                    [
                        denoise(self.unet, window[:1], timestep, clip_embeds[:1], cond.pose_features, off),
                        denoise(self.unet, window[1:], timestep, clip_embeds[1:], cond.pose_features, on),
                    ]
                )
            else:
                out = denoise(self.unet, window, timestep, clip_embeds, cond.pose_features, inputs)
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
        audio: np.ndarray | None = None,
        sample_rate: int = 16000,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 30,
        guidance_scale: float = 3.5,
        audio_guidance_scale: float | None = None,
        region_scales: tuple[float, ...] | None = None,
        generator: torch.Generator | None = None,
        decode_chunk_size: int = 8,
        frame_callback: Callable[[np.ndarray], None] | None = None,
        output_type: str = "np",
        progress: bool = True,
        window_frames: int | None = None,
        overlap: int | None = None,
        closed_loop: bool | None = None,
        condition_cache_mb: float = 16.0,
    ) -> PoseToVideoPipelineOutput:
        """Generate one video frame per pose frame.

        Args:
            reference_image: (H0, W0, 3) uint8 RGB or a PIL image of the person; resized to cover the output size
                and centre-cropped (give it the aspect ratio of the pose canvas: poses are rescaled per axis).
            poses: the pose sequence at 25 fps (pixels of ``poses.width`` x ``poses.height``); F frames.
            audio: (N,) mono waveform, or None for pose-only mode (zero audio tokens, spec §5.7).
            sample_rate: rate of ``audio`` in Hz.
            height, width: output size, multiples of 8; default: the pose canvas size.
            num_inference_steps: scheduler steps (spec: 30).
            guidance_scale: CFG scale s on the v-output (spec: 3.5); <= 1 turns CFG off.
            audio_guidance_scale: separate audio scale s_a (three-branch CFG, see :class:`Guidance`); None = one
                scale for image and audio together, as released.
            region_scales: MM-HAA branch weights (w_g, w_fh, w_l); default ``config.region_scales``.
            generator: seeds the initial noise (and stochastic schedulers).
            decode_chunk_size: frames per VAE decode call.
            frame_callback: receives the decoded frames in chunks of ``decode_chunk_size`` (N, H, W, 3) uint8; they
                are then not kept (``frames`` is None), so memory does not grow with the video length.
            output_type: ``"np"`` (uint8 frames) or ``"latent"`` (the final latents, undecoded).
            progress: show a progress bar (one tick per window per step).
            window_frames, overlap, closed_loop: override the context-window config for this call.
            condition_cache_mb: memory for per-window pose features, masks and audio tokens kept across steps;
                windows beyond it are recomputed at every step (their rendering and pose guider are cheap next to
                the UNet). Used only when every window fits (short videos), so peak memory stays flat in the video
                length; 0 never caches.

        Returns:
            :class:`PoseToVideoPipelineOutput` with ``frames`` (F, H, W, 3) uint8, or None when streamed.
        """
        scales = tuple(float(s) for s in (self.config.region_scales if region_scales is None else region_scales))
        height, width = self.check_inputs(
            poses,
            audio,
            sample_rate,
            height,
            width,
            num_inference_steps,
            scales,
            decode_chunk_size,
            output_type,
            frame_callback,
        )
        windows = context_windows(
            poses.num_frames,
            self.config.window_frames if window_frames is None else window_frames,
            self.config.overlap if overlap is None else overlap,
            self.config.closed_loop if closed_loop is None else closed_loop,
        )
        if len(windows[0]) > self.unet.config.motion_max_seq_length:  # the temporal position encoding's length
            raise MmgtError(
                f"window_frames must be <= {self.unet.config.motion_max_seq_length}, got windows of {len(windows[0])}"
            )
        # Without audio the image and full branches would be identical: plain CFG.
        guidance = Guidance(guidance_scale, None if audio is None else audio_guidance_scale)
        branches, dtype = guidance.branches, self.unet.dtype
        image = fit_reference(reference_image, height, width)
        if abs(poses.width / poses.height - width / height) > 0.01 * width / height:
            logger.warning(f"poses are {poses.width}x{poses.height}, the output {width}x{height}: poses are stretched")

        # 1. Reference: VAE latent and CLIP image embedding.
        ref_latents, clip_embeds = self.encode_reference_image(image, self._execution_device, dtype)
        # 2. ReferenceNet once per video (write mode), for the conditional and the zero-CLIP branch.
        reference = AttnInputs(
            mode="read",
            reference_features=self.prepare_reference_features(ref_latents, clip_embeds, branches),
            region_scales=scales,
        )
        branch_embeds = torch.cat([torch.zeros_like(clip_embeds) if b == "uncond" else clip_embeds for b in branches])
        # 3. Audio features for all F frames (projected per window in step 5).
        audio_features = self.prepare_audio_features(audio, sample_rate, poses.num_frames)
        # 4. Timesteps and initial noise for the whole sequence.
        self.scheduler.set_timesteps(num_inference_steps, device=self._execution_device)
        latents = self.prepare_latents(poses.num_frames, height, width, generator)
        extra_step_kwargs = self._extra_step_kwargs(generator)

        # 5. Denoise: per timestep, every window (cached conditions), averaged on overlaps, one scheduler step.
        poses_out = pose_at_size(poses, width, height)
        cache = _WindowCache(condition_cache_mb * 2**20, len(windows))

        def conditions(k: int) -> WindowConditions:
            return cache.get(k, lambda: self.prepare_window(poses_out, windows[k], audio_features, branches))

        total = len(self.scheduler.timesteps) * len(windows)
        with self.progress_bar(total=total) if progress else tqdm(total=total, disable=True) as bar:
            for t in self.scheduler.timesteps:
                model_input = self.scheduler.scale_model_input(latents, t)
                prediction = self.predict(
                    model_input, t, windows, conditions, branch_embeds, reference, guidance, bar.update
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

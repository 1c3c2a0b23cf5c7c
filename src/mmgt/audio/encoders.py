"""Pretrained speech encoders (WavLM, wav2vec2, HuBERT) loaded from local folders and aligned to the 25 fps grid.

Two alignment recipes, both producing exactly T = ceil(duration * 25) frames:

- ``interpolate="after"`` (stage 1, WavLM-Large; spec §3.2): run the model at its native 50 Hz, append a copy of
  the last frame, then linearly interpolate the hidden states to T frames.
- ``interpolate="before_transformer"`` (stage 2, wav2vec2-base-960h; spec §5.4): the convolutional features are
  linearly interpolated to T frames *before* the transformer, so the transformer itself runs at 25 fps.

Long audio is processed in chunks (``chunk_seconds``, default 30 s) that each see ``context_seconds`` (default 4 s)
of extra audio on both sides; only the centre of each chunk is kept. For the convolutional front end with
``feat_extract_norm="layer"`` and any layer whose receptive field fits in the context this is exact; the
transformer's global self-attention (and wav2vec2-base's per-channel GroupNorm over time) only sees the chunk, which
is an approximation with negligible effect at these lengths. Audio shorter than one chunk is processed in one pass,
exactly like the reference recipes.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mmgt.constants import FPS, SAMPLE_RATE, num_frames_for
from mmgt.errors import MmgtError, ModelFolderError
from mmgt.utils.audio_io import check_wave, resample
from mmgt.utils.files import error_summary

LAYER_MODES = ("last", "all")
INTERPOLATE_MODES = ("after", "before_transformer")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_NORM_EPS = 1e-7  # same epsilon as transformers' Wav2Vec2FeatureExtractor zero-mean unit-variance normalisation


# The two stages' recipes (spec §3.2, §5.4): which layers, where the 50 -> 25 fps interpolation happens, and the
# epsilon of the waveform normalisation. Stage 1's reference code normalises with F.layer_norm over the whole waveform
# (epsilon 1e-5, not transformers' 1e-7): the two differ on quiet audio only (by 1e-2 relative at -80 dB on a tiny
# WavLM, tests/official/test_stage1_audio.py), but the released SMGA was trained on layer_norm's.
STAGE_RECIPES: dict[int, dict] = {
    1: {"layers": "last", "interpolate": "after", "normalize_eps": 1e-5, "what": "WavLM"},
    2: {"layers": "all", "interpolate": "before_transformer", "normalize_eps": _NORM_EPS, "what": "wav2vec2"},
}


class SpeechEncoder:
    """A frozen transformers speech model that turns a waveform into (T, L, D) features at 25 fps.

    Build it with :meth:`from_pretrained`; ``encode`` is deterministic (eval mode, no SpecAugment, no LayerDrop).

    Attributes:
        model: the transformers model (``WavLMModel``, ``Wav2Vec2Model``, ``HubertModel``, ...), in eval mode.
        folder: the local folder it was loaded from.
        layers: ``"last"`` (L = 1, the model output) or ``"all"`` (L = num_hidden_layers, hidden states 1..L).
        interpolate: ``"after"`` or ``"before_transformer"`` (see the module docstring).
        normalize: whether the waveform is normalised to zero mean and unit variance first.
        normalize_eps: the epsilon of that normalisation, (x - mean) / sqrt(var + eps).
        sampling_rate: the rate the model expects (16 kHz for all released checkpoints).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        folder: Path,
        layers: str = "last",
        interpolate: str = "after",
        normalize: bool = False,
        sampling_rate: int = SAMPLE_RATE,
        chunk_seconds: float = 30.0,
        context_seconds: float = 4.0,
        normalize_eps: float = _NORM_EPS,
    ):
        if layers not in LAYER_MODES:
            raise MmgtError(f"SpeechEncoder: layers must be one of {LAYER_MODES}, got {layers!r}")
        if interpolate not in INTERPOLATE_MODES:
            raise MmgtError(f"SpeechEncoder: interpolate must be one of {INTERPOLATE_MODES}, got {interpolate!r}")
        if not chunk_seconds > 0 or context_seconds < 0:
            raise MmgtError(
                f"SpeechEncoder: need chunk_seconds > 0 and context_seconds >= 0, got "
                f"{chunk_seconds} and {context_seconds}"
            )
        self.model = model.eval().requires_grad_(False)
        self.folder = Path(folder)
        self.layers = layers
        self.interpolate = interpolate
        self.normalize = bool(normalize)
        self.normalize_eps = float(normalize_eps)
        self.sampling_rate = int(sampling_rate)
        self.chunk_seconds = float(chunk_seconds)
        self.context_seconds = float(context_seconds)
        strides, kernels = list(model.config.conv_stride), list(model.config.conv_kernel)
        # Conv front end geometry: model frame j covers samples [hop * j, hop * j + receptive_field).
        self.hop = math.prod(strides)
        self.receptive_field = 1 + sum((k - 1) * math.prod(strides[:i]) for i, k in enumerate(kernels))

    # -----------------------------------------------------------------------------------------------------------------
    # Loading
    # -----------------------------------------------------------------------------------------------------------------
    @classmethod
    def for_stage(cls, folder: str | Path, stage: int, **kwargs) -> SpeechEncoder:
        """The speech encoder of a stage's audio recipe (spec §3.2, §5.4), loaded from ``folder``.

        Stage 1 reads the last layer interpolated to 25 fps after the transformer (WavLM-Large in the release);
        stage 2 reads every layer, interpolated before the transformer (wav2vec2-base). ``kwargs`` go to
        :meth:`from_pretrained` (device, dtype, chunking).
        """
        if stage not in STAGE_RECIPES:
            raise MmgtError(f"stage must be 1 or 2, got {stage!r}")
        return cls.from_pretrained(folder, **{**STAGE_RECIPES[stage], **kwargs})

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        layers: str = "last",
        interpolate: str = "after",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        normalize: bool | None = None,
        chunk_seconds: float = 30.0,
        context_seconds: float = 4.0,
        what: str = "speech encoder",
        normalize_eps: float = _NORM_EPS,
    ) -> SpeechEncoder:
        """Load a speech model from a local folder (never from the network).

        Args:
            folder: folder with ``config.json`` and ``model.safetensors``/``pytorch_model.bin`` (optionally
                ``preprocessor_config.json``), as written by ``save_pretrained`` or downloaded from the Hub.
            layers: ``"last"`` or ``"all"``.
            interpolate: ``"after"`` (stage 1) or ``"before_transformer"`` (stage 2).
            device: torch device for the model.
            dtype: parameter dtype; outputs are always returned as float32.
            normalize: waveform zero-mean unit-variance normalisation. None = automatic: on if
                ``preprocessor_config.json`` says ``do_normalize``, or if ``config.feat_extract_norm == "layer"``
                (fairseq pre-trained its large "layer"-norm models, WavLM-Large among them, on normalised
                waveforms even where the Hub preprocessor config says otherwise; the official stage-1 code
                normalises too).
            chunk_seconds: audio per chunk for long inputs.
            context_seconds: extra audio on each side of a chunk.
            what: how the folder is named in error messages (e.g. ``"WavLM"``).
            normalize_eps: epsilon of the waveform normalisation (transformers' 1e-7; stage 1's recipe: 1e-5).

        Raises:
            ModelFolderError: the folder, its config or its weights are missing, or it is not a wav2vec2-style
                speech model.
        """
        from safetensors import SafetensorError
        from transformers import AutoModel

        folder = Path(folder)
        config = _read_json(folder, "config.json", what)
        if not any((folder / name).is_file() for name in WEIGHT_FILES):
            raise ModelFolderError(f"{what} folder {folder}: no weights (model.safetensors or pytorch_model.bin)")
        preprocessor = _read_json(folder, "preprocessor_config.json", what, required=False)
        if normalize is None:
            normalize = bool(preprocessor.get("do_normalize", False)) or config.get("feat_extract_norm") == "layer"
        try:
            model = AutoModel.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, RuntimeError, SafetensorError) as e:  # damaged/mismatched weights, unknown type
            raise ModelFolderError(f"{what} folder {folder}: cannot load the model ({error_summary(e)})") from e
        for part in ("feature_extractor", "feature_projection", "encoder"):
            if not hasattr(model, part):
                raise ModelFolderError(
                    f"{what} folder {folder}: model type {config.get('model_type')!r} is not a "
                    f"wav2vec2-style speech encoder (no {part})"
                )
        if getattr(model.config, "add_adapter", False):
            raise ModelFolderError(f"{what} folder {folder}: models with an output adapter are not supported")
        return cls(
            model.to(device=device, dtype=dtype),
            folder,
            layers=layers,
            interpolate=interpolate,
            normalize=normalize,
            sampling_rate=int(preprocessor.get("sampling_rate", SAMPLE_RATE)),
            chunk_seconds=chunk_seconds,
            context_seconds=context_seconds,
            normalize_eps=normalize_eps,
        )

    # -----------------------------------------------------------------------------------------------------------------
    # Description
    # -----------------------------------------------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        """D, the feature width."""
        return int(self.model.config.hidden_size)

    @property
    def num_layers(self) -> int:
        """L, the number of layers ``encode`` returns."""
        return 1 if self.layers == "last" else int(self.model.config.num_hidden_layers)

    def config_dict(self) -> dict:
        """JSON-able description used in cache keys and saved model configs.

        ``fingerprint`` hashes ``config.json`` and the weight files' names and sizes, so two different checkpoints
        in folders with the same name get different cache keys without reading gigabytes of weights.
        """
        return {
            "folder": self.folder.name,
            "model_type": str(self.model.config.model_type),
            "fingerprint": _fingerprint(self.folder),
            "layers": self.layers,
            "interpolate": self.interpolate,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "normalize": self.normalize,
            "normalize_eps": self.normalize_eps,
            "sampling_rate": self.sampling_rate,
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "chunk_seconds": self.chunk_seconds,
            "context_seconds": self.context_seconds,
        }

    # -----------------------------------------------------------------------------------------------------------------
    # Encoding
    # -----------------------------------------------------------------------------------------------------------------
    def encode(self, wave: np.ndarray, sample_rate: int) -> np.ndarray:
        """Encode a waveform into hidden states on the 25 fps grid.

        Args:
            wave: (N,) mono waveform in [-1, 1].
            sample_rate: rate of ``wave`` in Hz; it is resampled to ``self.sampling_rate``.

        Returns:
            (T, L, D) float32 with T = ceil(N / sample_rate * 25), L = ``num_layers``, D = ``hidden_size``. For
            ``layers="all"`` layer l is the output of transformer layer l + 1; the last one is the model's final
            output (after the closing LayerNorm in "stable layer norm" models), the same as ``layers="last"``.
        """
        wave = check_wave(wave, sample_rate)
        num_frames = num_frames_for(len(wave), sample_rate)
        wave = resample(wave, sample_rate, self.sampling_rate)
        if self.normalize:
            wave = (wave - wave.mean()) / np.sqrt(wave.var() + self.normalize_eps)
        samples = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
        if self.interpolate == "after":
            features = self._encode_after(samples, num_frames)
        else:
            features = self._encode_before_transformer(samples, num_frames)
        return features.float().cpu().numpy()

    def _encode_after(self, samples: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Stage-1 recipe: native-rate hidden states, last frame repeated, linear interpolation to T. -> (T, L, D)"""
        samples = _pad_min(samples, self.receptive_field)
        total = (len(samples) - self.receptive_field) // self.hop + 1  # native frames of the whole clip
        core = max(1, int(self.chunk_seconds * self.sampling_rate) // self.hop)
        context = int(self.context_seconds * self.sampling_rate) // self.hop
        pieces = []
        for start in range(0, total, core):
            stop = min(start + core, total)
            lo, hi = max(0, start - context), min(total, stop + context)
            # Frames lo..hi-1 need exactly these samples, so the chunk yields hi - lo frames.
            out = self._forward(samples[lo * self.hop : (hi - 1) * self.hop + self.receptive_field])
            pieces.append(out[start - lo : stop - lo])
        features = torch.cat(pieces, dim=0)  # (F50, L, D)
        # Official code: append a copy of the last 50 Hz frame, then interpolate (align_corners=True) to 25 fps.
        features = torch.cat([features, features[-1:]], dim=0)
        return _interpolate_time(features.permute(1, 2, 0), num_frames).permute(2, 0, 1)  # (T, L, D)

    def _encode_before_transformer(self, samples: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Stage-2 recipe: conv features interpolated to each chunk's length, then the transformer. -> (T, L, D)"""
        core = max(1, round(self.chunk_seconds * FPS))
        context = round(self.context_seconds * FPS)
        pieces = []
        for start in range(0, num_frames, core):
            stop = min(start + core, num_frames)
            lo, hi = max(0, start - context), min(num_frames, stop + context)
            # Video frame f starts at sample f * sr / 25; the last chunk simply runs to the end of the audio.
            chunk = samples[lo * self.sampling_rate // FPS : hi * self.sampling_rate // FPS]
            out = self._forward(_pad_min(chunk, self.receptive_field), num_frames=hi - lo)
            pieces.append(out[start - lo : stop - lo])
        return torch.cat(pieces, dim=0)

    @torch.no_grad()
    def _forward(self, samples: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """Run the model on one chunk; with ``num_frames``, resample the conv features to it first. -> (F, L, D)"""
        param = next(self.model.parameters())
        inputs = samples[None].to(device=param.device, dtype=param.dtype)  # (1, N)
        hook = None
        if num_frames is not None:
            # The model's own forward runs unchanged; a standard PyTorch forward hook replaces the conv features
            # (B, C, F50) by their interpolation to num_frames before feature_projection and the encoder see them.
            # (In transformers 5 the encoder no longer returns hidden states when called on its own, so calling
            # feature_projection/encoder by hand would need a copy of the model's forward.)
            hook = self.model.feature_extractor.register_forward_hook(
                lambda module, args, output: _interpolate_time(output, num_frames)
            )
        try:
            out = self.model(inputs, output_hidden_states=self.layers == "all")
        finally:
            if hook is not None:
                hook.remove()
        if self.layers == "last":
            return out.last_hidden_state[0][:, None].float()  # (F, 1, D)
        states = list(out.hidden_states[1:])  # layer outputs 1..L (index 0 is the encoder input)
        if len(states) != self.model.config.num_hidden_layers:
            raise MmgtError(
                f"{self.folder}: expected {self.model.config.num_hidden_layers} hidden states, got {len(states)}"
            )
        # transformers 5 records the last layer before the closing LayerNorm of "stable layer norm" models;
        # transformers 4, fairseq and the reference code use the model output there. Use the model output.
        states[-1] = out.last_hidden_state
        return torch.stack(states, dim=2)[0].float()  # (F, L, D)


def _interpolate_time(features: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Linear interpolation along the last axis to ``num_frames`` (align_corners=True, as the reference recipes)."""
    return F.interpolate(features, size=num_frames, mode="linear", align_corners=True)


def _pad_min(samples: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad a 1-D tensor at the end to at least ``length`` samples (one conv receptive field)."""
    return F.pad(samples, (0, length - len(samples))) if len(samples) < length else samples


def _read_json(folder: Path, name: str, what: str, required: bool = True) -> dict:
    """Read ``folder/name`` as a JSON object; missing optional files give {}."""
    if not folder.is_dir():
        raise ModelFolderError(f"{what} folder {folder}: does not exist or is not a folder")
    path = folder / name
    if not path.is_file():
        if required:
            raise ModelFolderError(f"{what} folder {folder}: no {name}")
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFolderError(f"{what} folder {folder}: cannot read {name} ({e})") from e
    if not isinstance(data, dict):
        raise ModelFolderError(f"{what} folder {folder}: {name} is not a JSON object")
    return data


def _fingerprint(folder: Path) -> str:
    """Short hash of config.json and the weight files' names and sizes."""
    digest = hashlib.sha256((folder / "config.json").read_bytes() if (folder / "config.json").is_file() else b"")
    for path in sorted(folder.iterdir()):
        if path.suffix in (".safetensors", ".bin", ".json") and path.is_file():
            digest.update(f"{path.name}:{path.stat().st_size};".encode())
    return digest.hexdigest()[:16]

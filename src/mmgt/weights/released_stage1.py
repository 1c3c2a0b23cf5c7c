"""The authors' released stage-1 (SMGA) checkpoint -> mmgt ``GestureDenoiser`` weights, by explicit rules.

The release ships ``stage_1/audio2pose_best_model.pt`` = ``{ema_state_dict, model_state_dict, optimizer_state_dict,
epoch}``; its inference reads ``ema_state_dict`` (:data:`STAGE1_STATE_KEY`), the state dict of its ``GestureDecoder``.
:func:`convert_stage1` maps that state dict onto the ``released`` preset of :class:`GestureDenoiser` (spec §3.4,
§7). Every release key is named by one rule of :func:`_rules`; a key no rule names, a key a rule names that is
missing, or a shape that does not follow from the checkpoint's own sizes is a one-line :class:`ModelFolderError`.

The rules:

* **renames**: the release's module names -> mmgt's (e.g. ``input_projection`` -> ``face_encoder``, the one motion
  encoder both streams share; ``seqTransDecoder.stack.i.norm_face_1`` -> ``layers.i.face_block.norm_sa``).
* **fused attention**: ``nn.MultiheadAttention`` stores ``in_proj_weight`` (3D, D) and ``in_proj_bias`` (3D,) with
  q, k, v stacked in that order; they are split into ``to_q``, ``to_k``, ``to_v``; ``out_proj`` becomes ``to_out``.
* **audio columns**: the release's condition is [WavLM (1024) ; librosa (35)] per frame, mmgt's
  (:func:`mmgt.audio.stage1_audio_features`) is [librosa (35) ; speech (1024)]: the columns of
  ``cond_projection.weight`` are rotated to mmgt's order, so the same audio gives the same projection.
* **dropped** (listed in the returned ``dropped`` with the reason): modules ``FiLMTransformerDecoderLayer_split``
  builds but its forward never calls: the merged ``self_attn``, ``norm_face_3``/``norm_body_3`` (passed to
  ``_process_block`` as ``norm3``, which does not use it) and ``film_face_3``/``film_body_3`` (likewise ``film3``).
* **recomputed buffers**: the rotary ``freqs`` (one copy per module that holds the shared rotary) are compared with
  the frequencies mmgt computes for the ``token`` rotary (width D, theta 10,000) and must agree (relative 1e-6, the
  float32 rounding of two formulas); they are then dropped, as mmgt recomputes them.

Sizes (width, depth, FFN width, audio width, window, encoder layers) are read from the checkpoint's shapes, so the same
rules convert the full-size release and the tiny random ones the tests build; the attention head count is not stored
in a state dict (the release builds 8 heads). :data:`MANIFEST` lists the full-size keys and shapes (data only).
The converted model is sampled with the release's audio recipe and settings: :func:`stage1_pipeline_kwargs`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mmgt.audio.encoders import SpeechEncoder
from mmgt.audio.features import STAGE1_WINDOW_FRAMES, feature_spec
from mmgt.audio.librosa_features import LIBROSA_FEATURE_DIM
from mmgt.constants import NUM_KEYPOINTS
from mmgt.errors import ModelFolderError
from mmgt.models.gesture_denoiser import PRESETS
from mmgt.models.rotary import RotaryEmbedding
from mmgt.pipelines.sampling_defaults import POSE_SAMPLING

STAGE1_CHECKPOINT = "stage_1/audio2pose_best_model.pt"  # relative to the release folder
STAGE1_STATE_KEY = "ema_state_dict"  # what the release's inference loads (EMA weights)
STAGE1_NUM_HEADS = 8  # nn.MultiheadAttention(512, 8) in the release; not recorded in the state dict
MANIFEST = Path(__file__).with_name("released_manifest") / "stage1.json"

_ROTARY_THETA = 10_000.0
_FREQS_RTOL = 1e-6
_WHAT = "released stage-1 weights"


@dataclass(frozen=True)
class ReleaseSizes:
    """The sizes a release-layout state dict is built with (defaults: the released checkpoint).

    Attributes:
        hidden_dim: width D (``latent_dim``).
        num_layers: decoder layers.
        ff_dim: FFN width of the audio encoder and the Merge blocks.
        audio_dim: per-frame condition width (WavLM-Large 1024 + 35 librosa).
        audio_layers: transformer layers of the audio encoder.
        window_frames: the window length, the length of the null audio sequence.
        frame_dim: keypoint frame vector width, 134 x 3.
    """

    hidden_dim: int = 512
    num_layers: int = 8
    ff_dim: int = 1024
    audio_dim: int = 1024 + LIBROSA_FEATURE_DIM
    audio_layers: int = 2
    window_frames: int = STAGE1_WINDOW_FRAMES
    frame_dim: int = NUM_KEYPOINTS * 3


@dataclass(frozen=True)
class _Rule:
    """One release module: its parameters' shapes and what becomes of them."""

    release: str  # module prefix in the release ("" params: the prefix is the parameter itself)
    params: dict[str, tuple[int, ...]]
    target: str | None = None  # mmgt module prefix; None: not loaded
    how: str = "copy"  # copy | qkv | audio_columns | recompute | drop
    reason: str = ""  # why a module is not loaded


def _linear(n_in: int, n_out: int) -> dict[str, tuple[int, ...]]:
    return {"weight": (n_out, n_in), "bias": (n_out,)}


def _norm(dim: int) -> dict[str, tuple[int, ...]]:
    return {"weight": (dim,), "bias": (dim,)}


def _mha(dim: int) -> dict[str, tuple[int, ...]]:
    return {
        "in_proj_weight": (3 * dim, dim),
        "in_proj_bias": (3 * dim,),
        "out_proj.weight": (dim, dim),
        "out_proj.bias": (dim,),
    }


_FREQS_REASON = "rotary frequencies, recomputed by mmgt (checked equal)"
_NEVER_CALLED = "built by the release's decoder layer but never called by its forward"


def _rules(s: ReleaseSizes) -> list[_Rule]:
    """Every module of the release's ``GestureDecoder`` at sizes ``s``, in its state-dict order."""
    d = s.hidden_dim
    freqs = {"freqs": (d // 2,)}
    rules = [
        _Rule("null_cond_embed", {"": (1, s.window_frames, d)}, "null_audio_tokens"),
        _Rule("null_cond_hidden", {"": (1, d)}, "null_audio_pooled"),
        _Rule("rotary", freqs, how="recompute", reason=_FREQS_REASON),
        _Rule("time_mlp.1", _linear(d, 4 * d), "time_embed.0"),
        _Rule("to_time_cond.0", _linear(4 * d, d), "time_cond"),
        _Rule("to_time_tokens.0", _linear(4 * d, 2 * d), "time_tokens"),
        _Rule("norm_cond", _norm(d), "memory_norm"),
        _Rule("input_projection", _linear(2 * s.frame_dim, d), "face_encoder"),  # shared by both streams
    ]
    for i in range(s.audio_layers):
        src, dst = f"cond_encoder.{i}", f"audio_encoder.{i}"
        rules += [
            _Rule(f"{src}.self_attn", _mha(d), f"{dst}.attn", "qkv"),
            _Rule(f"{src}.linear1", _linear(d, s.ff_dim), f"{dst}.ff.0"),
            _Rule(f"{src}.linear2", _linear(s.ff_dim, d), f"{dst}.ff.3"),
            _Rule(f"{src}.norm1", _norm(d), f"{dst}.norm1"),
            _Rule(f"{src}.norm2", _norm(d), f"{dst}.norm2"),
            _Rule(f"{src}.rotary", freqs, how="recompute", reason=_FREQS_REASON),
        ]
    rules += [
        _Rule("cond_projection", _linear(s.audio_dim, d), "audio_proj", "audio_columns"),
        _Rule("non_attn_cond_projection.0", _norm(d), "audio_pool.0"),
        _Rule("non_attn_cond_projection.1", _linear(d, d), "audio_pool.1"),
        _Rule("non_attn_cond_projection.3", _linear(d, d), "audio_pool.3"),
    ]
    streams = ("face", "body")
    for i in range(s.num_layers):
        src, dst = f"seqTransDecoder.stack.{i}", f"layers.{i}"
        for stream in streams:
            rules += [
                _Rule(f"{src}.{stream}_self_attn", _mha(d), f"{dst}.{stream}_block.self_attn", "qkv"),
                _Rule(f"{src}.{stream}_cross_attn", _mha(d), f"{dst}.{stream}_block.cross_attn", "qkv"),
            ]
        rules += [
            _Rule(f"{src}.self_attn", _mha(d), how="drop", reason=f"merged self-attention, {_NEVER_CALLED}"),
            _Rule(f"{src}.linear1", _linear(d, s.ff_dim), f"{dst}.merge.ff.0"),
            _Rule(f"{src}.linear2", _linear(s.ff_dim, d), f"{dst}.merge.ff.3"),
        ]
        for stream in streams:
            rules += [
                _Rule(f"{src}.norm_{stream}_1", _norm(d), f"{dst}.{stream}_block.norm_sa"),
                _Rule(f"{src}.norm_{stream}_2", _norm(d), f"{dst}.{stream}_block.norm_ca"),
                _Rule(f"{src}.norm_{stream}_3", _norm(d), how="drop", reason=f"third norm, {_NEVER_CALLED}"),
            ]
        rules.append(_Rule(f"{src}.norm_final", _norm(d), f"{dst}.merge.norm"))
        for stream in streams:
            rules += [
                _Rule(f"{src}.film_{stream}_1.block.1", _linear(d, 2 * d), f"{dst}.{stream}_block.film_sa.proj"),
                _Rule(f"{src}.film_{stream}_2.block.1", _linear(d, 2 * d), f"{dst}.{stream}_block.film_ca.proj"),
                _Rule(
                    f"{src}.film_{stream}_3.block.1",
                    _linear(d, 2 * d),
                    how="drop",
                    reason=f"third FiLM, {_NEVER_CALLED}",
                ),
            ]
        rules += [
            _Rule(f"{src}.film_final.block.1", _linear(d, 2 * d), f"{dst}.merge.film.proj"),
            _Rule(f"{src}.rotary", freqs, how="recompute", reason=_FREQS_REASON),
        ]
    rules.append(_Rule("final_layer", _linear(d, s.frame_dim), "proj_out"))
    return rules


def _key(module: str, param: str) -> str:
    return f"{module}.{param}" if param else module


def release_layout(sizes: ReleaseSizes = ReleaseSizes()) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the release's stage-1 state dict at ``sizes``, in its order (the manifest at full size)."""
    return {_key(r.release, p): shape for r in _rules(sizes) for p, shape in r.params.items()}


def stage1_pipeline_kwargs(encoder: SpeechEncoder) -> dict:
    """The ``AudioToPosePipeline`` settings the released SMGA needs, besides its denoiser and scheduler.

    * ``audio_features``: the release's recipe (tests/official/test_stage1_audio.py): WavLM-Large's last layer
      (``encoder``, from :meth:`SpeechEncoder.for_stage` with stage 1) and the 35 librosa features, extracted per
      80-frame window, beats started from the tempo of the audio at 22,050 Hz (``start_tempo="reload"``).
    * ``target_offset=0`` and ``normalize_scores=True`` (spec §3.3, §7): what it was trained with.
    * the sampling defaults ``POSE_SAMPLING["released"]``: DDIM 50, eta 1, CFG 2.

    Args:
        encoder: the stage-1 speech encoder (WavLM-Large for the released weights).
    """
    spec = feature_spec(encoder, stage=1, window_frames=STAGE1_WINDOW_FRAMES, start_tempo="reload")
    return dict(audio_features=spec, target_offset=0, normalize_scores=True, **POSE_SAMPLING["released"].to_dict())


def load_manifest() -> dict[str, tuple[int, ...]]:
    """The committed full-size manifest of the release's ``ema_state_dict``: key -> shape."""
    return {key: tuple(shape) for key, shape in json.loads(MANIFEST.read_text()).items()}


def convert_stage1(
    state_dict: dict[str, torch.Tensor], num_heads: int = STAGE1_NUM_HEADS
) -> tuple[dict[str, torch.Tensor], dict, list[str]]:
    """Convert the release's SMGA state dict (its ``ema_state_dict``) to a ``GestureDenoiser`` ``released`` one.

    Args:
        state_dict: the release's ``GestureDecoder`` state dict; a ``module.`` prefix on every key is removed.
        num_heads: attention heads (not stored in the checkpoint; the release uses 8).

    Returns:
        (mmgt state dict, ``GestureDenoiser`` config kwargs (the ``released`` preset at the checkpoint's sizes),
        dropped keys as ``"key: reason"``). The tensors are new (no storage shared with ``state_dict``), in the
        checkpoint's dtype.

    Raises:
        ModelFolderError: a value that is not a tensor, an unknown key, a documented key that is missing, a shape that
            does not follow from the checkpoint's sizes, or rotary frequencies that differ from the recomputed ones.
    """
    state_dict = _strip_module_prefix(state_dict)
    sizes = _infer_sizes(state_dict)
    _check_sizes(sizes, num_heads)
    _check_keys_and_shapes(state_dict, sizes)

    converted: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for rule in _rules(sizes):
        values = {p: state_dict[_key(rule.release, p)] for p in rule.params}
        if rule.how in ("drop", "recompute"):
            if rule.how == "recompute":
                _check_freqs(rule.release, values["freqs"], sizes.hidden_dim)
            dropped += [f"{_key(rule.release, p)}: {rule.reason}" for p in rule.params]
        elif rule.how == "qkv":
            for param, part in (("in_proj_weight", "weight"), ("in_proj_bias", "bias")):
                for name, chunk in zip(("to_q", "to_k", "to_v"), values[param].chunk(3, dim=0)):
                    converted[f"{rule.target}.{name}.{part}"] = chunk.clone()
            converted[f"{rule.target}.to_out.weight"] = values["out_proj.weight"].clone()
            converted[f"{rule.target}.to_out.bias"] = values["out_proj.bias"].clone()
        elif rule.how == "audio_columns":
            speech_dim = sizes.audio_dim - LIBROSA_FEATURE_DIM
            speech, librosa = values["weight"].split([speech_dim, LIBROSA_FEATURE_DIM], dim=1)
            converted[f"{rule.target}.weight"] = torch.cat([librosa, speech], dim=1)  # mmgt: [librosa ; speech]
            converted[f"{rule.target}.bias"] = values["bias"].clone()
        else:
            converted.update({_key(rule.target, p): v.clone() for p, v in values.items()})

    config = {
        **PRESETS["released"],
        "num_keypoints": sizes.frame_dim // 3,
        "audio_dim": sizes.audio_dim,
        "hidden_dim": sizes.hidden_dim,
        "num_layers": sizes.num_layers,
        "num_heads": num_heads,
        "ff_dim": sizes.ff_dim,
        "audio_layers": sizes.audio_layers,
        "window_frames": sizes.window_frames,
        "rotary_theta": _ROTARY_THETA,
    }
    return converted, config, dropped


def _strip_module_prefix(state_dict: dict) -> dict:
    if not isinstance(state_dict, dict) or not state_dict:
        raise ModelFolderError(f"{_WHAT}: expected a non-empty state dict, got {type(state_dict).__name__}")
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ModelFolderError(f"{_WHAT}: entry {key!r} is a {type(value).__name__}, not a tensor")
    if all(key.startswith("module.") for key in state_dict):  # saved from a DDP-wrapped model
        return {key.removeprefix("module."): value for key, value in state_dict.items()}
    return state_dict


def _infer_sizes(state_dict: dict[str, torch.Tensor]) -> ReleaseSizes:
    """Read the sizes from a few documented keys (the full check against all keys comes after)."""
    anchors = {  # key -> (expected ndim, axis holding the size)
        "null_cond_hidden": (2, 1),
        "null_cond_embed": (3, 1),
        "cond_projection.weight": (2, 1),
        "final_layer.weight": (2, 0),
        "cond_encoder.0.linear1.weight": (2, 0),
    }
    values = {}
    for key, (ndim, axis) in anchors.items():
        if key not in state_dict:
            raise ModelFolderError(f"{_WHAT}: documented key {key!r} is missing")
        if state_dict[key].ndim != ndim:
            raise ModelFolderError(f"{_WHAT}: {key} has shape {tuple(state_dict[key].shape)}, expected {ndim} axes")
        values[key] = int(state_dict[key].shape[axis])

    def count(pattern: str) -> int:
        indices = {int(m.group(1)) for key in state_dict if (m := re.match(pattern, key))}
        return max(indices) + 1 if indices else 0

    return ReleaseSizes(
        hidden_dim=values["null_cond_hidden"],
        num_layers=count(r"seqTransDecoder\.stack\.(\d+)\."),
        ff_dim=values["cond_encoder.0.linear1.weight"],
        audio_dim=values["cond_projection.weight"],
        audio_layers=count(r"cond_encoder\.(\d+)\."),
        window_frames=values["null_cond_embed"],
        frame_dim=values["final_layer.weight"],
    )


def _check_sizes(sizes: ReleaseSizes, num_heads: int) -> None:
    if sizes.frame_dim != NUM_KEYPOINTS * 3:
        raise ModelFolderError(
            f"{_WHAT}: final_layer outputs {sizes.frame_dim} values per frame, expected {NUM_KEYPOINTS} keypoints x 3"
        )
    if sizes.audio_dim <= LIBROSA_FEATURE_DIM:
        raise ModelFolderError(
            f"{_WHAT}: cond_projection takes {sizes.audio_dim} features per frame; only checkpoints trained with a "
            f"speech encoder ({LIBROSA_FEATURE_DIM} librosa + WavLM features) are supported"
        )
    if sizes.num_layers < 1:
        raise ModelFolderError(f"{_WHAT}: no decoder layers (seqTransDecoder.stack.*)")
    head_dim, rest = divmod(sizes.hidden_dim, num_heads)
    if rest or head_dim % 2:
        raise ModelFolderError(f"{_WHAT}: width {sizes.hidden_dim} does not split into {num_heads} even heads")


def _check_keys_and_shapes(state_dict: dict[str, torch.Tensor], sizes: ReleaseSizes) -> None:
    layout = release_layout(sizes)
    unknown = [key for key in state_dict if key not in layout]
    if unknown:
        raise ModelFolderError(f"{_WHAT}: {len(unknown)} unknown key(s), the first {unknown[0]!r}")
    missing = [key for key in layout if key not in state_dict]
    if missing:
        raise ModelFolderError(f"{_WHAT}: {len(missing)} documented key(s) missing, the first {missing[0]!r}")
    for key, shape in layout.items():
        if tuple(state_dict[key].shape) != shape:
            raise ModelFolderError(
                f"{_WHAT}: {key} has shape {tuple(state_dict[key].shape)}, expected {shape} for the checkpoint's "
                f"sizes ({', '.join(f'{k} {v}' for k, v in asdict(sizes).items())})"
            )


def _check_freqs(module: str, freqs: torch.Tensor, hidden_dim: int) -> None:
    """The checkpoint's rotary frequencies must be the ones mmgt's ``token`` rotary computes."""
    expected = RotaryEmbedding(hidden_dim, _ROTARY_THETA, interleaved=True).inv_freq.double()
    error = ((freqs.double() - expected).abs() / expected).max().item()
    if not error <= _FREQS_RTOL:  # also catches NaN
        raise ModelFolderError(
            f"{_WHAT}: {module}.freqs differs from the recomputed rotary frequencies (theta {_ROTARY_THETA:g}, "
            f"width {hidden_dim}) by {error:.2e} (relative)"
        )

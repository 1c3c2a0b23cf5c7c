"""The stage-1 SMGA denoiser: audio + previous pose -> x0 of an 80-frame whole-body keypoint window (spec §3.4).

Paper §III-C (Eqs. 5-11): the noisy motion x_t is concatenated with the repeated condition pose p0, split by the face
keypoint mask M_f into a face and a body stream with their own motion encoders, and denoised by a DiT-style stack whose
layers hold a face Motion block, a body Motion block and a Merge block. Audio and timestep enter through FiLM and
through cross-attention to [audio tokens; 2 time tokens], as in EDGE. The network predicts x0 directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import Timesteps
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from mmgt.constants import FACE, NUM_KEYPOINTS
from mmgt.errors import MmgtError
from mmgt.models.rotary import RotaryEmbedding

BODY_STREAMS = ("merged", "carry", "static")
ROTARY_MODES = ("head", "token")  # per-head q/k after projection (mmgt) | whole tokens before projection (released)

PRESETS: dict[str, dict[str, Any]] = {
    # Official SMGA sizes (spec §3.4, §12): 73.6 M parameters with audio_dim 1059.
    "paper": dict(hidden_dim=512, num_layers=8, num_heads=8, ff_dim=1024, window_frames=80),
    # CPU-sized: a quarter of the width, half the depth, head size 32; 2.95 M parameters (135 k of them the 1059-d
    # audio projection). A training step on a batch of 8 full 80-frame windows takes ~0.3 s on 2 CPU cores, so a
    # few hundred steps (smoke or overfit runs) fit in minutes. The 80-frame window is kept so that data, null
    # tokens and sampling run exactly as for "paper".
    "tiny": dict(hidden_dim=128, num_layers=4, num_heads=4, ff_dim=256, window_frames=80),
    # The released checkpoint's structure (spec §3.4 "[official]"): one motion encoder, body stream never updated,
    # whole tokens rotated before the q/k projections. mmgt.weights.released_stage1 converts its weights.
    "released": dict(
        hidden_dim=512, num_layers=8, num_heads=8, ff_dim=1024, window_frames=80,
        share_motion_encoder=True, body_stream="static", rotary="token",
    ),
}  # fmt: skip


#################################################################################
#                                 Building blocks                               #
#################################################################################


class Attention(nn.Module):
    """Multi-head attention with rotary positions, through ``F.scaled_dot_product_attention``.

    ``rotary="head"`` (mmgt): the per-head queries and keys are rotated after the projections, so scores depend on
    relative frame offsets only. Self-attention when ``context`` is None: queries and keys are rotated by their frame
    index. Cross-attention: the queries and the first ``context.shape[1] - num_free_keys`` keys (the audio tokens,
    one per frame) are rotated by their frame index; the last ``num_free_keys`` keys (the time tokens) carry no
    position at all (see ``_position_free_keys``).

    ``rotary="token"`` (released SMGA): the whole D-wide tokens are rotated (adjacent pairs, one rotation over all D
    features) *before* the q/k projections, queries by their frame index and context tokens by their index in the
    context, so the time tokens after F audio tokens sit at positions F and F + 1; values are projected from the
    unrotated tokens. ``num_free_keys`` is ignored.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float, rotary_theta: float, rotary: str = "head"):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        self.rotary_mode = rotary
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.Linear(dim, dim)
        if rotary == "token":
            self.rotary = RotaryEmbedding(dim, rotary_theta, interleaved=True)
        else:
            self.rotary = RotaryEmbedding(self.head_dim, rotary_theta)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, num_free_keys: int = 0) -> torch.Tensor:
        """x (B, F, D), context (B, N, D) or None -> (B, F, D)."""
        if self.rotary_mode == "token":
            q, k, v = self._rotate_tokens(x, context)
        else:
            q, k, v = self._rotate_heads(x, context, num_free_keys)
        dropout_p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=self.head_dim**-0.5)
        return self.to_out(out.transpose(1, 2).flatten(2))  # (B, F, D)

    def _rotate_heads(self, x, context, num_free_keys):
        """mmgt: project, then rotate per-head q/k. -> q (B, H, F, Dh or 2Dh), k (B, H, N, same), v (B, H, N, Dh)."""
        context = x if context is None else context
        q, k, v = self._heads(self.to_q(x)), self._heads(self.to_k(context)), self._heads(self.to_v(context))
        num_positional = k.shape[-2] - num_free_keys
        q_rot, k_rot = self.rotary(q), self.rotary(k[..., :num_positional, :])  # (B, H, F, Dh), (B, H, N', Dh)
        if num_free_keys:
            q_rot, k_rot = self._position_free_keys(q, q_rot, k_rot, k[..., num_positional:, :])
        return q_rot, k_rot, v

    def _rotate_tokens(self, x, context):
        """Released: rotate whole tokens, then project. -> q (B, H, F, Dh), k and v (B, H, N, Dh)."""
        x_rot = self.rotary(x)  # (B, F, D), positions 0 .. F-1
        context_rot = x_rot if context is None else self.rotary(context)  # (B, N, D), positions 0 .. N-1
        context = x if context is None else context
        return self._heads(self.to_q(x_rot)), self._heads(self.to_k(context_rot)), self._heads(self.to_v(context))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)  # (B, H, N, Dh)

    @staticmethod
    def _position_free_keys(q, q_rot, k_rot, k_free):
        # Score rotated keys against the rotated query and free keys against the *unrotated* query, in one SDPA call:
        # stack [q_rot, q] on the feature axis and pad each key with zeros in the half it must not see. Then
        # q'.k' = q_rot.k_rot for audio keys and q.k_free for time tokens, so a time token looks the same from every
        # frame (rotating it as a key at position 0 or N would instead tie its score to the query's frame index).
        head_dim = q.shape[-1]
        q_cat = torch.cat([q_rot, q], dim=-1)  # (B, H, F, 2Dh)
        k_cat = torch.cat([F.pad(k_rot, (0, head_dim)), F.pad(k_free, (head_dim, 0))], dim=-2)  # (B, H, N, 2Dh)
        return q_cat, k_cat


def feed_forward(dim: int, ff_dim: int, dropout: float) -> nn.Sequential:
    """Linear -> GELU -> Dropout -> Linear (spec §3.4 FFN)."""
    return nn.Sequential(nn.Linear(dim, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim))


class FiLM(nn.Module):
    """FiLM(z) = (1 + gamma) z + beta, (gamma, beta) = Linear(Mish(t_c)); zero-initialised: starts as identity."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * dim)

    def forward(self, z: torch.Tensor, t_cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.proj(F.mish(t_cond)).unsqueeze(1).chunk(2, dim=-1)  # (B, 1, D) each: broadcast over frames
        return (1 + gamma) * z + beta


class AudioEncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer with rotary self-attention over audio frames."""

    def __init__(self, dim: int, num_heads: int, ff_dim: int, dropout: float, rotary_theta: float, rotary: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, dropout, rotary_theta, rotary)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = feed_forward(dim, ff_dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))  # (B, F, D)
        return x + self.drop(self.ff(self.norm2(x)))


class MotionBlock(nn.Module):
    """One stream's Motion block: SA -> FiLM -> residual, then CA to the [audio; time] memory -> FiLM -> residual."""

    def __init__(self, dim: int, num_heads: int, dropout: float, rotary_theta: float, rotary: str):
        super().__init__()
        self.norm_sa = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, num_heads, dropout, rotary_theta, rotary)
        self.film_sa = FiLM(dim)
        self.norm_ca = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, num_heads, dropout, rotary_theta, rotary)
        self.film_ca = FiLM(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, memory: torch.Tensor, t_cond: torch.Tensor, num_time_tokens: int):
        h = h + self.film_sa(self.drop(self.self_attn(self.norm_sa(h))), t_cond)  # Paper Eq. 11: temporal SA
        ca = self.cross_attn(self.norm_ca(h), memory, num_free_keys=num_time_tokens)
        return h + self.film_ca(self.drop(ca), t_cond)  # (B, F, D)


class MergeBlock(nn.Module):
    """m = h_f + h_b; m <- m + FiLM(FFN(LN(m)))."""

    def __init__(self, dim: int, ff_dim: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.ff = feed_forward(dim, ff_dim, dropout)
        self.film = FiLM(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, face: torch.Tensor, body: torch.Tensor, t_cond: torch.Tensor) -> torch.Tensor:
        merged = face + body  # the merge operator is a sum (spec §3.4 [decision]; paper unknown)
        return merged + self.film(self.drop(self.ff(self.norm(merged))), t_cond)  # (B, F, D)


class DecoderLayer(nn.Module):
    """One SMGA layer: face Motion block, body Motion block (own weights), Merge block."""

    def __init__(self, dim: int, num_heads: int, ff_dim: int, dropout: float, rotary_theta: float, rotary: str):
        super().__init__()
        self.face_block = MotionBlock(dim, num_heads, dropout, rotary_theta, rotary)
        self.body_block = MotionBlock(dim, num_heads, dropout, rotary_theta, rotary)
        self.merge = MergeBlock(dim, ff_dim, dropout)

    def forward(self, face, body, memory, t_cond, num_time_tokens: int):
        """Returns updated (face, body, merged) states, each (B, F, D); the model picks what the next layer sees."""
        face = self.face_block(face, memory, t_cond, num_time_tokens)
        body = self.body_block(body, memory, t_cond, num_time_tokens)
        return face, body, self.merge(face, body, t_cond)


#################################################################################
#                                   Core model                                  #
#################################################################################


class GestureDenoiser(ModelMixin, ConfigMixin):
    """SMGA denoiser (Paper §III-C): predicts the clean keypoint window x0 from x_t, the previous pose and audio.

    Keypoint tensors are (B, F, K, 3) as [x, y, score] normalised to [-1, 1]; internally a frame is the keypoint-major
    K*3 vector of spec §2 ("frame vector"). The model has no absolute positions, so any F works; ``window_frames``
    only sizes the learned null audio sequence.

    Args:
        num_keypoints: K, 134 for the whole-body layout.
        audio_dim: per-frame audio feature size (WavLM-Large 1024 + 35 librosa = 1059, spec §3.2).
        hidden_dim: model width d.
        num_layers: decoder layers (each: face Motion, body Motion, Merge).
        num_heads: attention heads everywhere.
        ff_dim: hidden size of every feed-forward network.
        audio_layers: transformer-encoder layers over the projected audio.
        dropout: attention-weight, residual and FFN dropout.
        window_frames: training window length (80 = 3.2 s at 25 fps); the length of the null audio sequence.
        face_indices: keypoints of the face stream (M_f = 1); defaults to ``constants.FACE`` (24-91).
        share_motion_encoder: one Linear for both streams, as released (``False`` = separate E_f/E_b, the paper).
        body_stream: what the next layer gets: "merged" (m feeds both streams), "carry" (each stream keeps its own
            state) or "static" (released: h_f := m, h_b := the original body embedding).
        cond_drop_prob: per-sample probability of replacing the audio by the null condition while training (CFG).
        num_time_tokens: timestep tokens appended to the cross-attention memory.
        rotary_theta: RoPE base wavelength.
        rotary: "head" rotates per-head queries and keys after the projections, time tokens without a position;
            "token" (released) rotates whole tokens before them, time tokens at positions F and F + 1 (``Attention``).
        split_streams: ``True`` (the paper): the face stream sees the face keypoints (M_f) and the body stream the
            rest (1 - M_f). ``False`` (the ablation of docs/ablations.md): both streams see every keypoint (M_f =
            M_b = 1), so nothing separates face from body; the parameter count is unchanged.

    Deviation (``rotary="head"``, every preset but "released"): official SMGA (after EDGE) rotates the whole 512-d
    *input* of each attention before the q/k projections, giving the time tokens positions F and F + 1. mmgt's own
    presets rotate the per-head queries and keys after projection (so scores depend on relative frame offsets only)
    and give the time tokens no position; docs/stage1.md has the measurement behind keeping it.

    Size: the "paper" preset has 73.6 M parameters. The released checkpoint holds ~90.0 M because each of its decoder
    layers also carries modules its forward never calls (a merged self-attention, two FiLMs, two LayerNorms:
    2.1 M per layer); the modules that are used match these shapes one to one.
    """

    @register_to_config
    def __init__(
        self,
        num_keypoints: int = NUM_KEYPOINTS,
        audio_dim: int = 1059,
        hidden_dim: int = 512,
        num_layers: int = 8,
        num_heads: int = 8,
        ff_dim: int = 1024,
        audio_layers: int = 2,
        dropout: float = 0.1,
        window_frames: int = 80,
        face_indices: Sequence[int] = FACE,
        share_motion_encoder: bool = False,
        body_stream: str = "merged",
        cond_drop_prob: float = 0.25,
        num_time_tokens: int = 2,
        rotary_theta: float = 10_000.0,
        rotary: str = "head",
        split_streams: bool = True,
    ):
        super().__init__()
        face_indices = _check_config(
            num_keypoints, hidden_dim, num_heads, face_indices, body_stream, cond_drop_prob, rotary
        )
        self.register_to_config(face_indices=face_indices)  # a plain list of ints in config.json
        d, frame_dim = hidden_dim, num_keypoints * 3
        face_mask = torch.zeros(num_keypoints, 1)
        face_mask[face_indices] = 1.0
        body_mask = 1.0 - face_mask
        if not split_streams:
            face_mask, body_mask = torch.ones(num_keypoints, 1), torch.ones(num_keypoints, 1)
        self.register_buffer("face_mask", face_mask, persistent=False)  # (K, 1): M_f, broadcast over (x, y, score)
        self.register_buffer("body_mask", body_mask, persistent=False)  # (K, 1): M_b

        # Motion encoders E_f, E_b: [x_t ⊙ M ; repeat(p0 ⊙ M)] (2*K*3) -> d (Paper Eqs. 5-8).
        self.face_encoder = nn.Linear(2 * frame_dim, d)
        self.body_encoder = None if share_motion_encoder else nn.Linear(2 * frame_dim, d)

        # Audio encoder E_a over the frozen per-frame features (Paper Eq. 9) and the pooled FiLM vector h_a.
        self.audio_proj = nn.Linear(audio_dim, d)
        self.audio_encoder = nn.ModuleList(
            AudioEncoderLayer(d, num_heads, ff_dim, dropout, rotary_theta, rotary) for _ in range(audio_layers)
        )
        self.audio_pool = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.null_audio_tokens = nn.Parameter(torch.empty(1, window_frames, d))  # D_∅'s audio sequence
        self.null_audio_pooled = nn.Parameter(torch.empty(1, d))  # D_∅'s pooled vector

        # Timestep: e = Mish(Linear(sinusoidal(t))); t_c = Linear(e) + h_a; time tokens = Linear(e).
        self.time_proj = Timesteps(d, flip_sin_to_cos=False, downscale_freq_shift=1)  # [sin, cos], EDGE's layout
        self.time_embed = nn.Sequential(nn.Linear(d, 4 * d), nn.Mish())
        self.time_cond = nn.Linear(4 * d, d)
        self.time_tokens = nn.Linear(4 * d, num_time_tokens * d)
        self.memory_norm = nn.LayerNorm(d)

        self.layers = nn.ModuleList(
            DecoderLayer(d, num_heads, ff_dim, dropout, rotary_theta, rotary) for _ in range(num_layers)
        )
        self.proj_out = nn.Linear(d, frame_dim)
        self.initialize_weights()

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> GestureDenoiser:
        """Build a freshly initialised model from ``PRESETS[name]`` with keyword ``overrides`` applied on top."""
        if name not in PRESETS:
            raise MmgtError(f"unknown GestureDenoiser preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def initialize_weights(self) -> None:
        """All initialisation lives here (DiT style)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        # FiLM starts as the identity, so at step 0 the stack is a plain pre-norm transformer; the timestep and audio
        # still reach every block through the cross-attention memory.
        for module in self.modules():
            if isinstance(module, FiLM):
                nn.init.zeros_(module.proj.weight)
                nn.init.zeros_(module.proj.bias)
        # Null condition: unit normal, as in EDGE/official (both are compared against LayerNorm-ed or O(1) values).
        nn.init.normal_(self.null_audio_tokens)
        nn.init.normal_(self.null_audio_pooled)
        # Zero output layer (as DiT's final layer): the first prediction is x̂0 = 0, the mean of data normalised to
        # [-1, 1], instead of an O(10) random field (the un-normalised residual stream grows through the stack), so
        # the loss starts near E[x0^2]. Only proj_out gets a gradient on the very first step.
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        cond_pose: torch.Tensor,
        audio: torch.Tensor,
        drop_audio: torch.Tensor | None = None,
        force_uncond: bool = False,
    ) -> torch.Tensor:
        """Predict x0.

        Args:
            sample: (B, F, K, 3) noisy keypoints x_t, roughly in [-1, 1].
            timestep: (B,) integer diffusion timesteps in [0, T) (a 0-d tensor is broadcast).
            cond_pose: (B, K, 3) the normalised pose of the frame just before the window (p0).
            audio: (B, F, audio_dim) per-frame audio features.
            drop_audio: (B,) bool; True replaces that sample's audio by the null condition. Overrides the random
                training-time draw (probability ``cond_drop_prob``); None = draw while training, keep in eval.
            force_uncond: drop the audio of every sample: the unconditional D_∅ of classifier-free guidance.

        Returns:
            (B, F, K, 3) predicted clean keypoints x̂0.
        """
        timestep = self._check_inputs(sample, timestep, cond_pose, audio, drop_audio)
        batch = sample.shape[0]
        face_tokens, body_tokens = self._embed_motion(sample, cond_pose)  # (B, F, D) each
        audio_tokens = self.audio_proj(audio)  # (B, F, D)
        for layer in self.audio_encoder:
            audio_tokens = layer(audio_tokens)  # A: (B, F, D)
        audio_pooled = self.audio_pool(audio_tokens.mean(dim=1))  # h_a: (B, D)
        drop = self._drop_mask(batch, drop_audio, force_uncond, sample.device)  # (B,) bool
        audio_tokens, audio_pooled = self._apply_null_condition(audio_tokens, audio_pooled, drop)

        time_emb = self.time_embed(self.time_proj(timestep).to(sample.dtype))  # e: (B, 4D)
        t_cond = self.time_cond(time_emb) + audio_pooled  # t_c: (B, D), the FiLM input
        time_tokens = self.time_tokens(time_emb).unflatten(-1, (self.config.num_time_tokens, -1))  # (B, 2, D)
        memory = self.memory_norm(torch.cat([audio_tokens, time_tokens], dim=1))  # (B, F + 2, D)

        merged = self._decode(face_tokens, body_tokens, memory, t_cond)  # (B, F, D)
        return self.proj_out(merged).unflatten(-1, (-1, 3))  # (B, F, K, 3)

    # -- forward steps -----------------------------------------------------------------------------------------------

    def _embed_motion(self, sample: torch.Tensor, cond_pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Paper Eqs. 5-8: concat[x_t ⊙ M, repeat_F(p0 ⊙ M)] for M = M_f and M_b (1 - M_f), each encoded to (B,F,D)."""
        cond = cond_pose.unsqueeze(1).expand_as(sample)  # (B, F, K, 3): p0 repeated over the window
        face_in = torch.cat([(sample * self.face_mask).flatten(2), (cond * self.face_mask).flatten(2)], dim=-1)
        body_mask = self.body_mask
        body_in = torch.cat([(sample * body_mask).flatten(2), (cond * body_mask).flatten(2)], dim=-1)  # (B, F, 2K*3)
        body_encoder = self.face_encoder if self.body_encoder is None else self.body_encoder
        return self.face_encoder(face_in), body_encoder(body_in)

    def _drop_mask(self, batch: int, drop_audio, force_uncond: bool, device) -> torch.Tensor:
        if force_uncond:
            return torch.ones(batch, dtype=torch.bool, device=device)
        if drop_audio is not None:
            return drop_audio.to(device=device, dtype=torch.bool)
        if self.training and self.config.cond_drop_prob > 0:
            return torch.rand(batch, device=device) < self.config.cond_drop_prob
        return torch.zeros(batch, dtype=torch.bool, device=device)

    def _apply_null_condition(self, audio_tokens, audio_pooled, drop):
        """Swap dropped samples' A and h_a for the learned null sequence and vector (EDGE-style CFG dropout)."""
        frames = audio_tokens.shape[1]
        null_tokens = self.null_audio_tokens
        # Windows longer than the training window tile the null sequence; shorter ones take its first F frames.
        # Official SMGA only ever sees F = window_frames, where this is the identity.
        if frames > null_tokens.shape[1]:
            null_tokens = null_tokens.repeat(1, -(-frames // null_tokens.shape[1]), 1)
        null_tokens = null_tokens[:, :frames].to(audio_tokens.dtype)  # (1, F, D)
        audio_tokens = torch.where(drop[:, None, None], null_tokens, audio_tokens)  # (B, F, D)
        audio_pooled = torch.where(drop[:, None], self.null_audio_pooled.to(audio_pooled.dtype), audio_pooled)
        return audio_tokens, audio_pooled

    def _decode(self, face, body, memory, t_cond) -> torch.Tensor:
        """Run the decoder layers; ``body_stream`` decides which states the next layer receives."""
        body_embedding = body
        for layer in self.layers:
            face_out, body_out, merged = layer(face, body, memory, t_cond, self.config.num_time_tokens)
            if self.config.body_stream == "merged":
                face, body = merged, merged
            elif self.config.body_stream == "carry":
                # Each stream keeps its own state; only the last layer's Merge block reaches the output.
                face, body = face_out, body_out
            else:  # "static", official: the body stream is re-fed its original embedding at every layer
                face, body = merged, body_embedding
        return merged

    def _check_inputs(self, sample, timestep, cond_pose, audio, drop_audio) -> torch.Tensor:
        k, audio_dim = self.config.num_keypoints, self.config.audio_dim
        if sample.ndim != 4 or sample.shape[2:] != (k, 3):
            raise MmgtError(f"sample must have shape (B, F, {k}, 3), got {tuple(sample.shape)}")
        batch, frames = sample.shape[:2]
        if cond_pose.shape != (batch, k, 3):
            raise MmgtError(f"cond_pose must have shape ({batch}, {k}, 3), got {tuple(cond_pose.shape)}")
        if audio.shape != (batch, frames, audio_dim):
            raise MmgtError(f"audio must have shape ({batch}, {frames}, {audio_dim}), got {tuple(audio.shape)}")
        if drop_audio is not None and drop_audio.shape != (batch,):
            raise MmgtError(f"drop_audio must have shape ({batch},), got {tuple(drop_audio.shape)}")
        timestep = torch.as_tensor(timestep, device=sample.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(batch)
        if timestep.shape != (batch,):
            raise MmgtError(f"timestep must have shape ({batch},) or be a scalar, got {tuple(timestep.shape)}")
        return timestep


def _check_config(
    num_keypoints, hidden_dim, num_heads, face_indices, body_stream, cond_drop_prob, rotary
) -> list[int]:
    """Validate constructor arguments; returns ``face_indices`` as a sorted list of ints."""
    if rotary not in ROTARY_MODES:
        raise MmgtError(f"rotary must be one of {ROTARY_MODES}, got {rotary!r}")
    if hidden_dim % num_heads or (hidden_dim // num_heads) % 2:
        raise MmgtError(f"hidden_dim={hidden_dim} must split into num_heads={num_heads} heads of even size (rotary)")
    if body_stream not in BODY_STREAMS:
        raise MmgtError(f"body_stream must be one of {BODY_STREAMS}, got {body_stream!r}")
    if not 0.0 <= cond_drop_prob <= 1.0:
        raise MmgtError(f"cond_drop_prob must be in [0, 1], got {cond_drop_prob}")
    indices = sorted({int(i) for i in face_indices})
    if not indices or indices[0] < 0 or indices[-1] >= num_keypoints or len(indices) == num_keypoints:
        raise MmgtError(f"face_indices must be a non-empty proper subset of range({num_keypoints}), got {indices}")
    return indices

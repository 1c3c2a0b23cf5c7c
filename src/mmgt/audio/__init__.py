"""Audio features on the 25 fps grid: librosa music features, log-mel fallback, speech encoders, windows, cache."""

from mmgt.audio.cache import FeatureCache
from mmgt.audio.encoders import SpeechEncoder
from mmgt.audio.features import (
    feature_spec,
    stage1_audio_features,
    stage1_audio_features_windowed,
    stage1_feature_dim,
    stage2_audio_features,
)
from mmgt.audio.librosa_features import FEATURE_NAMES, LIBROSA_FEATURE_DIM, librosa_features
from mmgt.audio.mel import mel_features
from mmgt.audio.windows import pad_to, stack_context, window_slices

__all__ = [
    "FEATURE_NAMES",
    "LIBROSA_FEATURE_DIM",
    "FeatureCache",
    "SpeechEncoder",
    "feature_spec",
    "librosa_features",
    "mel_features",
    "pad_to",
    "stack_context",
    "stage1_audio_features",
    "stage1_audio_features_windowed",
    "stage1_feature_dim",
    "stage2_audio_features",
    "window_slices",
]

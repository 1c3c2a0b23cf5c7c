"""``mmgt audio ...``: compute the stage-1 / stage-2 audio features of an audio file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmgt.cli._common import add_group


def register(subparsers) -> None:
    commands = add_group(
        subparsers, "audio", "Audio features on the 25 fps grid (stage-1 condition, stage-2 wav2vec2)."
    )

    p = commands.add_parser(
        "features",
        help="Compute the audio features of an audio file and save them as .npz.",
        description="Compute audio features at 25 fps (exactly ceil(duration * 25) frames) and save an .npz with "
        "keys features, fps, num_frames and spec_json. Stage 1: 35 librosa features plus the last layer of a "
        "speech encoder (WavLM-Large: 1059-d) or, without --encoder, an 81-d log-mel fallback. Stage 2: all hidden "
        "states of a wav2vec2 encoder, (T, L, D).",
    )
    p.add_argument("audio", type=Path, help="audio file (wav/flac/mp3/m4a/..., or a video with an audio track)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .npz file")
    p.add_argument(
        "--encoder",
        type=Path,
        default=None,
        help="local speech-encoder folder (WavLM for stage 1, wav2vec2 for stage 2); nothing is downloaded",
    )
    p.add_argument(
        "--stage",
        type=int,
        choices=(1, 2),
        default=1,
        help="1: librosa + speech features (T, 35 + D); 2: wav2vec2 hidden states (T, L, D); default 1",
    )
    p.add_argument(
        "--windowed",
        action="store_true",
        help="stage 1 only: extract per contiguous 3.2-s window as SMGA was trained (recommended)",
    )
    p.add_argument("--device", default="cpu", help="torch device for the speech encoder (default cpu)")
    p.set_defaults(func=_features)


def _features(args: argparse.Namespace) -> int:
    import numpy as np

    from mmgt.audio import (
        SpeechEncoder,
        feature_spec,
        stage1_audio_features,
        stage1_audio_features_windowed,
        stage2_audio_features,
    )
    from mmgt.audio.features import STAGE1_WINDOW_FRAMES
    from mmgt.constants import FPS, SAMPLE_RATE
    from mmgt.errors import MmgtError
    from mmgt.utils.audio_io import load_audio

    if args.stage == 2 and args.encoder is None:
        raise MmgtError("--stage 2 needs --encoder (a local wav2vec2 folder)")
    if args.stage == 2 and args.windowed:
        raise MmgtError("--windowed applies to --stage 1 only")
    wave = load_audio(args.audio, sample_rate=SAMPLE_RATE)
    encoder = None
    if args.encoder is not None:
        encoder = SpeechEncoder.for_stage(args.encoder, args.stage, device=args.device)

    if args.stage == 2:
        features = stage2_audio_features(wave, SAMPLE_RATE, encoder)
        spec = feature_spec(encoder, stage=2)
    elif args.windowed:
        features = stage1_audio_features_windowed(wave, SAMPLE_RATE, STAGE1_WINDOW_FRAMES, encoder=encoder)
        spec = feature_spec(encoder, stage=1, window_frames=STAGE1_WINDOW_FRAMES)
    else:
        features = stage1_audio_features(wave, SAMPLE_RATE, encoder=encoder)
        spec = feature_spec(encoder, stage=1)

    _save_npz_atomic(
        args.output,
        features=features,
        fps=np.int64(FPS),
        num_frames=np.int64(features.shape[0]),
        spec_json=np.array(json.dumps(spec, sort_keys=True)),
    )
    print(f"{args.output}: features {tuple(features.shape)} at {FPS} fps from {args.audio}")
    return 0


def _save_npz_atomic(path: Path, **arrays) -> None:
    """np.savez into a temporary file next to ``path``, then os.replace (never a half-written output)."""
    import numpy as np

    from mmgt.utils.files import atomic_output

    with atomic_output(path) as tmp:
        np.savez(tmp, **arrays)

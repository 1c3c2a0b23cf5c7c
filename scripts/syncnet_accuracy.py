"""The lip-sync expert's acceptance measures on one split of a dataset (docs/lipsync.md).

Usage:
    python scripts/syncnet_accuracy.py runs/syncnet/tiny/final synth-data --split test [--vae VAE_FOLDER]

Prints JSON: ``acc`` (balanced accuracy of in-sync windows against windows whose audio is shifted by 5-15 frames),
``pos_acc``, ``neg_acc``, ``offset_acc`` (clips whose AV offset is found at 0 +- 1 frame), Sync-D / Sync-C with the
expert, and the accuracy for each single shift 1..15 (``shift_acc``: the share of windows whose in-sync logit beats the
logit with the audio shifted by that many frames, either way). With ``--vae`` the same measures are computed a second
time on the frames passed through that VAE (``vae``: the domain of the stage-2 sync loss's decoded predictions).
"""

from __future__ import annotations

import argparse
import json

import torch
from diffusers import AutoencoderKL

from mmgt.models.lipsync import LipSyncExpert
from mmgt.training.lipsync_data import SyncClips, clip_embeddings, sync_accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("expert", help="a `mmgt train syncnet` export")
    parser.add_argument("data", help="dataset folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--vae", default=None, help="also score the frames after this VAE's round trip")
    args = parser.parse_args()
    expert = LipSyncExpert.from_pretrained(args.expert).eval()
    vae = None if args.vae is None else AutoencoderKL.from_pretrained(args.vae).eval()
    clips = SyncClips(args.data, args.split, crop_size=expert.config.crop_size, vae=vae)
    report = {"clips": len(clips)}
    for decoded in (False, True) if vae is not None else (False,):
        report["vae" if decoded else "frames"] = measures(expert, clips, decoded)
    print(json.dumps(report, indent=1))


def measures(expert: LipSyncExpert, clips: SyncClips, decoded: bool) -> dict:
    """sync_accuracy plus the accuracy against each single shift 1..15."""
    report = sync_accuracy(expert, clips, decoded)
    wins = {s: [] for s in range(1, 16)}
    with torch.no_grad():
        for clip in range(len(clips)):
            video, audio = clip_embeddings(expert, clips, clip, decoded)
            logits = expert.logits(video[:, None], audio[None])  # (T, T): video t against audio u
            for s in wins:
                for t in range(len(video)):
                    wins[s] += [float(logits[t, t] > logits[t, u]) for u in (t - s, t + s) if 0 <= u < len(video)]
    report["shift_acc"] = {s: round(sum(v) / len(v), 4) for s, v in wins.items()}
    return report


if __name__ == "__main__":
    main()

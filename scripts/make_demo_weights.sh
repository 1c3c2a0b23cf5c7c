#!/usr/bin/env bash
# Rebuild the bundled demo model (src/mmgt/assets/demo) from scratch on the synthetic speaker world.
# Every step is skipped when its output exists, so an interrupted run continues where it stopped.
# Runtime on 2 CPU cores: see docs/demo.md. Usage: make demo-weights   (or WORK=dir scripts/make_demo_weights.sh)
set -euo pipefail

WORK=${WORK:-demo-build}
MMGT=${MMGT:-.venv/bin/mmgt}
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-src/mmgt/assets/demo}
mkdir -p "$WORK"
step() { echo "== $(date +%H:%M:%S) $*"; }

# Stage 2: 200 clips x 4 s at 128 px of 4 speakers, half of them spoken by espeak-ng (procedural speech alone leaves
# the audio path deaf to real speech: docs/demo.md); VAE and image step with the face and hands weighted, the lip-sync
# expert, then the video step with the mouth points withheld from the pose images and the expert's sync loss.
command -v espeak-ng > /dev/null || { echo "make_demo_weights: needs espeak-ng (apt install espeak-ng)" >&2; exit 1; }
if [ ! -f "$WORK/s2data/manifest.jsonl" ]; then
  step "synthetic stage-2 world"
  $MMGT synth --out "$WORK/s2data" --clips 200 --seconds 4 --size 128 --identities 4 --seed 0 --workers 2 --tts 0.5
fi
if [ ! -f "$WORK/runs/vae/tiny/final/config.json" ]; then
  step "tiny VAE"
  $MMGT train vae --config configs/vae/tiny.yaml data.root="$WORK/s2data" output_root="$WORK/runs"
fi
if [ ! -f "$WORK/runs/stage2/tiny_image/final/unet/config.json" ]; then
  step "stage 2, image step"
  $MMGT train stage2 --step image --config configs/stage2/tiny_image.yaml data.root="$WORK/s2data" \
    vae="$WORK/runs/vae/tiny/final" output_root="$WORK/runs"
fi
if [ ! -f "$WORK/runs/syncnet/tiny/final/config.json" ]; then
  step "lip-sync expert (frames and their VAE round trips)"
  $MMGT train syncnet --config configs/syncnet/tiny.yaml data.root="$WORK/s2data" \
    data.vae="$WORK/runs/vae/tiny/final" output_root="$WORK/runs"
fi
if [ ! -f "$WORK/runs/stage2/tiny_video/final/model_index.json" ]; then
  step "stage 2, video step"
  $MMGT train stage2 --step video --config configs/stage2/tiny_video.yaml data.root="$WORK/s2data" \
    init_from="$WORK/runs/stage2/tiny_image/final" output_root="$WORK/runs" data.pose_mouth=false \
    objective.sync_loss_weight=0.3 objective.sync_expert="$WORK/runs/syncnet/tiny/final"
fi

# Stage 1: 240 clips x 8 s at 64 px of 8 speakers (poses only matter; the pixels are small).
if [ ! -f "$WORK/s1data/manifest.jsonl" ]; then
  step "synthetic stage-1 world"
  $MMGT synth --out "$WORK/s1data" --clips 240 --seconds 8 --size 64 --identities 8 --seed 1 --workers 2
fi
if [ ! -f "$WORK/runs/stage1/tiny/final/model_index.json" ]; then
  step "stage 1 (SMGA)"
  $MMGT train stage1 --config configs/stage1/tiny.yaml data.root="$WORK/s1data" output_root="$WORK/runs"
fi

step "assemble $OUT"
$MMGT weights assemble --stage1 "$WORK/runs/stage1/tiny/final" --stage2 "$WORK/runs/stage2/tiny_video/final" \
  --size 128 -o "$OUT/model"  # sampling: the tiny preset's defaults, carried by the exports
$PYTHON scripts/demo_speaker.py "$WORK/s2data" "$OUT"
step "done: $(du -sh "$OUT" | cut -f1) in $OUT"

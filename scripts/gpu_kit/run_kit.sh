#!/usr/bin/env bash
# Install the kit offline next to the machine's torch, check the imports, then run the benchmark (<= 8 minutes).
#   bash run_kit.sh                  # CUDA: sd15 512² fp16/bf16 + stage-1 paper size; table in results/gpu_bench.md
#   bash run_kit.sh --cpu-fallback   # no GPU: tiny sizes, 2 steps (checks the install and the code path)
# Environment: KIT_PYTHON (default python3: the interpreter that holds torch), KIT_VENV (default a new folder under
# /tmp), KIT_TIMEOUT (default 480 s for the benchmark).
set -euo pipefail
KIT=$(cd "$(dirname "$0")" && pwd)
PY=${KIT_PYTHON:-python3}
VENV=${KIT_VENV:-$(mktemp -d /tmp/mmgt-kit-venv.XXXXXX)}
"$PY" -c "import torch" 2>/dev/null || { echo "run_kit.sh: $PY cannot import torch (set KIT_PYTHON)" >&2; exit 1; }
start=$(date +%s)
# A venv that sees every package of $PY (torch, and whatever the GPU image already has) through a .pth file: unlike
# --system-site-packages this also works when $PY is itself a venv (the GPU image's python3 is /opt/torch/.venv).
# pip installs only what requirements.txt needs and $PY lacks, from the kit's wheels alone (--no-index: no network);
# the venv's own site-packages come first on sys.path, so the kit's versions win.
"$PY" -m venv --without-pip "$VENV"   # pip (and setuptools) come from $PY: no older bundled copies in front
site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
"$PY" - > "$site/base_python.pth" <<'PYEOF'
import os, sys, sysconfig
stdlib = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")}
for p in sys.path:  # site-packages and whatever .pth files added, not the standard library
    if p and os.path.isdir(p) and os.path.realpath(p) not in stdlib and not p.endswith("lib-dynload"):
        print(p)
PYEOF
PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_INDEX_URL= PIP_EXTRA_INDEX_URL= \
    "$VENV/bin/python" -m pip install --quiet --no-index --find-links "$KIT/wheels" --no-cache-dir \
    --disable-pip-version-check -r "$KIT/requirements.txt"
echo "$KIT/src" > "$site/mmgt_kit.pth"   # mmgt's source, without installing its heavier data-pipeline extras
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
"$VENV/bin/python" -c "import mmgt, mmgt.pipelines.pose_to_video, mmgt.pipelines.audio_to_pose, torch; \
print('mmgt', mmgt.__version__, 'from', mmgt.__file__, '| torch', torch.__version__, \
'| cuda', torch.cuda.is_available())"
echo "installed in $(( $(date +%s) - start )) s into $VENV"
mkdir -p "$KIT/results"
timeout "${KIT_TIMEOUT:-480}" "$VENV/bin/python" "$KIT/bench_gpu.py" --out "$KIT/results" "$@"

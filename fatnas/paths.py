"""Where fatnas keeps the files a user makes (runs, exported variants): the working directory or $FATNAS_HOME.

Nothing is ever written beside the installed package; the package's own data (search spaces)
is read through importlib.resources.
"""
from __future__ import annotations

import os
from pathlib import Path


def home_dir() -> Path:
    """$FATNAS_HOME when set, else the current directory (relative, so printed paths stay short)."""
    return Path(os.environ.get("FATNAS_HOME") or ".")


__all__ = ["home_dir"]

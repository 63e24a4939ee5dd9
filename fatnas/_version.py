"""The installed fatnas version (base layer: imports nothing of fatnas)."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fatnas")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.1.0+source"

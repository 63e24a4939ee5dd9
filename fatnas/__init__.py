"""fatnas: neural architecture search and scaling explorer for FAT."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fatnas")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.1.0+source"

from .config import ConfigError, FATConfig, plan
from .model import FAT
from .variants import create_model, get_config, list_models

__all__ = ["__version__", "ConfigError", "FAT", "FATConfig", "create_model", "get_config", "list_models", "plan"]

"""fatnas: neural architecture search and scaling explorer for FAT."""
from . import _moved
from ._version import __version__

_moved.install()  # old module paths (fatnas.cost, fatnas.proxy, ...) keep working for one release

from .model import FAT, ConfigError, FATConfig, create_model, get_config, list_models, plan  # noqa: E402

__all__ = ["__version__", "ConfigError", "FAT", "FATConfig", "create_model", "get_config", "list_models", "plan"]

"""fatnas: neural architecture search and scaling explorer for FAT."""
from .config import ConfigError, FATConfig, plan
from .model import FAT
from .variants import create_model, get_config, list_models

__all__ = ["ConfigError", "FAT", "FATConfig", "create_model", "get_config", "list_models", "plan"]

"""A weight-sharing FAT supernet: train once on a space, then score any of its configs in seconds."""
from .elastic import SliceMap, Supernet, SupernetError, extreme_config, largest_config

__all__ = ["SliceMap", "Supernet", "SupernetError", "extreme_config", "largest_config"]

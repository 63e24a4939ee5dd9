"""Model layer: FATConfig, the FAT modules with their cost twins, variants, spaces; imports only errors and paths.

`fatnas.model` was the network's module before the layer packages; its names (FAT, FASA, Stem, ...)
stay importable from here.
"""
from .config import ConfigError, FATConfig, plan
from .network import (
    FASA,
    FAT,
    ConvFFN,
    DownsampleShortcut,
    DropPath,
    FATBlock,
    Head,
    LayerNorm2d,
    RefinedDownsample,
    Stem,
    depthwise,
    depthwise_cx,
    feature_taps,
    pointwise,
    pointwise_cx,
    pretrained_cfg,
    tap_indices,
)
from .variants import create_model, get_config, list_models

__all__ = ["FASA", "FAT", "ConfigError", "ConvFFN", "DownsampleShortcut", "DropPath", "FATBlock", "FATConfig", "Head",
           "LayerNorm2d", "RefinedDownsample", "Stem", "create_model", "depthwise", "depthwise_cx", "feature_taps",
           "get_config", "list_models", "plan", "pointwise", "pointwise_cx", "pretrained_cfg", "tap_indices"]

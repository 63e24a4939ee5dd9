"""Registry of named FAT variants and `create_model`.

Variants are data: the published family lives in the table below, and every YAML file in
the variants folder (`variants_dir()`, where `cli.py export` writes) is a variant named after
its file.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..documents import read_yaml
from ..errors import FatnasError, shown
from ..paths import folder_setting, home_dir
from .config import ConfigError, FATConfig
from .network import FAT

_FAMILY = dict(kernels=[3, 5, 7, 9], windows=[8, 4, 2, 1], ffn_ratios=4.0, ffn_kernels=5)

PUBLISHED: dict[str, dict[str, Any]] = {
    "fat_b0": dict(widths=[32, 80, 160, 256], depths=[2, 2, 6, 2], heads=[2, 5, 10, 16],
                   drop_path_rate=0.05, **_FAMILY),
    "fat_b1": dict(widths=[48, 96, 192, 384], depths=[2, 2, 6, 2], heads=[3, 6, 12, 24],
                   drop_path_rate=0.10, **_FAMILY),
    "fat_b2": dict(widths=[64, 128, 256, 512], depths=[2, 2, 6, 2], heads=[2, 4, 8, 16],
                   drop_path_rate=0.10, **_FAMILY),
    "fat_b3": dict(widths=[64, 128, 256, 512], depths=[4, 4, 16, 4], heads=[2, 4, 8, 16],
                   drop_path_rate=0.15, **_FAMILY),
}

# What the paper reports (ImageNet-1K, 224 x 224); its FLOPs column counts convolutions only.
PAPER_FIGURES: dict[str, dict[str, float]] = {
    "fat_b0": dict(params_m=4.5, flops_g=0.7, top1=77.6),
    "fat_b1": dict(params_m=7.8, flops_g=1.2, top1=80.1),
    "fat_b2": dict(params_m=13.5, flops_g=2.0, top1=81.9),
    "fat_b3": dict(params_m=29.0, flops_g=4.4, top1=83.6),
}

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class UnknownModelError(FatnasError):
    """A model name that is not registered."""


def variants_dir() -> Path:
    """Folder of exported variants: $FATNAS_VARIANTS_DIR, else `variants/` in $FATNAS_HOME or the current directory."""
    return folder_setting("FATNAS_VARIANTS_DIR", home_dir() / "variants")


def _exported() -> dict[str, Path]:
    folder = variants_dir()
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.yaml")) if NAME_PATTERN.fullmatch(p.stem)}


def list_models() -> list[str]:
    """Names of every registered variant: the published family, then exported ones."""
    return list(PUBLISHED) + sorted(n for n in _exported() if n not in PUBLISHED)


def get_config(name: str) -> FATConfig:
    """The config of a registered variant; an unknown name lists the known ones."""
    if name in PUBLISHED:
        return FATConfig.from_dict(PUBLISHED[name])
    exported = _exported()
    if name in exported:
        return FATConfig.from_yaml(exported[name])
    raise UnknownModelError(f"unknown model {shown(name)}; known models: {', '.join(list_models())}")


def variant_metadata(name: str) -> dict[str, Any]:
    """Provenance stored with an exported variant (empty for the published family)."""
    exported = _exported()
    if name not in exported:
        return {}
    data = read_yaml(exported[name], f"variant {name!r} ({exported[name]})") or {}
    source = data.get("source", {}) if isinstance(data, dict) else None
    if not isinstance(source, dict):
        raise FatnasError(f"variant {name!r} ({exported[name]}): its source is {shown(source)}, not a mapping")
    return dict(source)


def resolve_config(spec: str | Path | FATConfig, **overrides: Any) -> FATConfig:
    """A variant name, a YAML path or a config, with caller overrides applied on top."""
    if isinstance(spec, FATConfig):
        cfg = spec
    elif str(spec).endswith((".yaml", ".yml")) or os.sep in str(spec):
        cfg = FATConfig.from_yaml(spec)
    else:
        cfg = get_config(str(spec))
    return cfg.replace(**overrides) if overrides else cfg


def create_model(spec: str | Path | FATConfig, pretrained: bool = False, **overrides: Any) -> FAT:
    """Build a FAT from a variant name, a YAML path or a FATConfig; overrides win (e.g. num_classes=10).

    `pretrained`: load the weights exported with the variant (`export ... --with-weights`); a
    `num_classes` other than theirs gets a new, freshly initialised classifier (for fine-tuning).
    """
    if not pretrained:
        return FAT(resolve_config(spec, **overrides))
    state = load_weights(spec)
    trained_head = dict(in_chans=int(state["in_chans"]), num_classes=int(state["num_classes"]))
    changes = {k: v for k, v in overrides.items() if k != "num_classes"}
    model = FAT(resolve_config(spec, **dict(trained_head, **changes)))
    model.load_state_dict(state["state_dict"])
    if overrides.get("num_classes", model.num_classes) != model.num_classes:
        model.reset_classifier(int(overrides["num_classes"]))
        model.cfg = model.cfg.replace(num_classes=int(overrides["num_classes"]))
    return model


def weights_path(name: str) -> Path:
    """Where the weights exported with variant `name` live: `variants_dir()/NAME.pt`."""
    return variants_dir() / f"{name}.pt"


def load_weights(spec: str | Path | FATConfig) -> dict[str, Any]:
    """The weights exported with a variant (read with weights_only=True: a weights file never runs code)."""
    import torch

    path = weights_path(str(spec)) if isinstance(spec, str) and spec in _exported() else None
    if path is None or not path.is_file():
        raise UnknownModelError(f"{shown(spec)} has no exported weights; a supernet search's trial gets them with "
                                f"`fatnas export RUN --trial N --name NAME --with-weights`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: torch raises many kinds
        raise UnknownModelError(f"{path}: not a readable weights file ({type(exc).__name__}); "
                                "export it again") from None
    if not isinstance(state, dict) or not {"state_dict", "in_chans", "num_classes"} <= set(state):
        raise UnknownModelError(f"{path}: not a fatnas weights file; export it again")
    return state


__all__ = ["PUBLISHED", "PAPER_FIGURES", "ConfigError", "UnknownModelError", "create_model",
           "get_config", "list_models", "load_weights", "resolve_config", "variants_dir", "variant_metadata",
           "weights_path"]

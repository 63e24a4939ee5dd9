"""fatnas: neural architecture search and scaling explorer for FAT.

The house, one way down: `model` (config, network, variants, spaces) <- `estimate` (cost, budgets,
latency, data, proxy training, zero-cost scores: one Estimator shape) <- `runs` (run folders,
export) <- `search` (one SearchBackend protocol: Optuna, Ray) <- `study` and `scaling` <- `report`
<- `cli`. The Python API (`fatnas.api`) is reachable from here: `fatnas.create_model`,
`fatnas.cost`, `fatnas.measure`, `fatnas.optimize(...)`, `fatnas.new_search`, `fatnas.resume_search`,
`fatnas.confirm`.
"""
from typing import Any

from . import _timm
from ._version import __version__

_timm.install()  # the variants become timm models when timm is imported (fatnas never imports it)

from .model import FAT, ConfigError, FATConfig, create_model, get_config, list_models, plan  # noqa: E402

API = ("cost", "measure", "optimize", "new_search", "resume_search", "search_settings", "paper_comparison",
       "parse_budget", "load_space", "config_of", "Search", "confirm")


def __getattr__(name: str) -> Any:
    """The API's calls, imported when first used (`import fatnas` stays light)."""
    if name in API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["__version__", "ConfigError", "FAT", "FATConfig", "create_model", "get_config", "list_models", "plan",
           *API]

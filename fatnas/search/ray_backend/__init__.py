"""The Ray Tune search backend, in four rooms: `backend` (the SearchBackend), `options` (resources, concurrency,
address; checked up front), `trainable` (what runs inside a Tune trial) and `driver` (runtime, searcher, scheduler,
stopper, Tuner, rows); imports what the search package does, and Ray.

This package is the only part of fatnas that imports Ray, and only when a name from `driver` is
first used: `options` must run first, because Ray reads at import whether it may leave loopback.
"""
from __future__ import annotations

import importlib
from typing import Any

from .options import RayOptions, RayOptionsError, check_ray_options, keep_ray_on_loopback

# Runs started before the split hold Tune pickles (tuner.pkl: searcher, scheduler, stopper, callbacks)
# that name these as `fatnas.search.ray_backend.<name>`; they stay reachable here so those runs resume.
DRIVER_NAMES = ("MedianScheduler", "RaySearch", "RunRecorder", "SessionStopper", "StudySearcher", "trial_dirname",
                "trial_name")


def __getattr__(name: str) -> Any:
    if name in DRIVER_NAMES:
        return getattr(importlib.import_module(f"{__name__}.driver"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RayOptions", "RayOptionsError", "RaySearch", "check_ray_options", "keep_ray_on_loopback"]

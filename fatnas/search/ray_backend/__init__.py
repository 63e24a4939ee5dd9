"""Search with Ray Tune, in three rooms: `options` (resources, concurrency, address; checked up front),
`trainable` (what runs inside a Tune trial) and `driver` (runtime, searcher, scheduler, stopper, Tuner, rows).

This package is the only part of fatnas that imports Ray.
"""
from __future__ import annotations

# Runs started before the split hold Tune pickles (tuner.pkl: searcher, scheduler, stopper, callbacks)
# that name these as `fatnas.search.ray_backend.<name>`; they stay importable here so those runs resume.
from .driver import (  # noqa: F401
    MedianScheduler,
    RaySearch,
    RunRecorder,
    SessionStopper,
    StudySearcher,
    trial_dirname,
    trial_name,
)
from .options import RayOptions, RayOptionsError, check_ray_options

__all__ = ["RayOptions", "RayOptionsError", "RaySearch", "check_ray_options"]

"""The `ray` search backend: its options, what it refuses, and its run, which is the first thing to import Ray."""
from __future__ import annotations

from typing import Any

from ...errors import FatnasError
from ..backend import SearchJob
from ..evaluate import SearchSettings
from .options import RayOptions, check_ray_options, keep_ray_on_loopback


class RayBackend:
    """A search as one Ray Tune experiment: Tune's trials on every node's CPUs or GPUs, one driver process."""

    name = "ray"
    option_names = ("cpus_per_trial", "gpus_per_trial", "max_concurrent", "ray_address")

    def make_options(self, device: str | None, **values: Any) -> RayOptions:
        return check_ray_options(device=device, **values)

    def check(self, settings: SearchSettings | None = None, *, storage: str | None = None, workers: int = 1,
              joining: bool = False) -> None:
        if settings is not None and settings.prescreen:
            raise FatnasError("--prescreen works with the optuna backend only; drop it or use --backend optuna")
        if storage is not None:
            raise FatnasError("--storage works with the optuna backend only; drop it or use --backend optuna")
        if workers > 1 or joining:
            raise FatnasError("--workers and --join work with the optuna backend; Ray schedules its own workers")

    def run(self, job: SearchJob, options: RayOptions) -> None:
        keep_ray_on_loopback(options.address)  # before Ray is imported
        from .driver import RaySearch

        RaySearch(job.run, job.settings, job.data, progress=job.progress, options=options).optimize()

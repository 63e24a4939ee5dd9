"""A search from plain values, as `fatnas search` runs one: `new_search` and `resume_search` check everything
before any run folder exists and return a `Search`, whose `run()` carries it out; `search(...)` does both
(`fatnas.optimize(budget="2GFLOPs", trials=20)`)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

from ..errors import MAX_TRIALS, MAX_WORKERS, FatnasError, check_device, check_positive
from ..estimate.base import check_estimator_task, make_estimator
from ..estimate.cost import parse_budget
from ..estimate.data import DataSplit, parse_classes, settings_data
from ..estimate.latency.table import checked_table_path
from ..estimate.proxy import ProxySettings
from ..model.space import load_space
from ..runs.store import Run, new_run, open_run
from .backend import backend_options, get_backend, run_search
from .core import check_latency_reachable
from .evaluate import SearchSettings
from .record import check_recorded_study, check_storage, record_run, resume_settings, storage_of, validation_images
from .storage import Heartbeat


def _given(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


DEFAULT_TRIALS = 20  # proxy-trained candidates of a search, unless --trials says otherwise
CHEAP_ESTIMATOR_TRIALS = 300  # candidates scored without training (a supernet's): seconds each, so hundreds
# for supernet-scored candidates too: at 100 trials TPE's front had the largest hypervolume (38.8 over 3 seeds,
# against random's 36.6 and NSGA-II's 36.1; bench/results/sampler_bench_supernet.csv)
DEFAULT_SAMPLER = "tpe"


def check_trials(trials: int | None) -> None:
    """--trials, where given, from 1 to MAX_TRIALS (a larger count could not even be recorded)."""
    if trials is not None and not 0 < trials <= MAX_TRIALS:
        raise FatnasError(f"--trials {trials}: accepted 1 to {MAX_TRIALS:,}")


def search_settings(*, budget: str | Sequence[str] = (), space: str | None = None, trials: int | None = None,
                    timeout: float | None = None, sampler: str | None = None, seed: int = 0, device: str = "cpu",
                    threads: int = 1, dataset: str = "fashion-mnist", data_dir: str | None = None,
                    classes: str | Sequence[int] | None = None, proxy_res: int | None = None,
                    proxy_images: int | None = None, proxy_epochs: int | None = None, batch_size: int | None = None,
                    val_images: int | None = None, references: bool = True, early_stopping: bool = True,
                    prescreen: str | None = None, prescreen_keep: float | None = None, collapse_inert: bool = True,
                    heartbeat_interval: int | None = None, grace_period: int | None = None,
                    latency_model: str | None = None, estimator: str = "proxy",
                    supernet: str | None = None, noise_seeds: int | None = None) -> SearchSettings:
    """The settings of a new search from the values `fatnas search` takes (None: the default).

    `supernet` ID scores candidates with that trained supernet (estimator `supernet:ID`), at its resolution;
    one trained for another space, data set, classes or resolution is refused."""
    space_ = load_space(space)
    if supernet is not None:
        estimator = f"supernet:{supernet}"
    parsed_budget = parse_budget(budget, res=space_.resolution)
    if prescreen_keep is not None and prescreen is None:
        raise FatnasError("--prescreen-keep goes with --prescreen PROXY")
    check_device(device)
    check_positive(trials=trials, proxy_res=proxy_res, proxy_images=proxy_images, proxy_epochs=proxy_epochs,
                   batch_size=batch_size, threads=threads, val_images=val_images)
    check_trials(trials)
    proxy = ProxySettings(seed=seed, device=device, **_given(res=proxy_res, train_images=proxy_images,
                                                             epochs=proxy_epochs, batch_size=batch_size,
                                                             val_images=val_images))
    heartbeat = Heartbeat(**_given(interval_s=heartbeat_interval, grace_s=grace_period))
    if isinstance(classes, str):
        classes = parse_classes(classes)
    if estimator != "proxy":
        proxy = _fit_to_estimator(estimator, proxy, space_, dataset, tuple(classes or ()), proxy_res)
    trials = trials or (DEFAULT_TRIALS if estimator == "proxy" else CHEAP_ESTIMATOR_TRIALS)
    return SearchSettings(space=space_, budget=parsed_budget, proxy=proxy, trials=trials, timeout_s=timeout,
                          sampler=sampler or DEFAULT_SAMPLER, seed=seed, dataset=dataset, data_dir=data_dir,
                          references=references,
                          early_stopping=early_stopping, threads=threads, prescreen=prescreen,
                          collapse_inert=collapse_inert, heartbeat=heartbeat,
                          latency_model=checked_table_path(latency_model, space_), classes=tuple(classes or ()),
                          estimator=estimator, **_given(prescreen_keep=prescreen_keep, noise_seeds=noise_seeds))


def _fit_to_estimator(spec: str, proxy: ProxySettings, space: Any, dataset: str, classes: tuple[int, ...],
                      proxy_res: int | None) -> ProxySettings:
    """Proxy settings at the resolution of an estimator made for one (a supernet's), its task checked."""
    estimator = make_estimator(spec, device=proxy.device)
    res = proxy_res or getattr(estimator, "res", None) or proxy.res
    check_estimator_task(estimator, space=space, dataset=dataset, classes=classes, res=res)
    return dataclasses.replace(proxy, res=res)


@dataclass
class Search:
    """A search ready to run in its run folder (made, or found for --resume and --join)."""

    run: Run
    settings: SearchSettings
    data: DataSplit
    backend: str = "optuna"
    options: Any = None  # the backend's own (`backend_options`)
    storage: str | None = None
    joining: bool = False
    workers: int = 1

    def run_to_end(self, *, progress: bool = True) -> pd.DataFrame:
        """Carry the search out (to its target or timeout); returns the Pareto front."""
        return run_search(self.run, self.settings, backend=self.backend, options=self.options, data=self.data,
                          progress=progress, storage=self.storage, joining=self.joining, workers=self.workers)


def check_workers(backend: str, workers: int | None, joining: bool = False) -> int:
    """The worker processes of this search here (None: 1), if the backend takes them."""
    if workers is not None and workers < 1:
        raise FatnasError(f"--workers {workers}: must be a positive number of processes")
    if workers is not None and workers > MAX_WORKERS:
        raise FatnasError(f"--workers {workers}: at most {MAX_WORKERS} processes")
    get_backend(backend).check(workers=workers or 1, joining=joining)
    return workers or 1


def new_search(settings: SearchSettings, *, run_id: str | None = None, backend: str = "optuna", options: Any = None,
               storage: str | None = None, workers: int | None = None, argv: list[str] | None = None) -> Search:
    """A new run folder for `settings`, made only once the backend, storage and data are known good. `options`:
    the backend's own, from `backend_options(backend, device, ...)` (None: its defaults)."""
    count = check_workers(backend, workers)
    get_backend(backend).check(settings)
    options = options if options is not None else get_backend(backend).make_options(settings.device)
    storage = check_storage(storage, backend, settings.heartbeat)
    data = settings_data(settings)  # a missing data set fails before any run folder exists
    check_latency_reachable(settings)  # as does a latency budget no network meets
    run = new_run(run_id, "search", lambda r: record_run(r, settings, backend, argv=argv, storage=storage,
                                                        validation_images=validation_images(settings, data)))
    return Search(run, settings, data, backend, options, storage, False, count)


def resume_search(run_id: str, *, join: bool = False, backend: str = "optuna", options: Any = None,
                  storage: str | None = None, workers: int | None = None, trials: int | None = None,
                  timeout: float | None = None, device: str | None = None, threads: int | None = None) -> Search:
    """Continue a stopped search (`join`: add one worker to a running or stopped one) with this worker's changes
    (None keeps the recorded value)."""
    count = check_workers(backend, workers, join)
    check_trials(trials)
    run = open_run(run_id)
    if device is not None:
        check_device(device)
    settings = resume_settings(run, backend, trials=trials, timeout_s=timeout, device=device, threads=threads)
    url = storage_of(run, storage)  # another storage than the run's is refused before the data loads
    check_recorded_study(run, url)
    options = options if options is not None else get_backend(backend).make_options(None)
    return Search(run, settings, settings_data(settings), backend, options, url, join, count)


def optimize(budget: str | Sequence[str] = (), *, run_id: str | None = None, backend: str = "optuna",
           options: dict[str, Any] | None = None, storage: str | None = None, workers: int | None = None,
           progress: bool = True, **values: Any) -> Search:
    """Run a new search to its end: `values` are `search_settings`'s, `options` the backend's own (ray:
    cpus_per_trial, gpus_per_trial, max_concurrent, ray_address); returns the finished `Search`
    (`.run.trials()`, `.run.pareto()`)."""
    made = backend_options(backend, values.get("device", "cpu"), **(options or {}))  # before anything else
    job = new_search(search_settings(budget=budget, **values), run_id=run_id, backend=backend, options=made,
                     storage=storage, workers=workers)
    job.run_to_end(progress=progress)
    return job


__all__ = ["Search", "check_workers", "new_search", "optimize", "resume_search", "search_settings"]

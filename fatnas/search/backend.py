"""One interface over the search backends: a `SearchBackend` runs a `SearchJob` with its own checked options.

Backends are found by name in `BACKENDS` (`register_backend` adds one): `optuna` (workers share an
Optuna study through its storage) and `ray` (a Ray Tune experiment; Ray is imported only when this
backend runs). `run_search` is the same for all of them: the references first, then the backend.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import pandas as pd

from ..errors import FatnasError
from ..estimate.base import NotEstimable
from ..estimate.data import DataSplit, settings_data
from ..estimate.proxy import configure_threads
from ..model.variants import PUBLISHED
from ..runs.store import Run
from .evaluate import SearchSettings, price, time_candidate, train_candidate, trial_row
from .noise import measure_noise
from .record import record_target, storage_of


@dataclass(frozen=True)
class SearchJob:
    """One search process's part of a search: its run, settings and data, and how it works with the others."""

    run: Run
    settings: SearchSettings
    data: DataSplit
    progress: bool = True
    storage: str | None = None  # the study's storage URL (None: the one run.yaml names, default study.db)
    joining: bool = False  # one more worker of a search another process started (it leaves the references alone)
    workers: int = 1  # this process and workers - 1 more started here


class SearchBackend(Protocol):
    """A way to run a search: draw candidates, evaluate them (`evaluate.py`), keep the run folder current."""

    name: str
    option_names: tuple[str, ...]  # its own keyword options (each a --flag of `fatnas search`)

    def make_options(self, device: str | None, **values: Any) -> Any:
        """Its options from keyword `values` (all of `option_names` or fewer), checked before any run folder exists;
        `device` None: a resumed run's own."""

    def check(self, settings: SearchSettings | None = None, *, storage: str | None = None, workers: int = 1,
              joining: bool = False) -> None:
        """Refuse settings, a `--storage` URL or workers this backend cannot carry out (before any run folder exists;
        None: not given)."""

    def run(self, job: SearchJob, options: Any) -> None:
        """Run trials until the settings' target or timeout; trials.csv and pareto.csv stay current."""


BackendFactory = Callable[[], SearchBackend]


def _optuna() -> SearchBackend:
    from .optuna_backend import OptunaBackend

    return OptunaBackend()


def _ray() -> SearchBackend:
    from .ray_backend.backend import RayBackend  # imports no Ray until it runs

    return RayBackend()


BACKENDS: dict[str, BackendFactory] = {"optuna": _optuna, "ray": _ray}


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make `fatnas search --backend NAME` (and `run_search(backend=NAME)`) run the backend `factory()` makes."""
    BACKENDS[name] = factory


def get_backend(name: str) -> SearchBackend:
    if name not in BACKENDS:
        raise FatnasError(f"unknown backend {name!r}; accepted: {', '.join(BACKENDS)}")
    return BACKENDS[name]()


def backend_options(name: str, device: str | None = None, **values: Any) -> Any:
    """The options of backend `name` from the given `values` (None: not given); another backend's option is an error."""
    backend, given = get_backend(name), {k: v for k, v in values.items() if v is not None}
    foreign = [k for k in given if k not in backend.option_names]
    if foreign:
        owners = [other for other in BACKENDS if other != name and set(foreign) <= set(get_backend(other).option_names)]
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in foreign)
        where = f"--backend {owners[0]}" if owners else "no backend"
        raise FatnasError(f"{flags}: only valid with {where}")
    return backend.make_options(device, **given)


def evaluate_references(run: Run, settings: SearchSettings, data: DataSplit) -> pd.DataFrame:
    """Proxy-evaluate the published FATs that fit the budget, once per run (kept on resume)."""
    done = run.references()
    rows = done.to_dict("records") if not done.empty else []
    names = {r["name"] for r in rows}
    for name in PUBLISHED:
        if name in names or not settings.references:
            continue
        ev = price(settings.space.published(name), settings)
        if not ev.infeasible:
            time_candidate(ev, settings)
        state, error = ("REFERENCE" if not ev.infeasible else "OVER_BUDGET"), ""
        if not ev.infeasible:
            try:
                train_candidate(ev, data, settings)
            except NotEstimable as exc:  # e.g. deeper than a supernet's space holds
                state, error = "NOT_ESTIMABLE", str(exc)
        row = trial_row(-1, state, ev.attrs(), ev.accuracy, ev.latency_ms, error)
        rows.append(dict(name=name, **row))
        with run.lock():
            run.write_table("references.csv", pd.DataFrame(rows))
    return run.references()


def run_search(run: Run, settings: SearchSettings, *, backend: str = "optuna", options: Any = None,
               progress: bool = True, data: DataSplit | None = None, storage: str | None = None,
               joining: bool = False, workers: int = 1) -> pd.DataFrame:
    """Run (or continue, or as one more worker join) a search in `run`; returns the Pareto front.

    `options`: the backend's own, from `backend_options(backend, ...)` (None: its defaults). `storage` None:
    the one run.yaml names (default study.db). A joining worker leaves the references to the run's first
    worker. `workers` > 1: this process and `workers - 1` more started here, after the references.
    """
    chosen = get_backend(backend)
    if options is None:
        options = chosen.make_options(settings.device)
    chosen.check(settings, workers=workers, joining=joining)  # a resumed run's storage is its own
    configure_threads(settings.threads)
    url = storage_of(run, storage)
    record_target(run, settings, url)
    data = data if data is not None else settings_data(settings)
    if settings.references and not joining:
        evaluate_references(run, settings, data)
        measure_noise(run, settings, data, front=False, storage_url=url)
    chosen.run(SearchJob(run, settings, data, progress=progress, storage=storage, joining=joining, workers=workers),
               options)
    if not joining:
        measure_noise(run, settings, data, front=True, storage_url=url)
    return run.pareto()


__all__ = ["BACKENDS", "SearchBackend", "SearchJob", "backend_options", "evaluate_references",
           "get_backend", "register_backend", "run_search"]

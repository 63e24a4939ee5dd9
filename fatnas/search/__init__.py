"""Search layer: one SearchBackend protocol (Optuna, Ray Tune) over one candidate evaluation; imports model, estimate
and runs (Ray only inside `ray_backend`, and only when that backend runs).

Every backend writes the same run folder: run.yaml, trials.csv, pareto.csv, references.csv and
configs/; Optuna's study (study.db, or the `--storage` run.yaml names) or Ray's results folder hold
each backend's own state. An Optuna study also holds copies of run.yaml and references.csv, so
`sync_run` rebuilds the run folder on any machine that reaches the storage. Rooms: `evaluate`
(settings, one candidate), `core` (stop rule, cost bands, early stopping), `backend` (the protocol,
its registry and `run_search`), `record` (run.yaml round trips, storage, sync), `workers`,
`storage`, `optuna_backend`, `ray_backend/`, and `api` (a search from plain values: `fatnas.optimize(...)`).
"""
from .backend import (
    BACKENDS,
    SearchBackend,
    SearchJob,
    backend_options,
    evaluate_references,
    get_backend,
    register_backend,
    run_search,
)
from .evaluate import SearchSettings
from .record import (
    check_storage,
    record_run,
    resume_settings,
    settings_from_meta,
    settings_to_meta,
    storage_of,
    sync_run,
)
from .workers import start_workers, stop_workers, wait_workers

__all__ = ["BACKENDS", "SearchBackend", "SearchJob", "SearchSettings", "backend_options",
           "check_storage", "evaluate_references", "get_backend", "record_run", "register_backend", "resume_settings",
           "run_search", "settings_from_meta", "settings_to_meta", "start_workers", "stop_workers", "storage_of",
           "sync_run", "wait_workers"]

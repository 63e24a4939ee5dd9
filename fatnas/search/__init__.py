"""Architecture search: one interface, `run_search`, over swappable backends (Optuna, Ray Tune).

Both backends write the same run folder: run.yaml, trials.csv, pareto.csv, references.csv
and configs/; Optuna's study (study.db, or the `--storage` run.yaml names) or Ray's results
folder hold each backend's own state. An Optuna study also holds copies of run.yaml and
references.csv, so `sync_run` rebuilds the run folder on any machine that reaches the storage.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from ..cost import Budget, flop_convention
from ..data import DataSplit, settings_data
from ..errors import FatnasError
from ..latency import latency_source
from ..liveness import space_liveness
from ..paths import portable_path
from ..proxy import ProxySettings, configure_threads
from ..space import space_from_dict
from ..store import Run, RunError, create_run, open_run
from ..variants import PUBLISHED, get_config
from .evaluate import OBJECTIVES, SearchSettings, price, time_candidate, train_candidate, trial_row
from .storage import (
    WORKER_STORAGE_ENV,
    Heartbeat,
    has_masked_password,
    mask_password,
    normalize_storage,
    open_storage,
)

BACKENDS = ("optuna", "ray")


def settings_to_meta(settings: SearchSettings) -> dict[str, Any]:
    """The run.yaml view of the settings (round-trips through `settings_from_meta`)."""
    return dict(objectives=OBJECTIVES, space=settings.space.to_dict(), space_source=settings.space.source,
                budget=settings.budget.to_dict(), budget_text=settings.budget.describe(),
                proxy=settings.proxy.to_dict(), trials=settings.trials, timeout_s=settings.timeout_s,
                sampler=settings.sampler, seeds=dict(sampler=settings.seed, proxy=settings.proxy.seed,
                                                     data_split=settings.seed),
                dataset=settings.dataset, data_dir=settings.data_dir, classes=list(settings.classes) or None,
                latency=dict(warmup=settings.latency_warmup, repeats=settings.latency_repeats,
                             # then device, resolution, batch_size: of the latency's source
                             model=portable_path(settings.latency_model) if settings.latency_model else None,
                             **latency_source(latency_model=settings.latency_model, device=settings.device,
                                              threads=settings.threads, res=settings.space.resolution)),
                threads=settings.threads,
                references=settings.references, early_stopping=settings.early_stopping,
                prescreen=dict(proxy=settings.prescreen, keep=settings.prescreen_keep),
                collapse_inert=settings.collapse_inert,
                heartbeat=dict(interval_s=settings.heartbeat.interval_s, grace_s=settings.heartbeat.grace_s),
                liveness=space_liveness(settings.space, settings.proxy.res).to_dict())


def settings_from_meta(meta: dict[str, Any], **changes: Any) -> SearchSettings:
    """Rebuild the settings of a recorded run (for --resume), with some values changed."""
    space = space_from_dict(meta["space"], source=meta.get("space_source", "run.yaml"))
    budget = Budget(**meta["budget"])
    values = dict(space=space, budget=budget, proxy=ProxySettings(**meta["proxy"]), trials=meta["trials"],
                  timeout_s=meta.get("timeout_s"), sampler=meta["sampler"], seed=meta["seeds"]["sampler"],
                  dataset=meta["dataset"], data_dir=meta.get("data_dir"),
                  latency_warmup=meta["latency"]["warmup"], latency_repeats=meta["latency"]["repeats"],
                  references=meta.get("references", True), early_stopping=meta.get("early_stopping", True),
                  threads=meta.get("threads", 1), collapse_inert=meta.get("collapse_inert", False),
                  latency_model=_absolute(meta["latency"].get("model")), classes=tuple(meta.get("classes") or ()))
    prescreen = meta.get("prescreen") or {}
    values.update(prescreen=prescreen.get("proxy"), prescreen_keep=prescreen.get("keep", 0.25))
    if meta.get("heartbeat"):
        values.update(heartbeat=Heartbeat(**meta["heartbeat"]))
    device = changes.pop("device", None)
    if device is not None:  # each worker's own device
        values.update(proxy=dataclasses.replace(values["proxy"], device=device))
    values.update({k: v for k, v in changes.items() if v is not None})
    return SearchSettings(**values)


def _absolute(path: str | None) -> str | None:
    """A path run.yaml records relative to the working folder, made absolute (Ray trials run in other folders)."""
    return str(Path(path).resolve()) if path else None


def resume_settings(run: Run, backend: str, **changes: Any) -> SearchSettings:
    """The recorded settings of a search run to continue or join, with this worker's changes
    (trials, timeout_s, device, threads; None keeps the recorded value)."""
    meta = run.read_meta()
    if meta.get("kind") != "search":
        raise FatnasError(f"run {run.id!r} is not a search run; --resume and --join take a search run id")
    if meta.get("backend", "optuna") != backend:
        backend = meta.get("backend")
        raise FatnasError(f"run {run.id!r} used backend {backend!r}; resume it with --backend {backend}")
    return settings_from_meta(meta, **changes)


def record_run(run: Run, settings: SearchSettings, backend: str, argv: list[str] | None = None,
               storage: str | None = None) -> None:
    """Write run.yaml (command, settings, seeds, versions, hardware, storage with no password); a
    run of either backend also gets its Optuna study, holding a copy of run.yaml. `storage` None: the run's study.db."""
    fields = dict(backend=backend, **settings_to_meta(settings))
    if storage is not None:
        fields["storage"] = mask_password(storage)
    run.record("search", fields, dataset=settings.dataset, flop_convention=flop_convention(settings.space.resolution),
               argv=argv)
    from .optuna_backend import create_study

    create_study(open_storage(storage or run.default_storage, settings.heartbeat), run.id, run.read_meta())


def check_storage(url: str | None, backend: str, heartbeat: Heartbeat = Heartbeat()) -> str | None:
    """A checked, reachable `--storage` URL (None: the run's study.db); only the optuna backend takes one."""
    if url is None:
        return None
    if backend != "optuna":
        raise FatnasError("--storage works with the optuna backend only; drop it or use --backend optuna")
    url = normalize_storage(url)
    open_storage(url, heartbeat)
    return url


def storage_of(run: Run, given: str | None) -> str:
    """The storage a worker of `run` opens: `given`, else the one its starting process handed it through
    the environment (`search --workers`), else run.yaml's (which must then hold no masked password)."""
    given = given if given is not None else os.environ.get(WORKER_STORAGE_ENV) or None
    if given is not None:
        return normalize_storage(given)
    url = run.storage_url
    if has_masked_password(url):
        raise FatnasError(f"run {run.id!r} keeps its study in {url}, whose password run.yaml does not record; "
                          "pass --storage URL with the password (or leave it out of the URL and set PGPASSWORD)")
    return url


def sync_run(run_id: str, storage: str | None = None, root: Path | None = None) -> Run:
    """Rebuild `runs/<id>/` (run.yaml, trials.csv, pareto.csv, configs/, references.csv) from the study
    in the storage; without a run folder here, `storage` must be given."""
    from .optuna_backend import REFERENCES_ATTR, RUN_META_ATTR, load_study, publish_study

    try:
        run: Run | None = open_run(run_id, root)
    except RunError:
        run = None
    if run is None and storage is None:
        raise FatnasError(f"run {run_id!r} is not here; pass --storage URL of its study to rebuild it")
    url = storage_of(run, storage) if run is not None else normalize_storage(storage)
    study = load_study(open_storage(url, None), run.id if run is not None else run_id)
    if run is None:
        meta = study.user_attrs.get(RUN_META_ATTR)
        if not meta:
            raise FatnasError(f"study {run_id!r} holds no fatnas run record; it was not made by `fatnas search`")
        run = create_run(run_id, root)
        run.write_meta(meta)
    references = study.user_attrs.get(REFERENCES_ATTR)
    if references:
        run.write_table("references.csv", pd.DataFrame(references))
    publish_study(run, study)
    return run


def record_target(run: Run, settings: SearchSettings, storage_url: str) -> None:
    """A raised `--trials` (`search --resume` or `--join`) is the search's target from now on: run.yaml
    and the study's copy of it record it (a lower one only stops this worker sooner)."""
    from .optuna_backend import RUN_META_ATTR, load_study

    if not (run.path / "run.yaml").is_file():  # a bare folder (the Python API, tests): nothing recorded
        return
    with run.lock():
        meta = run.read_meta()
        if settings.trials <= (meta.get("trials") or 0):
            return
        meta["trials"] = settings.trials
        run.write_meta(meta)
    load_study(open_storage(storage_url, None), run.id).set_user_attr(RUN_META_ATTR, meta)


def start_workers(run: Run, count: int, settings: SearchSettings, storage: str | None = None) -> list[subprocess.Popen]:
    """`count` more worker processes on this machine, each `fatnas search --join` of the run with this
    process's device and threads. The storage URL (it may hold a password) goes through their environment,
    never their command line."""
    command = [sys.executable, "-m", "fatnas.cli", "search", "--join", str(run.path.resolve()), "--quiet",
               "--device", settings.device, "--threads", str(settings.threads)]
    env = {key: value for key, value in os.environ.items() if key != WORKER_STORAGE_ENV}
    # the workers import this process's fatnas, wherever they start (not another copy installed or in their folder)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    if storage is not None:
        env[WORKER_STORAGE_ENV] = storage
    return [subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env) for _ in range(count)]


def wait_workers(workers: list[subprocess.Popen]) -> None:
    """Wait for the workers; a worker that failed is an error."""
    codes = [w.wait() for w in workers]
    if any(codes):
        raise RuntimeError(f"worker processes exited with {codes}; see their messages above")


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
            worker.wait()


def evaluate_references(run: Run, settings: SearchSettings, data: DataSplit) -> pd.DataFrame:
    """Proxy-evaluate the published FATs that fit the budget, once per run (kept on resume)."""
    done = run.references()
    rows = done.to_dict("records") if not done.empty else []
    names = {r["name"] for r in rows}
    for name in PUBLISHED:
        if name in names or not settings.references:
            continue
        ev = price(get_config(name).replace(drop_path_rate=settings.space.drop_path_rate), settings)
        if not ev.infeasible:
            time_candidate(ev, settings)
        if not ev.infeasible:
            train_candidate(ev, data, settings)
        row = trial_row(-1, "REFERENCE" if not ev.infeasible else "OVER_BUDGET", ev.attrs(), ev.accuracy,
                        ev.latency_ms)
        rows.append(dict(name=name, **row))
        run.write_table("references.csv", pd.DataFrame(rows))
    return run.references()


def check_backend(settings: SearchSettings, backend: str) -> None:
    """Refuse an unknown backend, or settings the backend cannot carry out."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; accepted: {', '.join(BACKENDS)}")
    if settings.prescreen and backend != "optuna":
        raise FatnasError("--prescreen works with the optuna backend only; drop it or use --backend optuna")


def run_search(run: Run, settings: SearchSettings, *, backend: str = "optuna", progress: bool = True,
               data: DataSplit | None = None, storage: str | None = None, joining: bool = False, workers: int = 1,
               **backend_options: Any) -> pd.DataFrame:
    """Run (or continue, or as one more worker join) a search in `run`; returns the Pareto front.

    `storage` None: the one run.yaml names (default study.db). A joining worker leaves the
    references to the run's first worker. `workers` > 1 (optuna): this process and `workers - 1`
    more started here, after the references. `backend_options` go to the ray backend
    (`fatnas.search.ray_backend.RaySearch`): cpus_per_trial, gpus_per_trial, max_concurrent, ray_address.
    """
    check_backend(settings, backend)
    configure_threads(settings.threads)
    record_target(run, settings, storage_of(run, storage))
    data = data if data is not None else settings_data(settings)
    if settings.references and not joining:
        evaluate_references(run, settings, data)
    if backend == "optuna":
        from .optuna_backend import REFERENCES_ATTR, OptunaSearch

        if backend_options:
            raise TypeError(f"options {sorted(backend_options)} are for the ray backend, not optuna")
        search = OptunaSearch(run, settings, data, progress=progress, storage_url=storage_of(run, storage),
                              joining=joining)
        if not joining and not run.references().empty:
            search.study.set_user_attr(REFERENCES_ATTR, run.references().to_dict("records"))
        others = start_workers(run, workers - 1, settings, storage)
        try:
            search.optimize()
            wait_workers(others)
        finally:
            stop_workers(others)
    else:
        from .ray_backend import keep_ray_on_loopback

        keep_ray_on_loopback(backend_options.get("ray_address"))
        from .ray_backend import RaySearch

        RaySearch(run, settings, data, progress=progress, **backend_options).optimize()
    return run.pareto()


__all__ = ["BACKENDS", "SearchSettings", "check_backend", "check_storage", "evaluate_references", "record_run",
           "resume_settings", "run_search", "settings_from_meta", "settings_to_meta", "storage_of", "sync_run"]

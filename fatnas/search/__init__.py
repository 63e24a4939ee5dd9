"""Architecture search: one interface, `run_search`, over swappable backends (Optuna, Ray Tune).

Both backends write the same run folder: run.yaml, trials.csv, pareto.csv, references.csv
and configs/; Optuna's study.db or Ray's results folder hold each backend's own state.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from ..cost import Budget, flop_convention
from ..data import DataSplit, load_dataset
from ..errors import FatnasError
from ..latency import latency_source
from ..liveness import space_liveness
from ..proxy import ProxySettings, configure_threads
from ..space import space_from_dict
from ..store import Run
from ..variants import PUBLISHED, get_config
from .evaluate import OBJECTIVES, SearchSettings, price, time_candidate, train_candidate, trial_row

BACKENDS = ("optuna", "ray")


def settings_to_meta(settings: SearchSettings) -> dict[str, Any]:
    """The run.yaml view of the settings (round-trips through `settings_from_meta`)."""
    return dict(objectives=OBJECTIVES, space=settings.space.to_dict(), space_source=settings.space.source,
                budget=settings.budget.to_dict(), budget_text=settings.budget.describe(),
                proxy=settings.proxy.to_dict(), trials=settings.trials, timeout_s=settings.timeout_s,
                sampler=settings.sampler, seeds=dict(sampler=settings.seed, proxy=settings.proxy.seed,
                                                     data_split=settings.seed),
                dataset=settings.dataset, data_dir=settings.data_dir,
                latency=dict(warmup=settings.latency_warmup, repeats=settings.latency_repeats,
                             model=settings.latency_model,  # then device, resolution, batch_size: of the latency's source
                             **latency_source(latency_model=settings.latency_model, device=settings.device,
                                              threads=settings.threads, res=settings.space.resolution)),
                threads=settings.threads,
                references=settings.references, early_stopping=settings.early_stopping,
                prescreen=dict(proxy=settings.prescreen, keep=settings.prescreen_keep),
                collapse_inert=settings.collapse_inert,
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
                  latency_model=meta["latency"].get("model"))
    prescreen = meta.get("prescreen") or {}
    values.update(prescreen=prescreen.get("proxy"), prescreen_keep=prescreen.get("keep", 0.25))
    values.update({k: v for k, v in changes.items() if v is not None})
    return SearchSettings(**values)


def record_run(run: Run, settings: SearchSettings, backend: str, argv: list[str] | None = None) -> None:
    """Write run.yaml: command, settings, seeds, versions and hardware."""
    run.record("search", dict(backend=backend, **settings_to_meta(settings)), dataset=settings.dataset,
               flop_convention=flop_convention(settings.space.resolution), argv=argv)


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
               data: DataSplit | None = None, **backend_options: Any) -> pd.DataFrame:
    """Run (or continue) a search in `run`; returns the Pareto front.

    `backend_options` go to the ray backend (`fatnas.search.ray_backend.RaySearch`):
    cpus_per_trial, gpus_per_trial, max_concurrent, ray_address.
    """
    check_backend(settings, backend)
    configure_threads(settings.threads)
    data = data if data is not None else load_dataset(settings.dataset, settings.data_dir, seed=settings.seed)
    if settings.references:
        evaluate_references(run, settings, data)
    if backend == "optuna":
        from .optuna_backend import OptunaSearch

        if backend_options:
            raise TypeError(f"options {sorted(backend_options)} are for the ray backend, not optuna")
        OptunaSearch(run, settings, data, progress=progress).optimize()
    else:
        from .ray_backend import RaySearch

        RaySearch(run, settings, data, progress=progress, **backend_options).optimize()
    return run.pareto()


__all__ = ["BACKENDS", "SearchSettings", "check_backend", "evaluate_references", "record_run", "run_search",
           "settings_from_meta", "settings_to_meta"]
